//! The live page at `/` in headless Chromium: two tabs chat with each other, and an order made
//! over HTTP appears in the events feed. The screenshot is kept as
//! `target/tmp/shop-home.png`.
#![allow(clippy::unwrap_used)]
mod common;

use common::browser::Browser;
use common::{spawn_app, spawn_app_with};
use serde_json::json;

#[tokio::test]
async fn two_tabs_chat_and_an_order_appears_in_the_feed() {
    let app = spawn_app().await;
    let page = app.get("/").await;
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
    let html = page.text().await.unwrap();
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "the page loads nothing from elsewhere"
    );

    let Some(mut browser) = Browser::launch().await else {
        return;
    };
    let a = browser.open(&app.url("/")).await;
    let b = browser.open(&app.url("/")).await;
    for tab in [&a, &b] {
        browser
            .wait_for(tab, "document.querySelector('#chat-state')?.textContent === 'connected' && document.querySelector('#events-state').textContent === 'connected'", 20)
            .await;
    }

    browser
        .eval(&a, "document.querySelector('#chat-input').value = 'hello from A'; document.querySelector('#chat-send').click(); true")
        .await;
    browser
        .wait_for(
            &b,
            "document.querySelector('#chat-log').textContent.includes('Client says: hello from A')",
            10,
        )
        .await;
    browser
        .wait_for(
            &a,
            "document.querySelector('#chat-log').textContent.includes('Client says: hello from A')",
            10,
        )
        .await;
    assert_eq!(
        browser
            .eval(&a, "document.querySelector('#chat-input').value")
            .await,
        json!("")
    );

    app.create_user("ada@example.com", "ada").await;
    app.create_product("Lamp", 1999, 3).await;
    let res = app
        .post_json(
            "/orders",
            &json!({"user_id": 1, "product_id": 1, "quantity": 2}),
        )
        .await;
    assert_eq!(res.status(), 201);
    for tab in [&a, &b] {
        browser
            .wait_for(tab, "document.querySelector('#events-log').textContent.includes('order.created') && document.querySelector('#events-log').textContent.includes('\"total_cents\":3998')", 10)
            .await;
    }

    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("shop-home.png");
    browser.screenshot(&a, &shot).await;
    println!("screenshot: {}", shot.display());
}

#[tokio::test]
async fn the_page_shows_a_restart_and_reconnects_by_itself() {
    let first = spawn_app().await;
    let addr = first.addr;
    let Some(mut browser) = Browser::launch().await else {
        return;
    };
    let tab = browser.open(&first.url("/")).await;
    let connected = "document.querySelector('#chat-state')?.textContent === 'connected' && document.querySelector('#events-state').textContent === 'connected'";
    browser.wait_for(&tab, connected, 20).await;

    first.stop().await;
    browser
        .wait_for(
            &tab,
            "document.querySelector('#chat-state').textContent !== 'connected'",
            10,
        )
        .await;
    assert_eq!(
        browser
            .eval(&tab, "document.querySelector('#chat-send').disabled")
            .await,
        json!(true)
    );

    // The service comes back on the same address: the page finds it again.
    let second = spawn_app_with(|c| c.addr = addr).await;
    browser.wait_for(&tab, connected, 30).await;
    second.create_user("ada@example.com", "ada").await;
    browser
        .wait_for(
            &tab,
            "document.querySelector('#events-log').textContent.includes('user.created')",
            10,
        )
        .await;
}

#[tokio::test]
async fn the_pages_carry_a_strict_policy_and_chat_html_is_shown_as_text() {
    let app = spawn_app().await;
    for path in ["/", "/admin"] {
        let res = app.get(path).await;
        let policy = res.headers()["content-security-policy"].to_str().unwrap();
        assert!(
            policy.starts_with("default-src 'none'; script-src 'sha256-"),
            "{path}: {policy}"
        );
        assert!(
            policy.contains("frame-ancestors 'none'") && !policy.contains("unsafe"),
            "{policy}"
        );
        assert_eq!(res.headers()["x-content-type-options"], "nosniff");
    }
    let docs = app.get("/docs/").await;
    assert!(docs.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("frame-ancestors 'none'"));

    let Some(mut browser) = Browser::launch().await else {
        return;
    };
    let tab = browser.open(&app.url("/")).await;
    browser
        .wait_for(
            &tab,
            "document.querySelector('#chat-state')?.textContent === 'connected'",
            20,
        )
        .await;
    let (mut client, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", app.addr))
        .await
        .unwrap();
    use futures_util::SinkExt;
    let attack = r#"<img src=x onerror="document.title='pwned'"><b>bold</b>"#;
    client
        .send(tokio_tungstenite::tungstenite::Message::text(attack))
        .await
        .unwrap();
    browser
        .wait_for(
            &tab,
            "document.querySelector('#chat-log').textContent.includes('<img src=x onerror=')",
            10,
        )
        .await;
    let rendered = browser
        .eval(
            &tab,
            "[document.title, document.querySelectorAll('#chat-log img, #chat-log b').length]",
        )
        .await;
    assert_ne!(rendered[0], json!("pwned"));
    assert_eq!(rendered[1], json!(0), "the message became elements");
}
