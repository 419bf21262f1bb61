//! Validation declared on the request type: `#[derive(Validate)]` and the [`Valid`] extractor.
//!
//! ```
//! use keel::validate::{Valid, Validate};
//!
//! #[derive(Debug, Validate)]
//! struct NewTodo {
//!     #[validate(length(min = 1, max = 100))]
//!     title: String,
//!     #[validate(range(ge = 1, le = 5))]
//!     priority: u8,
//!     /// Optional: absent or `null` is `None`.
//!     #[validate(length(max = 10), each(length(min = 1, max = 20)))]
//!     tags: Option<Vec<String>>,
//! }
//!
//! async fn create(Valid(todo): Valid<NewTodo>) -> String {
//!     todo.title
//! }
//! ```
//!
//! A body that is not JSON is `400 malformed_json`; one that is JSON gets a `422
//! validation_error` listing **every** problem at once, in field order: a missing field
//! (`missing`), a value of the wrong JSON type (`invalid_type`), an integer outside its type
//! (`out_of_range`), then the declared rules. Each `loc` is the path from `body`, list indices
//! included (`["body", "tags", 1]`).
//!
//! Field types: `String`, `bool`, every integer type, `f32`/`f64`, `Vec<T>`, `Option<T>` (absent
//! or `null` is `None`), another type with `#[derive(Validate)]` (a nested object), or any type
//! with a hand-written [`Validate`] impl (a domain type with its own parse function).
//!
//! Rules, in `#[validate(...)]` on a field (they apply to the value inside an `Option`):
//!
//! | rule | applies to | problem |
//! |---|---|---|
//! | `length(min = N, max = M)` | strings (characters), lists (items) | `too_short`, `too_long` |
//! | `range(ge = A, gt = B, le = C, lt = D)` | numbers | `out_of_range` |
//! | `pattern = "regex"` | strings | `invalid_pattern` |
//! | `email` | strings | `invalid_email` |
//! | `url` | strings: absolute `http(s)://` | `invalid_url` |
//! | `one_of("a", "b")` | strings | `invalid_value` |
//! | `each(...)` | lists: the rules inside apply to every element | as above, at its index |
//! | `custom = path` | any: `fn(&T) -> Result<(), Problem>` on the value (a list's once its items are valid) | the function's |
//! | `default` | a field absent from the body takes `Default::default()` | |
//! | `example = value` | documentation only: the schema's example (a JSON literal) | |
//!
//! The same declaration is the type's OpenAPI schema: the derive implements utoipa's
//! `ToSchema` (a component named after the struct) and `IntoParams` (one parameter per field,
//! for a query), each rule as its JSON Schema keyword and each doc comment as a description;
//! see [`schema`](super::schema).
//!
//! On the struct, `#[validate(deny_unknown_fields)]` refuses every key it does not declare
//! (`extra_forbidden`, "Extra inputs are not permitted", at the key), as Pydantic's
//! `extra='forbid'`; `#[validate(custom = path)]` runs `fn(&Self, &mut Report)` once every
//! field is valid, for rules across fields, which report where they choose with
//! [`Report::problem_at`]. A rule that needs stored data is not validation: the body is valid,
//! and the handler answers with a domain error of its own.
//!
//! A rule that does not fit its field (a `range` on a `String`, a bound of the wrong type, a
//! pattern that does not compile, an unknown rule) is a compile error:
//!
//! ```compile_fail
//! #[derive(keel::validate::Validate)]
//! struct Bad {
//!     #[validate(range(ge = 1))]
//!     name: String,
//! }
//! ```
//!
//! ```compile_fail
//! #[derive(keel::validate::Validate)]
//! struct Bad {
//!     #[validate(pattern = "([a-z]")]
//!     name: String,
//! }
//! ```
//!
//! ```compile_fail
//! #[derive(keel::validate::Validate)]
//! struct Bad {
//!     #[validate(lenght(max = 3))]
//!     name: String,
//! }
//! ```
//!
//! ```compile_fail
//! #[derive(keel::validate::Validate)]
//! struct Bad {
//!     #[validate(length(max = 3))]
//!     count: u32,
//! }
//! ```

