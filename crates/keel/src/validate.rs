//! Validation that reports every problem of a request at once, in FastAPI's shape.
//!
//! serde stops at the first error, so a body deserialised straight into its final type can only
//! ever report one problem. keel splits the work in two:
//!
//! 1. the body deserialises into plain [`Field`]s, which never fail: a field is
//!    [`Field::Missing`], [`Field::Invalid`] (wrong JSON type) or [`Field::Present`];
//! 2. a [`Validation`] turns each field into a domain value with a parse function, collecting one
//!    [`Detail`] per problem, and becomes a 422 `validation_error` listing them all.
//!
//! ```
//! use keel::validate::{Field, Problem, Validation};
//!
//! #[derive(serde::Deserialize)]
//! struct NewProduct {
//!     #[serde(default)]
//!     name: Field<String>,
//!     #[serde(default)]
//!     stock: Field<i64>,
//! }
//!
//! fn stock(n: i64) -> Result<u32, Problem> {
//!     u32::try_from(n).map_err(|_| Problem::out_of_range("Input should be greater than or equal to 0"))
//! }
//!
//! let body: NewProduct = serde_json::from_str(r#"{"stock": -1}"#).unwrap();
//! let mut v = Validation::body();
//! let name = v.field("name", body.name, Ok);
//! let stock = v.field("stock", body.stock, stock);
//! assert!(name.is_none() && stock.is_none());
//! let err = v.into_error();
//! assert_eq!(err.status(), http::StatusCode::UNPROCESSABLE_ENTITY);
//! assert_eq!(
//!     err.details().unwrap(),
//!     &serde_json::json!([
//!         {"loc": ["body", "name"], "msg": "Field required", "type": "missing"},
//!         {"loc": ["body", "stock"], "msg": "Input should be greater than or equal to 0", "type": "out_of_range"}
//!     ])
//! );
//! ```
//!
//! Messages never echo the input: a client sees what was expected, not what it sent.

mod declared;
pub mod schema;
pub(crate) mod text;
#[doc(hidden)]
pub use declared::Object;
pub use declared::{rules, Report, Valid, Validate};
use std::borrow::Cow;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};

use crate::ApiError;

/// One problem: where (`loc`), what (`msg`) and its stable `type`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Detail {
    /// Path to the value: `["body", "email"]`, `["path", "id"]`, `["query", "limit"]`.
    pub loc: Vec<Loc>,
    /// A sentence for people.
    pub msg: Cow<'static, str>,
    /// A stable snake_case word for programs.
    #[serde(rename = "type")]
    pub kind: Cow<'static, str>,
}

/// One step of a [`Detail`]'s `loc`: an object key or an array index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Loc {
    /// An object key (or the root: `body`, `path`, `query`).
    Key(String),
    /// An array index.
    Index(usize),
}

impl From<&str> for Loc {
    fn from(key: &str) -> Self {
        Loc::Key(key.to_owned())
    }
}

/// What is wrong with one value, before it is placed at a `loc`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    kind: Cow<'static, str>,
    msg: Cow<'static, str>,
}

impl Problem {
    /// A problem of any type.
    pub fn new(kind: impl Into<Cow<'static, str>>, msg: impl Into<Cow<'static, str>>) -> Self {
        Problem {
            kind: kind.into(),
            msg: msg.into(),
        }
    }

    /// `missing`: a required field is absent.
    pub fn missing() -> Self {
        Self::new("missing", "Field required")
    }

    /// `invalid_type`: the value has the wrong JSON type.
    pub fn invalid_type(expected: &str) -> Self {
        Self::new("invalid_type", format!("Input should be {expected}"))
    }

    /// `too_short`: fewer than `min` characters.
    pub fn too_short(min: usize) -> Self {
        let unit = if min == 1 { "character" } else { "characters" };
        Self::new(
            "too_short",
            format!("String should have at least {min} {unit}"),
        )
    }

