//! Declarative PostgreSQL schema management.
//!
//! The desired schema is a directory of `.sql` files. It is loaded into a scratch database on
//! the target's server, both catalogs are read with the same bulk `pg_catalog` queries into a
//! normalised [`Model`](model::Model), and the two models are compared into an ordered
//! [`SchemaPlan`] whose steps carry lock levels, rewrite flags, hazards and a destructive flag.
//! [`apply`] runs a plan under an advisory lock after checking approvals and the live
//! fingerprint; [`snapshot`] and [`validate`] detect drift; [`dump`] writes the live schema
//! back as re-loadable SQL files.

mod apply;
mod db;
mod diff;
mod drift;
mod error;
pub mod ident;
mod introspect;
pub mod model;
mod render;
mod scope;
mod scratch;
mod types;

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use sha2::{Digest, Sha256};

pub use apply::ADVISORY_LOCK_KEY;
pub use db::{close_idle_connections, set_connection_reuse};
pub use error::SchemaError;
pub use introspect::CONTROL_SCHEMA;
pub use model::{FORMAT_VERSION, Model};
pub use render::render_plan_text;
pub use scope::{Scope, ScopeBasis, ScopeOrigin, resolve_scope};
pub use scratch::SCRATCH_PREFIX;
pub use types::*;

/// The live database and what decides its [`Scope`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SchemaTarget {
    pub database_url: String,
    /// `{CONN}_MANAGED_SCHEMAS`: exactly these schemas. Empty = derived by [`resolve_scope`]
    /// (the desired files' schemas, else a recorded scope, else the whole database).
    pub managed_schemas: Vec<String>,
    /// `{CONN}_SCHEMA`: managed too when the scope comes from the desired files.
    #[serde(default)]
    pub default_schema: Option<String>,
}

/// The desired state: every `*.sql` file of `dir` in lexical order, after the bootstrap file
/// (`bootstrap`, or `dir/bootstrap.sql` when it exists).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DesiredSource {
    pub dir: PathBuf,
    pub bootstrap: Option<PathBuf>,
}

struct CachedDesired {
    model: Arc<Model>,
    fingerprint: String,
    warnings: Vec<String>,
    /// The scope the files lead to (it depends only on what the cache key covers).
    scope: Scope,
}

const CACHE_CAPACITY: usize = 16;

/// Cached desired models by key, and the keys in insertion order (oldest first).
type DesiredCache = (HashMap<String, Arc<CachedDesired>>, Vec<String>);

fn cache() -> &'static Mutex<DesiredCache> {
    static CACHE: OnceLock<Mutex<DesiredCache>> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new((HashMap::new(), Vec::new())))
}

fn cache_get(key: &str) -> Option<Arc<CachedDesired>> {
    if let Some(hit) = cache().lock().ok().and_then(|c| c.0.get(key).cloned()) {
        return Some(hit);
    }
    let hit = Arc::new(disk_cache_get(key)?);
    if let Ok(mut c) = cache().lock() {
        c.1.push(key.to_string());
        c.0.insert(key.to_string(), hit.clone());
    }
    Some(hit)
}

fn disk_cache_dir() -> &'static Mutex<Option<PathBuf>> {
    static DIR: OnceLock<Mutex<Option<PathBuf>>> = OnceLock::new();
    DIR.get_or_init(|| Mutex::new(None))
}

