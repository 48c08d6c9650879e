//! Views and materialized views: drops in reverse dependency order (phase 1), creates,
//! replaces and option changes in dependency order (phase 4).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::context::Ctx;
use super::order::*;
use super::step::{Builder, S};
use crate::ident::qualified;
use crate::model::*;
use crate::types::*;

/// Views that go away or are recreated, dependents first.
pub(super) fn drop(cx: &Ctx<'_>, b: &mut Builder) {
    let from = cx.from;
    let drop_set: BTreeSet<String> =
        from.views.keys().filter(|k| cx.dropped_views.contains(*k) || cx.recreated_views.contains(*k)).cloned().collect();
    let mut order_keys = view_order(&from.views, &drop_set);
    order_keys.reverse();
    for k in order_keys {
        let Some(v) = from.views.get(&k) else {
            continue;
        };
        b.push(
            R_DROP_VIEW,
            S::new(view_kind(v), &k, StepOp::Drop, format!("DROP {} {}", view_word(v), qualified(&v.schema, &v.name)))
                .lock(LockLevel::AccessExclusive),
        );
    }
}

/// New and recreated views, in-place replacements and option changes.
pub(super) fn create(cx: &Ctx<'_>, b: &mut Builder) {
    let (from, to) = (cx.from, cx.to);
    let create_set: BTreeSet<String> =
        to.views.keys().filter(|k| !from.views.contains_key(*k) || cx.recreated_views.contains(*k)).cloned().collect();
    for k in view_order(&to.views, &create_set) {
        if let Some(v) = to.views.get(&k) {
            b.push(R_VIEW, S::new(view_kind(v), &k, StepOp::Create, view_create_sql(v, false)));
        }
    }
    let mut replaced: BTreeSet<String> = BTreeSet::new();
    for (k, v) in &to.views {
        let Some(old) = from.views.get(k) else {
            continue;
        };
        if cx.recreated_views.contains(k) {
            continue;
        }
        if old.definition != v.definition || old.columns != v.columns {
            replaced.insert(k.clone());
        } else if old.options != v.options {
            let q = qualified(&v.schema, &v.name);
            let mut stmts = Vec::new();
            let removed: Vec<String> = old
                .options
                .iter()
                .filter_map(|o| o.split('=').next())
                .filter(|key| !v.options.iter().any(|n| n.split('=').next() == Some(*key)))
                .map(str::to_string)
                .collect();
            let word = view_word(v);
            if !removed.is_empty() {
                stmts.push(format!("ALTER {word} {q} RESET ({})", removed.join(", ")));
            }
            if !v.options.is_empty() {
                stmts.push(format!("ALTER {word} {q} SET ({})", crate::ident::reloptions_sql(&v.options)));
            }
            b.push(R_VIEW, S::new(view_kind(v), k, StepOp::Alter, stmts.join(";\n")).lock(LockLevel::AccessExclusive));
        }
    }
    for k in view_order(&to.views, &replaced) {
        if let Some(v) = to.views.get(&k) {
            b.push(R_VIEW, S::new(view_kind(v), &k, StepOp::Replace, view_create_sql(v, true)).lock(LockLevel::AccessExclusive));
        }
    }
}

/// Topological order of a set of views (dependencies first); ties by name.
pub(super) fn view_order(views: &BTreeMap<String, View>, keys: &BTreeSet<String>) -> Vec<String> {
    let mut indeg: BTreeMap<&String, usize> = keys.iter().map(|k| (k, 0)).collect();
    let mut users: HashMap<&str, Vec<&String>> = HashMap::new();
    for k in keys {
        if let Some(v) = views.get(k) {
            for d in &v.depends_on {
                if d != k && keys.contains(d) {
                    if let Some(n) = indeg.get_mut(k) {
                        *n += 1;
                    }
                    users.entry(d.as_str()).or_default().push(k);
                }
            }
        }
    }
    let mut ready: BTreeSet<&String> = indeg.iter().filter(|(_, n)| **n == 0).map(|(k, _)| *k).collect();
    let mut out = Vec::with_capacity(keys.len());
    while let Some(k) = ready.pop_first() {
        out.push(k.clone());
        if let Some(us) = users.get(k.as_str()) {
            for u in us {
                if let Some(n) = indeg.get_mut(*u) {
                    *n -= 1;
                    if *n == 0 {
                        ready.insert(u);
                    }
                }
            }
        }
    }
    // A cycle cannot exist between views; keep anything left in name order anyway.
    for k in keys {
        if !out.contains(k) {
            out.push(k.clone());
        }
    }
    out
}

pub(super) fn view_create_sql(v: &View, replace: bool) -> String {
    let opts = if v.options.is_empty() { String::new() } else { format!(" WITH ({})", crate::ident::reloptions_sql(&v.options)) };
    let def = v.definition.trim_end().trim_end_matches(';');
    if v.materialized {
        return format!("CREATE MATERIALIZED VIEW {}{} AS\n{}\nWITH DATA", qualified(&v.schema, &v.name), opts, def);
    }
    format!("CREATE {}VIEW {}{} AS\n{}", if replace { "OR REPLACE " } else { "" }, qualified(&v.schema, &v.name), opts, def)
}

pub(super) fn view_kind(v: &View) -> ObjectKind {
    if v.materialized { ObjectKind::MaterializedView } else { ObjectKind::View }
}

pub(super) fn view_word(v: &View) -> &'static str {
    if v.materialized { "MATERIALIZED VIEW" } else { "VIEW" }
}

/// `CREATE OR REPLACE VIEW` may only append columns: the old ones must be a prefix with the
/// same names and types.
pub(super) fn view_replace_compatible(old: &View, new: &View) -> bool {
    old.columns.len() <= new.columns.len()
        && old.columns.iter().zip(&new.columns).all(|(a, b)| a.name == b.name && a.type_name == b.type_name)
}
