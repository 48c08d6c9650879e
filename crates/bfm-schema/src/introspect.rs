//! Bulk introspection: one query per object kind, all in one `REPEATABLE READ READ ONLY`
//! transaction, expressions rendered with an empty `search_path` (so every user object is
//! schema-qualified, exactly as in a scratch database that keeps the real schema names).
//! No per-object queries.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use tokio_postgres::Row;
use tokio_postgres::types::FromSql;

use crate::db::Conn;
use crate::error::SchemaError;
use crate::ident::display_name;
use crate::model::*;

/// The schema that holds bfm's own state; never managed.
pub const CONTROL_SCHEMA: &str = "bfm";

/// What an introspection found: the model plus objects of kinds this crate does not manage yet.
#[derive(Debug, Clone)]
pub struct Introspection {
    pub model: Model,
    pub unsupported: Vec<String>,
}

fn get<'a, T: FromSql<'a>>(row: &'a Row, idx: usize, what: &str) -> Result<T, SchemaError> {
    row.try_get(idx).map_err(|e| SchemaError::db(format!("decoding {what} column {idx}"), &e))
}

const Q_SCHEMAS_ALL: &str = "
SELECT n.nspname::text FROM pg_namespace n
WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'
  AND n.nspname <> ALL($1::text[])
  AND NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.classid = 'pg_namespace'::regclass AND e.objid = n.oid AND e.deptype = 'e')
ORDER BY 1";

const Q_SCHEMAS: &str = "
SELECT n.nspname::text, d.description
FROM pg_namespace n
LEFT JOIN pg_description d ON d.objoid = n.oid AND d.classoid = 'pg_namespace'::regclass AND d.objsubid = 0
WHERE n.nspname = ANY($1::text[])";

const Q_EXTENSIONS: &str = "
SELECT e.extname::text, n.nspname::text, e.extversion
FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
WHERE n.nspname = ANY($1::text[])";

const Q_RELATIONS: &str = "
SELECT c.oid, n.nspname::text, c.relname::text, c.relkind::text, c.relpersistence::text,
       c.relrowsecurity, c.relforcerowsecurity, c.reloptions::text[], d.description, c.relispartition,
       CASE WHEN c.relkind = 'v' THEN pg_get_viewdef(c.oid, true) END
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_description d ON d.objoid = c.oid AND d.classoid = 'pg_class'::regclass AND d.objsubid = 0
WHERE n.nspname = ANY($1::text[]) AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
  AND NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.classid = 'pg_class'::regclass AND e.objid = c.oid AND e.deptype = 'e')";

const Q_COLUMNS: &str = "
SELECT a.attrelid, a.attname::text, format_type(a.atttypid, a.atttypmod), a.attnotnull,
       a.attidentity::text, a.attgenerated::text, pg_get_expr(ad.adbin, ad.adrelid),
       CASE WHEN a.attcollation <> t.typcollation THEN quote_ident(cn.nspname) || '.' || quote_ident(co.collname) END,
       d.description, a.attnum::int4
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_type t ON t.oid = a.atttypid
LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
LEFT JOIN pg_collation co ON co.oid = a.attcollation
LEFT JOIN pg_namespace cn ON cn.oid = co.collnamespace
LEFT JOIN pg_description d ON d.objoid = a.attrelid AND d.classoid = 'pg_class'::regclass AND d.objsubid = a.attnum
WHERE n.nspname = ANY($1::text[]) AND c.relkind IN ('r', 'v') AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attrelid, a.attnum";

const Q_CONSTRAINTS: &str = "
SELECT con.conrelid, con.contypid, con.conname::text, con.contype::text, pg_get_constraintdef(con.oid),
       con.convalidated, fn.nspname::text, fc.relname::text, d.description
