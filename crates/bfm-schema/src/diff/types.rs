//! User-defined types: enums (append or rebuild), domains, composite types.

use super::columns::type_change;
use super::context::Ctx;
use super::order::*;
use super::step::{Builder, S};
use crate::ident::{qualified, quote_ident, quote_literal};
use crate::model::*;
use crate::types::*;

/// New enums, and values appended in place (each committed before use).
pub(super) fn enums(cx: &Ctx<'_>, b: &mut Builder) {
    let (from, to) = (cx.from, cx.to);
    for (k, e) in &to.enums {
        let labels = e.labels.iter().map(|l| quote_literal(l)).collect::<Vec<_>>().join(", ");
        match from.enums.get(k) {
            None => b.push(
                R_ENUM,
                S::new(ObjectKind::Enum, k, StepOp::Create, format!("CREATE TYPE {} AS ENUM ({labels})", qualified(&e.schema, &e.name))),
            ),
            Some(old) if old.labels != e.labels && !cx.rebuilt_enums.contains(k) => {
                // Append-only change: ADD VALUE, each committed before use.
                for (i, l) in e.labels.iter().enumerate() {
                    if old.labels.contains(l) {
                        continue;
                    }
                    let position = match e.labels[i + 1..].iter().find(|n| old.labels.contains(n)) {
                        Some(next) => format!(" BEFORE {}", quote_literal(next)),
                        None => String::new(),
                    };
                    b.push(
                        R_ENUM,
                        S::new(
                            ObjectKind::Enum,
                            k,
                            StepOp::Alter,
                            format!("ALTER TYPE {} ADD VALUE {}{position}", qualified(&e.schema, &e.name), quote_literal(l)),
                        )
                        .commit_after(),
                    );
                }
            }
            _ => {}
        }
    }
}

/// New domains, rebuilt ones (base type or collation change), and in-place alters.
pub(super) fn domains(cx: &Ctx<'_>, b: &mut Builder) {
    let (from, to) = (cx.from, cx.to);
    for (k, d) in &to.domains {
        let create = domain_create_sql(d);
        match from.domains.get(k) {
            None => b.push(R_DOMAIN, S::new(ObjectKind::Domain, k, StepOp::Create, create)),
            Some(old) if old.base_type != d.base_type || old.collation != d.collation => {
                b.push(
                    R_DOMAIN,
                    S::new(ObjectKind::Domain, k, StepOp::Replace, format!("DROP DOMAIN {};\n{create}", qualified(&d.schema, &d.name)))
                        .hazard(HazardCode::DataDependent, "the domain is dropped and created again; this fails while columns use it"),
                );
            }
            Some(old) => {
                let q = qualified(&d.schema, &d.name);
                let mut stmts = Vec::new();
                let mut s_h: Vec<(HazardCode, String)> = Vec::new();
                if old.default != d.default {
                    stmts.push(match &d.default {
                        Some(x) => format!("ALTER DOMAIN {q} SET DEFAULT {x}"),
                        None => format!("ALTER DOMAIN {q} DROP DEFAULT"),
                    });
                }
                if old.not_null != d.not_null {
                    stmts.push(format!("ALTER DOMAIN {q} {} NOT NULL", if d.not_null { "SET" } else { "DROP" }));
                    if d.not_null {
                        s_h.push((HazardCode::DataDependent, "every column of the domain is checked for NULLs".into()));
                    }
                }
                for (cn, c) in &old.constraints {
                    if d.constraints.get(cn).map(|n| &n.definition) != Some(&c.definition) {
                        stmts.push(format!("ALTER DOMAIN {q} DROP CONSTRAINT {}", quote_ident(cn)));
                    }
                }
                for (cn, c) in &d.constraints {
                    match old.constraints.get(cn) {
                        Some(o) if o.definition == c.definition => {
                            if !o.validated && c.validated {
                                stmts.push(format!("ALTER DOMAIN {q} VALIDATE CONSTRAINT {}", quote_ident(cn)));
                            }
                        }
                        _ => {
                            stmts.push(format!(
                                "ALTER DOMAIN {q} ADD CONSTRAINT {} {}{}",
                                quote_ident(cn),
                                c.definition,
                                if c.validated { "" } else { " NOT VALID" }
                            ));
                            if c.validated {
                                s_h.push((HazardCode::DataDependent, "every column of the domain is checked".into()));
                            }
                        }
                    }
                }
                if !stmts.is_empty() {
                    let mut s = S::new(ObjectKind::Domain, k, StepOp::Alter, stmts.join(";\n"));
                    for (c, m) in s_h {
                        s = s.hazard(c, m);
                    }
                    b.push(R_DOMAIN, s);
                }
            }
        }
    }
}

