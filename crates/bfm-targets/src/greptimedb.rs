//! GreptimeDB target, over GreptimeDB's HTTP SQL API.
//!
//! Every statement is `POST <base>/v1/sql?db=<database>` with the form body `sql=<text>`, basic
//! auth when a username is configured, as documented in
//! <https://docs.greptime.com/reference/sql/http-api> and
//! <https://docs.greptime.com/user-guide/protocols/http>. A success is a JSON object with an
//! `output` array — `{"records": {"schema": {"column_schemas": [{"name", "data_type"}]}, "rows":
//! [[…]]}}` for queries, `{"affectedrows": n}` otherwise — and `execution_time_ms` (older
//! versions add `"code": 0`); a failure is `{"code": <non-zero>, "error": "…",
//! "execution_time_ms": …}` with a non-2xx HTTP status.
//!
//! The base URL is `http://<host>:<port>` (`https` when the `tls`/`ssl` extra is true); the port
//! defaults to 4000, GreptimeDB's HTTP port ("with default port configuration 4000, the base URL
//! is http://localhost:4000/", <https://docs.greptime.com/user-guide/protocols/http>). BfM used
//! 4001, which is GreptimeDB's gRPC port.
//!
//! Schemas are databases, created on demand (`CREATE DATABASE IF NOT EXISTS` with a quoted
//! identifier); whether one exists is read from the JSON rows of `SHOW DATABASES`, compared
//! exactly. Names and values only ever reach SQL through `Dialect::Greptime`'s quoting helpers.
//!
//! GreptimeDB has no transactions: statements run one by one, a failure reports which statement
//! failed and how many completed (`partial`), and `retry` of a `-- bfm-resumable` migration
//! resumes at the failed statement. The ledger (`bfm_ledger`, in the connection's default
//! database) is written after the statements.
//!
//! Locks: GreptimeDB has no locks and no conditional writes, so a lease row cannot be claimed
//! with a compare-and-set as on SQLite. A session claims a lock by writing its own row
//! (`bfm_locks`, primary key (name, owner), with an expiry), then reading every row of that
//! name: it holds the lock only if no other unexpired claim exists; otherwise it withdraws its
//! row and tries again after a jittered pause. Because each claimant writes before it reads, two
//! claimants can never both see only themselves. The lease is renewed before every step and
//! expires if its holder dies.

use crate::config::{ConnectionConfig, parse_duration, truthy};
use crate::ledger::LedgerAt;
use crate::lock::Backoff;
use crate::{Capabilities, LedgerEntry, Session, StepFailure, StepOutcome, StepScript, Target, TargetError, split_table};
use async_trait::async_trait;
use bfm_core::sql::Dialect;
use bfm_core::{BackendKind, Checksum, Direction};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::OnceCell;

/// GreptimeDB's HTTP port.
pub const DEFAULT_PORT: u16 = 4000;
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a lock lease lasts without renewal; renewed before every step.
const LEASE: Duration = Duration::from_secs(60);
/// The database every GreptimeDB has.
const PUBLIC: &str = "public";

const D: Dialect = Dialect::Greptime;