FROM pg_constraint con
JOIN pg_namespace n ON n.oid = con.connamespace
LEFT JOIN pg_class fc ON fc.oid = con.confrelid
LEFT JOIN pg_namespace fn ON fn.oid = fc.relnamespace
LEFT JOIN pg_description d ON d.objoid = con.oid AND d.classoid = 'pg_constraint'::regclass AND d.objsubid = 0
WHERE n.nspname = ANY($1::text[]) AND con.conparentid = 0 AND con.contype IN ('p', 'u', 'c', 'f', 'x')";

const Q_INDEXES: &str = "
SELECT i.indrelid, ic.relname::text, pg_get_indexdef(i.indexrelid), i.indisunique, i.indisvalid,
       con.conname::text, d.description
FROM pg_index i
JOIN pg_class ic ON ic.oid = i.indexrelid
JOIN pg_namespace n ON n.oid = ic.relnamespace
LEFT JOIN pg_constraint con ON con.conindid = i.indexrelid AND con.conrelid = i.indrelid AND con.contype IN ('p', 'u', 'x')
LEFT JOIN pg_description d ON d.objoid = i.indexrelid AND d.classoid = 'pg_class'::regclass AND d.objsubid = 0
WHERE n.nspname = ANY($1::text[]) AND ic.relkind = 'i'";

const Q_SEQUENCES: &str = "
SELECT n.nspname::text, c.relname::text, format_type(s.seqtypid, NULL), s.seqstart, s.seqincrement, s.seqmin,
       s.seqmax, s.seqcache, s.seqcycle, dep.deptype::text, dep.refobjid, dep.refobjsubid::int4,
       tn.nspname::text, tc.relname::text, ta.attname::text, d.description
FROM pg_sequence s
JOIN pg_class c ON c.oid = s.seqrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_depend dep ON dep.classid = 'pg_class'::regclass AND dep.objid = s.seqrelid
     AND dep.refclassid = 'pg_class'::regclass AND dep.deptype IN ('a', 'i')
LEFT JOIN pg_class tc ON tc.oid = dep.refobjid
LEFT JOIN pg_namespace tn ON tn.oid = tc.relnamespace
LEFT JOIN pg_attribute ta ON ta.attrelid = dep.refobjid AND ta.attnum = dep.refobjsubid
LEFT JOIN pg_description d ON d.objoid = c.oid AND d.classoid = 'pg_class'::regclass AND d.objsubid = 0
WHERE n.nspname = ANY($1::text[])
  AND NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.classid = 'pg_class'::regclass AND e.objid = c.oid AND e.deptype = 'e')";

const Q_FUNCTIONS: &str = "
SELECT n.nspname::text, p.proname::text, p.prokind::text, pg_get_function_identity_arguments(p.oid),
       pg_get_function_arguments(p.oid), pg_get_function_result(p.oid),
       CASE WHEN p.prokind IN ('f', 'p', 'w') THEN pg_get_functiondef(p.oid) END, d.description
FROM pg_proc p
JOIN pg_namespace n ON n.oid = p.pronamespace
LEFT JOIN pg_description d ON d.objoid = p.oid AND d.classoid = 'pg_proc'::regclass AND d.objsubid = 0
WHERE n.nspname = ANY($1::text[])
  AND NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.classid = 'pg_proc'::regclass AND e.objid = p.oid AND e.deptype = 'e')";

const Q_TRIGGERS: &str = "
SELECT t.tgrelid, t.tgname::text, pg_get_triggerdef(t.oid), t.tgenabled::text, d.description
FROM pg_trigger t
JOIN pg_class c ON c.oid = t.tgrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_description d ON d.objoid = t.oid AND d.classoid = 'pg_trigger'::regclass AND d.objsubid = 0
WHERE n.nspname = ANY($1::text[]) AND NOT t.tgisinternal AND t.tgparentid = 0";

