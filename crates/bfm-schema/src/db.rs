//! Connections: URL parsing, connecting, server version.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use tokio_postgres::{Client, Config, NoTls};

use crate::error::{SchemaError, pg_message};

/// Parse a `postgres://` URL or a `key=value` connection string.
pub(crate) fn parse_config(url: &str) -> Result<Config, SchemaError> {
    Config::from_str(url).map_err(|e| SchemaError::InvalidUrl(format!("{}: {e}", redact(url))))
}

/// The URL without its password, for messages.
pub(crate) fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = &url[scheme + 3..at];
            match creds.find(':') {
                Some(colon) => format!("{}{}:***{}", &url[..scheme + 3], &creds[..colon], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// A short description of the server and database a config points at.
pub(crate) fn describe(config: &Config) -> String {
    let host = config
        .get_hosts()
        .first()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(s) => s.clone(),
            #[cfg(unix)]
            tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
        })
        .unwrap_or_else(|| "localhost".into());
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!("{host}:{port}/{}", config.get_dbname().unwrap_or("(default)"))
}

/// An open connection and what we know about its server.
pub(crate) struct Conn {
    pub client: Client,
    pub server_version_num: u32,
    pub label: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Conn {
    pub fn pg_major(&self) -> u32 {
        self.server_version_num / 10000
    }
}

pub(crate) async fn connect_config(config: &Config) -> Result<Conn, SchemaError> {
    let label = describe(config);
    let (client, connection) =
        config.connect(NoTls).await.map_err(|e| SchemaError::Connect { target: label.clone(), message: pg_message(&e) })?;
    let task = tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "postgres connection closed");
        }
    });
    let row = client
        .query_one("SELECT current_setting('server_version_num')::int4", &[])
        .await
        .map_err(|e| SchemaError::db(format!("reading the server version of {label}"), &e))?;
    let v: i32 = row.try_get(0).map_err(|e| SchemaError::db("reading the server version", &e))?;
    Ok(Conn { client, server_version_num: v.max(0) as u32, label, task })
}

pub(crate) async fn connect(url: &str) -> Result<Conn, SchemaError> {
    let config = parse_config(url)?;
    connect_config(&config).await
}

/// Idle read-only connections kept for reuse, per URL. A fresh backend must build its catalog
/// and relation caches before it can deparse anything, which costs about a third of a large
/// introspection; a reused one has them warm. Connections idle for longer than
/// [`POOL_IDLE`] are closed, and at most [`POOL_PER_URL`] are kept per URL.
struct Pooled {
    conn: Conn,
    since: Instant,
    id: u64,
}

const POOL_IDLE: Duration = Duration::from_secs(60);
const POOL_PER_URL: usize = 2;

fn pool() -> &'static Mutex<HashMap<String, Vec<Pooled>>> {
    static POOL: OnceLock<Mutex<HashMap<String, Vec<Pooled>>>> = OnceLock::new();
    POOL.get_or_init(|| Mutex::new(HashMap::new()))
}

/// A connection for read-only work (introspection): reused from the pool when a live one is
/// idle there, otherwise new. Give it back with [`checkin`] after a successful, committed use.
pub(crate) async fn checkout(url: &str) -> Result<Conn, SchemaError> {
    loop {
        let candidate = pool().lock().ok().and_then(|mut p| p.get_mut(url).and_then(|v| v.pop()));
        let Some(p) = candidate else { break };
        if p.since.elapsed() > POOL_IDLE || p.conn.client.is_closed() {
            continue;
        }
        // The connection's task may belong to a runtime that is gone: check it answers.
        if p.conn.client.batch_execute("").await.is_ok() {
            return Ok(p.conn);
        }
    }
    connect(url).await
}

/// Return a connection to the pool (outside any transaction).
pub(crate) fn checkin(url: &str, conn: Conn) {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    if conn.client.is_closed() {
        return;
    }
    let id = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let Ok(mut p) = pool().lock() else { return };
    let list = p.entry(url.to_string()).or_default();
    list.retain(|x| x.since.elapsed() <= POOL_IDLE);
    if list.len() >= POOL_PER_URL {
        return;
    }
    list.push(Pooled { conn, since: Instant::now(), id });
    drop(p);
    // Close it once it has been idle for too long, so it holds no backend (and blocks no
    // DROP DATABASE) for longer than that.
    if let Ok(handle) = tokio::runtime::Handle::try_current() {
        let url = url.to_string();
        handle.spawn(async move {
            tokio::time::sleep(POOL_IDLE).await;
            if let Ok(mut p) = pool().lock()
                && let Some(list) = p.get_mut(&url)
            {
                list.retain(|x| x.id != id);
            }
        });
    }
}

/// Close every pooled connection.
pub fn close_idle_connections() {
    if let Ok(mut p) = pool().lock() {
        p.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords() {
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
    }
}
