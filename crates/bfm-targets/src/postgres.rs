//! PostgreSQL target.
//!
//! A transactional step is sent as one simple-protocol message:
//! `BEGIN; SET LOCAL bfm.step …; SET LOCAL search_path …; <script>; <guard>; <ledger write>;
//! COMMIT;` — one round trip, the ledger row atomic with the migration (the guard refuses to
//! write it if the script ended the transaction), and `search_path` scoped to the transaction so
//! nothing leaks into the pool. The server answers each statement with a CommandComplete, so counting
//! them tells which statement of the script failed. Steps without a transaction run statement by
//! statement. The lock is a session advisory lock taken with `pg_try_advisory_lock` in a polling
//! loop.

use crate::config::ConnectionConfig;
use crate::ledger::LedgerAt;
use crate::lock::{Backoff, lock_key};
use crate::{BatchOutcome, Capabilities, LedgerEntry, Session, StepFailure, StepOutcome, StepScript, Target, TargetError, split_table};
use async_trait::async_trait;
use bfm_core::sql::Dialect;
use bfm_core::{BackendKind, Checksum, Direction};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgSslMode};
use sqlx::{AssertSqlSafe, Postgres, Row};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::OnceCell;

/// Steps sent in one message at most (bounds the work lost to a late failure report and the
/// size of the message).
const BATCH_LIMIT: usize = 100;

struct Shared {
    name: String,
    pool: PgPool,
    /// Schema holding the ledger table (default `bfm`).
    ledger_schema: String,
    ledger_ready: OnceCell<()>,
}

pub struct PgTarget {
    shared: Arc<Shared>,
}

/// Build connection options from a connection's settings (URL first, fields override).
pub fn connect_options(config: &ConnectionConfig) -> Result<PgConnectOptions, TargetError> {
    let bad = |message: String| TargetError::Config { connection: config.name.clone(), message };
    let mut o = match &config.url {
        Some(url) => PgConnectOptions::from_str(url).map_err(|e| bad(format!("invalid PostgreSQL URL: {e}")))?,
        None => PgConnectOptions::new_without_pgpass().host("localhost").port(5432).username("postgres"),
    };
    if let Some(h) = &config.host {
        o = o.host(h);
    }
    if let Some(p) = config.port {
        o = o.port(p);
    }
    if let Some(u) = &config.username {
        o = o.username(u);
    }
    if let Some(p) = &config.password {
        o = o.password(p);
    }
    if let Some(d) = &config.database {
        o = o.database(d);
    }
    if let Some(mode) = config.extra("sslmode").or(config.extra("ssl_mode")) {
        o = o.ssl_mode(
            PgSslMode::from_str(mode)
                .map_err(|_| bad(format!("invalid sslmode {mode:?} (disable, prefer, require, verify-ca, verify-full)")))?,
        );
    } else if !config.url.as_deref().is_some_and(|u| u.contains("sslmode=")) && crate::is_loopback(o.get_host()) {
        // TLS to a server on this very host protects nothing and costs a handshake per
        // connection; elsewhere the default stays `prefer`.
        o = o.ssl_mode(PgSslMode::Disable);
    }
    if let Some(cert) = config.extra("sslrootcert") {
        o = o.ssl_root_cert(cert);
    }
    Ok(o.application_name("bfm"))
}

/// A `postgres://` URL for a connection (for tools that take a URL), with credentials and the
/// TLS mode as `connect_options` would use them.
pub fn database_url(config: &ConnectionConfig) -> Result<String, TargetError> {
    let o = connect_options(config)?;
    let enc = |s: &str| -> String {
        s.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect()
    };
    let user = enc(o.get_username());
    let password = config.password.clone().or_else(|| {
        config
            .url
            .as_deref()
            .and_then(|u| u.split_once("://"))
            .and_then(|(_, rest)| rest.split_once('@'))
            .and_then(|(creds, _)| creds.split_once(':'))
            .map(|(_, p)| p.to_string())
    });
    let auth = match password {
        Some(p) if config.password.is_some() => format!("{user}:{}@", enc(&p)),
        // Already percent-encoded in the URL it came from.
        Some(p) => format!("{user}:{p}@"),
        None => format!("{user}@"),
    };
    let host = o.get_host();
    let host = if host.contains(':') && !host.starts_with('[') { format!("[{host}]") } else { host.to_string() };
    let db = o.get_database().unwrap_or("postgres");
    let mode = match o.get_ssl_mode() {
        PgSslMode::Disable => "disable",
        PgSslMode::Allow => "allow",
        PgSslMode::Prefer => "prefer",
        PgSslMode::Require => "require",
        PgSslMode::VerifyCa => "verify-ca",
        PgSslMode::VerifyFull => "verify-full",
    };
    Ok(format!("postgres://{auth}{host}:{}/{}?sslmode={mode}", o.get_port(), enc(db)))
}

