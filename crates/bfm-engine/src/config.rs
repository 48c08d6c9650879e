//! Configuration: flags > environment (BfM's variable names) > `bfm.toml` > defaults.
//!
//! Environment, as in BfM:
//! * every `{CONN}_BACKEND` (outside the `BFM_` namespace) defines a connection named `conn`;
//!   its `{CONN}_DB_HOST`, `_DB_PORT`, `_DB_USERNAME`, `_DB_PASSWORD`, `_DB_NAME`, `_SCHEMA` and
//!   our `_DB_URL` and `_MIGRATIONS_PATH`; every other `{CONN}_*` variable is an extra, matched
//!   case-insensitively (`METADATA_ENDPOINTS` works). A variable belongs to the connection with
//!   the longest matching prefix, so `CORE_` and `CORE_X_` do not swallow each other.
//! * `BFM_STATE_BACKEND` (`sqlite` by default here; `postgresql` as in BfM when
//!   `BFM_STATE_DB_HOST` is set), `BFM_STATE_DB_*`, `BFM_STATE_SCHEMA`, and our
//!   `BFM_STATE_DB_URL` / `BFM_STATE_DB_PATH`;
//! * `BFM_SFM_PATH`, `BFM_DB_*` pool settings, `BFM_LOCK_TIMEOUT`, `BFM_ENVIRONMENT`.

use bfm_core::{BackendKind, GolangMigrateSource};
use bfm_state::{StateBackend, StateConfig};
use bfm_targets::{ConnectionConfig, PoolSettings};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{variable}: {message}")]
    Invalid { variable: String, message: String },
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
}

fn invalid(variable: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { variable: variable.to_string(), message: message.into() }
}

/// Everything bfm needs to know to run.
#[derive(Debug, Clone)]
pub struct Config {
    pub sfm_path: Option<PathBuf>,
    pub state: StateConfig,
    pub connections: BTreeMap<String, ConnectionConfig>,
    pub pool: PoolSettings,
    /// How long to wait for a (connection, schema) lock.
    pub lock_timeout: Duration,
    /// Concurrent schemas per connection (default: the pool size).
    pub concurrency: Option<usize>,
    /// Value of `{{.Environment}}` when a request does not give one.
    pub environment: Option<String>,
    /// The raw environment, for the surfaces' own settings (server ports, tokens, …).
    pub env: HashMap<String, String>,
}

impl Config {
    pub fn golang_migrate_sources(&self) -> Vec<GolangMigrateSource> {
        self.connections
            .values()
            .filter_map(|c| {
                c.extra("migrations_path").map(|p| GolangMigrateSource {
                    path: PathBuf::from(p),
                    connection: c.name.clone(),
                    backend: c.kind,
                })
            })
            .collect()
    }

    pub fn connection_schemas(&self) -> HashMap<String, String> {
        self.connections.iter().filter_map(|(n, c)| c.schema.clone().filter(|s| !s.is_empty()).map(|s| (n.clone(), s))).collect()
    }

    pub fn env(&self, key: &str) -> Option<&str> {
        self.env.get(key).map(String::as_str).filter(|v| !v.is_empty())
    }
}

/// Overrides from command-line flags.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub config_file: Option<PathBuf>,
    pub sfm_path: Option<PathBuf>,
    /// A state URL: `sqlite://path`, `postgres://…`, `mysql://…`.
    pub state_url: Option<String>,
    pub environment: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    sfm_path: Option<PathBuf>,
    environment: Option<String>,
    lock_timeout: Option<String>,
    concurrency: Option<usize>,
    state: Option<FileConnection>,
    pool: Option<FilePool>,
    #[serde(default)]
    connections: BTreeMap<String, FileConnection>,
}

