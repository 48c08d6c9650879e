//! Connections: URL parsing, connecting, server version.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use std::sync::Arc;

use tokio_postgres::config::SslMode;
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

/// Accepts any server certificate, like libpq's `sslmode=prefer`/`require`: the connection is
/// encrypted, the server is not authenticated (tokio-postgres has no `verify-*` modes).
#[derive(Debug)]
struct AnyServerCert(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn tls_connector() -> Result<tokio_postgres_rustls::MakeRustlsConnect, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServerCert(provider)))
        .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

pub(crate) async fn connect_config(config: &Config) -> Result<Conn, SchemaError> {
    let label = describe(config);
    let fail = |message: String| SchemaError::Connect { target: label.clone(), message };
    let task;
    let client;
    if config.get_ssl_mode() == SslMode::Disable {
        let (c, connection) = config.connect(NoTls).await.map_err(|e| fail(pg_message(&e)))?;
        client = c;
        task = tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "postgres connection closed");
            }
        });
    } else {
        let (c, connection) = config.connect(tls_connector().map_err(&fail)?).await.map_err(|e| fail(pg_message(&e)))?;
        client = c;
        task = tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "postgres connection closed");
            }
        });
    }
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

/// Idle read-only connections kept for reuse, per URL, when enabled with
/// [`set_connection_reuse`]. A fresh backend must build its catalog and relation caches before
/// it can deparse anything, which costs about a third of a large introspection; a reused one
/// has them warm. Connections idle for longer than [`POOL_IDLE`] are closed, and at most
/// [`POOL_PER_URL`] are kept per URL.
struct Pooled {
    conn: Conn,
    since: Instant,
    id: u64,
}

const POOL_IDLE: Duration = Duration::from_secs(60);
const POOL_PER_URL: usize = 2;

static REUSE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Keep idle introspection connections for a minute and reuse them (off by default). Worth it
/// in a long-running process that plans or validates repeatedly; note that an idle connection
/// to a database makes a plain `DROP DATABASE` of it fail until it is closed (see
/// [`close_idle_connections`]). Turning it off closes the idle connections.
pub fn set_connection_reuse(enabled: bool) {
    REUSE.store(enabled, std::sync::atomic::Ordering::Relaxed);
    if !enabled {
        close_idle_connections();
    }
}

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
    if conn.client.is_closed() || !REUSE.load(std::sync::atomic::Ordering::Relaxed) {
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
