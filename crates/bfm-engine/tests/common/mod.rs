//! Shared set-up: an sfm tree in a temp dir, a SQLite state file, and connections to real
//! servers.

#![allow(dead_code)]

use bfm_engine::service::{DownRequest, DownTarget, Field, MigrationFilter, SchemaChoice, UpRequest};
use bfm_engine::{Config, Engine, ExecutionContext, Overrides, RunHooks, RunLabel, RunReport, Service, Surface};
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

pub fn label(command: &str) -> RunLabel {
    RunLabel::new(Surface::Job, command, ctx())
}

/// Up over one connection, in the given schemas, through the service.
pub async fn up(e: &Arc<Engine>, connection: &str, schemas: &[&str]) -> RunReport {
    let req = UpRequest {
        migrations: MigrationFilter { connection: Some(connection.into()), ..Default::default() },
        schemas: SchemaChoice::names(Field::Schemas, schemas.iter().map(|s| s.to_string()).collect()),
        ..Default::default()
    };
    let outcome = Service::new(e.clone()).up(req, label("test up"), RunHooks::default()).await.unwrap();
    outcome.report.expect("a run that is not a dry run has a report")
}

/// Down of migrations by id as users write them (`{schema}_{id}` for one tenant).
pub async fn down(e: &Arc<Engine>, ids: &[&str]) -> RunReport {
    let req = DownRequest {
        target: DownTarget::Filter(MigrationFilter { ids: ids.iter().map(|s| s.to_string()).collect(), ..Default::default() }),
        schemas: Vec::new(),
        cascade: false,
        dry_run: false,
        sql: false,
        environment: None,
    };
    let outcome = Service::new(e.clone()).down(req, label("test"), RunHooks::default()).await.unwrap();
    outcome.report.expect("a run that is not a dry run has a report")
}

pub fn path_str(p: &Path) -> String {
    p.to_string_lossy().to_string()
}
