//! The engine on MariaDB and SQLite targets, with state in PostgreSQL and MariaDB.

mod common;

use bfm_engine::StepOutcomeKind;
use bfm_testkit::{MySqlDb, PgDb};
use common::*;

#[tokio::test]
async fn mariadb_target_records_the_failing_statement_and_partial_changes() {
    let db = MySqlDb::new().await;
    let state = PgDb::new().await;
    let t = Tree::new();
    t.write(
        "mysql/shop/20250101000000_products.up.sql",
        "CREATE TABLE products (id INT PRIMARY KEY, name VARCHAR(50));\nINSERT INTO products VALUES (1, 'a');",
    );
    t.write("mysql/shop/20250101000000_products.down.sql", "DROP TABLE products;");
    t.write(
        "mysql/shop/20250102000000_broken.up.sql",
        "CREATE TABLE orders (id INT PRIMARY KEY);\nINSERT INTO missing_table VALUES (1);\nCREATE TABLE never (id INT);",
    );
    let e = engine(config(&t, &state.url, &[("SHOP_BACKEND", "mariadb"), ("SHOP_DB_URL", &db.url)])).await;
    let r = up(&e, "shop", &[]).await;
    assert_eq!(r.applied, vec!["20250101000000_products_mysql_shop"]);
    let failed = r.steps.iter().find(|s| s.outcome == StepOutcomeKind::Failed).unwrap();
    assert_eq!(failed.statement_index, Some(1));
    assert!(failed.statement.as_deref().unwrap().contains("missing_table"));
    let st = e.state().states(&bfm_state::StateFilter { status: Some(bfm_core::Status::Failed), ..Default::default() }).await.unwrap();
    // The CREATE TABLE before the failure committed implicitly: the state says so.
    assert!(st[0].partial, "{st:?}");
    assert_eq!(st[0].statements_done, 1);
    // A partial failure blocks the chain until someone retries on purpose.
    let r = up(&e, "shop", &[]).await;
    assert!(r.applied.is_empty());
    // Down of the first migration works and clears the ledger row.
    let r = down(&e, &["20250101000000_products_mysql_shop"]).await;
    assert_eq!(r.applied, vec!["20250101000000_products_mysql_shop"], "{r:?}");
    e.close().await;
}

#[tokio::test]
async fn golang_migrate_folder_on_sqlite_with_state_in_mariadb() {
    let state = MySqlDb::new().await;
    let t = Tree::new();
    let gm = t.dir.path().join("migrations");
    std::fs::create_dir_all(&gm).unwrap();
    std::fs::write(gm.join("001_init.up.sql"), "CREATE TABLE a (id INTEGER PRIMARY KEY);").unwrap();
    std::fs::write(gm.join("001_init.down.sql"), "DROP TABLE a;").unwrap();
    std::fs::write(
        gm.join("002_more.up.sql"),
        "CREATE TABLE b (id INTEGER PRIMARY KEY);\nCREATE TRIGGER bt AFTER INSERT ON b BEGIN INSERT INTO a VALUES (new.id); END;",
    )
    .unwrap();
    std::fs::create_dir_all(t.sfm()).unwrap();
    let file = t.dir.path().join("app.db");
    let e = engine(config(
        &t,
        &state.url,
        &[("APP_BACKEND", "sqlite"), ("APP_DB_NAME", &path_str(&file)), ("APP_MIGRATIONS_PATH", &path_str(&gm))],
    ))
    .await;
    let r = up(&e, "app", &[]).await;
    assert!(r.success, "{:?}", r.errors);
    assert_eq!(r.applied, vec!["001_init_sqlite_app", "002_more_sqlite_app"]);
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path_str(&file))).await.unwrap();
    sqlx::query("INSERT INTO b VALUES (7)").execute(&pool).await.unwrap();
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM a WHERE id = 7").fetch_one(&pool).await.unwrap();
    assert_eq!(n, 1, "the trigger body was kept whole");
    pool.close().await;
    let r = up(&e, "app", &[]).await;
    assert!(r.applied.is_empty() && r.skipped.len() == 2);
    e.close().await;
}
