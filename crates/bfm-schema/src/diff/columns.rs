//! Changes of an existing table: persistence, options and every column change (type,
//! default, identity, generated, NOT NULL, collation), with their locks and hazards.

use super::order::*;
use super::sequences::int_max;
use super::step::{Builder, S};
use crate::ident::{display_part, qualified, quote_ident};
use crate::model::*;
use crate::types::*;

pub(super) fn alter_table(b: &mut Builder, k: &str, ft: &Table, tt: &Table) {
    let q = qualified(&tt.schema, &tt.name);
    if ft.unlogged != tt.unlogged {
        b.push(
            R_ALTER_TABLE,
            S::new(ObjectKind::Table, k, StepOp::Alter, format!("ALTER TABLE {q} SET {}", if tt.unlogged { "UNLOGGED" } else { "LOGGED" }))
                .lock(LockLevel::AccessExclusive)
                .rewrites()
                .hazard(HazardCode::TableRewrite, "the table is rewritten")
                .hazard(HazardCode::AccessExclusiveLock, "the table is locked while it is rewritten"),
        );
    }
    if ft.options != tt.options {
        let mut stmts = Vec::new();
        let removed: Vec<String> = ft
            .options
            .iter()
            .filter_map(|o| o.split('=').next())
            .filter(|key| !tt.options.iter().any(|n| n.split('=').next() == Some(*key)))
            .map(str::to_string)
            .collect();
        if !removed.is_empty() {
            stmts.push(format!("ALTER TABLE {q} RESET ({})", removed.join(", ")));
        }
        if !tt.options.is_empty() {
            stmts.push(format!("ALTER TABLE {q} SET ({})", crate::ident::reloptions_sql(&tt.options)));
        }
        b.push(R_ALTER_TABLE, S::new(ObjectKind::Table, k, StepOp::Alter, stmts.join(";\n")).lock(LockLevel::AccessExclusive));
    }
    for fc in &ft.columns {
        if tt.column(&fc.name).is_none() {
            b.push(
                R_ALTER_TABLE,
                S::new(
                    ObjectKind::Column,
                    format!("{k}.{}", display_part(&fc.name)),
                    StepOp::Drop,
                    format!("ALTER TABLE {q} DROP COLUMN {}", quote_ident(&fc.name)),
                )
                .lock(LockLevel::AccessExclusive)
                .hazard(HazardCode::DeletesData, "the column and its values are deleted"),
            );
        }
    }
    for tc in &tt.columns {
        let obj = format!("{k}.{}", display_part(&tc.name));
        let col = quote_ident(&tc.name);
        let Some(fc) = ft.column(&tc.name) else {
            let mut s = S::new(ObjectKind::Column, &obj, StepOp::Create, format!("ALTER TABLE {q} ADD COLUMN {}", column_def_sql(tc)))
                .lock(LockLevel::AccessExclusive);
            let rewrite = tc.generated.is_some() || tc.identity.is_some() || tc.default.as_deref().is_some_and(is_volatile_default);
            if rewrite {
                s = s
                    .rewrites()
                    .hazard(HazardCode::TableRewrite, "the new column's values are computed row by row: the table is rewritten")
                    .hazard(HazardCode::AccessExclusiveLock, "the table is locked while it is rewritten");
            } else if tc.not_null && tc.default.is_none() {
                s = s.hazard(HazardCode::DataDependent, "NOT NULL without a default fails if the table has rows");
            }
            b.push(R_ALTER_TABLE, s);
            continue;
        };
        if fc == tc || (fc.clone_without_comment() == tc.clone_without_comment()) {
            continue;
        }
        // A change of generation expression (or to/from generated) needs drop + add.
        if fc.generated != tc.generated {
            let lossy = fc.generated.is_none() || tc.generated.is_none();
            let mut s = S::new(
                ObjectKind::Column,
                &obj,
                StepOp::Replace,
                format!("ALTER TABLE {q} DROP COLUMN {col};\nALTER TABLE {q} ADD COLUMN {}", column_def_sql(tc)),
            )
            .lock(LockLevel::AccessExclusive)
            .rewrites()
            .hazard(HazardCode::TableRewrite, "the column is dropped and added again: the table is rewritten")
            .hazard(HazardCode::AccessExclusiveLock, "the table is locked while it is rewritten");
            if lossy {
                s = s.hazard(HazardCode::DeletesData, "the column's stored values are replaced");
            }
            b.push(R_ALTER_TABLE, s);
            continue;
        }
        let mut subs: Vec<String> = Vec::new();
        let mut s = S::new(ObjectKind::Column, &obj, StepOp::Alter, String::new()).lock(LockLevel::AccessExclusive);
        let type_changed = fc.type_name != tc.type_name || fc.collation != tc.collation;
        if type_changed && fc.default.is_some() {
            subs.push(format!("ALTER COLUMN {col} DROP DEFAULT"));
        }
        if fc.identity.is_some() && tc.identity.is_none() {
            subs.push(format!("ALTER COLUMN {col} DROP IDENTITY"));
        }
        if type_changed {
            let (rewrite, lossy) = type_change(&fc.type_name, &tc.type_name);
            let coll = tc.collation.as_ref().map(|c| format!(" COLLATE {c}")).unwrap_or_default();
            let using = if rewrite { format!(" USING {col}::{}", tc.type_name) } else { String::new() };
            subs.push(format!("ALTER COLUMN {col} TYPE {}{coll}{using}", tc.type_name));
            if rewrite {
                s = s
                    .rewrites()
                    .hazard(
                        HazardCode::TableRewrite,
                        format!("{} → {}: the table and its indexes are rewritten", fc.type_name, tc.type_name),
                    )
                    .hazard(HazardCode::AccessExclusiveLock, "the table is locked while it is rewritten");
            } else if fc.collation != tc.collation {
                s = s.hazard(HazardCode::AccessExclusiveLock, "indexes on the column are rebuilt while the table is locked");
            }
            if lossy {
                s = s.hazard(
                    HazardCode::DeletesData,
                    format!("{} → {} may fail, truncate or round existing values", fc.type_name, tc.type_name),
                );
            }
        }
        let mut after: Vec<String> = Vec::new();
        if !fc.not_null && tc.not_null {
            let rewritten = s.rewrites;
            let adds_identity = fc.identity.is_none() && tc.identity.is_some();
            if rewritten || adds_identity {
                subs.push(format!("ALTER COLUMN {col} SET NOT NULL"));
                s = s
                    .hazard(HazardCode::DataDependent, "fails if the column has NULLs")
                    .hazard(HazardCode::AccessExclusiveLock, "the table is scanned while it is locked");
            } else {
                // Online: a NOT VALID check (brief lock), validated under SHARE UPDATE
                // EXCLUSIVE, lets SET NOT NULL skip its scan; then the check goes.
                let check = quote_ident(&not_null_check_name(&tt.name, &tc.name));
                b.push(
                    R_ALTER_TABLE,
                    S::new(
                        ObjectKind::Column,
                        &obj,
                        StepOp::Alter,
                        format!("ALTER TABLE {q} ADD CONSTRAINT {check} CHECK ({col} IS NOT NULL) NOT VALID"),
                    )
                    .lock(LockLevel::AccessExclusive)
                    .commit_after(),
                );
                let mut validate = S::new(ObjectKind::Column, &obj, StepOp::Alter, format!("ALTER TABLE {q} VALIDATE CONSTRAINT {check}"))
                    .lock(LockLevel::ShareUpdateExclusive)
                    .hazard(HazardCode::DataDependent, "fails if the column has NULLs")
                    .commit_after();
                validate.cleanup = Some(format!("ALTER TABLE {q} DROP CONSTRAINT IF EXISTS {check}"));
                b.push(R_ALTER_TABLE, validate);
                subs.push(format!("ALTER COLUMN {col} SET NOT NULL"));
                after.push(format!("ALTER TABLE {q} DROP CONSTRAINT {check}"));
            }
        }
        match (&fc.identity, &tc.identity) {
            (None, Some(id)) => subs.push(format!(
                "ALTER COLUMN {col} ADD GENERATED {} AS IDENTITY{}",
                if id.always { "ALWAYS" } else { "BY DEFAULT" },
                identity_options_sql(&id.options)
            )),
            (Some(a), Some(z)) => {
                if a.always != z.always {
                    subs.push(format!("ALTER COLUMN {col} SET GENERATED {}", if z.always { "ALWAYS" } else { "BY DEFAULT" }));
                }
                let (ao, zo) = (&a.options, &z.options);
                let mut opts = Vec::new();
                if ao.increment != zo.increment {
                    opts.push(format!("SET INCREMENT BY {}", zo.increment));
                }
                if ao.min != zo.min {
                    opts.push(format!("SET MINVALUE {}", zo.min));
                }
                if ao.max != zo.max && !(type_changed && zo.max == int_max(&zo.data_type)) {
                    opts.push(format!("SET MAXVALUE {}", zo.max));
                }
                if ao.start != zo.start {
                    opts.push(format!("SET START WITH {}", zo.start));
                }
                if ao.cache != zo.cache {
                    opts.push(format!("SET CACHE {}", zo.cache));
                }
                if ao.cycle != zo.cycle {
                    opts.push(if zo.cycle { "SET CYCLE".into() } else { "SET NO CYCLE".into() });
                }
                if !opts.is_empty() {
                    subs.push(format!("ALTER COLUMN {col} {}", opts.join(" ")));
                }
            }
            _ => {}
        }
        if fc.default != tc.default || (type_changed && fc.default.is_some()) {
            match &tc.default {
                Some(d) => subs.push(format!("ALTER COLUMN {col} SET DEFAULT {d}")),
                None if !type_changed => subs.push(format!("ALTER COLUMN {col} DROP DEFAULT")),
                None => {}
            }
        }
        if fc.not_null && !tc.not_null && tc.identity.is_none() {
            subs.push(format!("ALTER COLUMN {col} DROP NOT NULL"));
        }
        if subs.is_empty() {
            continue;
        }
        s.sql = format!("ALTER TABLE {q}\n    {}", subs.join(",\n    "));
        for stmt in after {
            s.sql.push_str(";\n");
            s.sql.push_str(&stmt);
        }
        b.push(R_ALTER_TABLE, s);
    }
}

