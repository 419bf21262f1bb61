//! Tools some tests need beyond Rust: Chromium for the pages, Python's `standardwebhooks` for
//! an independent check of webhook signatures.
//!
//! A test whose tool is missing says so on stderr and returns without checking anything, so
//! that the rest of the suite runs on a machine with only the Rust toolchain. CI installs
//! the tools and sets `KEEL_REQUIRE_TEST_TOOLS=1`, which turns a missing tool into a failure:
//! there, nothing is skipped.

#[path = "../../../keel/tests/common/skip.rs"]
mod skip;

/// Whether `tool` may be used; when not, reports the skip (or fails under CI).
fn available(tool: &str, found: bool, install: &str) -> bool {
    if !found {
        skip::skip(tool, install);
    }
    found
}

/// The Chromium binary (`CHROMIUM`, or Debian's `/usr/bin/chromium`), if installed.
pub fn chromium() -> Option<String> {
    let path = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let found = std::path::Path::new(&path).exists();
    available("Chromium", found, "apt-get install chromium").then_some(path)
}

/// Whether Python's `standardwebhooks` package can be imported.
pub fn standardwebhooks() -> bool {
    let found = std::process::Command::new("python3")
        .args(["-c", "import standardwebhooks"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    available(
        "Python's standardwebhooks",
        found,
        "python3 -m pip install standardwebhooks",
    )
}

/// Whether a Redis server answers at 127.0.0.1:6379.
pub fn redis() -> bool {
    let found = std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], 6379)),
        std::time::Duration::from_secs(1),
    )
    .is_ok();
    available(
        "Redis at 127.0.0.1:6379",
        found,
        "apt-get install redis-server, then start it",
    )
}

/// Whether a PostgreSQL server answers at 127.0.0.1:5432 (or `TEST_POSTGRES_URL` is set).
pub fn postgres() -> bool {
    let found = std::env::var_os(super::pg::URL_VARIABLE).is_some()
        || std::net::TcpStream::connect_timeout(
            &std::net::SocketAddr::from(([127, 0, 0, 1], 5432)),
            std::time::Duration::from_secs(1),
        )
        .is_ok();
    available(
        "PostgreSQL at 127.0.0.1:5432",
        found,
        "apt-get install postgresql, then start it",
    )
}

/// Whether Python's `websockets` package (13 or later: the sync and asyncio clients) can be
/// imported.
pub fn python_websockets() -> bool {
    let found = std::process::Command::new("python3")
        .args([
            "-c",
            "import websockets.sync.client, websockets.asyncio.client",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    available(
        "Python's websockets",
        found,
        "python3 -m pip install websockets",
    )
}