/// One result of a statement (an element of `output`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Output {
    #[serde(default)]
    pub records: Option<Records>,
    #[serde(default)]
    pub affectedrows: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Records {
    #[serde(default)]
    pub schema: Option<RecordsSchema>,
    #[serde(default)]
    pub rows: Vec<Vec<Value>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct RecordsSchema {
    #[serde(default)]
    pub column_schemas: Vec<ColumnSchema>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ColumnSchema {
    pub name: String,
    #[serde(default)]
    pub data_type: String,
}

#[derive(Debug, Deserialize)]
struct Response {
    #[serde(default)]
    code: Option<i64>,
    #[serde(default)]
    output: Vec<Output>,
    #[serde(default)]
    error: Option<String>,
}

/// Parse a `/v1/sql` answer: the outputs, or the error as GreptimeDB states it.
pub fn parse_response(status: u16, body: &str) -> Result<Vec<Output>, String> {
    let parsed: Result<Response, _> = serde_json::from_str(body);
    match parsed {
        Ok(r) if (200..300).contains(&status) && r.error.is_none() && r.code.unwrap_or(0) == 0 => Ok(r.output),
        Ok(r) => {
            let code = r.code.map(|c| format!(" (code {c})")).unwrap_or_default();
            Err(format!("{}{code}", r.error.unwrap_or_else(|| format!("HTTP {status}"))))
        }
        Err(_) => {
            let mut text: String = body.chars().take(500).collect();
            if text.trim().is_empty() {
                text = "empty body".into();
            }
            Err(format!("HTTP {status}: {text}"))
        }
    }
}

impl Records {
    /// Rows as maps from column name to value (columns by position if the schema is missing).
    pub fn maps(&self) -> Vec<HashMap<String, Value>> {
        let names: Vec<String> = match &self.schema {
            Some(s) => s.column_schemas.iter().map(|c| c.name.clone()).collect(),
            None => Vec::new(),
        };
        self.rows
            .iter()
            .map(|row| row.iter().enumerate().map(|(i, v)| (names.get(i).cloned().unwrap_or_else(|| i.to_string()), v.clone())).collect())
            .collect()
    }
}

fn text(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

fn int(v: Option<&Value>) -> i64 {
    match v {
        Some(Value::Number(n)) => n.as_i64().unwrap_or(0),
        Some(Value::String(s)) => s.parse().unwrap_or(0),
        _ => 0,
    }
}

/// The records of the first output that has any.
fn records(outputs: Vec<Output>) -> Records {
    outputs.into_iter().find_map(|o| o.records).unwrap_or_default()
}

/// A ledger row, strictly: GreptimeDB has no NOT NULL or types that would have refused a bad
/// value, so each column is checked here — a missing value, a number that is none or a time
/// that does not parse is corrupt, not an empty string, 0 or 1970.
fn ledger_entry(r: &HashMap<String, Value>, connection: &str) -> Result<LedgerEntry, TargetError> {
    let key = |column: &'static str| match r.get(column) {
        Some(Value::String(s)) => Some(s.clone()),
        _ => None,
    };
    let (migration_id, schema) = (key("migration_id"), key("schema_name"));
    let at = LedgerAt::new(connection, "bfm_ledger", migration_id.as_deref().unwrap_or("?"), schema.as_deref().unwrap_or("?"));
    let string = |column: &'static str| match r.get(column) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => Err(at.corrupt(column, format_args!("{other} where text is expected"))),
        None => Err(at.corrupt(column, "missing")),
    };
    let algorithm = match r.get("checksum_algorithm") {
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) => s.parse().ok(),
        _ => None,
    }
    .ok_or_else(|| at.corrupt("checksum_algorithm", format_args!("{:?} is not a number", r.get("checksum_algorithm"))))?;
    let applied = string("applied_at")?;
    let applied_at = DateTime::parse_from_rfc3339(&applied)
        .map_err(|e| at.corrupt("applied_at", format_args!("{applied:?} is not an RFC 3339 time ({e})")))?
        .with_timezone(&Utc);
    Ok(LedgerEntry {
        migration_id: string("migration_id")?,
        schema: string("schema_name")?,
        version: string("version")?,
        checksum: Checksum { algorithm: at.algorithm(algorithm)?, value: string("checksum")? },
        run_id: string("run_id")?,
        applied_at,
    })
}

/// A schema (database) name as bfm accepts it for GreptimeDB: the request rule
/// `^[A-Za-z_][A-Za-z0-9_]{0,62}$`. (A `-` would be read as `catalog-schema` in the `db`
/// parameter.)
pub fn check_schema(schema: &str) -> Result<(), String> {
    if schema.is_empty() { Ok(()) } else { bfm_core::validate_schema_name(schema) }
}

struct Shared {
    name: String,
    base: String,
    /// The connection's default database: per-tenant runs without a schema and the ledger.
    database: String,
    username: Option<String>,
    password: Option<String>,
    http: reqwest::Client,
    ready: OnceCell<()>,
}

pub struct GreptimeTarget {
    shared: Arc<Shared>,
}

