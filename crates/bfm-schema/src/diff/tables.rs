//! Tables: drops (phase 1), creates with their inline constraints and alters (phase 2),
//! row-level security switches (phase 4).

use std::collections::HashMap;

use super::columns::{alter_table, column_def_sql};
use super::context::Ctx;
use super::order::*;
use super::step::{Builder, S};
use crate::ident::{qualified, quote_ident};
use crate::model::*;
use crate::types::*;

/// Tables that go away (with their rows: approval needed).
pub(super) fn drop(cx: &Ctx<'_>, b: &mut Builder) {
    let from = cx.from;
    for k in &cx.dropped_tables {
        let Some(t) = from.tables.get(k) else {
            continue;
        };
        b.push(
            R_DROP_TABLE,
            S::new(ObjectKind::Table, k, StepOp::Drop, format!("DROP TABLE {}", qualified(&t.schema, &t.name)))
                .lock(LockLevel::AccessExclusive)
                .hazard(HazardCode::DeletesData, "the table and all its rows are deleted"),
        );
    }
}

/// New tables, with the validated non-FK constraints inline.
pub(super) fn create(cx: &Ctx<'_>, b: &mut Builder) {
    let to = cx.to;
    let mut inline_constraints: HashMap<String, Vec<&Constraint>> = HashMap::new();
    if !cx.new_tables.is_empty() {
        for c in to.constraints.values() {
            if c.kind != ConstraintKind::ForeignKey && c.validated && cx.table_new(&c.schema, &c.table) {
                inline_constraints.entry(c.table_key()).or_default().push(c);
            }
        }
    }
    for k in &cx.new_tables {
        let Some(t) = to.tables.get(k) else { continue };
        let mut lines: Vec<String> = t.columns.iter().map(column_def_sql).collect();
        for c in inline_constraints.get(k).map(|v| v.as_slice()).unwrap_or(&[]) {
            lines.push(format!("CONSTRAINT {} {}", quote_ident(&c.name), c.definition));
        }
        let mut sql = format!(
            "CREATE {}TABLE {} (\n    {}\n)",
            if t.unlogged { "UNLOGGED " } else { "" },
            qualified(&t.schema, &t.name),
            lines.join(",\n    ")
        );
        if !t.options.is_empty() {
            sql.push_str(&format!(" WITH ({})", crate::ident::reloptions_sql(&t.options)));
        }
        b.push(R_CREATE_TABLE, S::new(ObjectKind::Table, k, StepOp::Create, sql));
    }
}

/// Changes of existing tables (see `columns`).
pub(super) fn alter(cx: &Ctx<'_>, b: &mut Builder) {
    let (from, to) = (cx.from, cx.to);
    for (k, ft) in &from.tables {
        let Some(tt) = to.tables.get(k) else { continue };
        if ft != tt {
            alter_table(b, k, ft, tt);
        }
    }
}

/// ENABLE/DISABLE and FORCE/NO FORCE ROW LEVEL SECURITY.
pub(super) fn row_level_security(cx: &Ctx<'_>, b: &mut Builder) {
    let (from, to) = (cx.from, cx.to);
    for (k, t) in &to.tables {
        let old = from.tables.get(k);
        let q = qualified(&t.schema, &t.name);
        let (old_enabled, old_forced) = old.map(|o| (o.rls_enabled, o.rls_forced)).unwrap_or((false, false));
        let mut stmts = Vec::new();
        if old_enabled != t.rls_enabled {
            stmts.push(format!("ALTER TABLE {q} {} ROW LEVEL SECURITY", if t.rls_enabled { "ENABLE" } else { "DISABLE" }));
        }
        if old_forced != t.rls_forced {
            stmts.push(format!("ALTER TABLE {q} {} ROW LEVEL SECURITY", if t.rls_forced { "FORCE" } else { "NO FORCE" }));
        }
        if !stmts.is_empty() {
            let mut s = S::new(ObjectKind::Table, k, StepOp::Alter, stmts.join(";\n")).lock(LockLevel::AccessExclusive);
            if old.is_some() {
                s = s.hazard(
                    HazardCode::AuthzUpdate,
                    if t.rls_enabled {
                        "row-level security turns on: rows not allowed by a policy become invisible to non-owners"
                    } else {
                        "row-level security turns off: every row becomes visible to roles with table privileges"
                    },
                );
            }
            b.push(R_RLS, s);
        }
    }
}
