//! Shared by keel's integration tests: serving an app on a real socket, and capturing logs.
#![allow(dead_code, clippy::unwrap_used)]

use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};

use axum::Router;

pub mod pg;
pub mod skip;

/// Serves `app` on 127.0.0.1:0 and returns its address. Installs the log capture first.
pub async fn serve(app: impl Into<Router>) -> SocketAddr {
    let app: Router = app.into();
    buffer();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// Everything logged so far by the tests of this binary.
pub fn logs() -> String {
    String::from_utf8(buffer().lock().unwrap().clone()).unwrap()
}

/// The log lines written by every test of this binary.
fn buffer() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let writer = buffer.clone();
        tracing_subscriber::fmt()
            .with_env_filter("debug")
            .with_ansi(false)
            .with_writer(move || SharedWriter(writer.clone()))
            .init();
        buffer
    })
}

struct SharedWriter(Arc<Mutex<Vec<u8>>>);

impl Write for SharedWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
