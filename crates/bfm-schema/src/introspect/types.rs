//! Enums, domains (their constraints come with the constraints) and composite types.

use std::collections::BTreeMap;

use tokio_postgres::Row;

use super::lookups::*;
use super::{Assembly, get};
use crate::error::SchemaError;
use crate::ident::display_name;
use crate::model::*;

pub(super) const Q_TYPES: &str = "
SELECT t.oid, n.nspname::text, t.typname::text, t.typtype::text,
       CASE WHEN t.typtype = 'd' THEN format_type(t.typbasetype, t.typtypmod) END, t.typnotnull,
       CASE WHEN t.typtype = 'd' THEN pg_get_expr(t.typdefaultbin, 0) END,
       CASE WHEN t.typtype = 'd' AND t.typcollation <> bt.typcollation THEN t.typcollation END,
       CASE WHEN t.typtype = 'e' THEN ARRAY(SELECT e.enumlabel::text FROM pg_enum e WHERE e.enumtypid = t.oid ORDER BY e.enumsortorder) END
FROM pg_type t
JOIN pg_namespace n ON n.oid = t.typnamespace
LEFT JOIN pg_type bt ON bt.oid = t.typbasetype
LEFT JOIN pg_class c ON c.oid = t.typrelid
WHERE n.nspname = ANY($1::text[])
  AND (t.typtype IN ('e', 'd', 'r', 'm') OR (t.typtype = 'c' AND c.relkind = 'c'))";

/// Attributes of composite types, in order.
pub(super) const Q_COMPOSITE_ATTRIBUTES: &str = "
SELECT t.oid, a.attname::text, format_type(a.atttypid, a.atttypmod),
       CASE WHEN a.attcollation <> at.typcollation THEN a.attcollation END
FROM pg_type t
JOIN pg_namespace n ON n.oid = t.typnamespace
JOIN pg_class c ON c.oid = t.typrelid AND c.relkind = 'c'
JOIN pg_attribute a ON a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped
JOIN pg_type at ON at.oid = a.atttypid
WHERE n.nspname = ANY($1::text[]) AND t.typtype = 'c'
ORDER BY t.oid, a.attnum";

/// Types: enums and domains (domain constraints come from the constraints query).
pub(super) fn types(a: &mut Assembly, rows: &[Row]) -> Result<(), SchemaError> {
    // Types: enums and domains (domain constraints come from the constraints query).
    for r in rows {
        let oid: u32 = get(r, 0, "types")?;
        if a.members.contains(&(C_TYPE, oid)) {
            continue;
        }
        let schema: String = get(r, 1, "types")?;
        let name: String = get(r, 2, "types")?;
        let typtype: String = get(r, 3, "types")?;
        let key = display_name(&schema, &name);
        let comment = a.comments.get(C_TYPE, oid, 0);
        match typtype.as_str() {
            "e" => {
                let labels: Option<Vec<String>> = get(r, 8, "types")?;
                a.m.enums.insert(key, EnumType { schema, name, labels: labels.unwrap_or_default(), comment });
            }
            "d" => {
                a.domains_by_oid.insert(oid, key.clone());
                let collation = get::<Option<u32>>(r, 7, "types")?.and_then(|o| a.collations.get(&o).cloned());
                a.m.domains.insert(
                    key,
                    Domain {
                        schema,
                        name,
                        base_type: get::<Option<String>>(r, 4, "types")?.unwrap_or_default(),
                        not_null: get(r, 5, "types")?,
                        default: get(r, 6, "types")?,
                        collation,
                        constraints: BTreeMap::new(),
                        comment,
                    },
                );
            }
            "r" | "m" => a.unsupported.push(format!("range type {key}")),
            "c" => {
                a.composites_by_oid.insert(oid, key.clone());
                a.m.composites.insert(key, CompositeType { schema, name, attributes: Vec::new(), comment });
            }
            _ => {}
        }
    }
    Ok(())
}

/// Attributes of composite types, in order.
pub(super) fn composite_attributes(a: &mut Assembly, rows: &[Row]) -> Result<(), SchemaError> {
    for r in rows {
        let oid: u32 = get(r, 0, "composite types")?;
        let Some(key) = a.composites_by_oid.get(&oid) else { continue };
        let collation = get::<Option<u32>>(r, 3, "composite types")?.and_then(|o| a.collations.get(&o).cloned());
        let attr = CompositeAttribute { name: get(r, 1, "composite types")?, type_name: get(r, 2, "composite types")?, collation };
        if let Some(ct) = a.m.composites.get_mut(key) {
            ct.attributes.push(attr);
        }
    }
    Ok(())
}