impl PgTarget {
    pub fn new(config: &ConnectionConfig) -> Result<PgTarget, TargetError> {
        let options = connect_options(config)?;
        let pool = PgPoolOptions::new()
            .max_connections(config.pool.max_connections.max(1))
            .min_connections(config.pool.min_connections)
            .max_lifetime(config.pool.max_lifetime)
            .idle_timeout(config.pool.idle_timeout)
            .acquire_timeout(config.pool.acquire_timeout)
            .test_before_acquire(false)
            .connect_lazy_with(options);
        let ledger_schema = config.extra("ledger_schema").unwrap_or("bfm").to_string();
        if !bfm_core::catalog::is_valid_name(&ledger_schema) {
            return Err(TargetError::Config {
                connection: config.name.clone(),
                message: format!("invalid ledger schema {ledger_schema:?}"),
            });
        }
        Ok(PgTarget { shared: Arc::new(Shared { name: config.name.clone(), pool, ledger_schema, ledger_ready: OnceCell::new() }) })
    }

    pub fn pool(&self) -> &PgPool {
        &self.shared.pool
    }
}

impl Shared {
    fn err(&self, e: sqlx::Error) -> TargetError {
        TargetError::db(&self.name, e)
    }

    fn ledger_table(&self) -> String {
        format!("{}.ledger", Dialect::Postgres.quote_ident(&self.ledger_schema))
    }

    /// Create the ledger table once per process. The creation is serialised with a
    /// transaction-level advisory lock so that concurrent first runs do not collide.
    async fn ensure_ledger(&self) -> Result<(), TargetError> {
        self.ledger_ready
            .get_or_try_init(|| async {
                let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
                    .bind(format!("{}.ledger", Dialect::Postgres.quote_ident(&self.ledger_schema)))
                    .fetch_one(&self.pool)
                    .await
                    .map_err(|e| self.err(e))?;
                if exists {
                    return Ok(());
                }
                let schema = Dialect::Postgres.quote_ident(&self.ledger_schema);
                let sql = format!(
                    "BEGIN;
                     SELECT pg_advisory_xact_lock(7262541890012345);
                     CREATE SCHEMA IF NOT EXISTS {schema};
                     CREATE TABLE IF NOT EXISTS {schema}.ledger (
                         migration_id text NOT NULL,
                         schema_name text NOT NULL,
                         connection_name text NOT NULL,
                         version text NOT NULL,
                         checksum text NOT NULL,
                         checksum_algorithm integer NOT NULL,
                         run_id text NOT NULL,
                         applied_at timestamptz NOT NULL DEFAULT now(),
                         PRIMARY KEY (migration_id, schema_name)
                     );
                     COMMIT;"
                );
                let mut conn = self.pool.acquire().await.map_err(|e| self.err(e))?;
                if let Err(e) = sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut *conn).await {
                    let _ = sqlx::raw_sql("ROLLBACK").execute(&mut *conn).await;
                    return Err(self.err(e));
                }
                Ok(())
            })
            .await
            .map(|_| ())
    }

    fn ledger_write(&self, step: &StepScript<'_>) -> String {
        let q = |s: &str| Dialect::Postgres.quote_literal(s);
        match step.direction {
            Direction::Up => format!(
                "INSERT INTO {t} (migration_id, schema_name, connection_name, version, checksum, checksum_algorithm, run_id, applied_at) \
                 VALUES ({}, {}, {}, {}, {}, {}, {}, now()) ON CONFLICT (migration_id, schema_name) DO UPDATE SET \
                 version = EXCLUDED.version, checksum = EXCLUDED.checksum, checksum_algorithm = EXCLUDED.checksum_algorithm, \
                 run_id = EXCLUDED.run_id, applied_at = EXCLUDED.applied_at",
                q(step.migration_id),
                q(step.schema),
                q(&self.name),
                q(step.version),
                q(&step.checksum.value),
                step.checksum.algorithm,
                q(step.run_id),
                t = self.ledger_table()
            ),
            Direction::Down => format!(
                "DELETE FROM {} WHERE migration_id = {} AND schema_name = {}",
                self.ledger_table(),
                q(step.migration_id),
                q(step.schema)
            ),
        }
    }
}

