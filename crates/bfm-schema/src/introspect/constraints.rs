//! Table and domain constraints.

use std::collections::HashMap;

use tokio_postgres::Row;

use super::indexes::RawIndex;
use super::lookups::*;
use super::{Assembly, get};
use crate::error::SchemaError;
use crate::ident::display_name;
use crate::model::*;

pub(super) const Q_CONSTRAINTS: &str = "
SELECT con.oid, con.conrelid, con.contypid, con.conname::text, con.contype::text, pg_get_constraintdef(con.oid),
       con.convalidated, con.conindid,
       CASE WHEN con.contype = 'f' THEN (SELECT fn.nspname::text FROM pg_class fc JOIN pg_namespace fn ON fn.oid = fc.relnamespace WHERE fc.oid = con.confrelid) END,
       CASE WHEN con.contype = 'f' THEN (SELECT fc.relname::text FROM pg_class fc WHERE fc.oid = con.confrelid) END
FROM pg_constraint con JOIN pg_namespace n ON n.oid = con.connamespace
WHERE n.nspname = ANY($1::text[]) AND con.conparentid = 0 AND con.contype IN ('p', 'u', 'c', 'f', 'x')";

/// Table constraints (with their index definition) and domain constraints.
pub(super) fn constraints(a: &mut Assembly, rows: &[Row], index_defs: &mut HashMap<u32, (String, RawIndex)>) -> Result<(), SchemaError> {
    for r in rows {
        let oid: u32 = get(r, 0, "constraints")?;
        let rel: u32 = get(r, 1, "constraints")?;
        let typ: u32 = get(r, 2, "constraints")?;
        let name: String = get(r, 3, "constraints")?;
        let contype: String = get(r, 4, "constraints")?;
        let mut definition: String = get(r, 5, "constraints")?;
        let validated: bool = get(r, 6, "constraints")?;
        let conindid: u32 = get(r, 7, "constraints")?;
        if let Some(stripped) = definition.strip_suffix(" NOT VALID") {
            definition = stripped.to_string();
        }
        if rel == 0 {
            if let Some(dk) = a.domains_by_oid.get(&typ)
                && let Some(d) = a.m.domains.get_mut(dk)
            {
                d.constraints.insert(name, DomainConstraint { definition, validated });
            }
            continue;
        }
        let Some(info) = a.rels.get(&rel) else { continue };
        if info.kind != 'r' {
            continue;
        }
        let kind = match contype.as_str() {
            "p" => ConstraintKind::PrimaryKey,
            "u" => ConstraintKind::Unique,
            "c" => ConstraintKind::Check,
            "f" => ConstraintKind::ForeignKey,
            _ => ConstraintKind::Exclude,
        };
        let references = match (get::<Option<String>>(r, 8, "constraints")?, get::<Option<String>>(r, 9, "constraints")?) {
            (Some(s), Some(t)) if kind == ConstraintKind::ForeignKey => Some(display_name(&s, &t)),
            _ => None,
        };
        let index_definition = if kind == ConstraintKind::ForeignKey { None } else { index_defs.remove(&conindid).map(|(def, _)| def) };
        a.m.constraints.insert(
            child_key(&info.schema, &info.name, &name),
            Constraint {
                schema: info.schema.clone(),
                table: info.name.clone(),
                name,
                kind,
                definition,
                validated,
                references,
                index_definition,
                comment: a.comments.get(C_CONSTRAINT, oid, 0),
            },
        );
    }
    Ok(())
}
