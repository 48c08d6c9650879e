//! The engine: configuration, the executor, reconciliation, and the service API that every
//! surface (CLI, HTTP, gRPC, auto-migrate) calls. Surfaces translate requests into these calls
//! and results into their wire format; they hold no business logic.

pub mod config;
mod context;
mod declarative;
mod engine;
mod execute;
pub mod memory;
mod reconcile;
pub mod service;
mod status;

pub use config::{Config, ConfigError, Overrides};
pub use context::{executing_user, host_name};
pub use declarative::{BaselineReport, DECLARATIVE_ID, StartupReport};
pub use engine::{Engine, EngineError, Observer, Prepared, ReloadReport, SchemaSelection, validate_schema_pattern};
pub use execute::{ProgressEvent, ProgressSink, RunOptions, RunReport, StepOutcomeKind, StepResult, render_step};
pub use reconcile::ReconcileReport;
pub use service::{Call, ErrorKind, Service, ServiceError, UpRun};
pub use status::{StatusFilter, StatusRow};

pub use bfm_state::{ExecutionContext, Operation};