/// `http(s)://host:port` of a connection: its URL, else `host` (default `localhost`) and `port`
/// (default 4000), `https` when the `tls` or `ssl` extra is true.
pub fn base_url(config: &ConnectionConfig) -> Result<String, TargetError> {
    let bad = |message: String| TargetError::Config { connection: config.name.clone(), message };
    if let Some(url) = &config.url {
        let url = url.trim_end_matches('/');
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(bad(format!("GreptimeDB URL must start with http:// or https://, not {:?}", crate::redact_url(url))));
        }
        return Ok(url.to_string());
    }
    let tls = truthy(config.extra("tls")) || truthy(config.extra("ssl"));
    let scheme = if tls { "https" } else { "http" };
    let host = config.host.as_deref().unwrap_or("localhost");
    let host = if host.contains(':') && !host.starts_with('[') { format!("[{host}]") } else { host.to_string() };
    Ok(format!("{scheme}://{host}:{}", config.port.unwrap_or(DEFAULT_PORT)))
}

impl GreptimeTarget {
    pub fn new(config: &ConnectionConfig) -> Result<GreptimeTarget, TargetError> {
        let bad = |message: String| TargetError::Config { connection: config.name.clone(), message };
        let base = base_url(config)?;
        let database = config.database.clone().unwrap_or_else(|| PUBLIC.to_string());
        check_schema(&database).map_err(|e| bad(format!("database: {e}")))?;
        let timeout = match config.extra("timeout") {
            Some(t) => parse_duration(t).ok_or_else(|| bad(format!("{}_TIMEOUT: invalid duration {t:?}", config.name.to_uppercase())))?,
            None => DEFAULT_TIMEOUT,
        };
        crate::ensure_crypto_provider();
        let mut builder = reqwest::Client::builder().timeout(timeout).connect_timeout(Duration::from_secs(10)).user_agent("bfm");
        if let Some(ca) = config.extra("cacert").or(config.extra("ca_cert")).or(config.extra("sslrootcert")) {
            let pem = std::fs::read(ca).map_err(|e| bad(format!("cannot read the CA certificate {ca}: {e}")))?;
            let cert = reqwest::Certificate::from_pem(&pem).map_err(|e| bad(format!("invalid CA certificate {ca}: {e}")))?;
            builder = builder.add_root_certificate(cert);
        }
        let http = builder.build().map_err(|e| bad(format!("HTTP client: {e}")))?;
        Ok(GreptimeTarget {
            shared: Arc::new(Shared {
                name: config.name.clone(),
                base,
                database,
                username: config.username.clone().filter(|u| !u.is_empty()),
                password: config.password.clone(),
                http,
                ready: OnceCell::new(),
            }),
        })
    }

    /// The base URL requests go to.
    pub fn base(&self) -> &str {
        &self.shared.base
    }

    /// Run one statement in a database (for tools and tests).
    pub async fn sql(&self, database: &str, statement: &str) -> Result<Vec<Output>, TargetError> {
        self.shared.sql(database, statement).await.map_err(|e| self.shared.err(e))
    }
}

impl Shared {
    fn err(&self, message: impl std::fmt::Display) -> TargetError {
        TargetError::Other { connection: self.name.clone(), message: format!("GreptimeDB: {message}") }
    }

    /// One statement, one request.
    async fn sql(&self, database: &str, statement: &str) -> Result<Vec<Output>, String> {
        let mut req = self.http.post(format!("{}/v1/sql", self.base)).query(&[("db", database)]).form(&[("sql", statement)]);
        if let Some(user) = &self.username {
            req = req.basic_auth(user, self.password.as_deref());
        }
        let resp = req.send().await.map_err(|e| format!("request to {} failed: {e}", self.base))?;
        let status = resp.status().as_u16();
        let body = resp.text().await.map_err(|e| format!("reading the answer of {} failed: {e}", self.base))?;
        parse_response(status, &body)
    }

    async fn query(&self, database: &str, statement: &str) -> Result<Vec<HashMap<String, Value>>, TargetError> {
        self.sql(database, statement).await.map(|o| records(o).maps()).map_err(|e| self.err(e))
    }

    async fn databases(&self) -> Result<Vec<String>, TargetError> {
        let rows = self.sql(PUBLIC, "SHOW DATABASES").await.map_err(|e| self.err(e))?;
        // One column (`Database`); take it by position so a renamed header does not matter.
        Ok(records(rows).rows.iter().filter_map(|r| r.first()).map(|v| text(Some(v))).collect())
    }

