//! The OpenAPI schema of a validated type, written from the same declaration as its checks.
//!
//! `#[derive(Validate)]` gives a struct [`utoipa::ToSchema`] (a component named after the
//! struct) and [`utoipa::IntoParams`] (one query parameter per field), and each rule of a field
//! its keyword:
//!
//! | rule | schema |
//! |---|---|
//! | `length(min, max)` | `minLength`/`maxLength` on a string, `minItems`/`maxItems` on a list |
//! | `range(ge, gt, le, lt)` | `minimum`, `exclusiveMinimum`, `maximum`, `exclusiveMaximum` |
//! | `pattern` | `pattern` |
//! | `email`, `url` | `format: email`, `format: uri` |
//! | `one_of(...)` | `enum` |
//! | `each(...)` | the rules above on `items` |
//! | `deny_unknown_fields` | `additionalProperties: false` |
//! | `example = value` | `examples`: documentation only, nothing is checked |
//!
//! `#[validate(no_schema)]` on the struct writes none of these impls: the type derives utoipa's
//! `ToSchema` itself, and keel refers to that.
//!
//! A field is `required` unless it is an `Option` (which may also be `null`) or has `default`.
//! Doc comments become descriptions. `custom` rules run code, and no schema keyword says what
//! they check: describe them in the field's doc comment.
//!
//! A hand-written [`Validate`](super::Validate) impl documents itself with
//! [`Validate::openapi_schema`](super::Validate::openapi_schema), most simply by starting from
//! its raw type's schema and applying the functions below, with the constants its checks use.

use utoipa::openapi::schema::{
    AdditionalProperties, ArrayItems, ObjectBuilder, OneOfBuilder, Schema, SchemaFormat,
    SchemaType, Type,
};
use utoipa::openapi::{Ref, RefOr};

pub use utoipa::Number;

/// A schema, or a reference to a component.
pub type SchemaRef = RefOr<Schema>;

/// Named schemas: what [`Validate::openapi_components`](super::Validate::openapi_components)
/// collects, and utoipa's `ToSchema::schemas` takes.
pub type Components = Vec<(String, SchemaRef)>;

/// `{}`: any value. What a [`Validate`](super::Validate) impl documents unless it says more.
pub fn any() -> SchemaRef {
    ObjectBuilder::new()
        .schema_type(SchemaType::AnyValue)
        .into()
}

/// `{"type": t}`.
pub fn of_type(t: Type) -> SchemaRef {
    ObjectBuilder::new().schema_type(t).into()
}

/// A reference to the component `name`.
pub fn reference(name: &str) -> SchemaRef {
    RefOr::Ref(Ref::from_schema_name(name))
}

/// A length rule: characters of a string, items of a list. Several length rules on one value
/// all hold, so the tightest bound of each side is kept.
pub fn length(schema: &mut SchemaRef, min: Option<usize>, max: Option<usize>) {
    fn tighten(slot: &mut Option<usize>, bound: Option<usize>, tighter: fn(usize, usize) -> usize) {
        if let Some(bound) = bound {
            *slot = Some(slot.map_or(bound, |old| tighter(old, bound)));
        }
    }
    match schema {
        RefOr::T(Schema::Object(object)) => {
            tighten(&mut object.min_length, min, usize::max);
            tighten(&mut object.max_length, max, usize::min);
        }
        RefOr::T(Schema::Array(array)) => {
            tighten(&mut array.min_items, min, usize::max);
            tighten(&mut array.max_items, max, usize::min);
        }
        _ => {}
    }
}

/// Which bound a range rule sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    /// `ge`: `minimum`.
    Ge,
    /// `gt`: `exclusiveMinimum`.
    Gt,
    /// `le`: `maximum`.
    Le,
    /// `lt`: `exclusiveMaximum`.
    Lt,
}

/// A range rule's bound.
pub fn range(schema: &mut SchemaRef, bound: Bound, value: impl Into<Number>) {
    if let RefOr::T(Schema::Object(object)) = schema {
        let slot = match bound {
            Bound::Ge => &mut object.minimum,
            Bound::Gt => &mut object.exclusive_minimum,
            Bound::Le => &mut object.maximum,
            Bound::Lt => &mut object.exclusive_maximum,
        };
        *slot = Some(value.into());
    }
}

/// A `pattern` rule.
pub fn pattern(schema: &mut SchemaRef, pattern: &str) {
    if let RefOr::T(Schema::Object(object)) = schema {
        object.pattern = Some(pattern.to_owned());
    }
}

/// A `format`: `email` for the email rule, `uri` for the url rule.
pub fn format(schema: &mut SchemaRef, format: &str) {
    if let RefOr::T(Schema::Object(object)) = schema {
        object.format = Some(SchemaFormat::Custom(format.to_owned()));
    }
}

