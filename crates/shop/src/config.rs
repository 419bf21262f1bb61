//! The service's settings: each one a `shop --help` flag and an environment variable, with the
//! defaults of the contract. `shop --help` is the configuration reference.

use std::net::SocketAddr;

use clap::{Parser, ValueEnum};

/// shop: users, products and orders over HTTP, built on keel.
#[derive(Debug, Clone, Parser)]
#[command(name = "shop", version, about)]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "SHOP_ADDR", default_value = "127.0.0.1:8000")]
    pub addr: SocketAddr,

    /// Database: `sqlite://PATH` (created and migrated at start-up).
    #[arg(long, env = "DATABASE_URL", default_value = "sqlite://shop.db")]
    pub database_url: String,

    /// Largest accepted request body, in bytes; larger bodies are answered 413.
    #[arg(long, env = "SHOP_MAX_BODY_BYTES", default_value_t = 1_048_576)]
    pub max_body_bytes: usize,

    /// Seconds a request may run before it is answered 504.
    #[arg(long, env = "SHOP_REQUEST_TIMEOUT_SECS", default_value_t = 30)]
    pub request_timeout_secs: u64,

    /// Log format: `pretty` for people, `json` for one JSON object a line.
    #[arg(long, env = "SHOP_LOG_FORMAT", value_enum, default_value_t = LogFormat::Pretty)]
    pub log_format: LogFormat,

    /// Log filter, in tracing's `EnvFilter` syntax.
    #[arg(long = "log", env = "RUST_LOG", default_value = "info")]
    pub log_filter: String,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable, coloured when the output is a terminal.
    Pretty,
    /// One JSON object a line.
    Json,
}

impl Config {
    /// The defaults, listening on `addr` with the database at `database_url`: for tests and
    /// embedding.
    pub fn new(addr: SocketAddr, database_url: impl Into<String>) -> Self {
        let mut config = Config::parse_from(["shop"]);
        config.addr = addr;
        config.database_url = database_url.into();
        config
    }
}
