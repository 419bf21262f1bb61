//! Email addresses: the common `local@domain` form, at most 254 characters, stored lowercased.
//!
//! The syntax is keel's `email` rule (RFC 5321/5322 for the addresses people actually type: a
//! dot-atom local part of at most 64 characters and a domain of at least two DNS labels, the
//! last alphabetic; quoted local parts, comments and IP-literal domains are refused: they are
//! legal and almost never meant).

use keel::validate::Problem;

/// A valid, lowercased email address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub const MAX_LEN: usize = 254;

    pub fn parse(value: String) -> Result<Self, Problem> {
        if value.chars().count() > Self::MAX_LEN {
            return Err(Problem::too_long(Self::MAX_LEN));
        }
        keel::validate::rules::email(&value)?;
        Ok(Email(value.to_ascii_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_addresses_and_lowercases_them() {
        for ok in [
            "ada@example.com",
            "A.Lovelace+shop@Mail.Example.ORG",
            "x_y-z@a-b.io",
        ] {
            let email = Email::parse(ok.into()).unwrap();
            assert_eq!(email.as_str(), ok.to_ascii_lowercase());
        }
    }

    #[test]
    fn refuses_what_is_not_an_address() {
        for bad in [
            "",
            "ada",
            "@example.com",
            "ada@",
            "ada@localhost",
            "ada@@example.com",
            "ada@example..com",
            ".ada@example.com",
            "ada.@example.com",
            "a da@example.com",
            "ada@-example.com",
            "ada@example.c0m",
            "ada@exa_mple.com",
            "adé@example.com",
        ] {
            assert_eq!(
                Email::parse(bad.into()),
                Err(Problem::invalid_email()),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn refuses_addresses_over_254_characters_as_too_long() {
        let long = format!("{}@{}.com", "a".repeat(64), "b".repeat(190));
        assert_eq!(Email::parse(long), Err(Problem::too_long(254)));
    }
}
