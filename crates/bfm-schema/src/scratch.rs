//! The desired state: read the `.sql` sources, load them into a scratch database on the target's
//! server (`CREATE DATABASE … TEMPLATE template0`), introspect it, drop it.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bfm_core::sql::{self, Dialect};
use sha2::{Digest, Sha256};
use tokio_postgres::Config;
use tokio_postgres::error::ErrorPosition;

use crate::db::{self, Conn};
use crate::error::{SchemaError, pg_message, sqlstate};
use crate::ident::quote_ident;
use crate::introspect::{self, Introspection};
use crate::scope::Scope;

/// Prefix of every scratch database name; leftovers older than an hour are dropped.
pub const SCRATCH_PREFIX: &str = "bfm_scratch_";
const LEFTOVER_AGE_SECS: u64 = 3600;
/// Statements per loading transaction (bounded so a large schema does not exhaust the lock table).
const CHUNK_STATEMENTS: usize = 200;

/// One desired-state file.
#[derive(Debug, Clone)]
pub(crate) struct SourceFile {
    pub name: String,
    pub text: String,
}

/// Read the bootstrap file (given, or `bootstrap.sql` in the directory) and every other `*.sql`
/// file of the directory in lexical order.
pub(crate) fn read_sources(dir: &Path, bootstrap: Option<&Path>) -> Result<Vec<SourceFile>, SchemaError> {
    let io = |path: &Path, e: std::io::Error| SchemaError::Io { path: path.to_path_buf(), message: e.to_string() };
    let implicit = dir.join("bootstrap.sql");
    let bootstrap: Option<PathBuf> = match bootstrap {
        Some(b) => Some(b.to_path_buf()),
        None if implicit.is_file() => Some(implicit),
        None => None,
    };
    let boot_canon = bootstrap.as_ref().and_then(|b| b.canonicalize().ok());
    let mut out = Vec::new();
    if let Some(b) = &bootstrap {
        let text = std::fs::read_to_string(b).map_err(|e| io(b, e))?;
        out.push(SourceFile { name: b.display().to_string(), text });
    }
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| io(dir, e))? {
        let entry = entry.map_err(|e| io(dir, e))?;
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("sql") || !path.is_file() {
            continue;
        }
        if boot_canon.is_some() && path.canonicalize().ok() == boot_canon {
            continue;
        }
        paths.push(path);
    }
    if paths.is_empty() {
        return Err(SchemaError::NoSource(dir.to_path_buf()));
    }
    paths.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    for p in paths {
        let text = std::fs::read_to_string(&p).map_err(|e| io(&p, e))?;
        out.push(SourceFile { name: p.display().to_string(), text });
    }
    Ok(out)
}

/// SHA-256 over the file names (base names) and contents, in load order.
pub(crate) fn sources_sha256(files: &[SourceFile]) -> String {
    let mut h = Sha256::new();
    for f in files {
        let base = Path::new(&f.name).file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        h.update(base.as_bytes());
        h.update([0u8]);
        h.update((f.text.len() as u64).to_le_bytes());
        h.update(f.text.as_bytes());
    }
    hex::encode(h.finalize())
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn scratch_name() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    format!("{SCRATCH_PREFIX}{}_{}_{}_{:x}", now_secs(), std::process::id(), n, nanos)
}

/// Drops the scratch database when it goes out of scope without an explicit drop (error paths,
/// cancelled futures).
struct ScratchGuard {
    name: String,
    admin_config: Config,
    armed: bool,
}

impl Drop for ScratchGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let name = self.name.clone();
        let config = self.admin_config.clone();
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                if let Ok(c) = db::connect_config(&config).await {
                    let _ = c.client.batch_execute(&drop_sql(&name)).await;
                }
            });
        }
    }
}

fn drop_sql(name: &str) -> String {
    format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", quote_ident(name))
}

