//! MySQL / MariaDB target.
//!
//! DDL commits implicitly on MySQL, so a migration with DDL cannot be atomic: its statements
//! run one by one, and a failure reports which statement failed and whether earlier statements
//! stayed applied. A script with only DML (no statement that commits implicitly) runs in a
//! transaction with its ledger row, unless it says `-- bfm-no-transaction`: a failure leaves
//! nothing behind. That transaction is marked with a savepoint, released just before the ledger
//! write: if the script ended the transaction, the savepoint is gone and the write fails. A
//! schema is a database (`USE` for the step, then back to the connection's database). The lock
//! is `GET_LOCK(name, 0)` polled until the timeout.

use crate::config::ConnectionConfig;
use crate::ledger::LedgerAt;
use crate::lock::{Backoff, lock_key};
use crate::{
    Capabilities, LedgerEntry, Session, StepFailure, StepOutcome, StepScript, Target, TargetError, commits_implicitly, split_table,
};
use async_trait::async_trait;
use bfm_core::sql::{self, Dialect};
use bfm_core::{BackendKind, Checksum, Direction};
use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions, MySqlSslMode};
use sqlx::pool::PoolConnection;
use sqlx::{AssertSqlSafe, MySql, Row};
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::OnceCell;

struct Shared {
    name: String,
    pool: MySqlPool,
    database: String,
    ledger_ready: OnceCell<()>,
}

pub struct MySqlTarget {
    shared: Arc<Shared>,
}

