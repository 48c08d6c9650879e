//! Taking bfm's tables to the latest version of [`super::schema`]. The version is kept in
//! `bfm_meta`; many processes may start at once, so the upgrade runs under the backend's lock
//! (a transaction-level advisory lock on PostgreSQL, `BEGIN IMMEDIATE` on SQLite, a named lock
//! on MySQL, whose DDL is not transactional) and reads the version again once it holds it.

use super::decode::At;
use super::schema;
use super::{DbPool, SqlStateStore};
use crate::{Result, StateBackend, StateError};
use sqlx::AssertSqlSafe;

/// Where the version lives, for the error that says it is unreadable.
const VERSION_AT: (&str, &str, &str) = ("bfm_meta", "schema_version", "meta_value");

/// The stored version: `None` (no row) is a new store; text that is no number is corrupt —
/// read as 0 it would run every version again over the existing tables.
fn parse_version(stored: Option<String>) -> Result<i64> {
    let (table, key, column) = VERSION_AT;
    match stored {
        None => Ok(0),
        Some(v) => v.trim().parse().map_err(|_| At::new(table, key).corrupt(column, format_args!("{v:?} is not a schema version"))),
    }
}

impl SqlStateStore {
    /// The version of the store's tables (0: none yet); creates `bfm_meta` if needed.
    async fn version(&self) -> Result<i64> {
        let create = self.dialect.render(schema::META);
        let select = self.dialect.sql("SELECT meta_value FROM {bfm_meta} WHERE meta_key = 'schema_version'");
        let stored: Option<String> = on_pool!(self, p => {
            sqlx::raw_sql(AssertSqlSafe(create)).execute(p).await?;
            sqlx::query_scalar(AssertSqlSafe(select)).fetch_optional(p).await?
        });
        parse_version(stored)
    }

    /// Create or upgrade bfm's tables; cheap when they are current.
    pub(super) async fn upgrade(&self) -> Result<()> {
        let d = &self.dialect;
        if let Some(s) = d.pg_schema()
            && let DbPool::Pg(p) = &self.pool
        {
            sqlx::raw_sql(AssertSqlSafe(format!("CREATE SCHEMA IF NOT EXISTS {}", super::dialect::quote_pg(s)))).execute(p).await?;
        }
        if self.version().await? >= schema::LATEST {
            return Ok(());
        }
        let legacy = d.legacy_table_count();
        // BfM kept an old table called bfm_migrations; our view takes the name, the table is kept.
        let rename = d.sql("ALTER TABLE {bfm_migrations} RENAME TO bfm_migrations_legacy");
        let current_sql = d.sql("SELECT meta_value FROM {bfm_meta} WHERE meta_key = 'schema_version'");
        let pg_schema = d.pg_schema().map(str::to_string);
        let backend = d.backend();
        // The upgrade itself, on one connection (or transaction) `$c`, once the caller holds the
        // backend's lock: read the version again, keep a legacy table, run what is missing.
        macro_rules! upgrade {
            ($c:expr) => {{
                let stored: Option<String> = sqlx::query_scalar(AssertSqlSafe(current_sql.clone())).fetch_optional(&mut *$c).await?;
                let current = parse_version(stored)?;
                if current == 0 {
                    let mut q = sqlx::query_scalar(AssertSqlSafe(legacy.clone()));
                    if backend == StateBackend::Postgresql {
                        q = q.bind(pg_schema.clone());
                    }
                    let n: i64 = q.fetch_one(&mut *$c).await?;
                    if n > 0 {
                        sqlx::raw_sql(AssertSqlSafe(rename.clone())).execute(&mut *$c).await?;
                    }
                }
                for (v, templates) in schema::pending(current) {
                    for t in templates {
                        if let Err(e) = sqlx::raw_sql(AssertSqlSafe(d.render(t))).execute(&mut *$c).await {
                            // MySQL DDL is not transactional: an index may remain from an
                            // interrupted earlier attempt.
                            let dup = backend == StateBackend::Mysql
                                && matches!(&e, sqlx::Error::Database(db) if db.message().contains("Duplicate key name"));
                            if !dup {
                                return Err(e.into());
                            }
                        }
                    }
                    sqlx::raw_sql(AssertSqlSafe(d.set_version(v))).execute(&mut *$c).await?;
                }
                Ok::<(), StateError>(())
            }};
        }
        match &self.pool {
            DbPool::Pg(p) => {
                let mut tx = p.begin().await?;
                sqlx::query("SELECT pg_advisory_xact_lock(7262541890099001)").execute(&mut *tx).await?;
                upgrade!(tx)?;
                tx.commit().await?;
            }
            DbPool::Lite(p) => {
                let mut conn = p.acquire().await?;
                sqlx::raw_sql("BEGIN IMMEDIATE").execute(&mut *conn).await?;
                let result: Result<()> = async { upgrade!(conn) }.await;
                let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
                let ended = sqlx::raw_sql(end).execute(&mut *conn).await;
                result?;
                ended?;
            }
            DbPool::My(p) => {
                // MySQL DDL is not transactional: serialise migrating processes with a named lock.
                let mut conn = p.acquire().await?;
                let got: Option<i64> = sqlx::query_scalar("SELECT GET_LOCK('bfm_state_migrate', 60)").fetch_one(&mut *conn).await?;
                if got != Some(1) {
                    return Err(StateError::Config("another process is upgrading the state store; try again".into()));
                }
                let result: Result<()> = async { upgrade!(conn) }.await;
                let _ = sqlx::query("SELECT RELEASE_LOCK('bfm_state_migrate')").execute(&mut *conn).await;
                result?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_version_that_is_no_number_is_corrupt() {
        assert_eq!(parse_version(None).ok(), Some(0));
        assert_eq!(parse_version(Some("3".into())).ok(), Some(3));
        let e = parse_version(Some("three".into())).unwrap_err();
        assert!(matches!(&e, StateError::Corrupt { table: "bfm_meta", column: "meta_value", key, .. } if key == "schema_version"), "{e}");
    }
}
