#![allow(clippy::unwrap_used)]
mod common;

use common::{assert_envelope, assert_timestamp, assert_validation_error, spawn_app};
use serde_json::{json, Value};

#[tokio::test]
async fn creating_a_user_returns_201_with_location_and_the_user() {
    let app = spawn_app().await;
    let res = app
        .post_json(
            "/users",
            &json!({"email": "Ada@Example.COM", "username": "Ada_L"}),
        )
        .await;
    assert_eq!(res.status(), 201);
    assert_eq!(res.headers()["location"], "/users/1");
    assert_eq!(res.headers()["content-type"], "application/json");
    let user: Value = res.json().await.unwrap();
    assert_eq!(user["id"], 1);
    assert_eq!(user["email"], "ada@example.com");
    assert_eq!(user["username"], "Ada_L");
    assert_timestamp(&user["created_at"]);
    assert_eq!(user.as_object().unwrap().len(), 4);

    let res = app.get("/users/1").await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap(), user);
}

#[tokio::test]
async fn unknown_body_fields_are_ignored() {
    let app = spawn_app().await;
    let res = app
        .post_json(
            "/users",
            &json!({"email": "a@b.io", "username": "abc", "admin": true}),
        )
        .await;
    assert_eq!(res.status(), 201);
}

#[tokio::test]
async fn email_is_unique_regardless_of_case() {
    let app = spawn_app().await;
    app.create_user("ada@example.com", "ada").await;
    let res = app
        .post_json(
            "/users",
            &json!({"email": "ADA@example.com", "username": "other"}),
        )
        .await;
    assert_envelope(
        res,
        409,
        "conflict",
        "Resource already exists or constraint violation",
        json!({"field": "email"}),
    )
    .await;
}

#[tokio::test]
async fn username_is_unique_regardless_of_case() {
    let app = spawn_app().await;
    app.create_user("ada@example.com", "Ada").await;
    let res = app
        .post_json(
            "/users",
            &json!({"email": "other@example.com", "username": "aDA"}),
        )
        .await;
    assert_envelope(
        res,
        409,
        "conflict",
        "Resource already exists or constraint violation",
        json!({"field": "username"}),
    )
    .await;
}

#[tokio::test]
async fn every_problem_of_a_body_is_reported_at_once() {
    let app = spawn_app().await;
    let res = app
        .post_json(
            "/users",
            &json!({"email": "not-an-email", "username": "a b"}),
        )
        .await;
    assert_validation_error(res, json!([
            {"loc": ["body", "email"], "msg": "value is not a valid email address", "type": "invalid_email"},
            {"loc": ["body", "username"], "msg": "String should match pattern '^[A-Za-z0-9_]+$'", "type": "invalid_pattern"},
        ]),
    )
    .await;

    let res = app.post_json("/users", &json!({})).await;
    assert_validation_error(
        res,
        json!([
            {"loc": ["body", "email"], "msg": "Field required", "type": "missing"},
            {"loc": ["body", "username"], "msg": "Field required", "type": "missing"},
        ]),
    )
    .await;
}

#[tokio::test]
async fn field_rules_have_their_own_types() {
    let app = spawn_app().await;
    let cases = [
        (
            json!({"email": 42, "username": "abc"}),
            "email",
            "invalid_type",
            "Input should be a valid string",
        ),
        (
            json!({"email": null, "username": "abc"}),
            "email",
            "invalid_type",
            "Input should be a valid string",
        ),
        (
            json!({"email": format!("{}@example.com", "a".repeat(250)), "username": "abc"}),
            "email",
            "too_long",
            "String should have at most 254 characters",
        ),
        (
            json!({"email": "a@b.io", "username": "ab"}),
            "username",
            "too_short",
            "String should have at least 3 characters",
        ),
        (
            json!({"email": "a@b.io", "username": "a".repeat(33)}),
            "username",
            "too_long",
            "String should have at most 32 characters",
        ),
        (
            json!({"email": "a@b.io", "username": ["abc"]}),
            "username",
            "invalid_type",
            "Input should be a valid string",
        ),
    ];
    for (body, field, kind, msg) in cases {
        let res = app.post_json("/users", &body).await;
        assert_validation_error(
            res,
            json!([{"loc": ["body", field], "msg": msg, "type": kind}]),
        )
        .await;
    }
}

#[tokio::test]
async fn validation_errors_never_echo_the_input() {
    let app = spawn_app().await;
    let res = app
        .post_json(
            "/users",
            &json!({"email": "hunter2-secret", "username": 12345678}),
        )
        .await;
    let body = assert_validation_error(res, json!([
            {"loc": ["body", "email"], "msg": "value is not a valid email address", "type": "invalid_email"},
            {"loc": ["body", "username"], "msg": "Input should be a valid string", "type": "invalid_type"},
        ]),
    )
    .await;
    let text = body.to_string();
    assert!(!text.contains("hunter2"), "{text}");
    assert!(!text.contains("12345678"), "{text}");
}

#[tokio::test]
async fn a_missing_user_is_404_naming_it() {
    let app = spawn_app().await;
    let res = app.get("/users/99999").await;
    assert_envelope(
        res,
        404,
        "not_found",
        "Resource not found",
        json!({"resource": "user", "id": 99999}),
    )
    .await;
}

#[tokio::test]
async fn a_user_id_that_is_not_a_positive_integer_is_422_at_path_id() {
    let app = spawn_app().await;
    const NOT_AN_INTEGER: &str =
        "Input should be a valid integer, unable to parse string as an integer";
    for (path, kind, msg) in [
        ("/users/abc", "invalid_type", NOT_AN_INTEGER),
        ("/users/1.5", "invalid_type", NOT_AN_INTEGER),
        (
            "/users/99999999999999999999",
            "invalid_type",
            NOT_AN_INTEGER,
        ),
        ("/users/0", "out_of_range", "Input should be greater than 0"),
        (
            "/users/-3",
            "out_of_range",
            "Input should be greater than 0",
        ),
    ] {
        let res = app.get(path).await;
        assert_validation_error(
            res,
            json!([{"loc": ["path", "id"], "msg": msg, "type": kind}]),
        )
        .await;
    }
}

#[tokio::test]
async fn an_integral_float_in_the_path_is_its_integer() {
    let app = spawn_app().await;
    let user = app.create_user("ada@example.com", "ada").await;
    for path in ["/users/1.0", "/users/1e0"] {
        let res = app.get(path).await;
        assert_eq!(res.status(), 200, "{path}");
        assert_eq!(res.json::<Value>().await.unwrap(), user, "{path}");
    }
}

#[tokio::test]
async fn a_body_of_a_million_array_items_is_a_clean_422_that_names_each_field() {
    let app = spawn_app().await;
    let body = format!(
        r#"{{"email": [{}1], "tags": [{}1]}}"#,
        "1,".repeat(300_000),
        "[1],".repeat(100_000)
    );
    let res = app
        .client
        .post(app.url("/users"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_validation_error(
        res,
        json!([
            {"loc": ["body", "email"], "msg": "Input should be a valid string", "type": "invalid_type"},
            {"loc": ["body", "username"], "msg": "Field required", "type": "missing"},
        ]),
    )
    .await;
    // Syntax is checked before shape: a broken tail is a 400 even after a wrong-typed field.
    let res = app
        .client
        .post(app.url("/users"))
        .header("content-type", "application/json")
        .body(r#"{"email": 5, "username": "#)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["code"], "malformed_json");
}
