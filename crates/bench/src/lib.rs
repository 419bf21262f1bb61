//! What the harnesses share: the command line of the HTTP servers, the error body a bare axum
//! service writes by hand, and the no-op job of the queue benchmarks.

use std::net::SocketAddr;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

/// An HTTP server's arguments: the address to listen on, then its database (each with the
/// default given). A benchmark's setup: it stops with a message on a bad address.
pub fn server_args(addr: &str, database: &str) -> (SocketAddr, String) {
    let mut args = std::env::args().skip(1);
    let addr = args
        .next()
        .unwrap_or_else(|| addr.into())
        .parse()
        .expect("first argument: the address to listen on");
    (addr, args.next().unwrap_or_else(|| database.into()))
}

/// An error body written by hand, as a bare axum service would, of the same size as keel's.
pub fn error(status: StatusCode, code: &str, details: Value) -> Response {
    let body = json!({"success": false, "error": code, "code": code, "details": details});
    (status, Json(body)).into_response()
}

/// A job that does nothing: what the queue benchmarks measure is the queue.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Noop {
    pub n: u64,
}

impl keel::jobs::Job for Noop {
    const KIND: &'static str = "noop";
}

/// Jobs per write, and claims per worker turn, in the queue benchmarks.
pub const BATCH: usize = 100;