#[derive(Debug, Default, Deserialize)]
struct FileConnection {
    backend: Option<String>,
    url: Option<String>,
    host: Option<String>,
    port: Option<u16>,
    username: Option<String>,
    password: Option<String>,
    database: Option<String>,
    path: Option<PathBuf>,
    schema: Option<String>,
    migrations_path: Option<PathBuf>,
    /// Declarative schema: the directory of desired-state SQL files.
    schema_dir: Option<PathBuf>,
    /// Declarative schema: the bootstrap script (default `<schema_dir>/bootstrap.sql`).
    bootstrap: Option<PathBuf>,
    #[serde(flatten)]
    extras: BTreeMap<String, toml::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FilePool {
    max_connections: Option<u32>,
    min_connections: Option<u32>,
    max_lifetime: Option<String>,
    idle_timeout: Option<String>,
}

/// Go-style durations (`5s`, `1m30s`, `250ms`), as BfM's variables use them.
pub use bfm_targets::parse_duration;

fn parse_state_url(url: &str) -> Result<(StateBackend, ConnectionConfig), ConfigError> {
    let scheme = url.split("://").next().unwrap_or("");
    let backend = StateBackend::parse(scheme)
        .ok_or_else(|| invalid("state URL", format!("unknown scheme {scheme:?} (sqlite://, postgres://, mysql://)")))?;
    let kind = match backend {
        StateBackend::Sqlite => BackendKind::Sqlite,
        StateBackend::Postgresql => BackendKind::Postgresql,
        StateBackend::Mysql => BackendKind::Mysql,
    };
    let mut c = ConnectionConfig::new("state", kind);
    if backend == StateBackend::Sqlite {
        c.database = Some(url.trim_start_matches("sqlite://").trim_start_matches("sqlite:").to_string());
    } else {
        c.url = Some(url.to_string());
    }
    Ok((backend, c))
}

fn resolve(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() { p.to_path_buf() } else { base.join(p) }
}

impl Config {
    /// Build the configuration from the process environment, an optional `bfm.toml` and flags.
    pub fn load(overrides: &Overrides) -> Result<Config, ConfigError> {
        Config::from_sources(std::env::vars(), overrides)
    }

    /// Build the configuration from explicit sources (testable without touching the process).
    pub fn from_sources(env: impl IntoIterator<Item = (String, String)>, overrides: &Overrides) -> Result<Config, ConfigError> {
        let env: HashMap<String, String> = env.into_iter().collect();
        let get = |k: &str| env.get(k).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());

