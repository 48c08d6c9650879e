//! The service: the one door into the engine for every surface (CLI, HTTP, gRPC, auto-migrate,
//! metrics, and whatever comes next). Surfaces translate their wire format into the typed
//! requests of [`request`], label runs with a [`RunLabel`], and map [`ServiceError`] to their
//! status codes; all validation, schema selection, planning and summaries happen here.
//!
//! * [`error`]: the error enum, its kinds and the request fields errors name;
//! * [`label`]: who started a run and how, and the hooks a surface attaches;
//! * [`request`]: one typed request per operation;
//! * [`plan`]: plans as typed values (dry runs of every surface), planned runs and outcomes;
//! * `runs`: up, down, rollback, retry, accept-checksum, reconcile, order;
//! * `queries`: list, detail, status, history, executions, skipped, reindex;
//! * `summary`: aggregate status, the status table, pending per connection, health;
//! * [`dto`]: BfM's JSON shapes; `schema`: the declarative schema calls.

pub mod dto;
pub mod error;
pub mod label;
pub mod plan;
mod queries;
pub mod request;
mod runs;
mod schema;
pub mod summary;

pub use error::{ErrorKind, Field, FieldRef, Result, ServiceError};
pub use label::{RunHooks, RunLabel, Surface};
pub use plan::{PlanView, PlannedRun, PlannedSkip, PlannedStep, RenderedSql, RunOutcome};
pub use request::*;
pub use runs::RollbackOutcome;
pub use summary::{AggregateStatus, ConnectionPending, MigrationCounts, StatusTable};

use crate::engine::Engine;
use bfm_core::{Lookup, Migration};
use chrono::{DateTime, SecondsFormat, Utc};
use std::sync::Arc;

pub struct Service {
    engine: Arc<Engine>,
}

impl Service {
    pub fn new(engine: Arc<Engine>) -> Service {
        Service { engine }
    }

    /// The engine, for what is not a request: its configuration, diagnostics, shutdown.
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// A migration id as users write it, for the API (BfM's "migration not found").
    fn resolve(&self, id: &str) -> Result<(Arc<Migration>, Option<String>)> {
        match self.engine.catalog().lookup(id) {
            Lookup::Found { migration, schema } => Ok((migration, schema)),
            Lookup::NotFound => Err(ServiceError::not_found("migration not found")),
            Lookup::Ambiguous(c) => Err(ServiceError::bad_request(format!("ambiguous migration id {id:?}: matches {}", c.join(", ")))),
        }
    }
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// A migration id from a request: required, surrounding blanks ignored.
fn migration_id(id: &str) -> Result<&str> {
    let v = id.trim();
    if v.is_empty() { Err(ServiceError::required(Field::MigrationId)) } else { Ok(v) }
}

fn non_empty(s: &Option<String>) -> Option<&str> {
    s.as_deref().map(str::trim).filter(|s| !s.is_empty())
}
