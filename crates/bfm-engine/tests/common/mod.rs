//! Shared set-up: an sfm tree in a temp dir, a SQLite state file, and connections to real
//! servers.

#![allow(dead_code)]

use bfm_core::{PlanRequest, Selector};
use bfm_engine::{Config, Engine, ExecutionContext, Overrides, RunOptions, RunReport};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub struct Tree {
    pub dir: tempfile::TempDir,
}

impl Tree {
    pub fn new() -> Tree {
        Tree { dir: tempfile::tempdir().unwrap() }
    }

    pub fn sfm(&self) -> PathBuf {
        self.dir.path().join("sfm")
    }

    pub fn write(&self, rel: &str, text: &str) {
        let p = self.sfm().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    pub fn state_url(&self) -> String {
        format!("sqlite://{}", self.dir.path().join("state.db").display())
    }
}

pub fn config(tree: &Tree, state_url: &str, env: &[(&str, &str)]) -> Config {
    Config::from_sources(
        env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
        &Overrides { sfm_path: Some(tree.sfm()), state_url: Some(state_url.to_string()), ..Default::default() },
    )
    .unwrap()
}

pub async fn engine(config: Config) -> Arc<Engine> {
    let e = Engine::open(config).await.unwrap();
    let r = e.reload().await.unwrap();
    assert_eq!(r.errors, 0, "{:?}", e.diagnostics());
    e
}

pub fn ctx() -> ExecutionContext {
    ExecutionContext { executed_by: "test".into(), execution_method: "test".into(), execution_context: "{}".into() }
}

pub async fn up(e: &Arc<Engine>, connection: &str, schemas: &[&str]) -> RunReport {
    let mut req = PlanRequest::up(Selector { connection: Some(connection.into()), ..Default::default() });
    req.schemas = schemas.iter().map(|s| s.to_string()).collect();
    let prepared = e.prepare(&req).await.unwrap();
    e.run(prepared, RunOptions::new(ctx(), "test up"), None).await.unwrap()
}

pub async fn run(e: &Arc<Engine>, req: PlanRequest) -> RunReport {
    let prepared = e.prepare(&req).await.unwrap();
    e.run(prepared, RunOptions::new(ctx(), "test"), None).await.unwrap()
}

pub fn path_str(p: &Path) -> String {
    p.to_string_lossy().to_string()
}
