//! Values that arrive as text: query strings and path parameters.
//!
//! A query or a path carries only strings, so their values are read by the type asked for, as
//! FastAPI reads them: `limit=5` is the integer 5, and so is `limit=5.0` (an integral float is
//! its integer when exact, as in a body); a list field collects a repeated parameter
//! (`tag=a&tag=b`); a single value takes the last of a repeated one. [`Params`] deserialises a
//! struct or a map from `(name, values)` pairs; [`Text`] one value by the type asked for.
//!
//! A type made with `#[derive(Validate)]` reads its fields as JSON values first ([`Field`]);
//! while [`lax`] runs, a field whose JSON reading fails is read again from its text, so that
//! one derive serves bodies (where `"5"` is not an integer) and queries (where it is).
//!
//! [`Field`]: super::Field

use std::cell::Cell;

use serde::de::{self, DeserializeSeed, Deserializer, IntoDeserializer, MapAccess, SeqAccess};
use serde::forward_to_deserialize_any;

type Error = de::value::Error;

thread_local! {
    /// True while a query or path is being read into validated fields.
    static LAX: Cell<bool> = const { Cell::new(false) };
}

/// Runs `read` (synchronous: nothing awaits inside) with text values read by type.
pub(crate) fn lax<R>(read: impl FnOnce() -> R) -> R {
    struct Reset(bool);
    impl Drop for Reset {
        fn drop(&mut self) {
            LAX.with(|lax| lax.set(self.0));
        }
    }
    let _reset = Reset(LAX.with(|lax| lax.replace(true)));
    read()
}

/// Whether text values are being read by type (see [`lax`]).
pub(crate) fn is_lax() -> bool {
    LAX.with(Cell::get)
}

/// An integer, or an integer written as an exact integral float (`5.0`, `1e3`).
fn integer(text: &str) -> Option<i128> {
    if let Ok(n) = text.parse::<i128>() {
        return Some(n);
    }
    let float: f64 = text.parse().ok()?;
    // Past 2^53 a float no longer holds every integer exactly.
    const EXACT: f64 = 9_007_199_254_740_992.0;
    (float.is_finite() && float.fract() == 0.0 && float.abs() <= EXACT).then_some(float as i128)
}

/// A problem in keel's `type: message` form, which `Problem::from_serde_message` reads back.
fn problem(kind: &str, msg: &str) -> Error {
    de::Error::custom(format_args!("{kind}: {msg}"))
}

/// Query or path parameters, each name with its values in order: a struct or a map.
#[derive(Debug)]
pub(crate) struct Params<'a>(pub(crate) Vec<(&'a str, Vec<&'a str>)>);

impl<'a> Params<'a> {
    /// Name–value pairs, repeated names grouped in order of first appearance.
    pub(crate) fn group(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        // Names are looked up in a map: a query of thousands of distinct names must not cost
        // the square of their number.
        let mut index: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
        let mut grouped: Vec<(&str, Vec<&str>)> = Vec::new();
        for (name, value) in pairs {
            match index.get(name) {
                Some(&at) => grouped[at].1.push(value),
                None => {
                    index.insert(name, grouped.len());
                    grouped.push((name, vec![value]));
                }
            }
        }
        Params(grouped)
    }
}

impl<'de> Deserializer<'de> for Params<'de> {
    type Error = Error;

    fn deserialize_any<V: de::Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_map(ParamsAccess {
            params: self.0.into_iter(),
            values: Vec::new(),
        })
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map struct enum
        identifier ignored_any
    }
}

struct ParamsAccess<'a> {
    params: std::vec::IntoIter<(&'a str, Vec<&'a str>)>,
    values: Vec<&'a str>,
}

impl<'de> MapAccess<'de> for ParamsAccess<'de> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        let Some((name, values)) = self.params.next() else {
            return Ok(None);
        };
        self.values = values;
        seed.deserialize(name.into_deserializer()).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        seed.deserialize(Values(std::mem::take(&mut self.values)))
    }
}

/// The values of one parameter: all of them for a list, the last for anything else.
pub(crate) struct Values<'a>(pub(crate) Vec<&'a str>);

impl<'a> Values<'a> {
    fn last(&self) -> Text<'a> {
        Text(self.0.last().copied().unwrap_or_default())
    }
}

/// Hands a single value asked of the values to the last one.
macro_rules! to_last {
    ($($method:ident)*) => {$(
        fn $method<V: de::Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            self.last().$method(visitor)
        }
    )*};
}

