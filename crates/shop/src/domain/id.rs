//! Ids: positive 64-bit integers, in paths and bodies.

use std::fmt;

use keel::validate::Problem;
use serde::{Deserialize, Deserializer, Serialize};

/// A record id: an integer ≥ 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Id(i64);

impl Id {
    pub const MIN: i64 = 1;

    pub fn parse(value: i64) -> Result<Self, Problem> {
        if value >= Self::MIN {
            Ok(Id(value))
        } else {
            Err(Problem::out_of_range("Input should be greater than 0"))
        }
    }

    pub fn get(self) -> i64 {
        self.0
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Reads an `i64` and refuses ids below 1 with keel's `type: message` convention, so a path
/// `/users/0` is a 422 `out_of_range` at `["path", "id"]`.
impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = i64::deserialize(deserializer)?;
        Id::parse(value).map_err(|problem| {
            serde::de::Error::custom(format_args!("{}: {}", problem.kind(), problem.msg()))
        })
    }
}
