//! The engine: configuration, the executor, reconciliation, and the service API that every
//! surface (CLI, HTTP, gRPC, auto-migrate, metrics) calls. Surfaces translate requests into the
//! service's typed requests and results into their wire format; they hold no business logic.
//! Planning and running (`Engine::prepare`, `Engine::run`) are internal: only the service
//! starts runs.

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
pub use engine::{Engine, EngineError, Observer, ReloadReport, validate_schema_pattern};
pub use execute::{ProgressEvent, ProgressSink, RunReport, StepOutcomeKind, StepResult};
pub use reconcile::ReconcileReport;
pub use service::{ErrorKind, RunHooks, RunLabel, Service, ServiceError, Surface};
pub use status::{StatusFilter, StatusRow};

pub use bfm_state::{ExecutionContext, Operation};
