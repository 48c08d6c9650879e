//! Object-level comparison of two models, for drift reports: each object is flattened to a
//! one-line summary and the summaries are compared by (kind, name).

use std::collections::BTreeMap;

use crate::ident::display_part;
use crate::model::*;
use crate::types::{Drift, DriftChange, ObjectKind};

fn opt(label: &str, v: &Option<String>) -> String {
    match v {
        Some(x) => format!(" {label} {x}"),
        None => String::new(),
    }
}

fn comment(v: &Option<String>) -> String {
    match v {
        Some(c) => format!(" COMMENT {}", crate::ident::quote_literal(c)),
        None => String::new(),
    }
}

fn column_summary(c: &Column) -> String {
    let mut s = c.type_name.clone();
    if let Some(coll) = &c.collation {
        s.push_str(&format!(" COLLATE {coll}"));
    }
    if c.not_null {
        s.push_str(" NOT NULL");
    }
    s.push_str(&opt("DEFAULT", &c.default));
    if let Some(g) = &c.generated {
        s.push_str(&format!(" GENERATED ALWAYS AS ({g}) STORED"));
    }
    if let Some(id) = &c.identity {
        let o = &id.options;
        s.push_str(&format!(
            " GENERATED {} AS IDENTITY (START {} INCREMENT {} MIN {} MAX {} CACHE {}{})",
            if id.always { "ALWAYS" } else { "BY DEFAULT" },
            o.start,
            o.increment,
            o.min,
            o.max,
            o.cache,
            if o.cycle { " CYCLE" } else { "" }
        ));
    }
    s.push_str(&comment(&c.comment));
    s
}

