//! Helpers shared by the black-box tests of the `bfm` binary. Each test binary uses a part.
#![allow(dead_code)]

use bfm_testkit::PgDb;
use std::ffi::OsStr;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

pub fn write(root: &Path, rel: &str, body: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, body).unwrap();
}

/// stdout and stderr of a finished command.
pub fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// For [`bfm`] calls that set no variable.
pub const NO_ENV: &[(&str, &str)] = &[];

/// Run the `bfm` CLI in `dir` to completion.
pub fn bfm<K: AsRef<OsStr>, V: AsRef<OsStr>>(dir: &Path, args: &[&str], env: &[(K, V)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_bfm"));
    c.current_dir(dir).args(args).env_remove("BFM_SFM_PATH").env("BFM_LOG_LEVEL", "error");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run bfm")
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A fixed-schema connection `core` and a per-tenant `organization` that depends on it.
pub fn tree(root: &Path) {
    write(root, "sfm/postgresql/core/20250101000000_bootstrap.up.sql", "-- bfm-schema: core\nCREATE TABLE orgs (id int PRIMARY KEY);");
    write(root, "sfm/postgresql/core/20250101000000_bootstrap.down.sql", "DROP TABLE orgs;");
    write(
        root,
        "sfm/postgresql/core/20250102000000_tagged.up.sql",
        "-- bfm-schema: core\n-- bfm-tags: team=billing\nCREATE TABLE plans (id int);",
    );
    write(
        root,
        "sfm/postgresql/organization/20250103000000_alerts.up.sql",
        "-- bfm-dependency: connection=core target=bootstrap\nCREATE TABLE alerts (id int, tenant text DEFAULT '{{.Schema}}');",
    );
    write(root, "sfm/postgresql/organization/20250103000000_alerts.down.sql", "DROP TABLE alerts;");
    write(root, "sfm/postgresql/organization/20250104000000_seed.up.sql", "INSERT INTO {{.Schema}}.alerts (id) VALUES (1);");
    write(root, "sfm/postgresql/organization/20250104000000_seed.down.sql", "DELETE FROM alerts;");
}

/// `core` and `organization` both on `db`.
pub fn pg_env(db: &PgDb) -> Vec<(&'static str, String)> {
    vec![
        ("CORE_BACKEND", "postgresql".into()),
        ("CORE_DB_URL", db.url.clone()),
        ("ORGANIZATION_BACKEND", "postgresql".into()),
        ("ORGANIZATION_DB_URL", db.url.clone()),
    ]
}

/// A running `bfm serve` (HTTP and gRPC on free ports, SQLite state in its own directory),
/// killed when dropped.
pub struct ServeProcess {
    pub child: Child,
    pub http_port: u16,
    pub grpc_port: u16,
    pub dir: tempfile::TempDir,
}

impl ServeProcess {
    /// Send SIGTERM, as a process manager stopping the server does.
    pub fn sigterm(&self) {
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
    }

    /// Wait (up to 10 s) for the process to exit, and require a clean exit.
    pub async fn wait_clean_exit(&mut self) {
        let start = std::time::Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "{status:?}");
                return;
            }
            assert!(start.elapsed() < std::time::Duration::from_secs(10), "server did not stop");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start `bfm serve` with `token`, auto-migrate off unless `env` turns it on, in a fresh
/// directory that `setup` fills. The caller waits for whichever port it needs.
pub fn spawn_serve(token: &str, env: &[(&str, String)], extra_args: &[&str], setup: impl FnOnce(&Path)) -> ServeProcess {
    let dir = tempfile::tempdir().unwrap();
    setup(dir.path());
    let (http_port, grpc_port) = (free_port(), free_port());
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_bfm"));
    cmd.current_dir(dir.path())
        .args(["--sfm", "sfm", "--state", &format!("sqlite://{}", dir.path().join("state.db").display())])
        .args(["serve", "--host", "127.0.0.1", "--port", &http_port.to_string(), "--grpc-port", &grpc_port.to_string()])
        .args(extra_args)
        .env_remove("BFM_SFM_PATH")
        .env("BFM_API_TOKEN", token)
        .env("BFM_AUTO_MIGRATE", "false")
        .env("BFM_LOG_LEVEL", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd.spawn().unwrap();
    ServeProcess { child, http_port, grpc_port, dir }
}
