//! Loading the catalogue of migrations from disk, validating it, and looking migrations up.
//!
//! Sources:
//! * an sfm tree: `<root>/<backend>/<connection>/<14-digit version>_<name>.up.sql|.down.sql`
//!   (`.up.json|.down.json` under `etcd/`), with optional BfM `.go` registration files beside
//!   the scripts;
//! * golang-migrate folders (`001_name.up.sql` / `.down.sql`), each mapped to one connection.
//!
//! Metadata comes from, in this order: the `.go` file, header directives in the up script, the
//! connection's configured schema. Every problem is a [`Diagnostic`] naming file and line; the
//! catalogue keeps every migration that loaded cleanly.

use crate::backend::BackendKind;
use crate::deps::{Dependency, Graph};
use crate::directives;
use crate::etcd_script;
use crate::gometa;
use crate::migration::{Checksum, Migration, SchemaSource, Script, SourceKind, Version};
use crate::sql;
use crate::tags;
use crate::template;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Warning,
    Error,
}

/// A problem found while loading, as `file:line: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub path: PathBuf,
    pub line: usize,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = if self.severity == Severity::Warning { "warning: " } else { "" };
        write!(f, "{}:{}: {sev}{}", self.path.display(), self.line.max(1), self.message)
    }
}

/// A golang-migrate folder mapped to one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GolangMigrateSource {
    pub path: PathBuf,
    pub connection: String,
    pub backend: BackendKind,
}

#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// The sfm root; `None` when only golang-migrate folders are used.
    pub sfm_root: Option<PathBuf>,
    /// `{CONN}_SCHEMA`: the default fixed schema of each connection's migrations.
    pub connection_schemas: HashMap<String, String>,
    pub golang_migrate: Vec<GolangMigrateSource>,
}

/// The loaded catalogue: immutable, sorted by (version, id).
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    /// Sorted by (version, id). Lookups binary-search it: every id starts with its version, so
    /// the migrations of one version are a contiguous run sorted by id. (Hash indexes beside it
    /// cost about a quarter of the catalogue's memory.)
    migrations: Vec<Arc<Migration>>,
    /// The longest id: a user's input can only end in an id (or a `{version}_{name}`) within
    /// that many bytes of its end, so lookups try no suffix longer than this.
    max_id_len: usize,
}

/// The result of looking up a migration id given by a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    Found { migration: Arc<Migration>, schema: Option<String> },
    NotFound,
    Ambiguous(Vec<String>),
}

impl Catalog {
    pub fn new(mut migrations: Vec<Migration>) -> Catalog {
        migrations.sort_by(|a, b| a.version.cmp(&b.version).then_with(|| a.id.cmp(&b.id)));
        // Not `into_iter().map().collect()`: that reuses the buffer of the `Migration`s (56
        // times the size of the `Arc`s) and keeps it for the catalogue's lifetime.
        let mut arcs = Vec::with_capacity(migrations.len());
        arcs.extend(migrations.into_iter().map(Arc::new));
        let migrations = arcs;
        let max_id_len = migrations.iter().map(|m| m.id.len()).max().unwrap_or(0);
        Catalog { migrations, max_id_len }
    }

    pub fn len(&self) -> usize {
        self.migrations.len()
    }

