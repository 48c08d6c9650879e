use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// bfm — a migration control plane for PostgreSQL, MySQL/MariaDB, SQLite, GreptimeDB and etcd.
///
/// Configuration comes from flags, then BfM's environment variables ({CONN}_BACKEND,
/// {CONN}_DB_HOST, …, BFM_STATE_*, BFM_SFM_PATH), then bfm.toml, then defaults: with nothing
/// configured, state is kept in ./.bfm/state.db (SQLite).
#[derive(Debug, Parser)]
#[command(name = "bfm", version, max_term_width = 110)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct Global {
    /// Configuration file (default: ./bfm.toml if present; env BFM_CONFIG).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Root of the sfm migration tree (env BFM_SFM_PATH).
    #[arg(long, global = true, value_name = "PATH")]
    pub sfm: Option<PathBuf>,
    /// State store URL: sqlite://path, postgres://…, mysql://… (env BFM_STATE_DB_URL).
    #[arg(long, global = true, value_name = "URL")]
    pub state: Option<String>,
    /// Value of {{.Environment}} in scripts (env BFM_ENVIRONMENT).
    #[arg(long, global = true, value_name = "NAME")]
    pub environment: Option<String>,
    /// Log level: error, warn, info, debug (env BFM_LOG_LEVEL).
    #[arg(long, global = true, value_name = "LEVEL")]
    pub log_level: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run, plan and inspect versioned migrations.
    #[command(subcommand)]
    Migrate(Migrate),
    /// Create a new timestamped migration (up and down files).
    New(NewArgs),
    /// Validate a migration tree; exits non-zero with `file:line: message` for every problem.
    Check(CheckArgs),
    /// Serve the HTTP and gRPC APIs (BfM-compatible routes and RPCs, OpenAPI, metrics) and run auto-migrate.
    Serve(ServeArgs),
    /// Declarative PostgreSQL schema: desired-state SQL files → plan → apply; drift; dump.
    #[command(subcommand)]
    Schema(SchemaCmd),
    /// Adopt a database managed by something else: dump its schema into a first migration and
    /// record it as applied.
    Baseline(BaselineArgs),
    /// Print the version.
    Version,
}

#[derive(Debug, Subcommand)]
pub enum Migrate {
    /// Apply pending migrations (dependencies first).
    Up(UpArgs),
    /// Show what `up` would do, with the SQL (same as `up --dry-run --sql`).
    Plan(UpArgs),
    /// Roll back migrations (run their down scripts).
    Down(DownArgs),
    /// Show what is applied where.
    Status(StatusArgs),
    /// Mark a failed migration pending again so that the next `up` runs it.
    Retry(IdArgs),
    /// Accept the current script of an applied migration whose checksum changed.
    AcceptChecksum(IdArgs),
    /// Print migration ids in dependency order (lowest version first among those ready).
    Order(OrderArgs),
    /// Bring the state store in line with the targets' ledgers.
    Reconcile(ReconcileArgs),
}

#[derive(Debug, Args, Clone, Default)]
pub struct Filters {
    /// Only this connection.
    #[arg(long, short = 'c')]
    pub connection: Option<String>,
    /// Only this backend (postgresql ≡ postgres).
    #[arg(long)]
    pub backend: Option<String>,
    /// Only migrations whose declared schema is this one.
    #[arg(long)]
    pub declared_schema: Option<String>,
    /// Only this version.
    #[arg(long)]
    pub version: Option<String>,
    /// Only migrations with this tag (key=value; repeat for AND).
    #[arg(long = "tag", short = 't', value_name = "KEY=VALUE")]
    pub tags: Vec<String>,
    /// Only these migrations (base id or {schema}_{id}; repeatable).
    #[arg(long = "id", value_name = "ID")]
    pub ids: Vec<String>,
}

#[derive(Debug, Args, Clone)]
pub struct UpArgs {
    #[command(flatten)]
    pub filters: Filters,
    /// Schema (tenant) for per-tenant migrations; repeatable.
    #[arg(long = "schema", short = 's', value_name = "SCHEMA")]
    pub schemas: Vec<String>,
    /// Also every schema of the connection matching this SQL LIKE pattern (e.g. 'cli_%').
    #[arg(long, value_name = "PATTERN", requires = "connection")]
    pub schema_pattern: Option<String>,
    /// Also the schemas listed by the connection's tenant query ({CONN}_TENANT_QUERY).
    #[arg(long, requires = "connection")]
    pub tenants: bool,
    /// Print the plan without running anything.
    #[arg(long)]
    pub dry_run: bool,
    /// With --dry-run: also print the SQL of every step.
    #[arg(long)]
    pub sql: bool,
    /// Do not expand or order by dependencies (version order only).
    #[arg(long)]
    pub ignore_dependencies: bool,
    /// Run even if applied migrations of the connection were modified on disk.
    #[arg(long)]
    pub allow_modified: bool,
    /// Schemas migrated at once per connection.
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args, Clone)]
pub struct DownArgs {
    /// Migrations to roll back (base id or {schema}_{id}).
    #[arg(value_name = "ID")]
    pub migrations: Vec<String>,
    #[command(flatten)]
    pub filters: Filters,
    /// Schema (tenant) for per-tenant migrations; repeatable.
    #[arg(long = "schema", short = 's', value_name = "SCHEMA")]
    pub schemas: Vec<String>,
    /// Also roll back applied migrations that depend on these (dependents first).
    #[arg(long)]
    pub cascade: bool,
    #[arg(long)]
    pub dry_run: bool,
    #[arg(long)]
    pub sql: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args, Clone)]