    /// `too_long`: more than `max` characters.
    pub fn too_long(max: usize) -> Self {
        Self::new(
            "too_long",
            format!("String should have at most {max} characters"),
        )
    }

    /// `out_of_range`: a number outside its bounds.
    pub fn out_of_range(msg: impl Into<Cow<'static, str>>) -> Self {
        Self::new("out_of_range", msg)
    }

    /// `invalid_pattern`: a string that does not match `pattern`.
    pub fn invalid_pattern(pattern: &str) -> Self {
        Self::new(
            "invalid_pattern",
            format!("String should match pattern '{pattern}'"),
        )
    }

    /// `invalid_email`: not a valid email address.
    pub fn invalid_email() -> Self {
        Self::new("invalid_email", "value is not a valid email address")
    }

    /// The stable type word.
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// The message.
    pub fn msg(&self) -> &str {
        &self.msg
    }

    /// This problem placed at `loc`.
    pub fn at(self, loc: Vec<Loc>) -> Detail {
        Detail {
            loc,
            msg: self.msg,
            kind: self.kind,
        }
    }

    /// Reads a serde error message as a problem without repeating the input it quotes.
    ///
    /// serde's messages have fixed shapes (`missing field `x``, `invalid type: string "…",
    /// expected i64`); only the parts that come from the schema are kept. A custom error whose
    /// message is `type_word: sentence` keeps both, so a hand-written `Deserialize` can choose
    /// its type (`out_of_range: Input should be greater than 0`).
    pub fn from_serde_message(message: &str) -> Self {
        // serde_json appends " at line L column C"; the position is reported separately.
        let message = message
            .rsplit_once(" at line ")
            .map_or(message, |(head, _)| head);
        let expected = || {
            message
                .rsplit_once(", expected ")
                .map(|(_, expected)| describe_expected(expected))
        };
        if message.starts_with("missing field") {
            return Self::missing();
        }
        if message.starts_with("invalid type") && message.ends_with(", expected an object") {
            // A nested type given something else than an object: Pydantic's `model_type`.
            return Self::new("model_type", "Input should be an object");
        }
        if message.starts_with("invalid type") {
            return Self::invalid_type(&expected().unwrap_or_else(|| "of another type".into()));
        }
        if let Some(bound) = integer_bound(message) {
            return Self::out_of_range(bound);
        }
        if message.starts_with("invalid value") || message.starts_with("invalid length") {
            let expected = expected().unwrap_or_else(|| "in range".into());
            return Self::out_of_range(format!("Input should be {expected}"));
        }
        if message.starts_with("unknown variant") {
            let expected = expected().unwrap_or_else(|| "a known value".into());
            return Self::new("invalid_value", format!("Input should be {expected}"));
        }
        if let Some((kind, msg)) = message.split_once(": ") {
            let is_word =
                !kind.is_empty() && kind.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
            if is_word {
                return Self::new(kind.to_owned(), msg.to_owned());
            }
        }
        Self::new("invalid_value", "Invalid value")
    }
}

/// For serde's ``invalid value: integer `300`, expected u8``, the bound the number crossed:
/// `Input should be less than or equal to 255`.
fn integer_bound(message: &str) -> Option<String> {
    let rest = message.strip_prefix("invalid value: integer `")?;
    let (number, expected) = rest.split_once("`, expected ")?;
    let number: i128 = number.parse().ok()?;
    let (min, max): (i128, i128) = match expected {
        "i8" => (i8::MIN.into(), i8::MAX.into()),
        "i16" => (i16::MIN.into(), i16::MAX.into()),
        "i32" => (i32::MIN.into(), i32::MAX.into()),
        "i64" => (i64::MIN.into(), i64::MAX.into()),
        "u8" => (0, u8::MAX.into()),
        "u16" => (0, u16::MAX.into()),
        "u32" => (0, u32::MAX.into()),
        "u64" => (0, u64::MAX.into()),
        _ => return None,
    };
    if number > max {
        Some(format!("Input should be less than or equal to {max}"))
    } else if number < min {
        Some(format!("Input should be greater than or equal to {min}"))
    } else {
        None
    }
}

