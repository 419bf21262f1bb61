//! Validation declared on the type, over a real socket: every problem at once, in FastAPI's
//! shape, list indices included; what passes arrives typed.
#![allow(clippy::unwrap_used)]
mod common;

use axum::routing::post;
use axum::Router;
use keel::layers::ServiceLayers;
use keel::validate::{Valid, Validate};
use keel::Json;
use serde_json::{json, Value};

#[derive(Debug, Validate)]
struct Address {
    #[validate(length(min = 2, max = 40))]
    city: String,
    #[validate(pattern = "^[0-9]{5}$")]
    zip: String,
}

#[derive(Debug, Validate)]
struct Signup {
    #[validate(length(min = 1, max = 100))]
    title: String,
    #[validate(range(ge = 1, le = 5))]
    priority: u8,
    #[validate(length(max = 3), each(length(min = 1, max = 20)))]
    tags: Option<Vec<String>>,
    #[validate(email)]
    email: String,
    #[validate(url)]
    homepage: Option<String>,
    #[validate(one_of("free", "pro"))]
    plan: String,
    #[validate(range(gt = 0.0, lt = 1000.5))]
    budget: f64,
    #[validate(default)]
    newsletter: bool,
    address: Address,
    others: Option<Vec<Address>>,
}

async fn signup(Valid(s): Valid<Signup>) -> Json<Value> {
    Json(json!({
        "title": s.title, "priority": s.priority, "tags": s.tags, "email": s.email,
        "homepage": s.homepage, "plan": s.plan, "budget": s.budget,
        "newsletter": s.newsletter, "city": s.address.city, "zip": s.address.zip,
        "others": s.others.map(|o| o.len()),
    }))
}

async fn post_json(body: &str) -> (u16, Value) {
    post_to(
        Router::new().route("/signup", post(signup)),
        "/signup",
        body,
    )
    .await
}

/// Serves `routes` behind keel's layers and posts the JSON `body` to `path`.
async fn post_to(routes: Router, path: &str, body: &str) -> (u16, Value) {
    let addr = common::serve(ServiceLayers::new().apply(routes)).await;
    let res = reqwest::Client::new()
        .post(format!("http://{addr}{path}"))
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.json().await.unwrap())
}

fn detail(loc: Value, msg: &str, kind: &str) -> Value {
    json!({"loc": loc, "msg": msg, "type": kind})
}

#[tokio::test]
async fn a_valid_body_arrives_typed_with_optionals_and_defaults() {
    let (status, body) = post_json(
        r#"{"title": "Buy milk", "priority": 5.0, "email": "ada@example.com", "plan": "pro",
            "budget": 12, "address": {"city": "Paris", "zip": "75001"}, "homepage": null}"#,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"title": "Buy milk", "priority": 5, "tags": null, "email": "ada@example.com",
               "homepage": null, "plan": "pro", "budget": 12.0, "newsletter": false,
               "city": "Paris", "zip": "75001", "others": null})
    );
}

#[tokio::test]
async fn every_problem_is_reported_at_once_in_field_order_with_list_indices() {
    let (status, body) = post_json(
        r#"{"title": "", "priority": 300, "tags": ["ok", 5, ""], "email": "nope",
            "homepage": "ftp://x", "plan": "gold", "budget": 0, "newsletter": "yes",
            "address": {"city": "P"}, "others": [{"city": "Lyon", "zip": "69001"}, 3]}"#,
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(body["code"], "validation_error");
    assert_eq!(
        body["details"],
        json!([
            detail(
                json!(["body", "title"]),
                "String should have at least 1 character",
                "too_short"
            ),
            detail(
                json!(["body", "priority"]),
                "Input should be less than or equal to 255",
                "out_of_range"
            ),
            detail(
                json!(["body", "tags", 1]),
                "Input should be a valid string",
                "invalid_type"
            ),
            detail(
                json!(["body", "tags", 2]),
                "String should have at least 1 character",
                "too_short"
            ),
            detail(
                json!(["body", "email"]),
                "value is not a valid email address",
                "invalid_email"
            ),
            detail(
                json!(["body", "homepage"]),
                "URL should be an absolute http:// or https:// URL",
                "invalid_url"
            ),
            detail(
                json!(["body", "plan"]),
                "Input should be one of free, pro",
                "invalid_value"
            ),
            detail(
                json!(["body", "budget"]),
                "Input should be greater than 0",
                "out_of_range"
            ),
            detail(
                json!(["body", "newsletter"]),
                "Input should be a valid boolean",
                "invalid_type"
            ),
            detail(
                json!(["body", "address", "city"]),
                "String should have at least 2 characters",
                "too_short"
            ),
            detail(
                json!(["body", "address", "zip"]),
                "Field required",
                "missing"
            ),
            detail(
                json!(["body", "others", 1]),
                "Input should be an object",
                "model_type"
            ),
        ])
    );
}

