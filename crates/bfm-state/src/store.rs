//! One implementation of [`StateStore`] for SQLite, PostgreSQL and MySQL.
//!
//! SQL is written once, with `?` placeholders and `{table}` names; [`SqlStateStore::q`] turns
//! them into `$n` for PostgreSQL and qualifies tables with `BFM_STATE_SCHEMA`. Each method's
//! body is expanded once per backend by `on_pool!`, so types are checked per driver.

use crate::schema;
use crate::{
    CatalogRow, Event, HistoryFilter, HistoryRow, Result, RunRecord, StateBackend, StateConfig, StateError, StateFilter, StateRow,
    StateStore, StatusCount, SyncReport,
};
use async_trait::async_trait;
use bfm_core::{Checksum, Status};
use chrono::{DateTime, Utc};
use sqlx::mysql::{MySqlPool, MySqlPoolOptions};
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{AssertSqlSafe, Row};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::Duration;

enum DbPool {
    Pg(PgPool),
    My(MySqlPool),
    Lite(SqlitePool),
}

/// Expand `$body` once per backend with `$p` bound to that backend's pool.
macro_rules! on_pool {
    ($self:expr, $p:ident => $body:expr) => {
        match &$self.pool {
            DbPool::Pg($p) => $body,
            DbPool::My($p) => $body,
            DbPool::Lite($p) => $body,
        }
    };
}

fn status_of(s: &str) -> Result<Status> {
    Status::parse(s).ok_or_else(|| StateError::Corrupt(format!("unknown status {s:?} in bfm_state")))
}

macro_rules! decode_state {
    ($r:expr) => {{
        let r = $r;
        let algorithm: Option<i64> = r.try_get("checksum_algorithm")?;
        let checksum: Option<String> = r.try_get("checksum")?;
        StateRow {
            migration_id: r.try_get("migration_id")?,
            schema: r.try_get("schema_name")?,
            version: r.try_get("version")?,
            name: r.try_get("name")?,
            connection: r.try_get("connection")?,
            backend: r.try_get("backend")?,
            status: status_of(&r.try_get::<String, _>("status")?)?,
            checksum: checksum.map(|value| Checksum { algorithm: algorithm.unwrap_or(1) as u32, value }),
            applied_at: r.try_get("applied_at")?,
            duration_ms: r.try_get("duration_ms")?,
            error: r.try_get("error")?,
            failed_statement: r.try_get("failed_statement")?,
            failed_statement_index: r.try_get("failed_statement_index")?,
            statements_done: r.try_get("statements_done")?,
            partial: r.try_get("partial")?,
            ledger: r.try_get("ledger")?,
            run_id: r.try_get("run_id")?,
            updated_at: r.try_get("updated_at")?,
        }
    }};
}

macro_rules! decode_history {
    ($r:expr) => {{
        let r = $r;
        HistoryRow {
            id: r.try_get("id")?,
            migration_id: r.try_get("migration_id")?,
            schema: r.try_get("schema_name")?,
            version: r.try_get("version")?,
            connection: r.try_get("connection")?,
            backend: r.try_get("backend")?,
            operation: r.try_get("operation")?,
            status: r.try_get("status")?,
            checksum: r.try_get("checksum")?,
            error: r.try_get("error")?,
            failed_statement: r.try_get("failed_statement")?,
            failed_statement_index: r.try_get("failed_statement_index")?,
            started_at: r.try_get("started_at")?,
            finished_at: r.try_get("finished_at")?,
            duration_ms: r.try_get("duration_ms")?,
            executed_by: r.try_get("executed_by")?,
            execution_method: r.try_get("execution_method")?,
            execution_context: r.try_get("execution_context")?,
            run_id: r.try_get("run_id")?,
        }
    }};
}

macro_rules! decode_run {
    ($r:expr) => {{
        let r = $r;
        let connections: String = r.try_get("connections")?;
        RunRecord {
            run_id: r.try_get("run_id")?,
            command: r.try_get("command")?,
            host: r.try_get("host")?,
            pid: r.try_get("pid")?,
            executed_by: r.try_get("executed_by")?,
            started_at: r.try_get("started_at")?,
            heartbeat_at: r.try_get("heartbeat_at")?,
            finished_at: r.try_get("finished_at")?,
            connections: serde_json::from_str(&connections).unwrap_or_default(),
        }
    }};
}

