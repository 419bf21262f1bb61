//! Webhooks: subscribers and their deliveries (operators only), and the payment provider's
//! inbound `POST /webhooks/payments`.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use keel::validate::{Field, Problem, Validation};
use keel::webhooks::ssrf::{check_url, SsrfError};
use keel::webhooks::{verify, Secret};
use keel::{ApiError, Json, Path};
use serde::Deserialize;
use serde_json::json;

use crate::app::AppState;
use crate::domain::Id;
use crate::store::webhooks::Delivery;

/// The events a subscriber can ask for.
pub const EVENTS: &[&str] = &[
    "user.created",
    "order.created",
    "order.paid",
    "order.cancelled",
];

/// Routes for operators: the caller puts them behind the admin token.
pub fn operator_router() -> Router<AppState> {
    Router::new()
        .route("/webhook-endpoints", post(create_endpoint))
        .route("/webhook-endpoints/{id}/deliveries", get(deliveries))
}

/// The payment provider's route: authenticated by its signature.
pub fn inbound_router() -> Router<AppState> {
    Router::new().route("/webhooks/payments", post(payment))
}

#[derive(Debug, Deserialize)]
struct NewEndpointBody {
    #[serde(default)]
    url: Field<String>,
    #[serde(default)]
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
        if !EVENTS.contains(&event.as_str()) {
            return Err(Problem::new(
                "invalid_value",
                format!("Input should be one of {}", EVENTS.join(", ")),
            ));
        }
        if !unique.contains(&event) {
            unique.push(event);
        }
    }
    Ok(unique)
}

async fn create_endpoint(
    State(state): State<AppState>,
    Json(body): Json<NewEndpointBody>,
) -> Result<impl IntoResponse, ApiError> {
    let mut v = Validation::body();
    let allow_private = state.webhook_allow_private;
    let url = v.field("url", body.url, |url| {
        if url.len() > 2048 {
            return Err(Problem::too_long(2048));
        }
        match check_url(&url, allow_private) {
            Ok(_) => Ok(url),
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
    let endpoint = state.store.create_endpoint(&url, &events, &secret).await?;
    Ok(super::created(
        format!("/webhook-endpoints/{}", endpoint.id),
        endpoint,
    ))
}

async fn deliveries(
    State(state): State<AppState>,
    Path(id): Path<Id>,
) -> Result<Json<Vec<Delivery>>, ApiError> {
    let deliveries = state.store.deliveries(id.get()).await?;
    deliveries
        .map(Json)
        .ok_or_else(|| ApiError::not_found("webhook_endpoint", id))
}

#[derive(Debug, Deserialize)]
struct PaymentBody {
    #[serde(default, rename = "type")]
    kind: Field<String>,
    #[serde(default)]
    data: Field<PaymentData>,
}

#[derive(Debug, Deserialize)]
struct PaymentData {
    #[serde(default)]
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
async fn payment(
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
