//! SQLite target: one database file, no schemas. Steps run as
//! `BEGIN IMMEDIATE; SAVEPOINT bfm_step; <script>; RELEASE bfm_step; <ledger write>; COMMIT;`:
//! the savepoint exists only while the step's transaction does, so if the script ended it (a
//! `COMMIT` that slipped past `bfm check`) the release fails and no ledger row is written. SQLite has no advisory locks, so the
//! (connection, schema) lock is a lease row in `bfm_locks` that expires if its holder dies.

use crate::config::ConnectionConfig;
use crate::ledger::LedgerAt;
use crate::lock::Backoff;
use crate::{Capabilities, LedgerEntry, Session, StepFailure, StepOutcome, StepScript, Target, TargetError};
use async_trait::async_trait;
use bfm_core::sql::Dialect;
use bfm_core::{BackendKind, Checksum, Direction};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use sqlx::pool::PoolConnection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{AssertSqlSafe, Row, Sqlite};
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::OnceCell;

/// The savepoint that marks a step's transaction.
const STEP_SAVEPOINT: &str = "bfm_step";

/// Statements sent before a transactional step's script (`BEGIN IMMEDIATE`, `SAVEPOINT`).
const PREFIX: usize = 2;

/// How long a lock lease lasts without renewal; renewed before every step.
const LEASE: Duration = Duration::from_secs(60);

struct Shared {
    name: String,
    pool: SqlitePool,
    ready: OnceCell<()>,
}

pub struct SqliteTarget {
    shared: Arc<Shared>,
}

/// Options for a SQLite file: `url` (`sqlite://path`), else `database`, else the `path` extra.
pub fn connect_options(config: &ConnectionConfig) -> Result<SqliteConnectOptions, TargetError> {
    let bad = |message: String| TargetError::Config { connection: config.name.clone(), message };
    let o = match (&config.url, config.database.as_deref().or(config.extra("path"))) {
        (Some(url), _) => SqliteConnectOptions::from_str(url).map_err(|e| bad(format!("invalid SQLite URL: {e}")))?,
        (None, Some(path)) => {
            if let Some(dir) = std::path::Path::new(path).parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| bad(format!("cannot create {}: {e}", dir.display())))?;
            }
            SqliteConnectOptions::new().filename(path)
        }
        (None, None) => {
            return Err(bad(format!("a SQLite connection needs a file: set {}_DB_NAME (a path)", config.name.to_uppercase())));
        }
    };
    Ok(o.create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(30))
        .foreign_keys(true))
}

impl SqliteTarget {
    pub fn new(config: &ConnectionConfig) -> Result<SqliteTarget, TargetError> {
        let options = connect_options(config)?;
        let pool = SqlitePoolOptions::new()
            .max_connections(config.pool.max_connections.clamp(1, 4))
            .acquire_timeout(config.pool.acquire_timeout)
            .test_before_acquire(false)
            .connect_lazy_with(options);
        Ok(SqliteTarget { shared: Arc::new(Shared { name: config.name.clone(), pool, ready: OnceCell::new() }) })
    }
}

impl Shared {
    fn err(&self, e: sqlx::Error) -> TargetError {
        TargetError::db(&self.name, e)
    }

    async fn ensure_tables(&self) -> Result<(), TargetError> {
        self.ready
            .get_or_try_init(|| async {
                sqlx::raw_sql(
                    "CREATE TABLE IF NOT EXISTS bfm_ledger (
                        migration_id TEXT NOT NULL,
                        schema_name TEXT NOT NULL,
                        connection_name TEXT NOT NULL,
                        version TEXT NOT NULL,
                        checksum TEXT NOT NULL,
                        checksum_algorithm INTEGER NOT NULL,
                        run_id TEXT NOT NULL,
                        applied_at TEXT NOT NULL,
                        PRIMARY KEY (migration_id, schema_name)
                    );
                    CREATE TABLE IF NOT EXISTS bfm_locks (
                        name TEXT PRIMARY KEY,
                        owner TEXT NOT NULL,
                        expires_at INTEGER NOT NULL
                    );",
                )
                .execute(&self.pool)
                .await
                .map_err(|e| self.err(e))?;
                Ok(())
            })
            .await
            .map(|_| ())
    }

    fn ledger_write(&self, step: &StepScript<'_>) -> String {
        let q = |s: &str| Dialect::Sqlite.quote_literal(s);
        match step.direction {
            Direction::Up => format!(
                "INSERT INTO bfm_ledger (migration_id, schema_name, connection_name, version, checksum, checksum_algorithm, run_id, applied_at) \
                 VALUES ({}, {}, {}, {}, {}, {}, {}, strftime('%Y-%m-%dT%H:%M:%fZ', 'now')) ON CONFLICT (migration_id, schema_name) DO UPDATE SET \
                 version = excluded.version, checksum = excluded.checksum, checksum_algorithm = excluded.checksum_algorithm, \
                 run_id = excluded.run_id, applied_at = excluded.applied_at",
                q(step.migration_id),
                q(step.schema),
                q(&self.name),
                q(step.version),
                q(&step.checksum.value),
                step.checksum.algorithm,
                q(step.run_id)
            ),
            Direction::Down => {
                format!("DELETE FROM bfm_ledger WHERE migration_id = {} AND schema_name = {}", q(step.migration_id), q(step.schema))
            }
        }
    }
}

