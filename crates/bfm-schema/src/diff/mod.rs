//! Model × model → ordered, annotated steps.
//!
//! Ordering is by phase (rank) and, within a phase, by generation order; views are generated in
//! dependency order. The phases, in execution order:
//!
//! 1. drops of dependents: policies, triggers, foreign keys, views, constraints, indexes,
//!    functions whose signature uses a dropped relation, then tables;
//! 2. creates and alters: schemas, extensions, enums, domains, sequences, functions, tables,
//!    column changes, sequence ownership;
//! 3. the remaining drops: functions, sequences, domains, enums, extensions, schemas (after the
//!    column changes that stop using them);
//! 4. creates of dependents: functions using table row types, views, constraints, indexes,
//!    foreign keys (after every table exists), triggers, policies, RLS, comments.

mod columns;
mod comments;
mod constraints;
mod context;
mod functions;
mod grants;
mod indexes;
mod namespaces;
mod order;
mod policies;
mod sequences;
mod step;
mod tables;
mod triggers;
mod types;
mod views;

use crate::model::Model;
use crate::types::Step;

use context::Ctx;
pub(crate) use order::{Pending, approvals_required, dump_sections};
use step::Builder;

/// Plan the steps that turn `from` into `to`.
pub(crate) fn diff(from: &Model, to: &Model) -> Vec<Step> {
    order::order(diff_pending(from, to))
}

pub(crate) fn diff_pending(from: &Model, to: &Model) -> Vec<Pending> {
    let cx = Ctx::new(from, to);
    let b = &mut Builder { out: Vec::new() };

    // Phase 1: drops of dependents.
    policies::drop(&cx, b);
    triggers::drop(&cx, b);
    constraints::drop_foreign_keys(&cx, b);
    views::drop(&cx, b);
    constraints::drop(&cx, b);
    indexes::drop(&cx, b);
    let late_dropped = functions::drop_early(&cx, b);
    tables::drop(&cx, b);

    // Phase 2: creates and alters.
    namespaces::create_schemas(&cx, b);
    namespaces::extensions(&cx, b);
    types::enums(&cx, b);
    types::domains(&cx, b);
    types::composites(&cx, b);
    sequences::create(&cx, b);
    functions::create(&cx, b);
    tables::create(&cx, b);
    tables::alter(&cx, b);
    types::rebuild_enums(&cx, b);

    // Phase 3: the remaining drops.
    functions::drop(&cx, b, &late_dropped);
    sequences::drop(&cx, b);
    types::drop_domains(&cx, b);
    types::drop_composites(&cx, b);
    types::drop_enums(&cx, b);
    namespaces::drop_extensions(&cx, b);
    namespaces::drop_schemas(&cx, b);

    // Phase 4: creates of dependents.
    views::create(&cx, b);
    constraints::create(&cx, b);
    indexes::create(&cx, b);
    triggers::create(&cx, b);
    policies::create(&cx, b);
    tables::row_level_security(&cx, b);
    comments::comments(b, &cx);
    grants::grants(b, &cx);

    std::mem::take(&mut b.out)
}

#[cfg(test)]
mod tests {
    use super::columns::{identity_options_sql, type_change};
    use super::indexes::concurrently;
    use super::types::is_subsequence;
    use crate::model::SeqOptions;

    #[test]
    fn type_changes() {
        assert_eq!(type_change("character varying(10)", "character varying(20)"), (false, false));
        assert_eq!(type_change("character varying(20)", "character varying(10)"), (true, true));
        assert_eq!(type_change("character varying(20)", "text"), (false, false));
        assert_eq!(type_change("numeric(10,2)", "numeric(12,2)"), (false, false));
        assert_eq!(type_change("numeric(10,2)", "numeric(10,1)"), (true, true));
        assert_eq!(type_change("integer", "bigint"), (true, false));
        assert_eq!(type_change("bigint", "integer"), (true, true));
        assert_eq!(type_change("text", "integer"), (true, true));
        assert_eq!(type_change("integer", "text"), (true, false));
    }

    #[test]
    fn identity_defaults_are_omitted() {
        let o = SeqOptions { data_type: "bigint".into(), start: 1, increment: 1, min: 1, max: i64::MAX, cache: 1, cycle: false };
        assert_eq!(identity_options_sql(&o), "");
        let o2 = SeqOptions { start: 100, ..o };
        assert_eq!(identity_options_sql(&o2), " (START WITH 100)");
    }

    #[test]
    fn concurrent_index_sql() {
        assert_eq!(concurrently("CREATE INDEX i ON public.t USING btree (a)"), "CREATE INDEX CONCURRENTLY i ON public.t USING btree (a)");
        assert_eq!(
            concurrently("CREATE UNIQUE INDEX i ON public.t USING btree (a)"),
            "CREATE UNIQUE INDEX CONCURRENTLY i ON public.t USING btree (a)"
        );
    }

    #[test]
    fn subsequence() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert!(is_subsequence(&s(&["a", "c"]), &s(&["a", "b", "c"])));
        assert!(!is_subsequence(&s(&["c", "a"]), &s(&["a", "b", "c"])));
        assert!(!is_subsequence(&s(&["a", "x"]), &s(&["a", "b"])));
    }
}
