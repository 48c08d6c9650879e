//! Tables, views and materialized views with their columns, and what views read.

use std::collections::{BTreeSet, HashMap};

use tokio_postgres::Row;

use super::lookups::*;
use super::{Assembly, get};
use crate::error::SchemaError;
use crate::ident::{display_name, display_part};
use crate::model::*;

pub(super) const Q_RELATIONS: &str = "
SELECT c.oid, n.nspname::text, c.relname::text, c.relkind::text, c.relpersistence::text,
       c.relrowsecurity, c.relforcerowsecurity, c.reloptions::text[], c.relispartition,
       CASE WHEN c.relkind IN ('v', 'm') THEN pg_get_viewdef(c.oid, true) END
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = ANY($1::text[]) AND c.relkind IN ('r', 'p', 'v', 'm', 'f')";

pub(super) const Q_COLUMNS: &str = "
SELECT a.attrelid, a.attnum::int4, a.attname::text, a.atttypid, a.attnotnull,
       a.attidentity::text, a.attgenerated::text, pg_get_expr(ad.adbin, ad.adrelid),
       CASE WHEN a.attcollation <> t.typcollation THEN a.attcollation END, a.attcollation, a.atttypmod
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_type t ON t.oid = a.atttypid
LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
WHERE n.nspname = ANY($1::text[]) AND c.relkind IN ('r', 'v', 'm') AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attrelid, a.attnum";

/// `format_type` once per distinct (type, modifier) of the managed columns.
pub(super) const Q_COLUMN_TYPES: &str = "
SELECT x.atttypid, x.atttypmod, format_type(x.atttypid, x.atttypmod)
FROM (SELECT DISTINCT a.atttypid, a.atttypmod
      FROM pg_attribute a
      JOIN pg_class c ON c.oid = a.attrelid
      JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = ANY($1::text[]) AND c.relkind IN ('r', 'v', 'm') AND a.attnum > 0 AND NOT a.attisdropped) x";

pub(super) const Q_VIEW_DEPS: &str = "
SELECT DISTINCT rw.ev_class, rn.nspname::text, r.relname::text, att.attname::text
FROM pg_depend d
JOIN pg_rewrite rw ON rw.oid = d.objid
JOIN pg_class v ON v.oid = rw.ev_class
JOIN pg_namespace n ON n.oid = v.relnamespace
JOIN pg_class r ON r.oid = d.refobjid
JOIN pg_namespace rn ON rn.oid = r.relnamespace
LEFT JOIN pg_attribute att ON att.attrelid = d.refobjid AND att.attnum = d.refobjsubid AND d.refobjsubid > 0
WHERE d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass
  AND d.deptype = 'n' AND rw.ev_class <> d.refobjid AND n.nspname = ANY($1::text[]) AND v.relkind IN ('v', 'm')";

pub(super) struct Rel {
    pub(super) schema: String,
    pub(super) name: String,
    pub(super) kind: char,
}

/// Relations by OID (the OIDs are plumbing only).
pub(super) fn relations(a: &mut Assembly, rows: &[Row]) -> Result<(), SchemaError> {
    // Relations by OID (the OIDs are plumbing only).
    a.rels.reserve(rows.len());
    for r in rows {
        let oid: u32 = get(r, 0, "relations")?;
        if a.members.contains(&(C_CLASS, oid)) {
            continue;
        }
        let schema: String = get(r, 1, "relations")?;
        let name: String = get(r, 2, "relations")?;
        let kind: String = get(r, 3, "relations")?;
        let kind = kind.chars().next().unwrap_or('?');
        let persistence: String = get(r, 4, "relations")?;
        let ispartition: bool = get(r, 8, "relations")?;
        let key = display_name(&schema, &name);
        let comment = a.comments.get(C_CLASS, oid, 0);
        let mut options: Vec<String> = get::<Option<Vec<String>>>(r, 7, "relations")?.unwrap_or_default();
        options.sort();
        match kind {
            'r' if !ispartition => {
                a.m.tables.insert(
                    key,
                    Table {
                        schema: schema.clone(),
                        name: name.clone(),
                        unlogged: persistence == "u",
                        options,
                        rls_enabled: get(r, 5, "relations")?,
                        rls_forced: get(r, 6, "relations")?,
                        comment,
                        columns: Vec::new(),
                    },
                );
                a.rels.insert(oid, Rel { schema, name, kind });
            }
            'v' | 'm' => {
                let definition: Option<String> = get(r, 9, "relations")?;
                a.m.views.insert(
                    key,
                    View {
                        schema: schema.clone(),
                        name: name.clone(),
                        definition: definition.unwrap_or_default(),
                        options,
                        columns: Vec::new(),
                        depends_on: Vec::new(),
                        depends_on_columns: Vec::new(),
                        comment,
                        materialized: kind == 'm',
                    },
                );
                a.rels.insert(oid, Rel { schema, name, kind });
            }
            'p' => a.unsupported.push(format!("partitioned table {key}")),
            'r' => a.unsupported.push(format!("partition {key}")),
            'f' => a.unsupported.push(format!("foreign table {key}")),
            _ => {}
        }
    }
    Ok(())
}