/// Also keep desired models on disk, in `dir` (created when needed), so that a new process —
/// a CLI invocation — plans against unchanged files without loading them again. `None` (the
/// default) keeps the cache in memory only. Entries are named by the cache key (a hash of the
/// files, the server version, the scope settings and the model format) and are never stale;
/// delete the directory to reclaim space.
pub fn set_desired_cache_dir(dir: Option<PathBuf>) {
    if let Ok(mut d) = disk_cache_dir().lock() {
        *d = dir;
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct DiskEntry {
    fingerprint: String,
    warnings: Vec<String>,
    scope: Scope,
    #[serde(with = "hex_serde")]
    model: Vec<u8>,
}

mod hex_serde {
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(bytes))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        hex::decode(String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

fn disk_cache_path(key: &str) -> Option<PathBuf> {
    let dir = disk_cache_dir().lock().ok()?.clone()?;
    Some(dir.join(format!("desired-{key}.json")))
}

fn disk_cache_get(key: &str) -> Option<CachedDesired> {
    let path = disk_cache_path(key)?;
    let bytes = std::fs::read(&path).ok()?;
    let entry: DiskEntry = serde_json::from_slice(&bytes).ok()?;
    let model = Model::from_compressed(&entry.model).ok()?;
    // A damaged or foreign file is ignored (and the model reloaded).
    if model.fingerprint() != entry.fingerprint {
        return None;
    }
    Some(CachedDesired { model: Arc::new(model), fingerprint: entry.fingerprint, warnings: entry.warnings, scope: entry.scope })
}

fn disk_cache_put(key: &str, value: &CachedDesired) {
    let Some(path) = disk_cache_path(key) else { return };
    let Ok(model) = value.model.to_compressed() else { return };
    let entry = DiskEntry { fingerprint: value.fingerprint.clone(), warnings: value.warnings.clone(), scope: value.scope.clone(), model };
    let Ok(json) = serde_json::to_vec(&entry) else { return };
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    // Write then rename, so a reader never sees half a file.
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    if std::fs::write(&tmp, json).is_ok() && std::fs::rename(&tmp, &path).is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
}

fn cache_put(key: String, value: Arc<CachedDesired>) {
    if let Ok(mut c) = cache().lock() {
        if !c.0.contains_key(&key) {
            c.1.push(key.clone());
        }
        c.0.insert(key, value);
        while c.1.len() > CACHE_CAPACITY {
            let old = c.1.remove(0);
            c.0.remove(&old);
        }
    }
}

/// Forget every cached desired model (tests, or after a server upgrade).
pub fn clear_desired_cache() {
    if let Ok(mut c) = cache().lock() {
        c.0.clear();
        c.1.clear();
    }
}

/// Everything the cached entry depends on: the files, the server, and the settings that decide
/// the scope (a configured list, or the connection's schema that a derived scope adds).
fn cache_key(sources_sha: &str, server_version_num: u32, target: &SchemaTarget) -> String {
    let mut h = Sha256::new();
    h.update(format!("bfm-schema desired v{FORMAT_VERSION} pg{server_version_num} scoped\n").as_bytes());
    for s in &Scope::configured(&target.managed_schemas).schemas {
        h.update(s.as_bytes());
        h.update([0u8]);
    }
    h.update([1u8]);
    if let Some(s) = &target.default_schema {
        h.update(s.as_bytes());
    }
    h.update([0u8]);
    h.update(sources_sha.as_bytes());
    hex::encode(h.finalize())
}

fn merge_warnings(a: &[String], b: &[String]) -> Vec<String> {
    a.iter().chain(b.iter()).cloned().collect::<BTreeSet<_>>().into_iter().collect()
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

#[allow(clippy::too_many_arguments)]
fn build_plan(
    live: &Model,
    desired: &Model,
    desired_fingerprint: Option<&str>,
    server_version_num: u32,
    scope: &Scope,
    desired_source_sha256: Option<String>,
    warnings: Vec<String>,
    mut timings: PlanTimings,
    started: Instant,
) -> SchemaPlan {
    let t = Instant::now();
    // The two fingerprints and the diff are independent: hash the live model on another core.
    let (source_fingerprint, (steps, desired_fingerprint)) = std::thread::scope(|s| {
        let live_fp = s.spawn(|| live.fingerprint());
        let steps = diff::diff(live, desired);
        let desired_fp = desired_fingerprint.map(str::to_string).unwrap_or_else(|| desired.fingerprint());
        let live_fp = live_fp.join().unwrap_or_else(|_| live.fingerprint());
        (live_fp, (steps, desired_fp))
    });
    timings.diff_ms = ms(t);
    timings.total_ms = ms(started);
    SchemaPlan {
        format_version: FORMAT_VERSION,
        created_at: chrono::Utc::now(),
        pg_major: server_version_num / 10000,
        server_version_num,
        managed_schemas: scope.schemas.clone(),
        scope: scope.clone(),
        source_fingerprint,
        desired_fingerprint,
        desired_source_sha256,
        approvals_required: diff::approvals_required(&steps),
        steps,
        warnings,
        timings,
    }
}

/// Load the desired files (or take them from the cache) and read the live schema through the
/// scope they lead to. A configured scope is known before loading, so both sides are read at
/// once; a derived one needs the loaded files first.
async fn desired_and_live(
    target: &SchemaTarget,
    conn: &db::Conn,
    files: &[scratch::SourceFile],
    key: String,
    timings: &mut PlanTimings,
) -> Result<(Arc<CachedDesired>, introspect::Introspection), SchemaError> {
    if let Some(c) = cache_get(&key) {
        let t = Instant::now();
        let live = introspect::introspect(conn, &c.scope).await?;
        timings.introspect_ms = ms(t);
        timings.desired_cached = true;
        return Ok((c, live));
    }
    let config = db::parse_config(&target.database_url)?;
    let admin = db::connect_config(&config).await?;
    let configured = resolve_scope(target, ScopeBasis::Nothing);
    let (loaded, live, scope) = if configured.is_whole_database() {
        let (loaded, lt) = scratch::load_desired(&admin, &config, files, &Scope::whole_database()).await?;
        let scope = resolve_scope(target, ScopeBasis::Desired(&loaded.model));
        let t = Instant::now();
        let live = introspect::introspect(conn, &scope).await?;
        timings.load_ms = lt.load_ms;
        timings.introspect_ms = ms(t) + lt.introspect_ms;
        (loaded, live, scope)
    } else {
        let t = Instant::now();
        let (live, (loaded, lt)) = futures::try_join!(
            async {
                let r = introspect::introspect(conn, &configured).await;
                r.map(|x| (x, ms(t)))
            },
            scratch::load_desired(&admin, &config, files, &configured),
        )?;
        let (live, live_ms) = live;
        timings.load_ms = lt.load_ms;
        timings.introspect_ms = live_ms.max(lt.introspect_ms);
        (loaded, live, configured)
    };
    let mut model = loaded.model;
    scope::restrict(&mut model, &scope);
    let fingerprint = model.fingerprint();
    let c = Arc::new(CachedDesired { model: Arc::new(model), fingerprint, warnings: loaded.unsupported, scope });
    disk_cache_put(&key, &c);
    cache_put(key, c.clone());
    Ok((c, live))
}

/// Plan and return the live model too (status reuses it for drift).
async fn plan_with_live(target: &SchemaTarget, desired: &DesiredSource) -> Result<(SchemaPlan, Model), SchemaError> {
    let started = Instant::now();
    let files = scratch::read_sources(&desired.dir, desired.bootstrap.as_deref())?;
    let sources_sha = scratch::sources_sha256(&files);
    let conn = db::checkout(&target.database_url).await?;
    let key = cache_key(&sources_sha, conn.server_version_num, target);
    let mut timings = PlanTimings::default();
    let (cached, live) = desired_and_live(target, &conn, &files, key, &mut timings).await?;
    let server_version_num = conn.server_version_num;
    db::checkin(&target.database_url, conn);
    let warnings = merge_warnings(&live.unsupported, &cached.warnings);
    let plan = build_plan(
        &live.model,
        &cached.model,
        Some(&cached.fingerprint),
        server_version_num,
        &cached.scope,
        Some(sources_sha),
        warnings,
        timings,
        started,
    );
    Ok((plan, live.model))
}

/// The scope the desired files lead to for `target` (loads them unless cached).
pub async fn desired_scope(target: &SchemaTarget, desired: &DesiredSource) -> Result<Scope, SchemaError> {
    let configured = resolve_scope(target, ScopeBasis::Nothing);
    if !configured.is_whole_database() {
        return Ok(configured);
    }
    plan_with_live(target, desired).await.map(|(p, _)| p.scope)
}

/// Plan the changes that bring the live database to the desired files.
pub async fn plan(target: &SchemaTarget, desired: &DesiredSource) -> Result<SchemaPlan, SchemaError> {
    plan_with_live(target, desired).await.map(|(p, _)| p)
}

/// Plan the changes that turn the schemas of `from_url` into those of `to_url` (both live).
pub async fn plan_between(from_url: &str, to_url: &str, schemas: &[String]) -> Result<SchemaPlan, SchemaError> {
    let started = Instant::now();
    let (a, b) = futures::try_join!(db::checkout(from_url), db::checkout(to_url))?;
    if a.pg_major() != b.pg_major() {
        return Err(SchemaError::Database {
            context: "comparing two databases".into(),
            message: format!(
                "{} runs PostgreSQL {} and {} runs PostgreSQL {}; both sides must run the same major version",
                a.label,
                a.pg_major(),
                b.label,
                b.pg_major()
            ),
            sqlstate: None,
        });
    }
    let t = Instant::now();
    let scope = Scope::configured(schemas);
    let (from, to) = futures::try_join!(introspect::introspect(&a, &scope), introspect::introspect(&b, &scope))?;
    let timings = PlanTimings { introspect_ms: ms(t), ..PlanTimings::default() };
    let server_version_num = a.server_version_num;
    db::checkin(from_url, a);
    db::checkin(to_url, b);
    let warnings = merge_warnings(&from.unsupported, &to.unsupported);
    Ok(build_plan(&from.model, &to.model, None, server_version_num, &scope, None, warnings, timings, started))
}

/// Apply a plan to the live database. Refuses unapproved destructive steps (unless
/// `allow_non_destructive_only`, which skips them) and a live schema whose fingerprint is no
/// longer the plan's source fingerprint.
pub async fn apply(
    target: &SchemaTarget,
    plan: &SchemaPlan,
    approvals: &[Approval],
    opts: &ApplyOptions,
) -> Result<ApplyReport, SchemaError> {
    apply::apply(target, plan, approvals, opts).await
}

/// The steps that turn one model into another (no database involved).
pub fn diff_models(from: &Model, to: &Model) -> Vec<Step> {
    diff::diff(from, to)
}

/// Read the live model of `scope` (no scratch database involved).
pub async fn introspect_model(target: &SchemaTarget, scope: &Scope) -> Result<Model, SchemaError> {
    let conn = db::checkout(&target.database_url).await?;
    let model = introspect::introspect(&conn, scope).await?.model;
    db::checkin(&target.database_url, conn);
    Ok(model)
}

fn snapshot_of(model: &Model, scope: &Scope) -> Result<Snapshot, SchemaError> {
    Ok(Snapshot {
        fingerprint: model.fingerprint(),
        pg_major: model.pg_major,
        format_version: FORMAT_VERSION,
        taken_at: chrono::Utc::now(),
        managed_schemas: scope.schemas.clone(),
        scope: scope.clone(),
        model: model.to_compressed()?,
    })
}

/// Take a snapshot of the live schema in `scope` (after an apply: the plan's scope), for
/// storage by the caller.
pub async fn snapshot(target: &SchemaTarget, scope: &Scope) -> Result<Snapshot, SchemaError> {
    let model = introspect_model(target, scope).await?;
    snapshot_of(&model, scope)
}

fn validate_against(live: &Model, stored: &Snapshot, scope: &Scope) -> Result<DriftReport, SchemaError> {
    if stored.format_version != FORMAT_VERSION {
        return Err(SchemaError::FormatVersion { found: stored.format_version, supported: FORMAT_VERSION });
    }
    let stored_model = Model::from_compressed(&stored.model)?;
    let live_fingerprint = live.fingerprint();
    let drifts = if live_fingerprint == stored.fingerprint { Vec::new() } else { drift::compare(&stored_model, live) };
    Ok(DriftReport {
        in_sync: live_fingerprint == stored.fingerprint,
        stored_fingerprint: stored.fingerprint.clone(),
        live_fingerprint,
        pg_major_changed: stored.pg_major != live.pg_major,
        drifts,
        scope: scope.clone(),
    })
}

/// The scope `validate` compares: a configured list, else the one the snapshot was taken with
/// (the last apply's), so that only what bfm applied can drift.
pub fn validation_scope(target: &SchemaTarget, stored: &Snapshot) -> Scope {
    resolve_scope(target, ScopeBasis::Recorded(&stored.recorded_scope()))
}

/// Compare a stored snapshot with the live schema and report which objects drifted.
pub async fn validate(target: &SchemaTarget, stored: &Snapshot) -> Result<DriftReport, SchemaError> {
    let scope = validation_scope(target, stored);
    let live = introspect_model(target, &scope).await?;
    validate_against(&live, stored, &scope)
}

/// Write the live schema in `scope` as ordered, re-loadable SQL files (`01_schemas.sql`,
/// `02_…`) into `out_dir`, replacing files of an earlier dump. Returns the files written, in
/// load order.
pub async fn dump(target: &SchemaTarget, scope: &Scope, out_dir: &Path) -> Result<Vec<PathBuf>, SchemaError> {
    let model = introspect_model(target, scope).await?;
    write_dump(&model, out_dir)
}

fn is_dump_file(name: &str) -> bool {
    let b = name.as_bytes();
    name.ends_with(".sql")
        && b.len() > 7
        && b[0].is_ascii_digit()
        && b[1].is_ascii_digit()
        && b[2] == b'_'
        && name[3..name.len() - 4].bytes().all(|c| c.is_ascii_lowercase() || c == b'_')
}

/// Write a model as dump files.
pub fn write_dump(model: &Model, out_dir: &Path) -> Result<Vec<PathBuf>, SchemaError> {
    let io = |path: &Path, e: std::io::Error| SchemaError::Io { path: path.to_path_buf(), message: e.to_string() };
    std::fs::create_dir_all(out_dir).map_err(|e| io(out_dir, e))?;
    for entry in std::fs::read_dir(out_dir).map_err(|e| io(out_dir, e))? {
        let entry = entry.map_err(|e| io(out_dir, e))?;
        if entry.file_name().to_str().is_some_and(is_dump_file) {
            std::fs::remove_file(entry.path()).map_err(|e| io(&entry.path(), e))?;
        }
    }
    let mut written = Vec::new();
    for (i, (section, steps)) in diff::dump_sections(model).into_iter().enumerate() {
        let path = out_dir.join(format!("{:02}_{section}.sql", i + 1));
        let mut text = format!("-- {section} (bfm-schema dump, PostgreSQL {})\n", model.pg_major);
        if section.starts_with("functions") {
            text.push_str("SET check_function_bodies = false;\n");
        }
        for s in steps {
            text.push('\n');
            text.push_str(s.sql.trim_end());
            text.push_str(";\n");
        }
        std::fs::write(&path, text).map_err(|e| io(&path, e))?;
        written.push(path);
    }
    Ok(written)
}

/// Live fingerprint, desired fingerprint, whether they match, pending steps, and drift against
/// a stored snapshot.
pub async fn status(target: &SchemaTarget, desired: &DesiredSource, stored: Option<&Snapshot>) -> Result<SchemaStatus, SchemaError> {
    let (plan, live) = plan_with_live(target, desired).await?;
    let drift = match stored {
        Some(s) => {
            // The snapshot may cover another scope (the files changed since the last apply).
            let scope = validation_scope(target, s);
            if scope == plan.scope {
                Some(validate_against(&live, s, &scope)?)
            } else {
                Some(validate_against(&introspect_model(target, &scope).await?, s, &scope)?)
            }
        }
        None => None,
    };
    Ok(SchemaStatus {
        in_sync: plan.source_fingerprint == plan.desired_fingerprint,
        live_fingerprint: plan.source_fingerprint.clone(),
        desired_fingerprint: plan.desired_fingerprint.clone(),
        desired_source_sha256: plan.desired_source_sha256.clone().unwrap_or_default(),
        pending_steps: plan.steps.len(),
        destructive_steps: plan.destructive_steps(),
        approvals_required: plan.approvals_required.clone(),
        drift,
        warnings: plan.warnings,
        scope: plan.scope,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn approvals_parse() {
        let a: Approval = "DELETES_DATA:public.users.email".parse().unwrap();
        assert_eq!(a.code, HazardCode::DeletesData);
        assert_eq!(a.object, "public.users.email");
        assert_eq!(a.to_string(), "DELETES_DATA:public.users.email");
        assert!("public.users".parse::<Approval>().is_err());
        assert!("NOPE:public.users".parse::<Approval>().unwrap_err().to_string().contains("known codes"));
        assert!("DELETES_DATA:".parse::<Approval>().is_err());
    }

    #[test]
    fn dump_file_names() {
        assert!(is_dump_file("01_schemas.sql"));
        assert!(is_dump_file("12_foreign_keys.sql"));
        assert!(!is_dump_file("schema.sql"));
        assert!(!is_dump_file("01_x.txt"));
    }
}