    async fn create_database(&self, database: &str) -> Result<(), TargetError> {
        check_schema(database).map_err(|e| self.err(e))?;
        if database == PUBLIC || self.databases().await?.iter().any(|d| d == database) {
            return Ok(());
        }
        let sql = format!("CREATE DATABASE IF NOT EXISTS {}", D.quote_ident(database));
        self.sql(PUBLIC, &sql).await.map(|_| ()).map_err(|e| self.err(e))
    }

    /// The ledger and lock tables, once per process.
    async fn ensure_tables(&self) -> Result<(), TargetError> {
        self.ready
            .get_or_try_init(|| async {
                self.create_database(&self.database).await?;
                for ddl in [
                    "CREATE TABLE IF NOT EXISTS bfm_ledger (\
                     connection_name STRING, schema_name STRING, migration_id STRING, version STRING, \
                     checksum STRING, checksum_algorithm BIGINT, run_id STRING, applied_at STRING, \
                     ts TIMESTAMP(3) NOT NULL, TIME INDEX (ts), PRIMARY KEY (connection_name, schema_name, migration_id))",
                    "CREATE TABLE IF NOT EXISTS bfm_locks (\
                     name STRING, owner STRING, expires_at BIGINT, \
                     ts TIMESTAMP(3) NOT NULL, TIME INDEX (ts), PRIMARY KEY (name, owner))",
                ] {
                    self.sql(&self.database, ddl).await.map_err(|e| self.err(e))?;
                }
                Ok(())
            })
            .await
            .map(|_| ())
    }

    fn ledger_write(&self, step: &StepScript<'_>) -> String {
        let q = |s: &str| D.quote_literal(s);
        match step.direction {
            // Same primary key and time index: the row is replaced (last write wins).
            Direction::Up => format!(
                "INSERT INTO bfm_ledger (connection_name, schema_name, migration_id, version, checksum, checksum_algorithm, run_id, applied_at, ts) \
                 VALUES ({}, {}, {}, {}, {}, {}, {}, {}, 0)",
                q(&self.name),
                q(step.schema),
                q(step.migration_id),
                q(step.version),
                q(&step.checksum.value),
                step.checksum.algorithm,
                q(step.run_id),
                q(&Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
            ),
            Direction::Down => format!(
                "DELETE FROM bfm_ledger WHERE connection_name = {} AND schema_name = {} AND migration_id = {}",
                q(&self.name),
                q(step.schema),
                q(step.migration_id)
            ),
        }
    }

    async fn ledger_query(&self, filter: &str) -> Result<Vec<LedgerEntry>, TargetError> {
        let sql = format!(
            "SELECT migration_id, schema_name, version, checksum, checksum_algorithm, run_id, applied_at FROM bfm_ledger \
             WHERE connection_name = {}{filter}",
            D.quote_literal(&self.name)
        );
        let rows = self.query(&self.database, &sql).await?;
        rows.iter().map(|r| ledger_entry(r, &self.name)).collect()
    }
}

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

static OWNER_SEQ: AtomicU64 = AtomicU64::new(0);

#[async_trait]
impl Target for GreptimeTarget {
    fn name(&self) -> &str {
        &self.shared.name
    }

    fn kind(&self) -> BackendKind {
        BackendKind::Greptimedb
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities { transactional_ddl: false, schemas: true }
    }

    async fn ping(&self) -> Result<(), TargetError> {
        match tokio::time::timeout(Duration::from_secs(3), self.shared.sql(PUBLIC, "SELECT 1")).await {
            Ok(r) => r.map(|_| ()).map_err(|e| self.shared.err(e)),
            Err(_) => Err(self.shared.err("no answer within 3 s")),
        }
    }

    async fn session(&self, _run_id: &str) -> Result<Box<dyn Session>, TargetError> {
        self.shared.ensure_tables().await?;
        let owner = format!("{}-{}-{}", std::process::id(), OWNER_SEQ.fetch_add(1, Ordering::Relaxed), now_ms());
        Ok(Box::new(GreptimeSession { shared: self.shared.clone(), owner, locked: None }))
    }