    pub fn is_empty(&self) -> bool {
        self.migrations.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Migration>> {
        self.migrations.iter()
    }

    pub fn get(&self, id: &str) -> Option<&Arc<Migration>> {
        self.index_of(id).map(|i| &self.migrations[i])
    }

    pub fn index_of(&self, id: &str) -> Option<usize> {
        let (start, block) = self.version_block(id)?;
        block.binary_search_by(|m| m.id.as_str().cmp(id)).ok().map(|i| start + i)
    }

    /// The run of migrations whose version is the leading digits of `key` (`{version}_…`), with
    /// the index where it starts.
    fn version_block(&self, key: &str) -> Option<(usize, &[Arc<Migration>])> {
        let (version, _) = key.split_once('_')?;
        if version.is_empty() || !version.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let start = self.migrations.partition_point(|m| m.version.cmp_str(version).is_lt());
        let end = start + self.migrations[start..].partition_point(|m| m.version.cmp_str(version).is_le());
        Some((start, &self.migrations[start..end]))
    }

    /// Migrations written `{version}_{name}` (the version exactly as in their file names).
    fn by_version_name(&self, key: &str) -> Vec<usize> {
        let Some((start, block)) = self.version_block(key) else { return Vec::new() };
        // Ids with the common prefix `{key}_` are contiguous in the id-sorted block. Compared
        // without building the prefix: callers try every suffix of a user's input, and a copy per
        // suffix would make a long input quadratic.
        let has_prefix = |id: &str| id.len() > key.len() && id.starts_with(key) && id.as_bytes()[key.len()] == b'_';
        let from = block.partition_point(|m| {
            let id = m.id.as_bytes();
            let n = id.len().min(key.len());
            match id[..n].cmp(&key.as_bytes()[..n]) {
                std::cmp::Ordering::Equal => id.len() <= key.len() || id[key.len()] < b'_',
                o => o.is_lt(),
            }
        });
        block[from..]
            .iter()
            .take_while(|m| has_prefix(&m.id))
            .enumerate()
            .filter(|(_, m)| {
                key.len() == m.version.as_str().len() + 1 + m.name.len()
                    && key.ends_with(m.name.as_str())
                    && key.starts_with(m.version.as_str())
            })
            .map(|(i, _)| start + from + i)
            .collect()
    }

    pub fn at(&self, index: usize) -> &Arc<Migration> {
        &self.migrations[index]
    }

    /// Migrations that `dep` designates.
    pub fn targets_of<'a>(&'a self, dep: &'a Dependency) -> impl Iterator<Item = usize> + 'a {
        self.migrations.iter().enumerate().filter(move |(_, m)| m.is_target_of(dep)).map(|(i, _)| i)
    }

    /// Resolve an id as users write it:
    /// 1. a base id `{version}_{name}_{backend}_{connection}`;
    /// 2. a schema-specific id `{schema}_{base}` — matched against known base ids, never by
    ///    splitting on `_` (schemas contain underscores);
    /// 3. BfM's legacy forms `{version}_{name}`, `{connection}_{version}_{name}` and
    ///    `{schema}_{connection}_{version}_{name}` (the last for fixed-schema migrations).
    pub fn lookup(&self, input: &str) -> Lookup {
        let input = input.trim();
        let input = input.strip_suffix("_rollback").unwrap_or(input);
        if let Some(i) = self.index_of(input) {
            return Lookup::Found { migration: self.migrations[i].clone(), schema: None };
        }
        // Underscores far enough from the end for the rest to be an id or a legacy suffix.
        let from = (input.len().saturating_sub(self.max_id_len + 1)..=input.len()).find(|&i| input.is_char_boundary(i)).unwrap_or(0);
        let underscores = || input[from..].match_indices('_').map(move |(p, _)| from + p);
        for pos in underscores() {
            let (prefix, rest) = (&input[..pos], &input[pos + 1..]);
            if prefix.is_empty() {
                continue;
            }
            if let Some(i) = self.index_of(rest) {
                return Lookup::Found { migration: self.migrations[i].clone(), schema: Some(prefix.to_string()) };
            }
        }
        // Legacy forms: find where a `{version}_{name}` suffix starts.
        let mut found: Vec<(usize, Option<String>)> = Vec::new();
        let starts = std::iter::once(0).filter(|_| from == 0).chain(underscores().map(|p| p + 1));
        for start in starts {
            let candidates = self.by_version_name(&input[start..]);
            let prefix = if start == 0 { "" } else { &input[..start - 1] };
            for i in candidates {
                let m = &self.migrations[i];
                if prefix.is_empty() || prefix == m.connection {
                    found.push((i, None));
                } else if let Some(schema) = prefix.strip_suffix(&format!("_{}", m.connection))
                    && m.schema.as_deref() == Some(schema)
                {
                    found.push((i, Some(schema.to_string())));
                }
            }
            if !found.is_empty() {
                break;
            }
        }
        match found.len() {
            0 => Lookup::NotFound,
            1 => {
                let (i, schema) = found.remove(0);
                Lookup::Found { migration: self.migrations[i].clone(), schema }
            }
            _ => Lookup::Ambiguous(found.into_iter().map(|(i, _)| self.migrations[i].id.clone()).collect()),
        }
    }
}

struct Collector {
    diagnostics: Vec<Diagnostic>,
}

impl Collector {
    fn error(&mut self, path: &Path, line: usize, message: impl Into<String>) {
        self.diagnostics.push(Diagnostic { severity: Severity::Error, path: path.to_path_buf(), line, message: message.into() });
    }
    fn warn(&mut self, path: &Path, line: usize, message: impl Into<String>) {
        self.diagnostics.push(Diagnostic { severity: Severity::Warning, path: path.to_path_buf(), line, message: message.into() });
    }
}

#[derive(Default)]
struct Parts {
    up: Option<PathBuf>,
    down: Option<PathBuf>,
    go: Option<PathBuf>,
}

struct Group {
    backend_dir: String,
    kind: BackendKind,
    connection: String,
    version: Version,
    name: String,
    source: SourceKind,
    parts: Parts,
}

enum FileRole {
    Up,
    Down,
    Go,
}

/// Parse `<version>_<name>.up.<ext>` and friends. `digits`: exact width required (14 for sfm).
fn parse_file_name(file: &str, digits: Option<usize>) -> Option<(Version, String, FileRole, Option<&str>)> {
    let (stem, role, ext) = if let Some(s) = file.strip_suffix(".go") {
        (s, FileRole::Go, None)
    } else if let Some((s, ext)) = file.rsplit_once('.') {
        if let Some(s) = s.strip_suffix(".up") {
            (s, FileRole::Up, Some(ext))
        } else if let Some(s) = s.strip_suffix(".down") {
            (s, FileRole::Down, Some(ext))
        } else {
            return None;
        }
    } else {
        return None;
    };
    let (v, name) = stem.split_once('_')?;
    if digits.is_some_and(|d| v.len() != d) {
        return None;
    }
    let version = Version::parse(v)?;
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        return None;
    }
    Some((version, name.to_string(), role, ext))
}

