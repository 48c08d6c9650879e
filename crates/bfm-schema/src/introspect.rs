//! Bulk introspection: one query per object kind, all in one `REPEATABLE READ READ ONLY`
//! transaction, expressions rendered with an empty `search_path` (so every user object is
//! schema-qualified, exactly as in a scratch database that keeps the real schema names).
//! No per-object queries.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use tokio_postgres::Row;
use tokio_postgres::types::FromSql;

use crate::db::Conn;
use crate::error::SchemaError;
use crate::ident::{display_name, display_part, qualified, quote_ident};
use crate::model::*;
use crate::scope::Scope;
use crate::types::ObjectKind;

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
SELECT n.oid, n.nspname::text FROM pg_namespace n WHERE n.nspname = ANY($1::text[])";

/// Comments of user objects (and of schemas, whose `public` predates user OIDs), resolved by
/// OID on the client: joining pg_description into every query misleads the planner.
const Q_COMMENTS: &str = "
SELECT d.classoid::regclass::text, d.objoid, d.objsubid, d.description FROM pg_description d
WHERE d.objoid >= 16384 OR d.classoid = 'pg_namespace'::regclass";

/// Extension members, excluded everywhere.
const Q_EXTENSION_MEMBERS: &str = "
SELECT d.classid::regclass::text, d.objid FROM pg_depend d WHERE d.deptype = 'e'";

const Q_EXTENSIONS: &str = "
SELECT e.extname::text, n.nspname::text, e.extversion
FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
WHERE n.nspname = ANY($1::text[]) OR e.extname = ANY($2::text[])";

const Q_RELATIONS: &str = "
SELECT c.oid, n.nspname::text, c.relname::text, c.relkind::text, c.relpersistence::text,
       c.relrowsecurity, c.relforcerowsecurity, c.reloptions::text[], c.relispartition,
       CASE WHEN c.relkind IN ('v', 'm') THEN pg_get_viewdef(c.oid, true) END
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = ANY($1::text[]) AND c.relkind IN ('r', 'p', 'v', 'm', 'f')";

const Q_COLUMNS: &str = "
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
const Q_COLUMN_TYPES: &str = "
SELECT x.atttypid, x.atttypmod, format_type(x.atttypid, x.atttypmod)
FROM (SELECT DISTINCT a.atttypid, a.atttypmod
      FROM pg_attribute a
      JOIN pg_class c ON c.oid = a.attrelid
      JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = ANY($1::text[]) AND c.relkind IN ('r', 'v', 'm') AND a.attnum > 0 AND NOT a.attisdropped) x";

const Q_CONSTRAINTS: &str = "
SELECT con.oid, con.conrelid, con.contypid, con.conname::text, con.contype::text, pg_get_constraintdef(con.oid),
       con.convalidated, con.conindid,
       CASE WHEN con.contype = 'f' THEN (SELECT fn.nspname::text FROM pg_class fc JOIN pg_namespace fn ON fn.oid = fc.relnamespace WHERE fc.oid = con.confrelid) END,
       CASE WHEN con.contype = 'f' THEN (SELECT fc.relname::text FROM pg_class fc WHERE fc.oid = con.confrelid) END
FROM pg_constraint con JOIN pg_namespace n ON n.oid = con.connamespace
WHERE n.nspname = ANY($1::text[]) AND con.conparentid = 0 AND con.contype IN ('p', 'u', 'c', 'f', 'x')";

/// Index structure; the CREATE INDEX text is assembled on the client. `pg_get_indexdef` costs
/// about 40-70 µs per index (measured: 290 ms for 4,000 indexes in a fresh session), more than
/// every other catalog query together.
const Q_INDEXES: &str = "
SELECT i.indexrelid, i.indrelid, ic.relname::text, am.amname::text, i.indisunique, i.indisvalid,
       i.indnkeyatts::int4, i.indkey::int2[], i.indclass::oid[], i.indcollation::oid[], i.indoption::int2[],
       pg_get_expr(i.indexprs, i.indrelid), pg_get_expr(i.indpred, i.indrelid), ic.reloptions::text[], {NULLS}
FROM pg_index i
JOIN pg_class ic ON ic.oid = i.indexrelid
JOIN pg_namespace n ON n.oid = ic.relnamespace
JOIN pg_am am ON am.oid = ic.relam
WHERE n.nspname = ANY($1::text[]) AND ic.relkind = 'i'";

