//! The migration model: versions, scripts, checksums and the migration itself.

use crate::backend::BackendKind;
use crate::deps::Dependency;
use crate::sql::{self, Dialect};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::cmp::Ordering;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

/// A migration version: a string of digits (14 in sfm trees, any width in golang-migrate
/// folders), compared by numeric value.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Version(String);

impl Version {
    pub fn parse(s: &str) -> Option<Version> {
        (!s.is_empty() && s.len() <= 40 && s.bytes().all(|b| b.is_ascii_digit())).then(|| Version(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn significant(&self) -> &str {
        significant(&self.0)
    }

    /// Compare with the version written as `s` (digits), numerically, without allocating.
    pub(crate) fn cmp_str(&self, s: &str) -> Ordering {
        let (a, b) = (self.significant(), significant(s));
        a.len().cmp(&b.len()).then_with(|| a.cmp(b))
    }

    /// Whether `s` names this version (numerically: `001` ≡ `1`).
    pub fn matches(&self, s: &str) -> bool {
        Version::parse(s.trim()).is_some_and(|v| v.cmp(self) == Ordering::Equal)
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        let (a, b) = (self.significant(), other.significant());
        a.len().cmp(&b.len()).then_with(|| a.cmp(b))
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

fn significant(s: &str) -> &str {
    let t = s.trim_start_matches('0');
    if t.is_empty() { "0" } else { t }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The checksum algorithm in use. Stored beside every checksum so that a future algorithm can
/// be introduced without invalidating recorded ones.
pub const CHECKSUM_ALGORITHM: u32 = 1;

/// A checksum over the normalised statement stream of a script.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Checksum {
    pub algorithm: u32,
    pub value: String,
}

impl Checksum {
    /// Algorithm 1: SHA-256 over the normalised statements (see [`sql::normalise`]), each
    /// followed by a NUL byte; for JSON scripts, over the canonical JSON text (sorted keys, no
    /// blanks).
    pub fn of_statements<S: AsRef<str>>(statements: &[S]) -> Checksum {
        let mut h = Sha256::new();
        h.update(b"bfm-checksum-v1\0");
        for s in statements {
            h.update(s.as_ref().as_bytes());
            h.update(b"\0");
        }
        Checksum { algorithm: CHECKSUM_ALGORITHM, value: hex::encode(h.finalize()) }
    }

    pub fn of_sql(text: &str, dialect: Dialect) -> Result<Checksum, sql::LexError> {
        Ok(Checksum::of_statements(&sql::normalise(text, dialect)?))
    }

    pub fn of_json(text: &str) -> Result<Checksum, serde_json::Error> {
        let v: serde_json::Value = serde_json::from_str(text)?;
        Ok(Checksum::of_statements(&[v.to_string()]))
    }
}

impl fmt::Display for Checksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}:{}", self.algorithm, &self.value)
    }
}

/// One script file (up or down).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Script {
    pub path: PathBuf,
    pub text: Arc<str>,
}

/// Where a migration was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    /// `<root>/<backend>/<connection>/<version>_<name>.up.sql`
    Sfm,
    /// A golang-migrate folder (`001_name.up.sql`) mapped to one connection.
    GolangMigrate,
}

/// Where the declared schema of a migration came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SchemaSource {
    GoFile,
    Directive,
    ConnectionConfig,
}

/// A migration of the catalogue. Immutable once loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migration {
    /// Base id: `{version}_{name}_{backend}_{connection}`.
    pub id: String,
    pub version: Version,
    pub name: String,
    /// The backend directory name as written on disk (ids use it verbatim).
    pub backend: String,
    pub kind: BackendKind,
    pub connection: String,
    /// Declared (fixed) schema; `None` for a per-tenant (dynamic) migration.
    pub schema: Option<String>,
    pub schema_source: Option<SchemaSource>,
    /// BfM's optional `Table` field (only used by the `tables` filter).
    pub table: Option<String>,
    pub up: Script,
    pub down: Option<Script>,
    pub checksum: Checksum,
    /// Simple dependencies by name.
    pub dependencies: Vec<String>,
    pub structured_dependencies: Vec<Dependency>,
    /// Tags as `key=value` strings (normalised: lower-case key, trimmed), one per key, sorted
    /// by key. Kept only in this form: a map per migration cost half a kilobyte each.
    pub tags: Vec<String>,
    /// Tables (`schema.table` or `table`) and schemas that must exist before this runs.
    pub requires_tables: Vec<String>,
    pub requires_schemas: Vec<String>,
    /// `false` when the script opted out of the per-migration transaction.
    pub transactional: bool,
    /// On targets without transactions, `retry` resumes at the failed statement.
    pub resumable: bool,
    pub source: SourceKind,
    /// Metadata file (`.go`) if there was one.
    pub metadata_path: Option<PathBuf>,
}

impl Migration {
    pub fn base_id(version: &str, name: &str, backend: &str, connection: &str) -> String {
        format!("{version}_{name}_{backend}_{connection}")
    }

    /// Whether the migration runs once per tenant schema.
    pub fn is_dynamic(&self) -> bool {
        self.schema.is_none()
    }

    /// The id reported for a run in `schema`: `{schema}_{base}` for per-tenant runs, the base id
    /// otherwise.
    pub fn display_id(&self, schema: &str) -> String {
        if self.is_dynamic() && !schema.is_empty() { format!("{schema}_{}", self.id) } else { self.id.clone() }
    }

    /// Every dependency, simple ones as name-only structured dependencies.
    pub fn all_dependencies(&self) -> impl Iterator<Item = Dependency> + '_ {
        self.dependencies.iter().map(|d| Dependency::by_name(d)).chain(self.structured_dependencies.iter().cloned())
    }

    /// Whether `dep` designates this migration (ignoring schemas of per-tenant targets).
    pub fn is_target_of(&self, dep: &Dependency) -> bool {
        use crate::deps::TargetType;
        let conn_ok = dep.connection.as_deref().is_none_or(|c| c == self.connection);
        let ident_ok = match dep.target_type {
            TargetType::Name => dep.target.trim() == self.name,
            TargetType::Version => self.version.matches(&dep.target),
        };
        let schema_ok = match (&dep.schema, &self.schema) {
            (Some(want), Some(declared)) => want == declared,
            _ => true,
        };
        conn_ok && ident_ok && schema_ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_numerically() {
        let v = |s| Version::parse(s).unwrap();
        assert!(v("2") < v("10"));
        assert!(v("001") < v("002"));
        assert_eq!(v("001").cmp(&v("1")), Ordering::Equal);
        assert!(v("20250101000000") < v("20250101000001"));
        assert!(Version::parse("12a").is_none());
        assert!(Version::parse("").is_none());
        assert!(v("001").matches("1"));
    }

    #[test]
    fn checksums_ignore_comments_and_layout_but_not_content() {
        let a = Checksum::of_sql("-- hello\nCREATE TABLE t (id int);\r\n", Dialect::Postgres).unwrap();
        let b = Checksum::of_sql("CREATE TABLE t (\n    id int\n)  -- trailing\n", Dialect::Postgres).unwrap();
        let c = Checksum::of_sql("CREATE TABLE t (id bigint);", Dialect::Postgres).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a.algorithm, CHECKSUM_ALGORITHM);
        let j1 = Checksum::of_json(r#"[{"key": "a", "value": "b"}]"#).unwrap();
        let j2 = Checksum::of_json("[ {\"value\":\"b\",\n \"key\":\"a\"} ]").unwrap();
        assert_eq!(j1, j2);
    }
}