fn is_candidate_file(name: &str) -> bool {
    [".sql", ".json", ".go"].iter().any(|e| name.ends_with(e)) && !name.ends_with("_test.go")
}

/// Load every source. Never fails: problems are reported as diagnostics.
pub fn load(options: &LoadOptions) -> (Catalog, Vec<Diagnostic>) {
    let mut c = Collector { diagnostics: Vec::new() };
    let mut groups: BTreeMap<(String, String, String, String), Group> = BTreeMap::new();
    if let Some(root) = &options.sfm_root {
        scan_sfm(root, &mut groups, &mut c);
    }
    for src in &options.golang_migrate {
        scan_golang_migrate(src, &mut groups, &mut c);
    }

    // Duplicate versions within a connection.
    let mut versions: HashMap<(String, String, String), Vec<&Group>> = HashMap::new();
    for g in groups.values() {
        versions.entry((g.backend_dir.clone(), g.connection.clone(), g.version.as_str().to_string())).or_default().push(g);
    }
    let mut duplicate = std::collections::HashSet::new();
    for ((_, conn, version), gs) in &versions {
        if gs.len() > 1 {
            let names: Vec<String> = gs.iter().map(|g| g.name.clone()).collect();
            for g in gs {
                let path = g.parts.up.clone().or_else(|| g.parts.go.clone()).or_else(|| g.parts.down.clone()).unwrap_or_default();
                c.error(&path, 1, format!("duplicate version {version} in connection `{conn}`: {}", names.join(", ")));
                duplicate.insert((g.backend_dir.clone(), g.connection.clone(), g.name.clone(), version.clone()));
            }
        }
    }

    let mut migrations = Vec::new();
    for g in groups.into_values() {
        if duplicate.contains(&(g.backend_dir.clone(), g.connection.clone(), g.name.clone(), g.version.as_str().to_string())) {
            continue;
        }
        if let Some(m) = build(g, options, &mut c) {
            migrations.push(m);
        }
    }
    let catalog = Catalog::new(migrations);
    check_dependencies(&catalog, &mut c);
    c.diagnostics.sort_by(|a, b| a.path.cmp(&b.path).then(a.line.cmp(&b.line)));
    (catalog, c.diagnostics)
}

fn scan_sfm(root: &Path, groups: &mut BTreeMap<(String, String, String, String), Group>, c: &mut Collector) {
    if !root.is_dir() {
        c.error(root, 1, "sfm directory does not exist (set BFM_SFM_PATH or --sfm)");
        return;
    }
    let walker = walkdir::WalkDir::new(root)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| e.depth() == 0 || !e.file_name().to_string_lossy().starts_with('.'));
    for entry in walker {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                c.error(e.path().unwrap_or(root), 1, format!("cannot read: {e}"));
                continue;
            }
        };
        if !entry.file_type().is_file() {
            continue;
        }
        let path = entry.path();
        let file = entry.file_name().to_string_lossy().to_string();
        if !is_candidate_file(&file) {
            continue;
        }
        let rel: Vec<String> =
            path.strip_prefix(root).unwrap_or(path).components().map(|x| x.as_os_str().to_string_lossy().to_string()).collect();
        if rel.len() != 3 {
            if file.ends_with(".go") {
                continue;
            }
            c.error(path, 1, "migration files belong directly in <sfm>/<backend>/<connection>/");
            continue;
        }
        let (backend_dir, connection) = (&rel[0], &rel[1]);
        let Some(kind) = BackendKind::parse(backend_dir) else {
            c.error(path, 1, format!("unknown backend directory `{backend_dir}` (postgresql, mysql, sqlite, greptimedb, etcd)"));
            continue;
        };
        if !is_valid_name(connection) {
            c.error(path, 1, format!("connection directory `{connection}` must contain only letters, digits and `_`"));
            continue;
        }
        let Some((version, name, role, ext)) = parse_file_name(&file, Some(14)) else {
            if file.ends_with(".go") {
                c.warn(path, 1, "ignored: a .go file whose name is not <14-digit version>_<name>.go");
            } else {
                c.error(path, 1, format!("bad file name: expected <14-digit version>_<name>.up.{0} or .down.{0}", kind.script_extension()));
            }
            continue;
        };
        if let Some(ext) = ext
            && ext != kind.script_extension()
        {
            c.error(path, 1, format!("{kind} scripts end in .{}, not .{ext}", kind.script_extension()));
            continue;
        }
        let key = (backend_dir.clone(), connection.clone(), version.as_str().to_string(), name.clone());
        let g = groups.entry(key).or_insert_with(|| Group {
            backend_dir: backend_dir.clone(),
            kind,
            connection: connection.clone(),
            version,
            name,
            source: SourceKind::Sfm,
            parts: Parts::default(),
        });
        let slot = match role {
            FileRole::Up => &mut g.parts.up,
            FileRole::Down => &mut g.parts.down,
            FileRole::Go => &mut g.parts.go,
        };
        *slot = Some(path.to_path_buf());
    }
}

