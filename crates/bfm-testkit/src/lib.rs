//! Each test gets its own database on the real servers, dropped when the handle goes out of scope
//! (also when the test panics). Servers: `BFM_TEST_PG_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`) and `BFM_TEST_MYSQL_URL` (default
//! `mysql://root@127.0.0.1:3306`). [`fake`] is an in-memory target for tests that need no server.

pub mod fake;
pub mod greptime;

use sqlx::{AssertSqlSafe, Connection};
use std::time::{SystemTime, UNIX_EPOCH};

pub fn pg_server_url() -> String {
    std::env::var("BFM_TEST_PG_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

pub fn mysql_server_url() -> String {
    std::env::var("BFM_TEST_MYSQL_URL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".into())
}

/// etcd endpoints of the test server (`BFM_TEST_ETCD_ENDPOINTS`, default `127.0.0.1:2379`;
/// `scripts/test.sh` starts one on a free port and exports it).
pub fn etcd_endpoints() -> String {
    std::env::var("BFM_TEST_ETCD_ENDPOINTS").unwrap_or_else(|_| "127.0.0.1:2379".into())
}

/// A key prefix of its own for one test: `/bfm-test/<tag>_<secs>_<random>/`.
pub fn etcd_prefix(tag: &str) -> String {
    format!("/bfm-test/{}/", unique_name(tag))
}

fn unique_name(prefix: &str) -> String {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    format!("{prefix}_{secs}_{:08x}", rand::random::<u32>())
}

/// Replace the database part of a URL.
pub fn with_database(server_url: &str, db: &str) -> String {
    let (base, query) = match server_url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (server_url, None),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let base = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{db}?{q}"),
        None => format!("{base}/{db}"),
    }
}

fn run_blocking<F: std::future::Future<Output = ()> + Send + 'static>(f: F) {
    // Works from sync and async contexts alike (Drop may run inside a runtime).
    let _ = std::thread::spawn(move || {
        if let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() {
            rt.block_on(f);
        }
    })
    .join();
}

/// A fresh PostgreSQL database.
pub struct PgDb {
    pub name: String,
    pub url: String,
}

impl PgDb {
    pub async fn new() -> PgDb {
        let name = unique_name("bfm_test");
        let mut admin = sqlx::PgConnection::connect(&pg_server_url()).await.expect("connect to the test PostgreSQL server");
        sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE \"{name}\""))).execute(&mut admin).await.expect("create test database");
        let _ = admin.close().await;
        let url = with_database(&pg_server_url(), &name);
        PgDb { name, url }
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        run_blocking(async move {
            if let Ok(mut admin) = sqlx::PgConnection::connect(&pg_server_url()).await {
                let _ = sqlx::raw_sql(AssertSqlSafe(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))).execute(&mut admin).await;
            }
        });
    }
}

/// A fresh MariaDB/MySQL database.
pub struct MySqlDb {
    pub name: String,
    pub url: String,
}

impl MySqlDb {
    pub async fn new() -> MySqlDb {
        let name = unique_name("bfm_test");
        let mut admin = sqlx::MySqlConnection::connect(&mysql_server_url()).await.expect("connect to the test MariaDB server");
        sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE `{name}`"))).execute(&mut admin).await.expect("create test database");
        let _ = admin.close().await;
        let url = with_database(&mysql_server_url(), &name);
        MySqlDb { name, url }
    }

    /// Drop an extra database created by a test (MySQL schemas are databases).
    pub fn also_drop(&self, db: &str) -> DropDb {
        DropDb(db.to_string())
    }
}

impl Drop for MySqlDb {
    fn drop(&mut self) {
        drop_mysql_db(self.name.clone());
    }
}

/// Drops a MySQL database when dropped.
pub struct DropDb(String);

impl Drop for DropDb {
    fn drop(&mut self) {
        drop_mysql_db(self.0.clone());
    }
}

fn drop_mysql_db(name: String) {
    run_blocking(async move {
        if let Ok(mut admin) = sqlx::MySqlConnection::connect(&mysql_server_url()).await {
            let _ = sqlx::raw_sql(AssertSqlSafe(format!("DROP DATABASE IF EXISTS `{name}`"))).execute(&mut admin).await;
        }
    });
}

/// An HTTP client for tests. bfm uses rustls with the ring provider everywhere; install it
/// first (installing twice is harmless).
pub fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_database_of_a_url() {
        assert_eq!(with_database("postgres://u@h:5432/postgres", "x"), "postgres://u@h:5432/x");
        assert_eq!(with_database("mysql://root@h:3306", "x"), "mysql://root@h:3306/x");
        assert_eq!(with_database("postgres://h/db?sslmode=disable", "x"), "postgres://h/x?sslmode=disable");
    }
}
