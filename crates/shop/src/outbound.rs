//! Sending webhooks: one signed POST per attempt, to an address the SSRF guard accepted.
//!
//! The HTTP client resolves names through [`keel::webhooks::ssrf::resolve`], so the address it
//! connects to is the address that was checked; literal addresses are checked before the
//! request. Redirects are not followed (a redirect could point anywhere).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use keel::jobs::JobError;
use keel::webhooks::ssrf::{self, SsrfError};
use keel::webhooks::{sign, Secret, WEBHOOK_ID, WEBHOOK_SIGNATURE, WEBHOOK_TIMESTAMP};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use crate::store::webhooks::Outgoing;

/// Longest error message kept on a delivery: the cause, never a response body or a secret.
const MAX_ERROR_LEN: usize = 300;

/// The outcome of one attempt, for the delivery row and the job.
#[derive(Debug)]
pub struct Attempt {
    pub status_code: Option<u16>,
    pub error: Option<String>,
    pub result: Result<(), JobError>,
}

/// Sends webhooks.
#[derive(Debug, Clone)]
pub struct Sender {
    client: reqwest::Client,
    allow_private: bool,
}

#[derive(Debug)]
struct GuardedResolver {
    allow_private: bool,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = ssrf::resolve(name.as_str(), 0, allow_private).await?;
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

impl Sender {
    pub fn new(timeout: Duration, allow_private: bool) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .dns_resolver(Arc::new(GuardedResolver { allow_private }))
            .user_agent("shop-webhooks/1")
            .build()?;
        Ok(Sender {
            client,
            allow_private,
        })
    }

    /// One attempt: 2xx succeeds; network errors, timeouts, 429 and 5xx are retried (after
    /// `Retry-After` when given); any other answer, and an address the guard refuses, ends it.
    pub async fn send(&self, outgoing: &Outgoing, now_secs: i64) -> Attempt {
        if let Err(err) = ssrf::check_url(&outgoing.url, self.allow_private) {
            return failed(None, err.to_string(), JobError::permanent(err.to_string()));
        }
        let Ok(secret) = Secret::parse(&outgoing.secret) else {
            return failed(
                None,
                "invalid endpoint secret".into(),
                JobError::permanent("invalid endpoint secret"),
            );
        };
        let mut signature = sign(
            &secret,
            &outgoing.message_id,
            now_secs,
            outgoing.payload.as_bytes(),
        );
        // During a rotation the old secret signs too: receivers that still hold it verify,
        // and Standard Webhooks allows several signatures separated by spaces.
        if let Some(previous) = outgoing
            .previous_secret
            .as_deref()
            .and_then(|s| Secret::parse(s).ok())
        {
            signature.push(' ');
            signature.push_str(&sign(
                &previous,
                &outgoing.message_id,
                now_secs,
                outgoing.payload.as_bytes(),
            ));
        }
        let sent = self
            .client
            .post(&outgoing.url)
            .header(WEBHOOK_ID, &outgoing.message_id)
            .header(WEBHOOK_TIMESTAMP, now_secs.to_string())
            .header(WEBHOOK_SIGNATURE, signature)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(outgoing.payload.clone())
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(err) => {
                let message = describe(&err);
                // A request that cannot even be built (a URL the client refuses) never will.
                let result = if is_refused_address(&err) || err.is_builder() {
                    JobError::permanent(message.clone())
                } else {
                    JobError::retry(message.clone())
                };
                return failed(None, message, result);
            }
        };
        let status = response.status();
        let code = Some(status.as_u16());
        if status.is_success() {
            return Attempt {
                status_code: code,
                error: None,
                result: Ok(()),
            };
        }
        let message = format!("receiver answered {}", status.as_u16());
        if status == reqwest::StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
            let retry_after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(retry_after);
            let result = match retry_after {
                Some(delay) => JobError::retry_after(message.clone(), delay),
                None => JobError::retry(message.clone()),
            };
            return failed(code, message, result);
        }
        failed(code, message.clone(), JobError::permanent(message))
    }
}

/// `Retry-After` as seconds or as an HTTP date (RFC 9110 §10.2.3); a date in the past is now.
fn retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(
        at.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

fn failed(status_code: Option<u16>, error: String, result: JobError) -> Attempt {
    let mut error = error;
    if error.len() > MAX_ERROR_LEN {
        let mut end = MAX_ERROR_LEN;
        while !error.is_char_boundary(end) {
            end -= 1;
        }
        error.truncate(end);
    }
    Attempt {
        status_code,
        error: Some(error),
        result: Err(result),
    }
}

/// A short cause, without the URL (which may carry a token in its query).
fn describe(err: &reqwest::Error) -> String {
    if err.is_timeout() {
        return "timed out".into();
    }
    if is_refused_address(err) {
        return SsrfError::Forbidden.to_string();
    }
    if err.is_connect() {
        return "connection failed".into();
    }
    // The innermost cause says what happened without repeating the URL.
    let mut cause: &(dyn std::error::Error + 'static) = err;
    while let Some(inner) = cause.source() {
        cause = inner;
    }
    if err.is_status() || err.is_request() || err.is_body() || err.is_decode() {
        format!("request failed: {cause}")
    } else {
        format!("failed: {cause}")
    }
}

fn is_refused_address(err: &reqwest::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(inner) = source {
        if let Some(SsrfError::Forbidden) = inner.downcast_ref::<SsrfError>() {
            return true;
        }
        source = inner.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        assert_eq!(retry_after(" 120 "), Some(Duration::from_secs(120)));
        let in_a_minute = std::time::SystemTime::now() + Duration::from_secs(61);
        let delay = retry_after(&httpdate::fmt_http_date(in_a_minute)).unwrap();
        assert!(
            (Duration::from_secs(59)..=Duration::from_secs(61)).contains(&delay),
            "{delay:?}"
        );
        assert_eq!(
            retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after("soon"), None);
    }
}
