//! `#[derive(Validate)]` for keel: see `keel::validate::Validate` for the rules and the
//! answers. This crate only writes the code; keel holds the checks.

use proc_macro::TokenStream;
use proc_macro2::TokenStream as Tokens;
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{parse_macro_input, Data, DeriveInput, Error, Expr, Fields, GenericArgument, LitStr};
use syn::{PathArguments, Type};

/// Derives `keel::validate::Validate` for a struct with named fields.
#[proc_macro_derive(Validate, attributes(validate))]
pub fn derive_validate(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    match expand(&input) {
        Ok(tokens) => tokens.into(),
        Err(err) => err.to_compile_error().into(),
    }
}

/// The rules of one field (or, inside `each(...)`, of each element of a list).
#[derive(Default)]
struct Rules {
    checks: Vec<Tokens>,
    /// `custom = path`: functions of the typed value (for a list, of the list once its items
    /// are valid).
    custom: Vec<Tokens>,
    each: Option<Box<Rules>>,
    default: bool,
    /// What each rule says in the schema: statements on `schema: &mut SchemaRef`.
    docs: Vec<Tokens>,
}

/// What `#[validate(...)]` on the struct asks for.
#[derive(Default)]
struct StructRules {
    deny_unknown_fields: bool,
    /// `no_schema`: the type documents itself (its own utoipa `ToSchema`), the derive writes no
    /// utoipa impls.
    no_schema: bool,
    /// `custom = path`: `fn(&Self, &mut Report)`, run once every field is valid.
    custom: Vec<syn::Path>,
}

fn parse_struct_rules(input: &DeriveInput) -> syn::Result<StructRules> {
    let mut rules = StructRules::default();
    for attr in input.attrs.iter().filter(|a| a.path().is_ident("validate")) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("deny_unknown_fields") {
                rules.deny_unknown_fields = true;
            } else if meta.path.is_ident("no_schema") {
                rules.no_schema = true;
            } else if meta.path.is_ident("custom") {
                rules.custom.push(meta.value()?.parse()?);
            } else {
                return Err(meta.error(
                    "unknown struct rule: expected deny_unknown_fields, no_schema or custom = path",
                ));
            }
            Ok(())
        })?;
    }
    Ok(rules)
}

