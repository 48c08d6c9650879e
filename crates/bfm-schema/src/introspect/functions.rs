//! Functions and procedures (aggregates are reported as not managed).

use tokio_postgres::Row;

use super::lookups::*;
use super::{Assembly, get};
use crate::error::SchemaError;
use crate::ident::qualified;
use crate::model::*;
use crate::types::ObjectKind;

pub(super) const Q_FUNCTIONS: &str = "
SELECT p.oid, n.nspname::text, p.proname::text, p.prokind::text, pg_get_function_identity_arguments(p.oid),
       pg_get_function_arguments(p.oid), pg_get_function_result(p.oid),
       CASE WHEN p.prokind IN ('f', 'p', 'w') THEN pg_get_functiondef(p.oid) END
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname = ANY($1::text[])";

/// Functions and procedures.
pub(super) fn functions(a: &mut Assembly, rows: &[Row]) -> Result<(), SchemaError> {
    for r in rows {
        let oid: u32 = get(r, 0, "functions")?;
        if a.members.contains(&(C_PROC, oid)) {
            continue;
        }
        let schema: String = get(r, 1, "functions")?;
        let name: String = get(r, 2, "functions")?;
        let kind: String = get(r, 3, "functions")?;
        let identity_args: String = get(r, 4, "functions")?;
        let key = function_key(&schema, &name, &identity_args);
        if kind == "a" {
            a.unsupported.push(format!("aggregate {key}"));
            continue;
        }
        let definition: Option<String> = get(r, 7, "functions")?;
        let (fkind, word) = if kind == "p" { (ObjectKind::Procedure, "PROCEDURE") } else { (ObjectKind::Function, "FUNCTION") };
        a.grant_targets.insert(('f', oid), (fkind, key.clone(), format!("{word} {}({identity_args})", qualified(&schema, &name))));
        a.m.functions.insert(
            key,
            Function {
                schema,
                name,
                procedure: kind == "p",
                identity_args,
                arguments: get(r, 5, "functions")?,
                result: get(r, 6, "functions")?,
                definition: definition.unwrap_or_default(),
                comment: a.comments.get(C_PROC, oid, 0),
            },
        );
    }
    Ok(())
}
