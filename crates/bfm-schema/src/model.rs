//! The normalised in-memory model of a database schema, as read from `pg_catalog`.
//!
//! Every map is keyed by the object's display name (`schema.name`, `schema.table.constraint`,
//! `schema.function(args)`), which is also the name used in plans, approvals and drift reports.
//! Nothing here holds an OID, a statistic or a sequence's current value.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::ident::{display_name, display_part};

/// Version of the model's layout; part of every fingerprint.
pub const FORMAT_VERSION: u32 = 1;

/// A whole managed schema set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Model {
    pub format_version: u32,
    pub pg_major: u32,
    pub schemas: BTreeMap<String, Schema>,
    pub extensions: BTreeMap<String, Extension>,
    pub enums: BTreeMap<String, EnumType>,
    pub domains: BTreeMap<String, Domain>,
    #[serde(default)]
    pub composites: BTreeMap<String, CompositeType>,
    pub sequences: BTreeMap<String, Sequence>,
    pub tables: BTreeMap<String, Table>,
    pub constraints: BTreeMap<String, Constraint>,
    pub indexes: BTreeMap<String, Index>,
    pub views: BTreeMap<String, View>,
    pub functions: BTreeMap<String, Function>,
    pub triggers: BTreeMap<String, Trigger>,
    pub policies: BTreeMap<String, Policy>,
    /// Privileges granted to roles other than the owner, by object key.
    #[serde(default)]
    pub grants: BTreeMap<String, ObjectGrants>,
}

