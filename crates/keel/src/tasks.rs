//! After-response tasks: best-effort work that runs once the response has been sent.
//!
//! Like FastAPI's `BackgroundTasks`, a handler takes a [`Tasks`] extractor and adds futures to
//! it. Unlike it:
//! - the tasks start only when the response body has been handed to the connection in full
//!   (or the client went away), so they never delay the response;
//! - they run one after another, in the order added, each in its own tokio task: a task that
//!   returns an error or panics is logged with the request id and counted in
//!   `background_tasks_failed_total{task}`, and the next task runs all the same;
//! - they run inside the request's span and request-id scope, so their log lines carry the id;
//! - they are tracked by a [`TaskTracker`], so a graceful shutdown can wait for them;
//! - they belong to a successful response: when the request ends in an error (4xx or 5xx,
//!   a panic or a timeout included) the tasks it queued are dropped.
//!
//! They are still in-process and best-effort: a crash loses them. Work that must not be lost
//! belongs in the durable job queue ([`crate::jobs`]).
//!
//! ```no_run
//! use keel::tasks::Tasks;
//!
//! async fn create_user(tasks: Tasks) -> &'static str {
//!     tasks.add("analytics", async {
//!         // record the event; an Err is logged and counted, never shown to the client
//!         Ok::<(), std::io::Error>(())
//!     });
//!     "created"
//! }
//! ```

use std::fmt::Display;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::FromRequestParts;
use axum::response::Response;
use bytes::Bytes;
use http::request::Parts;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, Span};

use crate::error::panic_message;
use crate::request_id::Scope;
use crate::{ApiError, RequestId};

type BoxFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

/// What a task may return: `()` or `Result<(), E>` with a displayable error.
pub trait TaskOutcome {
    /// `Err` with the message to log when the task failed.
    fn into_result(self) -> Result<(), String>;
}

impl TaskOutcome for () {
    fn into_result(self) -> Result<(), String> {
        Ok(())
    }
}

impl<E: Display> TaskOutcome for Result<(), E> {
    fn into_result(self) -> Result<(), String> {
        self.map_err(|e| e.to_string())
    }
}

/// The tasks of one request. Cheap to clone; all clones add to the same list.
#[derive(Clone, Default)]
pub struct Tasks {
    queue: Arc<Mutex<Vec<(&'static str, BoxFuture)>>>,
}

impl std::fmt::Debug for Tasks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let len = self.queue.lock().map(|q| q.len()).unwrap_or(0);
        f.debug_struct("Tasks").field("queued", &len).finish()
    }
}

impl Tasks {
    /// Queues `task`, named `name` in logs and metrics, to run after the response.
    pub fn add<F>(&self, name: &'static str, task: F)
    where
        F: Future + Send + 'static,
        F::Output: TaskOutcome,
    {
        let task: BoxFuture = Box::pin(async move { task.await.into_result() });
        // The lock is held only to push or take, never across an await; a poisoned lock (a
        // panic while pushing) still holds a valid Vec.
        let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        queue.push((name, task));
    }

    fn take(&self) -> Vec<(&'static str, BoxFuture)> {
        let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::take(&mut *queue)
    }
}

/// The request's [`Tasks`]; a 500 when keel's layers are not installed (a programming error).
impl<S: Send + Sync> FromRequestParts<S> for Tasks {
    type Rejection = ApiError;

    async fn from_request_parts(_parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Scope::slot_or_init(Tasks::default).ok_or_else(|| {
            ApiError::internal("the Tasks extractor needs keel::layers::ServiceLayers")
        })
    }
}

/// If the request being served queued tasks, wraps the body so that they start once it has
/// been sent. Called inside the request's scope. Tasks belong to a response that succeeded:
/// after an error (the handler failed after queuing them, panicked, or timed out) they are
/// dropped, as FastAPI drops the background tasks of a request that raised.
pub(crate) fn after_response(response: Response, tracker: &TaskTracker) -> Response {
    let Some(tasks) = Scope::slot::<Tasks>() else {
        return response;
    };
    let queued = tasks.take();
    let Some(request_id) = RequestId::current().filter(|_| !queued.is_empty()) else {
        return response;
    };
    if response.status().is_client_error() || response.status().is_server_error() {
        tracing::debug!(
            tasks = queued.len(),
            status = response.status().as_u16(),
            "after-response tasks dropped: the request failed"
        );
        return response;
    }
    let run = Run {
        tasks: queued,
        tracker: tracker.clone(),
        request_id,
        span: Span::current(),
    };
    response.map(|inner| {
        Body::new(AfterBody {
            inner,
            run: Some(run),
        })
    })
}

/// Everything needed to start a request's tasks, carried by the body until it is dropped.
struct Run {
    tasks: Vec<(&'static str, BoxFuture)>,
    tracker: TaskTracker,
    request_id: RequestId,
    span: Span,
}

impl Run {
    fn start(self) {
        // Bodies are dropped by the connection's task, inside the runtime; outside one (a
        // response built and dropped in a plain test) there is nowhere to run them.
        if tokio::runtime::Handle::try_current().is_err() {
            tracing::warn!(
                tasks = self.tasks.len(),
                "after-response tasks dropped: no runtime"
            );
            return;
        }
        let tracker = self.tracker.clone();
        let span = self.span.clone();
        let work = self
            .request_id
            .clone()
            .scope(run_in_order(self.tasks, tracker.clone()));
        tracker.spawn(work.instrument(span));
    }
}

async fn run_in_order(tasks: Vec<(&'static str, BoxFuture)>, tracker: TaskTracker) {
    for (name, task) in tasks {
        // Each task in its own tokio task, so that a panic ends that task only.
        let request_id = RequestId::current();
        let task = async move {
            match request_id {
                Some(id) => id.scope(task).await,
                None => task.await,
            }
        };
        let outcome = tracker.spawn(task.in_current_span()).await;
        let failure = match outcome {
            Ok(Ok(())) => continue,
            Ok(Err(message)) => message,
            Err(join) if join.is_panic() => {
                format!("panicked: {}", panic_message(join.into_panic()))
            }
            Err(join) => join.to_string(),
        };
        tracing::error!(task = name, error = %failure, "after-response task failed");
        metrics::counter!("background_tasks_failed_total", "task" => name).increment(1);
    }
}

/// A response body that starts the request's tasks when hyper is done with it.
struct AfterBody {
    inner: Body,
    run: Option<Run>,
}

impl http_body::Body for AfterBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for AfterBody {
    fn drop(&mut self) {
        if let Some(run) = self.run.take() {
            run.start();
        }
    }
}
