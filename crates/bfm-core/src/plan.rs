//! The planner: a pure function from (request, catalogue, state snapshot) to an ordered plan.
//!
//! For `up` it:
//! 1. selects migrations with the request's filters (backend with aliases, connection, declared
//!    schema, tables, version, tags — all AND) or explicit ids;
//! 2. gives each one its execution schemas: the declared schema for fixed migrations, the
//!    request's schemas for per-tenant ones (a per-tenant migration on PostgreSQL without any
//!    schema is an error or a skip, as the caller chooses; SQLite has no schemas);
//! 3. unless dependencies are ignored, pulls in every pending dependency, transitively, in the
//!    schema it must run in (its declared one, the one the dependency names, or else the
//!    dependent's own), and reports a missing target or a cycle before anything runs;
//! 4. orders the steps topologically, lowest version first among those ready, ties broken by id
//!    then schema (with `ignore_dependencies`: version order only);
//! 5. leaves out what is applied (`skipped`), re-runs a failure that was rolled back cleanly,
//!    blocks a failure that left partial changes until `retry`, blocks everything that depends
//!    on a blocked step, and blocks a connection whose applied migrations were modified on disk
//!    unless `allow_modified`.
//!
//! For `down` it selects applied steps, refuses to undo a step that an applied migration still
//! depends on (unless `cascade`, which undoes the dependents first), and orders dependents
//! before their dependencies, highest version first.

use crate::backend::BackendKind;
use crate::catalog::Catalog;
use crate::deps::{Dependency, Graph};
use crate::migration::{Checksum, Migration};
use crate::tags::TagFilter;
use serde::{Deserialize, Serialize};
use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Up,
    Down,
}

/// Status of a migration in one schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pending,
    Running,
    Applied,
    Failed,
    RolledBack,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Running => "running",
            Status::Applied => "applied",
            Status::Failed => "failed",
            Status::RolledBack => "rolled_back",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        match s {
            "pending" => Some(Status::Pending),
            "running" => Some(Status::Running),
            "applied" | "success" => Some(Status::Applied),
            "failed" => Some(Status::Failed),
            "rolled_back" => Some(Status::RolledBack),
            _ => None,
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the state store knows of one (migration, schema).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateEntry {
    pub status: Status,
    /// Checksum of the script as it was applied.
    pub checksum: Option<Checksum>,
    /// A failure (or interruption) that may have left part of the migration applied.
    pub partial: bool,
}

/// The state the planner works from, keyed by (base id, schema).
#[derive(Debug, Clone, Default)]
pub struct StateSnapshot {
    entries: HashMap<(String, String), StateEntry>,
    schemas_by_id: HashMap<String, Vec<String>>,
}

impl StateSnapshot {
    pub fn insert(&mut self, id: &str, schema: &str, entry: StateEntry) {
        if self.entries.insert((id.to_string(), schema.to_string()), entry).is_none() {
            self.schemas_by_id.entry(id.to_string()).or_default().push(schema.to_string());
        }
    }

    pub fn get(&self, id: &str, schema: &str) -> Option<&StateEntry> {
        self.entries.get(&(id.to_string(), schema.to_string()))
    }

    /// Schemas in which `id` has a state entry.
    pub fn schemas_of(&self, id: &str) -> &[String] {
        self.schemas_by_id.get(id).map_or(&[], Vec::as_slice)
    }

    pub fn is_applied(&self, id: &str, schema: &str) -> bool {
        self.get(id, schema).is_some_and(|e| e.status == Status::Applied)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str, &StateEntry)> {
        self.entries.iter().map(|((id, s), e)| (id.as_str(), s.as_str(), e))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// BfM's `MigrationTarget`: every given field must match.
#[derive(Debug, Clone, Default)]
pub struct Selector {
    pub backend: Option<String>,
    pub connection: Option<String>,
    /// Equality with the declared schema (so it excludes per-tenant migrations, as in BfM).
    pub schema: Option<String>,
    pub tables: Vec<String>,
    pub version: Option<String>,
    pub tags: TagFilter,
    /// Explicit migrations by base id, each with an optional schema.
    pub ids: Vec<(String, Option<String>)>,
}

impl Selector {
    pub fn matches(&self, m: &Migration) -> bool {
        let backend_ok = self.backend.as_deref().map(str::trim).filter(|b| !b.is_empty()).is_none_or(|b| match BackendKind::parse(b) {
            Some(kind) => kind == m.kind,
            None => b.eq_ignore_ascii_case(&m.backend),
        });
        backend_ok
            && self.connection.as_deref().filter(|c| !c.is_empty()).is_none_or(|c| c == m.connection)
            && self.schema.as_deref().filter(|s| !s.is_empty()).is_none_or(|s| m.schema.as_deref() == Some(s))
            && (self.tables.is_empty() || m.table.as_ref().is_some_and(|t| self.tables.contains(t)))
            && self.version.as_deref().map(str::trim).filter(|v| !v.is_empty()).is_none_or(|v| m.version.matches(v))
            && (self.tags.is_empty() || self.tags.matches(&m.tags))
            && (self.ids.is_empty() || self.ids.iter().any(|(id, _)| *id == m.id))
    }
}

/// What to do with a per-tenant migration on a backend that needs a schema when none is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MissingSchema {
    /// Report an error (explicit requests).
    #[default]
    Error,
    /// Skip it with a reason (runs over every connection, auto-migrate).
    Skip,
}

#[derive(Debug, Clone)]
pub struct PlanRequest {
    pub direction: Direction,
    pub selector: Selector,
    /// Execution schemas for per-tenant migrations.
    pub schemas: Vec<String>,
    pub ignore_dependencies: bool,
    pub allow_modified: bool,
    pub missing_schema: MissingSchema,
    /// Down: also undo applied migrations that depend on the selected ones.
    pub cascade: bool,
}

impl PlanRequest {
    pub fn up(selector: Selector) -> PlanRequest {
        PlanRequest {
            direction: Direction::Up,
            selector,
            schemas: Vec::new(),
            ignore_dependencies: false,
            allow_modified: false,
            missing_schema: MissingSchema::Error,
            cascade: false,
        }
    }

    pub fn down(selector: Selector) -> PlanRequest {
        PlanRequest { direction: Direction::Down, ..PlanRequest::up(selector) }
    }
}

/// Why a step is in the plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Reason {
    /// Matched the request.
    Selected,
    /// A pending dependency of another step.
    Dependency { of: String },
    /// Failed before and was rolled back cleanly; runs again.
    Retry,
    /// Down with cascade: depends on a step being undone.
    Dependent { of: String },
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Selected => f.write_str("selected"),
            Reason::Dependency { of } => write!(f, "dependency of {of}"),
            Reason::Retry => f.write_str("failed before and was rolled back; runs again"),
            Reason::Dependent { of } => write!(f, "depends on {of}, which is rolled back"),
        }
    }
}