fn ledger_entry(row: &sqlx::sqlite::SqliteRow, connection: &str) -> Result<LedgerEntry, TargetError> {
    let migration_id: String = row.try_get("migration_id").map_err(|e| TargetError::db(connection, e))?;
    let schema: String = row.try_get("schema_name").map_err(|e| TargetError::db(connection, e))?;
    let at = LedgerAt::new(connection, "bfm_ledger", &migration_id, &schema);
    // Written by `strftime('%Y-%m-%dT%H:%M:%fZ')`: RFC 3339 or nothing.
    let applied: String = at.get(row, "applied_at")?;
    let applied_at = DateTime::parse_from_rfc3339(&applied)
        .map_err(|e| at.corrupt("applied_at", format_args!("{applied:?} is not an RFC 3339 time ({e})")))?
        .with_timezone(&Utc);
    Ok(LedgerEntry {
        version: at.get(row, "version")?,
        checksum: Checksum { algorithm: at.algorithm(at.get(row, "checksum_algorithm")?)?, value: at.get(row, "checksum")? },
        run_id: at.get(row, "run_id")?,
        applied_at,
        migration_id,
        schema,
    })
}

fn describe(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Database(db) => db.message().to_string(),
        other => other.to_string(),
    }
}

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

static OWNER_SEQ: AtomicU64 = AtomicU64::new(0);

#[async_trait]
impl Target for SqliteTarget {
    fn name(&self) -> &str {
        &self.shared.name
    }

    fn kind(&self) -> BackendKind {
        BackendKind::Sqlite
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities { transactional_ddl: true, schemas: false }
    }

    async fn ping(&self) -> Result<(), TargetError> {
        sqlx::query("SELECT 1").execute(&self.shared.pool).await.map(|_| ()).map_err(|e| self.shared.err(e))
    }

    async fn session(&self, _run_id: &str) -> Result<Box<dyn Session>, TargetError> {
        self.shared.ensure_tables().await?;
        let conn = self.shared.pool.acquire().await.map_err(|e| self.shared.err(e))?;
        let owner = format!("{}-{}-{}", std::process::id(), OWNER_SEQ.fetch_add(1, Ordering::Relaxed), now_ms());
        Ok(Box::new(SqliteSession { shared: self.shared.clone(), conn, owner, locked: None }))
    }

    async fn ledger_rows(&self, run_id: Option<&str>) -> Result<Vec<LedgerEntry>, TargetError> {
        self.shared.ensure_tables().await?;
        let rows = sqlx::query("SELECT * FROM bfm_ledger WHERE connection_name = ?2 AND (?1 IS NULL OR run_id = ?1)")
            .bind(run_id)
            .bind(&self.shared.name)
            .fetch_all(&self.shared.pool)
            .await
            .map_err(|e| self.shared.err(e))?;
        rows.iter().map(|r| ledger_entry(r, &self.shared.name)).collect()
    }

    async fn close(&self) {
        self.shared.pool.close().await;
    }
}

pub struct SqliteSession {
    shared: Arc<Shared>,
    conn: PoolConnection<Sqlite>,
    owner: String,
    locked: Option<String>,
}

impl Drop for SqliteSession {
    fn drop(&mut self) {
        // Release a lease that was not released explicitly; if this cannot run, it expires.
        if let (Some(name), Ok(handle)) = (self.locked.take(), tokio::runtime::Handle::try_current()) {
            let pool = self.shared.pool.clone();
            let owner = self.owner.clone();
            handle.spawn(async move {
                let _ = sqlx::query("DELETE FROM bfm_locks WHERE name = ? AND owner = ?").bind(name).bind(owner).execute(&pool).await;
            });
        }
    }
}

impl SqliteSession {
    fn conn(&mut self) -> &mut PoolConnection<Sqlite> {
        &mut self.conn
    }

    fn err(&self, e: sqlx::Error) -> TargetError {
        self.shared.err(e)
    }

    async fn renew(&mut self) -> Result<(), sqlx::Error> {
        if let Some(name) = self.locked.clone() {
            let owner = self.owner.clone();
            sqlx::query("UPDATE bfm_locks SET expires_at = ? WHERE name = ? AND owner = ?")
                .bind(now_ms() + LEASE.as_millis() as i64)
                .bind(name)
                .bind(owner)
                .execute(&mut **self.conn())
                .await?;
        }
        Ok(())
    }
}

