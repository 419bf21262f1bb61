//! Logging: a tracing subscriber writing to stdout, pretty or JSON, filtered by `RUST_LOG`.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::{Config, LogFormat};

/// Installs the global subscriber. Called once, by `main`.
pub fn init(config: &Config) {
    let filter = EnvFilter::try_new(&config.log_filter).unwrap_or_else(|err| {
        eprintln!(
            "invalid RUST_LOG {:?} ({err}); using \"info\"",
            config.log_filter
        );
        EnvFilter::new("info")
    });
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match config.log_format {
        // Colour only on a terminal: a file or a pipe gets plain text.
        LogFormat::Pretty => builder.with_ansi(std::io::stdout().is_terminal()).init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .init(),
    }
}
