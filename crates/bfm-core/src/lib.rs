//! The pure core of bfm: what a migration is, how a catalogue is read from disk and checked, and
//! how a request becomes an ordered plan. Nothing in this crate talks to a database.

pub mod backend;
pub mod catalog;
pub mod deps;
pub mod directives;
pub mod etcd_script;
pub mod gometa;
pub mod migration;
pub mod plan;
pub mod sql;
pub mod tags;
pub mod template;

pub use backend::BackendKind;
pub use catalog::{Catalog, Diagnostic, GolangMigrateSource, LoadOptions, Lookup, Severity};
pub use deps::{Dependency, TargetType};
pub use migration::{CHECKSUM_ALGORITHM, Checksum, Migration, Script, SourceKind, Version};
pub use plan::{
    Direction, MissingSchema, Plan, PlanError, PlanRequest, Reason, Selector, SkipReason, Skipped, StateEntry, StateSnapshot, Status, Step,
};
pub use tags::TagFilter;

/// Validate a schema (or tenant) name given in a request against the default rule
/// `^[A-Za-z_][A-Za-z0-9_]{0,62}$`.
pub fn validate_schema_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let ok = match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' => name.len() <= 63 && chars.all(|c| c.is_ascii_alphanumeric() || c == '_'),
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid schema name {name:?}: it must start with a letter or `_`, contain only letters, digits and `_`, and be at most 63 characters"
        ))
    }
}

/// Validate an environment name (`BFM_ENVIRONMENT`, the configuration, a request's
/// `environment`) against `^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$`: a letter or digit, then at most 62
/// letters, digits, `_`, `.` or `-`. Scripts see it as `{{.Environment}}`; rendering quotes it
/// for where it stands anyway, and this keeps what can reach a script to a plain name.
pub fn validate_environment(name: &str) -> Result<(), String> {
    let bytes = name.as_bytes();
    let ok = bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.len() <= 63
        && bytes.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        // A request may send a long value: quote only its start.
        let shown: String = name.chars().take(64).collect();
        let more = if shown.len() < name.len() { "…" } else { "" };
        Err(format!(
            "invalid environment {shown:?}{more}: it must start with a letter or digit, contain only letters, digits, `_`, `.` and `-`, and be at most 63 characters"
        ))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn environment_names() {
        for ok in ["prod", "eu-west-1", "staging.2", "0", "a_b"] {
            assert!(super::validate_environment(ok).is_ok(), "{ok}");
        }
        let long = "a".repeat(64);
        for bad in ["", "-prod", ".x", "prod\n", "it's", "a b", "$$", "x;y", long.as_str(), "prodé"] {
            assert!(super::validate_environment(bad).is_err(), "{bad:?}");
        }
        assert!(super::validate_environment(&"a".repeat(63)).is_ok());
    }
}
