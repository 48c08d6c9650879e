//! Indexes: structure from the catalog, the CREATE INDEX text assembled on the client.

use std::collections::HashMap;

use tokio_postgres::Row;

use super::lookups::*;
use super::relations::Rel;
use super::{Assembly, get};
use crate::error::SchemaError;
use crate::ident::{display_name, qualified, quote_ident};
use crate::model::*;

/// Index structure; the CREATE INDEX text is assembled on the client. `pg_get_indexdef` costs
/// about 40-70 µs per index (measured: 290 ms for 4,000 indexes in a fresh session), more than
/// every other catalog query together.
pub(super) const Q_INDEXES: &str = "
SELECT i.indexrelid, i.indrelid, ic.relname::text, am.amname::text, i.indisunique, i.indisvalid,
       i.indnkeyatts::int4, i.indkey::int2[], i.indclass::oid[], i.indcollation::oid[], i.indoption::int2[],
       pg_get_expr(i.indexprs, i.indrelid), pg_get_expr(i.indpred, i.indrelid), ic.reloptions::text[], {NULLS}
FROM pg_index i
JOIN pg_class ic ON ic.oid = i.indexrelid
JOIN pg_namespace n ON n.oid = ic.relnamespace
JOIN pg_am am ON am.oid = ic.relam
WHERE n.nspname = ANY($1::text[]) AND ic.relkind = 'i'";

/// Structure of one index, before its definition is assembled.
pub(super) struct RawIndex {
    pub(super) oid: u32,
    pub(super) table: u32,
    pub(super) name: String,
    pub(super) am: String,
    pub(super) unique: bool,
    pub(super) valid: bool,
    pub(super) nkey: usize,
    pub(super) keys: Vec<i16>,
    pub(super) classes: Vec<u32>,
    pub(super) collations: Vec<u32>,
    pub(super) options: Vec<i16>,
    pub(super) exprs: Option<String>,
    pub(super) pred: Option<String>,
    pub(super) reloptions: Vec<String>,
    pub(super) nulls_not_distinct: bool,
}

/// Split a deparsed expression list at top-level commas.
pub(super) fn split_top_level(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut quote: Option<char> = None;
    let mut cur = String::new();
    for ch in s.chars() {
        match quote {
            Some(q) => {
                if ch == q {
                    quote = None;
                }
                cur.push(ch);
            }
            None => match ch {
                '\'' | '"' => {
                    quote = Some(ch);
                    cur.push(ch);
                }
                '(' | '[' => {
                    depth += 1;
                    cur.push(ch);
                }
                ')' | ']' => {
                    depth -= 1;
                    cur.push(ch);
                }
                ',' if depth == 0 => {
                    out.push(cur.trim().to_string());
                    cur.clear();
                }
                _ => cur.push(ch),
            },
        }
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim().to_string());
    }
    out
}

/// Indexes: assemble CREATE INDEX from the structure. Those behind constraints are
/// taken by `constraints`; `finish` adds the rest.
pub(super) fn indexes(a: &mut Assembly, rows: &[Row]) -> Result<HashMap<u32, (String, RawIndex)>, SchemaError> {
    // Indexes: assemble CREATE INDEX from the structure.
    let mut index_defs: HashMap<u32, (String, RawIndex)> = HashMap::with_capacity(rows.len());
    for r in rows {
        let raw = RawIndex {
            oid: get(r, 0, "indexes")?,
            table: get(r, 1, "indexes")?,
            name: get(r, 2, "indexes")?,
            am: get(r, 3, "indexes")?,
            unique: get(r, 4, "indexes")?,
            valid: get(r, 5, "indexes")?,
            nkey: get::<i32>(r, 6, "indexes")?.max(0) as usize,
            keys: get(r, 7, "indexes")?,
            classes: get(r, 8, "indexes")?,
            collations: get(r, 9, "indexes")?,
            options: get(r, 10, "indexes")?,
            exprs: get(r, 11, "indexes")?,
            pred: get(r, 12, "indexes")?,
            reloptions: get::<Option<Vec<String>>>(r, 13, "indexes")?.unwrap_or_default(),
            nulls_not_distinct: get(r, 14, "indexes")?,
        };
        let Some(info) = a.rels.get(&raw.table) else {
            continue;
        };
        if info.kind != 'r' && info.kind != 'm' {
            continue;
        }
        let def = index_definition(&raw, info, &a.attnames, &a.opclasses, &a.collations);
        index_defs.insert(raw.oid, (def, raw));
    }
    Ok(index_defs)
}

