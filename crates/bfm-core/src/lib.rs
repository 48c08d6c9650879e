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
