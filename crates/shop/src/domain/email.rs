//! Email addresses: the common `local@domain` form, at most 254 characters, stored lowercased.
//!
//! The rules are those of RFC 5321/5322 for the addresses people actually type: a dot-atom
//! local part of at most 64 characters and a domain of at least two DNS labels, the last
//! alphabetic. Quoted local parts, comments and IP-literal domains are refused: they are legal
//! and almost never meant.

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
        let Some((local, domain)) = value.rsplit_once('@') else {
            return Err(Problem::invalid_email());
        };
        if !is_local_part(local) || !is_domain(domain) {
            return Err(Problem::invalid_email());
        }
        Ok(Email(value.to_ascii_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn is_local_part(local: &str) -> bool {
    const SPECIALS: &[u8] = b"!#$%&'*+/=?^_`{|}~-";
    (1..=64).contains(&local.len())
        && local.split('.').all(|atom| {
            !atom.is_empty()
                && atom
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || SPECIALS.contains(&b))
        })
}

fn is_domain(domain: &str) -> bool {
    let labels: Vec<&str> = domain.split('.').collect();
    let is_label = |label: &&str| {
        (1..=63).contains(&label.len())
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    domain.len() <= 253
        && labels.len() >= 2
        && labels.iter().all(is_label)
        && labels
            .last()
            .is_some_and(|tld| tld.len() >= 2 && tld.bytes().all(|b| b.is_ascii_alphabetic()))
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