/// Why a selected step does not run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SkipReason {
    AlreadyApplied,
    NotApplied,
    /// Per-tenant migration with no schema given.
    NeedsSchema,
    /// Failed and may have left partial changes: `bfm migrate retry` first.
    NeedsRetry,
    /// Marked running (by another process, or interrupted).
    Running,
    /// Its connection has an applied migration whose script changed.
    Modified {
        migrations: Vec<String>,
    },
    /// A step it depends on cannot run.
    Blocked {
        by: String,
    },
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkipReason::AlreadyApplied => f.write_str("already applied"),
            SkipReason::NotApplied => f.write_str("not applied"),
            SkipReason::NeedsSchema => f.write_str("per-tenant migration: no schema given"),
            SkipReason::NeedsRetry => f.write_str("failed with partial changes; run `bfm migrate retry` after checking"),
            SkipReason::Running => f.write_str("running elsewhere or interrupted"),
            SkipReason::Modified { migrations } => write!(f, "connection has modified migrations: {}", migrations.join(", ")),
            SkipReason::Blocked { by } => write!(f, "blocked by {by}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub migration: Arc<Migration>,
    /// Execution schema; empty means the connection's default namespace.
    pub schema: String,
    pub direction: Direction,
    pub reason: Reason,
    /// Indices (into `Plan::steps`) of steps that must succeed before this one.
    pub after: Vec<usize>,
}