/// Columns, in attnum order per relation.
pub(super) fn columns(a: &mut Assembly, type_rows: &[Row], rows: &[Row]) -> Result<(), SchemaError> {
    let mut type_names: HashMap<(u32, i32), String> = HashMap::with_capacity(type_rows.len());
    for r in type_rows {
        type_names.insert((get(r, 0, "column types")?, get(r, 1, "column types")?), get(r, 2, "column types")?);
    }

    // Columns, in attnum order per relation.
    let mut cols: HashMap<u32, Vec<Column>> = HashMap::new();
    let mut view_cols: HashMap<u32, Vec<ViewColumn>> = HashMap::new();
    a.attnames.reserve(rows.len());
    for r in rows {
        let rel: u32 = get(r, 0, "columns")?;
        let Some(info) = a.rels.get(&rel) else { continue };
        let attnum: i32 = get(r, 1, "columns")?;
        let name: String = get(r, 2, "columns")?;
        let type_key: (u32, i32) = (get(r, 3, "columns")?, get(r, 10, "columns")?);
        let type_name: String = type_names.get(&type_key).cloned().unwrap_or_else(|| format!("\"?type {}\"", type_key.0));
        let comment = a.comments.get(C_CLASS, rel, attnum);
        if info.kind == 'm' {
            a.attnames.insert((rel, attnum as i16), (name.clone(), get(r, 9, "columns")?));
        }
        if info.kind == 'v' || info.kind == 'm' {
            view_cols.entry(rel).or_default().push(ViewColumn { name, type_name, comment });
            continue;
        }
        let attcollation: u32 = get(r, 9, "columns")?;
        a.attnames.insert((rel, attnum as i16), (name.clone(), attcollation));
        let ident: String = get(r, 5, "columns")?;
        let gen_kind: String = get(r, 6, "columns")?;
        let expr: Option<String> = get(r, 7, "columns")?;
        let (default, generated) = if gen_kind.is_empty() { (expr, None) } else { (None, expr) };
        let identity_opt = if ident.is_empty() {
            None
        } else {
            let options = a.identity.remove(&(rel, attnum)).unwrap_or(SeqOptions {
                data_type: type_name.clone(),
                start: 1,
                increment: 1,
                min: 1,
                max: i64::MAX,
                cache: 1,
                cycle: false,
            });
            Some(Identity { always: ident == "a", options })
        };
        let collation = get::<Option<u32>>(r, 8, "columns")?.and_then(|o| a.collations.get(&o).cloned());
        cols.entry(rel).or_default().push(Column {
            name,
            type_name,
            not_null: get(r, 4, "columns")?,
            default,
            identity: identity_opt,
            generated,
            collation,
            comment,
        });
    }
    for (oid, list) in cols {
        if let Some(info) = a.rels.get(&oid)
            && let Some(t) = a.m.tables.get_mut(&display_name(&info.schema, &info.name))
        {
            t.columns = list;
        }
    }
    for (oid, list) in view_cols {
        if let Some(info) = a.rels.get(&oid)
            && let Some(v) = a.m.views.get_mut(&display_name(&info.schema, &info.name))
        {
            v.columns = list;
        }
    }
    Ok(())
}

/// The relations and columns each view reads.
pub(super) fn view_dependencies(a: &mut Assembly, rows: &[Row]) -> Result<(), SchemaError> {
    let mut deps: HashMap<u32, (BTreeSet<String>, BTreeSet<String>)> = HashMap::new();
    for r in rows {
        let view: u32 = get(r, 0, "view dependencies")?;
        let s: String = get(r, 1, "view dependencies")?;
        let t: String = get(r, 2, "view dependencies")?;
        let col: Option<String> = get(r, 3, "view dependencies")?;
        let e = deps.entry(view).or_default();
        let rel = display_name(&s, &t);
        if let Some(col) = col {
            e.1.insert(format!("{rel}.{}", display_part(&col)));
        }
        e.0.insert(rel);
    }
    for (oid, (rels_used, cols_used)) in deps {
        if let Some(info) = a.rels.get(&oid)
            && let Some(v) = a.m.views.get_mut(&display_name(&info.schema, &info.name))
        {
            v.depends_on = rels_used.into_iter().collect();
            v.depends_on_columns = cols_used.into_iter().collect();
        }
    }
    Ok(())
}
