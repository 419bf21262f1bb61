//! A few thousand malformed requests: odd bodies, paths, methods and headers, from a seeded
//! generator so that a failure can be replayed (`SHOP_FUZZ_SEED`). Whatever arrives, the service
//! never answers 5xx, every error is the envelope with the request id of its header, and it
//! still serves afterwards.
#![allow(clippy::unwrap_used)]
mod common;

use common::spawn_app;
use reqwest::Method;
use serde_json::{json, Value};

const REQUESTS: usize = 3000;
const IN_FLIGHT: usize = 16;

/// xorshift64*: small, fast, reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
}

fn odd_value(rng: &mut Rng, depth: usize) -> Value {
    match rng.below(if depth > 3 { 9 } else { 12 }) {
        0 => Value::Null,
        1 => json!(rng.chance(50)),
        2 => json!(rng.next() as i64),
        3 => json!(-(rng.below(1000) as i64)),
        4 => json!(1.5e300),
        5 => json!(""),
        6 => json!("x".repeat(rng.below(400))),
        7 => json!("ünïcødé ☃ \u{0000} \u{202e} 'quote\" <tag>"),
        8 => json!(format!("{}@example.com", "a".repeat(rng.below(300)))),
        9 => Value::Array(
            (0..rng.below(4))
                .map(|_| odd_value(rng, depth + 1))
                .collect(),
        ),
        10 => json!({"nested": odd_value(rng, depth + 1)}),
        _ => json!(u64::MAX),
    }
}

fn odd_body(rng: &mut Rng) -> Vec<u8> {
    const FIELDS: &[&str] = &[
        "email",
        "username",
        "name",
        "price_cents",
        "stock",
        "user_id",
        "product_id",
        "quantity",
    ];
    match rng.below(10) {
        // An object with some of the real fields, holding odd values.
        0..=3 => {
            let mut object = serde_json::Map::new();
            for _ in 0..rng.below(5) {
                object.insert((*rng.pick(FIELDS)).to_owned(), odd_value(rng, 0));
            }
            serde_json::to_vec(&object).unwrap()
        }
        // Valid JSON of the wrong shape.
        4 => serde_json::to_vec(&odd_value(rng, 0)).unwrap(),
        // Truncated JSON.
        5 => {
            let full =
                serde_json::to_vec(&json!({"email": "a@b.io", "username": "abcdef"})).unwrap();
            full[..rng.below(full.len())].to_vec()
        }
        // Random bytes.
        6 => (0..rng.below(200)).map(|_| rng.next() as u8).collect(),
        // Deep nesting, past serde_json's recursion limit.
        7 => {
            let depth = 100 + rng.below(200);
            format!("{}{}", "[".repeat(depth), "]".repeat(depth)).into_bytes()
        }
        // Duplicate keys and odd numbers.
        8 => br#"{"quantity": 1, "quantity": 1e400, "user_id": -0, "product_id": 00}"#.to_vec(),
        _ => Vec::new(),
    }
}

fn odd_path(rng: &mut Rng) -> String {
    const PATHS: &[&str] = &[
        "/users",
        "/products",
        "/orders",
        "/users/1",
        "/products/1",
        "/orders/1",
        "/healthz",
        "/readyz",
        "/",
        "/users/",
        "/users//1",
        "/users/1/2",
        "/users/%00",
        "/users/%ff%fe",
        "/users/%E2%98%83",
        "/users/-1",
        "/users/0",
        "/users/1e3",
        "/users/0x10",
        "/users/18446744073709551616",
        "/users/%20",
        "/users/1%2F2",
        "/orders/NaN",
        "/products/1?x=%ZZ",
        "/users?limit=-1&&&==",
        "/nope",
        "/../etc/passwd",
        "/users/1;x",
        "/%2e%2e/%2e%2e",
        "/users/1#frag",
    ];
    let mut path = (*rng.pick(PATHS)).to_owned();
    if rng.chance(10) {
        path.push_str(&"a".repeat(rng.below(3000)));
    }
    path
}

fn odd_method(rng: &mut Rng) -> Method {
    const METHODS: &[&str] = &[
        "GET", "POST", "POST", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "TRACE",
        "PROPFIND", "BREW", "get",
    ];
    Method::from_bytes(rng.pick(METHODS).as_bytes()).unwrap()
}