/// `application_name` of sessions working for a run (at most 63 bytes).
fn application_name(run_id: &str) -> String {
    format!("bfm:{}", &run_id[..run_id.len().min(59)])
}

/// The ledger's columns as [`ledger_entry`] reads them. `applied_at` goes through `isfinite`:
/// a TIMESTAMPTZ can hold `infinity`, on which sqlx's decoder panics.
const LEDGER_COLUMNS: &str = "migration_id, schema_name, version, checksum, checksum_algorithm, run_id, CASE WHEN isfinite(applied_at) THEN applied_at END AS applied_at";

fn ledger_entry(row: &sqlx::postgres::PgRow, connection: &str, table: &str) -> Result<LedgerEntry, TargetError> {
    let migration_id: String = row.try_get("migration_id").map_err(|e| TargetError::db(connection, e))?;
    let schema: String = row.try_get("schema_name").map_err(|e| TargetError::db(connection, e))?;
    let at = LedgerAt::new(connection, table, &migration_id, &schema);
    let applied_at: Option<DateTime<Utc>> = at.get(row, "applied_at")?;
    Ok(LedgerEntry {
        version: at.get(row, "version")?,
        checksum: Checksum {
            algorithm: at.algorithm(at.get::<_, i32>(row, "checksum_algorithm")?.into())?,
            value: at.get(row, "checksum")?,
        },
        run_id: at.get(row, "run_id")?,
        applied_at: applied_at.ok_or_else(|| at.corrupt("applied_at", "not a finite time"))?,
        migration_id,
        schema,
    })
}

/// A database error as the user needs it: message, SQLSTATE, detail and hint.
pub(crate) fn describe(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Database(db) => {
            let mut s = db.message().to_string();
            if let Some(code) = db.code() {
                let _ = write!(s, " (SQLSTATE {code})");
            }
            if let Some(pg) = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
                if let Some(d) = pg.detail() {
                    let _ = write!(s, "; detail: {d}");
                }
                if let Some(h) = pg.hint() {
                    let _ = write!(s, "; hint: {h}");
                }
            }
            s
        }
        other => other.to_string(),
    }
}

#[async_trait]
impl Target for PgTarget {
    fn name(&self) -> &str {
        &self.shared.name
    }

    fn kind(&self) -> BackendKind {
        BackendKind::Postgresql
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities { transactional_ddl: true, schemas: true }
    }

    async fn ping(&self) -> Result<(), TargetError> {
        let fut = sqlx::query("SELECT 1").execute(&self.shared.pool);
        match tokio::time::timeout(Duration::from_secs(3), fut).await {
            Ok(r) => r.map(|_| ()).map_err(|e| self.shared.err(e)),
            Err(_) => Err(TargetError::Other { connection: self.shared.name.clone(), message: "no answer within 3 s".into() }),
        }
    }

    async fn session(&self, run_id: &str) -> Result<Box<dyn Session>, TargetError> {
        self.shared.ensure_ledger().await?;
        let mut conn = self.shared.pool.acquire().await.map_err(|e| self.shared.err(e))?;
        // Name the session after the run, so that a crashed run's statements still executing
        // server-side can be seen; and have the server abort them soon after the client is gone.
        let label = format!("SET application_name TO {}", Dialect::Postgres.quote_literal(&application_name(run_id)));
        sqlx::raw_sql(AssertSqlSafe(label)).execute(&mut *conn).await.map_err(|e| self.shared.err(e))?;
        let _ = sqlx::raw_sql("SET client_connection_check_interval TO 1000").execute(&mut *conn).await;
        Ok(Box::new(PgSession { shared: self.shared.clone(), conn, locked: None }))
    }