fn scan_golang_migrate(src: &GolangMigrateSource, groups: &mut BTreeMap<(String, String, String, String), Group>, c: &mut Collector) {
    let entries = match std::fs::read_dir(&src.path) {
        Ok(e) => e,
        Err(e) => {
            c.error(&src.path, 1, format!("cannot read migrations folder for connection `{}`: {e}", src.connection));
            return;
        }
    };
    let mut files: Vec<PathBuf> = entries.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.is_file()).collect();
    files.sort();
    for path in files {
        let file = path.file_name().map(|f| f.to_string_lossy().to_string()).unwrap_or_default();
        if !file.ends_with(".sql") {
            continue;
        }
        let Some((version, name, role, _)) = parse_file_name(&file, None) else {
            c.error(&path, 1, "bad file name: expected <version>_<name>.up.sql or .down.sql");
            continue;
        };
        let backend = src.backend.as_str().to_string();
        let key = (backend.clone(), src.connection.clone(), version.as_str().to_string(), name.clone());
        let g = groups.entry(key).or_insert_with(|| Group {
            backend_dir: backend,
            kind: src.backend,
            connection: src.connection.clone(),
            version,
            name,
            source: SourceKind::GolangMigrate,
            parts: Parts::default(),
        });
        match role {
            FileRole::Up => g.parts.up = Some(path),
            FileRole::Down => g.parts.down = Some(path),
            FileRole::Go => {}
        }
    }
}

/// Connection, schema and similar names in files: letters, digits, `_`.
pub fn is_valid_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 63 && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn read_text(path: &Path, c: &mut Collector) -> Option<Arc<str>> {
    match std::fs::read(path) {
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(s) => Some(Arc::from(s.strip_prefix('\u{feff}').unwrap_or(&s))),
            Err(_) => {
                c.error(path, 1, "not valid UTF-8");
                None
            }
        },
        Err(e) => {
            c.error(path, 1, format!("cannot read: {e}"));
            None
        }
    }
}

/// Validate a script and compute its checksum; `None` if it has errors.
fn check_script(path: &Path, text: &str, kind: BackendKind, transactional: bool, c: &mut Collector) -> Option<Checksum> {
    let before = c.diagnostics.len();
    let placeholders_ok = match template::placeholders(text) {
        Ok(_) => true,
        Err(e) => {
            c.error(path, e.line, e.message);
            false
        }
    };
    let checksum = match kind.dialect() {
        Some(dialect) => match sql::split(text, dialect) {
            Ok(statements) => {
                if statements.is_empty() {
                    c.warn(path, 1, "script has no statements");
                }
                if dialect == sql::Dialect::MySql {
                    warn_dash_lines(path, text, c);
                }
                if placeholders_ok && let Err(e) = template::check_sql(text, dialect) {
                    c.error(path, e.line, format!("template: {}", e.message));
                }
                if transactional && kind != BackendKind::Greptimedb {
                    for s in &statements {
                        if sql::transaction_control(&s.text, dialect).is_some_and(sql::TxControl::escapes_transaction) {
                            let word = s.text.split_whitespace().next().unwrap_or_default().to_ascii_uppercase();
                            c.error(
                                path,
                                s.line,
                                format!(
                                    "`{word}` ends or replaces the transaction bfm runs this migration in: the rest of the step and its ledger row would run outside it; remove it, or add `-- bfm-no-transaction` to the script's header to run it without bfm's transaction"
                                ),
                            );
                        }
                    }
                }
                Checksum::of_sql(text, dialect).ok()
            }
            Err(e) => {
                c.error(path, e.line, e.message);
                None
            }
        },
        None => {
            // Validate the JSON with placeholders rendered, so templates inside values pass.
            let vars = template::Vars { schema: "schema", connection: "connection", backend: "etcd", version: "0", environment: "env" };
            match template::render_json(text, &vars).map(|t| etcd_script::parse(&t)) {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => c.error(path, 1, format!("invalid etcd script: {e}")),
                Err(e) => c.error(path, e.line, e.message),
            }
            Some(
                Checksum::of_json(text)
                    .unwrap_or_else(|_| Checksum::of_statements(&[text.split_whitespace().collect::<Vec<_>>().join(" ")])),
            )
        }
    };
    (c.diagnostics[before..].iter().all(|d| d.severity == Severity::Warning)).then_some(checksum).flatten()
}

