//! Functions and procedures: early drops (phase 1), creates and replaces (phase 2, late
//! when they need tables), the remaining drops (phase 3).

use std::collections::BTreeSet;

use super::context::Ctx;
use super::order::*;
use super::step::{Builder, S};
use crate::model::*;
use crate::types::*;

/// Drops needed before tables go: recreated functions and those using a dropped relation.
/// Returns the functions dropped here.
pub(super) fn drop_early(cx: &Ctx<'_>, b: &mut Builder) -> BTreeSet<String> {
    let (from, to) = (cx.from, cx.to);
    let gone_relations: BTreeSet<String> = cx.dropped_tables.iter().chain(cx.dropped_views.iter()).cloned().collect();
    let mut late_dropped_functions: BTreeSet<String> = BTreeSet::new();
    for (k, f) in &from.functions {
        let dropped = !to.functions.contains_key(k);
        let recreated = cx.recreated_functions.contains(k);
        // Dropped before the tables when its signature uses a dropped relation or its
        // SQL-standard body (which depends on what it reads) may read one.
        if (dropped && (mentions_relation(f, &gone_relations) || (is_sql_standard_body(f) && !gone_relations.is_empty()))) || recreated {
            late_dropped_functions.insert(k.clone());
            b.push(
                R_DROP_FUNCTION_EARLY,
                S::new(
                    function_kind(f),
                    k,
                    StepOp::Drop,
                    format!("DROP {} {}", if f.procedure { "PROCEDURE" } else { "FUNCTION" }, f.signature_sql()),
                ),
            );
        }
    }
    late_dropped_functions
}

/// New, replaced and recreated functions.
pub(super) fn create(cx: &Ctx<'_>, b: &mut Builder) {
    let (from, to) = (cx.from, cx.to);
    let to_relations: BTreeSet<String> = to.tables.keys().chain(to.views.keys()).cloned().collect();
    for (k, f) in &to.functions {
        // SQL-standard bodies (BEGIN ATOMIC / RETURN) are parsed at creation, so they need the
        // tables they read: create them after tables, like functions using row types.
        let late = mentions_relation(f, &to_relations) || is_sql_standard_body(f);
        let rank = if late { R_FUNCTION_LATE } else { R_FUNCTION };
        match from.functions.get(k) {
            Some(old) if !cx.recreated_functions.contains(k) => {
                if old.definition != f.definition {
                    b.push(rank, S::new(function_kind(f), k, StepOp::Replace, f.definition.trim_end().to_string()));
                }
            }
            _ => b.push(rank, S::new(function_kind(f), k, StepOp::Create, f.definition.trim_end().to_string())),
        }
    }
}

/// Functions that go away and were not dropped early.
pub(super) fn drop(cx: &Ctx<'_>, b: &mut Builder, late_dropped_functions: &BTreeSet<String>) {
    let (from, to) = (cx.from, cx.to);
    for (k, f) in &from.functions {
        if !to.functions.contains_key(k) && !late_dropped_functions.contains(k) {
            b.push(
                R_DROP_FUNCTION,
                S::new(
                    function_kind(f),
                    k,
                    StepOp::Drop,
                    format!("DROP {} {}", if f.procedure { "PROCEDURE" } else { "FUNCTION" }, f.signature_sql()),
                ),
            );
        }
    }
}

/// Whether a function signature mentions one of the relations (as a row type).
pub(super) fn mentions_relation(f: &Function, relations: &BTreeSet<String>) -> bool {
    let words = |s: &str| -> bool {
        s.split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '$' || c == '.' || c == '"'))
            .any(|w| w.contains('.') && relations.contains(w))
    };
    words(&f.arguments) || f.result.as_deref().is_some_and(words)
}

/// A function whose body is SQL-standard (`BEGIN ATOMIC … END` or `RETURN …`) rather than a
/// string: `pg_get_functiondef` then prints no `AS $…$` clause.
pub(super) fn is_sql_standard_body(f: &Function) -> bool {
    !f.definition.contains("\nAS $")
}

pub(super) fn function_kind(f: &Function) -> ObjectKind {
    if f.procedure { ObjectKind::Procedure } else { ObjectKind::Function }
}
