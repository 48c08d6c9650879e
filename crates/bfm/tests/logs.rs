//! Black-box tests of where `bfm`'s logs go and in which form: the real binary with its stdout
//! and stderr piped (so neither is a terminal), never a byte of ANSI colour in either.

mod common;

use common::{free_port, write};
use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const ESC: u8 = 0x1b;

/// `bfm serve` on free ports in a fresh directory, stdout and stderr piped, `BFM_LOG_FORMAT`
/// and `NO_COLOR` as `env` says; up (one request served, so it logged more than its start),
/// then stopped with SIGTERM. What it wrote.
fn serve_once(env: &[(&str, &str)]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("sfm")).unwrap();
    let (http, grpc) = (free_port(), free_port());
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_bfm"));
    cmd.current_dir(dir.path())
        .args(["--sfm", "sfm", "--state", &format!("sqlite://{}", dir.path().join("state.db").display())])
        .args(["serve", "--host", "127.0.0.1", "--port", &http.to_string(), "--grpc-port", &grpc.to_string()])
        .env_remove("BFM_SFM_PATH")
        .env_remove("BFM_LOG_FORMAT")
        .env_remove("NO_COLOR")
        .env("BFM_API_TOKEN", "test-token-0123456789")
        .env("BFM_AUTO_MIGRATE", "false")
        .env("BFM_LOG_LEVEL", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let started = Instant::now();
    let mut conn = loop {
        if let Ok(c) = TcpStream::connect(("127.0.0.1", http)) {
            break c;
        }
        if child.try_wait().unwrap().is_some() || started.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            let o = child.wait_with_output().unwrap();
            panic!("bfm serve did not come up: {}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    conn.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // SAFETY: kill(2) on our own child's pid; no memory is involved.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{:?}: {}", o.status, String::from_utf8_lossy(&o.stderr));
    o
}

fn no_colour(o: &Output) {
    assert!(!o.stdout.contains(&ESC), "ANSI escape on stdout: {:?}", String::from_utf8_lossy(&o.stdout));
    assert!(!o.stderr.contains(&ESC), "ANSI escape on stderr: {:?}", String::from_utf8_lossy(&o.stderr));
}

fn lines(bytes: &[u8]) -> Vec<String> {
    String::from_utf8(bytes.to_vec()).unwrap().lines().filter(|l| !l.trim().is_empty()).map(str::to_string).collect()
}

#[test]
fn serve_logs_json_lines_to_a_piped_stdout() {
    let o = serve_once(&[]);
    no_colour(&o);
    let lines = lines(&o.stdout);
    assert!(lines.len() >= 3, "{lines:?}");
    let events: Vec<Value> = lines.iter().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))).collect();
    for e in &events {
        assert!(e["level"].is_string() && e["timestamp"].is_string() && e["fields"].is_object(), "{e}");
    }
    let messages: Vec<&str> = events.iter().filter_map(|e| e["fields"]["message"].as_str()).collect();
    assert!(messages.contains(&"bfm listening (HTTP)"), "{messages:?}");
    assert!(messages.contains(&"stopped"), "{messages:?}");
    // The logs went to stdout, not stderr.
    assert!(!String::from_utf8_lossy(&o.stderr).contains("bfm listening"), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn serve_logs_human_text_when_asked() {
    for format in ["text", "TEXT", "plaintext"] {
        let o = serve_once(&[("BFM_LOG_FORMAT", format)]);
        no_colour(&o);
        let lines = lines(&o.stdout);
        assert!(lines.iter().any(|l| l.contains("INFO") && l.contains("bfm listening (HTTP)")), "{format}: {lines:?}");
        assert!(lines.iter().all(|l| serde_json::from_str::<Value>(l).is_err()), "{format}: {lines:?}");
    }
    // JSON asked for explicitly is JSON too.
    let o = serve_once(&[("BFM_LOG_FORMAT", "json")]);
    assert!(lines(&o.stdout).iter().all(|l| serde_json::from_str::<Value>(l).is_ok()));
}

#[test]
fn an_unknown_log_format_stops_bfm_at_start_up() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "sfm/.keep", "");
    for args in [&["--sfm", "sfm", "serve", "--port", "0"][..], &["check", "sfm"][..]] {
        let o = Command::new(env!("CARGO_BIN_EXE_bfm"))
            .current_dir(dir.path())
            .args(args)
            .env("BFM_LOG_FORMAT", "bogus")
            .env("BFM_API_TOKEN", "test-token-0123456789")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains("BFM_LOG_FORMAT") && stderr.contains("bogus"), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(o.stdout.is_empty(), "{args:?}");
        no_colour(&o);
    }
}

#[test]
fn a_command_logs_human_text_to_stderr_and_keeps_stdout_for_its_output() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "bfm.toml", "sfm_path = \"sfm\"\n\n[connections.app]\nbackend = \"sqlite\"\npath = \"app.db\"\n");
    write(dir.path(), "sfm/sqlite/app/20250101000000_create_notes.up.sql", "CREATE TABLE notes (id integer PRIMARY KEY);");
    let state = format!("sqlite://{}", dir.path().join("state.db").display());
    let o = Command::new(env!("CARGO_BIN_EXE_bfm"))
        .current_dir(dir.path())
        .args(["--config", "bfm.toml", "--state", &state, "--log-level", "debug", "migrate", "up", "--connection", "app", "--json"])
        .env_remove("BFM_LOG_FORMAT")
        .env_remove("BFM_SFM_PATH")
        .env_remove("NO_COLOR")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    no_colour(&o);
    // stdout is the command's JSON report, nothing else.
    let report: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stdout)));
    assert!(report.is_object(), "{report}");
    let logs = lines(&o.stderr);
    assert!(logs.iter().any(|l| l.contains("DEBUG") && l.contains("planned")), "{logs:?}");
    assert!(logs.iter().all(|l| serde_json::from_str::<Value>(l).is_err()), "{logs:?}");
}