/// Drop scratch databases that a crashed process left behind more than an hour ago.
async fn drop_leftovers(admin: &Conn) {
    let rows = match admin
        .client
        .query("SELECT datname::text FROM pg_database WHERE datname LIKE $1", &[&format!("{}%", SCRATCH_PREFIX.replace('_', "\\_"))])
        .await
    {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(error = %e, "cannot list leftover scratch databases");
            return;
        }
    };
    let now = now_secs();
    for r in rows {
        let Ok(name) = r.try_get::<_, String>(0) else {
            continue;
        };
        let created = name[SCRATCH_PREFIX.len()..].split('_').next().and_then(|s| s.parse::<u64>().ok());
        if let Some(created) = created
            && now.saturating_sub(created) > LEFTOVER_AGE_SECS
        {
            tracing::info!(database = %name, "dropping leftover scratch database");
            if let Err(e) = admin.client.batch_execute(&drop_sql(&name)).await {
                tracing::warn!(database = %name, error = %e, "cannot drop leftover scratch database");
            }
        }
    }
}

/// Timings of a desired-state load.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct LoadTimings {
    pub load_ms: f64,
    pub introspect_ms: f64,
}

/// Load the sources into a fresh scratch database on the server `admin` is connected to,
/// introspect it and drop it (also on error).
pub(crate) async fn load_desired(
    admin: &Conn,
    admin_config: &Config,
    files: &[SourceFile],
    scope: &Scope,
) -> Result<(Introspection, LoadTimings), SchemaError> {
    drop_leftovers(admin).await;
    let name = scratch_name();
    let t0 = Instant::now();
    admin
        .client
        .batch_execute(&format!("CREATE DATABASE {} TEMPLATE template0", quote_ident(&name)))
        .await
        .map_err(|e| SchemaError::db(format!("creating the scratch database {name} (the role needs CREATEDB)"), &e))?;
    let mut guard = ScratchGuard { name: name.clone(), admin_config: admin_config.clone(), armed: true };
    let result = async {
        let mut cfg = admin_config.clone();
        cfg.dbname(&name);
        cfg.application_name("bfm-schema scratch");
        let conn = db::connect_config(&cfg).await?;
        load_files(&conn, files).await?;
        let load_ms = t0.elapsed().as_secs_f64() * 1000.0;
        let t1 = Instant::now();
        let intro = introspect::introspect(&conn, scope).await?;
        let introspect_ms = t1.elapsed().as_secs_f64() * 1000.0;
        drop(conn);
        Ok::<_, SchemaError>((intro, LoadTimings { load_ms, introspect_ms }))
    }
    .await;
    match admin.client.batch_execute(&drop_sql(&name)).await {
        Ok(()) => guard.armed = false,
        Err(e) => {
            tracing::warn!(database = %name, error = %pg_message(&e), "cannot drop the scratch database")
        }
    }
    result
}

struct Stmt<'a> {
    file: &'a str,
    line: usize,
    text: String,
    /// Must run outside a transaction block (e.g. CREATE INDEX CONCURRENTLY).
    alone: bool,
    /// Commit right after it (ALTER TYPE … ADD VALUE: the value is usable only once committed).
    commit_after: bool,
}

fn classify(text: &str) -> (bool, bool) {
    let upper: String = text.chars().take(400).collect::<String>().to_ascii_uppercase();
    let words: Vec<&str> = upper.split_whitespace().collect();
    let alone = (words.first() == Some(&"CREATE") || words.first() == Some(&"DROP") || words.first() == Some(&"REINDEX"))
        && words.contains(&"CONCURRENTLY")
        || words.first() == Some(&"VACUUM");
    let commit_after = words.first() == Some(&"ALTER") && words.get(1) == Some(&"TYPE") && upper.contains(" ADD VALUE ");
    (alone, commit_after)
}

/// Session settings for loading: nothing here is worth an fsync, and function bodies may refer
/// to objects created later in the files.
const LOAD_SETTINGS: &str = "SET synchronous_commit = off; SET check_function_bodies = off; SET client_min_messages = warning";