/// Every object of a model with its summary.
pub(crate) fn flatten(m: &Model) -> BTreeMap<(ObjectKind, String), String> {
    let mut out = BTreeMap::new();
    for (k, s) in &m.schemas {
        out.insert((ObjectKind::Schema, k.clone()), format!("schema{}", comment(&s.comment)));
    }
    for (k, e) in &m.extensions {
        out.insert((ObjectKind::Extension, k.clone()), format!("version {} in schema {}", e.version, e.schema));
    }
    for (k, e) in &m.enums {
        out.insert((ObjectKind::Enum, k.clone()), format!("ENUM ({}){}", e.labels.join(", "), comment(&e.comment)));
    }
    for (k, d) in &m.domains {
        let cons: Vec<String> =
            d.constraints.iter().map(|(n, c)| format!("{n} {}{}", c.definition, if c.validated { "" } else { " NOT VALID" })).collect();
        out.insert(
            (ObjectKind::Domain, k.clone()),
            format!(
                "{}{}{}{} [{}]{}",
                d.base_type,
                opt("COLLATE", &d.collation),
                if d.not_null { " NOT NULL" } else { "" },
                opt("DEFAULT", &d.default),
                cons.join("; "),
                comment(&d.comment)
            ),
        );
    }
    for (k, ct) in &m.composites {
        let attrs: Vec<String> =
            ct.attributes.iter().map(|a| format!("{} {}{}", a.name, a.type_name, opt("COLLATE", &a.collation))).collect();
        out.insert((ObjectKind::CompositeType, k.clone()), format!("TYPE AS ({}){}", attrs.join(", "), comment(&ct.comment)));
    }
    for (k, s) in &m.sequences {
        let o = &s.options;
        let owned = s
            .owned_by
            .as_ref()
            .map(|o| format!(" OWNED BY {}.{}.{}", display_part(&o.schema), display_part(&o.table), display_part(&o.column)))
            .unwrap_or_default();
        out.insert(
            (ObjectKind::Sequence, k.clone()),
            format!(
                "AS {} START {} INCREMENT {} MIN {} MAX {} CACHE {}{}{}{}",
                o.data_type,
                o.start,
                o.increment,
                o.min,
                o.max,
                o.cache,
                if o.cycle { " CYCLE" } else { "" },
                owned,
                comment(&s.comment)
            ),
        );
    }
    for (k, t) in &m.tables {
        let mut s = String::from(if t.unlogged { "UNLOGGED TABLE" } else { "TABLE" });
        if !t.options.is_empty() {
            s.push_str(&format!(" WITH ({})", t.options.join(", ")));
        }
        if t.rls_enabled {
            s.push_str(" RLS ENABLED");
        }
        if t.rls_forced {
            s.push_str(" RLS FORCED");
        }
        s.push_str(&comment(&t.comment));
        out.insert((ObjectKind::Table, k.clone()), s);
        for c in &t.columns {
            out.insert((ObjectKind::Column, format!("{k}.{}", display_part(&c.name))), column_summary(c));
        }
    }
    for (k, c) in &m.constraints {
        out.insert(
            (ObjectKind::Constraint, k.clone()),
            format!("{}{}{}", c.definition, if c.validated { "" } else { " NOT VALID" }, comment(&c.comment)),
        );
    }
    for (k, i) in &m.indexes {
        out.insert(
            (ObjectKind::Index, k.clone()),
            format!("{}{}{}", i.definition, if i.valid { "" } else { " (INVALID)" }, comment(&i.comment)),
        );
    }
    for (k, v) in &m.views {
        let opts = if v.options.is_empty() { String::new() } else { format!(" WITH ({})", v.options.join(", ")) };
        let (kind, word) = if v.materialized { (ObjectKind::MaterializedView, "MATERIALIZED VIEW") } else { (ObjectKind::View, "VIEW") };
        out.insert(
            (kind, k.clone()),
            format!("{word}{opts} AS {}{}", v.definition.split_whitespace().collect::<Vec<_>>().join(" "), comment(&v.comment)),
        );
        for c in &v.columns {
            if c.comment.is_some() {
                out.insert(
                    (ObjectKind::Column, format!("{k}.{}", display_part(&c.name))),
                    format!("{}{}", c.type_name, comment(&c.comment)),
                );
            }
        }
    }
    for (k, f) in &m.functions {
        let kind = if f.procedure { ObjectKind::Procedure } else { ObjectKind::Function };
        out.insert((kind, k.clone()), format!("{}{}", f.definition.trim(), comment(&f.comment)));
    }
    for (k, t) in &m.triggers {
        let state = match t.enabled.as_str() {
            "D" => " (DISABLED)",
            "R" => " (ENABLE REPLICA)",
            "A" => " (ENABLE ALWAYS)",
            _ => "",
        };
        out.insert((ObjectKind::Trigger, k.clone()), format!("{}{state}{}", t.definition, comment(&t.comment)));
    }
    for (k, p) in &m.policies {
        out.insert(
            (ObjectKind::Policy, k.clone()),
            format!(
                "{} FOR {} TO {}{}{}{}",
                if p.permissive { "PERMISSIVE" } else { "RESTRICTIVE" },
                p.command,
                p.roles.join(", "),
                opt("USING", &p.using),
                opt("WITH CHECK", &p.check),
                comment(&p.comment)
            ),
        );
    }
    for (k, g) in &m.grants {
        let text = format!(" GRANTS {}", g.privileges.iter().cloned().collect::<Vec<_>>().join(", "));
        out.entry((g.kind, k.clone())).or_default().push_str(&text);
    }
    out
}

/// Objects that differ between a stored model and the live one.
pub(crate) fn compare(stored: &Model, live: &Model) -> Vec<Drift> {
    let a = flatten(stored);
    let b = flatten(live);
    let mut out = Vec::new();
    for ((kind, name), before) in &a {
        match b.get(&(*kind, name.clone())) {
            None => out.push(Drift {
                kind: *kind,
                object: name.clone(),
                change: DriftChange::Removed,
                before: Some(before.clone()),
                after: None,
            }),
            Some(after) if after != before => out.push(Drift {
                kind: *kind,
                object: name.clone(),
                change: DriftChange::Changed,
                before: Some(before.clone()),
                after: Some(after.clone()),
            }),
            _ => {}
        }
    }
    for ((kind, name), after) in &b {
        if !a.contains_key(&(*kind, name.clone())) {
            out.push(Drift { kind: *kind, object: name.clone(), change: DriftChange::Added, before: None, after: Some(after.clone()) });
        }
    }
    out.sort_by(|x, y| (x.kind, &x.object).cmp(&(y.kind, &y.object)));
    out
}