/// On MySQL a line like `--comment` or `-----` is not (wholly) a comment: the server reads the
/// dashes before the last `-- ` as minus signs. Such lines were comments to bfm before it read
/// MySQL's rule, so say so where they stand.
fn warn_dash_lines(path: &Path, text: &str, c: &mut Collector) {
    for (i, line) in text.lines().enumerate() {
        let t = line.trim_start();
        if t.starts_with("--") && t.as_bytes().get(2).is_some_and(|b| *b > b' ' && *b != 0x7f) {
            c.warn(path, i + 1, "on MySQL `--` starts a comment only before a blank: this line is SQL (write `-- ` to make it a comment)");
        }
    }
}

fn build(g: Group, options: &LoadOptions, c: &mut Collector) -> Option<Migration> {
    let Some(up_path) = g.parts.up.clone() else {
        let path = g.parts.down.clone().or_else(|| g.parts.go.clone()).unwrap_or_default();
        c.error(&path, 1, format!("up script missing: expected {}_{}.up.{}", g.version, g.name, g.kind.script_extension()));
        return None;
    };
    let up_text = read_text(&up_path, c)?;
    let errors_before = c.diagnostics.iter().filter(|d| d.severity == Severity::Error).count();

    let go = match &g.parts.go {
        Some(p) => match read_text(p, c).map(|t| gometa::parse(&t)) {
            Some(Ok(meta)) => Some(meta),
            Some(Err(e)) => {
                c.error(p, e.line, e.message);
                return None;
            }
            None => return None,
        },
        None => None,
    };
    let directives = match directives::parse(&up_text) {
        Ok(d) => d,
        Err(e) => {
            c.error(&up_path, e.line, e.message);
            return None;
        }
    };

    let (schema, schema_source) = if let Some(s) = go.as_ref().and_then(|g| g.schema.clone()) {
        (Some(s), Some(SchemaSource::GoFile))
    } else if let Some(s) = directives.schema.clone() {
        (Some(s), Some(SchemaSource::Directive))
    } else if let Some(s) = options.connection_schemas.get(&g.connection).filter(|s| !s.is_empty()) {
        (Some(s.clone()), Some(SchemaSource::ConnectionConfig))
    } else {
        (None, None)
    };
    let schema = if g.kind.has_schemas() { schema } else { None };
    // etcd schemas are key prefixes under the connection prefix: BfM's absolute form
    // (`/metadata/operations`) is read as relative, and nothing may climb out of the prefix.
    let schema = match (g.kind, schema) {
        (BackendKind::Etcd, Some(s)) => match etcd_script::normalise_declared_schema(&s) {
            Ok(n) => Some(n),
            Err(e) => {
                let path = match schema_source {
                    Some(SchemaSource::GoFile) => g.parts.go.clone().unwrap_or_else(|| up_path.clone()),
                    _ => up_path.clone(),
                };
                c.error(&path, 1, format!("invalid etcd schema: {e}"));
                return None;
            }
        },
        (_, s) => s,
    };

    // Tags: the .go literal, else the header.
    let (tag_entries, tag_path, tag_line) = match go.as_ref().filter(|m| !m.tags.is_empty()) {
        Some(m) => (m.tags.clone(), g.parts.go.clone().unwrap_or_default(), m.tags_line),
        None => match &directives.tags {
            Some((line, value)) => (tags::split_header(value), up_path.clone(), *line),
            None => (Vec::new(), up_path.clone(), 1),
        },
    };
    let tag_map = match tags::parse_tags(&tag_entries) {
        Ok(m) => m,
        Err(e) => {
            c.error(&tag_path, tag_line, format!("invalid tag `{}`: {}", tag_entries[e.index].trim(), e.error));
            return None;
        }
    };
    let tags: Vec<String> = tag_map.iter().map(|(k, v)| format!("{k}={v}")).collect();

    let mut dependencies = go.as_ref().map(|m| m.dependencies.clone()).unwrap_or_default();
    for d in directives.depends_on {
        if !dependencies.contains(&d) {
            dependencies.push(d);
        }
    }
    let mut structured = go.as_ref().map(|m| m.structured_dependencies.clone()).unwrap_or_default();
    for d in directives.dependencies {
        if !structured.contains(&d) {
            structured.push(d);
        }
    }

    let transactional = !directives.no_transaction;
    let checksum = check_script(&up_path, &up_text, g.kind, transactional, c);
    let down = match &g.parts.down {
        Some(p) => {
            let text = read_text(p, c)?;
            check_script(p, &text, g.kind, transactional, c)?;
            Some(Script { path: p.clone(), text })
        }
        None => None,
    };
    let checksum = checksum?;
    let errors_after = c.diagnostics.iter().filter(|d| d.severity == Severity::Error).count();
    if errors_after > errors_before {
        return None;
    }
    Some(Migration {
        id: Migration::base_id(g.version.as_str(), &g.name, &g.backend_dir, &g.connection),
        version: g.version,
        name: g.name,
        backend: g.backend_dir,
        kind: g.kind,
        connection: g.connection,
        schema,
        schema_source,
        table: go.as_ref().and_then(|m| m.table.clone()),
        up: Script { path: up_path, text: up_text },
        down,
        checksum,
        dependencies,
        structured_dependencies: structured,
        tags,
        requires_tables: directives.requires_tables,
        requires_schemas: directives.requires_schemas,
        transactional,
        resumable: directives.resumable,
        source: g.source,
        metadata_path: g.parts.go,
    })
}