impl<'de> Deserializer<'de> for Values<'de> {
    type Error = Error;

    /// Untyped (a validated field): one value is text, several a list of texts.
    fn deserialize_any<V: de::Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0.as_slice() {
            [one] => visitor.visit_borrowed_str(one),
            _ => self.deserialize_seq(visitor),
        }
    }

    fn deserialize_seq<V: de::Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_seq(TextSeq(self.0.into_iter()))
    }

    fn deserialize_tuple<V: de::Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_option<V: de::Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: de::Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: de::Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.last().deserialize_enum(name, variants, visitor)
    }

    to_last! {
        deserialize_bool deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64
        deserialize_i128 deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64
        deserialize_u128 deserialize_f32 deserialize_f64 deserialize_char deserialize_str
        deserialize_string deserialize_identifier
    }

    forward_to_deserialize_any! {
        bytes byte_buf unit unit_struct tuple_struct map struct ignored_any
    }
}

struct TextSeq<'a>(std::vec::IntoIter<&'a str>);

impl<'de> SeqAccess<'de> for TextSeq<'de> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        self.0
            .next()
            .map(|text| seed.deserialize(Text(text)))
            .transpose()
    }
}

/// One text value, read by the type asked for.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Text<'a>(pub(crate) &'a str);

const NOT_AN_INTEGER: &str =
    "Input should be a valid integer, unable to parse string as an integer";

/// Reads an integer of any width; the visitor checks its own range.
macro_rules! integers {
    ($($method:ident)*) => {$(
        fn $method<V: de::Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            match integer(self.0) {
                Some(n) => match i64::try_from(n) {
                    Ok(n) => visitor.visit_i64(n),
                    Err(_) => visitor.visit_i128(n),
                },
                None => Err(problem("invalid_type", NOT_AN_INTEGER)),
            }
        }
    )*};
}

impl<'de> Deserializer<'de> for Text<'de> {
    type Error = Error;

    fn deserialize_any<V: de::Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_borrowed_str(self.0)
    }

    fn deserialize_bool<V: de::Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            "true" => visitor.visit_bool(true),
            "false" => visitor.visit_bool(false),
            _ => Err(problem(
                "invalid_type",
                "Input should be a valid boolean, unable to interpret input",
            )),
        }
    }

    integers! {
        deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64 deserialize_i128
        deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64 deserialize_u128
    }

    fn deserialize_f64<V: de::Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0.parse::<f64>() {
            Ok(x) if x.is_finite() => visitor.visit_f64(x),
            _ => Err(problem(
                "invalid_type",
                "Input should be a valid number, unable to parse string as a number",
            )),
        }
    }

    fn deserialize_f32<V: de::Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_f64(visitor)
    }

    fn deserialize_option<V: de::Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: de::Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: de::Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        de::value::StrDeserializer::<Error>::new(self.0).deserialize_enum(name, variants, visitor)
    }

    forward_to_deserialize_any! {
        char str string bytes byte_buf unit unit_struct seq tuple tuple_struct map struct
        identifier ignored_any
    }
}

/// Reads `value`, a text or a list of texts kept by a validated field, by the type asked for:
/// `None` when it holds anything else.
pub(crate) fn read_texts<T: de::DeserializeOwned>(
    value: &serde_json::Value,
) -> Option<Result<T, Error>> {
    let texts: Vec<&str> = match value {
        serde_json::Value::String(text) => vec![text.as_str()],
        serde_json::Value::Array(items) => items
            .iter()
            .map(serde_json::Value::as_str)
            .collect::<Option<_>>()?,
        _ => return None,
    };
    Some(T::deserialize(Values(texts)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Filter {
        limit: Option<u32>,
        #[serde(default)]
        tag: Vec<String>,
        flag: Option<bool>,
    }

    fn read(pairs: &[(&str, &str)]) -> Result<Filter, String> {
        Filter::deserialize(Params::group(pairs.iter().copied())).map_err(|e| e.to_string())
    }

    #[test]
    fn values_are_read_by_type_lists_collect_and_scalars_take_the_last() {
        assert_eq!(
            read(&[
                ("limit", "5.0"),
                ("tag", "a"),
                ("tag", "b"),
                ("flag", "true")
            ]),
            Ok(Filter {
                limit: Some(5),
                tag: vec!["a".into(), "b".into()],
                flag: Some(true)
            })
        );
        assert_eq!(
            read(&[("limit", "1"), ("limit", "2")]).map(|f| f.limit),
            Ok(Some(2))
        );
        assert_eq!(
            read(&[("tag", "only")]).map(|f| f.tag),
            Ok(vec!["only".into()])
        );
        assert_eq!(
            read(&[("limit", "abc")]),
            Err(format!("invalid_type: {NOT_AN_INTEGER}"))
        );
        assert_eq!(
            read(&[("limit", "5.5")]),
            Err(format!("invalid_type: {NOT_AN_INTEGER}"))
        );
    }
}
