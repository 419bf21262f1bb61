//! The hub's bookkeeping over a real socket: a connection leaves its topic however it ends,
//! a handler that panics included.
#![allow(clippy::unwrap_used)]
mod common;

use std::time::Duration;

use axum::routing::get;
use axum::Router;
use futures_util::SinkExt;
use keel::layers::ServiceLayers;
use keel::ws::{Hub, WsConfig, WsUpgrade};
use tokio_tungstenite::tungstenite::Message;

async fn until_empty(hub: &Hub) {
    for _ in 0..250 {
        if hub.connection_counts().is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "connections still registered: {:?}",
        hub.connection_counts()
    );
}

#[tokio::test]
async fn a_connection_leaves_the_hub_even_when_its_handler_panics() {
    let hub = Hub::new(WsConfig::default());
    let serving = hub.clone();
    let routes = Router::new().route(
        "/boom",
        get(move |WsUpgrade(ws): WsUpgrade| {
            let hub = serving.clone();
            async move {
                hub.serve(ws, "boom", |text| {
                    if text.as_str() == "panic" {
                        panic!("handler exploded");
                    }
                })
            }
        }),
    );
    let addr = common::serve(ServiceLayers::new().apply(routes)).await;

    let (mut client, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/boom"))
        .await
        .unwrap();
    for _ in 0..100 {
        if hub.connection_counts().get("boom") == Some(&1) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(hub.connection_counts().get("boom"), Some(&1));
    client.send(Message::text("fine")).await.unwrap();
    client.send(Message::text("panic")).await.unwrap();
    until_empty(&hub).await;
    assert_eq!(hub.deliver("boom", "anyone?".into()), 0);
}