pub fn connect_options(config: &ConnectionConfig) -> Result<MySqlConnectOptions, TargetError> {
    let bad = |message: String| TargetError::Config { connection: config.name.clone(), message };
    let mut o = match &config.url {
        Some(url) => MySqlConnectOptions::from_str(url).map_err(|e| bad(format!("invalid MySQL URL: {e}")))?,
        None => MySqlConnectOptions::new().host("localhost").port(3306).username("root"),
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
    if let Some(mode) = config.extra("ssl_mode").or(config.extra("sslmode")) {
        o = o.ssl_mode(MySqlSslMode::from_str(mode).map_err(|_| bad(format!("invalid ssl mode {mode:?}")))?);
    } else if !config.url.as_deref().is_some_and(|u| u.contains("ssl-mode=") || u.contains("sslmode=")) && crate::is_loopback(o.get_host())
    {
        o = o.ssl_mode(MySqlSslMode::Disabled);
    }
    Ok(o)
}

impl MySqlTarget {
    pub fn new(config: &ConnectionConfig) -> Result<MySqlTarget, TargetError> {
        let options = connect_options(config)?;
        let database = options.get_database().map(str::to_string).ok_or_else(|| TargetError::Config {
            connection: config.name.clone(),
            message: format!("a MySQL connection needs a database ({}_DB_NAME) for bfm's ledger table", config.name.to_uppercase()),
        })?;
        let pool = MySqlPoolOptions::new()
            .max_connections(config.pool.max_connections.max(1))
            .min_connections(config.pool.min_connections)
            .max_lifetime(config.pool.max_lifetime)
            .idle_timeout(config.pool.idle_timeout)
            .acquire_timeout(config.pool.acquire_timeout)
            .test_before_acquire(false)
            .connect_lazy_with(options);
        Ok(MySqlTarget { shared: Arc::new(Shared { name: config.name.clone(), pool, database, ledger_ready: OnceCell::new() }) })
    }
}

impl Shared {
    fn err(&self, e: sqlx::Error) -> TargetError {
        TargetError::db(&self.name, e)
    }

    fn ledger_table(&self) -> String {
        format!("{}.bfm_ledger", Dialect::MySql.quote_ident(&self.database))
    }

    async fn ensure_ledger(&self) -> Result<(), TargetError> {
        self.ledger_ready
            .get_or_try_init(|| async {
                let sql = format!(
                    "CREATE TABLE IF NOT EXISTS {} (
                        migration_id VARCHAR(255) NOT NULL,
                        schema_name VARCHAR(128) NOT NULL,
                        connection_name VARCHAR(128) NOT NULL,
                        version VARCHAR(64) NOT NULL,
                        checksum VARCHAR(128) NOT NULL,
                        checksum_algorithm INT NOT NULL,
                        run_id VARCHAR(64) NOT NULL,
                        applied_at DATETIME(6) NOT NULL,
                        PRIMARY KEY (migration_id, schema_name)
                    )",
                    self.ledger_table()
                );
                sqlx::raw_sql(AssertSqlSafe(sql)).execute(&self.pool).await.map_err(|e| self.err(e))?;
                Ok(())
            })
            .await
            .map(|_| ())
    }

    fn ledger_write(&self, step: &StepScript<'_>) -> String {
        let q = |s: &str| Dialect::MySql.quote_literal(s);
        match step.direction {
            Direction::Up => format!(
                "INSERT INTO {} (migration_id, schema_name, connection_name, version, checksum, checksum_algorithm, run_id, applied_at) \
                 VALUES ({}, {}, {}, {}, {}, {}, {}, UTC_TIMESTAMP(6)) ON DUPLICATE KEY UPDATE version = VALUES(version), \
                 checksum = VALUES(checksum), checksum_algorithm = VALUES(checksum_algorithm), run_id = VALUES(run_id), applied_at = VALUES(applied_at)",
                self.ledger_table(),
                q(step.migration_id),
                q(step.schema),
                q(&self.name),
                q(step.version),
                q(&step.checksum.value),
                step.checksum.algorithm,
                q(step.run_id)
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

/// A ledger row; sqlx already refuses the zero date (`0000-00-00`) in `applied_at`.
fn ledger_entry(row: &sqlx::mysql::MySqlRow, connection: &str, table: &str) -> Result<LedgerEntry, TargetError> {
    let migration_id: String = row.try_get("migration_id").map_err(|e| TargetError::db(connection, e))?;
    let schema: String = row.try_get("schema_name").map_err(|e| TargetError::db(connection, e))?;
    let at = LedgerAt::new(connection, table, &migration_id, &schema);
    Ok(LedgerEntry {
        version: at.get(row, "version")?,
        checksum: Checksum {
            algorithm: at.algorithm(at.get::<_, i32>(row, "checksum_algorithm")?.into())?,
            value: at.get(row, "checksum")?,
        },
        run_id: at.get(row, "run_id")?,
        applied_at: at.get::<_, chrono::NaiveDateTime>(row, "applied_at")?.and_utc(),
        migration_id,
        schema,
    })
}

fn describe(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Database(db) => match db.code() {
            Some(code) => format!("{} (error {code})", db.message()),
            None => db.message().to_string(),
        },
        other => other.to_string(),
    }
}

#[async_trait]
impl Target for MySqlTarget {
    fn name(&self) -> &str {
        &self.shared.name
    }

    fn kind(&self) -> BackendKind {
        BackendKind::Mysql
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities { transactional_ddl: false, schemas: true }
    }

    async fn ping(&self) -> Result<(), TargetError> {
        match tokio::time::timeout(Duration::from_secs(3), sqlx::query("SELECT 1").execute(&self.shared.pool)).await {
            Ok(r) => r.map(|_| ()).map_err(|e| self.shared.err(e)),
            Err(_) => Err(TargetError::Other { connection: self.shared.name.clone(), message: "no answer within 3 s".into() }),
        }
    }

    async fn session(&self, _run_id: &str) -> Result<Box<dyn Session>, TargetError> {
        self.shared.ensure_ledger().await?;
        let conn = self.shared.pool.acquire().await.map_err(|e| self.shared.err(e))?;
        Ok(Box::new(MySqlSession { shared: self.shared.clone(), conn, locked: None }))
    }

    async fn ledger_rows(&self, run_id: Option<&str>) -> Result<Vec<LedgerEntry>, TargetError> {
        self.shared.ensure_ledger().await?;
        let sql = format!(
            "SELECT migration_id, schema_name, version, checksum, checksum_algorithm, run_id, applied_at FROM {} WHERE connection_name = ? AND (? IS NULL OR run_id = ?)",
            self.shared.ledger_table()
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(&self.shared.name)
            .bind(run_id)
            .bind(run_id)
            .fetch_all(&self.shared.pool)
            .await
            .map_err(|e| self.shared.err(e))?;
        let table = self.shared.ledger_table();
        rows.iter().map(|r| ledger_entry(r, &self.shared.name, &table)).collect()
    }

    async fn list_schemas(&self, pattern: &str) -> Result<Vec<String>, TargetError> {
        sqlx::query_scalar(
            "SELECT CAST(schema_name AS CHAR) FROM information_schema.schemata WHERE schema_name LIKE ? \
             AND schema_name NOT IN ('mysql', 'information_schema', 'performance_schema', 'sys') ORDER BY 1",
        )
        .bind(pattern)
        .fetch_all(&self.shared.pool)
        .await
        .map_err(|e| self.shared.err(e))
    }

    async fn query_schemas(&self, sql: &str) -> Result<Vec<String>, TargetError> {
        let rows = sqlx::raw_sql(AssertSqlSafe(sql.to_string())).fetch_all(&self.shared.pool).await.map_err(|e| self.shared.err(e))?;
        rows.iter().map(|r| r.try_get::<String, _>(0)).collect::<Result<_, _>>().map_err(|e| self.shared.err(e))
    }

    async fn close(&self) {
        self.shared.pool.close().await;
    }
}

pub struct MySqlSession {
    shared: Arc<Shared>,
    conn: PoolConnection<MySql>,
    locked: Option<String>,
}

impl Drop for MySqlSession {
    fn drop(&mut self) {
        if self.locked.is_some() {
            self.conn.close_on_drop();
        }
    }
}

impl MySqlSession {
    fn err(&self, e: sqlx::Error) -> TargetError {
        self.shared.err(e)
    }

    async fn exec(&mut self, sql: String) -> Result<(), sqlx::Error> {
        sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut *self.conn).await.map(|_| ())
    }
}

#[async_trait]
impl Session for MySqlSession {
    async fn lock(&mut self, schema: &str, timeout: Duration) -> Result<Duration, TargetError> {
        let name = format!("bfm:{:016x}", lock_key(&self.shared.name, schema));
        let mut backoff = Backoff::new(timeout);
        loop {
            let got: Option<i64> =
                sqlx::query_scalar("SELECT GET_LOCK(?, 0)").bind(&name).fetch_one(&mut *self.conn).await.map_err(|e| self.err(e))?;
            if got == Some(1) {
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
        if let Some(name) = self.locked.take()
            && let Err(e) = sqlx::query("SELECT RELEASE_LOCK(?)").bind(&name).execute(&mut *self.conn).await
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
        self.exec(format!("CREATE DATABASE IF NOT EXISTS {}", Dialect::MySql.quote_ident(schema))).await.map_err(|e| self.err(e))
    }

    async fn ledger(&mut self, schema: &str) -> Result<HashMap<String, LedgerEntry>, TargetError> {
        let sql = format!(
            "SELECT migration_id, schema_name, version, checksum, checksum_algorithm, run_id, applied_at FROM {} WHERE schema_name = ? AND connection_name = ?",
            self.shared.ledger_table()
        );
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
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name = ?")
            .bind(schema)
            .fetch_one(&mut *self.conn)
            .await
            .map_err(|e| self.err(e))?;
        Ok(n > 0)
    }

    async fn table_exists(&mut self, default_schema: &str, table: &str) -> Result<bool, TargetError> {
        let db = self.shared.database.clone();
        let default_schema = if default_schema.is_empty() { db.as_str() } else { default_schema };
        let (schema, table) = split_table(default_schema, table);
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = ? AND table_name = ?")
            .bind(schema)
            .bind(table)
            .fetch_one(&mut *self.conn)
            .await
            .map_err(|e| self.err(e))?;
        Ok(n > 0)
    }

    async fn apply(&mut self, step: &StepScript<'_>) -> Result<StepOutcome, StepFailure> {
        let setup_failed = |e: sqlx::Error| StepFailure {
            error: format!("setting up the step failed: {}", describe(&e)),
            statement_index: None,
            statement: None,
            statements_done: step.resume_from,
            partial: step.resume_from > 0,
        };
        if !step.schema.is_empty() {
            self.exec(format!("USE {}", Dialect::MySql.quote_ident(step.schema))).await.map_err(setup_failed)?;
        }
        let in_transaction = runs_in_transaction(step);
        let result = async {
            if in_transaction {
                self.exec(format!("START TRANSACTION; SAVEPOINT {STEP_SAVEPOINT}")).await.map_err(setup_failed)?;
            }
            let mut committed = step.resume_from > 0;
            for (i, stmt) in step.statements.iter().enumerate().skip(step.resume_from) {
                if let Err(e) = self.exec(stmt.clone()).await {
                    if in_transaction {
                        let _ = self.exec("ROLLBACK".into()).await;
                    }
                    // Without a transaction everything before stays; with one, only what a
                    // statement committed (transaction control that slipped through) does.
                    let partial = if in_transaction { committed } else { i > 0 };
                    return Err(StepFailure {
                        error: describe(&e),
                        statement_index: Some(i),
                        statement: Some(stmt.clone()),
                        statements_done: if partial { i } else { 0 },
                        partial,
                    });
                }
                committed |= sql::transaction_control(stmt, Dialect::MySql).is_some_and(sql::TxControl::escapes_transaction);
            }
            let done = step.statements.len();
            let ledger = self.shared.ledger_write(step);
            // The savepoint exists only if the transaction is still the one started above.
            let finish = if in_transaction { format!("RELEASE SAVEPOINT {STEP_SAVEPOINT}; {ledger}; COMMIT") } else { ledger };
            if let Err(e) = self.exec(finish).await {
                if in_transaction {
                    let _ = self.exec("ROLLBACK".into()).await;
                }
                let error = if in_transaction && error_number(&e) == Some(ER_SP_DOES_NOT_EXIST) {
                    "the script ended the step's transaction (COMMIT, ROLLBACK or similar): the ledger row was not written; \
                     remove the transaction control, or mark the migration -- bfm-no-transaction"
                        .to_string()
                } else {
                    format!("recording the ledger row failed: {}", describe(&e))
                };
                return Err(StepFailure { error, statement_index: None, statement: None, statements_done: done, partial: true });
            }
            Ok(StepOutcome { statements: done })
        }
        .await;
        if !step.schema.is_empty() {
            let back = format!("USE {}", Dialect::MySql.quote_ident(&self.shared.database));
            if self.exec(back).await.is_err() {
                self.conn.close_on_drop();
            }
        }
        result
    }
}

/// The savepoint that marks a step's transaction.
const STEP_SAVEPOINT: &str = "bfm_step";

/// MySQL's "SAVEPOINT … does not exist".
const ER_SP_DOES_NOT_EXIST: u16 = 1305;

fn error_number(e: &sqlx::Error) -> Option<u16> {
    match e {
        sqlx::Error::Database(db) => db.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>().map(|m| m.number()),
        _ => None,
    }
}

/// Whether a step runs in one transaction with its ledger row: when it has only DML (DDL would
/// commit it implicitly), starts from its first statement, and the migration did not opt out
/// with `-- bfm-no-transaction`. The engine asks for a transaction only on targets with
/// transactional DDL, so the opt-out is read from the script itself.
fn runs_in_transaction(step: &StepScript<'_>) -> bool {
    let dml_only = !step.statements.iter().any(|s| commits_implicitly(s));
    let wanted = step.transactional || bfm_core::directives::parse(step.sql).is_ok_and(|d| !d.no_transaction);
    dml_only && step.resume_from == 0 && wanted
}