macro_rules! decode_catalog {
    ($r:expr) => {{
        let r = $r;
        let deps: String = r.try_get("dependencies")?;
        let sdeps: String = r.try_get("structured_dependencies")?;
        let tags: String = r.try_get("tags")?;
        CatalogRow {
            migration_id: r.try_get("migration_id")?,
            version: r.try_get("version")?,
            name: r.try_get("name")?,
            connection: r.try_get("connection")?,
            backend: r.try_get("backend")?,
            declared_schema: r.try_get("declared_schema")?,
            checksum: Checksum { algorithm: r.try_get::<i64, _>("checksum_algorithm")? as u32, value: r.try_get("checksum")? },
            up_file: r.try_get("up_file")?,
            down_file: r.try_get("down_file")?,
            dependencies: serde_json::from_str(&deps).unwrap_or_default(),
            structured_dependencies: serde_json::from_str(&sdeps).unwrap_or_default(),
            tags: serde_json::from_str(&tags).unwrap_or_default(),
            present: r.try_get("present")?,
            first_seen_at: r.try_get("first_seen_at")?,
            updated_at: r.try_get("updated_at")?,
        }
    }};
}

const STATE_COLS: &[&str] = &[
    "migration_id",
    "schema_name",
    "version",
    "name",
    "connection",
    "backend",
    "status",
    "checksum",
    "checksum_algorithm",
    "applied_at",
    "duration_ms",
    "error",
    "failed_statement",
    "failed_statement_index",
    "statements_done",
    "partial",
    "ledger",
    "run_id",
    "updated_at",
];

const HISTORY_COLS: &[&str] = &[
    "event_key",
    "migration_id",
    "schema_name",
    "version",
    "connection",
    "backend",
    "operation",
    "status",
    "checksum",
    "error",
    "failed_statement",
    "failed_statement_index",
    "started_at",
    "finished_at",
    "duration_ms",
    "executed_by",
    "execution_method",
    "execution_context",
    "run_id",
];

const CATALOG_COLS: &[&str] = &[
    "migration_id",
    "version",
    "name",
    "connection",
    "backend",
    "declared_schema",
    "checksum",
    "checksum_algorithm",
    "up_file",
    "down_file",
    "dependencies",
    "structured_dependencies",
    "tags",
    "present",
    "first_seen_at",
    "updated_at",
];

/// Rows per multi-row statement (keeps every backend under its parameter limit).
const CHUNK: usize = 200;

pub struct SqlStateStore {
    backend: StateBackend,
    pool: DbPool,
    /// PostgreSQL schema for bfm's tables.
    pg_schema: Option<String>,
}

fn default_sqlite_path() -> PathBuf {
    PathBuf::from(".bfm").join("state.db")
}

