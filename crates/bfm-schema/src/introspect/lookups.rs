//! Lookups every object kind uses: comments, extension members (excluded everywhere),
//! collation and operator class names.

use std::collections::HashMap;

/// Comments of user objects (and of schemas, whose `public` predates user OIDs), resolved by
/// OID on the client: joining pg_description into every query misleads the planner.
pub(super) const Q_COMMENTS: &str = "
SELECT d.classoid::regclass::text, d.objoid, d.objsubid, d.description FROM pg_description d
WHERE d.objoid >= 16384 OR d.classoid = 'pg_namespace'::regclass";

/// Extension members, excluded everywhere.
pub(super) const Q_EXTENSION_MEMBERS: &str = "
SELECT d.classid::regclass::text, d.objid FROM pg_depend d WHERE d.deptype = 'e'";

pub(super) const Q_OPCLASSES: &str = "
SELECT oc.oid, n.nspname::text, oc.opcname::text, oc.opcdefault
FROM pg_opclass oc JOIN pg_namespace n ON n.oid = oc.opcnamespace";

pub(super) const Q_COLLATIONS: &str = "
SELECT co.oid, n.nspname::text, co.collname::text
FROM pg_collation co JOIN pg_namespace n ON n.oid = co.collnamespace";

/// Comment lookup by (catalog, object OID, sub-id).
pub(super) struct Comments(pub(super) HashMap<(u8, u32, i32), String>);

pub(super) const C_CLASS: u8 = 1;
pub(super) const C_NAMESPACE: u8 = 2;
pub(super) const C_CONSTRAINT: u8 = 3;
pub(super) const C_PROC: u8 = 4;
pub(super) const C_TRIGGER: u8 = 5;
pub(super) const C_POLICY: u8 = 6;
pub(super) const C_TYPE: u8 = 7;

pub(super) fn catalog_tag(name: &str) -> u8 {
    match name {
        "pg_class" => C_CLASS,
        "pg_namespace" => C_NAMESPACE,
        "pg_constraint" => C_CONSTRAINT,
        "pg_proc" => C_PROC,
        "pg_trigger" => C_TRIGGER,
        "pg_policy" => C_POLICY,
        "pg_type" => C_TYPE,
        _ => 0,
    }
}

impl Comments {
    pub(super) fn get(&self, catalog: u8, oid: u32, sub: i32) -> Option<String> {
        self.0.get(&(catalog, oid, sub)).cloned()
    }
}