const Q_OPCLASSES: &str = "
SELECT oc.oid, n.nspname::text, oc.opcname::text, oc.opcdefault
FROM pg_opclass oc JOIN pg_namespace n ON n.oid = oc.opcnamespace";

const Q_COLLATIONS: &str = "
SELECT co.oid, n.nspname::text, co.collname::text
FROM pg_collation co JOIN pg_namespace n ON n.oid = co.collnamespace";

const Q_SEQUENCES: &str = "
SELECT c.oid, n.nspname::text, c.relname::text, format_type(s.seqtypid, NULL), s.seqstart, s.seqincrement, s.seqmin,
       s.seqmax, s.seqcache, s.seqcycle, dep.deptype::text, dep.refobjid, dep.refobjsubid::int4,
       CASE WHEN dep.deptype = 'a' THEN (SELECT tn.nspname::text FROM pg_class tc JOIN pg_namespace tn ON tn.oid = tc.relnamespace WHERE tc.oid = dep.refobjid) END,
       CASE WHEN dep.deptype = 'a' THEN (SELECT tc.relname::text FROM pg_class tc WHERE tc.oid = dep.refobjid) END,
       CASE WHEN dep.deptype = 'a' THEN (SELECT ta.attname::text FROM pg_attribute ta WHERE ta.attrelid = dep.refobjid AND ta.attnum = dep.refobjsubid) END
FROM pg_sequence s
JOIN pg_class c ON c.oid = s.seqrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_depend dep ON dep.classid = 'pg_class'::regclass AND dep.objid = s.seqrelid
     AND dep.refclassid = 'pg_class'::regclass AND dep.deptype IN ('a', 'i')
WHERE n.nspname = ANY($1::text[])";

const Q_FUNCTIONS: &str = "
SELECT p.oid, n.nspname::text, p.proname::text, p.prokind::text, pg_get_function_identity_arguments(p.oid),
       pg_get_function_arguments(p.oid), pg_get_function_result(p.oid),
       CASE WHEN p.prokind IN ('f', 'p', 'w') THEN pg_get_functiondef(p.oid) END
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname = ANY($1::text[])";

const Q_TRIGGERS: &str = "
SELECT t.oid, t.tgrelid, t.tgname::text, pg_get_triggerdef(t.oid), t.tgenabled::text
FROM pg_trigger t
JOIN pg_class c ON c.oid = t.tgrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = ANY($1::text[]) AND NOT t.tgisinternal AND t.tgparentid = 0";

const Q_POLICIES: &str = "
SELECT pol.oid, pol.polrelid, pol.polname::text, pol.polpermissive, pol.polcmd::text,
       ARRAY(SELECT CASE WHEN r = 0 THEN 'public' ELSE pg_get_userbyid(r)::text END FROM unnest(pol.polroles) r ORDER BY 1),
       pg_get_expr(pol.polqual, pol.polrelid), pg_get_expr(pol.polwithcheck, pol.polrelid)
FROM pg_policy pol
JOIN pg_class c ON c.oid = pol.polrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = ANY($1::text[])";

/// Privileges granted to roles other than the owner (PUBLIC is grantee 0). Functions without an
/// ACL have PostgreSQL's default (EXECUTE to PUBLIC); relations and schemas without one have
/// only the owner's.
const Q_GRANTS: &str = "
SELECT 'r', c.oid, CASE WHEN a.grantee = 0 THEN 'public' ELSE pg_get_userbyid(a.grantee)::text END, a.privilege_type, a.is_grantable
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace, LATERAL aclexplode(c.relacl) a
WHERE n.nspname = ANY($1::text[]) AND c.relkind IN ('r', 'v', 'm', 'S') AND c.relacl IS NOT NULL AND a.grantee <> c.relowner
UNION ALL
SELECT 'f', p.oid, CASE WHEN a.grantee = 0 THEN 'public' ELSE pg_get_userbyid(a.grantee)::text END, a.privilege_type, a.is_grantable
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace,
     LATERAL aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
WHERE n.nspname = ANY($1::text[]) AND a.grantee <> p.proowner
UNION ALL
SELECT 'n', n.oid, CASE WHEN a.grantee = 0 THEN 'public' ELSE pg_get_userbyid(a.grantee)::text END, a.privilege_type, a.is_grantable
FROM pg_namespace n, LATERAL aclexplode(n.nspacl) a
WHERE n.nspname = ANY($1::text[]) AND n.nspacl IS NOT NULL AND a.grantee <> n.nspowner";

