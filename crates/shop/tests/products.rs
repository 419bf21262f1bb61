#![allow(clippy::unwrap_used)]
mod common;

use common::{assert_envelope, assert_timestamp, assert_validation_error, spawn_app};
use serde_json::{json, Value};

#[tokio::test]
async fn creating_a_product_returns_201_and_it_can_be_read_back() {
    let app = spawn_app().await;
    let res = app
        .post_json(
            "/products",
            &json!({"name": "Lamp", "price_cents": 1999, "stock": 10}),
        )
        .await;
    assert_eq!(res.status(), 201);
    assert_eq!(res.headers()["location"], "/products/1");
    let product: Value = res.json().await.unwrap();
    assert_eq!(product["id"], 1);
    assert_eq!(product["name"], "Lamp");
    assert_eq!(product["price_cents"], 1999);
    assert_eq!(product["stock"], 10);
    assert_timestamp(&product["created_at"]);
    assert_eq!(product.as_object().unwrap().len(), 5);

    let res = app.get("/products/1").await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap(), product);
}

#[tokio::test]
async fn zero_price_and_zero_stock_are_allowed() {
    let app = spawn_app().await;
    let product = app.create_product("Free sample", 0, 0).await;
    assert_eq!(product["price_cents"], 0);
    assert_eq!(product["stock"], 0);
}

#[tokio::test]
async fn integral_numbers_written_as_floats_are_integers() {
    let app = spawn_app().await;
    let res = app
        .post_json(
            "/products",
            &json!({"name": "Lamp", "price_cents": 8918.0, "stock": 3.0}),
        )
        .await;
    assert_eq!(res.status(), 201);
    let product: Value = res.json().await.unwrap();
    assert_eq!(
        (&product["price_cents"], &product["stock"]),
        (&json!(8918), &json!(3))
    );
    app.create_user("ada@example.com", "ada").await;
    let res = app
        .post_json(
            "/orders",
            &json!({"user_id": 1, "product_id": 1, "quantity": 2.0}),
        )
        .await;
    assert_eq!(res.status(), 201);
    assert_eq!(res.json::<Value>().await.unwrap()["quantity"], 2);
}

#[tokio::test]
async fn product_rules_are_checked_all_at_once() {
    let app = spawn_app().await;
    let res = app
        .post_json(
            "/products",
            &json!({"name": "", "price_cents": -1, "stock": 1.5}),
        )
        .await;
    assert_validation_error(res, json!([
            {"loc": ["body", "name"], "msg": "String should have at least 1 character", "type": "too_short"},
            {"loc": ["body", "price_cents"], "msg": "Input should be greater than or equal to 0", "type": "out_of_range"},
            {"loc": ["body", "stock"], "msg": "Input should be a valid integer", "type": "invalid_type"},
        ]),
    )
    .await;

    let res = app
        .post_json(
            "/products",
            &json!({"name": "x".repeat(201), "price_cents": "5"}),
        )
        .await;
    assert_validation_error(res, json!([
            {"loc": ["body", "name"], "msg": "String should have at most 200 characters", "type": "too_long"},
            {"loc": ["body", "price_cents"], "msg": "Input should be a valid integer", "type": "invalid_type"},
            {"loc": ["body", "stock"], "msg": "Field required", "type": "missing"},
        ]),
    )
    .await;
}

#[tokio::test]
async fn a_missing_product_is_404_naming_it() {
    let app = spawn_app().await;
    assert_envelope(
        app.get("/products/7").await,
        404,
        "not_found",
        "Resource not found",
        json!({"resource": "product", "id": 7}),
    )
    .await;
}