    async fn busy(&self, run_id: &str) -> Result<bool, TargetError> {
        sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE application_name = $1 AND state <> 'idle' AND pid <> pg_backend_pid())",
        )
        .bind(application_name(run_id))
        .fetch_one(&self.shared.pool)
        .await
        .map_err(|e| self.shared.err(e))
    }

    async fn ledger_rows(&self, run_id: Option<&str>) -> Result<Vec<LedgerEntry>, TargetError> {
        self.shared.ensure_ledger().await?;
        let sql = format!(
            "SELECT {LEDGER_COLUMNS} FROM {} WHERE connection_name = $2 AND ($1::text IS NULL OR run_id = $1)",
            self.shared.ledger_table()
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(run_id)
            .bind(&self.shared.name)
            .fetch_all(&self.shared.pool)
            .await
            .map_err(|e| self.shared.err(e))?;
        let table = self.shared.ledger_table();
        rows.iter().map(|r| ledger_entry(r, &self.shared.name, &table)).collect()
    }

    async fn list_schemas(&self, pattern: &str) -> Result<Vec<String>, TargetError> {
        sqlx::query_scalar(
            "SELECT nspname::text FROM pg_namespace WHERE nspname LIKE $1 AND nspname NOT LIKE 'pg\\_%' \
             AND nspname <> 'information_schema' AND nspname <> $2 ORDER BY 1",
        )
        .bind(pattern)
        .bind(&self.shared.ledger_schema)
        .fetch_all(&self.shared.pool)
        .await
        .map_err(|e| self.shared.err(e))
    }

    async fn execute_script(&self, sql: &str) -> Result<(), TargetError> {
        sqlx::raw_sql(AssertSqlSafe(sql.to_string())).execute(&self.shared.pool).await.map(|_| ()).map_err(|e| self.shared.err(e))
    }

    async fn query_schemas(&self, sql: &str) -> Result<Vec<String>, TargetError> {
        let rows = sqlx::raw_sql(AssertSqlSafe(sql.to_string())).fetch_all(&self.shared.pool).await.map_err(|e| self.shared.err(e))?;
        rows.iter().map(|r| r.try_get::<String, _>(0)).collect::<Result<_, _>>().map_err(|e| self.shared.err(e))
    }

    async fn close(&self) {
        self.shared.pool.close().await;
    }
}

pub struct PgSession {
    shared: Arc<Shared>,
    conn: PoolConnection<Postgres>,
    locked: Option<(i64, String)>,
}

impl Drop for PgSession {
    fn drop(&mut self) {
        // A session dropped while holding its lock (error, cancellation) must not hand a locked
        // connection back to the pool: closing it releases the advisory lock.
        if self.locked.is_some() {
            self.conn.close_on_drop();
        }
    }
}

impl PgSession {
    fn err(&self, e: sqlx::Error) -> TargetError {
        self.shared.err(e)
    }

    async fn run_non_transactional(&mut self, step: &StepScript<'_>) -> Result<StepOutcome, StepFailure> {
        let conn = &mut *self.conn;
        let fail = |error: String, index: Option<usize>, statement: Option<String>, done: usize| StepFailure {
            error,
            statement_index: index,
            statement,
            statements_done: done,
            partial: done > 0,
        };
        if !step.schema.is_empty() {
            let set = format!("SET search_path TO {}, public", Dialect::Postgres.quote_ident(step.schema));
            sqlx::raw_sql(AssertSqlSafe(set)).execute(&mut *conn).await.map_err(|e| fail(describe(&e), None, None, step.resume_from))?;
        }
        let mut result = Ok(StepOutcome { statements: step.statements.len() });
        for (i, stmt) in step.statements.iter().enumerate().skip(step.resume_from) {
            if let Err(e) = sqlx::raw_sql(AssertSqlSafe(stmt.clone())).execute(&mut *conn).await {
                result = Err(fail(describe(&e), Some(i), Some(stmt.clone()), i));
                break;
            }
        }
        if result.is_ok()
            && let Err(e) = sqlx::raw_sql(AssertSqlSafe(self.shared.ledger_write(step))).execute(&mut *conn).await
        {
            result = Err(fail(format!("recording the ledger row failed: {}", describe(&e)), None, None, step.statements.len()));
        }
        if !step.schema.is_empty() && sqlx::raw_sql("RESET search_path").execute(&mut *conn).await.is_err() {
            self.conn.close_on_drop();
        }
        result
    }
}

