//! Verification of incoming Standard Webhooks messages.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use hmac::Mac;
use http::HeaderMap;

use super::{Secret, WEBHOOK_ID, WEBHOOK_SIGNATURE, WEBHOOK_TIMESTAMP};

/// How far a message's timestamp may be from now, either way: five minutes.
pub const TOLERANCE_SECS: i64 = 5 * 60;

/// Why a message was refused. Every variant means "401 `invalid_signature`" to the sender;
/// the variants are for the log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// A header is absent or not text.
    #[error("missing or unreadable {0} header")]
    MissingHeader(&'static str),
    /// `webhook-timestamp` is not an integer.
    #[error("webhook-timestamp is not a Unix time")]
    BadTimestamp,
    /// The timestamp is more than five minutes from now.
    #[error("webhook-timestamp is more than five minutes from now")]
    Stale,
    /// No `v1` signature matches.
    #[error("no signature matches")]
    NoMatch,
}

/// Checks the signature headers of a message against `body`, at Unix time `now`. Returns the
/// message's `webhook-id`.
///
/// ```
/// use http::HeaderMap;
/// use keel::webhooks::{sign, verify, Secret, VerifyError};
///
/// let secret = Secret::generate();
/// let body = br#"{"type":"payment.succeeded"}"#;
/// let mut headers = HeaderMap::new();
/// headers.insert("webhook-id", "msg_1".parse().unwrap());
/// headers.insert("webhook-timestamp", "1700000000".parse().unwrap());
/// headers.insert("webhook-signature", sign(&secret, "msg_1", 1700000000, body).parse().unwrap());
///
/// assert_eq!(verify(&secret, &headers, body, 1700000060).as_deref(), Ok("msg_1"));
/// assert_eq!(verify(&secret, &headers, b"{}", 1700000060), Err(VerifyError::NoMatch));
/// assert_eq!(verify(&secret, &headers, body, 1700000400), Err(VerifyError::Stale));
/// ```
pub fn verify(
    secret: &Secret,
    headers: &HeaderMap,
    body: &[u8],
    now: i64,
) -> Result<String, VerifyError> {
    let header = |name: &'static str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
            .ok_or(VerifyError::MissingHeader(name))
    };
    let id = header(WEBHOOK_ID)?;
    let timestamp_text = header(WEBHOOK_TIMESTAMP)?;
    let signatures = header(WEBHOOK_SIGNATURE)?;
    let timestamp: i64 = timestamp_text
        .parse()
        .map_err(|_| VerifyError::BadTimestamp)?;
    if now.abs_diff(timestamp) > TOLERANCE_SECS.unsigned_abs() {
        return Err(VerifyError::Stale);
    }

    let mut mac = secret.mac();
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp_text.as_bytes());
    mac.update(b".");
    mac.update(body);
    for candidate in signatures.split(' ') {
        let Some(encoded) = candidate.strip_prefix("v1,") else {
            continue;
        };
        let Ok(given) = BASE64.decode(encoded) else {
            continue;
        };
        // `verify_slice` compares in constant time.
        if mac.clone().verify_slice(&given).is_ok() {
            return Ok(id.to_owned());
        }
    }
    Err(VerifyError::NoMatch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::webhooks::sign;

    const NOW: i64 = 1_700_000_000;

    fn headers(id: &str, timestamp: &str, signature: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            (WEBHOOK_ID, id),
            (WEBHOOK_TIMESTAMP, timestamp),
            (WEBHOOK_SIGNATURE, signature),
        ] {
            if !value.is_empty() {
                headers.insert(name, value.parse().unwrap());
            }
        }
        headers
    }

    #[test]
    fn one_matching_signature_among_several_is_enough() {
        let secret = Secret::generate();
        let good = sign(&secret, "msg", NOW, b"body");
        let other = sign(&Secret::generate(), "msg", NOW, b"body");
        let all = format!("v2,abc {other} v1,not-base64!! {good}");
        assert_eq!(
            verify(&secret, &headers("msg", "1700000000", &all), b"body", NOW),
            Ok("msg".into())
        );
        assert_eq!(
            verify(&secret, &headers("msg", "1700000000", &other), b"body", NOW),
            Err(VerifyError::NoMatch)
        );
    }

    #[test]
    fn every_part_of_the_message_is_signed() {
        let secret = Secret::generate();
        let sig = sign(&secret, "msg", NOW, b"body");
        assert!(verify(&secret, &headers("msg", "1700000000", &sig), b"body", NOW).is_ok());
        assert_eq!(
            verify(&secret, &headers("msh", "1700000000", &sig), b"body", NOW),
            Err(VerifyError::NoMatch)
        );
        assert_eq!(
            verify(&secret, &headers("msg", "1700000001", &sig), b"body", NOW),
            Err(VerifyError::NoMatch)
        );
        assert_eq!(
            verify(&secret, &headers("msg", "1700000000", &sig), b"bodY", NOW),
            Err(VerifyError::NoMatch)
        );
    }

    #[test]
    fn missing_headers_and_bad_or_stale_timestamps_are_refused() {
        let secret = Secret::generate();
        let sig = sign(&secret, "msg", NOW, b"b");
        assert_eq!(
            verify(&secret, &headers("", "1700000000", &sig), b"b", NOW),
            Err(VerifyError::MissingHeader(WEBHOOK_ID))
        );
        assert_eq!(
            verify(&secret, &headers("msg", "", &sig), b"b", NOW),
            Err(VerifyError::MissingHeader(WEBHOOK_TIMESTAMP))
        );
        assert_eq!(
            verify(&secret, &headers("msg", "1700000000", ""), b"b", NOW),
            Err(VerifyError::MissingHeader(WEBHOOK_SIGNATURE))
        );
        assert_eq!(
            verify(&secret, &headers("msg", "soon", &sig), b"b", NOW),
            Err(VerifyError::BadTimestamp)
        );
        assert_eq!(
            verify(
                &secret,
                &headers("msg", "1700000000", &sig),
                b"b",
                NOW + 301
            ),
            Err(VerifyError::Stale)
        );
        assert_eq!(
            verify(
                &secret,
                &headers("msg", "1700000000", &sig),
                b"b",
                NOW - 301
            ),
            Err(VerifyError::Stale)
        );
        assert!(verify(
            &secret,
            &headers("msg", "1700000000", &sig),
            b"b",
            NOW + 300
        )
        .is_ok());
    }

    #[test]
    fn secrets_parse_with_or_without_their_prefix_and_print_with_it() {
        let secret = Secret::generate();
        let text = secret.to_string();
        assert!(text.starts_with("whsec_"));
        assert_eq!(Secret::parse(&text), Ok(secret.clone()));
        assert_eq!(Secret::parse(&text["whsec_".len()..]), Ok(secret));
        assert_eq!(
            Secret::parse("whsec_???"),
            Err(crate::webhooks::SecretError::NotBase64)
        );
        assert_eq!(
            Secret::parse("whsec_c2hvcnQ="),
            Err(crate::webhooks::SecretError::TooShort)
        );
    }
}
