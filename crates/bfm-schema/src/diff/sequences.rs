//! Standalone sequences: creates, option changes and ownership (phase 2), drops (phase 3).

use super::context::Ctx;
use super::order::*;
use super::step::{Builder, S};
use crate::ident::{qualified, quote_ident};
use crate::model::*;
use crate::types::*;

/// New sequences, option changes and OWNED BY changes.
pub(super) fn create(cx: &Ctx<'_>, b: &mut Builder) {
    let (from, to) = (cx.from, cx.to);
    for (k, s) in &to.sequences {
        let q = qualified(&s.schema, &s.name);
        match from.sequences.get(k) {
            None => b.push(
                R_SEQUENCE,
                S::new(ObjectKind::Sequence, k, StepOp::Create, format!("CREATE SEQUENCE {q} {}", seq_options_sql(&s.options))),
            ),
            Some(old) if old.options != s.options => b.push(
                R_SEQUENCE,
                S::new(ObjectKind::Sequence, k, StepOp::Alter, format!("ALTER SEQUENCE {q} {}", seq_options_sql(&s.options))),
            ),
            _ => {}
        }
        let old_owner = from.sequences.get(k).and_then(|o| o.owned_by.clone());
        if old_owner != s.owned_by {
            let owner = match &s.owned_by {
                Some(o) => format!("{}.{}", qualified(&o.schema, &o.table), quote_ident(&o.column)),
                None => "NONE".into(),
            };
            b.push(R_SEQ_OWNED, S::new(ObjectKind::Sequence, k, StepOp::Alter, format!("ALTER SEQUENCE {q} OWNED BY {owner}")));
        }
    }
}

/// Sequences that go away (not those owned by a dropped table).
pub(super) fn drop(cx: &Ctx<'_>, b: &mut Builder) {
    let (from, to) = (cx.from, cx.to);
    for (k, s) in &from.sequences {
        if to.sequences.contains_key(k) {
            continue;
        }
        // A sequence owned by a dropped table goes with it.
        if let Some(o) = &s.owned_by
            && cx.dropped_tables.contains(&crate::ident::display_name(&o.schema, &o.table))
        {
            continue;
        }
        b.push(
            R_DROP_SEQUENCE,
            S::new(ObjectKind::Sequence, k, StepOp::Drop, format!("DROP SEQUENCE IF EXISTS {}", qualified(&s.schema, &s.name)))
                .hazard(HazardCode::DeletesData, "the sequence and its current value are deleted"),
        );
    }
}

pub(super) fn int_max(data_type: &str) -> i64 {
    match data_type {
        "smallint" => i16::MAX as i64,
        "integer" => i32::MAX as i64,
        _ => i64::MAX,
    }
}

/// Full sequence options for CREATE/ALTER SEQUENCE.
pub(super) fn seq_options_sql(o: &SeqOptions) -> String {
    format!(
        "AS {} START WITH {} INCREMENT BY {} MINVALUE {} MAXVALUE {} CACHE {} {}",
        o.data_type,
        o.start,
        o.increment,
        o.min,
        o.max,
        o.cache,
        if o.cycle { "CYCLE" } else { "NO CYCLE" }
    )
}
