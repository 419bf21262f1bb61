//! Webhooks: subscribers and their deliveries (operators only), and the payment provider's
//! inbound `POST /webhooks/payments`.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{delete, get, post};
use axum::Router;
use keel::idempotency::{self, Idempotency, Saved};
use keel::validate::{Field, Problem, Validation};
use keel::webhooks::ssrf::{check_url, SsrfError};
use keel::webhooks::{verify, Secret};
use keel::{ApiError, Json, Path};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use super::envelope::ErrorEnvelope;
use crate::store::webhooks;

use crate::domain::Id;
use crate::events::EventKind;
use crate::state::AppState;
use crate::store::webhooks::Delivery;

/// Routes for operators: the caller puts them behind the admin token.
pub fn operator_router(idempotent: &super::Idempotent) -> Router<AppState> {
    Router::new()
        .route(
            "/webhook-endpoints",
            idempotency::post(create_endpoint, idempotent.clone()),
        )
        .route("/webhook-endpoints/{id}", delete(delete_endpoint))
        .route("/webhook-endpoints/{id}/rotate-secret", post(rotate_secret))
        .route("/webhook-endpoints/{id}/deliveries", get(deliveries))
}

/// The payment provider's route: authenticated by its signature.
pub fn inbound_router() -> Router<AppState> {
    Router::new().route("/webhooks/payments", post(payment))
}

/// A subscriber to create.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct NewEndpointBody {
    /// An absolute `http://` or `https://` URL (no credentials, fragment or backslash), at
    /// most 2048 characters; not a loopback, private or link-local address.
    #[serde(default)]
    #[schema(value_type = String, format = "uri", max_length = 2048, required = true, example = "https://hooks.example.com/shop")]
    url: Field<String>,
    /// Any of `user.created`, `order.created`, `order.paid`, `order.cancelled`.
    #[serde(default)]
    #[schema(value_type = Vec<EventKind>, required = true, min_items = 1, example = json!(["order.created", "order.paid"]))]
    events: Field<Vec<String>>,
}

fn parse_events(events: Vec<String>) -> Result<Vec<String>, Problem> {
    if events.is_empty() {
        return Err(Problem::new(
            "too_short",
            "List should have at least 1 item",
        ));
    }
    let mut unique: Vec<String> = Vec::new();
    for event in events {
        if EventKind::parse(&event).is_none() {
            let names: Vec<&str> = EventKind::ALL.iter().map(|kind| kind.name()).collect();
            return Err(Problem::new(
                "invalid_value",
                format!("Input should be one of {}", names.join(", ")),
            ));
        }
        if !unique.contains(&event) {
            unique.push(event);
        }
    }
    Ok(unique)
}

/// Subscribes a URL to events; the answer carries its signing secret, shown only here.
#[utoipa::path(post, path = "/webhook-endpoints", tag = "webhooks", request_body = NewEndpointBody,
    security(("admin_token" = [])),
    params(("Idempotency-Key" = Option<String>, Header, nullable = false, min_length = 1, max_length = 255, pattern = "^[ -~]+$",
        description = "1 to 255 printable ASCII characters: a retry with the same key, method, path and body gets the first answer again (`Idempotent-Replayed: true`) and creates nothing")),
    responses(
        (status = 201, description = "Created", body = webhooks::Endpoint),
        (status = 401, description = "Missing or wrong bearer token; `WWW-Authenticate: Bearer`", body = ErrorEnvelope),
        (status = 403, description = "Admin API disabled: SHOP_ADMIN_TOKEN is not set", body = ErrorEnvelope),
        (status = 400, description = "Malformed JSON body", body = ErrorEnvelope, example = json!({"success": false, "error": "Malformed JSON body", "code": "malformed_json", "details": {"line": 1, "column": 10, "reason": "unexpected end of input"}, "request_id": "0b6e3f0e-3d1c-4c7e-9a8e-2f4b8c1d9e10"})),
        (status = 413, description = "Payload too large", body = ErrorEnvelope),
        (status = 415, description = "Unsupported media type", body = ErrorEnvelope),
        (status = 422, description = "Validation error: every problem of the body (`validation_error`); or the Idempotency-Key came with another method, path or body (`idempotency_key_reused`)", body = ErrorEnvelope),
                (status = 409, description = "A request with the same Idempotency-Key is in flight; `Retry-After: 1`", body = ErrorEnvelope, example = json!({"success": false, "error": "Request with this idempotency key is in progress", "code": "idempotency_in_progress", "details": null, "request_id": "0b6e3f0e-3d1c-4c7e-9a8e-2f4b8c1d9e10"})),
(status = "default", description = "Any other error (500, 503 with Retry-After, 504), in the envelope", body = ErrorEnvelope)
    ))]