/// The indexes that no constraint took.
pub(super) fn finish(a: &mut Assembly, index_defs: HashMap<u32, (String, RawIndex)>) -> Result<(), SchemaError> {
    for (_, (definition, raw)) in index_defs {
        let Some(info) = a.rels.get(&raw.table) else {
            continue;
        };
        a.m.indexes.insert(
            display_name(&info.schema, &raw.name),
            Index {
                schema: info.schema.clone(),
                table: info.name.clone(),
                name: raw.name,
                definition,
                unique: raw.unique,
                valid: raw.valid,
                comment: a.comments.get(C_CLASS, raw.oid, 0),
            },
        );
    }
    Ok(())
}

/// `CREATE [UNIQUE] INDEX name ON table USING am (keys) [INCLUDE (…)] [NULLS NOT DISTINCT]
/// [WITH (…)] [WHERE (…)]`. Operator classes are shown when they are not a default one,
/// collations when they differ from the column's; expressions are always parenthesised.
pub(super) fn index_definition(
    raw: &RawIndex,
    table: &Rel,
    attnames: &HashMap<(u32, i16), (String, u32)>,
    opclasses: &HashMap<u32, (String, bool)>,
    collations: &HashMap<u32, String>,
) -> String {
    let mut exprs = raw.exprs.as_deref().map(split_top_level).unwrap_or_default().into_iter();
    let mut keys = Vec::new();
    let mut include = Vec::new();
    for (k, &attnum) in raw.keys.iter().enumerate() {
        let (mut text, col_coll) = if attnum == 0 {
            (format!("({})", exprs.next().unwrap_or_default()), None)
        } else {
            match attnames.get(&(raw.table, attnum)) {
                Some((n, coll)) => (quote_ident(n), Some(*coll)),
                None => (format!("\"?{attnum}\""), None),
            }
        };
        if k >= raw.nkey {
            include.push(text);
            continue;
        }
        if let Some(&coll) = raw.collations.get(k) {
            let differs = match col_coll {
                Some(c) => coll != c,
                None => coll != 0 && coll != DEFAULT_COLLATION_OID,
            };
            if differs && let Some(name) = collations.get(&coll) {
                text.push_str(&format!(" COLLATE {name}"));
            }
        }
        if let Some((name, is_default)) = raw.classes.get(k).and_then(|c| opclasses.get(c))
            && !is_default
        {
            text.push(' ');
            text.push_str(name);
        }
        let opt = raw.options.get(k).copied().unwrap_or(0);
        if opt & 1 != 0 {
            text.push_str(" DESC");
            if opt & 2 == 0 {
                text.push_str(" NULLS LAST");
            }
        } else if opt & 2 != 0 {
            text.push_str(" NULLS FIRST");
        }
        keys.push(text);
    }
    let mut def = format!(
        "CREATE {}INDEX {} ON {} USING {} ({})",
        if raw.unique { "UNIQUE " } else { "" },
        quote_ident(&raw.name),
        qualified(&table.schema, &table.name),
        raw.am,
        keys.join(", ")
    );
    if !include.is_empty() {
        def.push_str(&format!(" INCLUDE ({})", include.join(", ")));
    }
    if raw.nulls_not_distinct {
        def.push_str(" NULLS NOT DISTINCT");
    }
    if !raw.reloptions.is_empty() {
        def.push_str(&format!(" WITH ({})", crate::ident::reloptions_sql(&raw.reloptions)));
    }
    if let Some(p) = &raw.pred {
        def.push_str(&format!(" WHERE ({p})"));
    }
    def
}

/// OID of the database default collation.
pub(super) const DEFAULT_COLLATION_OID: u32 = 100;
