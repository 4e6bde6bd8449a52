//! `[[alias]]` (SPEC §12): the schema. The table they make, its lookups
//! and its checks as a whole are `crate::alias`.

use serde::{Deserialize, Serialize};

/// `[[alias]]`: one virtual alias.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Alias {
    /// The address it takes, `user@domain`, or `@domain` for every local
    /// part of the domain that has no alias of its own.
    pub address: String,
    /// What it stands for: addresses, or `@other` (a domain alias's
    /// translation, which keeps the local part).
    pub to: Vec<String>,
}