pub(crate) async fn create_endpoint(
    State(state): State<AppState>,
    key: Idempotency,
    Json(body): Json<NewEndpointBody>,
) -> Result<Saved, ApiError> {
    let mut v = Validation::body();
    let allow_private = state.webhook_allow_private;
    let url = v.field("url", body.url, |url| {
        if url.len() > 2048 {
            return Err(Problem::too_long(2048));
        }
        match check_url(&url, allow_private) {
            // Stored as the parser normalised it: what operators see is what is called.
            Ok(target) => Ok(target.url),
            Err(SsrfError::Forbidden) => Err(Problem::new(
                "invalid_url",
                "URL points to a loopback, private or link-local address",
            )),
            Err(_) => Err(Problem::new(
                "invalid_url",
                "URL should be an absolute http:// or https:// URL",
            )),
        }
    });
    let events = v.field("events", body.events, parse_events);
    let (Some(url), Some(events)) = (url, events) else {
        return Err(v.into_error());
    };
    let secret = Secret::generate().to_string();
    let key = super::remember(key, "/webhook-endpoints/");
    let (_, saved) = state
        .store
        .create_endpoint(&url, &events, &secret, key)
        .await?;
    Ok(saved)
}

/// Deletes a subscriber: no new deliveries; those still pending are `dead` with `last_error`
/// "endpoint deleted".
#[utoipa::path(delete, path = "/webhook-endpoints/{id}", tag = "webhooks",
    security(("admin_token" = [])),
    params(("id" = i64, Path, minimum = 1, description = "A positive integer")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "Missing or wrong bearer token; `WWW-Authenticate: Bearer`", body = ErrorEnvelope),
        (status = 403, description = "Admin API disabled: SHOP_ADMIN_TOKEN is not set", body = ErrorEnvelope),
        (status = 404, description = "No such endpoint", body = ErrorEnvelope),
        (status = 422, description = "The id is not a positive integer", body = ErrorEnvelope),
        (status = "default", description = "Any other error (500, 503 with Retry-After, 504), in the envelope", body = ErrorEnvelope)
    ))]
pub(crate) async fn delete_endpoint(
    State(state): State<AppState>,
    Path(id): Path<Id>,
) -> Result<StatusCode, ApiError> {
    if state.store.delete_endpoint(id.get()).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("webhook_endpoint", id))
    }
}

/// A subscriber's new secret: for 24 hours deliveries carry signatures with both the old and
/// the new one, then the old one is forgotten.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct RotatedSecret {
    id: i64,
    /// `whsec_…`, shown only here.
    secret: String,
}

/// How long the old secret signs beside the new one after a rotation.
const ROTATION_OVERLAP: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// Gives a subscriber a new secret; the old one signs too for 24 hours.
#[utoipa::path(post, path = "/webhook-endpoints/{id}/rotate-secret", tag = "webhooks",
    security(("admin_token" = [])),
    params(("id" = i64, Path, minimum = 1, description = "A positive integer")),
    responses(
        (status = 200, description = "The new secret", body = RotatedSecret),
        (status = 401, description = "Missing or wrong bearer token; `WWW-Authenticate: Bearer`", body = ErrorEnvelope),
        (status = 403, description = "Admin API disabled: SHOP_ADMIN_TOKEN is not set", body = ErrorEnvelope),
        (status = 404, description = "No such endpoint", body = ErrorEnvelope),
        (status = 422, description = "The id is not a positive integer", body = ErrorEnvelope),
        (status = "default", description = "Any other error (500, 503 with Retry-After, 504), in the envelope", body = ErrorEnvelope)
    ))]
pub(crate) async fn rotate_secret(
    State(state): State<AppState>,
    Path(id): Path<Id>,
) -> Result<Json<RotatedSecret>, ApiError> {
    let secret = Secret::generate().to_string();
    if state
        .store
        .rotate_secret(id.get(), &secret, ROTATION_OVERLAP)
        .await?
    {
        Ok(Json(RotatedSecret {
            id: id.get(),
            secret,
        }))
    } else {
        Err(ApiError::not_found("webhook_endpoint", id))
    }
}

