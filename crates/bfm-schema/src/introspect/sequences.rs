//! Sequences: identity sequences belong to their columns, the others stand alone.

use tokio_postgres::Row;

use super::lookups::*;
use super::{Assembly, get};
use crate::error::SchemaError;
use crate::ident::{display_name, qualified};
use crate::model::*;
use crate::types::ObjectKind;

pub(super) const Q_SEQUENCES: &str = "
SELECT c.oid, n.nspname::text, c.relname::text, format_type(s.seqtypid, NULL), s.seqstart, s.seqincrement, s.seqmin,
       s.seqmax, s.seqcache, s.seqcycle, dep.deptype::text, dep.refobjid, dep.refobjsubid::int4,
       CASE WHEN dep.deptype = 'a' THEN (SELECT tn.nspname::text FROM pg_class tc JOIN pg_namespace tn ON tn.oid = tc.relnamespace WHERE tc.oid = dep.refobjid) END,
       CASE WHEN dep.deptype = 'a' THEN (SELECT tc.relname::text FROM pg_class tc WHERE tc.oid = dep.refobjid) END,
       CASE WHEN dep.deptype = 'a' THEN (SELECT ta.attname::text FROM pg_attribute ta WHERE ta.attrelid = dep.refobjid AND ta.attnum = dep.refobjsubid) END
FROM pg_sequence s
JOIN pg_class c ON c.oid = s.seqrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_depend dep ON dep.classid = 'pg_class'::regclass AND dep.objid = s.seqrelid
     AND dep.refclassid = 'pg_class'::regclass AND dep.deptype IN ('a', 'i')
WHERE n.nspname = ANY($1::text[])";

/// Identity sequences belong to their columns; the others are standalone sequences.
pub(super) fn sequences(a: &mut Assembly, rows: &[Row]) -> Result<(), SchemaError> {
    // Identity sequences belong to their columns; the others are standalone sequences.
    for r in rows {
        let oid: u32 = get(r, 0, "sequences")?;
        if a.members.contains(&(C_CLASS, oid)) {
            continue;
        }
        let schema: String = get(r, 1, "sequences")?;
        let name: String = get(r, 2, "sequences")?;
        let options = SeqOptions {
            data_type: get(r, 3, "sequences")?,
            start: get(r, 4, "sequences")?,
            increment: get(r, 5, "sequences")?,
            min: get(r, 6, "sequences")?,
            max: get(r, 7, "sequences")?,
            cache: get(r, 8, "sequences")?,
            cycle: get(r, 9, "sequences")?,
        };
        let deptype: Option<String> = get(r, 10, "sequences")?;
        if deptype.as_deref() == Some("i") {
            let table: u32 = get(r, 11, "sequences")?;
            let attnum: i32 = get(r, 12, "sequences")?;
            a.identity.insert((table, attnum), options);
            continue;
        }
        let owned_by = match (
            deptype.as_deref(),
            get::<Option<String>>(r, 13, "sequences")?,
            get::<Option<String>>(r, 14, "sequences")?,
            get::<Option<String>>(r, 15, "sequences")?,
        ) {
            (Some("a"), Some(schema), Some(table), Some(column)) => Some(OwnedBy { schema, table, column }),
            _ => None,
        };
        a.grant_targets
            .insert(('r', oid), (ObjectKind::Sequence, display_name(&schema, &name), format!("SEQUENCE {}", qualified(&schema, &name))));
        a.m.sequences
            .insert(display_name(&schema, &name), Sequence { schema, name, options, owned_by, comment: a.comments.get(C_CLASS, oid, 0) });
    }
    Ok(())
}
