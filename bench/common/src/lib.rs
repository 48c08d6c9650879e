//! What the benchmark binaries share: where the bfm binary and the PostgreSQL server are, running
//! `psql`, and medians.

use std::path::PathBuf;
use std::process::{Command, Output};

/// The bfm binary to measure: `BFM_BIN`, else the workspace's release build.
pub fn bfm_binary() -> PathBuf {
    std::env::var("BFM_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../target/release/bfm")))
}

/// The PostgreSQL server URL without a database: `BFM_BENCH_PG`, else the local one.
pub fn pg_server() -> String {
    std::env::var("BFM_BENCH_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

/// Run `psql` on `db` with `args`, stopping at the first error; panics if it fails.
pub fn psql(server: &str, db: &str, args: &[&str]) -> Output {
    let out = Command::new("psql")
        .arg(format!("{server}/{db}"))
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1"])
        .args(args)
        .output()
        .expect("run psql");
    assert!(out.status.success(), "psql failed: {}", String::from_utf8_lossy(&out.stderr));
    out
}

/// The unaligned, trimmed output of one SQL command.
pub fn scalar(server: &str, db: &str, sql: &str) -> String {
    String::from_utf8_lossy(&psql(server, db, &["-Atc", sql]).stdout).trim().to_string()
}

/// The median (the mean of the two middle values for an even count); `NaN` when empty.
pub fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => v[n / 2],
        _ => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}
