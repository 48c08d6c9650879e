//! What a diff needs to know before any step is made: which objects go away or are new, and
//! which are dropped and created again because of something they depend on.

use std::collections::BTreeSet;

use crate::ident::display_part;
use crate::model::*;

use super::types::is_subsequence;
use super::views::view_replace_compatible;

/// The two models and the sets every per-kind function consults.
pub(super) struct Ctx<'a> {
    pub from: &'a Model,
    pub to: &'a Model,
    pub dropped_tables: BTreeSet<String>,
    pub new_tables: BTreeSet<String>,
    pub dropped_views: BTreeSet<String>,
    pub recreated_functions: BTreeSet<String>,
    pub rebuilt_enums: BTreeSet<String>,
    pub recreated_views: BTreeSet<String>,
    pub recreated_constraints: BTreeSet<String>,
    pub recreated_triggers: BTreeSet<String>,
    pub recreated_indexes: BTreeSet<String>,
    pub recreated_policies: BTreeSet<String>,
}

impl<'a> Ctx<'a> {
    pub fn new(from: &'a Model, to: &'a Model) -> Ctx<'a> {
        let dropped_tables: BTreeSet<String> = from.tables.keys().filter(|k| !to.tables.contains_key(*k)).cloned().collect();
        let new_tables: BTreeSet<String> = to.tables.keys().filter(|k| !from.tables.contains_key(*k)).cloned().collect();
        let dropped_views: BTreeSet<String> = from.views.keys().filter(|k| !to.views.contains_key(*k)).cloned().collect();

        // Functions whose signature changes incompatibly are dropped and created again.
        let mut recreated_functions: BTreeSet<String> = BTreeSet::new();
        for (k, f) in &from.functions {
            if let Some(t) = to.functions.get(k)
                && (f.result != t.result || f.arguments != t.arguments || f.procedure != t.procedure)
            {
                recreated_functions.insert(k.clone());
            }
        }
        let recreated_fn_names: Vec<String> = recreated_functions
            .iter()
            .filter_map(|k| from.functions.get(k))
            .map(|f| format!("{}(", crate::ident::display_name(&f.schema, &f.name)))
            .collect();

        // Enums rebuilt because values were removed or reordered.
        let mut rebuilt_enums: BTreeSet<String> = BTreeSet::new();
        for (k, e) in &from.enums {
            if let Some(t) = to.enums.get(k)
                && e.labels != t.labels
                && !is_subsequence(&e.labels, &t.labels)
            {
                rebuilt_enums.insert(k.clone());
            }
        }

        // Columns whose change forces dependent views to be dropped and recreated.
        let mut touched_columns: BTreeSet<String> = BTreeSet::new();
        for (k, ft) in &from.tables {
            let Some(tt) = to.tables.get(k) else { continue };
            if ft == tt && rebuilt_enums.is_empty() {
                continue;
            }
            for fc in &ft.columns {
                let touched = match tt.column(&fc.name) {
                    None => true,
                    Some(tc) => {
                        let enum_rebuilt = rebuilt_enums.iter().any(|e| fc.type_name.trim_end_matches("[]") == e);
                        fc.type_name != tc.type_name || fc.collation != tc.collation || fc.generated != tc.generated || enum_rebuilt
                    }
                };
                if touched {
                    touched_columns.insert(format!("{k}.{}", display_part(&fc.name)));
                }
            }
        }

        // Views to recreate (drop before, create after): incompatible change, or they read a
        // touched column, a dropped relation, a recreated view or a recreated function.
        let mut recreated_views: BTreeSet<String> = BTreeSet::new();
        for (k, v) in &from.views {
            let Some(t) = to.views.get(k) else { continue };
            let changed = v.definition != t.definition || v.columns != t.columns || v.options != t.options;
            // A materialized view is never replaced in place (a change of options is altered).
            let content_changed = v.definition != t.definition || v.columns != t.columns;
            if (changed && !view_replace_compatible(v, t))
                || v.materialized != t.materialized
                || (v.materialized && content_changed)
                || v.depends_on_columns.iter().any(|c| touched_columns.contains(c))
                || v.depends_on.iter().any(|d| dropped_tables.contains(d) || dropped_views.contains(d))
                || recreated_fn_names.iter().any(|f| v.definition.contains(f.as_str()))
            {
                recreated_views.insert(k.clone());
            }
        }
        loop {
            let before = recreated_views.len();
            for (k, v) in &from.views {
                if to.views.contains_key(k) && !recreated_views.contains(k) && v.depends_on.iter().any(|d| recreated_views.contains(d)) {
                    recreated_views.insert(k.clone());
                }
            }
            if recreated_views.len() == before {
                break;
            }
        }

