//! Bulk introspection: one query per object kind, all in one `REPEATABLE READ READ ONLY`
//! transaction, expressions rendered with an empty `search_path` (so every user object is
//! schema-qualified, exactly as in a scratch database that keeps the real schema names).
//! No per-object queries.
//!
//! One module per catalog query family; each turns its rows into model objects through the
//! shared [`Assembly`]. The queries run pipelined first, the assembly follows in dependency
//! order (relations before their columns, indexes before the constraints that own some).

mod constraints;
mod functions;
mod grants;
mod indexes;
mod lookups;
mod namespaces;
mod policies;
mod relations;
mod sequences;
mod triggers;
mod types;

use std::collections::{HashMap, HashSet};

use tokio_postgres::Row;
use tokio_postgres::types::FromSql;

use crate::db::Conn;
use crate::error::SchemaError;
use crate::ident::{qualified, quote_ident};
use crate::model::*;
use crate::scope::Scope;
use crate::types::ObjectKind;

use lookups::*;
use namespaces::resolve_schemas;
use relations::Rel;

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

const BEGIN: &str = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;
SELECT pg_catalog.set_config('search_path', '', true);
SET LOCAL TimeZone = 'UTC'; SET LOCAL DateStyle = 'ISO, YMD'; SET LOCAL IntervalStyle = 'postgres';
SET LOCAL extra_float_digits = 3";

/// What the per-family assembly functions share: the model being built, the lookups, and the
/// OID maps that later families resolve through.
struct Assembly {
    m: Model,
    unsupported: Vec<String>,
    comments: Comments,
    /// (catalog tag, OID) of extension members, excluded everywhere.
    members: HashSet<(u8, u32)>,
    collations: HashMap<u32, String>,
    /// Operator class name as shown, and whether it is a default one.
    opclasses: HashMap<u32, (String, bool)>,
    /// ('r' relation / 'f' function / 'n' schema, OID) → (kind, model key, GRANT target).
    grant_targets: HashMap<(char, u32), (ObjectKind, String, String)>,
    rels: HashMap<u32, Rel>,
    /// Identity sequence options by (table OID, attnum).
    identity: HashMap<(u32, i32), SeqOptions>,
    /// Column name and collation by (relation OID, attnum), for index keys.
    attnames: HashMap<(u32, i16), (String, u32)>,
    domains_by_oid: HashMap<u32, String>,
    composites_by_oid: HashMap<u32, String>,
}

