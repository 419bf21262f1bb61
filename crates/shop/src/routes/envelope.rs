//! The error envelope as the OpenAPI document shows it: keel writes it, this only describes it.

use utoipa::ToSchema;

/// The body of every 4xx and 5xx response.
#[derive(Debug, ToSchema)]
#[schema(example = json!({
    "success": false,
    "error": "Validation error",
    "code": "validation_error",
    "details": [{"loc": ["body", "email"], "msg": "value is not a valid email address", "type": "invalid_email"}],
    "request_id": "0b6e3f0e-3d1c-4c7e-9a8e-2f4b8c1d9e10"
}))]
#[allow(dead_code)]
pub struct ErrorEnvelope {
    /// Always `false`.
    success: bool,
    /// A short message, safe to show.
    error: String,
    /// Stable and machine-readable: `validation_error`, `not_found`, `conflict`, …
    code: String,
    /// More about the error, `null` when there is nothing more to say. For `validation_error`
    /// a list of `{"loc", "msg", "type"}`.
    details: Option<serde_json::Value>,
    /// The request's id, as in the `X-Request-ID` header.
    request_id: String,
}