/// Name of the temporary check behind an online SET NOT NULL (at most 63 bytes).
pub(super) fn not_null_check_name(table: &str, column: &str) -> String {
    let mut base = format!("{table}_{column}");
    while base.len() > 50 {
        base.pop();
    }
    format!("{base}_bfm_not_null")
}

impl Column {
    pub(super) fn clone_without_comment(&self) -> Column {
        Column { comment: None, ..self.clone() }
    }
}

pub(super) fn column_def_sql(c: &Column) -> String {
    let mut s = format!("{} {}", quote_ident(&c.name), c.type_name);
    if let Some(coll) = &c.collation {
        s.push_str(&format!(" COLLATE {coll}"));
    }
    if let Some(g) = &c.generated {
        s.push_str(&format!(" GENERATED ALWAYS AS ({g}) STORED"));
    }
    if let Some(d) = &c.default {
        s.push_str(&format!(" DEFAULT {d}"));
    }
    if let Some(id) = &c.identity {
        s.push_str(&format!(
            " GENERATED {} AS IDENTITY{}",
            if id.always { "ALWAYS" } else { "BY DEFAULT" },
            identity_options_sql(&id.options)
        ));
    }
    if c.not_null {
        s.push_str(" NOT NULL");
    }
    s
}

pub(super) fn is_volatile_default(expr: &str) -> bool {
    const VOLATILE: [&str; 8] = [
        "nextval(",
        "random(",
        "gen_random_uuid(",
        "uuid_generate_",
        "clock_timestamp(",
        "timeofday(",
        "statement_timestamp(",
        "txid_current(",
    ];
    VOLATILE.iter().any(|v| expr.contains(v))
}

