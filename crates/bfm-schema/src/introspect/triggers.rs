//! Triggers (internal and inherited ones left out).

use tokio_postgres::Row;

use super::lookups::*;
use super::{Assembly, get};
use crate::error::SchemaError;
use crate::model::*;

pub(super) const Q_TRIGGERS: &str = "
SELECT t.oid, t.tgrelid, t.tgname::text, pg_get_triggerdef(t.oid), t.tgenabled::text
FROM pg_trigger t
JOIN pg_class c ON c.oid = t.tgrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = ANY($1::text[]) AND NOT t.tgisinternal AND t.tgparentid = 0";

/// Triggers of managed relations.
pub(super) fn triggers(a: &mut Assembly, rows: &[Row]) -> Result<(), SchemaError> {
    for r in rows {
        let oid: u32 = get(r, 0, "triggers")?;
        let rel: u32 = get(r, 1, "triggers")?;
        let Some(info) = a.rels.get(&rel) else { continue };
        let name: String = get(r, 2, "triggers")?;
        a.m.triggers.insert(
            child_key(&info.schema, &info.name, &name),
            Trigger {
                schema: info.schema.clone(),
                table: info.name.clone(),
                name,
                definition: get(r, 3, "triggers")?,
                enabled: get(r, 4, "triggers")?,
                comment: a.comments.get(C_TRIGGER, oid, 0),
            },
        );
    }
    Ok(())
}