impl Step {
    pub fn display_id(&self) -> String {
        self.migration.display_id(&self.schema)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub migration: Arc<Migration>,
    pub schema: String,
    pub reason: SkipReason,
}

impl Skipped {
    pub fn display_id(&self) -> String {
        self.migration.display_id(&self.schema)
    }
}

/// A problem that prevents (part of) the plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PlanError {
    MissingDependency {
        migration: String,
        dependency: String,
    },
    Cycle {
        path: Vec<String>,
    },
    NeedsSchema {
        migration: String,
    },
    Modified {
        connection: String,
        migrations: Vec<String>,
    },
    NoDownScript {
        migration: String,
    },
    HasDependents {
        migration: String,
        schema: String,
        dependents: Vec<String>,
    },
    UnknownMigration {
        id: String,
    },
    /// A step failed earlier and may have left partial changes; its chain waits for `retry`.
    NeedsRetry {
        migration: String,
    },
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlanError::MissingDependency { migration, dependency } => {
                write!(f, "missing dependency: {migration} depends on ({dependency}), which matches no migration")
            }
            PlanError::Cycle { path } => write!(f, "dependency cycle: {}", path.join(" -> ")),
            PlanError::NeedsSchema { migration } => write!(
                f,
                "migration {migration} has a dynamic (per-tenant) schema but no schema was given; pass schemas (--schema / \"schemas\")"
            ),
            PlanError::Modified { connection, migrations } => write!(
                f,
                "connection {connection} is blocked: applied migration(s) changed on disk since they ran: {}; review, then run `bfm migrate accept-checksum <id>` or pass --allow-modified",
                migrations.join(", ")
            ),
            PlanError::NoDownScript { migration } => {
                write!(f, "migration {migration} has no down script")
            }
            PlanError::HasDependents { migration, schema, dependents } => {
                let at = if schema.is_empty() { String::new() } else { format!(" in schema {schema}") };
                write!(
                    f,
                    "cannot roll back {migration}{at}: applied migration(s) depend on it: {} (roll them back first, or cascade)",
                    dependents.join(", ")
                )
            }
            PlanError::UnknownMigration { id } => write!(f, "migration not found: {id}"),
            PlanError::NeedsRetry { migration } => write!(
                f,
                "{migration} failed earlier and may have left partial changes; later migrations of its schema wait: check it, then run `bfm migrate retry {migration}`"
            ),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub steps: Vec<Step>,
    pub skipped: Vec<Skipped>,
    pub errors: Vec<PlanError>,
}

type NodeKey = (usize, String);

struct Nodes {
    keys: Vec<NodeKey>,
    index: HashMap<NodeKey, usize>,
    reason: Vec<Reason>,
    edges: Vec<(usize, usize)>,
}

impl Nodes {
    fn new() -> Nodes {
        Nodes { keys: Vec::new(), index: HashMap::new(), reason: Vec::new(), edges: Vec::new() }
    }
    fn get_or_add(&mut self, key: NodeKey, reason: Reason) -> (usize, bool) {
        if let Some(&i) = self.index.get(&key) {
            return (i, false);
        }
        let i = self.keys.len();
        self.index.insert(key.clone(), i);
        self.keys.push(key);
        self.reason.push(reason);
        (i, true)
    }
}

/// The schema in which `target` must have run for a dependent running in `dependent_schema`.
pub fn dependency_schema(target: &Migration, dep: &Dependency, dependent_schema: &str) -> String {
    if !target.kind.has_schemas() {
        return String::new();
    }
    if let Some(s) = &target.schema {
        return s.clone();
    }
    dep.schema.clone().unwrap_or_else(|| dependent_schema.to_string())
}

fn sort_key(catalog: &Catalog, key: &NodeKey) -> (crate::migration::Version, String, String) {
    let m = catalog.at(key.0);
    (m.version.clone(), m.id.clone(), key.1.clone())
}

/// Make a plan. Pure: same inputs, same plan.
pub fn plan(request: &PlanRequest, catalog: &Catalog, state: &StateSnapshot) -> Plan {
    match request.direction {
        Direction::Up => plan_up(request, catalog, state),
        Direction::Down => plan_down(request, catalog, state),
    }
}

/// Execution schemas of a selected migration; `Err(())` if it needs a schema and has none.
fn execution_schemas(m: &Migration, request: &PlanRequest, explicit: Option<&String>) -> Result<Vec<String>, ()> {
    if !m.kind.has_schemas() {
        return Ok(vec![String::new()]);
    }
    if let Some(s) = &m.schema {
        return Ok(vec![s.clone()]);
    }
    if let Some(s) = explicit {
        return Ok(vec![s.clone()]);
    }
    if !request.schemas.is_empty() {
        let mut seen = HashSet::new();
        return Ok(request.schemas.iter().filter(|s| seen.insert(s.as_str())).cloned().collect());
    }
    if m.kind.runs_dynamic_without_schema() { Ok(vec![String::new()]) } else { Err(()) }
}

