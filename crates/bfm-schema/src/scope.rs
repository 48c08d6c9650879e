//! Which schemas and extensions of a database are under declarative management.
//!
//! A database usually holds more than its desired files describe: extensions an administrator
//! installed, schemas of other applications. Managing all of it would plan those objects for
//! dropping. So, unless `{CONN}_MANAGED_SCHEMAS` lists the schemas, the scope is what the desired
//! files create or put objects in, plus the connection's own schema; an extension counts when
//! the files declare it or it lives in a managed schema.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::SchemaTarget;
use crate::model::Model;

/// Where a scope's schema list comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScopeOrigin {
    /// `{CONN}_MANAGED_SCHEMAS` (or the schemas given to a database-vs-database plan).
    Configured,
    /// The schemas the desired files create or use, plus `{CONN}_SCHEMA`.
    DesiredFiles,
    /// Nothing to derive it from: every non-system schema except `bfm`.
    #[default]
    WholeDatabase,
}

impl ScopeOrigin {
    pub fn as_str(self) -> &'static str {
        match self {
            ScopeOrigin::Configured => "configured",
            ScopeOrigin::DesiredFiles => "desired_files",
            ScopeOrigin::WholeDatabase => "whole_database",
        }
    }
}

/// The schemas and extensions bfm manages in one database. Plans, applies, snapshots, drift
/// reports and dumps all work on one of these; nothing outside it is read or changed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct Scope {
    pub origin: ScopeOrigin,
    /// Managed schemas, sorted. Empty only for [`ScopeOrigin::WholeDatabase`], whose list is
    /// read from the database each time (so a schema created later is managed too).
    pub schemas: Vec<String>,
    /// Extensions managed wherever they live (those the desired files declare), sorted.
    /// Extensions installed in a managed schema are managed as well.
    #[serde(default)]
    pub extensions: Vec<String>,
}

impl Scope {
    /// Every non-system schema of the database except `bfm`.
    pub fn whole_database() -> Scope {
        Scope::default()
    }

    /// Exactly these schemas (none = the whole database).
    pub fn configured(schemas: &[String]) -> Scope {
        let schemas = sorted(schemas.iter().cloned());
        if schemas.is_empty() {
            return Scope::whole_database();
        }
        Scope { origin: ScopeOrigin::Configured, schemas, extensions: Vec::new() }
    }

    /// Whether the schema list is read from the database rather than fixed.
    pub fn is_whole_database(&self) -> bool {
        self.origin == ScopeOrigin::WholeDatabase
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.origin {
            ScopeOrigin::WholeDatabase => f.write_str("every schema of the database except bfm")?,
            origin => {
                let from = if origin == ScopeOrigin::Configured { "configured" } else { "from the desired files" };
                if self.schemas.is_empty() {
                    write!(f, "no schema ({from})")?;
                } else {
                    write!(f, "schemas {} ({from})", self.schemas.join(", "))?;
                }
            }
        }
        if !self.extensions.is_empty() {
            write!(f, "; extensions {}", self.extensions.join(", "))?;
        }
        Ok(())
    }
}

fn sorted(items: impl Iterator<Item = String>) -> Vec<String> {
    items.filter(|s| !s.is_empty()).collect::<BTreeSet<_>>().into_iter().collect()
}