/// Turns serde's `expected` (`i64`, `a string`, `one of `a`, `b``) into words for clients.
pub(crate) fn describe_expected(expected: &str) -> Cow<'static, str> {
    match expected {
        "i8" | "i16" | "i32" | "i64" | "i128" | "isize" | "u8" | "u16" | "u32" | "u64" | "u128"
        | "usize" => "a valid integer".into(),
        "f32" | "f64" => "a valid number".into(),
        "a boolean" => "a valid boolean".into(),
        "a string" | "a borrowed string" => "a valid string".into(),
        "a sequence" => "a valid list".into(),
        "a map" => "a valid dictionary or object".into(),
        other if other.starts_with("struct ") => "a valid dictionary or object".into(),
        other => other.to_owned().into(),
    }
}

/// A body field that always deserialises, so that every problem can be reported at once.
///
/// Declare it with `#[serde(default)]` so an absent key is [`Field::Missing`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Field<T> {
    /// The key is absent.
    #[default]
    Missing,
    /// The key is present with a value that is not a `T` (a `null` included).
    Invalid(Problem),
    /// The key holds a `T`.
    Present(T),
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for Field<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let budget = std::cell::Cell::new(MAX_FIELD_NODES);
        let truncated = std::cell::Cell::new(false);
        let value = deserializer.deserialize_any(Bounded {
            budget: &budget,
            truncated: &truncated,
        })?;
        let integral = as_integer(&value);
        // A query's or a path's values are texts, read again by type if JSON's reading fails.
        let texts = text::is_lax().then(|| value.clone());
        let parsed = match T::deserialize(value) {
            Ok(value) => Ok(value),
            // An integral number written as a float (`553.0`) is that integer, as in
            // Pydantic's default (lax) mode; `553.5` stays a type error.
            Err(err) => match integral.map(T::deserialize) {
                Some(Ok(value)) => Ok(value),
                _ => match texts.as_ref().and_then(text::read_texts::<T>) {
                    Some(read) => read.map_err(|err| Problem::from_serde_message(&err.to_string())),
                    None => Err(Problem::from_serde_message(&err.to_string())),
                },
            },
        };
        Ok(match parsed {
            // Only part of the value was kept: it may not stand for the whole.
            Ok(_) if truncated.get() => Field::Invalid(Problem::new(
                "too_long",
                format!("Input should have at most {MAX_FIELD_NODES} values"),
            )),
            Ok(value) => Field::Present(value),
            Err(problem) => Field::Invalid(problem),
        })
    }
}

/// Most JSON values (arrays, objects and scalars, nested ones included) kept of one field. A
/// field's value is held as a tree before it is checked; past this many values the rest is read
/// and dropped, so that `{"email": [1, 1, 1, ...]}` costs no more than a short array.
pub const MAX_FIELD_NODES: usize = 4096;

/// Reads any JSON value into a [`serde_json::Value`], keeping at most `budget` values and
/// skipping the rest (then `truncated` is set).
struct Bounded<'b> {
    budget: &'b std::cell::Cell<usize>,
    truncated: &'b std::cell::Cell<bool>,
}

impl Bounded<'_> {
    fn nested(&self) -> Self {
        Bounded {
            budget: self.budget,
            truncated: self.truncated,
        }
    }

    /// Takes one value from the budget; false when it is spent.
    fn take(&self) -> bool {
        let left = self.budget.get();
        self.budget.set(left.saturating_sub(1));
        left > 0
    }
}