        // bfm.toml: --config, BFM_CONFIG, or ./bfm.toml if present.
        let file_path = overrides.config_file.clone().or_else(|| get("BFM_CONFIG").map(PathBuf::from)).or_else(|| {
            let p = PathBuf::from("bfm.toml");
            p.is_file().then_some(p)
        });
        let (file, base) = match &file_path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|e| ConfigError::File { path: p.clone(), message: e.to_string() })?;
                let f: FileConfig = toml::from_str(&text).map_err(|e| ConfigError::File { path: p.clone(), message: e.to_string() })?;
                (f, p.parent().map(Path::to_path_buf).unwrap_or_default())
            }
            None => (FileConfig::default(), PathBuf::new()),
        };

        // Pool.
        let mut pool = PoolSettings::default();
        if let Some(fp) = &file.pool {
            if let Some(n) = fp.max_connections {
                pool.max_connections = n;
            }
            if let Some(n) = fp.min_connections {
                pool.min_connections = n;
            }
            if let Some(d) = &fp.max_lifetime {
                pool.max_lifetime = Some(parse_duration(d).ok_or_else(|| invalid("pool.max_lifetime", format!("invalid duration {d:?}")))?);
            }
            if let Some(d) = &fp.idle_timeout {
                pool.idle_timeout = Some(parse_duration(d).ok_or_else(|| invalid("pool.idle_timeout", format!("invalid duration {d:?}")))?);
            }
        }
        let num = |k: &str| -> Result<Option<u64>, ConfigError> {
            get(k).map(|v| v.parse::<u64>().map_err(|_| invalid(k, format!("must be a whole number, not {v:?}")))).transpose()
        };
        if let Some(n) = num("BFM_DB_MAX_OPEN_CONNS")? {
            pool.max_connections = n.clamp(1, 10_000) as u32;
        }
        if let Some(n) = num("BFM_DB_MAX_IDLE_CONNS")? {
            pool.min_connections = n.min(pool.max_connections as u64) as u32;
        }
        if let Some(n) = num("BFM_DB_CONN_MAX_LIFETIME_MINUTES")? {
            pool.max_lifetime = (n > 0).then(|| Duration::from_secs(n * 60));
        }
        if let Some(n) = num("BFM_DB_CONN_MAX_IDLE_TIME_MINUTES")? {
            pool.idle_timeout = (n > 0).then(|| Duration::from_secs(n * 60));
        }
        if let Some(n) = num("BFM_DB_CONN_MAX_IDLE_TIME_SECONDS")?.filter(|n| *n > 0) {
            pool.idle_timeout = Some(Duration::from_secs(n));
        }

        // Connections from the file, then the environment on top.
        let mut connections: BTreeMap<String, ConnectionConfig> = BTreeMap::new();
        for (name, fc) in &file.connections {
            let label = format!("connections.{name}");
            if !bfm_core::catalog::is_valid_name(name) {
                return Err(invalid(&label, "a connection name contains only letters, digits and `_`"));
            }
            let backend = fc.backend.as_deref().ok_or_else(|| invalid(&format!("{label}.backend"), "is required"))?;
            let kind = BackendKind::parse(backend).ok_or_else(|| {
                invalid(&format!("{label}.backend"), format!("unknown backend {backend:?} (postgresql, mysql, sqlite, greptimedb, etcd)"))
            })?;
            let mut c = ConnectionConfig::new(name, kind);
            c.url = fc.url.clone();
            c.host = fc.host.clone();
            c.port = fc.port;
            c.username = fc.username.clone();
            c.password = fc.password.clone();
            // File paths (SQLite) are relative to bfm.toml.
            c.database = match (&fc.path, &fc.database) {
                (Some(p), _) => Some(resolve(&base, p).to_string_lossy().to_string()),
                (None, Some(d)) if kind == BackendKind::Sqlite => Some(resolve(&base, Path::new(d)).to_string_lossy().to_string()),
                (None, d) => d.clone(),
            };
            c.schema = fc.schema.clone();
            for (key, path) in [("migrations_path", &fc.migrations_path), ("schema_dir", &fc.schema_dir), ("bootstrap", &fc.bootstrap)] {
                if let Some(p) = path {
                    c.extras.insert(key.into(), resolve(&base, p).to_string_lossy().to_string());
                }
            }
            for (k, v) in &fc.extras {
                let v = match v {
                    toml::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                c.extras.insert(k.to_ascii_lowercase(), v);
            }
            connections.insert(name.clone(), c);
        }
        apply_env_connections(&env, &mut connections)?;
        for c in connections.values_mut() {
            c.pool = pool.clone();
        }

        // State.
        let file_state = file.state.unwrap_or_default();
        let (backend, mut state_conn) = if let Some(url) = &overrides.state_url {
            parse_state_url(url)?
        } else if let Some(url) = get("BFM_STATE_DB_URL").or(file_state.url.clone()) {
            parse_state_url(&url)?
        } else {
            let explicit = get("BFM_STATE_BACKEND").or(file_state.backend.clone());
            let backend = match explicit {
                Some(b) => StateBackend::parse(&b)
                    .ok_or_else(|| invalid("BFM_STATE_BACKEND", format!("unknown backend {b:?} (sqlite, postgresql, mysql)")))?,
                // BfM's users set only host/credentials: their state is PostgreSQL.
                None if get("BFM_STATE_DB_HOST").is_some() || file_state.host.is_some() => StateBackend::Postgresql,
                None => StateBackend::Sqlite,
            };
            let kind = match backend {
                StateBackend::Sqlite => BackendKind::Sqlite,
                StateBackend::Postgresql => BackendKind::Postgresql,
                StateBackend::Mysql => BackendKind::Mysql,
            };
            let mut c = ConnectionConfig::new("state", kind);
            match backend {
                StateBackend::Sqlite => {
                    c.database = get("BFM_STATE_DB_PATH")
                        .or(file_state.path.as_ref().map(|p| resolve(&base, p).to_string_lossy().to_string()))
                        .or(file_state.database.clone());
                }
                _ => {
                    let default_port = if backend == StateBackend::Mysql { 3306 } else { 5432 };
                    let default_user = if backend == StateBackend::Mysql { "root" } else { "postgres" };
                    c.host = Some(get("BFM_STATE_DB_HOST").or(file_state.host.clone()).unwrap_or_else(|| "localhost".into()));
                    c.port = Some(match get("BFM_STATE_DB_PORT") {
                        Some(p) => p.parse().map_err(|_| invalid("BFM_STATE_DB_PORT", format!("must be a port number, not {p:?}")))?,
                        None => file_state.port.unwrap_or(default_port),
                    });
                    c.username = Some(get("BFM_STATE_DB_USERNAME").or(file_state.username.clone()).unwrap_or_else(|| default_user.into()));
                    c.password = get("BFM_STATE_DB_PASSWORD").or(file_state.password.clone());
                    c.database = Some(get("BFM_STATE_DB_NAME").or(file_state.database.clone()).unwrap_or_else(|| "migration_state".into()));
                }
            }
            (backend, c)
        };
        state_conn.pool = pool.clone();
        let state = StateConfig { backend, connection: state_conn, schema: get("BFM_STATE_SCHEMA").or(file_state.schema.clone()) };
        if let Some(s) = &state.schema
            && !bfm_core::catalog::is_valid_name(s)
        {
            return Err(invalid("BFM_STATE_SCHEMA", format!("invalid schema name {s:?}")));
        }

        let lock_timeout = match get("BFM_LOCK_TIMEOUT").or(file.lock_timeout.clone()) {
            Some(v) => parse_duration(&v).ok_or_else(|| invalid("BFM_LOCK_TIMEOUT", format!("invalid duration {v:?} (e.g. 30s, 2m)")))?,
            None => Duration::from_secs(60),
        };
        let concurrency = match get("BFM_CONCURRENCY") {
            Some(v) => Some(
                v.parse::<usize>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| invalid("BFM_CONCURRENCY", format!("must be a positive number, not {v:?}")))?,
            ),
            None => file.concurrency,
        };

        let sfm_path = overrides
            .sfm_path
            .clone()
            .or_else(|| get("BFM_SFM_PATH").map(PathBuf::from))
            .or_else(|| file.sfm_path.map(|p| resolve(&base, &p)))
            .or_else(|| {
                // BfM's default is ../sfm; ./sfm first for the common layout.
                ["sfm", "../sfm"].iter().map(PathBuf::from).find(|p| p.is_dir())
            });

        let environment = overrides.environment.clone().or_else(|| get("BFM_ENVIRONMENT")).or(file.environment);
        if let Some(e) = &environment {
            bfm_core::validate_environment(e).map_err(|m| invalid("BFM_ENVIRONMENT", m))?;
        }
        Ok(Config { sfm_path, state, connections, pool, lock_timeout, concurrency, environment, env })
    }
}

