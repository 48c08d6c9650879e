//! Table constraints: drops (phase 1, foreign keys first) and adds or validations (phase 4).

use super::context::Ctx;
use super::indexes::concurrently;
use super::order::*;
use super::step::{Builder, S};
use crate::ident::{qualified, quote_ident};
use crate::model::*;
use crate::types::*;

/// Foreign keys first (also those between two dropped tables, so table drops never
/// depend on each other).
pub(super) fn drop_foreign_keys(cx: &Ctx<'_>, b: &mut Builder) {
    let (from, to) = (cx.from, cx.to);
    for (k, c) in &from.constraints {
        if c.kind != ConstraintKind::ForeignKey {
            continue;
        }
        let own_dropped = cx.table_dropped(&c.schema, &c.table);
        let refs_dropped = c.references.as_ref().is_some_and(|r| cx.dropped_tables.contains(r) && *r != c.table_key());
        let needed = if own_dropped { refs_dropped } else { !to.constraints.contains_key(k) || cx.recreated_constraints.contains(k) };
        if needed {
            b.push(
                R_DROP_FK,
                S::new(
                    ObjectKind::Constraint,
                    k,
                    StepOp::Drop,
                    format!("ALTER TABLE {} DROP CONSTRAINT {}", qualified(&c.schema, &c.table), quote_ident(&c.name)),
                )
                .lock(LockLevel::AccessExclusive),
            );
        }
    }
}

/// The other constraints that go away or are recreated.
pub(super) fn drop(cx: &Ctx<'_>, b: &mut Builder) {
    let (from, to) = (cx.from, cx.to);
    for (k, c) in &from.constraints {
        if c.kind == ConstraintKind::ForeignKey || (to.constraints.contains_key(k) && !cx.recreated_constraints.contains(k)) {
            continue;
        }
        if !cx.table_dropped(&c.schema, &c.table) {
            let mut s = S::new(
                ObjectKind::Constraint,
                k,
                StepOp::Drop,
                format!("ALTER TABLE {} DROP CONSTRAINT {}", qualified(&c.schema, &c.table), quote_ident(&c.name)),
            )
            .lock(LockLevel::AccessExclusive);
            if c.index_definition.is_some() || c.kind == ConstraintKind::Exclude {
                s = s.hazard(HazardCode::IndexDropped, "the constraint's index is dropped; queries using it may slow down");
            }
            b.push(R_DROP_CONSTRAINT, s);
        }
    }
}

/// Constraints (FKs last, after every table exists); NOT VALID ones that become valid.
pub(super) fn create(cx: &Ctx<'_>, b: &mut Builder) {
    let (from, to) = (cx.from, cx.to);
    for (k, c) in &to.constraints {
        let exists = from.constraints.contains_key(k) && !cx.recreated_constraints.contains(k);
        if exists {
            if let Some(old) = from.constraints.get(k)
                && !old.validated
                && c.validated
            {
                b.push(
                    if c.kind == ConstraintKind::ForeignKey { R_FK } else { R_CONSTRAINT },
                    S::new(
                        ObjectKind::Constraint,
                        k,
                        StepOp::Alter,
                        format!("ALTER TABLE {} VALIDATE CONSTRAINT {}", qualified(&c.schema, &c.table), quote_ident(&c.name)),
                    )
                    .lock(LockLevel::ShareUpdateExclusive)
                    .hazard(HazardCode::DataDependent, "fails if existing rows violate the constraint"),
                );
            }
            continue;
        }
        let is_new = cx.table_new(&c.schema, &c.table);
        if is_new && c.kind != ConstraintKind::ForeignKey && c.validated {
            continue; // created inline with the table
        }
        add_constraint(b, k, c, is_new);
    }
}