fn quote_pg(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

impl SqlStateStore {
    /// Recorded catalogue rows: all, or only those no longer on disk.
    async fn catalog_rows(&self, missing_only: bool) -> Result<Vec<CatalogRow>> {
        let sql = self.q(if missing_only {
            "SELECT * FROM {bfm_catalog} WHERE present = ? ORDER BY version, migration_id"
        } else {
            "SELECT * FROM {bfm_catalog} ORDER BY version, migration_id"
        });
        on_pool!(self, p => {
            let mut query = sqlx::query(AssertSqlSafe(sql));
            if missing_only {
                query = query.bind(false);
            }
            let rows = query.fetch_all(p).await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in &rows {
                out.push(decode_catalog!(r));
            }
            Ok(out)
        })
    }

    pub async fn connect(config: &StateConfig) -> Result<SqlStateStore> {
        let c = &config.connection;
        let pool_max = c.pool.max_connections.max(2);
        let pool = match config.backend {
            StateBackend::Sqlite => {
                let opts = match (&c.url, c.database.as_deref().or(c.extra("path"))) {
                    (Some(url), _) => {
                        url.parse::<SqliteConnectOptions>().map_err(|e| StateError::Config(format!("invalid SQLite URL: {e}")))?
                    }
                    (None, path) => {
                        let path = path.map(PathBuf::from).unwrap_or_else(default_sqlite_path);
                        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                            std::fs::create_dir_all(dir)
                                .map_err(|e| StateError::Config(format!("cannot create {} for the state database: {e}", dir.display())))?;
                        }
                        SqliteConnectOptions::new().filename(path)
                    }
                };
                let opts = opts
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal)
                    .busy_timeout(Duration::from_secs(30));
                DbPool::Lite(SqlitePoolOptions::new().max_connections(pool_max.min(4)).connect_with(opts).await?)
            }
            StateBackend::Postgresql => {
                let opts = bfm_targets::postgres::connect_options(c).map_err(|e| StateError::Config(e.to_string()))?;
                let make = || PgPoolOptions::new().max_connections(pool_max).acquire_timeout(c.pool.acquire_timeout);
                match make().connect_with(opts.clone()).await {
                    Ok(p) => DbPool::Pg(p),
                    Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("3D000") => {
                        // The state database does not exist yet: create it.
                        let db = opts.get_database().unwrap_or("migration_state").to_string();
                        let admin = make().max_connections(1).connect_with(opts.clone().database("postgres")).await?;
                        sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE {}", quote_pg(&db)))).execute(&admin).await?;
                        admin.close().await;
                        DbPool::Pg(make().connect_with(opts).await?)
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            StateBackend::Mysql => {
                let opts = bfm_targets::mysql::connect_options(c).map_err(|e| StateError::Config(e.to_string()))?;
                let make = || {
                    MySqlPoolOptions::new().max_connections(pool_max).acquire_timeout(c.pool.acquire_timeout).after_connect(|conn, _| {
                        Box::pin(async move {
                            sqlx::raw_sql("SET time_zone = '+00:00'").execute(conn).await?;
                            Ok(())
                        })
                    })
                };
                match make().connect_with(opts.clone()).await {
                    Ok(p) => DbPool::My(p),
                    Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42000") && e.message().contains("Unknown database") => {
                        let db = opts.get_database().unwrap_or("migration_state").to_string();
                        let admin = MySqlPoolOptions::new().max_connections(1).connect_with(opts.clone().database("")).await?;
                        sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE IF NOT EXISTS `{}`", db.replace('`', "``"))))
                            .execute(&admin)
                            .await?;
                        admin.close().await;
                        DbPool::My(make().connect_with(opts).await?)
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        };
        let pg_schema = match config.backend {
            StateBackend::Postgresql => config.schema.clone().filter(|s| !s.is_empty() && s != "public"),
            _ => None,
        };
        Ok(SqlStateStore { backend: config.backend, pool, pg_schema })
    }

    fn table(&self, name: &str) -> String {
        match &self.pg_schema {
            Some(s) => format!("{}.{name}", quote_pg(s)),
            None => name.to_string(),
        }
    }

    /// Qualify `{table}` names and, for PostgreSQL, number the `?` placeholders.
    fn q(&self, template: &str) -> String {
        let mut out = String::with_capacity(template.len() + 16);
        let mut n = 0;
        let mut rest = template;
        while let Some(i) = rest.find(['{', '?']) {
            out.push_str(&rest[..i]);
            if rest.as_bytes()[i] == b'?' {
                n += 1;
                if self.backend == StateBackend::Postgresql {
                    out.push_str(&format!("${n}"));
                } else {
                    out.push('?');
                }
                rest = &rest[i + 1..];
            } else {
                let end = rest[i..].find('}').map(|e| i + e).unwrap_or(rest.len() - 1);
                out.push_str(&self.table(&rest[i + 1..end]));
                rest = &rest[end + 1..];
            }
        }
        out.push_str(rest);
        out
    }

    fn values(&self, cols: usize, rows: usize) -> String {
        let one = format!("({})", vec!["?"; cols].join(", "));
        vec![one; rows].join(", ")
    }

    fn upsert_tail(&self, key: &[&str], cols: &[&str]) -> String {
        let updates: Vec<String> = cols
            .iter()
            .filter(|c| !key.contains(c))
            .map(|c| match self.backend {
                StateBackend::Mysql => format!("{c} = VALUES({c})"),
                _ => format!("{c} = excluded.{c}"),
            })
            .collect();
        match self.backend {
            StateBackend::Mysql => format!(" ON DUPLICATE KEY UPDATE {}", updates.join(", ")),
            _ => format!(" ON CONFLICT ({}) DO UPDATE SET {}", key.join(", "), updates.join(", ")),
        }
    }

    fn insert_ignore(&self, table: &str, cols: &[&str], rows: usize, conflict: &str) -> String {
        let values = self.values(cols.len(), rows);
        match self.backend {
            StateBackend::Mysql => self.q(&format!("INSERT IGNORE INTO {{{table}}} ({}) VALUES {values}", cols.join(", "))),
            _ => self.q(&format!("INSERT INTO {{{table}}} ({}) VALUES {values} ON CONFLICT ({conflict}) DO NOTHING", cols.join(", "))),
        }
    }

    async fn version(&self) -> Result<i64> {
        let create =
            self.q("CREATE TABLE IF NOT EXISTS {bfm_meta} (meta_key VARCHAR(64) NOT NULL PRIMARY KEY, meta_value VARCHAR(255) NOT NULL)");
        let select = self.q("SELECT meta_value FROM {bfm_meta} WHERE meta_key = 'schema_version'");
        on_pool!(self, p => {
            sqlx::raw_sql(AssertSqlSafe(create)).execute(p).await?;
            let v: Option<String> = sqlx::query_scalar(AssertSqlSafe(select)).fetch_optional(p).await?;
            Ok(v.and_then(|v| v.parse().ok()).unwrap_or(0))
        })
    }
}

#[async_trait]
impl StateStore for SqlStateStore {
    fn backend(&self) -> StateBackend {
        self.backend
    }

    async fn migrate(&self) -> Result<()> {
        if let Some(s) = &self.pg_schema
            && let DbPool::Pg(p) = &self.pool
        {
            sqlx::raw_sql(AssertSqlSafe(format!("CREATE SCHEMA IF NOT EXISTS {}", quote_pg(s)))).execute(p).await?;
        }
        if self.version().await? >= schema::LATEST {
            return Ok(());
        }
        let qualify = |t: &str| self.table(t);
        let set_version = |v: i64| {
            match self.backend {
            StateBackend::Mysql => self.q(&format!(
                "INSERT INTO {{bfm_meta}} (meta_key, meta_value) VALUES ('schema_version', '{v}') ON DUPLICATE KEY UPDATE meta_value = '{v}'"
            )),
            _ => self.q(&format!(
                "INSERT INTO {{bfm_meta}} (meta_key, meta_value) VALUES ('schema_version', '{v}') ON CONFLICT (meta_key) DO UPDATE SET meta_value = '{v}'"
            )),
        }
        };
        // BfM kept an old table called bfm_migrations; our view takes the name, the table is kept.
        let legacy = match self.backend {
            StateBackend::Postgresql => self.q("SELECT count(*) FROM pg_tables WHERE tablename = 'bfm_migrations' AND schemaname = COALESCE(?, current_schema())"),
            StateBackend::Mysql => "SELECT count(*) FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = 'bfm_migrations' AND table_type = 'BASE TABLE'".to_string(),
            StateBackend::Sqlite => "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'bfm_migrations'".to_string(),
        };
        let rename = self.q("ALTER TABLE {bfm_migrations} RENAME TO bfm_migrations_legacy");
        let current_sql = self.q("SELECT meta_value FROM {bfm_meta} WHERE meta_key = 'schema_version'");
        let pg_schema = self.pg_schema.clone();
        let backend = self.backend;
        // The upgrade itself, on one connection (or transaction) `$c`, once the caller holds the
        // backend's lock: read the version again, keep a legacy table, run what is missing.
        macro_rules! upgrade {
            ($c:expr) => {{
                let current: Option<String> = sqlx::query_scalar(AssertSqlSafe(current_sql.clone())).fetch_optional(&mut *$c).await?;
                let current = current.and_then(|v| v.parse().ok()).unwrap_or(0);
                if current == 0 {
                    let mut q = sqlx::query_scalar(AssertSqlSafe(legacy.clone()));
                    if backend == StateBackend::Postgresql {
                        q = q.bind(pg_schema.clone());
                    }
                    let n: i64 = q.fetch_one(&mut *$c).await?;
                    if n > 0 {
                        sqlx::raw_sql(AssertSqlSafe(rename.clone())).execute(&mut *$c).await?;
                    }
                }
                for (v, stmts) in schema::upgrade(backend, &qualify, current) {
                    for s in stmts {
                        if let Err(e) = sqlx::raw_sql(AssertSqlSafe(s)).execute(&mut *$c).await {
                            // MySQL DDL is not transactional: an index may remain from an
                            // interrupted earlier attempt.
                            let dup = backend == StateBackend::Mysql && matches!(&e, sqlx::Error::Database(d) if d.message().contains("Duplicate key name"));
                            if !dup {
                                return Err(e.into());
                            }
                        }
                    }
                    sqlx::raw_sql(AssertSqlSafe(set_version(v))).execute(&mut *$c).await?;
                }
                Ok::<(), StateError>(())
            }};
        }
        match &self.pool {
            DbPool::Pg(p) => {
                let mut tx = p.begin().await?;
                sqlx::query("SELECT pg_advisory_xact_lock(7262541890099001)").execute(&mut *tx).await?;
                upgrade!(tx)?;
                tx.commit().await?;
            }
            DbPool::Lite(p) => {
                let mut conn = p.acquire().await?;
                sqlx::raw_sql("BEGIN IMMEDIATE").execute(&mut *conn).await?;
                let result: Result<()> = async { upgrade!(conn) }.await;
                let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
                let ended = sqlx::raw_sql(end).execute(&mut *conn).await;
                result?;
                ended?;
            }
            DbPool::My(p) => {
                // MySQL DDL is not transactional: serialise migrating processes with a named lock.
                let mut conn = p.acquire().await?;
                let got: Option<i64> = sqlx::query_scalar("SELECT GET_LOCK('bfm_state_migrate', 60)").fetch_one(&mut *conn).await?;
                if got != Some(1) {
                    return Err(StateError::Config("another process is upgrading the state store; try again".into()));
                }
                let result: Result<()> = async { upgrade!(conn) }.await;
                let _ = sqlx::query("SELECT RELEASE_LOCK('bfm_state_migrate')").execute(&mut *conn).await;
                result?;
            }
        }
        Ok(())
    }

    async fn ping(&self) -> Result<()> {
        on_pool!(self, p => {
            match tokio::time::timeout(Duration::from_secs(3), sqlx::query("SELECT 1").execute(p)).await {
                Ok(r) => r.map(|_| ()).map_err(StateError::from),
                Err(_) => Err(StateError::Config("no answer within 3 s".into())),
            }
        })
    }

    async fn write(&self, events: &[Event]) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        // The last update of a key wins (one upsert statement may not touch a row twice).
        let mut latest: HashMap<(&str, &str), usize> = HashMap::new();
        for (i, e) in events.iter().enumerate() {
            if e.state.is_some() {
                latest.insert((e.migration.id.as_str(), e.schema.as_str()), i);
            }
        }
        let mut states: Vec<&Event> = latest.values().map(|&i| &events[i]).collect();
        states.sort_by_key(|e| (&e.migration.id, &e.schema));
        let histories: Vec<&Event> = events.iter().filter(|e| e.history.is_some()).collect();
        let now = Utc::now();
        let state_sql = |n: usize| {
            self.q(&format!("INSERT INTO {{bfm_state}} ({}) VALUES {}", STATE_COLS.join(", "), self.values(STATE_COLS.len(), n)))
                + &self.upsert_tail(&["migration_id", "schema_name"], STATE_COLS)
        };
        let history_sql = |n: usize| self.insert_ignore("bfm_history", HISTORY_COLS, n, "event_key");
        on_pool!(self, p => {
            let mut tx = p.begin().await?;
            for chunk in states.chunks(CHUNK) {
                let sql = state_sql(chunk.len());
                let mut q = sqlx::query(AssertSqlSafe(sql));
                for e in chunk {
                    let Some(s) = &e.state else { continue };
                    q = q
                        .bind(e.migration.id.clone())
                        .bind(e.schema.clone())
                        .bind(e.migration.version.clone())
                        .bind(e.migration.name.clone())
                        .bind(e.migration.connection.clone())
                        .bind(e.migration.backend.clone())
                        .bind(s.status.as_str())
                        .bind(s.checksum.as_ref().map(|c| c.value.clone()))
                        .bind(s.checksum.as_ref().map(|c| c.algorithm as i64))
                        .bind(s.applied_at)
                        .bind(s.duration_ms)
                        .bind(s.error.clone())
                        .bind(s.failed_statement.clone())
                        .bind(s.failed_statement_index)
                        .bind(s.statements_done)
                        .bind(s.partial)
                        .bind(s.ledger)
                        .bind(e.run_id.clone())
                        .bind(now);
                }
                q.execute(&mut *tx).await?;
            }
            for chunk in histories.chunks(CHUNK) {
                let sql = history_sql(chunk.len());
                let mut q = sqlx::query(AssertSqlSafe(sql));
                for e in chunk {
                    let Some(h) = &e.history else { continue };
                    q = q
                        .bind(e.key.clone())
                        .bind(e.migration.id.clone())
                        .bind(e.schema.clone())
                        .bind(e.migration.version.clone())
                        .bind(e.migration.connection.clone())
                        .bind(e.migration.backend.clone())
                        .bind(h.operation.as_str())
                        .bind(h.status.clone())
                        .bind(h.checksum.as_ref().map(|c| c.value.clone()))
                        .bind(h.error.clone())
                        .bind(h.failed_statement.clone())
                        .bind(h.failed_statement_index)
                        .bind(h.started_at)
                        .bind(h.finished_at)
                        .bind(h.duration_ms)
                        .bind(e.context.executed_by.clone())
                        .bind(e.context.execution_method.clone())
                        .bind(e.context.execution_context.clone())
                        .bind(e.run_id.clone());
                }
                q.execute(&mut *tx).await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    async fn snapshot(&self, connections: Option<&[String]>) -> Result<Vec<StateRow>> {
        let sql = match connections {
            Some(c) if !c.is_empty() => {
                self.q(&format!("SELECT * FROM {{bfm_state}} WHERE connection IN ({})", vec!["?"; c.len()].join(", ")))
            }
            _ => self.q("SELECT * FROM {bfm_state}"),
        };
        on_pool!(self, p => {
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for c in connections.unwrap_or(&[]) {
                q = q.bind(c.clone());
            }
            let rows = q.fetch_all(p).await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in &rows {
                out.push(decode_state!(r));
            }
            Ok(out)
        })
    }

    async fn states(&self, f: &StateFilter) -> Result<Vec<StateRow>> {
        let mut conds = Vec::new();
        let mut binds: Vec<String> = Vec::new();
        for (col, v) in [
            ("migration_id", &f.migration_id),
            ("schema_name", &f.schema),
            ("connection", &f.connection),
            ("status", &f.status.map(|s| s.as_str().to_string())),
        ] {
            if let Some(v) = v {
                conds.push(format!("{col} = ?"));
                binds.push(v.clone());
            }
        }
        if !f.migration_ids.is_empty() {
            conds.push(format!("migration_id IN ({})", vec!["?"; f.migration_ids.len()].join(", ")));
            binds.extend(f.migration_ids.iter().cloned());
        }
        let filter = if conds.is_empty() { String::new() } else { format!(" WHERE {}", conds.join(" AND ")) };
        let limit = f.limit.map(|l| format!(" LIMIT {}", l.max(0))).unwrap_or_default();
        let order = if f.newest_first { "updated_at DESC, migration_id, schema_name" } else { "migration_id, schema_name" };
        let sql = self.q(&format!("SELECT * FROM {{bfm_state}}{filter} ORDER BY {order}{limit}"));
        on_pool!(self, p => {
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for b in &binds {
                q = q.bind(b.clone());
            }
            let rows = q.fetch_all(p).await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in &rows {
                out.push(decode_state!(r));
            }
            Ok(out)
        })
    }

    async fn status_counts(&self, migration_ids: Option<&[String]>) -> Result<Vec<StatusCount>> {
        let ids = migration_ids.unwrap_or(&[]);
        if migration_ids.is_some() && ids.is_empty() {
            return Ok(Vec::new());
        }
        let filter = if ids.is_empty() { String::new() } else { format!(" WHERE migration_id IN ({})", vec!["?"; ids.len()].join(", ")) };
        let sql = self.q(&format!(
            "SELECT migration_id, status, COUNT(*) AS n, MAX(applied_at) AS last_applied_at, MAX(updated_at) AS last_updated_at \
             FROM {{bfm_state}}{filter} GROUP BY migration_id, status"
        ));
        on_pool!(self, p => {
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for id in ids {
                q = q.bind(id.clone());
            }
            let rows = q.fetch_all(p).await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in &rows {
                out.push(StatusCount {
                    migration_id: r.try_get("migration_id")?,
                    status: status_of(&r.try_get::<String, _>("status")?)?,
                    count: r.try_get("n")?,
                    last_applied_at: r.try_get("last_applied_at")?,
                    last_updated_at: r.try_get("last_updated_at")?,
                });
            }
            Ok(out)
        })
    }

    async fn history(&self, f: &HistoryFilter) -> Result<Vec<HistoryRow>> {
        let mut conds = Vec::new();
        let mut binds: Vec<String> = Vec::new();
        for (col, v) in
            [("migration_id", &f.migration_id), ("schema_name", &f.schema), ("operation", &f.operation.map(|o| o.as_str().to_string()))]
        {
            if let Some(v) = v {
                conds.push(format!("{col} = ?"));
                binds.push(v.clone());
            }
        }
        let filter = if conds.is_empty() { String::new() } else { format!(" WHERE {}", conds.join(" AND ")) };
        let limit = f.limit.map(|l| format!(" LIMIT {}", l.max(0))).unwrap_or_default();
        let sql = self.q(&format!("SELECT * FROM {{bfm_history}}{filter} ORDER BY id DESC{limit}"));
        on_pool!(self, p => {
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for b in &binds {
                q = q.bind(b.clone());
            }
            let rows = q.fetch_all(p).await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in &rows {
                out.push(decode_history!(r));
            }
            Ok(out)
        })
    }

    async fn sync_catalog(&self, rows: &[CatalogRow]) -> Result<SyncReport> {
        let existing = self.catalog().await?;
        let by_id: HashMap<&str, &CatalogRow> = existing.iter().map(|r| (r.migration_id.as_str(), r)).collect();
        let now = Utc::now();
        let mut report = SyncReport::default();
        let mut changed: Vec<CatalogRow> = Vec::new();
        let on_disk: HashSet<&str> = rows.iter().map(|r| r.migration_id.as_str()).collect();
        for r in rows {
            match by_id.get(r.migration_id.as_str()) {
                None => {
                    report.added.push(r.migration_id.clone());
                    changed.push(CatalogRow { present: true, first_seen_at: now, updated_at: now, ..r.clone() });
                }
                Some(old) => {
                    let same = old.version == r.version
                        && old.name == r.name
                        && old.connection == r.connection
                        && old.backend == r.backend
                        && old.declared_schema == r.declared_schema
                        && old.checksum == r.checksum
                        && old.up_file == r.up_file
                        && old.down_file == r.down_file
                        && old.dependencies == r.dependencies
                        && old.structured_dependencies == r.structured_dependencies
                        && old.tags == r.tags
                        && old.present;
                    if !same {
                        report.updated.push(r.migration_id.clone());
                        changed.push(CatalogRow { present: true, first_seen_at: old.first_seen_at, updated_at: now, ..r.clone() });
                    }
                }
            }
        }
        for old in &existing {
            if old.present && !on_disk.contains(old.migration_id.as_str()) {
                report.missing.push(old.migration_id.clone());
                changed.push(CatalogRow { present: false, updated_at: now, ..old.clone() });
            }
        }
        report.total = (existing.len() + report.added.len()) as i64;
        if changed.is_empty() {
            return Ok(report);
        }
        let sql = |n: usize| {
            self.q(&format!("INSERT INTO {{bfm_catalog}} ({}) VALUES {}", CATALOG_COLS.join(", "), self.values(CATALOG_COLS.len(), n)))
                + &self.upsert_tail(&["migration_id"], CATALOG_COLS)
        };
        on_pool!(self, p => {
            let mut tx = p.begin().await?;
            for chunk in changed.chunks(CHUNK) {
                let mut q = sqlx::query(AssertSqlSafe(sql(chunk.len())));
                for r in chunk {
                    q = q
                        .bind(r.migration_id.clone())
                        .bind(r.version.clone())
                        .bind(r.name.clone())
                        .bind(r.connection.clone())
                        .bind(r.backend.clone())
                        .bind(r.declared_schema.clone())
                        .bind(r.checksum.value.clone())
                        .bind(r.checksum.algorithm as i64)
                        .bind(r.up_file.clone())
                        .bind(r.down_file.clone())
                        .bind(serde_json::to_string(&r.dependencies).unwrap_or_else(|_| "[]".into()))
                        .bind(serde_json::to_string(&r.structured_dependencies).unwrap_or_else(|_| "[]".into()))
                        .bind(serde_json::to_string(&r.tags).unwrap_or_else(|_| "[]".into()))
                        .bind(r.present)
                        .bind(r.first_seen_at)
                        .bind(r.updated_at);
                }
                q.execute(&mut *tx).await?;
            }
            tx.commit().await?;
            Ok(report)
        })
    }

    async fn catalog(&self) -> Result<Vec<CatalogRow>> {
        self.catalog_rows(false).await
    }

    async fn missing_catalog(&self) -> Result<Vec<CatalogRow>> {
        self.catalog_rows(true).await
    }

    async fn start_run(&self, run: &RunRecord) -> Result<()> {
        let sql = self.q(
            "INSERT INTO {bfm_runs} (run_id, command, host, pid, executed_by, started_at, heartbeat_at, finished_at, connections) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        );
        let connections = serde_json::to_string(&run.connections).unwrap_or_else(|_| "[]".into());
        on_pool!(self, p => {
            sqlx::query(AssertSqlSafe(sql))
                .bind(run.run_id.clone())
                .bind(run.command.clone())
                .bind(run.host.clone())
                .bind(run.pid)
                .bind(run.executed_by.clone())
                .bind(run.started_at)
                .bind(run.heartbeat_at)
                .bind(run.finished_at)
                .bind(connections)
                .execute(p)
                .await?;
            Ok(())
        })
    }

    async fn heartbeat(&self, run_id: &str) -> Result<()> {
        let sql = self.q("UPDATE {bfm_runs} SET heartbeat_at = ? WHERE run_id = ?");
        on_pool!(self, p => {
            sqlx::query(AssertSqlSafe(sql)).bind(Utc::now()).bind(run_id.to_string()).execute(p).await?;
            Ok(())
        })
    }

    async fn finish_run(&self, run_id: &str) -> Result<()> {
        let sql = self.q("UPDATE {bfm_runs} SET finished_at = ?, heartbeat_at = ? WHERE run_id = ?");
        let now: DateTime<Utc> = Utc::now();
        on_pool!(self, p => {
            sqlx::query(AssertSqlSafe(sql)).bind(now).bind(now).bind(run_id.to_string()).execute(p).await?;
            Ok(())
        })
    }

    async fn open_runs(&self) -> Result<Vec<RunRecord>> {
        let sql = self.q("SELECT * FROM {bfm_runs} WHERE finished_at IS NULL ORDER BY started_at");
        on_pool!(self, p => {
            let rows = sqlx::query(AssertSqlSafe(sql)).fetch_all(p).await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in &rows {
                out.push(decode_run!(r));
            }
            Ok(out)
        })
    }

    async fn save_schema_snapshot(&self, connection: &str, fingerprint: &str, taken_at: DateTime<Utc>, snapshot_json: &str) -> Result<()> {
        let cols = ["connection", "fingerprint", "taken_at", "snapshot"];
        let sql = self.q(&format!("INSERT INTO {{bfm_schema_snapshots}} ({}) VALUES {}", cols.join(", "), self.values(cols.len(), 1)))
            + &self.upsert_tail(&["connection"], &cols);
        on_pool!(self, p => {
            sqlx::query(AssertSqlSafe(sql))
                .bind(connection.to_string())
                .bind(fingerprint.to_string())
                .bind(taken_at)
                .bind(snapshot_json.to_string())
                .execute(p)
                .await?;
            Ok(())
        })
    }

    async fn schema_snapshot(&self, connection: &str) -> Result<Option<String>> {
        let sql = self.q("SELECT snapshot FROM {bfm_schema_snapshots} WHERE connection = ?");
        on_pool!(self, p => {
            Ok(sqlx::query_scalar(AssertSqlSafe(sql)).bind(connection.to_string()).fetch_optional(p).await?)
        })
    }

    async fn close(&self) {
        on_pool!(self, p => p.close().await)
    }
}