    async fn ledger_rows(&self, run_id: Option<&str>) -> Result<Vec<LedgerEntry>, TargetError> {
        self.shared.ensure_tables().await?;
        let filter = run_id.map(|r| format!(" AND run_id = {}", D.quote_literal(r))).unwrap_or_default();
        self.shared.ledger_query(&filter).await
    }

    async fn close(&self) {}
}

pub struct GreptimeSession {
    shared: Arc<Shared>,
    owner: String,
    locked: Option<String>,
}

impl Drop for GreptimeSession {
    fn drop(&mut self) {
        // Withdraw a claim that was not released explicitly; if this cannot run, it expires.
        if let (Some(name), Ok(handle)) = (self.locked.take(), tokio::runtime::Handle::try_current()) {
            let shared = self.shared.clone();
            let sql = withdraw_sql(&name, &self.owner);
            handle.spawn(async move {
                let _ = shared.sql(&shared.database, &sql).await;
            });
        }
    }
}

fn withdraw_sql(name: &str, owner: &str) -> String {
    format!("DELETE FROM bfm_locks WHERE name = {} AND owner = {}", D.quote_literal(name), D.quote_literal(owner))
}

impl GreptimeSession {
    fn check(&self, schema: &str) -> Result<(), TargetError> {
        check_schema(schema).map_err(|e| TargetError::Config { connection: self.shared.name.clone(), message: e })
    }

    fn database<'a>(&'a self, schema: &'a str) -> &'a str {
        if schema.is_empty() { &self.shared.database } else { schema }
    }

    async fn claim(&self, name: &str) -> Result<(), TargetError> {
        let sql = format!(
            "INSERT INTO bfm_locks (name, owner, expires_at, ts) VALUES ({}, {}, {}, 0)",
            D.quote_literal(name),
            D.quote_literal(&self.owner),
            now_ms() + LEASE.as_millis() as i64
        );
        self.shared.sql(&self.shared.database, &sql).await.map(|_| ()).map_err(|e| self.shared.err(e))
    }

    async fn withdraw(&self, name: &str) -> Result<(), TargetError> {
        self.shared.sql(&self.shared.database, &withdraw_sql(name, &self.owner)).await.map(|_| ()).map_err(|e| self.shared.err(e))
    }

    /// Whether another unexpired claim on `name` exists.
    async fn contested(&self, name: &str) -> Result<bool, TargetError> {
        let sql = format!("SELECT owner, expires_at FROM bfm_locks WHERE name = {}", D.quote_literal(name));
        let now = now_ms();
        let rows = self.shared.query(&self.shared.database, &sql).await?;
        Ok(rows.iter().any(|r| text(r.get("owner")) != self.owner && int(r.get("expires_at")) >= now))
    }
}

#[async_trait]
impl Session for GreptimeSession {
    async fn lock(&mut self, schema: &str, timeout: Duration) -> Result<Duration, TargetError> {
        self.check(schema)?;
        let name = format!("{}\u{1f}{}", self.shared.name, schema);
        let mut backoff = Backoff::new(timeout);
        let mut attempt = 0u64;
        loop {
            self.claim(&name).await?;
            if !self.contested(&name).await? {
                // Tidy up claims of holders that died (best effort).
                let stale = format!("DELETE FROM bfm_locks WHERE name = {} AND expires_at < {}", D.quote_literal(&name), now_ms());
                let _ = self.shared.sql(&self.shared.database, &stale).await;
                self.locked = Some(name);
                return Ok(backoff.elapsed());
            }
            self.withdraw(&name).await?;
            // Jitter, so that two claimants that keep meeting drift apart.
            attempt += 1;
            let jitter = (now_ms() as u64).wrapping_mul(6364136223846793005).wrapping_add(attempt) % 40;
            tokio::time::sleep(Duration::from_millis(jitter)).await;
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
            self.withdraw(&name).await?;
        }
        Ok(())
    }

    async fn prepare_schema(&mut self, schema: &str) -> Result<(), TargetError> {
        self.check(schema)?;
        if schema.is_empty() {
            return Ok(());
        }
        self.shared.create_database(schema).await
    }

    async fn ledger(&mut self, schema: &str) -> Result<HashMap<String, LedgerEntry>, TargetError> {
        self.check(schema)?;
        let rows = self.shared.ledger_query(&format!(" AND schema_name = {}", D.quote_literal(schema))).await?;
        Ok(rows.into_iter().map(|e| (e.migration_id.clone(), e)).collect())
    }

