//! Server-side request forgery guard: webhooks go to the public internet only.
//!
//! A subscriber URL is refused when it is not http(s), or when its host is, or resolves to, an
//! address inside a network: loopback, private, link-local, unique-local, carrier-grade NAT,
//! multicast, broadcast, unspecified or reserved, in IPv4 or IPv6 (IPv4-mapped and NAT64
//! addresses are judged by the IPv4 address they carry). [`resolve`] returns only addresses
//! that passed, and the caller connects to those: there is no second lookup for a DNS answer
//! to change in between.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Why a webhook URL is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SsrfError {
    /// Not an absolute http or https URL with a host.
    #[error("the URL must be an absolute http:// or https:// URL")]
    BadUrl,
    /// The host is, or resolves to, a non-public address.
    #[error("the URL's host is, or resolves to, a non-public address")]
    Forbidden,
    /// The host does not resolve.
    #[error("the URL's host does not resolve: {0}")]
    Unresolved(String),
}

/// The scheme, host and port of a webhook URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `http` or `https`.
    pub scheme: String,
    /// The host without brackets (`::1`, not `[::1]`).
    pub host: String,
    /// The explicit port, or the scheme's default.
    pub port: u16,
    /// The URL as the parser normalised it (`HTTP://Example.COM:80/a/../b` is
    /// `http://example.com/b`): what to store, so that what is shown is what is called.
    pub url: String,
}

/// Parses a webhook URL and, unless private addresses are allowed, refuses a host that is a
/// literal non-public address. Names are judged when they are resolved.
///
/// ```
/// use keel::webhooks::ssrf::{check_url, SsrfError};
///
/// assert!(check_url("https://hooks.example.com/in", false).is_ok());
/// assert_eq!(check_url("http://127.0.0.1:8080/", false), Err(SsrfError::Forbidden));
/// assert_eq!(check_url("http://[::ffff:10.0.0.1]/", false), Err(SsrfError::Forbidden));
/// assert!(check_url("http://127.0.0.1:8080/", true).is_ok());
/// assert_eq!(check_url("ftp://example.com/", false), Err(SsrfError::BadUrl));
/// assert_eq!(check_url("http://example.com\\@127.0.0.1/", true), Err(SsrfError::BadUrl));
/// assert_eq!(
///     check_url("HTTP://Example.COM:80/a/../b", false).map(|t| t.url),
///     Ok("http://example.com/b".to_owned())
/// );
/// ```
pub fn check_url(url: &str, allow_private: bool) -> Result<Target, SsrfError> {
    // Parsers disagree on a backslash (`http://example.com\@127.0.0.1/` is example.com to
    // one and 127.0.0.1 to another): no webhook URL needs one.
    if url.contains('\\') {
        return Err(SsrfError::BadUrl);
    }
    // The WHATWG parser, as HTTP clients use it: it reads `http://2130706433/` and
    // `http://0x7f.1/` as 127.0.0.1, so no spelling of an address slips through as a "name".
    let parsed = url::Url::parse(url).map_err(|_| SsrfError::BadUrl)?;
    let scheme = parsed.scheme().to_owned();
    if scheme != "http" && scheme != "https" {
        return Err(SsrfError::BadUrl);
    }
    // Credentials in a URL would be sent along; a subscriber has no need for them, nor for a
    // fragment, which no request carries.
    if !parsed.username().is_empty() || parsed.password().is_some() || parsed.fragment().is_some() {
        return Err(SsrfError::BadUrl);
    }
    let host = match parsed.host() {
        Some(url::Host::Domain(name)) if !name.is_empty() => name.to_owned(),
        Some(url::Host::Ipv4(ip)) => {
            if !allow_private && is_forbidden(IpAddr::V4(ip)) {
                return Err(SsrfError::Forbidden);
            }
            ip.to_string()
        }
        Some(url::Host::Ipv6(ip)) => {
            if !allow_private && is_forbidden(IpAddr::V6(ip)) {
                return Err(SsrfError::Forbidden);
            }
            ip.to_string()
        }
        _ => return Err(SsrfError::BadUrl),
    };
    let port = parsed.port_or_known_default().ok_or(SsrfError::BadUrl)?;
    Ok(Target {
        scheme,
        host,
        port,
        url: parsed.to_string(),
    })
}

/// Resolves `host` and returns its addresses with `port`, refusing the lot when any address is
/// non-public (unless allowed): a name that points inside even once is not to be trusted.
pub async fn resolve(
    host: &str,
    port: u16,
    allow_private: bool,
) -> Result<Vec<SocketAddr>, SsrfError> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| SsrfError::Unresolved(e.to_string()))?
        .collect();
    if addrs.is_empty() {
        return Err(SsrfError::Unresolved("no addresses".into()));
    }
    if !allow_private && addrs.iter().any(|a| is_forbidden(a.ip())) {
        return Err(SsrfError::Forbidden);
    }
    Ok(addrs)
}

/// True for every address a webhook must not reach.
pub fn is_forbidden(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_forbidden_v4(v4),
        IpAddr::V6(v6) => is_forbidden_v6(v6),
    }
}

fn is_forbidden_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_documentation()
        || a == 0 // "this network"
        || (a == 100 && (64..=127).contains(&b)) // carrier-grade NAT, 100.64.0.0/10
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments, 192.0.0.0/24
        || (a == 198 && (18..=19).contains(&b)) // benchmarking, 198.18.0.0/15
        || a >= 240 // reserved, 240.0.0.0/4
}

