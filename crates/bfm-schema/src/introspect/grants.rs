//! Privileges of roles other than the owner.

use std::collections::BTreeSet;

use tokio_postgres::Row;

use super::{Assembly, get};
use crate::error::SchemaError;
use crate::ident::{display_name, qualified};
use crate::model::*;
use crate::types::ObjectKind;

/// Privileges granted to roles other than the owner (PUBLIC is grantee 0). Functions without an
/// ACL have PostgreSQL's default (EXECUTE to PUBLIC); relations and schemas without one have
/// only the owner's.
pub(super) const Q_GRANTS: &str = "
SELECT 'r', c.oid, CASE WHEN a.grantee = 0 THEN 'public' ELSE pg_get_userbyid(a.grantee)::text END, a.privilege_type, a.is_grantable
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace, LATERAL aclexplode(c.relacl) a
WHERE n.nspname = ANY($1::text[]) AND c.relkind IN ('r', 'v', 'm', 'S') AND c.relacl IS NOT NULL AND a.grantee <> c.relowner
UNION ALL
SELECT 'f', p.oid, CASE WHEN a.grantee = 0 THEN 'public' ELSE pg_get_userbyid(a.grantee)::text END, a.privilege_type, a.is_grantable
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace,
     LATERAL aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
WHERE n.nspname = ANY($1::text[]) AND a.grantee <> p.proowner
UNION ALL
SELECT 'n', n.oid, CASE WHEN a.grantee = 0 THEN 'public' ELSE pg_get_userbyid(a.grantee)::text END, a.privilege_type, a.is_grantable
FROM pg_namespace n, LATERAL aclexplode(n.nspacl) a
WHERE n.nspname = ANY($1::text[]) AND n.nspacl IS NOT NULL AND a.grantee <> n.nspowner";

/// Privileges, keyed by the object they are on.
pub(super) fn grants(a: &mut Assembly, rows: &[Row]) -> Result<(), SchemaError> {
    for (oid, rel) in &a.rels {
        let kind = match rel.kind {
            'v' => ObjectKind::View,
            'm' => ObjectKind::MaterializedView,
            _ => ObjectKind::Table,
        };
        a.grant_targets
            .insert(('r', *oid), (kind, display_name(&rel.schema, &rel.name), format!("TABLE {}", qualified(&rel.schema, &rel.name))));
    }
    for r in rows {
        let cat: String = get(r, 0, "privileges")?;
        let oid: u32 = get(r, 1, "privileges")?;
        let Some((kind, key, target)) = a.grant_targets.get(&(cat.chars().next().unwrap_or('?'), oid)) else { continue };
        let grantee: String = get(r, 2, "privileges")?;
        let privilege: String = get(r, 3, "privileges")?;
        let grantable: bool = get(r, 4, "privileges")?;
        a.m.grants
            .entry(key.clone())
            .or_insert_with(|| ObjectGrants { kind: *kind, target: target.clone(), privileges: BTreeSet::new() })
            .privileges
            .insert(format!("{grantee}:{privilege}{}", if grantable { "*" } else { "" }));
    }
    Ok(())
}