/// What a scope is derived from when the target lists no schemas.
#[derive(Debug, Clone, Copy)]
pub enum ScopeBasis<'a> {
    /// The desired model, read from every schema of the scratch database.
    Desired(&'a Model),
    /// A scope recorded earlier (the snapshot of the last apply).
    Recorded(&'a Scope),
    /// Nothing: the whole database.
    Nothing,
}

/// The one place a scope is decided. A configured list always wins; otherwise the desired
/// files decide (their schemas, `{CONN}_SCHEMA`, their extensions), else a recorded scope,
/// else the whole database.
pub fn resolve_scope(target: &SchemaTarget, basis: ScopeBasis<'_>) -> Scope {
    if !target.managed_schemas.is_empty() {
        return Scope::configured(&target.managed_schemas);
    }
    match basis {
        ScopeBasis::Desired(model) => {
            let used = schemas_in_use(model);
            let schemas = model
                .schemas
                .values()
                .map(|s| s.name.clone())
                .filter(|name| name != DEFAULT_SCHEMA || used.contains(name))
                .chain(target.default_schema.clone());
            Scope {
                origin: ScopeOrigin::DesiredFiles,
                schemas: sorted(schemas),
                extensions: sorted(model.extensions.values().map(|e| e.name.clone())),
            }
        }
        ScopeBasis::Recorded(scope) => scope.clone(),
        ScopeBasis::Nothing => Scope::whole_database(),
    }
}

/// Every database has it; it is managed only when the desired files put something in it.
const DEFAULT_SCHEMA: &str = "public";

/// Schemas that hold at least one object of the model (extensions aside: they are scoped by
/// name, and `CREATE EXTENSION` without a schema lands in `public`).
fn schemas_in_use(m: &Model) -> BTreeSet<String> {
    let mut used = BTreeSet::new();
    used.extend(m.enums.values().map(|x| x.schema.clone()));
    used.extend(m.domains.values().map(|x| x.schema.clone()));
    used.extend(m.composites.values().map(|x| x.schema.clone()));
    used.extend(m.sequences.values().map(|x| x.schema.clone()));
    used.extend(m.tables.values().map(|x| x.schema.clone()));
    used.extend(m.constraints.values().map(|x| x.schema.clone()));
    used.extend(m.indexes.values().map(|x| x.schema.clone()));
    used.extend(m.views.values().map(|x| x.schema.clone()));
    used.extend(m.functions.values().map(|x| x.schema.clone()));
    used.extend(m.triggers.values().map(|x| x.schema.clone()));
    used.extend(m.policies.values().map(|x| x.schema.clone()));
    used
}

/// Drop from a desired model the schemas outside `scope` (in practice an empty `public`) and
/// the privileges on them. Other objects cannot be outside: a schema holding one is in scope.
pub(crate) fn restrict(model: &mut Model, scope: &Scope) {
    if scope.is_whole_database() {
        return;
    }
    let outside: Vec<String> = model.schemas.iter().filter(|(_, s)| !scope.schemas.contains(&s.name)).map(|(k, _)| k.clone()).collect();
    for key in outside {
        model.schemas.remove(&key);
        if model.grants.get(&key).is_some_and(|g| g.kind == crate::types::ObjectKind::Schema) {
            model.grants.remove(&key);
        }
    }
    model.extensions.retain(|_, e| scope.extensions.contains(&e.name) || scope.schemas.contains(&e.schema));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Schema, Table};

    fn target(managed: &[&str], default_schema: Option<&str>) -> SchemaTarget {
        SchemaTarget {
            database_url: String::new(),
            managed_schemas: managed.iter().map(|s| s.to_string()).collect(),
            default_schema: default_schema.map(str::to_string),
        }
    }

    fn model_with(schemas: &[&str], tables: &[(&str, &str)]) -> Model {
        let mut m = Model::empty(17);
        for s in schemas {
            m.schemas.insert(s.to_string(), Schema { name: s.to_string(), comment: None });
        }
        for (s, t) in tables {
            m.tables.insert(
                format!("{s}.{t}"),
                Table {
                    schema: s.to_string(),
                    name: t.to_string(),
                    unlogged: false,
                    options: vec![],
                    rls_enabled: false,
                    rls_forced: false,
                    comment: None,
                    columns: vec![],
                },
            );
        }
        m
    }

    #[test]
    fn configured_list_wins() {
        let m = model_with(&["public", "app"], &[("app", "items")]);
        let s = resolve_scope(&target(&["b", "a", "a"], Some("x")), ScopeBasis::Desired(&m));
        assert_eq!(s, Scope { origin: ScopeOrigin::Configured, schemas: vec!["a".into(), "b".into()], extensions: vec![] });
    }

    #[test]
    fn desired_files_skip_an_empty_public_and_add_the_connection_schema() {
        let m = model_with(&["public", "app"], &[("app", "items")]);
        let s = resolve_scope(&target(&[], Some("core")), ScopeBasis::Desired(&m));
        assert_eq!(s.origin, ScopeOrigin::DesiredFiles);
        assert_eq!(s.schemas, vec!["app".to_string(), "core".to_string()]);
        let m = model_with(&["public", "app"], &[("public", "t")]);
        assert_eq!(resolve_scope(&target(&[], None), ScopeBasis::Desired(&m)).schemas, vec!["app".to_string(), "public".to_string()]);
    }

    #[test]
    fn recorded_and_nothing() {
        let recorded = Scope { origin: ScopeOrigin::DesiredFiles, schemas: vec!["app".into()], extensions: vec!["citext".into()] };
        assert_eq!(resolve_scope(&target(&[], None), ScopeBasis::Recorded(&recorded)), recorded);
        assert!(resolve_scope(&target(&[], None), ScopeBasis::Nothing).is_whole_database());
        assert_eq!(recorded.to_string(), "schemas app (from the desired files); extensions citext");
    }

    #[test]
    fn restrict_drops_schemas_outside() {
        let mut m = model_with(&["public", "app"], &[("app", "items")]);
        let scope = Scope { origin: ScopeOrigin::DesiredFiles, schemas: vec!["app".into()], extensions: vec![] };
        restrict(&mut m, &scope);
        assert_eq!(m.schemas.keys().collect::<Vec<_>>(), vec!["app"]);
    }
}
