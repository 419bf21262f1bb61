//! After-response tasks over a real socket: they run after the response, in order, and a task
//! that fails or panics changes neither the response nor the tasks after it.
#![allow(clippy::unwrap_used)]
mod common;

use std::time::{Duration, Instant};

use axum::extract::State;
use axum::routing::get;
use axum::Router;
use keel::layers::ServiceLayers;
use keel::tasks::Tasks;
use tokio::sync::mpsc;

type Done = mpsc::UnboundedSender<&'static str>;

async fn three_tasks(State(done): State<Done>, tasks: Tasks) -> &'static str {
    tasks.add("fails", async {
        Err::<(), _>("the analytics store is down")
    });
    tasks.add("panics", async {
        if true {
            panic!("boom in a task");
        }
    });
    let d = done.clone();
    tasks.add("records", async move {
        d.send("third").unwrap();
    });
    "ok"
}

async fn slow_task(State(done): State<Done>, tasks: Tasks) -> &'static str {
    tasks.add("slow", async move {
        tokio::time::sleep(Duration::from_secs(2)).await;
        done.send("slow").unwrap();
    });
    "fast"
}

async fn fails_after_queuing(State(done): State<Done>, tasks: Tasks) -> Result<(), keel::ApiError> {
    tasks.add("never", async move {
        done.send("ran").unwrap();
    });
    Err(keel::ApiError::not_found("thing", 1))
}

async fn spawn() -> (std::net::SocketAddr, mpsc::UnboundedReceiver<&'static str>) {
    let (done, rx) = mpsc::unbounded_channel();
    let routes = Router::new()
        .route("/three", get(three_tasks))
        .route("/slow", get(slow_task))
        .route("/fails", get(fails_after_queuing))
        .with_state(done);
    (common::serve(ServiceLayers::new().apply(routes)).await, rx)
}

#[tokio::test]
async fn a_failing_or_panicking_task_changes_neither_the_response_nor_later_tasks() {
    let (addr, mut done) = spawn().await;
    let res = reqwest::Client::new()
        .get(format!("http://{addr}/three"))
        .header("x-request-id", "tasks-1")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-request-id"], "tasks-1");
    assert_eq!(res.text().await.unwrap(), "ok");

    let third = tokio::time::timeout(Duration::from_secs(5), done.recv())
        .await
        .unwrap();
    assert_eq!(third, Some("third"));

    // Both failures are logged once each, with the request id.
    let logs = common::logs();
    let failures: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("tasks-1") && l.contains("after-response task failed"))
        .collect();
    assert_eq!(failures.len(), 2, "{logs}");
    assert!(
        failures[0].contains("task=\"fails\"")
            && failures[0].contains("the analytics store is down")
    );
    assert!(
        failures[1].contains("task=\"panics\"") && failures[1].contains("panicked: boom in a task")
    );

    // The service goes on.
    let res = reqwest::get(format!("http://{addr}/three")).await.unwrap();
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn tasks_start_after_the_response_and_never_delay_it() {
    let (addr, mut done) = spawn().await;
    let started = Instant::now();
    let res = reqwest::get(format!("http://{addr}/slow")).await.unwrap();
    assert_eq!(res.text().await.unwrap(), "fast");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    let slow = tokio::time::timeout(Duration::from_secs(5), done.recv())
        .await
        .unwrap();
    assert_eq!(slow, Some("slow"));
    assert!(started.elapsed() >= Duration::from_secs(2));
}

#[tokio::test]
async fn tasks_of_a_request_that_failed_are_dropped() {
    let (addr, mut done) = spawn().await;
    let res = reqwest::get(format!("http://{addr}/fails")).await.unwrap();
    assert_eq!(res.status(), 404);
    let outcome = tokio::time::timeout(Duration::from_millis(500), done.recv()).await;
    assert!(outcome.is_err(), "the task ran: {outcome:?}");
}
