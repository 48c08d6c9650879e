//! Connections: URL parsing, connecting, server version.

use std::str::FromStr;

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
    let (client, connection) = config
        .connect(NoTls)
        .await
        .map_err(|e| SchemaError::Connect { target: label.clone(), message: pg_message(&e) })?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords() {
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
    }
}
