//! The service's settings: each one a `shop --help` flag and an environment variable, with the
//! defaults of the contract. `shop --help` is the configuration reference.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

/// shop: users, products and orders over HTTP, built on keel.
#[derive(Debug, Clone, Parser)]
#[command(name = "shop", version, about)]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "SHOP_ADDR", default_value = "127.0.0.1:8000")]
    pub addr: SocketAddr,

    /// Database: `sqlite://PATH` (created and migrated at start-up; one instance), or
    /// `postgres://USER@HOST[:PORT]/DATABASE` (migrated at start-up; any number of instances).
    #[arg(long, env = "DATABASE_URL", default_value = "sqlite://shop.db")]
    pub database_url: String,

    /// Most connections this instance opens to PostgreSQL (unused on SQLite).
    #[arg(long, env = "SHOP_DB_MAX_CONNECTIONS", default_value_t = crate::store::DEFAULT_MAX_CONNECTIONS)]
    pub db_max_connections: u32,

    /// SMTP server for outgoing mail (`smtp://[user:pass@]host[:port]`, `?tls=required` for
    /// STARTTLS, `smtps://` for TLS); unset, mail is written
    /// as `.eml` files into the mail folder.
    #[arg(long, env = "SMTP_URL")]
    pub smtp_url: Option<String>,

    /// Redis (`redis://host:port`) that carries WebSocket broadcasts to every instance; unset,
    /// one instance.
    #[arg(long, env = "REDIS_URL")]
    pub redis_url: Option<String>,

    /// Prefix of the Redis channels (`{prefix}/ws`, `{prefix}/ws/events`): deployments that
    /// share one Redis keep apart by giving each its own.
    #[arg(long, env = "SHOP_REDIS_PREFIX", default_value = "shop:ws:")]
    pub redis_prefix: String,

    /// Folder for `.eml` files when there is no SMTP server.
    #[arg(long, env = "SHOP_MAIL_DIR", default_value = "./mail")]
    pub mail_dir: PathBuf,

    /// Sender of outgoing mail.
    #[arg(
        long,
        env = "SHOP_MAIL_FROM",
        default_value = "shop <no-reply@shop.localhost>"
    )]
    pub mail_from: String,

    /// Attempts of a background job before it is dead.
    #[arg(long, env = "SHOP_JOB_MAX_ATTEMPTS", default_value_t = 8,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub job_max_attempts: u32,

    /// First retry delay of a failed job, in ms; each retry doubles it (capped at 1 h), with
    /// jitter.
    #[arg(long, env = "SHOP_JOB_BACKOFF_BASE_MS", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    pub job_backoff_base_ms: u64,

    /// Job worker loops in this process.
    #[arg(long, env = "SHOP_JOB_WORKERS", default_value_t = 2,
          value_parser = clap::value_parser!(u16).range(1..))]
    pub job_workers: u16,

    /// Seconds one attempt of a job may run before it counts as failed.
    #[arg(long, env = "SHOP_JOB_TIMEOUT_SECS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub job_timeout_secs: u64,

    /// Seconds a pending order waits for its payment; then it is cancelled and its stock put
    /// back.
    #[arg(long, env = "SHOP_ORDER_PAYMENT_WINDOW_SECS", default_value_t = 900,
          value_parser = clap::value_parser!(u64).range(1..=31_536_000))]
    pub order_payment_window_secs: u64,

    /// Days that finished jobs, webhook deliveries, processed inbound webhooks and analytics
    /// events are kept; older ones are deleted.
    #[arg(long, env = "SHOP_RETENTION_DAYS", default_value_t = 7,
          value_parser = clap::value_parser!(u32).range(1..=36_500))]
    pub retention_days: u32,

    /// Seconds an `Idempotency-Key` and its stored answer are kept: a retry within it gets the
    /// first answer again.
    #[arg(long, env = "SHOP_IDEMPOTENCY_TTL_SECS", default_value_t = 86_400,
          value_parser = clap::value_parser!(u64).range(1..=31_536_000))]
    pub idempotency_ttl_secs: u64,

    /// Seconds between two passes of the retention task.
    #[arg(long, env = "SHOP_RETENTION_INTERVAL_SECS", default_value_t = 3_600,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub retention_interval_secs: u64,

    /// Seconds that running jobs and after-response tasks get to finish at shutdown.
    #[arg(long, env = "SHOP_SHUTDOWN_GRACE_SECS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(0..=3_600))]
    pub shutdown_grace_secs: u64,

    /// Largest WebSocket frame a client may send; larger closes the connection with 1009.
    #[arg(long, env = "SHOP_WS_MAX_MESSAGE_BYTES", default_value_t = 65_536)]
    pub ws_max_message_bytes: usize,

    /// Bytes of outbound messages queued per WebSocket connection; a client that cannot keep up
    /// and whose queue is full is closed with 1013.
    #[arg(long, env = "SHOP_WS_QUEUE_BYTES", default_value_t = 1_048_576,
          value_parser = clap::value_parser!(u64).range(1..=1_073_741_824))]
    pub ws_queue_bytes: u64,

    /// Bytes a second one WebSocket client may send (each message counts at least 64); past
    /// its budget its frames are read later, which slows it through TCP. 0: no limit.
    #[arg(long, env = "SHOP_WS_SEND_RATE_BYTES", default_value_t = 1_048_576)]
    pub ws_send_rate_bytes: u64,

    /// Bytes a WebSocket client may send at once before `SHOP_WS_SEND_RATE_BYTES` paces it.
    #[arg(long, env = "SHOP_WS_SEND_BURST_BYTES", default_value_t = 1_048_576)]
    pub ws_send_burst_bytes: u64,

    /// Seconds a WebSocket peer may stay silent (pongs included) before it is dropped; pings go
    /// out at a third of it.
    #[arg(long, env = "SHOP_WS_IDLE_TIMEOUT_SECS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub ws_idle_timeout_secs: u64,

    /// Seconds a WebSocket client may take to accept one burst of frames before it is dropped.
    #[arg(long, env = "SHOP_WS_WRITE_TIMEOUT_SECS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=3_600))]
    pub ws_write_timeout_secs: u64,

    /// The service's own origin as browsers see it (`https://shop.example.com`, scheme
    /// included): pages there may open WebSockets. Unset, the origin is taken from each
    /// request's `Host` header, a development default that DNS rebinding gets past.
    #[arg(long, env = "SHOP_PUBLIC_ORIGIN")]
    pub public_origin: Option<String>,

    /// Origins (`https://app.example.com`, comma-separated) whose pages may open WebSockets
    /// besides the service's own; a browser's handshake from any other is refused with 403.
    #[arg(long, env = "SHOP_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,

    /// Secret (`whsec_…`) of the payment provider's webhooks; unset, `/webhooks/payments`
    /// answers 503.
    #[arg(long, env = "SHOP_PAYMENTS_SECRET")]
    pub payments_secret: Option<String>,

    /// Allow outbound webhooks to loopback and private addresses (for local testing).
    #[arg(long, env = "SHOP_WEBHOOK_ALLOW_PRIVATE", default_value_t = false,
          action = clap::ArgAction::Set)]
    pub webhook_allow_private: bool,

    /// Seconds one outbound webhook attempt may take.
    #[arg(long, env = "SHOP_WEBHOOK_TIMEOUT_SECS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=3_600))]
    pub webhook_timeout_secs: u64,

    /// Bearer token of the operator routes (`/webhook-endpoints…`, `/admin…`), at least 16
    /// characters; unset (or empty), they answer 403.
    #[arg(long, env = "SHOP_ADMIN_TOKEN")]
    pub admin_token: Option<String>,

    /// Largest accepted request body, in bytes; larger bodies are answered 413.
    #[arg(long, env = "SHOP_MAX_BODY_BYTES", default_value_t = 1_048_576)]
    pub max_body_bytes: usize,

    /// Seconds a request may run before it is answered 504.
    #[arg(long, env = "SHOP_REQUEST_TIMEOUT_SECS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub request_timeout_secs: u64,

    /// Seconds within which a request's headers must be complete, counted from their first
    /// byte (from the connection's start for its first request); past it the connection is
    /// dropped.
    #[arg(long, env = "SHOP_HEADER_TIMEOUT_SECS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=3_600))]
    pub header_timeout_secs: u64,

    /// Seconds after which a keep-alive connection with no request in flight is closed.
    #[arg(long, env = "SHOP_IDLE_TIMEOUT_SECS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub idle_timeout_secs: u64,

    /// Seconds a write to a client (a response or a WebSocket frame) may make no progress, the
    /// client reading nothing, before its connection is closed. A slow reader that keeps
    /// reading is never cut.
    #[arg(long, env = "SHOP_SEND_TIMEOUT_SECS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub send_timeout_secs: u64,

    /// Connections open at once, WebSockets included; past it, new connections wait in the
    /// listen backlog.
    #[arg(long, env = "SHOP_MAX_CONNECTIONS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,

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
    /// The limits of every WebSocket connection.
    pub fn ws_config(&self) -> keel::ws::WsConfig {
        keel::ws::WsConfig {
            max_message_bytes: self.ws_max_message_bytes,
            queue_bytes: usize::try_from(self.ws_queue_bytes).unwrap_or(usize::MAX),
            send_rate_bytes: self.ws_send_rate_bytes,
            send_burst_bytes: self.ws_send_burst_bytes,
            idle_timeout: Duration::from_secs(self.ws_idle_timeout_secs),
            write_timeout: Duration::from_secs(self.ws_write_timeout_secs),
        }
    }

    /// How connections are served.
    pub fn server(&self) -> keel::serve::Server {
        keel::serve::Server::new()
            .header_timeout(Duration::from_secs(self.header_timeout_secs))
            .idle_timeout(Duration::from_secs(self.idle_timeout_secs))
            .send_timeout(Duration::from_secs(self.send_timeout_secs))
            .max_connections(self.max_connections as usize)
    }

    /// Descriptors kept aside for everything but client connections: 128 for mail, outbound
    /// webhooks, files and the runtime, and three per database connection (SQLite's database,
    /// journal and shared-memory files).
    pub fn reserved_files(&self) -> usize {
        128 + 3 * self.db_max_connections as usize
    }

    /// How the job workers run.
    pub fn worker_config(&self) -> keel::jobs::WorkerConfig {
        keel::jobs::WorkerConfig {
            workers: usize::from(self.job_workers),
            job_timeout: Duration::from_secs(self.job_timeout_secs),
            backoff_base: Duration::from_millis(self.job_backoff_base_ms),
            shutdown_grace: Duration::from_secs(self.shutdown_grace_secs),
            ..keel::jobs::WorkerConfig::default()
        }
    }

    /// The defaults, listening on `addr` with the database at `database_url`: for tests and
    /// embedding.
    ///
    /// The environment is not read: a developer's `SMTP_URL` must not leak into a test.
    pub fn new(addr: SocketAddr, database_url: impl Into<String>) -> Self {
        use clap::{CommandFactory, FromArgMatches};
        let command = Config::command().mut_args(|arg| arg.env(None));
        let mut config = command
            .try_get_matches_from(["shop"])
            .and_then(|matches| Config::from_arg_matches(&matches))
            .unwrap_or_else(|err| err.exit());
        config.addr = addr;
        config.database_url = database_url.into();
        config
    }
}