use std::fmt::Display;
use std::marker::PhantomData;
use std::sync::OnceLock;

use axum::extract::{FromRequest, FromRequestParts, RawPathParams, Request};
use http::request::Parts;
use serde::de::{DeserializeOwned, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

use super::{Detail, Field, Loc, Problem};
use crate::ApiError;

pub use keel_macros::Validate;

/// A type read from a JSON value with every problem reported: derive it for request types, or
/// implement it for a domain type (its [`Validate::Raw`] is what the JSON holds).
pub trait Validate: Sized {
    /// What is deserialised before the checks: for a derived struct, one [`Field`] per field.
    type Raw: DeserializeOwned;

    /// Checks `raw`, reporting every problem into `report` at its current path; `None` when any
    /// was found.
    fn validate(raw: Self::Raw, report: &mut Report) -> Option<Self>;

    /// The OpenAPI schema of a value of this type where a field holds it: inline for a value,
    /// a reference for a derived struct (a component). A hand-written impl should say what its
    /// checks accept (see [`schema`](super::schema)); without it, any value is documented.
    fn openapi_schema() -> super::schema::SchemaRef {
        super::schema::any()
    }

    /// Adds the components [`Validate::openapi_schema`] refers to, each once.
    fn openapi_components(out: &mut super::schema::Components) {
        let _ = out;
    }
}

/// The problems found so far, and the path of the value being checked.
#[derive(Debug)]
pub struct Report {
    path: Vec<Loc>,
    details: Vec<Detail>,
}

impl Report {
    /// An empty report whose paths start at `root` (`body`, `query`).
    pub fn new(root: &str) -> Self {
        Report {
            path: vec![Loc::from(root)],
            details: Vec::new(),
        }
    }

    /// Records `problem` at the current path.
    pub fn problem(&mut self, problem: Problem) {
        self.details.push(problem.at(self.path.clone()));
    }

    /// Records `problem` at `fields` below the current path: what a struct-level rule uses to
    /// name the field it is about (`report.problem_at(&["end"], …)`).
    pub fn problem_at(&mut self, fields: &[&str], problem: Problem) {
        let mut path = self.path.clone();
        path.extend(fields.iter().map(|field| Loc::from(*field)));
        self.details.push(problem.at(path));
    }

    /// How many problems were recorded so far.
    #[doc(hidden)]
    pub fn count(&self) -> usize {
        self.details.len()
    }

    /// Enters a key of an object.
    pub fn enter(&mut self, key: &str) {
        self.path.push(Loc::from(key));
    }

    /// Enters an index of a list.
    pub fn enter_index(&mut self, index: usize) {
        self.path.push(Loc::Index(index));
    }

    /// Leaves what the last `enter` entered.
    pub fn leave(&mut self) {
        self.path.pop();
    }

    /// True when nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.details.is_empty()
    }

    /// The 422 `validation_error` listing every problem.
    pub fn into_error(self) -> ApiError {
        ApiError::validation(self.details)
    }

    /// Checks a [`Field`] of type `T`: a missing one is reported (unless `missing` gives a value),
    /// an invalid one too, a present one is validated.
    #[doc(hidden)]
    pub fn field<T: Validate>(
        &mut self,
        field: Field<T::Raw>,
        missing: impl FnOnce() -> Option<T>,
    ) -> Option<T> {
        match field {
            Field::Missing => {
                let value = missing();
                if value.is_none() {
                    self.problem(Problem::missing());
                }
                value
            }
            Field::Invalid(problem) => {
                self.problem(problem);
                None
            }
            Field::Present(raw) => T::validate(raw, self),
        }
    }

    /// Checks each element of a list at its index, then `check` on each element that is a `T`:
    /// every element's problems are reported, whatever the others'.
    #[doc(hidden)]
    pub fn list<T: Validate>(
        &mut self,
        raw: Vec<Field<T::Raw>>,
        check: impl Fn(T, &mut Report) -> Option<T>,
    ) -> Option<Vec<T>> {
        let mut items = Vec::with_capacity(raw.len());
        let mut ok = true;
        for (index, item) in raw.into_iter().enumerate() {
            self.enter_index(index);
            match self
                .field::<T>(item, || None)
                .and_then(|item| check(item, self))
            {
                Some(item) => items.push(item),
                None => ok = false,
            }
            self.leave();
        }
        ok.then_some(items)
    }

    /// Applies `check` to `value`, reporting its problem; false when it found one.
    #[doc(hidden)]
    pub fn check(&mut self, check: Result<(), Problem>) -> bool {
        match check {
            Ok(()) => true,
            Err(problem) => {
                self.problem(problem);
                false
            }
        }
    }
}

