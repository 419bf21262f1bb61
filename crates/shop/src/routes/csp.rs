//! The Content-Security-Policy of the HTML pages.
//!
//! The live page and the console keep their script and style inline (one file each, compiled
//! into the binary); the policy allows exactly those blocks, by their SHA-256, and nothing
//! else: no other script, no inline event handler, no `style` attribute, no resource from
//! elsewhere, no framing. A chat message that smuggles in `<img onerror=…>` could run nothing
//! even if the page ever put it into the DOM as HTML.

use base64::Engine as _;
use http::HeaderValue;
use sha2::{Digest, Sha256};

/// The policy for a page whose only script and style are its inline `<script>` and `<style>`
/// blocks.
pub(crate) fn for_inline_page(html: &str) -> HeaderValue {
    let hashes = |tag: &str| {
        blocks(html, tag)
            .map(|body| {
                let digest = Sha256::digest(body.as_bytes());
                format!(
                    " 'sha256-{}'",
                    base64::engine::general_purpose::STANDARD.encode(digest)
                )
            })
            .collect::<String>()
    };
    let policy = format!(
        "default-src 'none'; script-src{}; style-src{}; connect-src 'self'; img-src 'self'; \
         base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        hashes("script"),
        hashes("style"),
    );
    // Built from fixed text and base64: always a valid header value.
    HeaderValue::from_str(&policy)
        .unwrap_or_else(|_| HeaderValue::from_static("default-src 'none'"))
}

/// The policy of the Swagger UI at `/docs`: its own scripts and styles only (it sets styles
/// inline as it renders, and uses `data:` images), no framing.
pub(crate) const DOCS: &str = "default-src 'self'; script-src 'self'; \
    style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; \
    base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The contents of every `<tag>…</tag>` block of `html`.
fn blocks<'a>(html: &'a str, tag: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let mut rest = html;
    std::iter::from_fn(move || {
        let start = rest.find(&open)? + open.len();
        let end = start + rest[start..].find(&close)?;
        let body = &rest[start..end];
        rest = &rest[end + close.len()..];
        Some(body)
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn each_inline_block_is_allowed_by_its_hash() {
        let policy =
            super::for_inline_page("<style>a{}</style><script>1</script><script>2</script>");
        let policy = policy.to_str().unwrap();
        assert_eq!(policy.matches("'sha256-").count(), 3, "{policy}");
        assert!(policy.contains("frame-ancestors 'none'"), "{policy}");
        assert!(!policy.contains("unsafe-inline"), "{policy}");
    }
}
