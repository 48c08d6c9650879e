//! Opening the pool of the configured backend: from a URL or from the connection's fields (for
//! SQLite a file, `.bfm/state.db` by default), with the options every state connection needs,
//! and creating the database itself when it does not exist yet.

use super::dialect::{Dialect, quote_pg};
use super::{DbPool, SqlStateStore};
use crate::{Result, StateBackend, StateConfig, StateError};
use bfm_targets::ConnectionConfig;
use sqlx::AssertSqlSafe;
use sqlx::mysql::{MySqlConnectOptions, MySqlPoolOptions};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use std::path::PathBuf;
use std::time::Duration;

fn default_sqlite_path() -> PathBuf {
    PathBuf::from(".bfm").join("state.db")
}

impl SqlStateStore {
    pub async fn connect(config: &StateConfig) -> Result<SqlStateStore> {
        let c = &config.connection;
        let pool_max = c.pool.max_connections.max(2);
        let pool = match config.backend {
            StateBackend::Sqlite => {
                DbPool::Lite(SqlitePoolOptions::new().max_connections(pool_max.min(4)).connect_with(sqlite_options(c)?).await?)
            }
            StateBackend::Postgresql => {
                let opts = bfm_targets::postgres::connect_options(c).map_err(|e| StateError::Config(e.to_string()))?;
                DbPool::Pg(postgres_pool(c, pool_max, opts).await?)
            }
            StateBackend::Mysql => {
                let opts = bfm_targets::mysql::connect_options(c).map_err(|e| StateError::Config(e.to_string()))?;
                DbPool::My(mysql_pool(c, pool_max, opts).await?)
            }
        };
        Ok(SqlStateStore { dialect: Dialect::new(config.backend, config.schema.as_deref()), pool })
    }

    pub(super) async fn ping_pool(&self) -> Result<()> {
        on_pool!(self, p => {
            match tokio::time::timeout(Duration::from_secs(3), sqlx::query("SELECT 1").execute(p)).await {
                Ok(r) => r.map(|_| ()).map_err(StateError::from),
                Err(_) => Err(StateError::Config("no answer within 3 s".into())),
            }
        })
    }
}

/// WAL and a long busy timeout: the server and CLI runs may share the file.
fn sqlite_options(c: &ConnectionConfig) -> Result<SqliteConnectOptions> {
    let opts = match (&c.url, c.database.as_deref().or(c.extra("path"))) {
        (Some(url), _) => url.parse::<SqliteConnectOptions>().map_err(|e| StateError::Config(format!("invalid SQLite URL: {e}")))?,
        (None, path) => {
            let path = path.map(PathBuf::from).unwrap_or_else(default_sqlite_path);
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .map_err(|e| StateError::Config(format!("cannot create {} for the state database: {e}", dir.display())))?;
            }
            SqliteConnectOptions::new().filename(path)
        }
    };
    Ok(opts
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(30)))
}

async fn postgres_pool(c: &ConnectionConfig, pool_max: u32, opts: PgConnectOptions) -> Result<sqlx::PgPool> {
    let make = || PgPoolOptions::new().max_connections(pool_max).acquire_timeout(c.pool.acquire_timeout);
    match make().connect_with(opts.clone()).await {
        Ok(p) => Ok(p),
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("3D000") => {
            // The state database does not exist yet: create it.
            let db = opts.get_database().unwrap_or("migration_state").to_string();
            let admin = make().max_connections(1).connect_with(opts.clone().database("postgres")).await?;
            sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE {}", quote_pg(&db)))).execute(&admin).await?;
            admin.close().await;
            Ok(make().connect_with(opts).await?)
        }
        Err(e) => Err(e.into()),
    }
}

/// Every session in UTC: `DATETIME` columns have no time zone of their own.
async fn mysql_pool(c: &ConnectionConfig, pool_max: u32, opts: MySqlConnectOptions) -> Result<sqlx::MySqlPool> {
    let make = || {
        MySqlPoolOptions::new().max_connections(pool_max).acquire_timeout(c.pool.acquire_timeout).after_connect(|conn, _| {
            Box::pin(async move {
                sqlx::raw_sql("SET time_zone = '+00:00'").execute(conn).await?;
                Ok(())
            })
        })
    };
    match make().connect_with(opts.clone()).await {
        Ok(p) => Ok(p),
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42000") && e.message().contains("Unknown database") => {
            let db = opts.get_database().unwrap_or("migration_state").to_string();
            let admin = MySqlPoolOptions::new().max_connections(1).connect_with(opts.clone().database("")).await?;
            sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE IF NOT EXISTS `{}`", db.replace('`', "``")))).execute(&admin).await?;
            admin.close().await;
            Ok(make().connect_with(opts).await?)
        }
        Err(e) => Err(e.into()),
    }
}