async fn load_files(conn: &Conn, files: &[SourceFile]) -> Result<(), SchemaError> {
    conn.client.batch_execute(LOAD_SETTINGS).await.map_err(|e| SchemaError::db("preparing the scratch session", &e))?;
    let mut stmts: Vec<Stmt<'_>> = Vec::new();
    for f in files {
        let split =
            sql::split(&f.text, Dialect::Postgres).map_err(|e| SchemaError::Lex { file: f.name.clone(), message: e.to_string() })?;
        for s in split {
            if sql::is_transaction_control(&s.text) {
                continue;
            }
            let (alone, commit_after) = classify(&s.text);
            stmts.push(Stmt { file: &f.name, line: s.line, text: s.text, alone, commit_after });
        }
    }
    let mut i = 0;
    while i < stmts.len() {
        if stmts[i].alone {
            run_alone(conn, &stmts[i]).await?;
            i += 1;
            continue;
        }
        let mut j = i;
        while j < stmts.len() && !stmts[j].alone && j - i < CHUNK_STATEMENTS {
            j += 1;
            if stmts[j - 1].commit_after {
                break;
            }
        }
        run_chunk(conn, &stmts[i..j]).await?;
        i = j;
    }
    Ok(())
}

fn load_error(s: &Stmt<'_>, line_offset: usize, e: &tokio_postgres::Error) -> SchemaError {
    let mut statement: String = s.text.chars().take(300).collect();
    if statement.len() < s.text.len() {
        statement.push('…');
    }
    SchemaError::Load { file: s.file.to_string(), line: s.line + line_offset, statement, message: pg_message(e), sqlstate: sqlstate(e) }
}

async fn run_alone(conn: &Conn, s: &Stmt<'_>) -> Result<(), SchemaError> {
    conn.client.batch_execute(&s.text).await.map_err(|e| load_error(s, position_line(&s.text, &e), &e))
}

/// Line offset (0-based) of the error position inside `text`, if the server gave one.
fn position_line(text: &str, e: &tokio_postgres::Error) -> usize {
    match e.as_db_error().and_then(|d| d.position()) {
        Some(ErrorPosition::Original(pos)) => text.chars().take((*pos as usize).saturating_sub(1)).filter(|c| *c == '\n').count(),
        _ => 0,
    }
}

async fn run_chunk(conn: &Conn, chunk: &[Stmt<'_>]) -> Result<(), SchemaError> {
    let mut body = String::with_capacity(chunk.iter().map(|s| s.text.len() + 3).sum::<usize>() + 16);
    body.push_str("BEGIN;\n");
    // Character offsets (1-based positions are in characters) of each statement.
    let mut starts = Vec::with_capacity(chunk.len());
    let mut chars = body.chars().count();
    for s in chunk {
        starts.push(chars);
        body.push_str(&s.text);
        body.push_str(";\n");
        chars += s.text.chars().count() + 2;
    }
    body.push_str("COMMIT");
    let Err(e) = conn.client.batch_execute(&body).await else {
        return Ok(());
    };
    let _ = conn.client.batch_execute("ROLLBACK").await;
    if let Some(ErrorPosition::Original(pos)) = e.as_db_error().and_then(|d| d.position()) {
        let pos = (*pos as usize).saturating_sub(1);
        if let Some(idx) = starts.iter().rposition(|&st| st <= pos) {
            let s = &chunk[idx];
            let offset = s.text.chars().take(pos - starts[idx]).filter(|c| *c == '\n').count();
            return Err(load_error(s, offset, &e));
        }
    }
    // No position: find the failing statement by running them one by one.
    let _ = conn.client.batch_execute("BEGIN").await;
    for s in chunk {
        if let Err(e2) = conn.client.batch_execute(&s.text).await {
            let _ = conn.client.batch_execute("ROLLBACK").await;
            return Err(load_error(s, position_line(&s.text, &e2), &e2));
        }
    }
    let _ = conn.client.batch_execute("ROLLBACK").await;
    Err(SchemaError::Load {
        file: chunk.first().map(|s| s.file.to_string()).unwrap_or_default(),
        line: chunk.first().map(|s| s.line).unwrap_or(0),
        statement: String::new(),
        message: pg_message(&e),
        sqlstate: sqlstate(&e),
    })
}