fn expand(input: &DeriveInput) -> syn::Result<Tokens> {
    let name = &input.ident;
    if !input.generics.params.is_empty() {
        return Err(Error::new(
            input.generics.span(),
            "#[derive(Validate)] does not support generic types",
        ));
    }
    let fields = match &input.data {
        Data::Struct(data) => match &data.fields {
            Fields::Named(fields) => &fields.named,
            _ => {
                return Err(Error::new(
                    input.span(),
                    "#[derive(Validate)] needs a struct with named fields",
                ))
            }
        },
        _ => {
            return Err(Error::new(
                input.span(),
                "#[derive(Validate)] needs a struct with named fields",
            ))
        }
    };
    let struct_rules = parse_struct_rules(input)?;
    let raw = format_ident!("__KeelRaw{}", name);
    let mut raw_fields = Vec::new();
    let mut checks = Vec::new();
    let mut names = Vec::new();
    let mut properties = Vec::new();
    let mut parameters = Vec::new();
    let mut field_types = Vec::new();
    for field in fields {
        let ident = field
            .ident
            .as_ref()
            .ok_or_else(|| Error::new(field.span(), "unnamed"))?;
        let key = ident.to_string();
        let key = key.strip_prefix("r#").unwrap_or(&key).to_owned();
        let (optional, inner) = match option_inner(&field.ty) {
            Some(inner) => (true, inner),
            None => (false, &field.ty),
        };
        let mut rules = Rules::default();
        for attr in field.attrs.iter().filter(|a| a.path().is_ident("validate")) {
            parse_rules(attr, &mut rules, inner)?;
        }
        if rules.default && optional {
            return Err(Error::new(
                field.span(),
                "`default` is for required fields; an Option is None when absent",
            ));
        }
        let element = vec_inner(inner);
        if rules.each.is_some() && element.is_none() {
            return Err(Error::new(field.ty.span(), "`each(...)` is for Vec fields"));
        }
        let raw_ty = if optional {
            quote! { ::core::option::Option<<#inner as ::keel::validate::Validate>::Raw> }
        } else {
            quote! { <#inner as ::keel::validate::Validate>::Raw }
        };
        raw_fields.push(quote! {
            #[serde(default, rename = #key)]
            #ident: ::keel::validate::Field<#raw_ty>,
        });
        let value_checks = &rules.checks;
        let list = element.is_some();
        let validate = match (&rules.each, element) {
            (Some(each), Some(element)) => {
                let element_checks: Vec<&Tokens> = each.checks.iter().chain(&each.custom).collect();
                quote! {
                    report.list::<#element>(raw, |value: #element, report: &mut ::keel::validate::Report| {
                        let mut ok = true;
                        {
                            let value = &value;
                            #( ok &= #element_checks; )*
                        }
                        ok.then_some(value)
                    })
                }
            }
            _ => quote! { <#inner as ::keel::validate::Validate>::validate(raw, report) },
        };
        // A list's own rules (its length) are checked on the raw items, before and whatever
        // the items' problems: every problem is reported, the list's first.
        let (validate, value_checks) = if list {
            let validate = quote! {{
                let mut list_ok = true;
                {
                    let value = &raw;
                    #( list_ok &= #value_checks; )*
                }
                let items = #validate;
                if list_ok { items } else { ::core::option::Option::None }
            }};
            (validate, rules.custom.clone())
        } else {
            (
                validate,
                value_checks.iter().chain(&rules.custom).cloned().collect(),
            )
        };
        let check_value = quote! {
            |value: #inner, report: &mut ::keel::validate::Report| -> ::core::option::Option<#inner> {
                let mut ok = true;
                {
                    let value = &value;
                    #( ok &= #value_checks; )*
                }
                ok.then_some(value)
            }
        };
        let check = if optional {
            quote! {
                report.enter(#key);
                let #ident: ::core::option::Option<::core::option::Option<#inner>> = match raw.#ident {
                    ::keel::validate::Field::Missing | ::keel::validate::Field::Present(None) => Some(None),
                    ::keel::validate::Field::Invalid(problem) => { report.problem(problem); None }
                    ::keel::validate::Field::Present(Some(raw)) => {
                        (#validate)
                            .and_then(|value| (#check_value)(value, report))
                            .map(Some)
                    }
                };
                report.leave();
            }
        } else {
            let missing = if rules.default {
                quote! { Some(<#inner as ::core::default::Default>::default()) }
            } else {
                quote! { { report.problem(::keel::validate::Problem::missing()); None } }
            };
            quote! {
                report.enter(#key);
                let #ident: ::core::option::Option<#inner> = match raw.#ident {
                    ::keel::validate::Field::Missing => #missing,
                    ::keel::validate::Field::Invalid(problem) => { report.problem(problem); None }
                    ::keel::validate::Field::Present(raw) => #validate,
                }
                .and_then(|value| (#check_value)(value, report));
                report.leave();
            }
        };
        checks.push(check);
        names.push(ident.clone());

        let docs = &rules.docs;
        let each_docs = rules.each.as_ref().map(|each| {
            let docs = &each.docs;
            quote! { ::keel::validate::schema::items(schema, |schema| { #( #docs )* }); }
        });
        let base = quote! {{
            let mut schema = <#inner as ::keel::validate::Validate>::openapi_schema();
            {
                let schema = &mut schema;
                #each_docs
                #( #docs )*
            }
            schema
        }};
        let doc = doc_comment(&field.attrs);
        let required = !optional && !rules.default;
        let in_object = if optional {
            quote! { ::keel::validate::schema::nullable(#base) }
        } else {
            base.clone()
        };
        properties.push(quote! {
            .field(#key, {
                let mut schema = #in_object;
                ::keel::validate::schema::describe(&mut schema, #doc);
                schema
            }, #required)
        });
        parameters.push(quote! {
            ::keel::validate::schema::parameter(#key, within.clone(), #base, #required, #doc)
        });
        field_types.push(inner.clone());
    }
    let (extra_field, extra_check) = if struct_rules.deny_unknown_fields {
        (
            quote! {
                #[serde(flatten)]
                __keel_extra: ::std::collections::BTreeMap<
                    ::std::string::String,
                    ::keel::__private::serde::de::IgnoredAny,
                >,
            },
            quote! {
                for key in raw.__keel_extra.keys() {
                    report.enter(key);
                    report.problem(::keel::validate::Problem::new(
                        "extra_forbidden",
                        "Extra inputs are not permitted",
                    ));
                    report.leave();
                }
            },
        )
    } else {
        (quote! {}, quote! {})
    };
    let struct_checks = &struct_rules.custom;
    let vis = &input.vis;
    let name_str = name.to_string();
    let struct_doc = doc_comment(&input.attrs);
    let deny = struct_rules
        .deny_unknown_fields
        .then(|| quote! { .deny_unknown_fields() });
    let utoipa = quote! { ::keel::__private::utoipa };
    // With `no_schema` the type's own `ToSchema` names and describes it, and collects what it
    // refers to.
    let (schema_impls, field_components) = if struct_rules.no_schema {
        (
            quote! {},
            quote! { <Self as #utoipa::ToSchema>::schemas(out); },
        )
    } else {
        (
            quote! {
            impl #utoipa::PartialSchema for #name {
                fn schema() -> ::keel::validate::schema::SchemaRef {
                    ::keel::validate::schema::ObjectSchema::new(#struct_doc)
                        #( #properties )*
                        #deny
                        .build()
                }
            }

            impl #utoipa::ToSchema for #name {
                fn name() -> ::std::borrow::Cow<'static, str> {
                    ::std::borrow::Cow::Borrowed(#name_str)
                }

                fn schemas(out: &mut ::keel::validate::schema::Components) {
                    #( <#field_types as ::keel::validate::Validate>::openapi_components(out); )*
                }
            }

            /// One parameter per field, in the query unless the operation says otherwise.
            impl #utoipa::IntoParams for #name {
                fn into_params(
                    parameter_in_provider: impl Fn() -> ::core::option::Option<#utoipa::openapi::path::ParameterIn>,
                ) -> ::std::vec::Vec<#utoipa::openapi::path::Parameter> {
                    let within = parameter_in_provider().unwrap_or(#utoipa::openapi::path::ParameterIn::Query);
                    ::std::vec![ #( #parameters ),* ]
                }
            }
                },
            quote! { #( <#field_types as ::keel::validate::Validate>::openapi_components(out); )* },
        )
    };
    Ok(quote! {
        #[doc(hidden)]
        #[allow(non_camel_case_types, dead_code)]
        #[derive(::keel::__private::serde::Deserialize)]
        #[serde(crate = "::keel::__private::serde")]
        #vis struct #raw {
            #( #raw_fields )*
            #extra_field
        }

        impl ::keel::validate::Validate for #name {
            type Raw = ::keel::validate::Object<#raw>;

            fn validate(raw: ::keel::validate::Object<#raw>, report: &mut ::keel::validate::Report) -> ::core::option::Option<Self> {
                let raw = raw.0;
                let before = report.count();
                #( #checks )*
                #extra_check
                let value = match ( #( #names, )* ) {
                    ( #( ::core::option::Option::Some(#names), )* ) => Self { #( #names, )* },
                    _ => return ::core::option::Option::None,
                };
                #( #struct_checks(&value, report); )*
                (report.count() == before).then_some(value)
            }

            fn openapi_schema() -> ::keel::validate::schema::SchemaRef {
                ::keel::validate::schema::reference(&<Self as #utoipa::ToSchema>::name())
            }

            fn openapi_components(out: &mut ::keel::validate::schema::Components) {
                let name = <Self as #utoipa::ToSchema>::name();
                if ::keel::validate::schema::add_component(out, &name, <Self as #utoipa::PartialSchema>::schema) {
                    #field_components
                }
            }
        }

        #schema_impls
    })
}

/// A doc comment's text: each line without the one space `///` leaves, trimmed at both ends.
fn doc_comment(attrs: &[syn::Attribute]) -> String {
    let lines: Vec<String> = attrs
        .iter()
        .filter(|a| a.path().is_ident("doc"))
        .filter_map(|a| match &a.meta {
            syn::Meta::NameValue(nv) => match &nv.value {
                Expr::Lit(syn::ExprLit {
                    lit: syn::Lit::Str(text),
                    ..
                }) => Some(text.value()),
                _ => None,
            },
            _ => None,
        })
        .map(|line| {
            line.strip_prefix(' ')
                .unwrap_or(&line)
                .trim_end()
                .to_owned()
        })
        .collect();
    lines.join("\n").trim().to_owned()
}

/// Reads `#[validate(rule, rule(...), ...)]` into `rules`.
/// `ty` is the type the rules apply to (inside an `Option`).
fn parse_rules(attr: &syn::Attribute, rules: &mut Rules, ty: &Type) -> syn::Result<()> {
    attr.parse_nested_meta(|meta| parse_rule(meta, rules, ty))
}

fn parse_rule(
    meta: syn::meta::ParseNestedMeta<'_>,
    rules: &mut Rules,
    ty: &Type,
) -> syn::Result<()> {
    let doc = quote! { ::keel::validate::schema };
    let span = meta.path.span();
    let rule = meta
        .path
        .get_ident()
        .map(|i| i.to_string())
        .unwrap_or_default();
    match rule.as_str() {
        "length" => {
            let (mut min, mut max) = (quote!(None), quote!(None));
            meta.parse_nested_meta(|inner| {
                let value: syn::LitInt = inner.value()?.parse()?;
                let value = value.base10_parse::<usize>()?;
                if inner.path.is_ident("min") {
                    min = quote!(Some(#value));
                } else if inner.path.is_ident("max") {
                    max = quote!(Some(#value));
                } else {
                    return Err(inner.error("length takes `min` and `max`"));
                }
                Ok(())
            })?;
            rules.checks.push(quote_spanned! {span=>
                report.check(::keel::validate::rules::length(value, #min, #max))
            });
            rules
                .docs
                .push(quote! { #doc::length(schema, #min, #max); });
        }
        "range" => {
            let mut any = false;
            meta.parse_nested_meta(|inner| {
                let bound: Expr = inner.value()?.parse()?;
                let check = ["ge", "gt", "le", "lt"]
                    .into_iter()
                    .find(|name| inner.path.is_ident(name))
                    .ok_or_else(|| inner.error("range takes `ge`, `gt`, `le` and `lt`"))?;
                let which = format_ident!("{}", capitalise(check));
                let check = format_ident!("{}", check);
                rules.checks.push(quote_spanned! {bound.span()=>
                    report.check(::keel::validate::rules::#check(value, #bound))
                });
                // An `f32` bound is documented as written, not as the nearest `f32` widened.
                let documented = if is_f32(ty) { quote!(f64) } else { quote!(#ty) };
                rules.docs.push(quote! {
                    #doc::range(schema, #doc::Bound::#which, { let bound: #documented = #bound; bound });
                });
                any = true;
                Ok(())
            })?;
            if !any {
                return Err(Error::new(span, "range needs at least one bound"));
            }
        }
        "pattern" => {
            let pattern: LitStr = meta.value()?.parse()?;
            if let Err(err) = regex_lite::Regex::new(&pattern.value()) {
                return Err(Error::new(
                    pattern.span(),
                    format!("invalid pattern: {err}"),
                ));
            }
            rules.checks.push(quote_spanned! {span=>
                {
                    static COMPILED: ::std::sync::OnceLock<::core::option::Option<::keel::__private::Regex>> =
                        ::std::sync::OnceLock::new();
                    report.check(::keel::validate::rules::pattern(value, #pattern, &COMPILED))
                }
            });
            rules.docs.push(quote! { #doc::pattern(schema, #pattern); });
        }
        "email" => {
            rules.checks.push(quote_spanned! {span=>
                report.check(::keel::validate::rules::email(value))
            });
            rules.docs.push(quote! { #doc::format(schema, "email"); });
        }
        "url" => {
            rules.checks.push(quote_spanned! {span=>
                report.check(::keel::validate::rules::url(value))
            });
            rules.docs.push(quote! { #doc::format(schema, "uri"); });
        }
        "one_of" => {
            let content;
            syn::parenthesized!(content in meta.input);
            let options =
                syn::punctuated::Punctuated::<LitStr, syn::Token![,]>::parse_terminated(&content)?;
            if options.is_empty() {
                return Err(Error::new(span, "one_of needs at least one option"));
            }
            let options: Vec<&LitStr> = options.iter().collect();
            rules.checks.push(quote_spanned! {span=>
                report.check(::keel::validate::rules::one_of(value, &[#(#options),*]))
            });
            rules
                .docs
                .push(quote! { #doc::one_of(schema, &[#(#options),*]); });
        }
        "each" => {
            let mut each = Rules::default();
            let element = vec_inner(ty).unwrap_or(ty);
            meta.parse_nested_meta(|inner| parse_rule(inner, &mut each, element))?;
            if each.each.is_some() || each.default {
                return Err(Error::new(span, "each(...) takes value rules only"));
            }
            rules.each = Some(Box::new(each));
        }
        "default" => rules.default = true,
        "example" => {
            let example: Expr = meta.value()?.parse()?;
            rules.docs.push(quote! {
                #doc::example(schema, ::keel::__private::serde_json::json!(#example));
            });
        }
        "custom" => {
            let check: syn::Path = meta.value()?.parse()?;
            rules.custom.push(quote_spanned! {check.span()=>
                report.check(#check(value))
            });
        }
        _ => return Err(Error::new(
            span,
            "unknown rule: expected length, range, pattern, email, url, one_of, each, custom, default or example",
        )),
    }
    Ok(())
}

fn capitalise(word: &str) -> String {
    let mut chars = word.chars();
    chars
        .next()
        .map(|first| first.to_ascii_uppercase().to_string() + chars.as_str())
        .unwrap_or_default()
}

fn is_f32(ty: &Type) -> bool {
    matches!(ty, Type::Path(path) if path.path.is_ident("f32"))
}

/// `T` when `ty` is `Option<T>`.
fn option_inner(ty: &Type) -> Option<&Type> {
    generic_inner(ty, "Option")
}

/// `T` when `ty` is `Vec<T>`.
fn vec_inner(ty: &Type) -> Option<&Type> {
    generic_inner(ty, "Vec")
}

fn generic_inner<'a>(ty: &'a Type, name: &str) -> Option<&'a Type> {
    let Type::Path(path) = ty else { return None };
    let last = path.path.segments.last()?;
    if last.ident != name {
        return None;
    }
    let PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    match args.args.first()? {
        GenericArgument::Type(inner) if args.args.len() == 1 => Some(inner),
        _ => None,
    }
}
