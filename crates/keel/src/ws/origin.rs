//! Which web pages may open a WebSocket to the service.
//!
//! A browser lets any page it shows open a WebSocket to any host, sending the page's origin in
//! the handshake's `Origin` header; without a check, every site a user visits can listen to
//! what the service broadcasts, with the user's cookies. [`AllowedOrigins::check`] accepts a
//! handshake without `Origin` (not a browser), one from the service's own origin, and one from
//! a configured origin; it refuses the rest with 403 `origin_not_allowed`.
//!
//! The service's own origin is the public origin it is configured with
//! ([`AllowedOrigins::public_origin`], scheme included). Without one it is taken from the
//! request's `Host` header (same host and port, either scheme): a development default only,
//! since a page on a rebinding domain controls both `Host` and `Origin`.

use std::sync::Arc;

use http::header::{HOST, ORIGIN};
use http::{HeaderMap, StatusCode};

use crate::ApiError;

/// Origins allowed besides the service's own. Cheap to clone.
///
/// ```
/// use keel::ws::AllowedOrigins;
/// use http::HeaderMap;
///
/// let allowed = AllowedOrigins::new(["https://app.example.com"]);
/// let mut handshake = HeaderMap::new();
/// handshake.insert("host", "api.example.com".parse().unwrap());
/// assert!(allowed.check(&handshake).is_ok()); // no Origin: not a browser
/// handshake.insert("origin", "https://APP.example.com".parse().unwrap());
/// assert!(allowed.check(&handshake).is_ok());
/// handshake.insert("origin", "https://api.example.com".parse().unwrap());
/// assert!(allowed.check(&handshake).is_ok()); // the service's own
/// handshake.insert("origin", "https://evil.example".parse().unwrap());
/// assert_eq!(allowed.check(&handshake).unwrap_err().code(), "origin_not_allowed");
/// ```
#[derive(Debug, Clone, Default)]
pub struct AllowedOrigins(Arc<Origins>);

#[derive(Debug, Default)]
struct Origins {
    /// The service's own origin, normalised; `None`: read from `Host`.
    public: Option<String>,
    others: Vec<String>,
}

impl AllowedOrigins {
    /// The service's own origin and `origins` (`scheme://host[:port]`, compared without case
    /// and without a trailing `/`).
    pub fn new<I>(origins: I) -> Self
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let others: Vec<String> = origins
            .into_iter()
            .map(|o| normalise(o.as_ref()))
            .filter(|o| !o.is_empty())
            .collect();
        AllowedOrigins(Arc::new(Origins {
            public: None,
            others,
        }))
    }

    /// Makes `origin` (`https://shop.example.com`, scheme included) the service's own, instead
    /// of whatever the request's `Host` names. An empty `origin` changes nothing.
    ///
    /// ```
    /// use keel::ws::AllowedOrigins;
    /// use http::HeaderMap;
    ///
    /// let allowed = AllowedOrigins::default().public_origin("https://shop.example.com");
    /// let mut handshake = HeaderMap::new();
    /// handshake.insert("host", "evil.example".parse().unwrap());
    /// handshake.insert("origin", "http://evil.example".parse().unwrap());
    /// assert!(allowed.check(&handshake).is_err()); // DNS rebinding: Host is the attacker's
    /// handshake.insert("origin", "https://shop.example.com:443".parse().unwrap());
    /// assert!(allowed.check(&handshake).is_ok());
    /// handshake.insert("origin", "http://shop.example.com".parse().unwrap());
    /// assert!(allowed.check(&handshake).is_err()); // another scheme is another origin
    /// ```
    pub fn public_origin(self, origin: &str) -> Self {
        let public = normalise(origin);
        if public.is_empty() {
            return self;
        }
        AllowedOrigins(Arc::new(Origins {
            public: Some(public),
            others: self.0.others.clone(),
        }))
    }

    /// Accepts a handshake without `Origin`, from the service's own origin, or from an
    /// allowed one; anything else is 403 `origin_not_allowed`.
    pub fn check(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let Some(origin) = headers.get(ORIGIN) else {
            return Ok(());
        };
        let origin = origin.to_str().map(normalise).unwrap_or_default();
        let own = match &self.0.public {
            Some(public) => *public == origin,
            None => headers
                .get(HOST)
                .and_then(|h| h.to_str().ok())
                .is_some_and(|host| same_authority(&origin, &host.to_ascii_lowercase())),
        };
        if own || self.0.others.contains(&origin) {
            return Ok(());
        }
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "origin_not_allowed",
            "Origin not allowed",
        ))
    }
}

/// Lower case, no trailing `/`, no default port: `HTTPS://A.example:443/` is `https://a.example`.
fn normalise(origin: &str) -> String {
    let origin = origin.trim().trim_end_matches('/').to_ascii_lowercase();
    for (scheme, port) in [("https://", ":443"), ("http://", ":80")] {
        if origin.starts_with(scheme) {
            if let Some(bare) = origin.strip_suffix(port) {
                return bare.to_owned();
            }
        }
    }
    origin
}

/// Whether `origin` (`scheme://authority`) names the same host and port as a `Host` header,
/// the scheme's default port written or not.
fn same_authority(origin: &str, host: &str) -> bool {
    let Some((scheme, authority)) = origin.split_once("://") else {
        return false;
    };
    let default_port = match scheme {
        "http" => ":80",
        "https" => ":443",
        _ => return false,
    };
    let strip = |a: &str| a.strip_suffix(default_port).unwrap_or(a).to_owned();
    !authority.is_empty() && strip(authority) == strip(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handshake(host: &str, origin: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(HOST, host.parse().unwrap());
        headers.insert(ORIGIN, origin.parse().unwrap());
        headers
    }

    #[test]
    fn the_services_own_origin_is_allowed_default_ports_or_not() {
        let none = AllowedOrigins::default();
        for (host, origin) in [
            ("127.0.0.1:8000", "http://127.0.0.1:8000"),
            ("shop.example.com", "https://shop.example.com"),
            ("shop.example.com:443", "https://shop.example.com"),
            ("shop.example.com", "http://shop.example.com:80"),
            ("[::1]:8000", "http://[::1]:8000"),
        ] {
            assert!(
                none.check(&handshake(host, origin)).is_ok(),
                "{origin} on {host}"
            );
        }
    }

    #[test]
    fn other_origins_null_and_lookalikes_are_refused() {
        let allowed = AllowedOrigins::new(["https://app.example.com/"]);
        for (host, origin) in [
            ("127.0.0.1:8000", "https://evil.example"),
            ("127.0.0.1:8000", "null"),
            ("127.0.0.1:8000", "http://127.0.0.1:8001"),
            ("shop.example.com", "https://shop.example.com.evil.example"),
            ("shop.example.com", "ftp://shop.example.com"),
            ("shop.example.com", "https://app.example.com.evil.example"),
        ] {
            let err = allowed.check(&handshake(host, origin)).unwrap_err();
            assert_eq!(
                (err.status().as_u16(), err.code()),
                (403, "origin_not_allowed")
            );
        }
        assert!(allowed
            .check(&handshake("shop.example.com", "https://app.example.com"))
            .is_ok());
    }
}