const Q_POLICIES: &str = "
SELECT pol.polrelid, pol.polname::text, pol.polpermissive, pol.polcmd::text,
       ARRAY(SELECT CASE WHEN r = 0 THEN 'public' ELSE pg_get_userbyid(r)::text END FROM unnest(pol.polroles) r ORDER BY 1),
       pg_get_expr(pol.polqual, pol.polrelid), pg_get_expr(pol.polwithcheck, pol.polrelid), d.description
FROM pg_policy pol
JOIN pg_class c ON c.oid = pol.polrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_description d ON d.objoid = pol.oid AND d.classoid = 'pg_policy'::regclass AND d.objsubid = 0
WHERE n.nspname = ANY($1::text[])";

const Q_TYPES: &str = "
SELECT t.oid, n.nspname::text, t.typname::text, t.typtype::text,
       CASE WHEN t.typtype = 'd' THEN format_type(t.typbasetype, t.typtypmod) END, t.typnotnull,
       CASE WHEN t.typtype = 'd' THEN pg_get_expr(t.typdefaultbin, 0) END,
       CASE WHEN t.typtype = 'd' AND t.typcollation <> bt.typcollation
            THEN quote_ident(cn.nspname) || '.' || quote_ident(co.collname) END,
       CASE WHEN t.typtype = 'e' THEN ARRAY(SELECT e.enumlabel::text FROM pg_enum e WHERE e.enumtypid = t.oid ORDER BY e.enumsortorder) END,
       d.description
FROM pg_type t
JOIN pg_namespace n ON n.oid = t.typnamespace
LEFT JOIN pg_type bt ON bt.oid = t.typbasetype
LEFT JOIN pg_collation co ON co.oid = t.typcollation
LEFT JOIN pg_namespace cn ON cn.oid = co.collnamespace
LEFT JOIN pg_class c ON c.oid = t.typrelid
LEFT JOIN pg_description d ON d.objoid = t.oid AND d.classoid = 'pg_type'::regclass AND d.objsubid = 0
WHERE n.nspname = ANY($1::text[])
  AND (t.typtype IN ('e', 'd', 'r', 'm') OR (t.typtype = 'c' AND c.relkind = 'c'))
  AND NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.classid = 'pg_type'::regclass AND e.objid = t.oid AND e.deptype = 'e')";

const Q_VIEW_DEPS: &str = "
SELECT DISTINCT rw.ev_class, rn.nspname::text, r.relname::text, att.attname::text
FROM pg_depend d
JOIN pg_rewrite rw ON rw.oid = d.objid
JOIN pg_class v ON v.oid = rw.ev_class
JOIN pg_namespace n ON n.oid = v.relnamespace
JOIN pg_class r ON r.oid = d.refobjid
JOIN pg_namespace rn ON rn.oid = r.relnamespace
LEFT JOIN pg_attribute att ON att.attrelid = d.refobjid AND att.attnum = d.refobjsubid AND d.refobjsubid > 0
WHERE d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass
  AND d.deptype = 'n' AND rw.ev_class <> d.refobjid AND n.nspname = ANY($1::text[]) AND v.relkind = 'v'";

const BEGIN: &str = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;
SELECT pg_catalog.set_config('search_path', '', true);
SET LOCAL TimeZone = 'UTC'; SET LOCAL DateStyle = 'ISO, YMD'; SET LOCAL IntervalStyle = 'postgres';
SET LOCAL extra_float_digits = 3";

/// Resolve the managed schema list: the given names, or every non-system schema except bfm's own.
async fn resolve_schemas(conn: &Conn, managed: &[String]) -> Result<Vec<String>, SchemaError> {
    if !managed.is_empty() {
        let mut v: Vec<String> = managed.to_vec();
        v.sort();
        v.dedup();
        return Ok(v);
    }
    let excluded = vec![CONTROL_SCHEMA.to_string()];
    let rows = conn
        .client
        .query(Q_SCHEMAS_ALL, &[&excluded])
        .await
        .map_err(|e| SchemaError::db(format!("listing schemas of {}", conn.label), &e))?;
    rows.iter().map(|r| get::<String>(r, 0, "schemas")).collect()
}

