//! The real `shop` binary as a child process, on a port of its own.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::eventually;

/// A port that nothing listens on (for now).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Sends SIGTERM with the shell's own `kill`, which needs no package beyond the shell.
pub fn sigterm(pid: &str) -> std::process::ExitStatus {
    Command::new("sh")
        .args(["-c", &format!("kill -TERM {pid}")])
        .status()
        .unwrap()
}

pub struct Shop {
    pub child: Child,
    pub port: u16,
}

impl Shop {
    /// `shop` on the SQLite file `db`, mailing through `smtp_port`.
    pub async fn start(db: &std::path::Path, smtp_port: u16) -> Shop {
        Self::start_with(db, smtp_port, &[]).await
    }

    /// Like [`Shop::start`], with more environment.
    pub async fn start_with(db: &std::path::Path, smtp_port: u16, env: &[(&str, &str)]) -> Shop {
        Self::start_on(&format!("sqlite://{}", db.display()), smtp_port, env).await
    }

    /// `shop` on the database at `database_url`.
    pub async fn start_on(database_url: &str, smtp_port: u16, env: &[(&str, &str)]) -> Shop {
        let port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_shop"))
            .env("SHOP_ADDR", format!("127.0.0.1:{port}"))
            .env("DATABASE_URL", database_url)
            .env("SMTP_URL", format!("smtp://127.0.0.1:{smtp_port}"))
            .env("SHOP_JOB_BACKOFF_BASE_MS", "100")
            .env("SHOP_JOB_TIMEOUT_SECS", "1")
            .env(
                "RUST_LOG",
                std::env::var("SHOP_TEST_LOG").unwrap_or_else(|_| "off".into()),
            )
            .envs(env.iter().copied())
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let shop = Shop { child, port };
        eventually(20, "shop to listen", || async {
            reqwest::get(shop.url("/healthz")).await.ok().map(drop)
        })
        .await;
        shop
    }

    /// Sends SIGTERM and waits for the exit, at most `secs` seconds.
    pub async fn terminate(&mut self, secs: u64) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let sent = sigterm(&pid);
        assert!(sent.success());
        let deadline = std::time::Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(std::time::Instant::now() < deadline, "shop did not exit");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }
}

impl Drop for Shop {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