pub struct StatusArgs {
    #[arg(long, short = 'c')]
    pub connection: Option<String>,
    #[arg(long, short = 's')]
    pub schema: Option<String>,
    /// Only rows with this status (pending, applied, failed, rolled_back, modified, missing, running).
    #[arg(long)]
    pub status: Option<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args, Clone)]
pub struct IdArgs {
    /// Migration id (base id or {schema}_{id}).
    pub id: String,
    /// Only this schema.
    #[arg(long, short = 's')]
    pub schema: Option<String>,
}

#[derive(Debug, Args, Clone)]
pub struct OrderArgs {
    /// Migration ids (base id or {schema}_{id}).
    #[arg(required = true, value_name = "ID")]
    pub migrations: Vec<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args, Clone)]
pub struct ReconcileArgs {
    #[arg(long, short = 'c')]
    pub connection: Option<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args, Clone)]
pub struct NewArgs {
    /// Connection (directory under <sfm>/<backend>/).
    pub connection: String,
    /// Migration name (letters, digits, `_`).
    pub name: String,
    /// Backend directory, if the connection is not configured and has no directory yet.
    #[arg(long)]
    pub backend: Option<String>,
    /// Fixed schema to declare in the header.
    #[arg(long)]
    pub schema: Option<String>,
}

#[derive(Debug, Args, Clone)]
pub struct ServeArgs {
    /// Development mode: without BFM_API_TOKEN, generate a token and print it once; listen on
    /// 127.0.0.1 unless --host says otherwise.
    #[arg(long)]
    pub dev: bool,
    /// HTTP port (env BFM_HTTP_PORT, default 7070).
    #[arg(long)]
    pub port: Option<u16>,
    /// Address to listen on, HTTP and gRPC (env BFM_HTTP_HOST, default 0.0.0.0; BFM_GRPC_HOST
    /// for gRPC alone).
    #[arg(long)]
    pub host: Option<String>,
    /// gRPC port (env BFM_GRPC_PORT, default 9090).
    #[arg(long)]
    pub grpc_port: Option<u16>,
    /// Do not reload the catalogue when files change.
    #[arg(long)]
    pub no_watch: bool,
}

#[derive(Debug, Args, Clone)]
pub struct SchemaArgs {
    /// The PostgreSQL connection.
    #[arg(long, short = 'c')]
    pub connection: String,
    /// Desired-state directory (default: {CONN}_SCHEMA_DIR).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum SchemaCmd {
    /// Compare the desired files with the live database and print the plan.
    Plan {
        #[command(flatten)]
        args: SchemaArgs,
        /// Also write the plan as JSON to this file (for `apply --plan-file`).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Apply a plan: destructive steps only when approved; refused if the live schema changed.
    Apply {
        #[command(flatten)]
        args: SchemaArgs,
        /// Approve a destructive step: HAZARD:object (repeatable).
        #[arg(long = "approve", value_name = "HAZARD:OBJECT")]
        approvals: Vec<String>,
        /// Apply a plan saved by `plan --out` instead of planning again.
        #[arg(long, value_name = "FILE")]
        plan_file: Option<PathBuf>,
        /// Apply only the non-destructive steps.
        #[arg(long)]
        non_destructive_only: bool,
    },
    /// Report how the live schema drifted from the snapshot stored by the last apply.
    Validate {
        #[command(flatten)]
        args: SchemaArgs,
    },
    /// Store the live schema as the reference for `validate`, changing nothing.
    Snapshot {
        #[command(flatten)]
        args: SchemaArgs,
    },
    /// Write the live schema as ordered, re-loadable SQL files.
    Dump {
        #[command(flatten)]
        args: SchemaArgs,
        /// Output directory.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Live vs desired vs stored: in sync? pending steps? drift?
    Status {
        #[command(flatten)]
        args: SchemaArgs,
    },
}

#[derive(Debug, Args, Clone)]
pub struct BaselineArgs {
    /// The PostgreSQL connection to adopt.
    #[arg(long, short = 'c')]
    pub connection: String,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args, Clone)]
pub struct CheckArgs {
    /// sfm root to check (default: the configured one).
    pub path: Option<PathBuf>,
    /// Print diagnostics as JSON.
    #[arg(long)]
    pub json: bool,
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
