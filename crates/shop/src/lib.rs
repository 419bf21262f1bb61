//! shop: the reference service built on keel. Users, products and orders over HTTP, on an
//! embedded SQLite database by default.
//!
//! - [`config`]: every setting, from flags or environment variables.
//! - [`app`]: state, router, serving and shutdown.
//! - [`routes`]: one module per resource, each with its own `router()`.
//! - [`domain`]: values that can only hold what the contract allows.
//! - [`store`]: the SQL, and the durable job queue in the same database.
//! - [`jobs`]: the kinds of background job; [`mail`]: where mail goes.

pub mod analytics;
pub mod app;
pub mod config;
pub mod domain;
pub mod events;
pub mod jobs;
pub mod mail;
pub mod metrics;
pub mod openapi;
pub mod outbound;
pub mod retention;
pub mod routes;
pub mod state;
pub mod store;
pub mod telemetry;