fn apply_env_connections(env: &HashMap<String, String>, connections: &mut BTreeMap<String, ConnectionConfig>) -> Result<(), ConfigError> {
    // Connections defined by {CONN}_BACKEND, outside BfM's own namespace.
    let mut prefixes: Vec<(String, String)> = Vec::new();
    for (k, v) in env {
        let Some(name) = k.strip_suffix("_BACKEND") else { continue };
        if name.is_empty() || k.starts_with("BFM_") || v.trim().is_empty() {
            continue;
        }
        let lname = name.to_ascii_lowercase();
        if !bfm_core::catalog::is_valid_name(&lname) {
            continue;
        }
        let kind = BackendKind::parse(v)
            .ok_or_else(|| invalid(k, format!("unknown backend {:?} (postgresql, mysql, sqlite, greptimedb, etcd)", v.trim())))?;
        let c = connections.entry(lname.clone()).or_insert_with(|| ConnectionConfig::new(&lname, kind));
        c.kind = kind;
        prefixes.push((format!("{}_", name.to_ascii_uppercase()), lname));
    }
    // Connections from bfm.toml take their overrides from the environment too.
    for name in connections.keys() {
        let prefix = format!("{}_", name.to_ascii_uppercase());
        if !prefixes.iter().any(|(p, _)| *p == prefix) {
            prefixes.push((prefix, name.clone()));
        }
    }
    // Longest prefix first: CORE_X_DB_HOST belongs to core_x, not to core.
    prefixes.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.0.cmp(&b.0)));
    let mut keys: Vec<&String> = env.keys().collect();
    keys.sort();
    for k in keys {
        let upper = k.to_ascii_uppercase();
        let Some((prefix, name)) = prefixes.iter().find(|(p, _)| upper.starts_with(p.as_str())) else { continue };
        let value = env[k].trim().to_string();
        let suffix = &upper[prefix.len()..];
        let Some(c) = connections.get_mut(name) else { continue };
        match suffix {
            "BACKEND" => {}
            "DB_HOST" => c.host = Some(value).filter(|v| !v.is_empty()),
            "DB_PORT" => {
                if !value.is_empty() {
                    c.port = Some(value.parse().map_err(|_| invalid(k, format!("must be a port number, not {value:?}")))?);
                }
            }
            "DB_USERNAME" | "DB_USER" => c.username = Some(value).filter(|v| !v.is_empty()),
            "DB_PASSWORD" => c.password = Some(value).filter(|v| !v.is_empty()),
            "DB_NAME" => c.database = Some(value).filter(|v| !v.is_empty()),
            "DB_URL" | "URL" => c.url = Some(value).filter(|v| !v.is_empty()),
            "SCHEMA" => c.schema = Some(value).filter(|v| !v.is_empty()),
            other => {
                c.extras.insert(other.to_ascii_lowercase(), value);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn bfm_environment_variables() {
        let c = Config::from_sources(
            env(&[
                ("CORE_BACKEND", "postgres"),
                ("CORE_DB_HOST", "db"),
                ("CORE_DB_PORT", "5433"),
                ("CORE_DB_PASSWORD", "pw"),
                ("CORE_SCHEMA", "core"),
                ("CORE_X_BACKEND", "mysql"),
                ("CORE_X_DB_HOST", "mysqlhost"),
                ("METADATA_BACKEND", "etcd"),
                ("METADATA_ENDPOINTS", "a:2379,b:2379"),
                ("METADATA_PREFIX", "/meta"),
                ("BFM_STATE_BACKEND", "postgresql"),
                ("BFM_STATE_DB_HOST", "statehost"),
                ("BFM_DB_MAX_OPEN_CONNS", "5"),
            ]),
            &Overrides { sfm_path: Some("x".into()), ..Default::default() },
        )
        .unwrap();
        assert_eq!(c.connections.keys().collect::<Vec<_>>(), vec!["core", "core_x", "metadata"]);
        let core = &c.connections["core"];
        assert_eq!(
            (core.kind, core.host.as_deref(), core.port, core.schema.as_deref()),
            (BackendKind::Postgresql, Some("db"), Some(5433), Some("core"))
        );
        assert!(core.extras.is_empty(), "{:?}", core.extras);
        assert_eq!(c.connections["core_x"].host.as_deref(), Some("mysqlhost"));
        // Upper-case extras work (BfM bug B4).
        assert_eq!(c.connections["metadata"].extra("endpoints"), Some("a:2379,b:2379"));
        assert_eq!(c.connections["metadata"].extra("PREFIX"), Some("/meta"));
        // BFM_STATE_BACKEND is not a connection (BfM bug B12).
        assert!(!c.connections.contains_key("bfm_state"));
        assert_eq!(c.state.backend, StateBackend::Postgresql);
        assert_eq!(c.state.connection.host.as_deref(), Some("statehost"));
        assert_eq!(c.state.connection.database.as_deref(), Some("migration_state"));
        assert_eq!(c.pool.max_connections, 5);
    }

    #[test]
    fn embedded_default_state_is_sqlite() {
        let c = Config::from_sources(env(&[]), &Overrides { sfm_path: Some("x".into()), ..Default::default() }).unwrap();
        assert_eq!(c.state.backend, StateBackend::Sqlite);
        let c = Config::from_sources(env(&[("BFM_STATE_DB_HOST", "h")]), &Overrides::default()).unwrap();
        assert_eq!(c.state.backend, StateBackend::Postgresql);
        let c = Config::from_sources(env(&[]), &Overrides { state_url: Some("mysql://root@h/s".into()), ..Default::default() }).unwrap();
        assert_eq!(c.state.backend, StateBackend::Mysql);
    }

    #[test]
    fn errors_name_the_variable() {
        let e = Config::from_sources(env(&[("CORE_BACKEND", "oracle")]), &Overrides::default()).unwrap_err();
        assert!(e.to_string().starts_with("CORE_BACKEND: unknown backend \"oracle\""), "{e}");
        let e = Config::from_sources(env(&[("CORE_BACKEND", "postgresql"), ("CORE_DB_PORT", "x")]), &Overrides::default()).unwrap_err();
        assert!(e.to_string().starts_with("CORE_DB_PORT:"), "{e}");
        let e = Config::from_sources(env(&[("BFM_LOCK_TIMEOUT", "soon")]), &Overrides::default()).unwrap_err();
        assert!(e.to_string().starts_with("BFM_LOCK_TIMEOUT:"), "{e}");
        let e = Config::from_sources(env(&[("BFM_STATE_BACKEND", "redis")]), &Overrides::default()).unwrap_err();
        assert!(e.to_string().starts_with("BFM_STATE_BACKEND:"), "{e}");
    }

    #[test]
    fn toml_file_with_relative_paths_and_env_on_top() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("bfm.toml"),
            r#"
sfm_path = "sfm"
lock_timeout = "1m30s"
[state]
backend = "sqlite"
path = "state/state.db"
[connections.app]
backend = "sqlite"
path = "app.db"
[connections.core]
backend = "postgresql"
url = "postgres://localhost/core"
schema = "core"
sslmode = "disable"
"#,
        )
        .unwrap();
        let c = Config::from_sources(
            env(&[("CORE_SCHEMA", "other")]),
            &Overrides { config_file: Some(d.path().join("bfm.toml")), ..Default::default() },
        )
        .unwrap();
        assert_eq!(c.sfm_path, Some(d.path().join("sfm")));
        assert_eq!(c.lock_timeout, Duration::from_secs(90));
        assert_eq!(c.state.connection.database.as_deref(), Some(d.path().join("state/state.db").to_str().unwrap()));
        assert_eq!(c.connections["app"].database.as_deref(), Some(d.path().join("app.db").to_str().unwrap()));
        assert_eq!(c.connections["core"].schema.as_deref(), Some("other"));
        assert_eq!(c.connections["core"].extra("sslmode"), Some("disable"));
        std::fs::write(d.path().join("bad.toml"), "unknown_key = 1").unwrap();
        let e =
            Config::from_sources(env(&[]), &Overrides { config_file: Some(d.path().join("bad.toml")), ..Default::default() }).unwrap_err();
        assert!(e.to_string().contains("bad.toml"), "{e}");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5s"), Some(Duration::from_secs(5)));
        assert_eq!(parse_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("10"), Some(Duration::from_secs(10)));
        assert_eq!(parse_duration("5 parsecs"), None);
        assert_eq!(parse_duration(""), None);
    }
}
