//! The kinds of target bfm can migrate.

use crate::sql::Dialect;
use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    Postgresql,
    Mysql,
    Sqlite,
    Greptimedb,
    Etcd,
}

impl BackendKind {
    pub const ALL: [BackendKind; 5] =
        [BackendKind::Postgresql, BackendKind::Mysql, BackendKind::Sqlite, BackendKind::Greptimedb, BackendKind::Etcd];

    /// Parse a backend name as written in directories, env variables and requests.
    /// Aliases: `postgres`/`pg` ≡ `postgresql`, `mariadb` ≡ `mysql`, `sqlite3` ≡ `sqlite`,
    /// `greptime` ≡ `greptimedb`.
    pub fn parse(s: &str) -> Option<BackendKind> {
        match s.trim().to_ascii_lowercase().as_str() {
            "postgresql" | "postgres" | "pg" => Some(BackendKind::Postgresql),
            "mysql" | "mariadb" => Some(BackendKind::Mysql),
            "sqlite" | "sqlite3" => Some(BackendKind::Sqlite),
            "greptimedb" | "greptime" => Some(BackendKind::Greptimedb),
            "etcd" => Some(BackendKind::Etcd),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Postgresql => "postgresql",
            BackendKind::Mysql => "mysql",
            BackendKind::Sqlite => "sqlite",
            BackendKind::Greptimedb => "greptimedb",
            BackendKind::Etcd => "etcd",
        }
    }

    /// The SQL dialect of scripts for this backend, `None` for etcd (JSON scripts).
    pub fn dialect(self) -> Option<Dialect> {
        match self {
            BackendKind::Postgresql => Some(Dialect::Postgres),
            BackendKind::Mysql => Some(Dialect::MySql),
            BackendKind::Sqlite => Some(Dialect::Sqlite),
            BackendKind::Greptimedb => Some(Dialect::Greptime),
            BackendKind::Etcd => None,
        }
    }

    /// File extension of scripts (`sql` or `json`).
    pub fn script_extension(self) -> &'static str {
        if self == BackendKind::Etcd { "json" } else { "sql" }
    }

    /// Whether migrations on this backend can run in more than one schema (database, key
    /// prefix). SQLite files have a single namespace.
    pub fn has_schemas(self) -> bool {
        self != BackendKind::Sqlite
    }

    /// Whether a per-tenant (dynamic) migration may run without a schema, in the connection's
    /// default namespace. PostgreSQL keeps BfM's rule: a dynamic migration needs a schema.
    pub fn runs_dynamic_without_schema(self) -> bool {
        self != BackendKind::Postgresql
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases() {
        assert_eq!(BackendKind::parse(" Postgres "), Some(BackendKind::Postgresql));
        assert_eq!(BackendKind::parse("MariaDB"), Some(BackendKind::Mysql));
        assert_eq!(BackendKind::parse("mongodb"), None);
        for k in BackendKind::ALL {
            assert_eq!(BackendKind::parse(k.as_str()), Some(k));
        }
    }
}
