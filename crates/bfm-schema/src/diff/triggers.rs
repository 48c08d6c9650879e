//! Triggers: drop (phase 1), create and enable/disable (phase 4).

use super::context::Ctx;
use super::order::*;
use super::step::{Builder, S};
use crate::ident::{qualified, quote_ident};
use crate::model::*;
use crate::types::*;

/// Triggers that go away or are recreated (not those going with their relation).
pub(super) fn drop(cx: &Ctx<'_>, b: &mut Builder) {
    let (from, to) = (cx.from, cx.to);
    for (k, t) in &from.triggers {
        if to.triggers.contains_key(k) && !cx.recreated_triggers.contains(k) {
            continue;
        }
        let rel = t.table_key();
        if cx.dropped_tables.contains(&rel) || cx.dropped_views.contains(&rel) || cx.recreated_views.contains(&rel) {
            continue;
        }
        b.push(
            R_DROP_TRIGGER,
            S::new(
                ObjectKind::Trigger,
                k,
                StepOp::Drop,
                format!("DROP TRIGGER {} ON {}", quote_ident(&t.name), qualified(&t.schema, &t.table)),
            )
            .lock(LockLevel::AccessExclusive),
        );
    }
}

/// New and recreated triggers, and changes of their enabled state.
pub(super) fn create(cx: &Ctx<'_>, b: &mut Builder) {
    let (from, to) = (cx.from, cx.to);
    for (k, t) in &to.triggers {
        let rel = t.table_key();
        let exists = from.triggers.contains_key(k) && !cx.recreated_triggers.contains(k) && !cx.recreated_views.contains(&rel);
        if !exists {
            b.push(R_TRIGGER, S::new(ObjectKind::Trigger, k, StepOp::Create, t.definition.clone()).lock(LockLevel::ShareRowExclusive));
            if let Some(sql) = trigger_enable_sql(t) {
                b.push(R_TRIGGER, S::new(ObjectKind::Trigger, k, StepOp::Alter, sql).lock(LockLevel::ShareRowExclusive));
            }
        } else if from.triggers.get(k).map(|o| &o.enabled) != Some(&t.enabled) {
            let sql = trigger_enable_sql(t)
                .unwrap_or_else(|| format!("ALTER TABLE {} ENABLE TRIGGER {}", qualified(&t.schema, &t.table), quote_ident(&t.name)));
            b.push(R_TRIGGER, S::new(ObjectKind::Trigger, k, StepOp::Alter, sql).lock(LockLevel::ShareRowExclusive));
        }
    }
}

pub(super) fn trigger_enable_sql(t: &Trigger) -> Option<String> {
    let action = match t.enabled.as_str() {
        "D" => "DISABLE TRIGGER",
        "R" => "ENABLE REPLICA TRIGGER",
        "A" => "ENABLE ALWAYS TRIGGER",
        _ => return None,
    };
    Some(format!("ALTER TABLE {} {action} {}", qualified(&t.schema, &t.table), quote_ident(&t.name)))
}