const Q_TYPES: &str = "
SELECT t.oid, n.nspname::text, t.typname::text, t.typtype::text,
       CASE WHEN t.typtype = 'd' THEN format_type(t.typbasetype, t.typtypmod) END, t.typnotnull,
       CASE WHEN t.typtype = 'd' THEN pg_get_expr(t.typdefaultbin, 0) END,
       CASE WHEN t.typtype = 'd' AND t.typcollation <> bt.typcollation THEN t.typcollation END,
       CASE WHEN t.typtype = 'e' THEN ARRAY(SELECT e.enumlabel::text FROM pg_enum e WHERE e.enumtypid = t.oid ORDER BY e.enumsortorder) END
FROM pg_type t
JOIN pg_namespace n ON n.oid = t.typnamespace
LEFT JOIN pg_type bt ON bt.oid = t.typbasetype
LEFT JOIN pg_class c ON c.oid = t.typrelid
WHERE n.nspname = ANY($1::text[])
  AND (t.typtype IN ('e', 'd', 'r', 'm') OR (t.typtype = 'c' AND c.relkind = 'c'))";

/// Attributes of composite types, in order.
const Q_COMPOSITE_ATTRIBUTES: &str = "
SELECT t.oid, a.attname::text, format_type(a.atttypid, a.atttypmod),
       CASE WHEN a.attcollation <> at.typcollation THEN a.attcollation END
FROM pg_type t
JOIN pg_namespace n ON n.oid = t.typnamespace
JOIN pg_class c ON c.oid = t.typrelid AND c.relkind = 'c'
JOIN pg_attribute a ON a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped
JOIN pg_type at ON at.oid = a.atttypid
WHERE n.nspname = ANY($1::text[]) AND t.typtype = 'c'
ORDER BY t.oid, a.attnum";

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
  AND d.deptype = 'n' AND rw.ev_class <> d.refobjid AND n.nspname = ANY($1::text[]) AND v.relkind IN ('v', 'm')";

const BEGIN: &str = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;
SELECT pg_catalog.set_config('search_path', '', true);
SET LOCAL TimeZone = 'UTC'; SET LOCAL DateStyle = 'ISO, YMD'; SET LOCAL IntervalStyle = 'postgres';
SET LOCAL extra_float_digits = 3";