impl Assembly {
    fn new(pg_major: u32, q_comments: &[Row], q_members: &[Row], q_coll: &[Row], q_opc: &[Row]) -> Result<Assembly, SchemaError> {
        let mut comments = Comments(HashMap::with_capacity(q_comments.len()));
        for r in q_comments {
            let cat: String = get(r, 0, "comments")?;
            let tag = catalog_tag(&cat);
            if tag != 0 {
                comments.0.insert((tag, get(r, 1, "comments")?, get(r, 2, "comments")?), get(r, 3, "comments")?);
            }
        }
        let mut members: HashSet<(u8, u32)> = HashSet::new();
        for r in q_members {
            let cat: String = get(r, 0, "extension members")?;
            members.insert((catalog_tag(&cat), get(r, 1, "extension members")?));
        }
        let mut collations: HashMap<u32, String> = HashMap::with_capacity(q_coll.len());
        for r in q_coll {
            let schema: String = get(r, 1, "collations")?;
            let name: String = get(r, 2, "collations")?;
            collations.insert(get(r, 0, "collations")?, format!("{}.{}", quote_ident(&schema), quote_ident(&name)));
        }
        let mut opclasses: HashMap<u32, (String, bool)> = HashMap::with_capacity(q_opc.len());
        for r in q_opc {
            let schema: String = get(r, 1, "operator classes")?;
            let name: String = get(r, 2, "operator classes")?;
            let shown = if schema == "pg_catalog" { quote_ident(&name) } else { qualified(&schema, &name) };
            opclasses.insert(get(r, 0, "operator classes")?, (shown, get(r, 3, "operator classes")?));
        }
        Ok(Assembly {
            m: Model::empty(pg_major),
            unsupported: Vec::new(),
            comments,
            members,
            collations,
            opclasses,
            grant_targets: HashMap::new(),
            rels: HashMap::new(),
            identity: HashMap::new(),
            attnames: HashMap::new(),
            domains_by_oid: HashMap::new(),
            composites_by_oid: HashMap::new(),
        })
    }
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
    let q_indexes =
        indexes::Q_INDEXES.replace("{NULLS}", if conn.server_version_num >= 150000 { "i.indnullsnotdistinct" } else { "false" });
    // The queries are pipelined on one connection, inside one snapshot.
    let (
        (q_schemas, q_comments, q_members, q_ext, q_rel, q_cols, q_cons, q_coltypes),
        (q_idx, q_opc, q_coll, q_seq, q_fn, q_trg, q_pol, q_types, q_vdeps, q_grants, q_comp),
    ) = futures::try_join!(
        async {
            futures::try_join!(
                async { c.query(namespaces::Q_SCHEMAS, p).await.map_err(|e| SchemaError::db(ctx("schemas"), &e)) },
                async { c.query(Q_COMMENTS, none).await.map_err(|e| SchemaError::db(ctx("comments"), &e)) },
                async { c.query(Q_EXTENSION_MEMBERS, none).await.map_err(|e| SchemaError::db(ctx("extension members"), &e)) },
                async { c.query(namespaces::Q_EXTENSIONS, p_ext).await.map_err(|e| SchemaError::db(ctx("extensions"), &e)) },
                async { c.query(relations::Q_RELATIONS, p).await.map_err(|e| SchemaError::db(ctx("relations"), &e)) },
                async { c.query(relations::Q_COLUMNS, p).await.map_err(|e| SchemaError::db(ctx("columns"), &e)) },
                async { c.query(constraints::Q_CONSTRAINTS, p).await.map_err(|e| SchemaError::db(ctx("constraints"), &e)) },
                async { c.query(relations::Q_COLUMN_TYPES, p).await.map_err(|e| SchemaError::db(ctx("column types"), &e)) },
            )
        },
        async {
            futures::try_join!(
                async { c.query(q_indexes.as_str(), p).await.map_err(|e| SchemaError::db(ctx("indexes"), &e)) },
                async { c.query(Q_OPCLASSES, none).await.map_err(|e| SchemaError::db(ctx("operator classes"), &e)) },
                async { c.query(Q_COLLATIONS, none).await.map_err(|e| SchemaError::db(ctx("collations"), &e)) },
                async { c.query(sequences::Q_SEQUENCES, p).await.map_err(|e| SchemaError::db(ctx("sequences"), &e)) },
                async { c.query(functions::Q_FUNCTIONS, p).await.map_err(|e| SchemaError::db(ctx("functions"), &e)) },
                async { c.query(triggers::Q_TRIGGERS, p).await.map_err(|e| SchemaError::db(ctx("triggers"), &e)) },
                async { c.query(policies::Q_POLICIES, p).await.map_err(|e| SchemaError::db(ctx("policies"), &e)) },
                async { c.query(types::Q_TYPES, p).await.map_err(|e| SchemaError::db(ctx("types"), &e)) },
                async { c.query(relations::Q_VIEW_DEPS, p).await.map_err(|e| SchemaError::db(ctx("view dependencies"), &e)) },
                async { c.query(grants::Q_GRANTS, p).await.map_err(|e| SchemaError::db(ctx("privileges"), &e)) },
                async { c.query(types::Q_COMPOSITE_ATTRIBUTES, p).await.map_err(|e| SchemaError::db(ctx("composite types"), &e)) },
            )
        },
    )?;

    let t_queries = t_start.elapsed();
    let mut a = Assembly::new(conn.pg_major(), &q_comments, &q_members, &q_coll, &q_opc)?;
    namespaces::schemas(&mut a, &q_schemas)?;
    namespaces::extensions(&mut a, &q_ext)?;
    relations::relations(&mut a, &q_rel)?;
    sequences::sequences(&mut a, &q_seq)?;
    relations::columns(&mut a, &q_coltypes, &q_cols)?;
    types::types(&mut a, &q_types)?;
    types::composite_attributes(&mut a, &q_comp)?;
    let mut index_defs = indexes::indexes(&mut a, &q_idx)?;
    constraints::constraints(&mut a, &q_cons, &mut index_defs)?;
    indexes::finish(&mut a, index_defs)?;
    functions::functions(&mut a, &q_fn)?;
    triggers::triggers(&mut a, &q_trg)?;
    policies::policies(&mut a, &q_pol)?;
    relations::view_dependencies(&mut a, &q_vdeps)?;
    grants::grants(&mut a, &q_grants)?;

    let Assembly { m, mut unsupported, .. } = a;
    unsupported.sort();
    tracing::debug!(target: "bfm_schema::introspect", queries = ?t_queries, assembly = ?(t_start.elapsed() - t_queries), "introspected {}", conn.label);
    Ok(Introspection { model: m, unsupported })
}

#[cfg(test)]
mod tests {
    use super::indexes::split_top_level;

    #[test]
    fn splits_expression_lists() {
        assert_eq!(split_top_level("lower((name)::text), (a + b)"), vec!["lower((name)::text)", "(a + b)"]);
        assert_eq!(split_top_level("f(a, 'x,y'), \"q,\"::text"), vec!["f(a, 'x,y')", "\"q,\"::text"]);
        assert_eq!(split_top_level("arr[1, 2]"), vec!["arr[1, 2]"]);
    }
}
