//! Row-level security policies.

use tokio_postgres::Row;

use super::lookups::*;
use super::{Assembly, get};
use crate::error::SchemaError;
use crate::model::*;

pub(super) const Q_POLICIES: &str = "
SELECT pol.oid, pol.polrelid, pol.polname::text, pol.polpermissive, pol.polcmd::text,
       ARRAY(SELECT CASE WHEN r = 0 THEN 'public' ELSE pg_get_userbyid(r)::text END FROM unnest(pol.polroles) r ORDER BY 1),
       pg_get_expr(pol.polqual, pol.polrelid), pg_get_expr(pol.polwithcheck, pol.polrelid)
FROM pg_policy pol
JOIN pg_class c ON c.oid = pol.polrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = ANY($1::text[])";

/// Policies of managed tables.
pub(super) fn policies(a: &mut Assembly, rows: &[Row]) -> Result<(), SchemaError> {
    for r in rows {
        let oid: u32 = get(r, 0, "policies")?;
        let rel: u32 = get(r, 1, "policies")?;
        let Some(info) = a.rels.get(&rel) else { continue };
        let name: String = get(r, 2, "policies")?;
        let cmd: String = get(r, 4, "policies")?;
        let command = match cmd.as_str() {
            "r" => "SELECT",
            "a" => "INSERT",
            "w" => "UPDATE",
            "d" => "DELETE",
            _ => "ALL",
        }
        .to_string();
        a.m.policies.insert(
            child_key(&info.schema, &info.name, &name),
            Policy {
                schema: info.schema.clone(),
                table: info.name.clone(),
                name,
                permissive: get(r, 3, "policies")?,
                command,
                roles: get(r, 5, "policies")?,
                using: get(r, 6, "policies")?,
                check: get(r, 7, "policies")?,
                comment: a.comments.get(C_POLICY, oid, 0),
            },
        );
    }
    Ok(())
}