/// Split `name(mods)` / `name(mods)[]`.
pub(super) fn parse_type(t: &str) -> (String, Vec<i64>, bool) {
    let (t, array) = match t.strip_suffix("[]") {
        Some(s) => (s, true),
        None => (t, false),
    };
    // "timestamp(3) with time zone" keeps its modifier in the middle.
    match (t.find('('), t.find(')')) {
        (Some(a), Some(b)) if b > a => {
            let base = format!("{}{}", &t[..a], &t[b + 1..]);
            let mods = t[a + 1..b].split(',').filter_map(|m| m.trim().parse().ok()).collect();
            (base, mods, array)
        }
        _ => (t.to_string(), Vec::new(), array),
    }
}

/// Whether changing a column from `from` to `to` rewrites the table, and whether it may lose
/// data (narrowing or an unrecognised conversion).
pub(crate) fn type_change(from: &str, to: &str) -> (bool, bool) {
    if from == to {
        return (false, false);
    }
    let (fb, fm, fa) = parse_type(from);
    let (tb, tm, ta) = parse_type(to);
    if fa != ta {
        return (true, true);
    }
    let stringy = |b: &str| b == "character varying" || b == "text";
    match (fb.as_str(), tb.as_str()) {
        ("character varying", "character varying") if (tm.is_empty() || (!fm.is_empty() && tm[0] >= fm[0])) => (false, false),
        (f, "text") if stringy(f) => (false, false),
        ("text", "character varying") if tm.is_empty() => (false, false),
        ("numeric", "numeric") => {
            if tm.is_empty() {
                return (false, false);
            }
            if fm.is_empty() {
                return (true, true);
            }
            let (fp, fs) = (fm[0], fm.get(1).copied().unwrap_or(0));
            let (tp, ts) = (tm[0], tm.get(1).copied().unwrap_or(0));
            if ts == fs && tp >= fp {
                (false, false)
            } else if ts >= fs && tp - ts >= fp - fs {
                (true, false)
            } else {
                (true, true)
            }
        }
        ("smallint", "integer" | "bigint" | "numeric" | "real" | "double precision")
        | ("integer", "bigint" | "numeric" | "double precision")
        | ("bigint", "numeric")
        | ("real", "double precision")
        | ("character", "character varying" | "text")
        | ("timestamp without time zone", "timestamp with time zone")
        | ("timestamp with time zone", "timestamp without time zone")
        | ("date", "timestamp without time zone" | "timestamp with time zone") => (true, false),
        (_, "text") => (true, false),
        _ => (true, true),
    }
}

/// Identity options that differ from the defaults for the column type.
pub(super) fn identity_options_sql(o: &SeqOptions) -> String {
    let mut parts = Vec::new();
    let asc = o.increment > 0;
    let (dmin, dmax) = if asc { (1, int_max(&o.data_type)) } else { (-int_max(&o.data_type) - 1, -1) };
    let dstart = if asc { o.min } else { o.max };
    if o.start != dstart {
        parts.push(format!("START WITH {}", o.start));
    }
    if o.increment != 1 {
        parts.push(format!("INCREMENT BY {}", o.increment));
    }
    if o.min != dmin {
        parts.push(format!("MINVALUE {}", o.min));
    }
    if o.max != dmax {
        parts.push(format!("MAXVALUE {}", o.max));
    }
    if o.cache != 1 {
        parts.push(format!("CACHE {}", o.cache));
    }
    if o.cycle {
        parts.push("CYCLE".into());
    }
    if parts.is_empty() { String::new() } else { format!(" ({})", parts.join(" ")) }
}