/// The deliveries of a subscriber, newest first (at most 500).
#[utoipa::path(get, path = "/webhook-endpoints/{id}/deliveries", tag = "webhooks",
    security(("admin_token" = [])),
    params(("id" = i64, Path, minimum = 1, description = "A positive integer")),
    responses(
        (status = 200, description = "The deliveries", body = Vec<Delivery>),
        (status = 401, description = "Missing or wrong bearer token; `WWW-Authenticate: Bearer`", body = ErrorEnvelope),
        (status = 403, description = "Admin API disabled: SHOP_ADMIN_TOKEN is not set", body = ErrorEnvelope),
        (status = 404, description = "No such endpoint", body = ErrorEnvelope),
        (status = 422, description = "The id is not a positive integer", body = ErrorEnvelope),
        (status = "default", description = "Any other error (500, 503 with Retry-After, 504), in the envelope", body = ErrorEnvelope)
    ))]
pub(crate) async fn deliveries(
    State(state): State<AppState>,
    Path(id): Path<Id>,
) -> Result<Json<Vec<Delivery>>, ApiError> {
    let deliveries = state.store.deliveries(id.get()).await?;
    deliveries
        .map(Json)
        .ok_or_else(|| ApiError::not_found("webhook_endpoint", id))
}

/// A payment provider's event.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct PaymentBody {
    /// `payment.succeeded` or `payment.failed`.
    #[serde(default, rename = "type")]
    #[schema(value_type = String, required = true, example = "payment.succeeded")]
    kind: Field<String>,
    #[serde(default)]
    #[schema(value_type = PaymentData, required = true)]
    data: Field<PaymentData>,
}

/// What the payment is about.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct PaymentData {
    #[serde(default)]
    #[schema(value_type = i64, required = true, minimum = 1, example = 7)]
    order_id: Field<i64>,
}

fn parse_payment(body: PaymentBody) -> Result<(String, i64), ApiError> {
    let mut v = Validation::body();
    let kind = v.field("type", body.kind, |kind| {
        if kind == "payment.succeeded" || kind == "payment.failed" {
            Ok(kind)
        } else {
            Err(Problem::new(
                "invalid_value",
                "Input should be payment.succeeded or payment.failed",
            ))
        }
    });
    let order_id = match body.data {
        Field::Present(data) => match data.order_id {
            Field::Present(id) => match Id::parse(id) {
                Ok(id) => Some(id.get()),
                Err(problem) => {
                    v.report(&["data", "order_id"], problem);
                    None
                }
            },
            Field::Missing => {
                v.report(&["data", "order_id"], Problem::missing());
                None
            }
            Field::Invalid(problem) => {
                v.report(&["data", "order_id"], problem);
                None
            }
        },
        Field::Missing => {
            v.report(&["data"], Problem::missing());
            None
        }
        Field::Invalid(problem) => {
            v.report(&["data"], problem);
            None
        }
    };
    match (kind, order_id) {
        (Some(kind), Some(order_id)) => Ok((kind, order_id)),
        _ => Err(v.into_error()),
    }
}

/// Verified before anything else, stored durably, answered 202 at once; processed by a job.
#[utoipa::path(post, path = "/webhooks/payments", tag = "webhooks", request_body = PaymentBody,
    params(
        ("webhook-id" = String, Header, description = "The message id; a repeat is not processed again"),
        ("webhook-timestamp" = i64, Header, description = "Unix seconds, within five minutes of now"),
        ("webhook-signature" = String, Header, description = "`v1,` + base64 HMAC-SHA256, space-separated"),
    ),
    responses(
        (status = 202, description = "Accepted (or a duplicate, accepted again)", body = Object, example = json!({"accepted": true, "duplicate": false})),
        (status = 401, description = "Missing, wrong or stale signature", body = ErrorEnvelope, example = json!({"success": false, "error": "Invalid signature", "code": "invalid_signature", "details": null, "request_id": "0b6e3f0e-3d1c-4c7e-9a8e-2f4b8c1d9e10"})),
        (status = 400, description = "Malformed JSON body", body = ErrorEnvelope),
        (status = 422, description = "Validation error: every problem of the body", body = ErrorEnvelope),
        (status = 503, description = "SHOP_PAYMENTS_SECRET is not set; `Retry-After`", body = ErrorEnvelope),
        (status = "default", description = "Any other error (500, 503 with Retry-After, 504), in the envelope", body = ErrorEnvelope)
    ))]
pub(crate) async fn payment(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let Some(secret) = state.payments_secret.as_deref() else {
        return Err(
            ApiError::service_unavailable(60).with_source("SHOP_PAYMENTS_SECRET is not set")
        );
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let message_id = verify(secret, &headers, &body, now).map_err(|err| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_signature",
            "Invalid signature",
        )
        .with_source(err)
    })?;
    let parsed: PaymentBody = keel::extract::parse_json(&body)?;
    let (kind, order_id) = parse_payment(parsed)?;
    let new = state
        .store
        .receive_payment(&message_id, &kind, order_id)
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"accepted": true, "duplicate": !new})),
    ))
}
