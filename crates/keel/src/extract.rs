//! `Json`, `Path` and `Query` extractors whose rejections are [`ApiError`]s.
//!
//! They are drop-in replacements for axum's: same shape, but a request they refuse gets the
//! envelope, never axum's plain-text rejection.
//!
//! | extractor | refusal | status and code |
//! |---|---|---|
//! | [`Json`] | no or another `Content-Type` | 415 `unsupported_media_type` |
//! | [`Json`] | body over the limit | 413 `payload_too_large` |
//! | [`Json`] | not JSON | 400 `malformed_json`, details: line and column where parsing stopped |
//! | [`Json`] | JSON of the wrong shape | 422 `validation_error`, `loc` from `body` |
//! | [`Path`] | a segment of the wrong type | 422 `validation_error`, `loc: ["path", name]` |
//! | [`Query`] | a parameter of the wrong type | 422 `validation_error`, `loc: ["query", name]` |
//!
//! To report *every* problem of a body at once, deserialise it into
//! [`Field`](crate::validate::Field)s and check them with a
//! [`Validation`](crate::validate::Validation).

use axum::extract::rejection::{BytesRejection, FailedToBufferBody};
use axum::extract::{FromRequest, FromRequestParts, RawPathParams, Request};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::request::Parts;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::validate::text::{Params, Values};
use crate::validate::{describe_expected, Loc, Problem};
use crate::ApiError;

/// A JSON request body, or a JSON response.
///
/// As an extractor it needs `Content-Type: application/json` (or any `application/*+json`) and
/// a body within the limit set by [`crate::layers::ServiceLayers::body_limit`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(req.headers().get(CONTENT_TYPE)) {
            return Err(ApiError::unsupported_media_type());
        }
        let body = Bytes::from_request(req, state)
            .await
            .map_err(body_rejection)?;
        parse_json(&body).map(Json)
    }
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        match serde_json::to_vec(&self.0) {
            Ok(body) => {
                let mut response = body.into_response();
                response
                    .headers_mut()
                    .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                response
            }
            Err(err) => ApiError::internal(err).into_response(),
        }
    }
}

/// `201 Created` with `Location: {location}` and `body` as JSON: the answer of a POST that
/// created a resource.
pub fn created<T: Serialize>(location: impl Into<String>, body: T) -> Response {
    let mut response = Json(body).into_response();
    if response.status() == http::StatusCode::OK {
        *response.status_mut() = http::StatusCode::CREATED;
        match HeaderValue::try_from(location.into()) {
            Ok(location) => {
                response
                    .headers_mut()
                    .insert(http::header::LOCATION, location);
            }
            Err(err) => return ApiError::internal(err).into_response(),
        }
    }
    response
}

fn is_json(content_type: Option<&HeaderValue>) -> bool {
    let Some(essence) = content_type
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
    else {
        return false;
    };
    let essence = essence.trim().to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

pub(crate) fn body_rejection(rejection: BytesRejection) -> ApiError {
    match rejection {
        BytesRejection::FailedToBufferBody(FailedToBufferBody::LengthLimitError(_)) => {
            ApiError::payload_too_large()
        }
        other => ApiError::new(
            http::StatusCode::BAD_REQUEST,
            "bad_request",
            "Could not read the request body",
        )
        .with_source(other),
    }
}

/// Parses a JSON body into `T` with keel's errors: 400 `malformed_json` for bad syntax, 422
/// `validation_error` for the wrong shape. A struct is only ever read from a JSON object (serde
/// would otherwise accept an array and fill the fields by position).
///
/// The body is read twice and never becomes a tree: once to check its syntax (so that a body
/// that is not JSON is a 400 whatever its shape), once straight into `T`, skipping what `T`
/// does not name. Memory stays near the body's own size, whatever the body holds.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice::<serde::de::IgnoredAny>(body).map_err(|err| {
        let reason = match err.classify() {
            serde_json::error::Category::Eof => "unexpected end of input",
            serde_json::error::Category::Io => "unreadable input",
            _ => "invalid JSON syntax",
        };
        ApiError::malformed_json(err.line(), err.column(), reason)
    })?;
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let top = TopLevel {
        inner: &mut deserializer,
        object: body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{'),
    };
    serde_path_to_error::deserialize(top).map_err(|err| {
        let problem = Problem::from_serde_message(&err.inner().to_string());
        let mut loc = vec![Loc::from("body")];
        loc.extend(err.path().iter().filter_map(|segment| match segment {
            serde_path_to_error::Segment::Seq { index } => Some(Loc::Index(*index)),
            serde_path_to_error::Segment::Map { key } => Some(Loc::Key(key.clone())),
            serde_path_to_error::Segment::Enum { variant } => Some(Loc::Key(variant.clone())),
            serde_path_to_error::Segment::Unknown => None,
        }));
        if problem.kind() == "missing" {
            if let Some(field) = missing_field(&err.inner().to_string()) {
                loc.push(Loc::Key(field));
            }
        }
        ApiError::validation(vec![problem.at(loc)])
    })
}