struct Rel {
    schema: String,
    name: String,
    kind: char,
}

/// Introspect the managed schemas of a connection.
pub(crate) async fn introspect(conn: &Conn, managed: &[String]) -> Result<Introspection, SchemaError> {
    let ctx = |what: &str| format!("introspecting {} of {}", what, conn.label);
    conn.client.batch_execute(BEGIN).await.map_err(|e| SchemaError::db(ctx("(begin)"), &e))?;
    let result = introspect_in_tx(conn, managed).await;
    // Read-only: the end of the transaction cannot lose anything.
    let _ = conn.client.batch_execute("COMMIT").await;
    result
}

async fn introspect_in_tx(conn: &Conn, managed: &[String]) -> Result<Introspection, SchemaError> {
    let schemas = resolve_schemas(conn, managed).await?;
    let c = &conn.client;
    let ctx = |what: &str| format!("introspecting {} of {}", what, conn.label);
    let p: &[&(dyn tokio_postgres::types::ToSql + Sync)] = &[&schemas];
    // The queries are pipelined on one connection, inside one snapshot.
    let (q_schemas, q_ext, q_rel, q_cols, q_cons, q_idx, q_seq, q_fn, q_trg, q_pol, q_types, q_vdeps) = futures::try_join!(
        async { c.query(Q_SCHEMAS, p).await.map_err(|e| SchemaError::db(ctx("schemas"), &e)) },
        async { c.query(Q_EXTENSIONS, p).await.map_err(|e| SchemaError::db(ctx("extensions"), &e)) },
        async { c.query(Q_RELATIONS, p).await.map_err(|e| SchemaError::db(ctx("relations"), &e)) },
        async { c.query(Q_COLUMNS, p).await.map_err(|e| SchemaError::db(ctx("columns"), &e)) },
        async { c.query(Q_CONSTRAINTS, p).await.map_err(|e| SchemaError::db(ctx("constraints"), &e)) },
        async { c.query(Q_INDEXES, p).await.map_err(|e| SchemaError::db(ctx("indexes"), &e)) },
        async { c.query(Q_SEQUENCES, p).await.map_err(|e| SchemaError::db(ctx("sequences"), &e)) },
        async { c.query(Q_FUNCTIONS, p).await.map_err(|e| SchemaError::db(ctx("functions"), &e)) },
        async { c.query(Q_TRIGGERS, p).await.map_err(|e| SchemaError::db(ctx("triggers"), &e)) },
        async { c.query(Q_POLICIES, p).await.map_err(|e| SchemaError::db(ctx("policies"), &e)) },
        async { c.query(Q_TYPES, p).await.map_err(|e| SchemaError::db(ctx("types"), &e)) },
        async { c.query(Q_VIEW_DEPS, p).await.map_err(|e| SchemaError::db(ctx("view dependencies"), &e)) },
    )?;

    let mut m = Model::empty(conn.pg_major());
    let mut unsupported = Vec::new();

    for r in &q_schemas {
        let name: String = get(r, 0, "schemas")?;
        m.schemas.insert(crate::ident::display_part(&name), Schema { name, comment: get(r, 1, "schemas")? });
    }
    for r in &q_ext {
        let name: String = get(r, 0, "extensions")?;
        m.extensions.insert(
            crate::ident::display_part(&name),
            Extension { name, schema: get(r, 1, "extensions")?, version: get(r, 2, "extensions")? },
        );
    }

    // Relations by OID (the OIDs are plumbing only).
    let mut rels: HashMap<u32, Rel> = HashMap::with_capacity(q_rel.len());
    for r in &q_rel {
        let oid: u32 = get(r, 0, "relations")?;
        let schema: String = get(r, 1, "relations")?;
        let name: String = get(r, 2, "relations")?;
        let kind: String = get(r, 3, "relations")?;
        let kind = kind.chars().next().unwrap_or('?');
        let persistence: String = get(r, 4, "relations")?;
        let ispartition: bool = get(r, 9, "relations")?;
        let key = display_name(&schema, &name);
        let comment: Option<String> = get(r, 8, "relations")?;
        let mut options: Vec<String> = get::<Option<Vec<String>>>(r, 7, "relations")?.unwrap_or_default();
        options.sort();
        match kind {
            'r' if !ispartition => {
                m.tables.insert(
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
                rels.insert(oid, Rel { schema, name, kind });
            }
            'v' => {
                let definition: Option<String> = get(r, 10, "relations")?;
                m.views.insert(
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
                    },
                );
                rels.insert(oid, Rel { schema, name, kind });
            }
            'p' => unsupported.push(format!("partitioned table {key}")),
            'r' => unsupported.push(format!("partition {key}")),
            'm' => unsupported.push(format!("materialized view {key}")),
            'f' => unsupported.push(format!("foreign table {key}")),
            _ => {}
        }
    }

    // Identity sequences belong to their columns; the others are standalone sequences.
    let mut identity: HashMap<(u32, i32), SeqOptions> = HashMap::new();
    for r in &q_seq {
        let schema: String = get(r, 0, "sequences")?;
        let name: String = get(r, 1, "sequences")?;
        let options = SeqOptions {
            data_type: get(r, 2, "sequences")?,
            start: get(r, 3, "sequences")?,
            increment: get(r, 4, "sequences")?,
            min: get(r, 5, "sequences")?,
            max: get(r, 6, "sequences")?,
            cache: get(r, 7, "sequences")?,
            cycle: get(r, 8, "sequences")?,
        };
        let deptype: Option<String> = get(r, 9, "sequences")?;
        match deptype.as_deref() {
            Some("i") => {
                let table: u32 = get(r, 10, "sequences")?;
                let attnum: i32 = get(r, 11, "sequences")?;
                identity.insert((table, attnum), options);
            }
            _ => {
                let owned_by = match (deptype.as_deref(), get::<Option<String>>(r, 12, "sequences")?) {
                    (Some("a"), Some(ts)) => Some(OwnedBy {
                        schema: ts,
                        table: get::<Option<String>>(r, 13, "sequences")?.unwrap_or_default(),
                        column: get::<Option<String>>(r, 14, "sequences")?.unwrap_or_default(),
                    }),
                    _ => None,
                };
                m.sequences.insert(
                    display_name(&schema, &name),
                    Sequence { schema, name, options, owned_by, comment: get(r, 15, "sequences")? },
                );
            }
        }
    }

    // Columns, in attnum order per relation.
    let mut cols: HashMap<u32, Vec<Column>> = HashMap::new();
    let mut view_cols: HashMap<u32, Vec<ViewColumn>> = HashMap::new();
    for r in &q_cols {
        let rel: u32 = get(r, 0, "columns")?;
        let Some(info) = rels.get(&rel) else { continue };
        let name: String = get(r, 1, "columns")?;
        let type_name: String = get(r, 2, "columns")?;
        let comment: Option<String> = get(r, 8, "columns")?;
        if info.kind == 'v' {
            view_cols.entry(rel).or_default().push(ViewColumn { name, type_name, comment });
            continue;
        }
        let attnum: i32 = get(r, 9, "columns")?;
        let ident: String = get(r, 4, "columns")?;
        let gen_kind: String = get(r, 5, "columns")?;
        let expr: Option<String> = get(r, 6, "columns")?;
        let (default, generated) = if gen_kind.is_empty() { (expr, None) } else { (None, expr) };
        let identity_opt = if ident.is_empty() {
            None
        } else {
            let options = identity.remove(&(rel, attnum)).unwrap_or(SeqOptions {
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
        cols.entry(rel).or_default().push(Column {
            name,
            type_name,
            not_null: get(r, 3, "columns")?,
            default,
            identity: identity_opt,
            generated,
            collation: get(r, 7, "columns")?,
            comment,
        });
    }
    for (oid, list) in cols {
        if let Some(info) = rels.get(&oid) {
            if let Some(t) = m.tables.get_mut(&display_name(&info.schema, &info.name)) {
                t.columns = list;
            }
        }
    }
    for (oid, list) in view_cols {
        if let Some(info) = rels.get(&oid) {
            if let Some(v) = m.views.get_mut(&display_name(&info.schema, &info.name)) {
                v.columns = list;
            }
        }
    }

    // Types: enums and domains (domain constraints come from the constraints query).
    let mut domains_by_oid: HashMap<u32, String> = HashMap::new();
    for r in &q_types {
        let oid: u32 = get(r, 0, "types")?;
        let schema: String = get(r, 1, "types")?;
        let name: String = get(r, 2, "types")?;
        let typtype: String = get(r, 3, "types")?;
        let key = display_name(&schema, &name);
        let comment: Option<String> = get(r, 9, "types")?;
        match typtype.as_str() {
            "e" => {
                let labels: Option<Vec<String>> = get(r, 8, "types")?;
                m.enums.insert(key, EnumType { schema, name, labels: labels.unwrap_or_default(), comment });
            }
            "d" => {
                domains_by_oid.insert(oid, key.clone());
                m.domains.insert(
                    key,
                    Domain {
                        schema,
                        name,
                        base_type: get::<Option<String>>(r, 4, "types")?.unwrap_or_default(),
                        not_null: get(r, 5, "types")?,
                        default: get(r, 6, "types")?,
                        collation: get(r, 7, "types")?,
                        constraints: BTreeMap::new(),
                        comment,
                    },
                );
            }
            "r" | "m" => unsupported.push(format!("range type {key}")),
            "c" => unsupported.push(format!("composite type {key}")),
            _ => {}
        }
    }

    // Indexes; the ones backing a constraint are kept for the constraint.
    let mut backing: HashMap<(u32, String), String> = HashMap::new();
    for r in &q_idx {
        let rel: u32 = get(r, 0, "indexes")?;
        let Some(info) = rels.get(&rel) else { continue };
        let name: String = get(r, 1, "indexes")?;
        let definition: String = get(r, 2, "indexes")?;
        let con: Option<String> = get(r, 5, "indexes")?;
        if let Some(con) = con {
            backing.insert((rel, con), definition);
            continue;
        }
        m.indexes.insert(
            display_name(&info.schema, &name),
            Index {
                schema: info.schema.clone(),
                table: info.name.clone(),
                name,
                definition,
                unique: get(r, 3, "indexes")?,
                valid: get(r, 4, "indexes")?,
                comment: get(r, 6, "indexes")?,
            },
        );
    }

    for r in &q_cons {
        let rel: u32 = get(r, 0, "constraints")?;
        let typ: u32 = get(r, 1, "constraints")?;
        let name: String = get(r, 2, "constraints")?;
        let contype: String = get(r, 3, "constraints")?;
        let mut definition: String = get(r, 4, "constraints")?;
        let validated: bool = get(r, 5, "constraints")?;
        if let Some(stripped) = definition.strip_suffix(" NOT VALID") {
            definition = stripped.to_string();
        }
        if rel == 0 {
            if let Some(dk) = domains_by_oid.get(&typ) {
                if let Some(d) = m.domains.get_mut(dk) {
                    d.constraints.insert(name, DomainConstraint { definition, validated });
                }
            }
            continue;
        }
        let Some(info) = rels.get(&rel) else { continue };
        if info.kind != 'r' {
            continue;
        }
        let kind = match contype.as_str() {
            "p" => ConstraintKind::PrimaryKey,
            "u" => ConstraintKind::Unique,
            "c" => ConstraintKind::Check,
            "f" => ConstraintKind::ForeignKey,
            _ => ConstraintKind::Exclude,
        };
        let references = match (get::<Option<String>>(r, 6, "constraints")?, get::<Option<String>>(r, 7, "constraints")?) {
            (Some(s), Some(t)) if kind == ConstraintKind::ForeignKey => Some(display_name(&s, &t)),
            _ => None,
        };
        let index_definition = backing.remove(&(rel, name.clone()));
        m.constraints.insert(
            child_key(&info.schema, &info.name, &name),
            Constraint {
                schema: info.schema.clone(),
                table: info.name.clone(),
                name,
                kind,
                definition,
                validated,
                references,
                index_definition,
                comment: get(r, 8, "constraints")?,
            },
        );
    }

    for r in &q_fn {
        let schema: String = get(r, 0, "functions")?;
        let name: String = get(r, 1, "functions")?;
        let kind: String = get(r, 2, "functions")?;
        let identity_args: String = get(r, 3, "functions")?;
        let key = function_key(&schema, &name, &identity_args);
        if kind == "a" {
            unsupported.push(format!("aggregate {key}"));
            continue;
        }
        let definition: Option<String> = get(r, 6, "functions")?;
        m.functions.insert(
            key,
            Function {
                schema,
                name,
                procedure: kind == "p",
                identity_args,
                arguments: get(r, 4, "functions")?,
                result: get(r, 5, "functions")?,
                definition: definition.unwrap_or_default(),
                comment: get(r, 7, "functions")?,
            },
        );
    }

    for r in &q_trg {
        let rel: u32 = get(r, 0, "triggers")?;
        let Some(info) = rels.get(&rel) else { continue };
        let name: String = get(r, 1, "triggers")?;
        m.triggers.insert(
            child_key(&info.schema, &info.name, &name),
            Trigger {
                schema: info.schema.clone(),
                table: info.name.clone(),
                name,
                definition: get(r, 2, "triggers")?,
                enabled: get(r, 3, "triggers")?,
                comment: get(r, 4, "triggers")?,
            },
        );
    }

    for r in &q_pol {
        let rel: u32 = get(r, 0, "policies")?;
        let Some(info) = rels.get(&rel) else { continue };
        let name: String = get(r, 1, "policies")?;
        let cmd: String = get(r, 3, "policies")?;
        let command = match cmd.as_str() {
            "r" => "SELECT",
            "a" => "INSERT",
            "w" => "UPDATE",
            "d" => "DELETE",
            _ => "ALL",
        }
        .to_string();
        m.policies.insert(
            child_key(&info.schema, &info.name, &name),
            Policy {
                schema: info.schema.clone(),
                table: info.name.clone(),
                name,
                permissive: get(r, 2, "policies")?,
                command,
                roles: get(r, 4, "policies")?,
                using: get(r, 5, "policies")?,
                check: get(r, 6, "policies")?,
                comment: get(r, 7, "policies")?,
            },
        );
    }

    let mut deps: HashMap<u32, (BTreeSet<String>, BTreeSet<String>)> = HashMap::new();
    for r in &q_vdeps {
        let view: u32 = get(r, 0, "view dependencies")?;
        let s: String = get(r, 1, "view dependencies")?;
        let t: String = get(r, 2, "view dependencies")?;
        let col: Option<String> = get(r, 3, "view dependencies")?;
        let e = deps.entry(view).or_default();
        let rel = display_name(&s, &t);
        if let Some(col) = col {
            e.1.insert(format!("{rel}.{}", crate::ident::display_part(&col)));
        }
        e.0.insert(rel);
    }
    for (oid, (rels_used, cols_used)) in deps {
        if let Some(info) = rels.get(&oid) {
            if let Some(v) = m.views.get_mut(&display_name(&info.schema, &info.name)) {
                v.depends_on = rels_used.into_iter().collect();
                v.depends_on_columns = cols_used.into_iter().collect();
            }
        }
    }

    unsupported.sort();
    Ok(Introspection { model: m, unsupported })
}
