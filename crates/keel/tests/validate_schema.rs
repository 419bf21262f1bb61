//! The OpenAPI schema `#[derive(Validate)]` writes is the rules it enforces: the schema is read
//! back, and every bound it documents is posted over a real socket, at the bound (accepted) and
//! one past it (refused at that field).
#![allow(clippy::unwrap_used, dead_code)]
mod common;

use axum::routing::post;
use axum::Router;
use keel::layers::ServiceLayers;
use keel::validate::{Valid, Validate};
use serde_json::{json, Map, Value};
use utoipa::{PartialSchema, ToSchema};

/// Where to send it.
#[derive(Debug, Validate)]
struct Address {
    /// The city's name.
    #[validate(length(min = 2, max = 6))]
    city: String,
    #[validate(pattern = "^[a-z]+$")]
    code: String,
}

/// A body with every rule.
#[derive(Debug, Validate)]
#[validate(deny_unknown_fields)]
struct Everything {
    /// Two to five characters.
    #[validate(length(min = 2, max = 5))]
    name: String,
    #[validate(range(ge = -3, le = 10))]
    closed: i64,
    #[validate(range(gt = 0.5, lt = 2.5))]
    open: f64,
    #[validate(range(gt = 0, lt = 4))]
    open_int: i32,
    #[validate(email)]
    email: String,
    #[validate(url)]
    link: Option<String>,
    #[validate(one_of("red", "green"))]
    colour: String,
    #[validate(length(min = 1, max = 3), each(length(min = 2, max = 4)))]
    tags: Vec<String>,
    #[validate(each(range(ge = 1, le = 9)))]
    scores: Option<Vec<u8>>,
    #[validate(default)]
    note: String,
    small: u8,
    address: Address,
}

fn valid() -> Value {
    json!({"name": "ab", "closed": 0, "open": 1.0, "open_int": 1, "email": "ada@example.com",
           "colour": "red", "tags": ["ab"], "small": 1,
           "address": {"city": "Paris", "code": "abc"}})
}

async fn accept(Valid(_): Valid<Everything>) -> &'static str {
    "ok"
}

#[test]
fn the_schema_states_every_rule() {
    let schema = serde_json::to_value(Everything::schema()).unwrap();
    assert_eq!(
        schema,
        json!({
            "type": "object",
            "description": "A body with every rule.",
            "properties": {
                "name": {"type": "string", "description": "Two to five characters.", "minLength": 2, "maxLength": 5},
                "closed": {"type": "integer", "format": "int64", "minimum": -3, "maximum": 10},
                "open": {"type": "number", "format": "double", "exclusiveMinimum": 0.5, "exclusiveMaximum": 2.5},
                "open_int": {"type": "integer", "format": "int32", "minimum": -2147483648, "maximum": 2147483647, "exclusiveMinimum": 0, "exclusiveMaximum": 4},
                "email": {"type": "string", "format": "email"},
                "link": {"type": ["string", "null"], "format": "uri"},
                "colour": {"type": "string", "enum": ["red", "green"]},
                "tags": {"type": "array", "items": {"type": "string", "minLength": 2, "maxLength": 4}, "minItems": 1, "maxItems": 3},
                "scores": {"type": ["array", "null"], "items": {"type": "integer", "format": "int32", "minimum": 1, "maximum": 9}},
                "note": {"type": "string"},
                "small": {"type": "integer", "format": "int32", "minimum": 0, "maximum": 255},
                "address": {"$ref": "#/components/schemas/Address"}
            },
            "required": ["name", "closed", "open", "open_int", "email", "colour", "tags", "small", "address"],
            "additionalProperties": false
        })
    );
    let mut components = Vec::new();
    Everything::schemas(&mut components);
    let names: Vec<&str> = components.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names, ["Address"]);
    assert_eq!(
        serde_json::to_value(&components[0].1).unwrap(),
        json!({
            "type": "object",
            "description": "Where to send it.",
            "properties": {
                "city": {"type": "string", "description": "The city's name.", "minLength": 2, "maxLength": 6},
                "code": {"type": "string", "pattern": "^[a-z]+$"}
            },
            "required": ["city", "code"]
        })
    );
}

/// One case: `body` is accepted, or refused with a problem at `loc`.
struct Case {
    what: String,
    body: Value,
    refused_at: Option<Vec<Value>>,
}

/// `n` characters that every string rule of the schema above allows.
fn text(n: u64) -> Value {
    Value::from("a".repeat(n as usize))
}

