//! Values that can only hold what the contract allows.
//!
//! Each newtype has one constructor, `parse`, which checks the rule and says what is wrong as a
//! [`Problem`]; past that point the code cannot hold an invalid email, username or quantity.
//! Each is also a [`Validate`] type, so that a request type declares its fields with them and
//! `#[derive(Validate)]` reports every problem of a body at once.

mod email;
mod id;

pub use email::Email;
pub use id::Id;

use keel::validate::schema::{self, Bound, SchemaRef};
use keel::validate::{Problem, Report, Validate};

/// `Validate` for a newtype read from `$raw` by its `parse`, documented as `$raw` with what
/// `$document` adds from the constants `parse` checks.
macro_rules! validate_by_parse {
    ($($name:ty: $raw:ty => $document:expr),* $(,)?) => {$(
        impl Validate for $name {
            type Raw = <$raw as Validate>::Raw;
            fn validate(raw: Self::Raw, report: &mut Report) -> Option<Self> {
                let value = <$raw as Validate>::validate(raw, report)?;
                <$name>::parse(value).map_err(|problem| report.problem(problem)).ok()
            }
            fn openapi_schema() -> SchemaRef {
                let mut schema = <$raw as Validate>::openapi_schema();
                let document: fn(&mut SchemaRef) = $document;
                document(&mut schema);
                schema
            }
        }
    )*};
}

validate_by_parse!(
    Email: String => |s| {
        schema::format(s, "email");
        schema::length(s, None, Some(Email::MAX_LEN));
    },
    Username: String => |s| {
        schema::length(s, Some(Username::MIN_LEN), Some(Username::MAX_LEN));
        schema::pattern(s, Username::PATTERN);
    },
    ProductName: String => |s| schema::length(s, Some(ProductName::MIN_LEN), Some(ProductName::MAX_LEN)),
    Quantity: i64 => |s| {
        schema::range(s, Bound::Ge, Quantity::MIN);
        schema::range(s, Bound::Le, Quantity::MAX);
    },
    Id: i64 => |s| schema::range(s, Bound::Ge, Id::MIN),
);

/// Length in characters (not bytes) must lie in `min..=max`.
fn check_length(value: &str, min: usize, max: usize) -> Result<(), Problem> {
    let len = value.chars().count();
    if len < min {
        Err(Problem::too_short(min))
    } else if len > max {
        Err(Problem::too_long(max))
    } else {
        Ok(())
    }
}

/// 3 to 32 characters of `[A-Za-z0-9_]`, kept as typed, unique regardless of case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Username(String);

impl Username {
    pub const PATTERN: &'static str = "^[A-Za-z0-9_]+$";
    pub const MIN_LEN: usize = 3;
    pub const MAX_LEN: usize = 32;

    pub fn parse(value: String) -> Result<Self, Problem> {
        check_length(&value, Self::MIN_LEN, Self::MAX_LEN)?;
        if !value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            return Err(Problem::invalid_pattern(Self::PATTERN));
        }
        Ok(Username(value))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A product name: 1 to 200 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductName(String);

impl ProductName {
    pub const MIN_LEN: usize = 1;
    pub const MAX_LEN: usize = 200;

    pub fn parse(value: String) -> Result<Self, Problem> {
        check_length(&value, Self::MIN_LEN, Self::MAX_LEN)?;
        Ok(ProductName(value))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// How many items one order takes: 1 to 1000.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quantity(i64);

impl Quantity {
    pub const MIN: i64 = 1;
    pub const MAX: i64 = 1000;

    pub fn parse(value: i64) -> Result<Self, Problem> {
        if (Self::MIN..=Self::MAX).contains(&value) {
            Ok(Quantity(value))
        } else {
            Err(Problem::out_of_range("Input should be between 1 and 1000"))
        }
    }

    pub fn get(self) -> i64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_follow_the_contract() {
        assert!(Username::parse("ada_99".into()).is_ok());
        assert_eq!(Username::parse("ab".into()), Err(Problem::too_short(3)));
        assert_eq!(Username::parse("a".repeat(33)), Err(Problem::too_long(32)));
        assert_eq!(
            Username::parse("ada lovelace".into()),
            Err(Problem::invalid_pattern(Username::PATTERN))
        );
        assert_eq!(
            Username::parse("adé_x".into()),
            Err(Problem::invalid_pattern(Username::PATTERN))
        );
    }

    #[test]
    fn quantities_are_one_to_a_thousand() {
        assert!(Quantity::parse(0).is_err());
        assert_eq!(Quantity::parse(1).map(Quantity::get), Ok(1));
        assert_eq!(Quantity::parse(1000).map(Quantity::get), Ok(1000));
        assert!(Quantity::parse(1001).is_err());
    }

    #[test]
    fn product_names_count_characters_not_bytes() {
        assert!(ProductName::parse("é".repeat(200)).is_ok());
        assert_eq!(
            ProductName::parse(String::new()),
            Err(Problem::too_short(1))
        );
    }
}
