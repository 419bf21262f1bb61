//! The hub's bookkeeping over a real socket: a connection leaves its topic however it ends,
//! a handler that panics included.
#![allow(clippy::unwrap_used)]
mod common;

use std::time::Duration;

use axum::routing::get;
use axum::Router;
use futures_util::{SinkExt, StreamExt};
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

#[tokio::test]
async fn close_on_a_signal_closes_every_client_with_1001() {
    let hub = Hub::new(WsConfig::default());
    let serving = hub.clone();
    let routes = Router::new().route(
        "/live",
        get(move |WsUpgrade(ws): WsUpgrade| {
            let hub = serving.clone();
            async move { hub.serve(ws, "live", |_| {}) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let signal = async move {
        let _ = stopped.await;
    };
    let served = tokio::spawn(keel::serve::Server::new().serve(
        listener,
        ServiceLayers::new().apply(routes),
        hub.close_on(signal),
    ));
    let (mut client, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/live"))
        .await
        .unwrap();
    stop.send(()).unwrap();
    let close = loop {
        match tokio::time::timeout(Duration::from_secs(5), client.next()).await {
            Ok(Some(Ok(Message::Close(frame)))) => break frame.map(|f| u16::from(f.code)),
            Ok(Some(Ok(_))) => {}
            other => panic!("no close frame: {other:?}"),
        }
    };
    assert_eq!(close, Some(1001));
    hub.shutdown(Duration::from_secs(5)).await;
    tokio::time::timeout(Duration::from_secs(5), served)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}