    async fn schema_exists(&mut self, schema: &str) -> Result<bool, TargetError> {
        if schema.is_empty() {
            return Ok(true);
        }
        Ok(self.shared.databases().await?.iter().any(|d| d == schema))
    }

    async fn table_exists(&mut self, default_schema: &str, table: &str) -> Result<bool, TargetError> {
        let (schema, table) = split_table(default_schema, table);
        let schema = self.database(schema).to_string();
        let sql = format!(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = {} AND table_name = {}",
            D.quote_literal(&schema),
            D.quote_literal(table)
        );
        Ok(!self.shared.query(&self.shared.database, &sql).await?.is_empty())
    }

    async fn apply(&mut self, step: &StepScript<'_>) -> Result<StepOutcome, StepFailure> {
        let fail = |error: String, index: Option<usize>, done: usize, partial: bool| StepFailure {
            error,
            statement: index.and_then(|i| step.statements.get(i).cloned()),
            statement_index: index,
            statements_done: done,
            partial,
        };
        if let Err(e) = self.check(step.schema) {
            return Err(fail(e.to_string(), None, step.resume_from, false));
        }
        // Renew the lease before a step that may take long.
        if let Some(name) = self.locked.clone()
            && let Err(e) = self.claim(&name).await
        {
            return Err(fail(format!("renewing the lock failed: {e}"), None, step.resume_from, false));
        }
        let db = self.database(step.schema).to_string();
        let n = step.statements.len();
        for (i, statement) in step.statements.iter().enumerate().skip(step.resume_from) {
            if let Err(e) = self.shared.sql(&db, statement).await {
                // No transaction: what ran before this statement stays applied.
                return Err(fail(e, Some(i), i, i > 0));
            }
        }
        if let Err(e) = self.shared.sql(&self.shared.database, &self.shared.ledger_write(step)).await {
            return Err(fail(format!("recording the ledger row failed: {e}"), None, n, true));
        }
        Ok(StepOutcome { statements: n })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_answers_are_parsed() {
        // Shapes from https://docs.greptime.com/user-guide/protocols/http and the SQL HTTP API page.
        let ok = r#"{"code":0,"output":[{"affectedrows":1}],"execution_time_ms":10}"#;
        assert_eq!(parse_response(200, ok).unwrap()[0].affectedrows, Some(1));
        let q = r#"{"output":[{"records":{"schema":{"column_schemas":[{"name":"Database","data_type":"String"}]},"rows":[["public"],["logs_a"]]}}],"execution_time_ms":2}"#;
        let r = records(parse_response(200, q).unwrap());
        assert_eq!(r.maps()[1]["Database"], Value::String("logs_a".into()));
        let err = r#"{"code":4004,"error":"Database not found: greptime.x","execution_time_ms":0}"#;
        assert_eq!(parse_response(404, err).unwrap_err(), "Database not found: greptime.x (code 4004)");
        assert_eq!(parse_response(200, r#"{"code":1004,"error":"bad"}"#).unwrap_err(), "bad (code 1004)");
        assert!(parse_response(502, "<html>bad gateway</html>").unwrap_err().starts_with("HTTP 502"));
    }

    #[test]
    fn base_url_defaults_to_the_http_port_and_follows_tls() {
        let mut c = ConnectionConfig::new("logs", BackendKind::Greptimedb);
        c.host = Some("gt".into());
        assert_eq!(base_url(&c).unwrap(), "http://gt:4000");
        c.extras.insert("ssl".into(), "True".into());
        c.port = Some(4443);
        assert_eq!(base_url(&c).unwrap(), "https://gt:4443");
        c.url = Some("https://cloud.example/".into());
        assert_eq!(base_url(&c).unwrap(), "https://cloud.example");
        c.url = Some("ftp://x".into());
        assert!(base_url(&c).is_err());
    }

    #[test]
    fn schemas_are_plain_names() {
        assert!(check_schema("tenant_1").is_ok() && check_schema("").is_ok());
        for bad in ["a-b", "a`b", "x; DROP DATABASE y", "../a"] {
            assert!(check_schema(bad).is_err(), "{bad}");
        }
    }
}
