//! Where the state lives: which database, and how to reach it.

use bfm_targets::ConnectionConfig;
use serde::Serialize;

/// Which database holds the state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StateBackend {
    Sqlite,
    Postgresql,
    Mysql,
}

impl StateBackend {
    pub fn parse(s: &str) -> Option<StateBackend> {
        match s.trim().to_ascii_lowercase().as_str() {
            "sqlite" | "sqlite3" => Some(StateBackend::Sqlite),
            "postgresql" | "postgres" | "pg" => Some(StateBackend::Postgresql),
            "mysql" | "mariadb" => Some(StateBackend::Mysql),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            StateBackend::Sqlite => "sqlite",
            StateBackend::Postgresql => "postgresql",
            StateBackend::Mysql => "mysql",
        }
    }
}

/// Where the state lives. The connection settings reuse the target connection type.
#[derive(Debug, Clone)]
pub struct StateConfig {
    pub backend: StateBackend,
    pub connection: ConnectionConfig,
    /// PostgreSQL schema for bfm's tables (`BFM_STATE_SCHEMA`, default `public`).
    pub schema: Option<String>,
}
