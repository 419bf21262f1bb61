//! The OpenAPI 3.1 document of the service (`GET /openapi.json`), generated from the handlers'
//! annotations, and Swagger UI at `/docs`, served from the binary.

use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::routes;
use crate::routes::envelope::ErrorEnvelope;
use crate::store::{orders::Order, products::Product, users::User, webhooks};

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "admin_token",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "shop",
        description = "The reference service of keel: users, products, orders, webhooks and \
                       WebSockets. Every 4xx and 5xx body is the ErrorEnvelope.",
    ),
    paths(
        routes::users::create, routes::users::show,
        routes::products::create, routes::products::show,
        routes::orders::create, routes::orders::show,
        routes::webhooks::create_endpoint, routes::webhooks::delete_endpoint,
        routes::webhooks::rotate_secret, routes::webhooks::deliveries, routes::webhooks::payment,
        routes::ws::chat, routes::ws::events,
        routes::ops::healthz, routes::ops::readyz, routes::ops::metrics,
        routes::pages::home,
        routes::admin::page, routes::admin::jobs, routes::admin::retry, routes::admin::stats,
        routes::admin::endpoints,
    ),
    components(schemas(ErrorEnvelope, User, Product, Order, webhooks::Endpoint, webhooks::Delivery)),
    modifiers(&BearerAuth),
    tags(
        (name = "users"), (name = "products"), (name = "orders"),
        (name = "webhooks", description = "Subscribers (operators only) and inbound payments"),
        (name = "websockets"), (name = "operations"),
        (name = "admin", description = "The operators' console and its API"),
    )
)]
pub struct ApiDoc;

/// Swagger UI at `/docs`, and the document at `/openapi.json`.
pub fn router() -> axum::Router<crate::state::AppState> {
    let docs: axum::Router<crate::state::AppState> = utoipa_swagger_ui::SwaggerUi::new("/docs")
        .url("/openapi.json", ApiDoc::openapi())
        .into();
    docs.layer(axum::middleware::map_response(docs_policy))
}

/// The Swagger UI's pages get their Content-Security-Policy; the JSON document needs none.
async fn docs_policy(mut response: axum::response::Response) -> axum::response::Response {
    let is_html = response
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"));
    if is_html {
        response.headers_mut().insert(
            http::header::CONTENT_SECURITY_POLICY,
            http::HeaderValue::from_static(crate::routes::csp::DOCS),
        );
    }
    response
}