/// New composite types and attribute changes (attribute order is not managed).
pub(super) fn composites(cx: &Ctx<'_>, b: &mut Builder) {
    let (from, to) = (cx.from, cx.to);
    for (k, ct) in &to.composites {
        let q = qualified(&ct.schema, &ct.name);
        let attr_sql = |a: &CompositeAttribute| {
            format!("{} {}{}", quote_ident(&a.name), a.type_name, a.collation.as_ref().map(|c| format!(" COLLATE {c}")).unwrap_or_default())
        };
        match from.composites.get(k) {
            None => b.push(
                R_DOMAIN,
                S::new(
                    ObjectKind::CompositeType,
                    k,
                    StepOp::Create,
                    format!("CREATE TYPE {q} AS ({})", ct.attributes.iter().map(attr_sql).collect::<Vec<_>>().join(", ")),
                ),
            ),
            Some(old) if old.attributes != ct.attributes => {
                let mut subs = Vec::new();
                let mut s = S::new(ObjectKind::CompositeType, k, StepOp::Alter, String::new());
                for oa in &old.attributes {
                    if !ct.attributes.iter().any(|a| a.name == oa.name) {
                        subs.push(format!("DROP ATTRIBUTE {}", quote_ident(&oa.name)));
                        s = s.hazard(HazardCode::DeletesData, format!("attribute {} and its values are deleted", oa.name));
                    }
                }
                for a in &ct.attributes {
                    match old.attributes.iter().find(|x| x.name == a.name) {
                        None => subs.push(format!("ADD ATTRIBUTE {}", attr_sql(a))),
                        Some(oa) if oa != a => {
                            subs.push(format!(
                                "ALTER ATTRIBUTE {} TYPE {}{}",
                                quote_ident(&a.name),
                                a.type_name,
                                a.collation.as_ref().map(|c| format!(" COLLATE {c}")).unwrap_or_default()
                            ));
                            if type_change(&oa.type_name, &a.type_name).1 {
                                s = s.hazard(
                                    HazardCode::DeletesData,
                                    format!("{} → {} may fail, truncate or round values", oa.type_name, a.type_name),
                                );
                            }
                        }
                        _ => {}
                    }
                }
                // Attribute order is not managed (like column order).
                if !subs.is_empty() {
                    s.sql = format!("ALTER TYPE {q}\n    {}", subs.join(",\n    "));
                    b.push(R_DOMAIN, s);
                }
            }
            _ => {}
        }
    }
}

/// Enums whose values were removed or reordered (phase 2, after the column changes).
pub(super) fn rebuild_enums(cx: &Ctx<'_>, b: &mut Builder) {
    let (from, to) = (cx.from, cx.to);
    for k in &cx.rebuilt_enums {
        let (Some(old), Some(new)) = (from.enums.get(k), to.enums.get(k)) else {
            continue;
        };
        enum_rebuild(b, k, old, new, from, to);
    }
}

/// Domains that go away.
pub(super) fn drop_domains(cx: &Ctx<'_>, b: &mut Builder) {
    let (from, to) = (cx.from, cx.to);
    for (k, d) in &from.domains {
        if !to.domains.contains_key(k) {
            b.push(R_DROP_DOMAIN, S::new(ObjectKind::Domain, k, StepOp::Drop, format!("DROP DOMAIN {}", qualified(&d.schema, &d.name))));
        }
    }
}

/// Composite types that go away.
pub(super) fn drop_composites(cx: &Ctx<'_>, b: &mut Builder) {
    let (from, to) = (cx.from, cx.to);
    for (k, ct) in &from.composites {
        if !to.composites.contains_key(k) {
            b.push(
                R_DROP_DOMAIN,
                S::new(ObjectKind::CompositeType, k, StepOp::Drop, format!("DROP TYPE {}", qualified(&ct.schema, &ct.name))),
            );
        }
    }
}

/// Enums that go away.
pub(super) fn drop_enums(cx: &Ctx<'_>, b: &mut Builder) {
    let (from, to) = (cx.from, cx.to);
    for (k, e) in &from.enums {
        if !to.enums.contains_key(k) {
            b.push(R_DROP_ENUM, S::new(ObjectKind::Enum, k, StepOp::Drop, format!("DROP TYPE {}", qualified(&e.schema, &e.name))));
        }
    }
}

pub(super) fn is_subsequence(old: &[String], new: &[String]) -> bool {
    let mut it = new.iter();
    old.iter().all(|o| it.any(|n| n == o))
}