/// The raw fields of a derived type, read only from a JSON object: serde's derived structs also
/// take an array, its items in field order, which a request body must not do.
#[doc(hidden)]
#[derive(Debug)]
pub struct Object<T>(pub T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Fields<T>(PhantomData<T>);

        impl<'de, T: Deserialize<'de>> Visitor<'de> for Fields<T> {
            type Value = T;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object")
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map))
            }
        }

        deserializer
            .deserialize_map(Fields(PhantomData))
            .map(Object)
    }
}

/// Types whose JSON form is the value itself: nothing to check past the JSON type.
macro_rules! as_read {
    ($($t:ty),*) => {$(
        impl Validate for $t {
            type Raw = $t;
            fn validate(raw: $t, _: &mut Report) -> Option<Self> {
                Some(raw)
            }
            fn openapi_schema() -> super::schema::SchemaRef {
                <$t as utoipa::PartialSchema>::schema()
            }
        }
    )*};
}
as_read!(String, bool, f64);

impl Validate for f32 {
    type Raw = f64;
    fn validate(raw: f64, report: &mut Report) -> Option<Self> {
        let value = raw as f32;
        if value.is_finite() {
            Some(value)
        } else {
            report.problem(Problem::out_of_range(format!(
                "Input should be between {} and {}",
                f32::MIN,
                f32::MAX
            )));
            None
        }
    }
    fn openapi_schema() -> super::schema::SchemaRef {
        <f32 as utoipa::PartialSchema>::schema()
    }
}

macro_rules! integers {
    ($($t:ty),*) => {$(
        impl Validate for $t {
            // Wide enough for every integer type; an integral float (`3.0`) is its integer.
            type Raw = i128;
            fn validate(raw: i128, report: &mut Report) -> Option<Self> {
                match <$t>::try_from(raw) {
                    Ok(value) => Some(value),
                    Err(_) if raw < 0 => {
                        report.problem(Problem::out_of_range(format!(
                            "Input should be greater than or equal to {}", <$t>::MIN
                        )));
                        None
                    }
                    Err(_) => {
                        report.problem(Problem::out_of_range(format!(
                            "Input should be less than or equal to {}", <$t>::MAX
                        )));
                        None
                    }
                }
            }
            /// utoipa's schema of the type (its `format`), with the bounds checked like a rule:
            /// both where the format does not imply them, `minimum: 0` for a 64-bit unsigned.
            fn openapi_schema() -> super::schema::SchemaRef {
                use super::schema::{range, Bound};
                let mut schema = <$t as utoipa::PartialSchema>::schema();
                if <$t>::BITS < 64 {
                    range(&mut schema, Bound::Ge, <$t>::MIN);
                    range(&mut schema, Bound::Le, <$t>::MAX);
                } else if <$t>::MIN == 0 {
                    range(&mut schema, Bound::Ge, <$t>::MIN);
                }
                schema
            }
        }
    )*};
}
integers!(i8, i16, i32, i64, isize, u8, u16, u32, u64, usize);