fn selected(request: &PlanRequest, catalog: &Catalog) -> Vec<(usize, Option<String>)> {
    let mut out = Vec::new();
    for (i, m) in catalog.iter().enumerate() {
        if !request.selector.matches(m) {
            continue;
        }
        if request.selector.ids.is_empty() {
            out.push((i, None));
        } else {
            for (id, schema) in &request.selector.ids {
                if *id == m.id {
                    out.push((i, schema.clone()));
                }
            }
        }
    }
    out
}

fn plan_up(request: &PlanRequest, catalog: &Catalog, state: &StateSnapshot) -> Plan {
    let mut out = Plan::default();
    let mut nodes = Nodes::new();
    let mut queue: Vec<usize> = Vec::new();

    for (i, explicit) in selected(request, catalog) {
        let m = catalog.at(i);
        match execution_schemas(m, request, explicit.as_ref()) {
            Ok(schemas) => {
                for s in schemas {
                    let (n, new) = nodes.get_or_add((i, s), Reason::Selected);
                    if new {
                        queue.push(n);
                    }
                }
            }
            Err(()) => match request.missing_schema {
                MissingSchema::Error => out.errors.push(PlanError::NeedsSchema { migration: m.id.clone() }),
                MissingSchema::Skip => {
                    out.skipped.push(Skipped { migration: m.clone(), schema: String::new(), reason: SkipReason::NeedsSchema })
                }
            },
        }
    }
    let selected_count = nodes.keys.len();

    // Dependency expansion (transitive), only through pending dependencies.
    if !request.ignore_dependencies {
        let mut qi = 0;
        while qi < queue.len() {
            let n = queue[qi];
            qi += 1;
            let (mi, schema) = nodes.keys[n].clone();
            let m = catalog.at(mi).clone();
            for dep in m.all_dependencies() {
                let targets: Vec<usize> = catalog.targets_of(&dep).filter(|&t| t != mi).collect();
                if targets.is_empty() {
                    out.errors.push(PlanError::MissingDependency { migration: m.display_id(&schema), dependency: dep.describe() });
                    continue;
                }
                for t in targets {
                    let target = catalog.at(t);
                    let ts = dependency_schema(target, &dep, &schema);
                    if state.is_applied(&target.id, &ts) && !nodes.index.contains_key(&(t, ts.clone())) {
                        continue;
                    }
                    let (dn, new) = nodes.get_or_add((t, ts), Reason::Dependency { of: m.display_id(&schema) });
                    nodes.edges.push((dn, n));
                    if new {
                        queue.push(dn);
                    }
                }
            }
        }
    }

    // A missing dependency stops the whole plan before anything runs.
    if out.errors.iter().any(|e| matches!(e, PlanError::MissingDependency { .. })) {
        return out;
    }
    let mut graph = Graph::new(nodes.keys.len());
    for &(a, b) in &nodes.edges {
        graph.add_edge(a, b);
    }
    if let Some(cycle) = graph.find_cycle() {
        let path = cycle.iter().map(|&n| catalog.at(nodes.keys[n].0).display_id(&nodes.keys[n].1)).collect();
        out.errors.push(PlanError::Cycle { path });
        return out;
    }
    let order = if request.ignore_dependencies {
        let mut o: Vec<usize> = (0..nodes.keys.len()).collect();
        o.sort_by_key(|&n| sort_key(catalog, &nodes.keys[n]));
        o
    } else {
        graph.order_by(|n| sort_key(catalog, &nodes.keys[n])).unwrap_or_default()
    };

    // Connections with applied migrations whose script changed.
    let mut modified: BTreeMap<String, Vec<String>> = BTreeMap::new();
    if !request.allow_modified {
        let involved: HashSet<&str> = nodes.keys.iter().map(|(i, _)| catalog.at(*i).connection.as_str()).collect();
        for (id, schema, entry) in state.iter() {
            let Some(m) = catalog.get(id) else { continue };
            if entry.status != Status::Applied || !involved.contains(m.connection.as_str()) {
                continue;
            }
            if let Some(c) = &entry.checksum
                && c.algorithm == m.checksum.algorithm
                && c.value != m.checksum.value
            {
                modified.entry(m.connection.clone()).or_default().push(m.display_id(schema));
            }
        }
        for (connection, list) in modified.iter_mut() {
            list.sort();
            out.errors.push(PlanError::Modified { connection: connection.clone(), migrations: list.clone() });
        }
    }

    // Walk in order, deciding each node's fate.
    let mut step_of: Vec<Option<usize>> = vec![None; nodes.keys.len()];
    let mut blocked_by: Vec<Option<String>> = vec![None; nodes.keys.len()];
    let mut preds: Vec<Vec<usize>> = vec![Vec::new(); nodes.keys.len()];
    for &(a, b) in &nodes.edges {
        if !preds[b].contains(&a) {
            preds[b].push(a);
        }
    }
    // A step that cannot run blocks the rest of its (connection, schema) chain: later versions
    // assume earlier ones ran.
    let mut chain_blocked: HashMap<(String, String), String> = HashMap::new();
    for n in order {
        let (mi, schema) = &nodes.keys[n];
        let m = catalog.at(*mi);
        let did = m.display_id(schema);
        let is_selected = n < selected_count;
        let chain = (m.connection.clone(), schema.clone());
        let skip = |out: &mut Plan, reason: SkipReason| {
            if is_selected {
                out.skipped.push(Skipped { migration: m.clone(), schema: schema.clone(), reason });
            }
        };
        if let Some(by) = preds[n].iter().find_map(|&p| blocked_by[p].clone()).or_else(|| chain_blocked.get(&chain).cloned()) {
            blocked_by[n] = Some(by.clone());
            chain_blocked.entry(chain).or_insert_with(|| by.clone());
            skip(&mut out, SkipReason::Blocked { by });
            continue;
        }
        let entry = state.get(&m.id, schema);
        let mut reason = nodes.reason[n].clone();
        match entry.map(|e| (e.status, e.partial)) {
            Some((Status::Applied, _)) => {
                skip(&mut out, SkipReason::AlreadyApplied);
                continue;
            }
            Some((Status::Running, _)) => {
                blocked_by[n] = Some(did.clone());
                chain_blocked.insert(chain, did.clone());
                skip(&mut out, SkipReason::Running);
                continue;
            }
            Some((Status::Failed, true)) => {
                blocked_by[n] = Some(did.clone());
                chain_blocked.insert(chain, did.clone());
                out.errors.push(PlanError::NeedsRetry { migration: did.clone() });
                skip(&mut out, SkipReason::NeedsRetry);
                continue;
            }
            Some((Status::Failed, false)) if reason == Reason::Selected => reason = Reason::Retry,
            _ => {}
        }
        if let Some(list) = modified.get(&m.connection) {
            blocked_by[n] = Some(did.clone());
            skip(&mut out, SkipReason::Modified { migrations: list.clone() });
            continue;
        }
        let after = preds[n].iter().filter_map(|&p| step_of[p]).collect();
        step_of[n] = Some(out.steps.len());
        out.steps.push(Step { migration: m.clone(), schema: schema.clone(), direction: Direction::Up, reason, after });
    }
    out
}