pub(super) fn domain_create_sql(d: &Domain) -> String {
    let mut s = format!("CREATE DOMAIN {} AS {}", qualified(&d.schema, &d.name), d.base_type);
    if let Some(c) = &d.collation {
        s.push_str(&format!(" COLLATE {c}"));
    }
    if let Some(x) = &d.default {
        s.push_str(&format!(" DEFAULT {x}"));
    }
    if d.not_null {
        s.push_str(" NOT NULL");
    }
    for (n, c) in &d.constraints {
        s.push_str(&format!(" CONSTRAINT {} {}", quote_ident(n), c.definition));
    }
    let invalid: Vec<String> = d.constraints.iter().filter(|(_, c)| !c.validated).map(|(n, _)| quote_ident(n)).collect();
    if invalid.is_empty() {
        s
    } else {
        // Constraints that are NOT VALID live are added as such after the creation.
        let mut s2 = format!("CREATE DOMAIN {} AS {}", qualified(&d.schema, &d.name), d.base_type);
        if let Some(c) = &d.collation {
            s2.push_str(&format!(" COLLATE {c}"));
        }
        if let Some(x) = &d.default {
            s2.push_str(&format!(" DEFAULT {x}"));
        }
        if d.not_null {
            s2.push_str(" NOT NULL");
        }
        for (n, c) in &d.constraints {
            if c.validated {
                s2.push_str(&format!(" CONSTRAINT {} {}", quote_ident(n), c.definition));
            }
        }
        for (n, c) in &d.constraints {
            if !c.validated {
                s2.push_str(&format!(
                    ";\nALTER DOMAIN {} ADD CONSTRAINT {} {} NOT VALID",
                    qualified(&d.schema, &d.name),
                    quote_ident(n),
                    c.definition
                ));
            }
        }
        s2
    }
}

/// Rebuild an enum whose values were removed or reordered: rename the old type, create the
/// new one, convert every column through text, drop the old type.
pub(super) fn enum_rebuild(b: &mut Builder, k: &str, old: &EnumType, new: &EnumType, from: &Model, to: &Model) {
    let q = qualified(&new.schema, &new.name);
    let tmp = format!("{}_bfm_old", new.name.chars().take(50).collect::<String>());
    let mut stmts = vec![
        format!("ALTER TYPE {q} RENAME TO {}", quote_ident(&tmp)),
        format!("CREATE TYPE {q} AS ENUM ({})", new.labels.iter().map(|l| quote_literal(l)).collect::<Vec<_>>().join(", ")),
    ];
    let type_name = crate::ident::display_name(&old.schema, &old.name);
    for (tk, t) in &from.tables {
        let Some(tt) = to.tables.get(tk) else {
            continue;
        };
        for c in &t.columns {
            let array = c.type_name.ends_with("[]");
            if c.type_name.trim_end_matches("[]") != type_name {
                continue;
            }
            let Some(tc) = tt.column(&c.name) else {
                continue;
            };
            if tc.type_name != c.type_name {
                continue; // the column changes type anyway
            }
            let tq = qualified(&t.schema, &t.name);
            let col = quote_ident(&c.name);
            if c.default.is_some() {
                stmts.push(format!("ALTER TABLE {tq} ALTER COLUMN {col} DROP DEFAULT"));
            }
            let suffix = if array { "[]" } else { "" };
            stmts.push(format!("ALTER TABLE {tq} ALTER COLUMN {col} TYPE {q}{suffix} USING {col}::text{suffix}::{q}{suffix}"));
            if let Some(d) = &tc.default {
                stmts.push(format!("ALTER TABLE {tq} ALTER COLUMN {col} SET DEFAULT {d}"));
            }
        }
    }
    stmts.push(format!("DROP TYPE {}.{}", quote_ident(&new.schema), quote_ident(&tmp)));
    let removed: Vec<&String> = old.labels.iter().filter(|l| !new.labels.contains(l)).collect();
    let mut s = S::new(ObjectKind::Enum, k, StepOp::Replace, stmts.join(";\n"))
        .lock(LockLevel::AccessExclusive)
        .rewrites()
        .hazard(HazardCode::TableRewrite, "every column of the type is rewritten")
        .hazard(HazardCode::AccessExclusiveLock, "tables using the type are locked while they are rewritten");
    if !removed.is_empty() {
        s = s.hazard(
            HazardCode::DeletesData,
            format!(
                "values {} are removed; rows holding them make the conversion fail",
                removed.iter().map(|l| quote_literal(l)).collect::<Vec<_>>().join(", ")
            ),
        );
    }
    b.push(R_ALTER_TABLE, s);
}