        // Constraints recreated: changed definition, or a foreign key whose referenced table has
        // its primary key / unique constraints recreated.
        let mut recreated_constraints: BTreeSet<String> = BTreeSet::new();
        let mut rekeyed_tables: BTreeSet<String> = BTreeSet::new();
        for (k, c) in &from.constraints {
            if let Some(t) = to.constraints.get(k) {
                if c.kind != t.kind || c.definition != t.definition {
                    recreated_constraints.insert(k.clone());
                    if matches!(c.kind, ConstraintKind::PrimaryKey | ConstraintKind::Unique) {
                        rekeyed_tables.insert(c.table_key());
                    }
                }
            } else if matches!(c.kind, ConstraintKind::PrimaryKey | ConstraintKind::Unique) {
                rekeyed_tables.insert(c.table_key());
            }
        }
        for (k, c) in &from.constraints {
            if c.kind == ConstraintKind::ForeignKey
                && to.constraints.contains_key(k)
                && c.references.as_ref().is_some_and(|r| rekeyed_tables.contains(r))
                && !dropped_tables.contains(&c.table_key())
            {
                recreated_constraints.insert(k.clone());
            }
        }

        let mut recreated_triggers: BTreeSet<String> = BTreeSet::new();
        for (k, t) in &from.triggers {
            if let Some(n) = to.triggers.get(k)
                && (t.definition != n.definition
                    || recreated_views.contains(&t.table_key())
                    || recreated_fn_names.iter().any(|f| t.definition.contains(f.as_str())))
            {
                recreated_triggers.insert(k.clone());
            }
        }

        let mut recreated_indexes: BTreeSet<String> = BTreeSet::new();
        for (k, i) in &from.indexes {
            if let Some(n) = to.indexes.get(k)
                && (i.definition != n.definition || !i.valid)
            {
                recreated_indexes.insert(k.clone());
            }
        }
        // Indexes of a materialized view that is dropped and created go with it and come back.
        if !recreated_views.is_empty() {
            for (k, i) in &from.indexes {
                if to.indexes.contains_key(k) && recreated_views.contains(&i.table_key()) {
                    recreated_indexes.insert(k.clone());
                }
            }
        }

        let mut recreated_policies: BTreeSet<String> = BTreeSet::new();
        for (k, p) in &from.policies {
            if let Some(n) = to.policies.get(k) {
                let removes_clause = (p.using.is_some() && n.using.is_none()) || (p.check.is_some() && n.check.is_none());
                // A policy reading a column that is dropped or changes type blocks that ALTER
                // TABLE: change it by dropping it first and creating it afterwards.
                let exprs_changed = p.using != n.using || p.check != n.check || p.roles != n.roles;
                let prefix = format!("{}.", p.table_key());
                let table_touched = exprs_changed && touched_columns.range(prefix.clone()..).next().is_some_and(|c| c.starts_with(&prefix));
                if p.command != n.command || p.permissive != n.permissive || removes_clause || table_touched {
                    recreated_policies.insert(k.clone());
                }
            }
        }
        Ctx {
            from,
            to,
            dropped_tables,
            new_tables,
            dropped_views,
            recreated_functions,
            rebuilt_enums,
            recreated_views,
            recreated_constraints,
            recreated_triggers,
            recreated_indexes,
            recreated_policies,
        }
    }

    pub fn table_dropped(&self, schema: &str, table: &str) -> bool {
        !self.dropped_tables.is_empty() && self.dropped_tables.contains(&crate::ident::display_name(schema, table))
    }

    pub fn table_new(&self, schema: &str, table: &str) -> bool {
        !self.new_tables.is_empty() && self.new_tables.contains(&crate::ident::display_name(schema, table))
    }

    /// A relation created by this plan (a new view, or one dropped and created again).
    pub fn fresh_relation(&self, key: &str) -> bool {
        self.recreated_views.contains(key) || (self.to.views.contains_key(key) && !self.from.views.contains_key(key))
    }
}