pub(super) fn add_constraint(b: &mut Builder, k: &str, c: &Constraint, table_new: bool) {
    let table = qualified(&c.schema, &c.table);
    match c.kind {
        ConstraintKind::ForeignKey | ConstraintKind::Check => {
            let rank = if c.kind == ConstraintKind::ForeignKey { R_FK } else { R_CONSTRAINT };
            let lock = if c.kind == ConstraintKind::ForeignKey { LockLevel::ShareRowExclusive } else { LockLevel::AccessExclusive };
            if table_new || !c.validated {
                b.push(rank, S::new(ObjectKind::Constraint, k, StepOp::Create, constraint_add_sql(c, !c.validated)).lock(lock));
            } else {
                // Online: add NOT VALID (brief lock), commit, then validate (weaker lock).
                b.push(rank, S::new(ObjectKind::Constraint, k, StepOp::Create, constraint_add_sql(c, true)).lock(lock).commit_after());
                b.push(
                    rank,
                    S::new(
                        ObjectKind::Constraint,
                        k,
                        StepOp::Alter,
                        format!("ALTER TABLE {table} VALIDATE CONSTRAINT {}", quote_ident(&c.name)),
                    )
                    .lock(LockLevel::ShareUpdateExclusive)
                    .hazard(HazardCode::DataDependent, "fails if existing rows violate the constraint")
                    .commit_after(),
                );
            }
        }
        ConstraintKind::PrimaryKey | ConstraintKind::Unique if !table_new && c.index_definition.is_some() => {
            let def = c.index_definition.clone().unwrap_or_default();
            let mut s = S::new(ObjectKind::Constraint, k, StepOp::Create, concurrently(&def))
                .lock(LockLevel::ShareUpdateExclusive)
                .non_transactional()
                .hazard(HazardCode::IndexBuild, "the constraint's index is built concurrently first")
                .hazard(HazardCode::DataDependent, "fails if existing rows have duplicates (or NULLs for a primary key)");
            s.check_index = Some(qualified(&c.schema, &c.name));
            b.push(R_CONSTRAINT, s);
            b.push(
                R_CONSTRAINT,
                S::new(
                    ObjectKind::Constraint,
                    k,
                    StepOp::Alter,
                    format!(
                        "ALTER TABLE {table} ADD CONSTRAINT {} {} USING INDEX {}{}",
                        quote_ident(&c.name),
                        constraint_kind_word(c.kind),
                        quote_ident(&c.name),
                        deferrable_clause(&c.definition)
                    ),
                )
                .lock(LockLevel::AccessExclusive),
            );
        }
        _ => {
            let mut s = S::new(ObjectKind::Constraint, k, StepOp::Create, constraint_add_sql(c, false)).lock(LockLevel::AccessExclusive);
            if !table_new {
                s = s
                    .hazard(HazardCode::IndexBuild, "the constraint's index is built while the table is locked")
                    .hazard(HazardCode::AccessExclusiveLock, "the table is locked for the whole index build")
                    .hazard(HazardCode::DataDependent, "fails if existing rows violate the constraint");
            }
            b.push(R_CONSTRAINT, s);
        }
    }
}

pub(super) fn constraint_add_sql(c: &Constraint, not_valid: bool) -> String {
    format!(
        "ALTER TABLE {} ADD CONSTRAINT {} {}{}",
        qualified(&c.schema, &c.table),
        quote_ident(&c.name),
        c.definition,
        if not_valid { " NOT VALID" } else { "" }
    )
}

pub(super) fn constraint_kind_word(k: ConstraintKind) -> &'static str {
    match k {
        ConstraintKind::PrimaryKey => "PRIMARY KEY",
        ConstraintKind::Unique => "UNIQUE",
        ConstraintKind::Check => "CHECK",
        ConstraintKind::ForeignKey => "FOREIGN KEY",
        ConstraintKind::Exclude => "EXCLUDE",
    }
}

/// Deferrability clause of a constraint definition (pg_get_constraintdef puts it at the end).
pub(super) fn deferrable_clause(def: &str) -> &'static str {
    if def.contains("INITIALLY DEFERRED") {
        " DEFERRABLE INITIALLY DEFERRED"
    } else if def.contains("DEFERRABLE") {
        " DEFERRABLE"
    } else {
        ""
    }
}