fn plan_down(request: &PlanRequest, catalog: &Catalog, state: &StateSnapshot) -> Plan {
    let mut out = Plan::default();
    let mut nodes = Nodes::new();
    let mut queue = Vec::new();
    for (i, explicit) in selected(request, catalog) {
        let m = catalog.at(i);
        match execution_schemas(m, request, explicit.as_ref()) {
            Ok(schemas) => {
                for s in schemas {
                    let (n, new) = nodes.get_or_add((i, s), Reason::Selected);
                    if new {
                        queue.push(n);
                    }
                }
            }
            Err(()) => out.errors.push(PlanError::NeedsSchema { migration: m.id.clone() }),
        }
    }
    let selected_count = nodes.keys.len();

    // Reverse dependencies: target -> (dependent migration, dependency).
    let mut rev: HashMap<usize, Vec<(usize, Dependency)>> = HashMap::new();
    for (i, m) in catalog.iter().enumerate() {
        for dep in m.all_dependencies() {
            for t in catalog.targets_of(&dep) {
                if t != i {
                    rev.entry(t).or_default().push((i, dep.clone()));
                }
            }
        }
    }

    let mut qi = 0;
    let mut refused: HashSet<usize> = HashSet::new();
    while qi < queue.len() {
        let n = queue[qi];
        qi += 1;
        let (ti, schema) = nodes.keys[n].clone();
        if !state.is_applied(&catalog.at(ti).id, &schema) {
            continue;
        }
        let mut blocking = Vec::new();
        for (di, dep) in rev.get(&ti).map(Vec::as_slice).unwrap_or(&[]) {
            let d = catalog.at(*di);
            let candidates: Vec<String> = match &d.schema {
                Some(s) => vec![s.clone()],
                None => state.schemas_of(&d.id).to_vec(),
            };
            for ds in candidates {
                if !state.is_applied(&d.id, &ds) || dependency_schema(catalog.at(ti), dep, &ds) != schema {
                    continue;
                }
                if let Some(&existing) = nodes.index.get(&(*di, ds.clone())) {
                    nodes.edges.push((existing, n));
                    continue;
                }
                if request.cascade {
                    let (dn, _) = nodes.get_or_add((*di, ds.clone()), Reason::Dependent { of: catalog.at(ti).display_id(&schema) });
                    nodes.edges.push((dn, n));
                    queue.push(dn);
                } else {
                    blocking.push(d.display_id(&ds));
                }
            }
        }
        if !blocking.is_empty() {
            blocking.sort();
            blocking.dedup();
            refused.insert(n);
            out.errors.push(PlanError::HasDependents {
                migration: catalog.at(ti).display_id(&schema),
                schema: schema.clone(),
                dependents: blocking,
            });
        }
    }

    let mut graph = Graph::new(nodes.keys.len());
    for &(a, b) in &nodes.edges {
        graph.add_edge(a, b);
    }
    let Some(order) = graph.order_by(|n| {
        let (v, id, s) = sort_key(catalog, &nodes.keys[n]);
        (Reverse(v), Reverse(id), s)
    }) else {
        let path =
            graph.find_cycle().unwrap_or_default().iter().map(|&n| catalog.at(nodes.keys[n].0).display_id(&nodes.keys[n].1)).collect();
        out.errors.push(PlanError::Cycle { path });
        return out;
    };
    let mut step_of: Vec<Option<usize>> = vec![None; nodes.keys.len()];
    let mut preds: Vec<Vec<usize>> = vec![Vec::new(); nodes.keys.len()];
    for &(a, b) in &nodes.edges {
        if !preds[b].contains(&a) {
            preds[b].push(a);
        }
    }
    for n in order {
        let (mi, schema) = &nodes.keys[n];
        let m = catalog.at(*mi);
        if refused.contains(&n) {
            continue;
        }
        if !state.is_applied(&m.id, schema) {
            if n < selected_count {
                out.skipped.push(Skipped { migration: m.clone(), schema: schema.clone(), reason: SkipReason::NotApplied });
            }
            continue;
        }
        if m.down.is_none() {
            out.errors.push(PlanError::NoDownScript { migration: m.display_id(schema) });
            continue;
        }
        let after = preds[n].iter().filter_map(|&p| step_of[p]).collect();
        step_of[n] = Some(out.steps.len());
        out.steps.push(Step {
            migration: m.clone(),
            schema: schema.clone(),
            direction: Direction::Down,
            reason: nodes.reason[n].clone(),
            after,
        });
    }
    out
}