impl<'de> serde::de::DeserializeSeed<'de> for Bounded<'_> {
    type Value = serde_json::Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Bounded<'_> {
    type Value = serde_json::Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(v.into())
    }

    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(v.into())
    }

    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(v.into())
    }

    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(v.into())
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(v.into())
    }

    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(v.into())
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(serde_json::Value::Null)
    }

    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(serde_json::Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::new();
        while self.take() {
            match seq.next_element_seed(self.nested())? {
                Some(item) => items.push(item),
                None => return Ok(serde_json::Value::Array(items)),
            }
        }
        // Past the budget: read the rest without keeping it.
        while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {
            self.truncated.set(true);
        }
        Ok(serde_json::Value::Array(items))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut entries = serde_json::Map::new();
        while self.take() {
            match map.next_key::<String>()? {
                Some(key) => {
                    let value = map.next_value_seed(self.nested())?;
                    entries.insert(key, value);
                }
                None => return Ok(serde_json::Value::Object(entries)),
            }
        }
        while map
            .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
            .is_some()
        {
            self.truncated.set(true);
        }
        Ok(serde_json::Value::Object(entries))
    }
}

/// `553.0` as the integer `553`, when a float holds an integer exactly; `None` otherwise.
fn as_integer(value: &serde_json::Value) -> Option<serde_json::Value> {
    let serde_json::Value::Number(number) = value else {
        return None;
    };
    if !number.is_f64() {
        return None;
    }
    let float = number.as_f64()?;
    // Past 2^53 a float no longer holds every integer exactly.
    const EXACT: f64 = 9_007_199_254_740_992.0;
    if float.fract() != 0.0 || float.abs() > EXACT {
        return None;
    }
    Some(serde_json::Value::from(float as i64))
}

/// Collects the problems of one request part (body, path or query) into a 422.
#[derive(Debug)]
pub struct Validation {
    root: &'static str,
    details: Vec<Detail>,
}

impl Validation {
    /// Problems of the request body: `loc` starts with `body`.
    pub fn body() -> Self {
        Self::new("body")
    }

    /// Problems of the query string: `loc` starts with `query`.
    pub fn query() -> Self {
        Self::new("query")
    }

    /// Problems of path parameters: `loc` starts with `path`.
    pub fn path() -> Self {
        Self::new("path")
    }

    fn new(root: &'static str) -> Self {
        Validation {
            root,
            details: Vec::new(),
        }
    }

    /// Parses one field: `Some(value)` when it is present and `parse` accepts it, otherwise the
    /// problem is recorded under `name` and the result is `None`.
    pub fn field<T, U>(
        &mut self,
        name: &str,
        field: Field<T>,
        parse: impl FnOnce(T) -> Result<U, Problem>,
    ) -> Option<U> {
        let result = match field {
            Field::Missing => Err(Problem::missing()),
            Field::Invalid(problem) => Err(problem),
            Field::Present(value) => parse(value),
        };
        result.map_err(|problem| self.report(&[name], problem)).ok()
    }

    /// Records a problem at `root` + `path`.
    pub fn report(&mut self, path: &[&str], problem: Problem) {
        let loc = std::iter::once(self.root)
            .chain(path.iter().copied())
            .map(Loc::from)
            .collect();
        self.details.push(problem.at(loc));
    }

    /// True when no problem has been recorded.
    pub fn is_empty(&self) -> bool {
        self.details.is_empty()
    }

    /// The 422 listing every recorded problem.
    pub fn into_error(self) -> ApiError {
        ApiError::validation(self.details)
    }

    /// `Ok` when nothing was recorded, the 422 otherwise.
    pub fn finish(self) -> Result<(), ApiError> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(self.into_error())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_messages_lose_the_input_they_quote() {
        let p = Problem::from_serde_message(
            "invalid type: string \"secret, expected x\", expected i64 at line 1 column 9",
        );
        assert_eq!(p, Problem::invalid_type("a valid integer"));
        assert_eq!(
            Problem::from_serde_message("missing field `email`"),
            Problem::missing()
        );
        assert_eq!(
            Problem::from_serde_message("unknown variant `hunter2`, expected `a` or `b`"),
            Problem::new("invalid_value", "Input should be `a` or `b`")
        );
        assert_eq!(
            Problem::from_serde_message("out_of_range: Input should be greater than 0"),
            Problem::out_of_range("Input should be greater than 0")
        );
        assert_eq!(
            Problem::from_serde_message("Something Else: with hunter2"),
            Problem::new("invalid_value", "Invalid value")
        );
    }

