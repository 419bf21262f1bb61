#![allow(clippy::unwrap_used)]
mod common;

use common::{assert_envelope, assert_timestamp, assert_validation_error, spawn_app};
use serde_json::{json, Value};

#[tokio::test]
async fn placing_an_order_takes_the_stock_and_prices_it() {
    let app = spawn_app().await;
    app.create_user("ada@example.com", "ada").await;
    app.create_product("Lamp", 1999, 10).await;

    let res = app
        .post_json(
            "/orders",
            &json!({"user_id": 1, "product_id": 1, "quantity": 3}),
        )
        .await;
    assert_eq!(res.status(), 201);
    assert_eq!(res.headers()["location"], "/orders/1");
    let order: Value = res.json().await.unwrap();
    assert_timestamp(&order["created_at"]);
    let mut expected = json!({
        "id": 1, "user_id": 1, "product_id": 1, "quantity": 3,
        "total_cents": 5997, "status": "pending",
    });
    expected["created_at"] = order["created_at"].clone();
    assert_eq!(order, expected);

    let res = app.get("/orders/1").await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap(), order);

    let product: Value = app.get("/products/1").await.json().await.unwrap();
    assert_eq!(product["stock"], 7);
}

#[tokio::test]
async fn ordering_more_than_the_stock_is_409_and_changes_nothing() {
    let app = spawn_app().await;
    app.create_user("ada@example.com", "ada").await;
    app.create_product("Lamp", 100, 3).await;
    let res = app
        .post_json(
            "/orders",
            &json!({"user_id": 1, "product_id": 1, "quantity": 5}),
        )
        .await;
    assert_envelope(
        res,
        409,
        "insufficient_stock",
        "Insufficient stock",
        json!({"available": 3, "requested": 5}),
    )
    .await;
    let product: Value = app.get("/products/1").await.json().await.unwrap();
    assert_eq!(product["stock"], 3);
    assert_envelope(
        app.get("/orders/1").await,
        404,
        "not_found",
        "Resource not found",
        json!({"resource": "order", "id": 1}),
    )
    .await;
}

#[tokio::test]
async fn an_unknown_user_or_product_is_404_naming_it() {
    let app = spawn_app().await;
    app.create_user("ada@example.com", "ada").await;
    app.create_product("Lamp", 100, 3).await;
    let res = app
        .post_json(
            "/orders",
            &json!({"user_id": 42, "product_id": 1, "quantity": 1}),
        )
        .await;
    assert_envelope(
        res,
        404,
        "not_found",
        "Resource not found",
        json!({"resource": "user", "id": 42}),
    )
    .await;
    let res = app
        .post_json(
            "/orders",
            &json!({"user_id": 1, "product_id": 43, "quantity": 1}),
        )
        .await;
    assert_envelope(
        res,
        404,
        "not_found",
        "Resource not found",
        json!({"resource": "product", "id": 43}),
    )
    .await;
    let product: Value = app.get("/products/1").await.json().await.unwrap();
    assert_eq!(product["stock"], 3);
}

#[tokio::test]
async fn order_fields_are_validated_all_at_once() {
    let app = spawn_app().await;
    let res = app
        .post_json(
            "/orders",
            &json!({"user_id": 0, "product_id": "2", "quantity": 1001}),
        )
        .await;
    assert_validation_error(res, json!([
            {"loc": ["body", "user_id"], "msg": "Input should be greater than 0", "type": "out_of_range"},
            {"loc": ["body", "product_id"], "msg": "Input should be a valid integer", "type": "invalid_type"},
            {"loc": ["body", "quantity"], "msg": "Input should be between 1 and 1000", "type": "out_of_range"},
        ]),
    )
    .await;
    let res = app
        .post_json(
            "/orders",
            &json!({"user_id": 1, "product_id": 1, "quantity": 0}),
        )
        .await;
    assert_validation_error(res, json!([{"loc": ["body", "quantity"], "msg": "Input should be between 1 and 1000", "type": "out_of_range"}]),
    )
    .await;
}

#[tokio::test]
async fn concurrent_orders_never_oversell() {
    let app = spawn_app().await;
    app.create_user("ada@example.com", "ada").await;
    app.create_product("Limited", 500, 10).await;

    let attempts = 60;
    let mut orders = tokio::task::JoinSet::new();
    for _ in 0..attempts {
        let client = app.client.clone();
        let url = app.url("/orders");
        orders.spawn(async move {
            let res = client
                .post(url)
                .json(&json!({"user_id": 1, "product_id": 1, "quantity": 1}))
                .send()
                .await
                .unwrap();
            let status = res.status().as_u16();
            let body: Value = res.json().await.unwrap();
            (status, body)
        });
    }
    let (mut created, mut refused) = (0, 0);
    while let Some(result) = orders.join_next().await {
        let (status, body) = result.unwrap();
        match status {
            201 => created += 1,
            409 => {
                assert_eq!(body["code"], "insufficient_stock");
                assert_eq!(body["details"]["available"], 0);
                refused += 1;
            }
            other => panic!("unexpected status {other}: {body}"),
        }
    }
    assert_eq!((created, refused), (10, attempts - 10));
    let product: Value = app.get("/products/1").await.json().await.unwrap();
    assert_eq!(product["stock"], 0);
}

#[tokio::test]
async fn an_order_whose_total_overflows_is_refused_and_sells_nothing() {
    let app = spawn_app().await;
    app.create_user("ada@example.com", "ada").await;
    app.create_product("Priceless", i64::MAX, 5).await;
    let res = app
        .post_json(
            "/orders",
            &json!({"user_id": 1, "product_id": 1, "quantity": 2}),
        )
        .await;
    assert_envelope(
        res,
        409,
        "total_out_of_range",
        "Order total out of range",
        Value::Null,
    )
    .await;
    let product: Value = app.get("/products/1").await.json().await.unwrap();
    assert_eq!(product["stock"], 5);
}