fn odd_content_type(rng: &mut Rng) -> Option<&'static str> {
    *rng.pick(&[
        None,
        Some("application/json"),
        Some("application/json"),
        Some("application/json; charset=utf-8"),
        Some("application/json; charset=latin1"),
        Some("text/plain"),
        Some("application/jsonx"),
        Some("application/vnd.api+json"),
        Some("multipart/form-data; boundary=x"),
        Some(";;;"),
        Some(""),
    ])
}

fn odd_request_id(rng: &mut Rng) -> Option<Vec<u8>> {
    match rng.below(5) {
        0 => None,
        1 => Some(b"fuzz-ok.1".to_vec()),
        2 => Some("a".repeat(rng.below(300)).into_bytes()),
        // Header-legal bytes only: visible ASCII, space, tab and obs-text.
        _ => Some(
            (0..1 + rng.below(60))
                .map(|_| match rng.below(3) {
                    0 => 0x20 + rng.below(95) as u8,
                    1 => 0x80 + rng.below(128) as u8,
                    _ => b'a' + rng.below(26) as u8,
                })
                .collect(),
        ),
    }
}

#[tokio::test]
async fn malformed_requests_never_cause_a_5xx_and_always_get_the_envelope() {
    let app = spawn_app().await;
    app.create_user("ada@example.com", "ada").await;
    app.create_product("Lamp", 100, 1_000_000).await;

    let seed = std::env::var("SHOP_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_cafe_f00d_u64);
    let mut rng = Rng(seed);
    let mut requests = Vec::with_capacity(REQUESTS);
    for i in 0..REQUESTS {
        // Half the requests aim at the JSON endpoints, where bodies are read.
        let (method, path) = if rng.chance(50) {
            let path = *rng.pick(&["/users", "/products", "/orders"]);
            (Method::POST, path.to_owned())
        } else {
            (odd_method(&mut rng), odd_path(&mut rng))
        };
        let content_type = odd_content_type(&mut rng);
        let request_id = odd_request_id(&mut rng);
        let body = odd_body(&mut rng);
        requests.push((i, method, path, content_type, request_id, body));
    }

    let mut statuses = std::collections::BTreeMap::new();
    for batch in requests.chunks(IN_FLIGHT) {
        let mut set = tokio::task::JoinSet::new();
        for (i, method, path, content_type, request_id, body) in batch.iter().cloned() {
            let client = app.client.clone();
            let url = app.url(&path);
            set.spawn(async move {
                let mut req = client.request(method.clone(), &url).body(body);
                if let Some(ct) = content_type {
                    req = req.header("content-type", ct);
                }
                if let Some(id) = request_id {
                    req = req.header(
                        "x-request-id",
                        reqwest::header::HeaderValue::from_bytes(&id).unwrap(),
                    );
                }
                let res = req
                    .send()
                    .await
                    .unwrap_or_else(|e| panic!("request {i} {method} {url}: {e}"));
                let status = res.status().as_u16();
                let header_id = res
                    .headers()
                    .get("x-request-id")
                    .unwrap_or_else(|| panic!("request {i} {method} {url}: no x-request-id"))
                    .to_str()
                    .unwrap()
                    .to_owned();
                let content_type = res.headers().get("content-type").cloned();
                let text = res.text().await.unwrap();
                assert!(status < 500, "request {i} {method} {url}: {status} {text}");
                if status >= 400 && method != Method::HEAD {
                    assert_eq!(content_type.unwrap(), "application/json", "request {i}");
                    let body: Value = serde_json::from_str(&text)
                        .unwrap_or_else(|_| panic!("request {i} {method} {url}: not JSON: {text}"));
                    let object = body.as_object().unwrap();
                    assert_eq!(object.len(), 5, "request {i}: {text}");
                    assert_eq!(body["success"], false);
                    assert!(
                        body["error"].is_string() && body["code"].is_string(),
                        "{text}"
                    );
                    assert!(object.contains_key("details"));
                    assert_eq!(body["request_id"], header_id.as_str(), "request {i}");
                }
                status
            });
        }
        while let Some(status) = set.join_next().await {
            *statuses.entry(status.unwrap()).or_insert(0) += 1;
        }
    }
    println!("statuses: {statuses:?}");
    assert!(statuses.keys().any(|s| *s == 422) && statuses.keys().any(|s| *s == 400));

    let res = app.get("/users/1").await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap()["username"], "ada");
}