/// A `one_of` rule: the only values allowed.
pub fn one_of(schema: &mut SchemaRef, options: &[&str]) {
    if let RefOr::T(Schema::Object(object)) = schema {
        object.enum_values = Some(options.iter().map(|o| (*o).into()).collect());
    }
}

/// An example value (`example = ...` on a field: documentation only, nothing is checked).
pub fn example(schema: &mut SchemaRef, value: serde_json::Value) {
    match schema {
        RefOr::T(Schema::Object(object)) => object.examples = vec![value],
        RefOr::T(Schema::Array(array)) => array.examples = vec![value],
        _ => {}
    }
}

/// Applies `rules` to the schema of a list's items.
pub fn items(schema: &mut SchemaRef, rules: impl FnOnce(&mut SchemaRef)) {
    if let RefOr::T(Schema::Array(array)) = schema {
        if let ArrayItems::RefOrSchema(items) = &mut array.items {
            rules(items);
        }
    }
}

/// The schema of an `Option`: the value, or `null`.
pub fn nullable(schema: SchemaRef) -> SchemaRef {
    fn with_null(types: &mut SchemaType) -> bool {
        match types {
            SchemaType::Type(t) => {
                *types = SchemaType::Array(vec![t.clone(), Type::Null]);
                true
            }
            SchemaType::Array(list) => {
                if !list.contains(&Type::Null) {
                    list.push(Type::Null);
                }
                true
            }
            SchemaType::AnyValue => false,
        }
    }
    match schema {
        RefOr::T(Schema::Object(mut object)) => {
            if !with_null(&mut object.schema_type) {
                return RefOr::T(Schema::Object(object));
            }
            if let Some(values) = &mut object.enum_values {
                values.push(serde_json::Value::Null);
            }
            RefOr::T(Schema::Object(object))
        }
        RefOr::T(Schema::Array(mut array)) => {
            with_null(&mut array.schema_type);
            RefOr::T(Schema::Array(array))
        }
        other => OneOfBuilder::new()
            .item(of_type(Type::Null))
            .item(other)
            .into(),
    }
}

/// Sets the description (a doc comment; empty leaves it as it is).
pub fn describe(schema: &mut SchemaRef, text: &str) {
    if text.is_empty() {
        return;
    }
    let text = text.to_owned();
    match schema {
        RefOr::T(Schema::Object(object)) => object.description = Some(text),
        RefOr::T(Schema::Array(array)) => array.description = Some(text),
        RefOr::T(Schema::OneOf(one_of)) => one_of.description = Some(text),
        RefOr::T(Schema::AllOf(all_of)) => all_of.description = Some(text),
        RefOr::T(Schema::AnyOf(any_of)) => any_of.description = Some(text),
        RefOr::Ref(reference) => reference.description = text,
        _ => {}
    }
}

/// An object schema, built field by field: what the derive writes for a struct.
#[derive(Default)]
pub struct ObjectSchema(ObjectBuilder);

impl std::fmt::Debug for ObjectSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ObjectSchema")
    }
}

impl ObjectSchema {
    /// An empty object described by `description` (the struct's doc comment).
    pub fn new(description: &str) -> Self {
        let builder = ObjectBuilder::new().schema_type(Type::Object);
        ObjectSchema(if description.is_empty() {
            builder
        } else {
            builder.description(Some(description))
        })
    }

    /// Adds the field `name`; `required` lists it in `required`.
    pub fn field(self, name: &str, schema: SchemaRef, required: bool) -> Self {
        let builder = self.0.property(name, schema);
        ObjectSchema(if required {
            builder.required(name)
        } else {
            builder
        })
    }

    /// No key but the fields: `additionalProperties: false`.
    pub fn deny_unknown_fields(self) -> Self {
        ObjectSchema(
            self.0
                .additional_properties(Some(AdditionalProperties::<Schema>::FreeForm(false))),
        )
    }

    /// The finished schema.
    pub fn build(self) -> SchemaRef {
        self.0.into()
    }
}

/// Adds `name`'s schema to `out` unless it is there; true if it was added (the caller then
/// collects what it refers to: a type that refers to itself is collected once).
pub fn add_component(out: &mut Components, name: &str, schema: impl FnOnce() -> SchemaRef) -> bool {
    if out.iter().any(|(existing, _)| existing == name) {
        return false;
    }
    out.push((name.to_owned(), schema()));
    true
}

/// A query or path parameter: what the derive's `IntoParams` gives per field.
pub fn parameter(
    name: &str,
    within: utoipa::openapi::path::ParameterIn,
    schema: SchemaRef,
    required: bool,
    description: &str,
) -> utoipa::openapi::path::Parameter {
    use utoipa::openapi::{path::ParameterBuilder, Required};
    ParameterBuilder::new()
        .name(name)
        .parameter_in(within)
        .required(if required {
            Required::True
        } else {
            Required::False
        })
        .description((!description.is_empty()).then_some(description))
        .schema(Some(schema))
        .build()
}