/// Order a set of migrations by their dependencies (BfM's order-batch): lowest version first
/// among those ready; dependencies outside the set are ignored, missing ones are errors.
pub fn order(catalog: &Catalog, ids: &[String]) -> Result<Vec<String>, PlanError> {
    let mut idx: Vec<usize> = Vec::new();
    for id in ids {
        let i = catalog.index_of(id).ok_or_else(|| PlanError::UnknownMigration { id: id.clone() })?;
        if !idx.contains(&i) {
            idx.push(i);
        }
    }
    let pos: HashMap<usize, usize> = idx.iter().enumerate().map(|(p, &i)| (i, p)).collect();
    let mut graph = Graph::new(idx.len());
    for (p, &i) in idx.iter().enumerate() {
        let m = catalog.at(i);
        for dep in m.all_dependencies() {
            let targets: Vec<usize> = catalog.targets_of(&dep).collect();
            if targets.is_empty() {
                return Err(PlanError::MissingDependency { migration: m.id.clone(), dependency: dep.describe() });
            }
            for t in targets {
                if let Some(&tp) = pos.get(&t) {
                    graph.add_edge(tp, p);
                }
            }
        }
    }
    match graph.order_by(|p| (catalog.at(idx[p]).version.clone(), catalog.at(idx[p]).id.clone())) {
        Some(o) => Ok(o.into_iter().map(|p| catalog.at(idx[p]).id.clone()).collect()),
        None => {
            let path = graph.find_cycle().unwrap_or_default().into_iter().map(|p| catalog.at(idx[p]).id.clone()).collect();
            Err(PlanError::Cycle { path })
        }
    }
}

#[cfg(test)]
mod tests;
