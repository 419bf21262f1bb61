//! Webhooks on the Standard Webhooks scheme: signing what we send, verifying what we receive,
//! and refusing to send to addresses inside the network.
//!
//! - [`sign()`]: `webhook-id`, `webhook-timestamp` and `webhook-signature` (`v1,` + base64
//!   HMAC-SHA256 of `id.timestamp.body`) for an outgoing message.
//! - [`verify()`]: checks those headers on an incoming message: a signature among the
//!   space-separated ones must match (compared in constant time), and the timestamp must be
//!   within five minutes of now.
//! - [`ssrf`]: which addresses a webhook may never be sent to, and a resolver that refuses
//!   them, so the address connected to is the address checked.
//!
//! Secrets are `whsec_` + base64 of the key bytes, as every Standard Webhooks library expects.

pub mod sign;
pub mod ssrf;
pub mod verify;

pub use sign::{sign, Secret, SecretError};
pub use verify::{verify, VerifyError};

/// Header carrying the message id, the same on every attempt.
pub const WEBHOOK_ID: &str = "webhook-id";
/// Header carrying the attempt's Unix time in seconds.
pub const WEBHOOK_TIMESTAMP: &str = "webhook-timestamp";
/// Header carrying the signatures, space-separated, each `v1,` + base64.
pub const WEBHOOK_SIGNATURE: &str = "webhook-signature";