/// Every dependency must designate at least one migration, and there must be no cycle.
fn check_dependencies(catalog: &Catalog, c: &mut Collector) {
    let mut graph = Graph::new(catalog.len());
    for (i, m) in catalog.iter().enumerate() {
        let path = m.metadata_path.clone().unwrap_or_else(|| m.up.path.clone());
        for dep in m.all_dependencies() {
            let targets: Vec<usize> = catalog.targets_of(&dep).collect();
            if targets.is_empty() {
                c.error(&path, 1, format!("unknown dependency ({}) of {}", dep.describe(), m.id));
            }
            for t in targets {
                if t == i {
                    c.error(&path, 1, format!("{} depends on itself", m.id));
                } else {
                    graph.add_edge(t, i);
                }
            }
        }
    }
    if let Some(cycle) = graph.find_cycle() {
        let names: Vec<&str> = cycle.iter().map(|&i| catalog.at(i).id.as_str()).collect();
        let first = catalog.at(cycle[0]);
        let path = first.metadata_path.clone().unwrap_or_else(|| first.up.path.clone());
        c.error(&path, 1, format!("dependency cycle: {}", names.join(" -> ")));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn write(root: &Path, rel: &str, text: &str) {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }

    fn load_dir(root: &Path) -> (Catalog, Vec<Diagnostic>) {
        load(&LoadOptions { sfm_root: Some(root.to_path_buf()), ..Default::default() })
    }

    #[test]
    fn loads_an_sfm_tree_with_metadata_from_go_and_headers() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        write(r, "postgresql/core/20250101000000_bootstrap.up.sql", "-- bfm-tags: env=prod\nCREATE TABLE t (id int);");
        write(r, "postgresql/core/20250101000000_bootstrap.down.sql", "DROP TABLE t;");
        write(
            r,
            "postgresql/core/20250101000000_bootstrap.go",
            "m := &migrations.MigrationScript{Schema: \"core\", Tags: []string{\"team=db\"}}",
        );
        write(r, "postgresql/organization/20250102000000_tenant.up.sql", "-- bfm-depends-on: bootstrap\nCREATE TABLE x (id int);");
        write(r, "etcd/metadata/20250103000000_seed.up.json", r#"[{"key": "a", "value": "b"}]"#);
        write(r, "README.md", "ignored");
        let (cat, diags) = load_dir(r);
        assert!(diags.is_empty(), "{diags:?}");
        assert_eq!(cat.len(), 3);
        let b = cat.get("20250101000000_bootstrap_postgresql_core").unwrap();
        assert_eq!(b.schema.as_deref(), Some("core"));
        // .go tags win over header tags
        assert_eq!(b.tags, vec!["team=db"]);
        assert!(b.down.is_some());
        let t = cat.get("20250102000000_tenant_postgresql_organization").unwrap();
        assert!(t.is_dynamic());
        assert_eq!(t.dependencies, vec!["bootstrap"]);
        assert_eq!(cat.get("20250103000000_seed_etcd_metadata").unwrap().kind, BackendKind::Etcd);
    }

    #[test]
    fn etcd_schemas_are_relative_to_the_connection_prefix() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        write(r, "etcd/metadata/20250101000000_flags.up.json", r#"[{"key": "a", "value": "b"}]"#);
        write(r, "etcd/metadata/20250101000000_flags.go", "m := &migrations.MigrationScript{Schema: \"/metadata/operations\"}");
        write(r, "etcd/metadata/20250101000001_escape.up.json", r#"[{"key": "a", "value": "b"}]"#);
        write(r, "etcd/metadata/20250101000001_escape.go", "m := &migrations.MigrationScript{Schema: \"/../other\"}");
        let (cat, diags) = load_dir(r);
        assert_eq!(cat.get("20250101000000_flags_etcd_metadata").unwrap().schema.as_deref(), Some("metadata/operations"));
        assert!(cat.get("20250101000001_escape_etcd_metadata").is_none());
        assert!(diags.iter().any(|d| d.to_string().contains("20250101000001_escape.go:1: invalid etcd schema")), "{diags:?}");
    }

    #[test]
    fn connection_schema_is_the_default_fixed_schema() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "postgresql/core/20250101000000_a.up.sql", "SELECT 1;");
        write(d.path(), "postgresql/core/20250101000001_b.up.sql", "-- bfm-schema: other\nSELECT 1;");
        let opts = LoadOptions {
            sfm_root: Some(d.path().to_path_buf()),
            connection_schemas: HashMap::from([("core".to_string(), "core".to_string())]),
            ..Default::default()
        };
        let (cat, diags) = load(&opts);
        assert!(diags.is_empty());
        assert_eq!(cat.get("20250101000000_a_postgresql_core").unwrap().schema.as_deref(), Some("core"));
        assert_eq!(cat.get("20250101000001_b_postgresql_core").unwrap().schema.as_deref(), Some("other"));
    }

    #[test]
    fn check_reports_every_problem_with_file_and_line() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        write(r, "postgresql/core/2025_bad.up.sql", "SELECT 1;");
        write(r, "postgresql/core/20250101000000_a.up.sql", "SELECT 1;");
        write(r, "postgresql/core/20250101000000_b.up.sql", "SELECT 1;");
        write(r, "postgresql/core/20250101000002_c.down.sql", "SELECT 1;");
        write(r, "postgresql/core/20250101000003_d.up.sql", "SELECT 1;\n-- bfm-tags: novalue");
        write(r, "postgresql/core/20250101000004_e.up.sql", "-- bfm-depends-on: nothing_here\nSELECT 1;");
        write(r, "postgresql/core/20250101000005_f.up.sql", "-- bfm-depends-on: g\nSELECT 1;");
        write(r, "postgresql/core/20250101000006_g.up.sql", "-- bfm-depends-on: f\nSELECT 1;");
        write(r, "postgresql/core/20250101000007_h.up.sql", "SELECT 1;\nSELECT 'open");
        write(r, "etcd/meta/20250101000008_i.up.json", r#"[{"operation": "merge", "key": "x"}]"#);
        write(r, "mongodb/x/20250101000009_j.up.sql", "x");
        write(r, "postgresql/core/nested/20250101000010_k.up.sql", "x");
        let (_, diags) = load_dir(r);
        let text: Vec<String> = diags.iter().filter(|d| d.severity == Severity::Error).map(|d| d.to_string()).collect();
        let has = |needle: &str| assert!(text.iter().any(|t| t.contains(needle)), "missing {needle:?} in {text:#?}");
        has("2025_bad.up.sql:1: bad file name");
        has("duplicate version 20250101000000");
        has("20250101000002_c.down.sql:1: up script missing");
        has("20250101000003_d.up.sql:2: invalid tag `novalue`");
        has("unknown dependency (target=nothing_here)");
        has("dependency cycle:");
        has("20250101000007_h.up.sql:2: unterminated string literal");
        has("20250101000008_i.up.json:1: invalid etcd script: operation [0]");
        has("unknown backend directory `mongodb`");
        has("belong directly in");
    }

    #[test]
    fn golang_migrate_folders() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "001_init.up.sql", "CREATE TABLE a (id int);");
        write(d.path(), "001_init.down.sql", "DROP TABLE a;");
        write(d.path(), "010_more.up.sql", "CREATE TABLE b (id int);");
        write(d.path(), "002_two.up.sql", "CREATE TABLE c (id int);");
        let opts = LoadOptions {
            golang_migrate: vec![GolangMigrateSource {
                path: d.path().to_path_buf(),
                connection: "app".into(),
                backend: BackendKind::Postgresql,
            }],
            ..Default::default()
        };
        let (cat, diags) = load(&opts);
        assert!(diags.is_empty(), "{diags:?}");
        let names: Vec<&str> = cat.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, vec!["init", "two", "more"]);
        assert!(cat.get("001_init_postgresql_app").is_some());
    }

    #[test]
    fn lookup_resolves_schema_prefixed_and_legacy_ids() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "postgresql/core/20250101000000_boot.up.sql", "-- bfm-schema: core\nSELECT 1;");
        write(d.path(), "postgresql/org/20250102000000_tenant_init.up.sql", "SELECT 1;");
        let (cat, _) = load_dir(d.path());
        let found = |s: &str| match cat.lookup(s) {
            Lookup::Found { migration, schema } => Some((migration.id.clone(), schema)),
            _ => None,
        };
        assert_eq!(found("20250101000000_boot_postgresql_core"), Some(("20250101000000_boot_postgresql_core".into(), None)));
        // A tenant whose name contains underscores.
        assert_eq!(
            found("tenant_1_a_20250102000000_tenant_init_postgresql_org"),
            Some(("20250102000000_tenant_init_postgresql_org".into(), Some("tenant_1_a".into())))
        );
        assert_eq!(found("20250101000000_boot").map(|f| f.0), Some("20250101000000_boot_postgresql_core".into()));
        assert_eq!(found("core_20250101000000_boot").map(|f| f.1), Some(None));
        assert_eq!(found("core_core_20250101000000_boot").map(|f| f.1), Some(Some("core".into())));
        assert_eq!(found("20250101000000_boot_postgresql_core_rollback").map(|f| f.1), Some(None));
        assert_eq!(cat.lookup("nope"), Lookup::NotFound);
    }

    #[test]
    fn transaction_control_in_a_transactional_migration_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        write(r, "postgresql/core/20250101000000_a.up.sql", "INSERT INTO t VALUES (1);\nCOMMIT;\nINSERT INTO t VALUES (2);");
        write(r, "postgresql/core/20250101000001_b.up.sql", "SELECT 1;\n\nABORT;");
        write(r, "postgresql/core/20250101000002_c.up.sql", "-- bfm-no-transaction\nCOMMIT;\nVACUUM t;");
        write(
            r,
            "postgresql/core/20250101000003_d.up.sql",
            "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT CASE WHEN true THEN 1 END; END;\n\
             DO $$ BEGIN IF true THEN PERFORM 1; END IF; END $$;\nSAVEPOINT s;\nROLLBACK TO SAVEPOINT s;\nRELEASE s;",
        );
        write(r, "mysql/app/20250101000004_e.up.sql", "START TRANSACTION;\nUPDATE t SET a = 5--1;");
        let (cat, diags) = load_dir(r);
        let errors: Vec<String> = diags.iter().filter(|d| d.severity == Severity::Error).map(|d| d.to_string()).collect();
        assert_eq!(errors.len(), 3, "{errors:#?}");
        assert!(errors[0].contains("20250101000004_e.up.sql:1: `START` ends or replaces the transaction"), "{errors:#?}");
        assert!(errors[1].contains("20250101000000_a.up.sql:2: `COMMIT`") && errors[1].contains("-- bfm-no-transaction"), "{errors:#?}");
        assert!(errors[2].contains("20250101000001_b.up.sql:3: `ABORT`"), "{errors:#?}");
        assert!(cat.get("20250101000000_a_postgresql_core").is_none());
        assert!(cat.get("20250101000002_c_postgresql_core").is_some());
        assert!(cat.get("20250101000003_d_postgresql_core").is_some());
    }

    #[test]
    fn mysql_dash_lines_that_are_not_comments_are_warned_about() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "mysql/app/20250101000000_a.up.sql", "-- fine\n--------\nSELECT 5--1;\n--x\n");
        let (cat, diags) = load_dir(d.path());
        assert_eq!(cat.len(), 1);
        let lines: Vec<usize> = diags.iter().filter(|d| d.severity == Severity::Warning).map(|d| d.line).collect();
        assert_eq!(lines, vec![2, 4], "{diags:?}");
    }

    #[test]
    fn template_placeholders_where_no_value_may_go_fail_at_load() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "mysql/app/20250101000000_a.up.sql", "SELECT 1;\nSELECT /*! {{.Environment}} */ 1;");
        let (cat, diags) = load_dir(d.path());
        assert!(cat.is_empty());
        assert!(
            diags.iter().any(|d| d.severity == Severity::Error && d.to_string().contains("20250101000000_a.up.sql:2: template:")),
            "{diags:?}"
        );
    }
}