/// The privileges granted on one object to roles other than its owner (the owner's own
/// privileges are not managed). Functions start with `public:EXECUTE` as PostgreSQL does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectGrants {
    pub kind: crate::types::ObjectKind,
    /// The object as written after `GRANT … ON`: `TABLE "s"."t"`, `FUNCTION "s"."f"(integer)`.
    pub target: String,
    /// `role:PRIVILEGE`, with a trailing `*` when granted WITH GRANT OPTION; `public` is PUBLIC.
    pub privileges: std::collections::BTreeSet<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schema {
    pub name: String,
    pub comment: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Extension {
    pub name: String,
    pub schema: String,
    pub version: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnumType {
    pub schema: String,
    pub name: String,
    pub labels: Vec<String>,
    pub comment: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Domain {
    pub schema: String,
    pub name: String,
    pub base_type: String,
    pub not_null: bool,
    pub default: Option<String>,
    pub collation: Option<String>,
    /// CHECK constraints by name: definition (`CHECK (...)`, without `NOT VALID`).
    pub constraints: BTreeMap<String, DomainConstraint>,
    pub comment: Option<String>,
}

/// A composite type (`CREATE TYPE … AS (…)`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompositeType {
    pub schema: String,
    pub name: String,
    pub attributes: Vec<CompositeAttribute>,
    pub comment: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompositeAttribute {
    pub name: String,
    pub type_name: String,
    pub collation: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainConstraint {
    pub definition: String,
    pub validated: bool,
}

/// Sequence parameters (also used for identity columns).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeqOptions {
    pub data_type: String,
    pub start: i64,
    pub increment: i64,
    pub min: i64,
    pub max: i64,
    pub cache: i64,
    pub cycle: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sequence {
    pub schema: String,
    pub name: String,
    pub options: SeqOptions,
    /// `OWNED BY`: (table display name, column).
    pub owned_by: Option<OwnedBy>,
    pub comment: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnedBy {
    pub schema: String,
    pub table: String,
    pub column: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Table {
    pub schema: String,
    pub name: String,
    pub unlogged: bool,
    /// Storage parameters as `key=value`, sorted.
    pub options: Vec<String>,
    pub rls_enabled: bool,
    pub rls_forced: bool,
    pub comment: Option<String>,
    /// Columns in their physical order.
    pub columns: Vec<Column>,
}

impl Table {
    pub fn key(&self) -> String {
        display_name(&self.schema, &self.name)
    }
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Column {
    pub name: String,
    /// `format_type` output, schema-qualified for user types.
    pub type_name: String,
    pub not_null: bool,
    pub default: Option<String>,
    pub identity: Option<Identity>,
    /// Expression of a stored generated column.
    pub generated: Option<String>,
    pub collation: Option<String>,
    pub comment: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// `ALWAYS` (true) or `BY DEFAULT`.
    pub always: bool,
    pub options: SeqOptions,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConstraintKind {
    PrimaryKey,
    Unique,
    Check,
    ForeignKey,
    Exclude,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Constraint {
    pub schema: String,
    pub table: String,
    pub name: String,
    pub kind: ConstraintKind,
    /// `pg_get_constraintdef` without a trailing `NOT VALID`.
    pub definition: String,
    pub validated: bool,
    /// Referenced table of a foreign key (display name).
    pub references: Option<String>,
    /// `pg_get_indexdef` of the backing index (primary key, unique).
    pub index_definition: Option<String>,
    pub comment: Option<String>,
}

impl Constraint {
    pub fn table_key(&self) -> String {
        display_name(&self.schema, &self.table)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Index {
    pub schema: String,
    pub table: String,
    pub name: String,
    /// `pg_get_indexdef`.
    pub definition: String,
    pub unique: bool,
    /// False for an index left INVALID by a failed concurrent build.
    pub valid: bool,
    pub comment: Option<String>,
}

impl Index {
    pub fn table_key(&self) -> String {
        display_name(&self.schema, &self.table)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct View {
    pub schema: String,
    pub name: String,
    pub definition: String,
    pub options: Vec<String>,
    pub columns: Vec<ViewColumn>,
    /// Relations the view reads (display names), from `pg_depend`.
    pub depends_on: Vec<String>,
    /// Table columns the view reads, as `schema.table.column`.
    pub depends_on_columns: Vec<String>,
    pub comment: Option<String>,
    /// A materialized view (created `WITH DATA`; never replaced in place).
    #[serde(default)]
    pub materialized: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViewColumn {
    pub name: String,
    pub type_name: String,
    pub comment: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Function {
    pub schema: String,
    pub name: String,
    /// `function` or `procedure` (window functions count as functions).
    pub procedure: bool,
    pub identity_args: String,
    pub arguments: String,
    pub result: Option<String>,
    /// `pg_get_functiondef`: a complete `CREATE OR REPLACE` statement.
    pub definition: String,
    pub comment: Option<String>,
}

impl Function {
    /// `schema.name(identity args)`, the SQL form used after DROP/COMMENT ON FUNCTION.
    pub fn signature_sql(&self) -> String {
        format!("{}({})", crate::ident::qualified(&self.schema, &self.name), self.identity_args)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trigger {
    pub schema: String,
    /// Table or view the trigger is on.
    pub table: String,
    pub name: String,
    /// `pg_get_triggerdef`.
    pub definition: String,
    /// `tgenabled`: O (origin/local), D (disabled), R (replica), A (always).
    pub enabled: String,
    pub comment: Option<String>,
}

impl Trigger {
    pub fn table_key(&self) -> String {
        display_name(&self.schema, &self.table)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    pub schema: String,
    pub table: String,
    pub name: String,
    pub permissive: bool,
    /// ALL, SELECT, INSERT, UPDATE or DELETE.
    pub command: String,
    /// Role names, sorted; `public` for PUBLIC.
    pub roles: Vec<String>,
    pub using: Option<String>,
    pub check: Option<String>,
    pub comment: Option<String>,
}

impl Policy {
    pub fn table_key(&self) -> String {
        display_name(&self.schema, &self.table)
    }
}

/// Key of a table-scoped object (`schema.table.name`).
pub fn child_key(schema: &str, table: &str, name: &str) -> String {
    format!("{}.{}", display_name(schema, table), display_part(name))
}

/// Key of a function: `schema.name(identity args)`.
pub fn function_key(schema: &str, name: &str, identity_args: &str) -> String {
    format!("{}({})", display_name(schema, name), identity_args)
}

impl Model {
    /// An empty model for a server major version.
    pub fn empty(pg_major: u32) -> Model {
        Model { format_version: FORMAT_VERSION, pg_major, ..Model::default() }
    }

    /// `v1:` + hex SHA-256 of the canonical serialisation (format version and PostgreSQL major
    /// included). Column order is not managed, so columns are hashed sorted by name; every
    /// other collection is already keyed and sorted. The JSON is streamed into the hasher.
    pub fn fingerprint(&self) -> String {
        let mut h = HashWriter(Sha256::new());
        h.0.update(format!("bfm-schema model v{} pg{}\n", FORMAT_VERSION, self.pg_major).as_bytes());
        // Serialising plain structs, strings and maps into a hasher cannot fail.
        let _ = serde_json::to_writer(&mut h, &Canonical(self));
        format!("v1:{}", hex::encode(h.0.finalize()))
    }

    /// Number of objects, for summaries.
    pub fn object_count(&self) -> usize {
        self.schemas.len()
            + self.extensions.len()
            + self.enums.len()
            + self.domains.len()
            + self.composites.len()
            + self.sequences.len()
            + self.tables.len()
            + self.tables.values().map(|t| t.columns.len()).sum::<usize>()
            + self.constraints.len()
            + self.indexes.len()
            + self.views.len()
            + self.functions.len()
            + self.triggers.len()
            + self.policies.len()
            + self.grants.len()
    }

    /// Serialise and compress (gzip) for storage in a snapshot.
    pub fn to_compressed(&self) -> Result<Vec<u8>, crate::SchemaError> {
        use std::io::Write;
        let json = serde_json::to_vec(self).map_err(|e| crate::SchemaError::Snapshot(e.to_string()))?;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(&json).map_err(|e| crate::SchemaError::Snapshot(e.to_string()))?;
        enc.finish().map_err(|e| crate::SchemaError::Snapshot(e.to_string()))
    }

    /// Inverse of [`Model::to_compressed`].
    pub fn from_compressed(bytes: &[u8]) -> Result<Model, crate::SchemaError> {
        use std::io::Read;
        let mut dec = flate2::read::GzDecoder::new(bytes);
        let mut json = Vec::new();
        dec.read_to_end(&mut json).map_err(|e| crate::SchemaError::Snapshot(format!("cannot decompress: {e}")))?;
        let m: Model = serde_json::from_slice(&json).map_err(|e| crate::SchemaError::Snapshot(format!("cannot decode: {e}")))?;
        if m.format_version != FORMAT_VERSION {
            return Err(crate::SchemaError::FormatVersion { found: m.format_version, supported: FORMAT_VERSION });
        }
        Ok(m)
    }
}

struct HashWriter(Sha256);

impl std::io::Write for HashWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The model as hashed: like its own serialisation, with each table's columns sorted by name.
struct Canonical<'a>(&'a Model);
struct CanonicalTables<'a>(&'a BTreeMap<String, Table>);
struct CanonicalTable<'a>(&'a Table);

impl Serialize for Canonical<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let m = self.0;
        let mut st = s.serialize_struct("Model", 16)?;
        st.serialize_field("format_version", &m.format_version)?;
        st.serialize_field("pg_major", &m.pg_major)?;
        st.serialize_field("schemas", &m.schemas)?;
        st.serialize_field("extensions", &m.extensions)?;
        st.serialize_field("enums", &m.enums)?;
        st.serialize_field("domains", &m.domains)?;
        st.serialize_field("composites", &m.composites)?;
        st.serialize_field("sequences", &m.sequences)?;
        st.serialize_field("tables", &CanonicalTables(&m.tables))?;
        st.serialize_field("constraints", &m.constraints)?;
        st.serialize_field("indexes", &m.indexes)?;
        st.serialize_field("views", &m.views)?;
        st.serialize_field("functions", &m.functions)?;
        st.serialize_field("triggers", &m.triggers)?;
        st.serialize_field("policies", &m.policies)?;
        st.serialize_field("grants", &m.grants)?;
        st.end()
    }
}

impl Serialize for CanonicalTables<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, t) in self.0 {
            map.serialize_entry(k, &CanonicalTable(t))?;
        }
        map.end()
    }
}

impl Serialize for CanonicalTable<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let t = self.0;
        let mut columns: Vec<&Column> = t.columns.iter().collect();
        columns.sort_by(|a, b| a.name.cmp(&b.name));
        let mut st = s.serialize_struct("Table", 8)?;
        st.serialize_field("schema", &t.schema)?;
        st.serialize_field("name", &t.name)?;
        st.serialize_field("unlogged", &t.unlogged)?;
        st.serialize_field("options", &t.options)?;
        st.serialize_field("rls_enabled", &t.rls_enabled)?;
        st.serialize_field("rls_forced", &t.rls_forced)?;
        st.serialize_field("comment", &t.comment)?;
        st.serialize_field("columns", &columns)?;
        st.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(name: &str) -> Column {
        Column {
            name: name.into(),
            type_name: "integer".into(),
            not_null: false,
            default: None,
            identity: None,
            generated: None,
            collation: None,
            comment: None,
        }
    }

    #[test]
    fn fingerprint_ignores_column_order_only() {
        let mut m = Model::empty(15);
        let t = Table {
            schema: "public".into(),
            name: "t".into(),
            unlogged: false,
            options: vec![],
            rls_enabled: false,
            rls_forced: false,
            comment: None,
            columns: vec![col("a"), col("b")],
        };
        m.tables.insert("public.t".into(), t.clone());
        let mut m2 = m.clone();
        if let Some(t2) = m2.tables.get_mut("public.t") {
            t2.columns.reverse();
        }
        assert_eq!(m.fingerprint(), m2.fingerprint());
        let mut m3 = m.clone();
        if let Some(t3) = m3.tables.get_mut("public.t") {
            t3.columns[0].not_null = true;
        }
        assert_ne!(m.fingerprint(), m3.fingerprint());
        assert_ne!(m.fingerprint(), Model { pg_major: 16, ..m.clone() }.fingerprint());
        assert!(m.fingerprint().starts_with("v1:"));
        let bytes = m.to_compressed().unwrap();
        assert_eq!(Model::from_compressed(&bytes).unwrap(), m);
    }
}