/// The field name in serde's ``missing field `name` ``.
fn missing_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("missing field `")?;
    rest.split_once('`').map(|(name, _)| name.to_owned())
}

/// A JSON document that refuses to fill a struct from anything but an object.
struct TopLevel<'a, 'de> {
    inner: &'a mut serde_json::Deserializer<serde_json::de::SliceRead<'de>>,
    /// The document is an object.
    object: bool,
}

impl<'de> serde::Deserializer<'de> for TopLevel<'_, 'de> {
    type Error = serde_json::Error;

    fn deserialize_any<V: serde::de::Visitor<'de>>(self, v: V) -> Result<V::Value, Self::Error> {
        self.inner.deserialize_any(v)
    }

    fn deserialize_struct<V: serde::de::Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        if self.object {
            self.inner.deserialize_struct(name, fields, visitor)
        } else {
            Err(serde::de::Error::custom(
                "invalid_type: Input should be a JSON object",
            ))
        }
    }

    fn deserialize_option<V: serde::de::Visitor<'de>>(self, v: V) -> Result<V::Value, Self::Error> {
        self.inner.deserialize_option(v)
    }

    fn deserialize_newtype_struct<V: serde::de::Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.inner.deserialize_newtype_struct(name, visitor)
    }

    fn deserialize_enum<V: serde::de::Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.inner.deserialize_enum(name, variants, visitor)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        unit unit_struct seq tuple tuple_struct map identifier ignored_any
    }
}

/// Path parameters; a segment that does not parse is a 422 at `["path", name]`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        use axum::extract::path::ErrorKind;
        use axum::extract::rejection::PathRejection;

        let rejection = match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => return Ok(Path(value)),
            Err(PathRejection::FailedToDeserializePathParams(err)) => err.into_kind(),
            Err(other) => return Err(ApiError::internal(other)),
        };
        // A value that does not parse as its type is read again as a query's would be: an
        // integral float (`/users/1.0`) is its integer, as in a body.
        if matches!(
            rejection,
            ErrorKind::ParseErrorAtKey { .. } | ErrorKind::ParseError { .. }
        ) {
            if let Ok(params) = RawPathParams::from_request_parts(parts, state).await {
                let pairs: Vec<(&str, &str)> = params.iter().collect();
                let again = match pairs.as_slice() {
                    [(_, value)] => T::deserialize(Values(vec![value])),
                    _ => T::deserialize(Params::group(pairs.iter().copied())),
                };
                if let Ok(value) = again {
                    return Ok(Path(value));
                }
            }
        }
        // A single value (`Path<i64>`) names no key: it is the route's only parameter.
        let only_key = RawPathParams::from_request_parts(parts, state)
            .await
            .ok()
            .and_then(|params| params.iter().next().map(|(k, _)| k.to_owned()));
        let (key, problem) = match rejection {
            ErrorKind::ParseErrorAtKey {
                key, expected_type, ..
            } => (Some(key), unparsed(expected_type)),
            ErrorKind::ParseError { expected_type, .. } => (only_key, unparsed(expected_type)),
            ErrorKind::DeserializeError { key, message, .. } => {
                (Some(key), Problem::from_serde_message(&message))
            }
            ErrorKind::InvalidUtf8InPathParam { key } => {
                (Some(key), Problem::invalid_type("valid UTF-8"))
            }
            ErrorKind::Message(message) => (only_key, Problem::from_serde_message(&message)),
            other => return Err(ApiError::internal(other.to_string())),
        };
        let mut loc = vec![Loc::from("path")];
        loc.extend(key.map(Loc::Key));
        Err(ApiError::validation(vec![problem.at(loc)]))
    }
}

/// Query parameters; a missing or mistyped parameter is a 422 at `["query", name]`.
/// A path value that does not parse as `expected_type`, in Pydantic's words.
fn unparsed(expected_type: &str) -> Problem {
    match &*describe_expected(expected_type) {
        "a valid integer" => {
            Problem::invalid_type("a valid integer, unable to parse string as an integer")
        }
        "a valid number" => {
            Problem::invalid_type("a valid number, unable to parse string as a number")
        }
        "a valid boolean" => Problem::invalid_type("a valid boolean, unable to interpret input"),
        other => Problem::invalid_type(other),
    }
}

/// axum's `Query`, whose rejections are `ApiError`s: the query string read as `T`, its text
/// read by each field's type (`limit=5.0` is 5), a repeated parameter collected by a list field
/// and otherwise its last value.
#[derive(Debug, Clone, Copy, Default)]
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        let pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        let params = Params::group(pairs.iter().map(|(k, v)| (&**k, &**v)));
        serde_path_to_error::deserialize(params)
            .map(Query)
            .map_err(|err| {
                let message = err.inner().to_string();
                let mut loc = vec![Loc::from("query")];
                let path = err.path().to_string();
                if path != "." {
                    loc.push(Loc::Key(path));
                } else if let Some(field) = missing_field(&message) {
                    loc.push(Loc::Key(field));
                }
                ApiError::validation(vec![Problem::from_serde_message(&message).at(loc)])
            })
    }
}
