//! `cargo run --release -p bench-apply -- [--migrations 1000] [--rounds 5] [--shapes ddl,light]`
//!
//! Applies N migrations to a fresh PostgreSQL database, in two shapes:
//! * `ddl`: each migration creates a small table, every 10th also an index;
//! * `light`: each migration inserts one row.
//!
//! Beside bfm it runs the floor: one `psql` session executing the same statements, each
//! migration in its own BEGIN/COMMIT, with no bookkeeping. Runs alternate (floor first in even
//! rounds, bfm first in odd ones) so that both see the same machine; the table shows medians and
//! the median of the per-round ratios. bfm is timed end to end as a user runs it: process start,
//! loading and checking the catalogue, recording it in the (SQLite) state store, planning,
//! applying, and writing the state.

use bench_common::{median, psql, scalar};
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

struct Args {
    migrations: usize,
    rounds: usize,
    shapes: Vec<String>,
    bfm: PathBuf,
    server: String,
}

fn parse_args() -> Args {
    let mut a = Args {
        migrations: 1000,
        rounds: 5,
        shapes: vec!["ddl".into(), "light".into()],
        bfm: bench_common::bfm_binary(),
        server: bench_common::pg_server(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--migrations" => a.migrations = value().parse().expect("--migrations: a number"),
            "--rounds" => a.rounds = value().parse().expect("--rounds: a number"),
            "--shapes" => a.shapes = value().split(',').map(str::to_string).collect(),
            "--bfm" => a.bfm = PathBuf::from(value()),
            "--server" => a.server = value(),
            other => panic!("unknown flag {other}"),
        }
    }
    a
}

/// (up script of migration i, statements for the floor).
fn script(shape: &str, i: usize) -> String {
    match shape {
        "ddl" => {
            let mut s =
                format!("CREATE TABLE t_{i} (id bigint PRIMARY KEY, name text NOT NULL, created_at timestamptz NOT NULL DEFAULT now());\n");
            if i.is_multiple_of(10) {
                s.push_str(&format!("CREATE INDEX t_{i}_name ON t_{i} (name);\n"));
            }
            s
        }
        _ => format!("INSERT INTO bench_rows (id, payload) VALUES ({i}, 'row {i}');\n"),
    }
}

fn setup(shape: &str) -> &'static str {
    if shape == "light" { "CREATE TABLE bench_rows (id bigint PRIMARY KEY, payload text NOT NULL);" } else { "SELECT 1;" }
}

fn main() {
    let a = parse_args();
    assert!(a.bfm.is_file(), "bfm binary not found at {} (cargo build --release -p bfm, or set BFM_BIN)", a.bfm.display());
    let machine = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| c.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string()))
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let pg = scalar(&a.server, "postgres", "SHOW server_version");
    println!("bench-apply: {} migrations × {} rounds; PostgreSQL {pg}; {cores} cores {machine}", a.migrations, a.rounds);
    println!();
    println!("| shape | floor (psql) median | bfm median | bfm execute-only median | paired ratio bfm/floor (median) | goal |");
    println!("|---|---|---|---|---|---|");
    for shape in &a.shapes {
        let dir = tempfile::tempdir().expect("temp dir");
        let tree = dir.path().join("sfm/postgresql/bench");
        std::fs::create_dir_all(&tree).expect("create tree");
        let mut floor_sql = String::new();
        for i in 1..=a.migrations {
            let body = script(shape, i);
            std::fs::write(tree.join(format!("{}_m{i}.up.sql", 20250101000000u64 + i as u64)), format!("-- bfm-schema: public\n{body}"))
                .expect("write migration");
            floor_sql.push_str("BEGIN;\n");
            floor_sql.push_str(&body);
            floor_sql.push_str("COMMIT;\n");
        }
        let floor_file = dir.path().join("floor.sql");
        std::fs::write(&floor_file, floor_sql).expect("write floor");

        let (mut floors, mut bfms, mut execs, mut ratios) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for round in 0..a.rounds {
            let run_floor = || {
                let db = format!("bench_floor_{}_{round}", std::process::id());
                psql(&a.server, "postgres", &["-c", &format!("DROP DATABASE IF EXISTS {db}"), "-c", &format!("CREATE DATABASE {db}")]);
                psql(&a.server, &db, &["-c", setup(shape)]);
                let t = Instant::now();
                psql(&a.server, &db, &["-f", floor_file.to_str().expect("path")]);
                let s = t.elapsed().as_secs_f64();
                psql(&a.server, "postgres", &["-c", &format!("DROP DATABASE {db}")]);
                s
            };
            let run_bfm = || {
                let db = format!("bench_bfm_{}_{round}", std::process::id());
                psql(&a.server, "postgres", &["-c", &format!("DROP DATABASE IF EXISTS {db}"), "-c", &format!("CREATE DATABASE {db}")]);
                psql(&a.server, &db, &["-c", setup(shape)]);
                let state = dir.path().join(format!("state-{round}.db"));
                let t = Instant::now();
                let out = Command::new(&a.bfm)
                    .args([
                        "--sfm",
                        dir.path().join("sfm").to_str().expect("path"),
                        "--state",
                        &format!("sqlite://{}", state.display()),
                        "migrate",
                        "up",
                        "--connection",
                        "bench",
                        "--json",
                    ])
                    .env("BENCH_BACKEND", "postgresql")
                    .env("BENCH_DB_URL", format!("{}/{db}", a.server))
                    .env("BFM_LOG_LEVEL", "error")
                    .output()
                    .expect("run bfm");
                let s = t.elapsed().as_secs_f64();
                assert!(out.status.success(), "bfm failed: {}", String::from_utf8_lossy(&out.stderr));
                let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("bfm report");
                let applied = report["applied"].as_array().map(Vec::len).unwrap_or(0);
                assert_eq!(applied, a.migrations, "bfm applied {applied} migrations");
                let ledger: usize = scalar(&a.server, &db, "SELECT count(*) FROM bfm.ledger").parse().expect("count");
                assert_eq!(ledger, a.migrations);
                psql(&a.server, "postgres", &["-c", &format!("DROP DATABASE {db}")]);
                (s, report["duration_ms"].as_f64().unwrap_or(0.0) / 1000.0)
            };
            let (f, (b, e)) = if round % 2 == 0 {
                let f = run_floor();
                (f, run_bfm())
            } else {
                let b = run_bfm();
                (run_floor(), b)
            };
            eprintln!("  {shape} round {round}: floor {f:.3} s, bfm {b:.3} s (execute {e:.3} s), ratio {:.2}", b / f);
            floors.push(f);
            bfms.push(b);
            execs.push(e);
            ratios.push(b / f);
        }
        let goal = if shape == "ddl" { "≤ 1.05" } else { "≤ 0.85" };
        println!(
            "| {shape} | {:.3} s | {:.3} s | {:.3} s | {:.2} | {goal} |",
            median(&floors),
            median(&bfms),
            median(&execs),
            median(&ratios)
        );
    }
}