#[async_trait]
impl Session for SqliteSession {
    async fn lock(&mut self, schema: &str, timeout: Duration) -> Result<Duration, TargetError> {
        let name = format!("{}\0{}", self.shared.name, schema);
        let mut backoff = Backoff::new(timeout);
        loop {
            let now = now_ms();
            let owner = self.owner.clone();
            let r = sqlx::query(
                "INSERT INTO bfm_locks (name, owner, expires_at) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at \
                 WHERE bfm_locks.expires_at < ?4 OR bfm_locks.owner = excluded.owner",
            )
            .bind(&name)
            .bind(&owner)
            .bind(now + LEASE.as_millis() as i64)
            .bind(now)
            .execute(&mut **self.conn())
            .await
            .map_err(|e| self.err(e))?;
            if r.rows_affected() == 1 {
                self.locked = Some(name);
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
        if let Some(name) = self.locked.take() {
            let owner = self.owner.clone();
            sqlx::query("DELETE FROM bfm_locks WHERE name = ? AND owner = ?")
                .bind(name)
                .bind(owner)
                .execute(&mut **self.conn())
                .await
                .map_err(|e| self.err(e))?;
        }
        Ok(())
    }

    async fn prepare_schema(&mut self, _schema: &str) -> Result<(), TargetError> {
        Ok(())
    }

    async fn ledger(&mut self, schema: &str) -> Result<HashMap<String, LedgerEntry>, TargetError> {
        let name = self.shared.name.clone();
        let rows = sqlx::query("SELECT * FROM bfm_ledger WHERE schema_name = ? AND connection_name = ?")
            .bind(schema)
            .bind(name)
            .fetch_all(&mut **self.conn())
            .await
            .map_err(|e| self.err(e))?;
        let mut out = HashMap::with_capacity(rows.len());
        for row in &rows {
            let e = ledger_entry(row, &self.shared.name)?;
            out.insert(e.migration_id.clone(), e);
        }
        Ok(out)
    }

    async fn schema_exists(&mut self, schema: &str) -> Result<bool, TargetError> {
        Ok(schema.is_empty() || schema == "main")
    }

    async fn table_exists(&mut self, _default_schema: &str, table: &str) -> Result<bool, TargetError> {
        let table = table.rsplit('.').next().unwrap_or(table);
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sqlite_master WHERE type IN ('table', 'view') AND name = ?")
            .bind(table)
            .fetch_one(&mut **self.conn())
            .await
            .map_err(|e| self.err(e))?;
        Ok(n > 0)
    }

    async fn apply(&mut self, step: &StepScript<'_>) -> Result<StepOutcome, StepFailure> {
        if let Err(e) = self.renew().await {
            return Err(StepFailure {
                error: format!("renewing the lock failed: {}", describe(&e)),
                statement_index: None,
                statement: None,
                statements_done: 0,
                partial: false,
            });
        }
        let n = step.statements.len();
        if !step.transactional {
            for (i, stmt) in step.statements.iter().enumerate().skip(step.resume_from) {
                if let Err(e) = sqlx::raw_sql(AssertSqlSafe(stmt.clone())).execute(&mut **self.conn()).await {
                    return Err(StepFailure {
                        error: describe(&e),
                        statement_index: Some(i),
                        statement: Some(stmt.clone()),
                        statements_done: i,
                        partial: i > 0,
                    });
                }
            }
            let ledger = self.shared.ledger_write(step);
            return match sqlx::raw_sql(AssertSqlSafe(ledger)).execute(&mut **self.conn()).await {
                Ok(_) => Ok(StepOutcome { statements: n }),
                Err(e) => Err(StepFailure {
                    error: format!("recording the ledger row failed: {}", describe(&e)),
                    statement_index: None,
                    statement: None,
                    statements_done: n,
                    partial: true,
                }),
            };
        }
        let sql = format!(
            "BEGIN IMMEDIATE;\nSAVEPOINT {STEP_SAVEPOINT};\n{}\n;\nRELEASE {STEP_SAVEPOINT};\n{};\nCOMMIT;",
            step.sql,
            self.shared.ledger_write(step)
        );
        let mut done = 0usize;
        let mut failure = None;
        {
            let mut stream = sqlx::raw_sql(AssertSqlSafe(sql)).execute_many(&mut **self.conn());
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
        match failure {
            None => Ok(StepOutcome { statements: n }),
            Some(e) => {
                let _ = sqlx::raw_sql("ROLLBACK").execute(&mut **self.conn()).await;
                // Answers: BEGIN, SAVEPOINT, the script's statements, RELEASE, ledger, COMMIT.
                let index = (done >= PREFIX && done - PREFIX < n).then(|| done - PREFIX);
                let ended = done == PREFIX + n;
                let error = if ended {
                    format!(
                        "the script ended the step's transaction (COMMIT, ROLLBACK or similar): the ledger row was not written ({}); \
                         remove the transaction control, or mark the migration -- bfm-no-transaction",
                        describe(&e)
                    )
                } else {
                    describe(&e)
                };
                Err(StepFailure {
                    error,
                    statement: index.and_then(|i| step.statements.get(i).cloned()),
                    statement_index: index,
                    statements_done: 0,
                    // What ran before the script's COMMIT stayed.
                    partial: ended || index.is_some_and(|i| crate::postgres::ends_transaction_before(step.statements, i)),
                })
            }
        }
    }
}