impl<T: Validate> Validate for Vec<T> {
    type Raw = Vec<Field<T::Raw>>;
    fn validate(raw: Self::Raw, report: &mut Report) -> Option<Self> {
        report.list(raw, |item, _| Some(item))
    }
    fn openapi_schema() -> super::schema::SchemaRef {
        utoipa::openapi::schema::ArrayBuilder::new()
            .items(T::openapi_schema())
            .into()
    }
    fn openapi_components(out: &mut super::schema::Components) {
        T::openapi_components(out);
    }
}

/// `T` read from a JSON request body and validated: 415 without a JSON content type, 413 over
/// the body limit, 400 for bad JSON, 422 listing every problem otherwise.
#[derive(Debug, Clone, Copy, Default)]
pub struct Valid<T>(pub T);

impl<T: Validate, S: Send + Sync> FromRequest<S> for Valid<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let crate::Json(raw) = crate::Json::<T::Raw>::from_request(req, state).await?;
        let mut report = Report::new("body");
        match T::validate(raw, &mut report) {
            Some(value) if report.is_empty() => Ok(Valid(value)),
            _ => Err(report.into_error()),
        }
    }
}

/// `T` read from the query string and validated: 422 listing every problem at
/// `["query", name]`. Values are read by the field's type (`limit=5` and `limit=5.0` are 5); a
/// list field collects a repeated parameter, any other field takes its last value.
impl<T: Validate, S: Send + Sync> FromRequestParts<S> for Valid<crate::Query<T>> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or_default();
        let pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        let params = super::text::Params::group(pairs.iter().map(|(k, v)| (&**k, &**v)));
        from_params(Report::new("query"), params).map(|value| Valid(crate::Query(value)))
    }
}

/// `T` read from the route's path parameters and validated: 422 listing every problem at
/// `["path", name]`, values read by type as for a query.
impl<T: Validate, S: Send + Sync> FromRequestParts<S> for Valid<crate::Path<T>> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let raw = RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(ApiError::internal)?;
        let params = super::text::Params::group(raw.iter());
        from_params(Report::new("path"), params).map(|value| Valid(crate::Path(value)))
    }
}

/// Reads `T`'s raw fields from `params`, texts read by type, then validates them.
fn from_params<T: Validate>(
    mut report: Report,
    params: super::text::Params<'_>,
) -> Result<T, ApiError> {
    match super::text::lax(|| T::Raw::deserialize(params)) {
        Ok(raw) => match T::validate(raw, &mut report) {
            Some(value) if report.is_empty() => Ok(value),
            _ => Err(report.into_error()),
        },
        Err(err) => {
            report.problem(Problem::from_serde_message(&err.to_string()));
            Err(report.into_error())
        }
    }
}

/// The checks behind the rules of `#[validate(...)]`, usable on their own.
pub mod rules {
    use super::*;

    /// Something with a length: characters of a string, items of a list.
    pub trait Length {
        /// The length, and how the messages call the thing and its unit.
        fn measure(&self) -> (usize, &'static str, &'static str, &'static str);
    }

    impl Length for String {
        fn measure(&self) -> (usize, &'static str, &'static str, &'static str) {
            (self.chars().count(), "String", "character", "characters")
        }
    }

    impl<T> Length for Vec<T> {
        fn measure(&self) -> (usize, &'static str, &'static str, &'static str) {
            (self.len(), "List", "item", "items")
        }
    }

    /// `length(min, max)`: `too_short` / `too_long`.
    pub fn length<T: Length>(
        value: &T,
        min: Option<usize>,
        max: Option<usize>,
    ) -> Result<(), Problem> {
        let (len, what, one, many) = value.measure();
        let unit = |n: usize| if n == 1 { one } else { many };
        if let Some(min) = min.filter(|&min| len < min) {
            return Err(Problem::new(
                "too_short",
                format!("{what} should have at least {min} {}", unit(min)),
            ));
        }
        if let Some(max) = max.filter(|&max| len > max) {
            return Err(Problem::new(
                "too_long",
                format!("{what} should have at most {max} {}", unit(max)),
            ));
        }
        Ok(())
    }