/// Resolve the managed schema list: the scope's names, or every non-system schema except bfm's own.
async fn resolve_schemas(conn: &Conn, scope: &Scope) -> Result<Vec<String>, SchemaError> {
    if !scope.is_whole_database() {
        return Ok(scope.schemas.clone());
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

/// Comment lookup by (catalog, object OID, sub-id).
struct Comments(HashMap<(u8, u32, i32), String>);

const C_CLASS: u8 = 1;
const C_NAMESPACE: u8 = 2;
const C_CONSTRAINT: u8 = 3;
const C_PROC: u8 = 4;
const C_TRIGGER: u8 = 5;
const C_POLICY: u8 = 6;
const C_TYPE: u8 = 7;

fn catalog_tag(name: &str) -> u8 {
    match name {
        "pg_class" => C_CLASS,
        "pg_namespace" => C_NAMESPACE,
        "pg_constraint" => C_CONSTRAINT,
        "pg_proc" => C_PROC,
        "pg_trigger" => C_TRIGGER,
        "pg_policy" => C_POLICY,
        "pg_type" => C_TYPE,
        _ => 0,
    }
}

impl Comments {
    fn get(&self, catalog: u8, oid: u32, sub: i32) -> Option<String> {
        self.0.get(&(catalog, oid, sub)).cloned()
    }
}

/// Structure of one index, before its definition is assembled.
struct RawIndex {
    oid: u32,
    table: u32,
    name: String,
    am: String,
    unique: bool,
    valid: bool,
    nkey: usize,
    keys: Vec<i16>,
    classes: Vec<u32>,
    collations: Vec<u32>,
    options: Vec<i16>,
    exprs: Option<String>,
    pred: Option<String>,
    reloptions: Vec<String>,
    nulls_not_distinct: bool,
}

/// Split a deparsed expression list at top-level commas.
fn split_top_level(s: &str) -> Vec<String> {
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

/// Introspect the scope of a connection.
pub(crate) async fn introspect(conn: &Conn, scope: &Scope) -> Result<Introspection, SchemaError> {
    let ctx = |what: &str| format!("introspecting {} of {}", what, conn.label);
    conn.client.batch_execute(BEGIN).await.map_err(|e| SchemaError::db(ctx("(begin)"), &e))?;
    let result = introspect_in_tx(conn, scope).await;
    // Read-only: the end of the transaction cannot lose anything.
    let _ = conn.client.batch_execute("COMMIT").await;
    result
}

async fn introspect_in_tx(conn: &Conn, scope: &Scope) -> Result<Introspection, SchemaError> {
    let t_start = std::time::Instant::now();
    let schemas = resolve_schemas(conn, scope).await?;
    let c = &conn.client;
    let ctx = |what: &str| format!("introspecting {} of {}", what, conn.label);
    let p: &[&(dyn tokio_postgres::types::ToSql + Sync)] = &[&schemas];
    let none: &[&(dyn tokio_postgres::types::ToSql + Sync)] = &[];
    let p_ext: &[&(dyn tokio_postgres::types::ToSql + Sync)] = &[&schemas, &scope.extensions];
    let q_indexes = Q_INDEXES.replace("{NULLS}", if conn.server_version_num >= 150000 { "i.indnullsnotdistinct" } else { "false" });
    // The queries are pipelined on one connection, inside one snapshot.
    let (
        (q_schemas, q_comments, q_members, q_ext, q_rel, q_cols, q_cons, q_coltypes),
        (q_idx, q_opc, q_coll, q_seq, q_fn, q_trg, q_pol, q_types, q_vdeps, q_grants, q_comp),
    ) = futures::try_join!(
        async {
            futures::try_join!(
                async { c.query(Q_SCHEMAS, p).await.map_err(|e| SchemaError::db(ctx("schemas"), &e)) },
                async { c.query(Q_COMMENTS, none).await.map_err(|e| SchemaError::db(ctx("comments"), &e)) },
                async { c.query(Q_EXTENSION_MEMBERS, none).await.map_err(|e| SchemaError::db(ctx("extension members"), &e)) },
                async { c.query(Q_EXTENSIONS, p_ext).await.map_err(|e| SchemaError::db(ctx("extensions"), &e)) },
                async { c.query(Q_RELATIONS, p).await.map_err(|e| SchemaError::db(ctx("relations"), &e)) },
                async { c.query(Q_COLUMNS, p).await.map_err(|e| SchemaError::db(ctx("columns"), &e)) },
                async { c.query(Q_CONSTRAINTS, p).await.map_err(|e| SchemaError::db(ctx("constraints"), &e)) },
                async { c.query(Q_COLUMN_TYPES, p).await.map_err(|e| SchemaError::db(ctx("column types"), &e)) },
            )
        },
        async {
            futures::try_join!(
                async { c.query(q_indexes.as_str(), p).await.map_err(|e| SchemaError::db(ctx("indexes"), &e)) },
                async { c.query(Q_OPCLASSES, none).await.map_err(|e| SchemaError::db(ctx("operator classes"), &e)) },
                async { c.query(Q_COLLATIONS, none).await.map_err(|e| SchemaError::db(ctx("collations"), &e)) },
                async { c.query(Q_SEQUENCES, p).await.map_err(|e| SchemaError::db(ctx("sequences"), &e)) },
                async { c.query(Q_FUNCTIONS, p).await.map_err(|e| SchemaError::db(ctx("functions"), &e)) },
                async { c.query(Q_TRIGGERS, p).await.map_err(|e| SchemaError::db(ctx("triggers"), &e)) },
                async { c.query(Q_POLICIES, p).await.map_err(|e| SchemaError::db(ctx("policies"), &e)) },
                async { c.query(Q_TYPES, p).await.map_err(|e| SchemaError::db(ctx("types"), &e)) },
                async { c.query(Q_VIEW_DEPS, p).await.map_err(|e| SchemaError::db(ctx("view dependencies"), &e)) },
                async { c.query(Q_GRANTS, p).await.map_err(|e| SchemaError::db(ctx("privileges"), &e)) },
                async { c.query(Q_COMPOSITE_ATTRIBUTES, p).await.map_err(|e| SchemaError::db(ctx("composite types"), &e)) },
            )
        },
    )?;

    let t_queries = t_start.elapsed();
    let mut m = Model::empty(conn.pg_major());
    let mut unsupported = Vec::new();

    let mut comments = Comments(HashMap::with_capacity(q_comments.len()));
    for r in &q_comments {
        let cat: String = get(r, 0, "comments")?;
        let tag = catalog_tag(&cat);
        if tag != 0 {
            comments.0.insert((tag, get(r, 1, "comments")?, get(r, 2, "comments")?), get(r, 3, "comments")?);
        }
    }
    let mut members: HashSet<(u8, u32)> = HashSet::new();
    for r in &q_members {
        let cat: String = get(r, 0, "extension members")?;
        members.insert((catalog_tag(&cat), get(r, 1, "extension members")?));
    }
    let mut collations: HashMap<u32, String> = HashMap::with_capacity(q_coll.len());
    for r in &q_coll {
        let schema: String = get(r, 1, "collations")?;
        let name: String = get(r, 2, "collations")?;
        collations.insert(get(r, 0, "collations")?, format!("{}.{}", quote_ident(&schema), quote_ident(&name)));
    }
    let mut opclasses: HashMap<u32, (String, bool)> = HashMap::with_capacity(q_opc.len());
    for r in &q_opc {
        let schema: String = get(r, 1, "operator classes")?;
        let name: String = get(r, 2, "operator classes")?;
        let shown = if schema == "pg_catalog" { quote_ident(&name) } else { qualified(&schema, &name) };
        opclasses.insert(get(r, 0, "operator classes")?, (shown, get(r, 3, "operator classes")?));
    }

    let mut grant_targets: HashMap<(char, u32), (ObjectKind, String, String)> = HashMap::new();
    for r in &q_schemas {
        let oid: u32 = get(r, 0, "schemas")?;
        let name: String = get(r, 1, "schemas")?;
        grant_targets.insert(('n', oid), (ObjectKind::Schema, display_part(&name), format!("SCHEMA {}", quote_ident(&name))));
        m.schemas.insert(display_part(&name), Schema { name, comment: comments.get(C_NAMESPACE, oid, 0) });
    }
    for r in &q_ext {
        let name: String = get(r, 0, "extensions")?;
        m.extensions.insert(display_part(&name), Extension { name, schema: get(r, 1, "extensions")?, version: get(r, 2, "extensions")? });
    }

    // Relations by OID (the OIDs are plumbing only).
    let mut rels: HashMap<u32, Rel> = HashMap::with_capacity(q_rel.len());
    for r in &q_rel {
        let oid: u32 = get(r, 0, "relations")?;
        if members.contains(&(C_CLASS, oid)) {
            continue;
        }
        let schema: String = get(r, 1, "relations")?;
        let name: String = get(r, 2, "relations")?;
        let kind: String = get(r, 3, "relations")?;
        let kind = kind.chars().next().unwrap_or('?');
        let persistence: String = get(r, 4, "relations")?;
        let ispartition: bool = get(r, 8, "relations")?;
        let key = display_name(&schema, &name);
        let comment = comments.get(C_CLASS, oid, 0);
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
            'v' | 'm' => {
                let definition: Option<String> = get(r, 9, "relations")?;
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
                        materialized: kind == 'm',
                    },
                );
                rels.insert(oid, Rel { schema, name, kind });
            }
            'p' => unsupported.push(format!("partitioned table {key}")),
            'r' => unsupported.push(format!("partition {key}")),
            'f' => unsupported.push(format!("foreign table {key}")),
            _ => {}
        }
    }

    // Identity sequences belong to their columns; the others are standalone sequences.
    let mut identity: HashMap<(u32, i32), SeqOptions> = HashMap::new();
    for r in &q_seq {
        let oid: u32 = get(r, 0, "sequences")?;
        if members.contains(&(C_CLASS, oid)) {
            continue;
        }
        let schema: String = get(r, 1, "sequences")?;
        let name: String = get(r, 2, "sequences")?;
        let options = SeqOptions {
            data_type: get(r, 3, "sequences")?,
            start: get(r, 4, "sequences")?,
            increment: get(r, 5, "sequences")?,
            min: get(r, 6, "sequences")?,
            max: get(r, 7, "sequences")?,
            cache: get(r, 8, "sequences")?,
            cycle: get(r, 9, "sequences")?,
        };
        let deptype: Option<String> = get(r, 10, "sequences")?;
        if deptype.as_deref() == Some("i") {
            let table: u32 = get(r, 11, "sequences")?;
            let attnum: i32 = get(r, 12, "sequences")?;
            identity.insert((table, attnum), options);
            continue;
        }
        let owned_by = match (
            deptype.as_deref(),
            get::<Option<String>>(r, 13, "sequences")?,
            get::<Option<String>>(r, 14, "sequences")?,
            get::<Option<String>>(r, 15, "sequences")?,
        ) {
            (Some("a"), Some(schema), Some(table), Some(column)) => Some(OwnedBy { schema, table, column }),
            _ => None,
        };
        grant_targets
            .insert(('r', oid), (ObjectKind::Sequence, display_name(&schema, &name), format!("SEQUENCE {}", qualified(&schema, &name))));
        m.sequences
            .insert(display_name(&schema, &name), Sequence { schema, name, options, owned_by, comment: comments.get(C_CLASS, oid, 0) });
    }

    let mut type_names: HashMap<(u32, i32), String> = HashMap::with_capacity(q_coltypes.len());
    for r in &q_coltypes {
        type_names.insert((get(r, 0, "column types")?, get(r, 1, "column types")?), get(r, 2, "column types")?);
    }

    // Columns, in attnum order per relation.
    let mut cols: HashMap<u32, Vec<Column>> = HashMap::new();
    let mut view_cols: HashMap<u32, Vec<ViewColumn>> = HashMap::new();
    let mut attnames: HashMap<(u32, i16), (String, u32)> = HashMap::with_capacity(q_cols.len());
    for r in &q_cols {
        let rel: u32 = get(r, 0, "columns")?;
        let Some(info) = rels.get(&rel) else { continue };
        let attnum: i32 = get(r, 1, "columns")?;
        let name: String = get(r, 2, "columns")?;
        let type_key: (u32, i32) = (get(r, 3, "columns")?, get(r, 10, "columns")?);
        let type_name: String = type_names.get(&type_key).cloned().unwrap_or_else(|| format!("\"?type {}\"", type_key.0));
        let comment = comments.get(C_CLASS, rel, attnum);
        if info.kind == 'm' {
            attnames.insert((rel, attnum as i16), (name.clone(), get(r, 9, "columns")?));
        }
        if info.kind == 'v' || info.kind == 'm' {
            view_cols.entry(rel).or_default().push(ViewColumn { name, type_name, comment });
            continue;
        }
        let attcollation: u32 = get(r, 9, "columns")?;
        attnames.insert((rel, attnum as i16), (name.clone(), attcollation));
        let ident: String = get(r, 5, "columns")?;
        let gen_kind: String = get(r, 6, "columns")?;
        let expr: Option<String> = get(r, 7, "columns")?;
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
        let collation = get::<Option<u32>>(r, 8, "columns")?.and_then(|o| collations.get(&o).cloned());
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
        if let Some(info) = rels.get(&oid)
            && let Some(t) = m.tables.get_mut(&display_name(&info.schema, &info.name))
        {
            t.columns = list;
        }
    }
    for (oid, list) in view_cols {
        if let Some(info) = rels.get(&oid)
            && let Some(v) = m.views.get_mut(&display_name(&info.schema, &info.name))
        {
            v.columns = list;
        }
    }

    // Types: enums and domains (domain constraints come from the constraints query).
    let mut domains_by_oid: HashMap<u32, String> = HashMap::new();
    let mut composites_by_oid: HashMap<u32, String> = HashMap::new();
    for r in &q_types {
        let oid: u32 = get(r, 0, "types")?;
        if members.contains(&(C_TYPE, oid)) {
            continue;
        }
        let schema: String = get(r, 1, "types")?;
        let name: String = get(r, 2, "types")?;
        let typtype: String = get(r, 3, "types")?;
        let key = display_name(&schema, &name);
        let comment = comments.get(C_TYPE, oid, 0);
        match typtype.as_str() {
            "e" => {
                let labels: Option<Vec<String>> = get(r, 8, "types")?;
                m.enums.insert(key, EnumType { schema, name, labels: labels.unwrap_or_default(), comment });
            }
            "d" => {
                domains_by_oid.insert(oid, key.clone());
                let collation = get::<Option<u32>>(r, 7, "types")?.and_then(|o| collations.get(&o).cloned());
                m.domains.insert(
                    key,
                    Domain {
                        schema,
                        name,
                        base_type: get::<Option<String>>(r, 4, "types")?.unwrap_or_default(),
                        not_null: get(r, 5, "types")?,
                        default: get(r, 6, "types")?,
                        collation,
                        constraints: BTreeMap::new(),
                        comment,
                    },
                );
            }
            "r" | "m" => unsupported.push(format!("range type {key}")),
            "c" => {
                composites_by_oid.insert(oid, key.clone());
                m.composites.insert(key, CompositeType { schema, name, attributes: Vec::new(), comment });
            }
            _ => {}
        }
    }

    for r in &q_comp {
        let oid: u32 = get(r, 0, "composite types")?;
        let Some(key) = composites_by_oid.get(&oid) else { continue };
        let collation = get::<Option<u32>>(r, 3, "composite types")?.and_then(|o| collations.get(&o).cloned());
        let attr = CompositeAttribute { name: get(r, 1, "composite types")?, type_name: get(r, 2, "composite types")?, collation };
        if let Some(ct) = m.composites.get_mut(key) {
            ct.attributes.push(attr);
        }
    }

    // Indexes: assemble CREATE INDEX from the structure.
    let mut index_defs: HashMap<u32, (String, RawIndex)> = HashMap::with_capacity(q_idx.len());
    for r in &q_idx {
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
        let Some(info) = rels.get(&raw.table) else {
            continue;
        };
        if info.kind != 'r' && info.kind != 'm' {
            continue;
        }
        let def = index_definition(&raw, info, &attnames, &opclasses, &collations);
        index_defs.insert(raw.oid, (def, raw));
    }

    for r in &q_cons {
        let oid: u32 = get(r, 0, "constraints")?;
        let rel: u32 = get(r, 1, "constraints")?;
        let typ: u32 = get(r, 2, "constraints")?;
        let name: String = get(r, 3, "constraints")?;
        let contype: String = get(r, 4, "constraints")?;
        let mut definition: String = get(r, 5, "constraints")?;
        let validated: bool = get(r, 6, "constraints")?;
        let conindid: u32 = get(r, 7, "constraints")?;
        if let Some(stripped) = definition.strip_suffix(" NOT VALID") {
            definition = stripped.to_string();
        }
        if rel == 0 {
            if let Some(dk) = domains_by_oid.get(&typ)
                && let Some(d) = m.domains.get_mut(dk)
            {
                d.constraints.insert(name, DomainConstraint { definition, validated });
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
        let references = match (get::<Option<String>>(r, 8, "constraints")?, get::<Option<String>>(r, 9, "constraints")?) {
            (Some(s), Some(t)) if kind == ConstraintKind::ForeignKey => Some(display_name(&s, &t)),
            _ => None,
        };
        let index_definition = if kind == ConstraintKind::ForeignKey { None } else { index_defs.remove(&conindid).map(|(def, _)| def) };
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
                comment: comments.get(C_CONSTRAINT, oid, 0),
            },
        );
    }
    for (_, (definition, raw)) in index_defs {
        let Some(info) = rels.get(&raw.table) else {
            continue;
        };
        m.indexes.insert(
            display_name(&info.schema, &raw.name),
            Index {
                schema: info.schema.clone(),
                table: info.name.clone(),
                name: raw.name,
                definition,
                unique: raw.unique,
                valid: raw.valid,
                comment: comments.get(C_CLASS, raw.oid, 0),
            },
        );
    }

    for r in &q_fn {
        let oid: u32 = get(r, 0, "functions")?;
        if members.contains(&(C_PROC, oid)) {
            continue;
        }
        let schema: String = get(r, 1, "functions")?;
        let name: String = get(r, 2, "functions")?;
        let kind: String = get(r, 3, "functions")?;
        let identity_args: String = get(r, 4, "functions")?;
        let key = function_key(&schema, &name, &identity_args);
        if kind == "a" {
            unsupported.push(format!("aggregate {key}"));
            continue;
        }
        let definition: Option<String> = get(r, 7, "functions")?;
        let (fkind, word) = if kind == "p" { (ObjectKind::Procedure, "PROCEDURE") } else { (ObjectKind::Function, "FUNCTION") };
        grant_targets.insert(('f', oid), (fkind, key.clone(), format!("{word} {}({identity_args})", qualified(&schema, &name))));
        m.functions.insert(
            key,
            Function {
                schema,
                name,
                procedure: kind == "p",
                identity_args,
                arguments: get(r, 5, "functions")?,
                result: get(r, 6, "functions")?,
                definition: definition.unwrap_or_default(),
                comment: comments.get(C_PROC, oid, 0),
            },
        );
    }

    for r in &q_trg {
        let oid: u32 = get(r, 0, "triggers")?;
        let rel: u32 = get(r, 1, "triggers")?;
        let Some(info) = rels.get(&rel) else { continue };
        let name: String = get(r, 2, "triggers")?;
        m.triggers.insert(
            child_key(&info.schema, &info.name, &name),
            Trigger {
                schema: info.schema.clone(),
                table: info.name.clone(),
                name,
                definition: get(r, 3, "triggers")?,
                enabled: get(r, 4, "triggers")?,
                comment: comments.get(C_TRIGGER, oid, 0),
            },
        );
    }

    for r in &q_pol {
        let oid: u32 = get(r, 0, "policies")?;
        let rel: u32 = get(r, 1, "policies")?;
        let Some(info) = rels.get(&rel) else { continue };
        let name: String = get(r, 2, "policies")?;
        let cmd: String = get(r, 4, "policies")?;
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
                permissive: get(r, 3, "policies")?,
                command,
                roles: get(r, 5, "policies")?,
                using: get(r, 6, "policies")?,
                check: get(r, 7, "policies")?,
                comment: comments.get(C_POLICY, oid, 0),
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
            e.1.insert(format!("{rel}.{}", display_part(&col)));
        }
        e.0.insert(rel);
    }
    for (oid, (rels_used, cols_used)) in deps {
        if let Some(info) = rels.get(&oid)
            && let Some(v) = m.views.get_mut(&display_name(&info.schema, &info.name))
        {
            v.depends_on = rels_used.into_iter().collect();
            v.depends_on_columns = cols_used.into_iter().collect();
        }
    }

    for (oid, rel) in &rels {
        let kind = match rel.kind {
            'v' => ObjectKind::View,
            'm' => ObjectKind::MaterializedView,
            _ => ObjectKind::Table,
        };
        grant_targets
            .insert(('r', *oid), (kind, display_name(&rel.schema, &rel.name), format!("TABLE {}", qualified(&rel.schema, &rel.name))));
    }
    for r in &q_grants {
        let cat: String = get(r, 0, "privileges")?;
        let oid: u32 = get(r, 1, "privileges")?;
        let Some((kind, key, target)) = grant_targets.get(&(cat.chars().next().unwrap_or('?'), oid)) else { continue };
        let grantee: String = get(r, 2, "privileges")?;
        let privilege: String = get(r, 3, "privileges")?;
        let grantable: bool = get(r, 4, "privileges")?;
        m.grants
            .entry(key.clone())
            .or_insert_with(|| ObjectGrants { kind: *kind, target: target.clone(), privileges: BTreeSet::new() })
            .privileges
            .insert(format!("{grantee}:{privilege}{}", if grantable { "*" } else { "" }));
    }

    unsupported.sort();
    tracing::debug!(target: "bfm_schema::introspect", queries = ?t_queries, assembly = ?(t_start.elapsed() - t_queries), "introspected {}", conn.label);
    Ok(Introspection { model: m, unsupported })
}

/// `CREATE [UNIQUE] INDEX name ON table USING am (keys) [INCLUDE (…)] [NULLS NOT DISTINCT]
/// [WITH (…)] [WHERE (…)]`. Operator classes are shown when they are not a default one,
/// collations when they differ from the column's; expressions are always parenthesised.
fn index_definition(
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
const DEFAULT_COLLATION_OID: u32 = 100;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_expression_lists() {
        assert_eq!(split_top_level("lower((name)::text), (a + b)"), vec!["lower((name)::text)", "(a + b)"]);
        assert_eq!(split_top_level("f(a, 'x,y'), \"q,\"::text"), vec!["f(a, 'x,y')", "\"q,\"::text"]);
        assert_eq!(split_top_level("arr[1, 2]"), vec!["arr[1, 2]"]);
    }
}