fn is_forbidden_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_forbidden_v4(v4);
    }
    let segments = ip.segments();
    // NAT64 (64:ff9b::/96) carries an IPv4 address in its last 32 bits.
    if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        let [.., hi, lo] = segments;
        return is_forbidden_v4(Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo)));
    }
    // 6to4 (2002::/16) carries one in bits 16 to 48.
    if segments[0] == 0x2002 {
        return is_forbidden_v4(Ipv4Addr::from(
            (u32::from(segments[1]) << 16) | u32::from(segments[2]),
        ));
    }
    // IPv4-translated (::ffff:0:a.b.c.d) likewise.
    if segments[..6] == [0, 0, 0, 0, 0xffff, 0] {
        let [.., hi, lo] = segments;
        return is_forbidden_v4(Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo)));
    }
    // Teredo (2001::/32) carries a client's IPv4 address, obfuscated, in its last 32 bits:
    // refused whole rather than decoded.
    if segments[..2] == [0x2001, 0] {
        return true;
    }
    // Local-use NAT64 (64:ff9b:1::/48) translates inside a network.
    if segments[..3] == [0x64, 0xff9b, 1] {
        return true;
    }
    // IPv4-compatible (::a.b.c.d, deprecated) likewise, apart from :: and ::1.
    if segments[..6] == [0; 6] && !ip.is_unspecified() && !ip.is_loopback() {
        let [.., hi, lo] = segments;
        return is_forbidden_v4(Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo)));
    }
    ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (segments[0] & 0xfe00) == 0xfc00 // unique local, fc00::/7
        || (segments[0] & 0xffc0) == 0xfe80 // link-local, fe80::/10
        || (segments[0] & 0xffc0) == 0xfec0 // site-local (deprecated), fec0::/10
        || (segments[0] == 0x2001 && segments[1] == 0x0db8) // documentation, 2001:db8::/32
        || (segments[0] == 0x0100 && segments[1..4] == [0, 0, 0]) // discard-only, 100::/64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forbidden(ip: &str) -> bool {
        is_forbidden(ip.parse().unwrap())
    }

    #[test]
    fn every_non_public_ipv4_class_is_refused() {
        for ip in [
            "0.0.0.0",
            "0.1.2.3",
            "127.0.0.1",
            "127.255.255.254",
            "10.0.0.1",
            "10.255.255.255",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.255",
            "192.0.0.8",
            "192.0.2.1",
            "198.18.0.1",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
        ] {
            assert!(forbidden(ip), "{ip} should be refused");
        }
    }

    #[test]
    fn every_non_public_ipv6_class_is_refused() {
        for ip in [
            "::",
            "::1",
            "fc00::1",
            "fd12:3456:789a::1",
            "fe80::1",
            "febf::1",
            "fec0::1",
            "ff02::1",
            "ff0e::1",
            "2001:db8::1",
            "100::1",
            "::ffff:127.0.0.1",
            "::ffff:10.1.2.3",
            "::ffff:169.254.169.254",
            "::ffff:192.168.0.1",
            "64:ff9b::10.0.0.1",
            "64:ff9b::7f00:1",
            "::10.0.0.1",
            "::127.0.0.2",
            "2001::1",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
        ] {
            assert!(forbidden(ip), "{ip} should be refused");
        }
    }

    #[test]
    fn public_addresses_are_allowed() {
        for ip in [
            "1.1.1.1",
            "8.8.8.8",
            "93.184.215.14",
            "172.32.0.1",
            "100.128.0.1",
            "192.0.1.1",
            "2606:4700:4700::1111",
            "2a00:1450:4001:80b::200e",
            "::ffff:8.8.8.8",
            "64:ff9b::8.8.8.8",
            "2002:808:808::1",
        ] {
            assert!(!forbidden(ip), "{ip} should be allowed");
        }
    }

    #[test]
    fn urls_are_checked_for_scheme_host_credentials_and_literal_addresses() {
        assert_eq!(
            check_url("https://hooks.example.com:8443/x?y=1", false),
            Ok(Target {
                scheme: "https".into(),
                host: "hooks.example.com".into(),
                port: 8443,
                url: "https://hooks.example.com:8443/x?y=1".into(),
            })
        );
        assert_eq!(
            check_url("http://example.com", false).map(|t| t.port),
            Ok(80)
        );
        for bad in [
            "example.com/x",
            "file:///etc/passwd",
            "gopher://example.com",
            "http://",
            "https://user:pw@example.com/",
        ] {
            assert_eq!(check_url(bad, false), Err(SsrfError::BadUrl), "{bad}");
        }
        for private in [
            "http://10.0.0.1/",
            "http://[::1]:80/",
            "http://[fe80::1]/",
            "http://0.0.0.0/",
        ] {
            assert_eq!(
                check_url(private, false),
                Err(SsrfError::Forbidden),
                "{private}"
            );
            assert!(check_url(private, true).is_ok(), "{private}");
        }
    }

    #[tokio::test]
    async fn names_that_resolve_inside_are_refused() {
        assert_eq!(
            resolve("localhost", 80, false).await,
            Err(SsrfError::Forbidden)
        );
        let allowed = resolve("localhost", 8080, true).await.unwrap();
        assert!(allowed
            .iter()
            .all(|a| a.port() == 8080 && a.ip().is_loopback()));
    }
}