/// The cases each keyword of `schema` (a property at `path` of `base`) calls for.
fn cases_for(
    base: &Value,
    path: &[&str],
    schema: &Map<String, Value>,
    components: &Value,
    out: &mut Vec<Case>,
) {
    let with = |value: Option<Value>| {
        let mut body = base.clone();
        let mut at = &mut body;
        for key in &path[..path.len() - 1] {
            at = &mut at[*key];
        }
        let object = at.as_object_mut().unwrap();
        match value {
            Some(value) => object.insert(path[path.len() - 1].to_owned(), value),
            None => object.remove(path[path.len() - 1]),
        };
        body
    };
    let loc = |extra: Option<u64>| {
        let mut loc: Vec<Value> = std::iter::once("body")
            .chain(path.iter().copied())
            .map(Value::from)
            .collect();
        loc.extend(extra.map(Value::from));
        loc
    };
    let mut case = |what: String, value: Value, refused: Option<Vec<Value>>| {
        out.push(Case {
            what: format!("{}: {what}", path.join(".")),
            body: with(Some(value)),
            refused_at: refused,
        });
    };
    if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
        let name = reference.rsplit('/').next().unwrap();
        let component = components[name].as_object().unwrap();
        for (key, property) in component["properties"].as_object().unwrap() {
            let mut inner = path.to_vec();
            inner.push(key);
            cases_for(base, &inner, property.as_object().unwrap(), components, out);
        }
        return;
    }
    let int = |key: &str| schema.get(key).and_then(Value::as_i64);
    let num = |key: &str| schema.get(key).and_then(Value::as_f64);
    let is_integer = schema["type"] == "integer" || schema["type"][0] == "integer";
    if let Some(min) = schema.get("minLength").and_then(Value::as_u64) {
        case(format!("minLength {min}"), text(min), None);
        case(
            format!("minLength {min} - 1"),
            text(min - 1),
            Some(loc(None)),
        );
    }
    if let Some(max) = schema.get("maxLength").and_then(Value::as_u64) {
        case(format!("maxLength {max}"), text(max), None);
        case(
            format!("maxLength {max} + 1"),
            text(max + 1),
            Some(loc(None)),
        );
    }
    if is_integer {
        if let Some(min) = int("minimum") {
            case(
                format!("minimum {min}"),
                json!(min.max(int("exclusiveMinimum").map_or(min, |m| m + 1))),
                None,
            );
            case(
                format!("minimum {min} - 1"),
                json!(min - 1),
                Some(loc(None)),
            );
        }
        if let Some(max) = int("maximum") {
            case(
                format!("maximum {max}"),
                json!(max.min(int("exclusiveMaximum").map_or(max, |m| m - 1))),
                None,
            );
            case(
                format!("maximum {max} + 1"),
                json!(max + 1),
                Some(loc(None)),
            );
        }
        if let Some(min) = int("exclusiveMinimum") {
            case(
                format!("exclusiveMinimum {min}"),
                json!(min),
                Some(loc(None)),
            );
            case(format!("exclusiveMinimum {min} + 1"), json!(min + 1), None);
        }
        if let Some(max) = int("exclusiveMaximum") {
            case(
                format!("exclusiveMaximum {max}"),
                json!(max),
                Some(loc(None)),
            );
            case(format!("exclusiveMaximum {max} - 1"), json!(max - 1), None);
        }
    } else {
        if let Some(min) = num("exclusiveMinimum") {
            case(
                format!("exclusiveMinimum {min}"),
                json!(min),
                Some(loc(None)),
            );
            case(
                format!("exclusiveMinimum {min} + 0.001"),
                json!(min + 0.001),
                None,
            );
        }
        if let Some(max) = num("exclusiveMaximum") {
            case(
                format!("exclusiveMaximum {max}"),
                json!(max),
                Some(loc(None)),
            );
            case(
                format!("exclusiveMaximum {max} - 0.001"),
                json!(max - 0.001),
                None,
            );
        }
    }
    if let Some(options) = schema.get("enum").and_then(Value::as_array) {
        for option in options {
            case(format!("enum {option}"), option.clone(), None);
        }
        case("not in enum".into(), json!("blue"), Some(loc(None)));
    }
    match schema.get("format").and_then(Value::as_str) {
        Some("email") => {
            case("format email".into(), json!("ada@example.com"), None);
            case("not an email".into(), json!("ada"), Some(loc(None)));
        }
        Some("uri") => {
            case("format uri".into(), json!("https://example.com/a"), None);
            case("not a uri".into(), json!("example.com"), Some(loc(None)));
        }
        _ => {}
    }
    if let Some(pattern) = schema.get("pattern").and_then(Value::as_str) {
        assert_eq!(
            pattern, "^[a-z]+$",
            "the cases below are written for this pattern"
        );
        case("pattern".into(), json!("abc"), None);
        case("not the pattern".into(), json!("aBc"), Some(loc(None)));
    }
    if let Some(items) = schema.get("items").and_then(Value::as_object) {
        let item = || match items.get("minLength").and_then(Value::as_u64) {
            Some(min) => text(min),
            None => json!(items.get("minimum").and_then(Value::as_i64).unwrap_or(1)),
        };
        let list = |n: u64| Value::Array((0..n).map(|_| item()).collect());
        if let Some(min) = schema.get("minItems").and_then(Value::as_u64) {
            case(format!("minItems {min}"), list(min), None);
            case(
                format!("minItems {min} - 1"),
                list(min - 1),
                Some(loc(None)),
            );
        }
        if let Some(max) = schema.get("maxItems").and_then(Value::as_u64) {
            case(format!("maxItems {max}"), list(max), None);
            case(
                format!("maxItems {max} + 1"),
                list(max + 1),
                Some(loc(None)),
            );
        }
        // Each item keyword, on a one-item list.
        let mut items_cases = Vec::new();
        let wrapper = json!({"item": item()});
        cases_for(&wrapper, &["item"], items, components, &mut items_cases);
        // An item is never absent: the wrapper's own absence is not a case.
        for item_case in items_cases
            .into_iter()
            .filter(|c| !c.what.contains(": absent"))
        {
            let value = json!([item_case.body["item"].clone()]);
            let refused = item_case.refused_at.map(|_| loc(Some(0)));
            case(format!("items {}", item_case.what), value, refused);
        }
    }
    let types = &schema["type"];
    if types.as_array().is_some_and(|t| t.contains(&json!("null"))) {
        case("null".into(), Value::Null, None);
    }
    let _ = case;
    let name = path[path.len() - 1];
    let required = path.len() == 1
        && components["Everything"]["required"]
            .as_array()
            .unwrap()
            .contains(&json!(name))
        || path.len() == 2
            && components["Address"]["required"]
                .as_array()
                .unwrap()
                .contains(&json!(name));
    out.push(Case {
        what: format!("{}: absent (required: {required})", path.join(".")),
        body: with(None),
        refused_at: required.then(|| loc(None)),
    });
}