#[async_trait]
impl Session for PgSession {
    async fn lock(&mut self, schema: &str, timeout: Duration) -> Result<Duration, TargetError> {
        let key = lock_key(&self.shared.name, schema);
        let mut backoff = Backoff::new(timeout);
        loop {
            let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
                .bind(key)
                .fetch_one(&mut *self.conn)
                .await
                .map_err(|e| self.err(e))?;
            if got {
                self.locked = Some((key, schema.to_string()));
                return Ok(backoff.elapsed());
            }
            if !backoff.wait().await {
                return Err(TargetError::LockTimeout {
                    connection: self.shared.name.clone(),
                    schema: schema.to_string(),
                    waited: backoff.elapsed(),
                });
            }
        }
    }

    async fn unlock(&mut self) -> Result<(), TargetError> {
        if let Some((key, _)) = self.locked.take()
            && let Err(e) = sqlx::query("SELECT pg_advisory_unlock($1)").bind(key).execute(&mut *self.conn).await
        {
            self.conn.close_on_drop();
            return Err(self.err(e));
        }
        Ok(())
    }

    async fn prepare_schema(&mut self, schema: &str) -> Result<(), TargetError> {
        if schema.is_empty() || self.schema_exists(schema).await? {
            return Ok(());
        }
        let sql = format!("CREATE SCHEMA IF NOT EXISTS {}", Dialect::Postgres.quote_ident(schema));
        sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut *self.conn).await.map_err(|e| self.err(e))?;
        Ok(())
    }

    async fn ledger(&mut self, schema: &str) -> Result<HashMap<String, LedgerEntry>, TargetError> {
        let sql = format!("SELECT {LEDGER_COLUMNS} FROM {} WHERE schema_name = $1 AND connection_name = $2", self.shared.ledger_table());
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(schema)
            .bind(&self.shared.name)
            .fetch_all(&mut *self.conn)
            .await
            .map_err(|e| self.err(e))?;
        let mut out = HashMap::with_capacity(rows.len());
        for row in &rows {
            let e = ledger_entry(row, &self.shared.name, &self.shared.ledger_table())?;
            out.insert(e.migration_id.clone(), e);
        }
        Ok(out)
    }

    async fn schema_exists(&mut self, schema: &str) -> Result<bool, TargetError> {
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
            .bind(schema)
            .fetch_one(&mut *self.conn)
            .await
            .map_err(|e| self.err(e))
    }

    async fn table_exists(&mut self, default_schema: &str, table: &str) -> Result<bool, TargetError> {
        let default_schema = if default_schema.is_empty() { "public" } else { default_schema };
        let (schema, table) = split_table(default_schema, table);
        sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p', 'v', 'm', 'f'))",
        )
        .bind(schema)
        .bind(table)
        .fetch_one(&mut *self.conn)
        .await
        .map_err(|e| self.err(e))
    }

    async fn apply(&mut self, step: &StepScript<'_>) -> Result<StepOutcome, StepFailure> {
        if !step.transactional {
            return self.run_non_transactional(step).await;
        }
        let outcome = self.apply_batch(std::slice::from_ref(step)).await;
        match outcome.failure {
            None => Ok(StepOutcome { statements: step.statements.len() }),
            Some(f) => Err(f),
        }
    }

    fn batch_limit(&self) -> usize {
        BATCH_LIMIT
    }

    async fn apply_batch(&mut self, steps: &[StepScript<'_>]) -> BatchOutcome {
        // One simple-protocol message: per step `BEGIN; SET LOCAL search_path …; <script>;
        // <ledger write>; COMMIT;`. The server answers every statement with a CommandComplete
        // and skips the rest of the message at the first error, so counting the answers tells
        // which step and which statement failed, and nothing after it ran.
        //
        // The step's transaction is marked with `SET LOCAL bfm.step = '<token>'`, and before
        // the ledger write a guard raises unless the mark is still there: a script that ended
        // the transaction (a COMMIT or ROLLBACK that slipped past `bfm check`) would otherwise
        // have the rest of its statements and its ledger row run outside it. The guard is one
        // more statement of the same message, not a round trip.
        let mut sql = String::with_capacity(steps.iter().map(|s| s.sql.len() + 1024).sum());
        let mut layout = Vec::with_capacity(steps.len()); // (prefix, statements) per step
        for step in steps {
            let token = Dialect::Postgres.quote_literal(&step_token());
            let _ = writeln!(sql, "BEGIN;\nSET LOCAL bfm.step = {token};");
            let mut prefix = 2;
            if !step.schema.is_empty() {
                let _ = writeln!(sql, "SET LOCAL search_path TO {}, public;", Dialect::Postgres.quote_ident(step.schema));
                prefix += 1;
            }
            sql.push_str(step.sql);
            // A newline first: the script may end in a line comment.
            sql.push_str("\n;\n");
            let _ = writeln!(sql, "{};", transaction_guard(&token));
            sql.push_str(&self.shared.ledger_write(step));
            sql.push_str(";\nCOMMIT;\n");
            layout.push((prefix, step.statements.len()));
        }
        let mut done = 0usize;
        let mut failure = None;
        {
            let mut stream = sqlx::raw_sql(AssertSqlSafe(sql)).execute_many(&mut *self.conn);
            while let Some(r) = stream.next().await {
                match r {
                    Ok(_) => done += 1,
                    Err(e) => {
                        failure = Some(e);
                        break;
                    }
                }
            }
        }
        let Some(e) = failure else {
            return BatchOutcome { completed: steps.len(), failure: None };
        };
        if sqlx::raw_sql("ROLLBACK").execute(&mut *self.conn).await.is_err() {
            self.conn.close_on_drop();
        }
        // Find the step the error belongs to: each takes prefix + statements + 3 answers
        // (guard, ledger write, COMMIT).
        let mut start = 0usize;
        let mut k = 0usize;
        while k < layout.len() {
            let (prefix, n) = layout[k];
            let total = prefix + n + 3;
            if done < start + total {
                break;
            }
            start += total;
            k += 1;
        }
        let k = k.min(steps.len().saturating_sub(1));
        let (prefix, n) = layout.get(k).copied().unwrap_or((1, 0));
        let local = done.saturating_sub(start);
        // Past the script, the guard fails only if the script ended the transaction: what ran
        // before its COMMIT may have stayed.
        let mut partial = false;
        let (index, error) = if local < prefix {
            (None, format!("setting up the transaction failed: {}", describe(&e)))
        } else if local - prefix < n {
            // A statement after transaction control in the script ran outside the step's
            // transaction; what came before it may have committed.
            partial = ends_transaction_before(steps[k].statements, local - prefix);
            (Some(local - prefix), describe(&e))
        } else if local - prefix == n {
            partial = true;
            (None, describe(&e))
        } else if local - prefix == n + 1 {
            (None, format!("recording the ledger row failed: {}", describe(&e)))
        } else {
            (None, format!("commit failed: {}", describe(&e)))
        };
        BatchOutcome {
            completed: k,
            failure: Some(StepFailure {
                error,
                statement: index.and_then(|i| steps[k].statements.get(i).cloned()),
                statement_index: index,
                statements_done: 0,
                partial,
            }),
        }
    }
}

/// Whether one of the first `index` statements ends or replaces the transaction.
pub(crate) fn ends_transaction_before(statements: &[String], index: usize) -> bool {
    statements[..index.min(statements.len())]
        .iter()
        .any(|s| bfm_core::sql::transaction_control(s, Dialect::Postgres).is_some_and(bfm_core::sql::TxControl::escapes_transaction))
}

/// A mark for one step's transaction, unique in this process and unlikely anywhere else.
fn step_token() -> String {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("{}-{nanos:x}-{:x}", std::process::id(), SEQ.fetch_add(1, Ordering::Relaxed))
}

/// A statement that raises unless the transaction is still the one marked with `token` (a
/// quoted literal).
fn transaction_guard(token: &str) -> String {
    format!(
        "DO $bfm_guard$ BEGIN IF current_setting('bfm.step', true) IS DISTINCT FROM {token} THEN \
         RAISE EXCEPTION 'the script ended the step''s transaction (COMMIT, ROLLBACK or similar): the ledger row was not written' \
         USING ERRCODE = '25000', HINT = 'remove the transaction control, or mark the migration -- bfm-no-transaction'; \
         END IF; END $bfm_guard$"
    )
}
