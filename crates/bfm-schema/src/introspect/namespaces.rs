//! Schemas and extensions.

use tokio_postgres::Row;

use super::CONTROL_SCHEMA;
use super::lookups::*;
use super::{Assembly, get};
use crate::db::Conn;
use crate::error::SchemaError;
use crate::ident::{display_part, quote_ident};
use crate::model::*;
use crate::scope::Scope;
use crate::types::ObjectKind;

pub(super) const Q_SCHEMAS_ALL: &str = "
SELECT n.nspname::text FROM pg_namespace n
WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'
  AND n.nspname <> ALL($1::text[])
  AND NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.classid = 'pg_namespace'::regclass AND e.objid = n.oid AND e.deptype = 'e')
ORDER BY 1";

pub(super) const Q_SCHEMAS: &str = "
SELECT n.oid, n.nspname::text FROM pg_namespace n WHERE n.nspname = ANY($1::text[])";

pub(super) const Q_EXTENSIONS: &str = "
SELECT e.extname::text, n.nspname::text, e.extversion
FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
WHERE n.nspname = ANY($1::text[]) OR e.extname = ANY($2::text[])";

/// Resolve the managed schema list: the scope's names, or every non-system schema except bfm's own.
pub(super) async fn resolve_schemas(conn: &Conn, scope: &Scope) -> Result<Vec<String>, SchemaError> {
    if !scope.is_whole_database() {
        return Ok(scope.schemas.clone());
    }
    let excluded = vec![CONTROL_SCHEMA.to_string()];
    let rows = conn
        .client
        .query(Q_SCHEMAS_ALL, &[&excluded])
        .await
        .map_err(|e| SchemaError::db(format!("listing schemas of {}", conn.label), &e))?;
    rows.iter().map(|r| get::<String>(r, 0, "schemas")).collect()
}

/// Schemas, and the privilege targets they are.
pub(super) fn schemas(a: &mut Assembly, rows: &[Row]) -> Result<(), SchemaError> {
    for r in rows {
        let oid: u32 = get(r, 0, "schemas")?;
        let name: String = get(r, 1, "schemas")?;
        a.grant_targets.insert(('n', oid), (ObjectKind::Schema, display_part(&name), format!("SCHEMA {}", quote_ident(&name))));
        a.m.schemas.insert(display_part(&name), Schema { name, comment: a.comments.get(C_NAMESPACE, oid, 0) });
    }
    Ok(())
}

/// Extensions of the scope (in a managed schema or declared by name).
pub(super) fn extensions(a: &mut Assembly, rows: &[Row]) -> Result<(), SchemaError> {
    for r in rows {
        let name: String = get(r, 0, "extensions")?;
        a.m.extensions.insert(display_part(&name), Extension { name, schema: get(r, 1, "extensions")?, version: get(r, 2, "extensions")? });
    }
    Ok(())
}