    #[test]
    fn null_is_an_invalid_type_for_a_required_field() {
        #[derive(Deserialize)]
        struct Body {
            #[serde(default)]
            name: Field<String>,
        }
        let body: Body = serde_json::from_str(r#"{"name": null}"#).unwrap();
        assert_eq!(
            body.name,
            Field::Invalid(Problem::invalid_type("a valid string"))
        );
    }
}

#[cfg(test)]
mod lax_integers {
    use super::*;

    fn field(json: &str) -> Field<i64> {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn a_large_integral_float_is_its_integer_when_exact() {
        let wide: Field<i128> = serde_json::from_str("1948425934383563.0").unwrap();
        assert!(
            matches!(wide, Field::Present(1_948_425_934_383_563)),
            "{wide:?}"
        );
        assert!(matches!(
            field("1948425934383563.0"),
            Field::Present(1_948_425_934_383_563)
        ));
        assert!(matches!(
            field("-9007199254740992.0"),
            Field::Present(-9_007_199_254_740_992)
        ));
    }

    #[test]
    fn an_integral_float_is_its_integer_and_any_other_float_is_a_type_error() {
        assert!(matches!(field("553"), Field::Present(553)));
        assert!(matches!(field("553.0"), Field::Present(553)));
        assert!(matches!(field("-2.0"), Field::Present(-2)));
        for bad in ["553.5", "1e300", "\"553\""] {
            match field(bad) {
                Field::Invalid(problem) => assert_eq!(problem.kind(), "invalid_type", "{bad}"),
                _ => panic!("{bad} should be invalid"),
            }
        }
    }

    #[test]
    fn a_huge_value_is_read_without_being_kept_and_reported_by_its_shape() {
        let huge = format!("[{}1]", "1,".repeat(500_000));
        match serde_json::from_str::<Field<String>>(&huge).unwrap() {
            Field::Invalid(problem) => {
                assert_eq!(problem.kind(), "invalid_type");
                assert_eq!(problem.msg(), "Input should be a valid string");
            }
            other => panic!("{other:?}"),
        }
        // A list longer than the budget is refused, not cut short.
        let long = format!("[{}1]", "1,".repeat(MAX_FIELD_NODES));
        match serde_json::from_str::<Field<Vec<i64>>>(&long).unwrap() {
            Field::Invalid(problem) => assert_eq!(problem.kind(), "too_long"),
            other => panic!("{other:?}"),
        }
        let nested = format!("{{\"a\": [{}1]}}", "[1],".repeat(MAX_FIELD_NODES));
        assert!(matches!(
            serde_json::from_str::<Field<serde_json::Value>>(&nested).unwrap(),
            Field::Invalid(_)
        ));
        // One that fits is kept whole.
        let fits = format!("[{}1]", "1,".repeat(MAX_FIELD_NODES - 2));
        match serde_json::from_str::<Field<Vec<i64>>>(&fits).unwrap() {
            Field::Present(items) => assert_eq!(items.len(), MAX_FIELD_NODES - 1),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_integer_outside_its_type_names_the_bound_it_crossed() {
        let field = |json: &str| serde_json::from_str::<Field<u8>>(json).unwrap();
        assert_eq!(
            field("300"),
            Field::Invalid(Problem::out_of_range(
                "Input should be less than or equal to 255"
            ))
        );
        assert_eq!(
            field("-1"),
            Field::Invalid(Problem::out_of_range(
                "Input should be greater than or equal to 0"
            ))
        );
        assert_eq!(field("7"), Field::Present(7));
    }
}
