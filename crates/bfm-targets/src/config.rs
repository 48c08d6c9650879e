use bfm_core::BackendKind;
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// Pool settings (BfM's `BFM_DB_*` variables).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolSettings {
    pub max_connections: u32,
    pub min_connections: u32,
    pub max_lifetime: Option<Duration>,
    pub idle_timeout: Option<Duration>,
    pub acquire_timeout: Duration,
}

impl Default for PoolSettings {
    fn default() -> Self {
        PoolSettings {
            max_connections: 8,
            min_connections: 0,
            max_lifetime: Some(Duration::from_secs(30 * 60)),
            idle_timeout: Some(Duration::from_secs(60)),
            acquire_timeout: Duration::from_secs(30),
        }
    }
}

/// One target connection as configured (`{CONN}_BACKEND`, `{CONN}_DB_*`, `{CONN}_SCHEMA`,
/// extras, or a `[connections.<name>]` table of `bfm.toml`).
#[derive(Clone, PartialEq, Eq)]
pub struct ConnectionConfig {
    pub name: String,
    pub kind: BackendKind,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub database: Option<String>,
    /// A full URL/DSN; explicit fields above override its parts.
    pub url: Option<String>,
    /// Default fixed schema of this connection's migrations.
    pub schema: Option<String>,
    /// Every other setting, keys lower-cased (`endpoints`, `prefix`, `sslmode`, …).
    pub extras: BTreeMap<String, String>,
    pub pool: PoolSettings,
}

impl ConnectionConfig {
    pub fn new(name: &str, kind: BackendKind) -> ConnectionConfig {
        ConnectionConfig {
            name: name.to_string(),
            kind,
            host: None,
            port: None,
            username: None,
            password: None,
            database: None,
            url: None,
            schema: None,
            extras: BTreeMap::new(),
            pool: PoolSettings::default(),
        }
    }

    pub fn extra(&self, key: &str) -> Option<&str> {
        self.extras.get(&key.to_ascii_lowercase()).map(String::as_str).filter(|v| !v.is_empty())
    }

    /// Whether enough is configured to try connecting (BfM's auto-migrate readiness rule).
    pub fn is_ready(&self) -> bool {
        match self.kind {
            BackendKind::Sqlite => self.url.is_some() || self.database.is_some() || self.extra("path").is_some(),
            // etcd: endpoints, a URL, or a host (port 2379 by default).
            BackendKind::Etcd => self.extra("endpoints").is_some() || self.url.is_some() || self.host.is_some(),
            _ => self.url.is_some() || self.host.is_some(),
        }
    }
}

// Passwords never reach logs.
impl fmt::Debug for ConnectionConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redact_url = self.url.as_ref().map(|u| redact_url(u));
        f.debug_struct("ConnectionConfig")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("database", &self.database)
            .field("url", &redact_url)
            .field("schema", &self.schema)
            .field("extras", &self.extras.keys().collect::<Vec<_>>())
            .field("pool", &self.pool)
            .finish()
    }
}

/// Parse a Go-style duration (`5s`, `1m30s`, `250ms`, `2h`) as BfM's extras use them; a bare
/// number is seconds.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    if let Ok(n) = s.parse::<f64>() {
        return (n >= 0.0 && n.is_finite()).then(|| Duration::from_secs_f64(n));
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        if num_end == 0 {
            return None;
        }
        let n: f64 = rest[..num_end].parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let unit = match &rest[..unit_end] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += n * unit;
        rest = &rest[unit_end..];
    }
    total.is_finite().then(|| Duration::from_secs_f64(total))
}

/// Whether an extra's value means "on" (`true`, `1`, `yes`, `on`, any case).
pub fn truthy(value: Option<&str>) -> bool {
    value.is_some_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "true" | "1" | "yes" | "on"))
}

/// `scheme://user:secret@host/db` → `scheme://user:<redacted>@host/db`.
pub fn redact_url(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://")
        && let Some((creds, host)) = rest.split_once('@')
        && let Some((user, _)) = creds.split_once(':')
    {
        return format!("{scheme}://{user}:<redacted>@{host}");
    }
    url.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_switches() {
        assert_eq!(parse_duration("5s"), Some(Duration::from_secs(5)));
        assert_eq!(parse_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("10"), Some(Duration::from_secs(10)));
        assert_eq!(parse_duration("5 parsecs"), None);
        assert!(truthy(Some("TRUE")) && truthy(Some(" yes ")) && !truthy(Some("false")) && !truthy(None));
    }

    #[test]
    fn readiness_per_backend() {
        let mut e = ConnectionConfig::new("metadata", BackendKind::Etcd);
        assert!(!e.is_ready());
        e.extras.insert("endpoints".into(), "127.0.0.1:2379".into());
        assert!(e.is_ready());
        let mut g = ConnectionConfig::new("logs", BackendKind::Greptimedb);
        assert!(!g.is_ready());
        g.host = Some("gt".into());
        assert!(g.is_ready());
    }

    #[test]
    fn debug_never_shows_passwords() {
        let mut c = ConnectionConfig::new("core", BackendKind::Postgresql);
        c.password = Some("s3cret".into());
        c.url = Some("postgres://u:hunter2@h/db".into());
        let s = format!("{c:?}");
        assert!(!s.contains("s3cret") && !s.contains("hunter2"), "{s}");
    }
}