#[tokio::test]
async fn missing_fields_and_rule_bounds_read_as_pydantic_says_them() {
    let (status, body) =
        post_json(r#"{"priority": 0, "tags": ["a", "b", "c", "d"], "budget": 1000.5}"#).await;
    assert_eq!(status, 422);
    assert_eq!(
        body["details"],
        json!([
            detail(json!(["body", "title"]), "Field required", "missing"),
            detail(
                json!(["body", "priority"]),
                "Input should be greater than or equal to 1",
                "out_of_range"
            ),
            detail(
                json!(["body", "tags"]),
                "List should have at most 3 items",
                "too_long"
            ),
            detail(json!(["body", "email"]), "Field required", "missing"),
            detail(json!(["body", "plan"]), "Field required", "missing"),
            detail(
                json!(["body", "budget"]),
                "Input should be less than 1000.5",
                "out_of_range"
            ),
            detail(json!(["body", "address"]), "Field required", "missing"),
        ])
    );
    // Not JSON is still 400, and a body that is not an object 422 at ["body"].
    let (status, body) = post_json(r#"{"title": "#).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("malformed_json"))
    );
    let (status, body) = post_json("[1, 2]").await;
    assert_eq!(status, 422);
    assert_eq!(body["details"][0]["loc"], json!(["body"]));
}

/// A valid body but for `changes` (merged over it).
fn body_with(changes: Value) -> String {
    let mut body = json!({"title": "t", "priority": 1, "email": "a@b.io", "plan": "free",
        "budget": 1, "address": {"city": "Lyon", "zip": "69001"}});
    for (key, value) in changes.as_object().unwrap() {
        body[key] = value.clone();
    }
    body.to_string()
}

#[tokio::test]
async fn a_nested_object_given_a_list_is_a_model_type_error() {
    for address in [json!(["Lyon", "69001"]), json!([])] {
        let (status, body) = post_json(&body_with(json!({"address": address}))).await;
        assert_eq!(status, 422, "{address}");
        assert_eq!(
            body["details"],
            json!([detail(
                json!(["body", "address"]),
                "Input should be an object",
                "model_type"
            )]),
            "{address}"
        );
    }
}

#[tokio::test]
async fn a_list_over_its_length_reports_that_beside_its_items_problems() {
    let tags = json!(["a", "", "c", "d"]);
    let (status, body) = post_json(&body_with(json!({"tags": tags}))).await;
    assert_eq!(status, 422);
    assert_eq!(
        body["details"],
        json!([
            detail(
                json!(["body", "tags"]),
                "List should have at most 3 items",
                "too_long"
            ),
            detail(
                json!(["body", "tags", 1]),
                "String should have at least 1 character",
                "too_short"
            ),
        ])
    );
}

#[tokio::test]
async fn a_url_with_white_space_or_control_characters_is_refused() {
    for homepage in [
        " https://example.com",
        "https://example.com ",
        "https://exa\tmple.com",
        "https://example.com/\n",
    ] {
        let (status, body) = post_json(&body_with(json!({"homepage": homepage}))).await;
        assert_eq!(status, 422, "{homepage:?}");
        assert_eq!(
            body["details"][0]["type"], "invalid_url",
            "{homepage:?}: {body}"
        );
    }
    let (status, body) = post_json(&body_with(json!({"homepage": "https://example.com"}))).await;
    assert_eq!(
        (status, &body["homepage"]),
        (200, &json!("https://example.com"))
    );
}

#[tokio::test]
async fn a_large_integral_float_is_an_integer() {
    // Exact below 2^53: Pydantic's lax mode takes it, and so does keel, however large.
    let (status, body) = post_json(&body_with(json!({"priority": 3.0}))).await;
    assert_eq!((status, &body["priority"]), (200, &json!(3)));
    let (status, body) = post_json(&body_with(json!({"priority": 1948425934383563.0}))).await;
    assert_eq!(status, 422);
    assert_eq!(
        body["details"],
        json!([detail(
            json!(["body", "priority"]),
            "Input should be less than or equal to 255",
            "out_of_range"
        )])
    );
}

mod query_and_path {
    use super::*;
    use axum::routing::get;
    use keel::{Path, Query};

    #[derive(Debug, Validate)]
    struct Listing {
        #[validate(range(ge = 1, le = 100))]
        limit: Option<u32>,
        #[validate(each(length(min = 1, max = 10)))]
        tag: Option<Vec<String>>,
    }

    #[derive(Debug, Validate)]
    struct Item {
        #[validate(range(ge = 1))]
        id: i64,
    }

    #[derive(Debug, serde::Deserialize)]
    struct Plain {
        limit: Option<u32>,
    }

    async fn get_json(path: &str) -> (u16, Value) {
        let routes =
            Router::new()
                .route(
                    "/list",
                    get(|Valid(Query(q)): Valid<Query<Listing>>| async move {
                        Json(json!({"limit": q.limit, "tag": q.tag}))
                    }),
                )
                .route(
                    "/items/{id}",
                    get(|Valid(Path(item)): Valid<Path<Item>>| async move {
                        Json(json!({"id": item.id}))
                    }),
                )
                .route(
                    "/plain",
                    get(|Query(q): Query<Plain>| async move { Json(json!({"limit": q.limit})) }),
                )
                .route(
                    "/plain/{id}",
                    get(|Path(id): Path<i64>| async move { Json(json!({"id": id})) }),
                );
        let addr = common::serve(ServiceLayers::new().apply(routes)).await;
        let res = reqwest::get(format!("http://{addr}{path}")).await.unwrap();
        (res.status().as_u16(), res.json().await.unwrap())
    }

    const NOT_AN_INTEGER: &str =
        "Input should be a valid integer, unable to parse string as an integer";

    #[tokio::test]
    async fn a_query_is_read_by_type_lists_collect_and_a_scalar_takes_the_last() {
        for (path, expected) in [
            (
                "/list?limit=5&tag=a&tag=b",
                json!({"limit": 5, "tag": ["a", "b"]}),
            ),
            ("/list?limit=5.0", json!({"limit": 5, "tag": null})),
            (
                "/list?limit=1&limit=2&tag=only",
                json!({"limit": 2, "tag": ["only"]}),
            ),
            ("/list", json!({"limit": null, "tag": null})),
            ("/plain?limit=1&limit=7", json!({"limit": 7})),
            ("/plain?limit=3.0", json!({"limit": 3})),
        ] {
            assert_eq!(get_json(path).await, (200, expected), "{path}");
        }
    }

    /// `path` is a 422 with exactly these details.
    async fn problems(path: &str, details: Value) {
        let (status, body) = get_json(path).await;
        assert_eq!((status, &body["details"]), (422, &details), "{path}");
    }

    #[tokio::test]
    async fn every_problem_of_a_query_is_reported_at_its_name() {
        let limit = json!(["query", "limit"]);
        problems(
            "/list?limit=abc&tag=ok&tag=",
            json!([
                detail(limit.clone(), NOT_AN_INTEGER, "invalid_type"),
                detail(
                    json!(["query", "tag", 1]),
                    "String should have at least 1 character",
                    "too_short"
                ),
            ]),
        )
        .await;
        let at_least_1 = "Input should be greater than or equal to 1";
        problems(
            "/list?limit=0",
            json!([detail(limit.clone(), at_least_1, "out_of_range")]),
        )
        .await;
        problems(
            "/plain?limit=abc",
            json!([detail(limit, NOT_AN_INTEGER, "invalid_type")]),
        )
        .await;
    }

    #[tokio::test]
    async fn a_path_is_read_by_type_with_its_problems_at_path() {
        assert_eq!(get_json("/items/7").await, (200, json!({"id": 7})));
        assert_eq!(get_json("/items/7.0").await, (200, json!({"id": 7})));
        assert_eq!(get_json("/plain/7.0").await, (200, json!({"id": 7})));
        let (status, body) = get_json("/items/abc").await;
        assert_eq!(status, 422);
        assert_eq!(
            body["details"],
            json!([detail(
                json!(["path", "id"]),
                NOT_AN_INTEGER,
                "invalid_type"
            )])
        );
        let (status, body) = get_json("/items/0").await;
        assert_eq!(status, 422);
        assert_eq!(body["details"][0]["type"], "out_of_range");
        let (status, body) = get_json("/plain/abc").await;
        assert_eq!(status, 422);
        assert_eq!(
            body["details"],
            json!([detail(
                json!(["path", "id"]),
                NOT_AN_INTEGER,
                "invalid_type"
            )])
        );
    }
}

mod rules_of_your_own {
    use super::*;
    use keel::validate::{Problem, Report};

    fn not_reserved(name: &String) -> Result<(), Problem> {
        if name == "admin" {
            Err(Problem::new("reserved", "This name is reserved"))
        } else {
            Ok(())
        }
    }

    fn even(n: &i64) -> Result<(), Problem> {
        if n % 2 == 0 {
            Ok(())
        } else {
            Err(Problem::new("not_even", "Input should be even"))
        }
    }

    fn ends_after_start(range: &Booking, report: &mut Report) {
        if range.end <= range.start {
            report.problem_at(
                &["end"],
                Problem::new("invalid_range", "end should be after start"),
            );
        }
    }

    #[derive(Debug, Validate)]
    #[validate(deny_unknown_fields, custom = ends_after_start)]
    struct Booking {
        #[validate(length(min = 1), custom = not_reserved)]
        name: String,
        start: i64,
        end: i64,
        #[validate(length(max = 2), each(custom = even))]
        seats: Option<Vec<i64>>,
    }

    async fn book(body: Value) -> (u16, Value) {
        let routes = Router::new().route(
            "/book",
            post(|Valid(b): Valid<Booking>| async move {
                Json(json!({"name": b.name, "start": b.start, "end": b.end, "seats": b.seats}))
            }),
        );
        post_to(routes, "/book", &body.to_string()).await
    }

    #[tokio::test]
    async fn custom_field_rules_run_with_the_declared_ones_and_on_each_item() {
        let (status, body) =
            book(json!({"name": "admin", "start": 1, "end": 2, "seats": [2, 3, 4]})).await;
        assert_eq!(status, 422);
        assert_eq!(
            body["details"],
            json!([
                detail(json!(["body", "name"]), "This name is reserved", "reserved"),
                detail(
                    json!(["body", "seats"]),
                    "List should have at most 2 items",
                    "too_long"
                ),
                detail(
                    json!(["body", "seats", 1]),
                    "Input should be even",
                    "not_even"
                ),
            ])
        );
        let (status, body) = book(json!({"name": "ada", "start": 1, "end": 2, "seats": [2]})).await;
        assert_eq!((status, &body["seats"]), (200, &json!([2])));
    }

    #[tokio::test]
    async fn a_struct_rule_reports_at_the_field_it_names_once_the_fields_are_valid() {
        let (status, body) = book(json!({"name": "ada", "start": 5, "end": 2})).await;
        assert_eq!(status, 422);
        assert_eq!(
            body["details"],
            json!([detail(
                json!(["body", "end"]),
                "end should be after start",
                "invalid_range"
            )])
        );
    }

    #[tokio::test]
    async fn unknown_fields_are_each_extra_forbidden_when_denied() {
        let (status, body) =
            book(json!({"name": "ada", "start": 1, "end": 2, "colour": "red", "z": 1})).await;
        assert_eq!(status, 422);
        assert_eq!(
            body["details"],
            json!([
                detail(
                    json!(["body", "colour"]),
                    "Extra inputs are not permitted",
                    "extra_forbidden"
                ),
                detail(
                    json!(["body", "z"]),
                    "Extra inputs are not permitted",
                    "extra_forbidden"
                ),
            ])
        );
    }
}
