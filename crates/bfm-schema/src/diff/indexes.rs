//! Indexes: drops and renames out of the way (phase 1), builds (phase 4, concurrently on
//! existing tables).

use super::context::Ctx;
use super::order::*;
use super::step::{Builder, S};
use crate::ident::{qualified, quote_ident};
use crate::types::*;

/// Indexes that go away; a recreated valid index is renamed and dropped once the new one is built.
pub(super) fn drop(cx: &Ctx<'_>, b: &mut Builder) {
    let (from, to) = (cx.from, cx.to);
    for (k, i) in &from.indexes {
        if to.indexes.contains_key(k) && !cx.recreated_indexes.contains(k) {
            continue;
        }
        if cx.table_dropped(&i.schema, &i.table) {
            continue;
        }
        let rel = i.table_key();
        if cx.dropped_views.contains(&rel) || cx.recreated_views.contains(&rel) {
            continue; // dropped with its materialized view
        }
        if !to.indexes.contains_key(k) {
            b.push(
                R_DROP_INDEX,
                S::new(ObjectKind::Index, k, StepOp::Drop, format!("DROP INDEX CONCURRENTLY IF EXISTS {}", qualified(&i.schema, &i.name)))
                    .lock(LockLevel::ShareUpdateExclusive)
                    .non_transactional()
                    .hazard(HazardCode::IndexDropped, "queries using this index may slow down"),
            );
        } else if cx.recreated_indexes.contains(k) && i.valid {
            // Keep the old index until the new one is built: rename it out of the way.
            b.push(
                R_DROP_INDEX,
                S::new(
                    ObjectKind::Index,
                    k,
                    StepOp::Alter,
                    format!("ALTER INDEX {} RENAME TO {}", qualified(&i.schema, &i.name), quote_ident(&old_index_name(&i.name))),
                )
                .lock(LockLevel::ShareUpdateExclusive),
            );
        } else if cx.recreated_indexes.contains(k) {
            b.push(
                R_DROP_INDEX,
                S::new(ObjectKind::Index, k, StepOp::Drop, format!("DROP INDEX CONCURRENTLY IF EXISTS {}", qualified(&i.schema, &i.name)))
                    .lock(LockLevel::ShareUpdateExclusive)
                    .non_transactional(),
            );
        }
    }
}

/// New and recreated indexes.
pub(super) fn create(cx: &Ctx<'_>, b: &mut Builder) {
    let (from, to) = (cx.from, cx.to);
    for (k, i) in &to.indexes {
        if from.indexes.contains_key(k) && !cx.recreated_indexes.contains(k) {
            continue;
        }
        let q = qualified(&i.schema, &i.name);
        if cx.table_new(&i.schema, &i.table) || (!to.views.is_empty() && cx.fresh_relation(&i.table_key())) {
            b.push(R_INDEX, S::new(ObjectKind::Index, k, StepOp::Create, i.definition.clone()).lock(LockLevel::Share));
        } else {
            let mut s = S::new(ObjectKind::Index, k, StepOp::Create, concurrently(&i.definition))
                .lock(LockLevel::ShareUpdateExclusive)
                .non_transactional()
                .hazard(HazardCode::IndexBuild, "the index is built concurrently; it reads the whole table");
            if i.unique {
                s = s.hazard(HazardCode::DataDependent, "fails if existing rows have duplicates");
            }
            s.check_index = Some(q.clone());
            b.push(R_INDEX, s);
            if cx.recreated_indexes.contains(k)
                && let Some(old) = from.indexes.get(k)
                && old.valid
            {
                b.push(
                    R_INDEX,
                    S::new(
                        ObjectKind::Index,
                        k,
                        StepOp::Drop,
                        format!("DROP INDEX CONCURRENTLY IF EXISTS {}", qualified(&old.schema, &old_index_name(&old.name))),
                    )
                    .lock(LockLevel::ShareUpdateExclusive)
                    .non_transactional(),
                );
            }
        }
    }
}

/// The CREATE statement of an index, made concurrent.
pub(super) fn concurrently(def: &str) -> String {
    for prefix in ["CREATE UNIQUE INDEX ", "CREATE INDEX "] {
        if let Some(rest) = def.strip_prefix(prefix) {
            return format!("{prefix}CONCURRENTLY {rest}");
        }
    }
    def.to_string()
}

pub(super) fn old_index_name(name: &str) -> String {
    let mut base: String = name.to_string();
    while base.len() > 50 {
        base.pop();
    }
    format!("{base}_bfm_old")
}