    fn bound<T: PartialOrd + Display>(
        holds: bool,
        relation: &str,
        bound: T,
    ) -> Result<(), Problem> {
        if holds {
            Ok(())
        } else {
            Err(Problem::out_of_range(format!(
                "Input should be {relation} {bound}"
            )))
        }
    }

    /// `range(ge = bound)`.
    pub fn ge<T: PartialOrd + Display>(value: &T, min: T) -> Result<(), Problem> {
        bound(*value >= min, "greater than or equal to", min)
    }

    /// `range(gt = bound)`.
    pub fn gt<T: PartialOrd + Display>(value: &T, min: T) -> Result<(), Problem> {
        bound(*value > min, "greater than", min)
    }

    /// `range(le = bound)`.
    pub fn le<T: PartialOrd + Display>(value: &T, max: T) -> Result<(), Problem> {
        bound(*value <= max, "less than or equal to", max)
    }

    /// `range(lt = bound)`.
    pub fn lt<T: PartialOrd + Display>(value: &T, max: T) -> Result<(), Problem> {
        bound(*value < max, "less than", max)
    }

    /// `pattern = "regex"`: the whole string or a part must match, as `regex` does (anchor the
    /// pattern with `^...$` to match all of it). `compiled` holds the pattern once compiled.
    pub fn pattern(
        value: &str,
        pattern: &str,
        compiled: &OnceLock<Option<regex_lite::Regex>>,
    ) -> Result<(), Problem> {
        let regex = compiled.get_or_init(|| regex_lite::Regex::new(pattern).ok());
        match regex {
            Some(regex) if regex.is_match(value) => Ok(()),
            _ => Err(Problem::invalid_pattern(pattern)),
        }
    }

    /// `email`: a `local@domain` address as people type them: a dot-atom local part of at most
    /// 64 characters, a domain of at least two DNS labels whose last is alphabetic, 254
    /// characters in all. Quoted local parts and IP-literal domains are refused.
    pub fn email(value: &str) -> Result<(), Problem> {
        let valid = value.len() <= 254
            && value
                .rsplit_once('@')
                .is_some_and(|(local, domain)| is_local_part(local) && is_domain(domain));
        if valid {
            Ok(())
        } else {
            Err(Problem::invalid_email())
        }
    }

    fn is_local_part(local: &str) -> bool {
        const SPECIALS: &[u8] = b"!#$%&'*+/=?^_`{|}~-";
        (1..=64).contains(&local.len())
            && local.split('.').all(|atom| {
                !atom.is_empty()
                    && atom
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || SPECIALS.contains(&b))
            })
    }

    fn is_domain(domain: &str) -> bool {
        let is_label = |label: &str| {
            (1..=63).contains(&label.len())
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        };
        let labels: Vec<&str> = domain.split('.').collect();
        domain.len() <= 253
            && labels.len() >= 2
            && labels.iter().all(|label| is_label(label))
            && labels
                .last()
                .is_some_and(|tld| tld.len() >= 2 && tld.bytes().all(|b| b.is_ascii_alphabetic()))
    }

    /// `url`: an absolute `http://` or `https://` URL with a host, with no white space or
    /// control character anywhere (a URL parser drops those at the ends and tabs and line breaks
    /// inside, so the string stored would not be the URL checked).
    pub fn url(value: &str) -> Result<(), Problem> {
        let clean = !value.bytes().any(|b| b <= b' ' || b == 0x7f);
        match url::Url::parse(value) {
            Ok(url) if clean && matches!(url.scheme(), "http" | "https") && url.has_host() => {
                Ok(())
            }
            _ => Err(Problem::new(
                "invalid_url",
                "URL should be an absolute http:// or https:// URL",
            )),
        }
    }

    /// `one_of("a", "b")`: `invalid_value`.
    pub fn one_of(value: &str, options: &[&str]) -> Result<(), Problem> {
        if options.contains(&value) {
            Ok(())
        } else {
            Err(Problem::new(
                "invalid_value",
                format!("Input should be one of {}", options.join(", ")),
            ))
        }
    }
}
