//! The first scrape of a fresh service: every gauge is there, at 0. (Its own test binary:
//! the metrics recorder is global to the process.)
#![allow(clippy::unwrap_used)]
mod common;

use common::spawn_app;

#[tokio::test]
async fn every_queue_state_and_socket_path_is_exported_at_0_from_the_first_scrape() {
    let app = spawn_app().await;
    let text = app.get("/metrics").await.text().await.unwrap();
    for queue in ["email", "webhooks", "payments", "orders"] {
        for state in ["pending", "running", "succeeded", "dead"] {
            let line = format!(r#"background_jobs{{queue="{queue}",state="{state}"}} 0"#);
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing from:\n{text}"
            );
        }
    }
    for path in ["/ws", "/ws/events"] {
        let line = format!(r#"websocket_connections{{path="{path}"}} 0"#);
        assert!(
            text.lines().any(|l| l == line),
            "{line} missing from:\n{text}"
        );
    }
    assert!(
        text.lines()
            .any(|l| l == "websocket_messages_dropped_total 0"),
        "{text}"
    );
}