#[tokio::test]
async fn every_documented_bound_is_the_enforced_bound() {
    let mut components = Map::new();
    components.insert(
        "Everything".into(),
        serde_json::to_value(Everything::schema()).unwrap(),
    );
    let mut named = Vec::new();
    Everything::schemas(&mut named);
    for (name, schema) in named {
        components.insert(name, serde_json::to_value(schema).unwrap());
    }
    let components = Value::Object(components);
    let base = valid();
    let mut cases = vec![Case {
        what: "the valid body".into(),
        body: base.clone(),
        refused_at: None,
    }];
    for (key, property) in components["Everything"]["properties"].as_object().unwrap() {
        cases_for(
            &base,
            &[key],
            property.as_object().unwrap(),
            &components,
            &mut cases,
        );
    }
    if components["Everything"]["additionalProperties"] == json!(false) {
        let mut body = base.clone();
        body["extra"] = json!(1);
        cases.push(Case {
            what: "additionalProperties false".into(),
            body,
            refused_at: Some(vec![json!("body"), json!("extra")]),
        });
    }
    assert!(cases.len() > 60, "{} cases", cases.len());

    let addr =
        common::serve(ServiceLayers::new().apply(Router::new().route("/", post(accept)))).await;
    let client = reqwest::Client::new();
    for case in cases {
        let res = client
            .post(format!("http://{addr}/"))
            .json(&case.body)
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        let answer: Value = res.json().await.unwrap_or(Value::Null);
        match case.refused_at {
            None => assert_eq!(
                status, 200,
                "{} should pass: {} → {answer}",
                case.what, case.body
            ),
            Some(loc) => {
                assert_eq!(status, 422, "{} should fail: {}", case.what, case.body);
                let locs: Vec<&Value> = answer["details"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|d| &d["loc"])
                    .collect();
                assert_eq!(locs, [&Value::from(loc)], "{}: {answer}", case.what);
            }
        }
    }
}

/// Documented by utoipa's own derive: keel's writes no schema of its own.
#[derive(Debug, Validate, utoipa::ToSchema)]
#[validate(no_schema)]
#[schema(as = Renamed)]
struct OwnSchema {
    #[validate(length(max = 3))]
    #[schema(max_length = 3)]
    code: String,
}

#[test]
fn a_type_with_its_own_schema_keeps_it() {
    let mut components = Vec::new();
    <OwnSchema as Validate>::openapi_components(&mut components);
    let names: Vec<&str> = components.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names, ["Renamed"]);
    assert_eq!(
        serde_json::to_value(<OwnSchema as Validate>::openapi_schema()).unwrap(),
        json!({"$ref": "#/components/schemas/Renamed"})
    );
    assert_eq!(
        serde_json::to_value(&components[0].1).unwrap()["properties"]["code"],
        json!({"type": "string", "maxLength": 3})
    );
}
