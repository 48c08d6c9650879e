//! COMMENT ON for every object whose comment differs (a recreated object starts without one).

use super::context::Ctx;
use super::functions::function_kind;
use super::order::*;
use super::step::{Builder, S};
use super::views::{view_kind, view_word};
use crate::ident::{display_part, qualified, quote_ident, quote_literal};
use crate::types::*;

pub(super) fn comments(b: &mut Builder, cx: &Ctx<'_>) {
    let (from, to) = (cx.from, cx.to);
    let (recreated_views, recreated_triggers) = (&cx.recreated_views, &cx.recreated_triggers);
    let (recreated_constraints, recreated_indexes, recreated_functions) =
        (&cx.recreated_constraints, &cx.recreated_indexes, &cx.recreated_functions);
    let mut push =
        |kind: ObjectKind, object: &dyn Fn() -> String, target: &dyn Fn() -> String, old: Option<&Option<String>>, new: &Option<String>| {
            let old = old.and_then(|o| o.as_ref());
            if old != new.as_ref() {
                b.push(R_COMMENT, S::new(kind, object(), StepOp::Comment, comment_sql(&target(), new)));
            }
        };
    for (k, s) in &to.schemas {
        push(
            ObjectKind::Schema,
            &|| k.to_string(),
            &|| format!("SCHEMA {}", quote_ident(&s.name)),
            from.schemas.get(k).map(|o| &o.comment),
            &s.comment,
        );
    }
    for (k, e) in &to.enums {
        push(
            ObjectKind::Enum,
            &|| k.to_string(),
            &|| format!("TYPE {}", qualified(&e.schema, &e.name)),
            from.enums.get(k).map(|o| &o.comment),
            &e.comment,
        );
    }
    for (k, d) in &to.domains {
        let old = from.domains.get(k).filter(|o| o.base_type == d.base_type && o.collation == d.collation);
        push(
            ObjectKind::Domain,
            &|| k.to_string(),
            &|| format!("DOMAIN {}", qualified(&d.schema, &d.name)),
            old.map(|o| &o.comment),
            &d.comment,
        );
    }
    for (k, ct) in &to.composites {
        push(
            ObjectKind::CompositeType,
            &|| k.to_string(),
            &|| format!("TYPE {}", qualified(&ct.schema, &ct.name)),
            from.composites.get(k).map(|o| &o.comment),
            &ct.comment,
        );
    }
    for (k, s) in &to.sequences {
        push(
            ObjectKind::Sequence,
            &|| k.to_string(),
            &|| format!("SEQUENCE {}", qualified(&s.schema, &s.name)),
            from.sequences.get(k).map(|o| &o.comment),
            &s.comment,
        );
    }
    for (k, f) in &to.functions {
        let old = if recreated_functions.contains(k) { None } else { from.functions.get(k) };
        push(
            function_kind(f),
            &|| k.to_string(),
            &|| format!("{} {}", if f.procedure { "PROCEDURE" } else { "FUNCTION" }, f.signature_sql()),
            old.map(|o| &o.comment),
            &f.comment,
        );
    }
    for (k, t) in &to.tables {
        let old = from.tables.get(k);
        if old == Some(t) {
            continue;
        }
        push(
            ObjectKind::Table,
            &|| k.to_string(),
            &|| format!("TABLE {}", qualified(&t.schema, &t.name)),
            old.map(|o| &o.comment),
            &t.comment,
        );
        for c in &t.columns {
            // A column that is dropped and added again loses its comment.
            let oc = old.and_then(|o| o.column(&c.name)).filter(|oc| oc.generated == c.generated);
            push(
                ObjectKind::Column,
                &|| format!("{k}.{}", display_part(&c.name)),
                &|| format!("COLUMN {}.{}", qualified(&t.schema, &t.name), quote_ident(&c.name)),
                oc.map(|o| &o.comment),
                &c.comment,
            );
        }
    }
    for (k, v) in &to.views {
        let old = if recreated_views.contains(k) { None } else { from.views.get(k) };
        push(
            view_kind(v),
            &|| k.to_string(),
            &|| format!("{} {}", view_word(v), qualified(&v.schema, &v.name)),
            old.map(|o| &o.comment),
            &v.comment,
        );
        for c in &v.columns {
            let oc = old.and_then(|o| o.columns.iter().find(|x| x.name == c.name));
            push(
                ObjectKind::Column,
                &|| format!("{k}.{}", display_part(&c.name)),
                &|| format!("COLUMN {}.{}", qualified(&v.schema, &v.name), quote_ident(&c.name)),
                oc.map(|o| &o.comment),
                &c.comment,
            );
        }
    }
    for (k, c) in &to.constraints {
        let old = if recreated_constraints.contains(k) { None } else { from.constraints.get(k) };
        push(
            ObjectKind::Constraint,
            &|| k.to_string(),
            &|| format!("CONSTRAINT {} ON {}", quote_ident(&c.name), qualified(&c.schema, &c.table)),
            old.map(|o| &o.comment),
            &c.comment,
        );
    }
    for (k, i) in &to.indexes {
        let old = if recreated_indexes.contains(k) { None } else { from.indexes.get(k) };
        push(
            ObjectKind::Index,
            &|| k.to_string(),
            &|| format!("INDEX {}", qualified(&i.schema, &i.name)),
            old.map(|o| &o.comment),
            &i.comment,
        );
    }
    for (k, t) in &to.triggers {
        let old = if recreated_triggers.contains(k) || recreated_views.contains(&t.table_key()) { None } else { from.triggers.get(k) };
        push(
            ObjectKind::Trigger,
            &|| k.to_string(),
            &|| format!("TRIGGER {} ON {}", quote_ident(&t.name), qualified(&t.schema, &t.table)),
            old.map(|o| &o.comment),
            &t.comment,
        );
    }
    for (k, p) in &to.policies {
        push(
            ObjectKind::Policy,
            &|| k.to_string(),
            &|| format!("POLICY {} ON {}", quote_ident(&p.name), qualified(&p.schema, &p.table)),
            from.policies.get(k).map(|o| &o.comment),
            &p.comment,
        );
    }
}

pub(super) fn comment_sql(target: &str, comment: &Option<String>) -> String {
    format!("COMMENT ON {target} IS {}", comment.as_deref().map(quote_literal).unwrap_or_else(|| "NULL".into()))
}
