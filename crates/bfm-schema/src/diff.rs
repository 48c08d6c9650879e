//! Model × model → ordered, annotated steps.
//!
//! Ordering is by phase (rank) and, within a phase, by generation order; views are generated in
//! dependency order. The phases, in execution order:
//!
//! 1. drops of dependents: policies, triggers, foreign keys, views, constraints, indexes,
//!    functions whose signature uses a dropped relation, then tables;
//! 2. creates and alters: schemas, extensions, enums, domains, sequences, functions, tables,
//!    column changes, sequence ownership;
//! 3. the remaining drops: functions, sequences, domains, enums, extensions, schemas (after the
//!    column changes that stop using them);
//! 4. creates of dependents: functions using table row types, views, constraints, indexes,
//!    foreign keys (after every table exists), triggers, policies, RLS, comments.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use crate::ident::{display_part, qualified, quote_ident, quote_literal};
use crate::model::*;
use crate::types::*;

const R_DROP_POLICY: u16 = 10;
const R_DROP_TRIGGER: u16 = 11;
const R_DROP_FK: u16 = 12;
const R_DROP_VIEW: u16 = 13;
const R_DROP_CONSTRAINT: u16 = 14;
const R_DROP_INDEX: u16 = 15;
const R_DROP_FUNCTION_EARLY: u16 = 16;
const R_DROP_TABLE: u16 = 17;
const R_SCHEMA: u16 = 30;
const R_EXTENSION: u16 = 31;
const R_ENUM: u16 = 32;
const R_DOMAIN: u16 = 33;
const R_SEQUENCE: u16 = 34;
const R_FUNCTION: u16 = 35;
const R_CREATE_TABLE: u16 = 36;
const R_ALTER_TABLE: u16 = 37;
const R_SEQ_OWNED: u16 = 38;
const R_DROP_FUNCTION: u16 = 39;
const R_DROP_SEQUENCE: u16 = 40;
const R_DROP_DOMAIN: u16 = 41;
const R_DROP_ENUM: u16 = 42;
const R_DROP_EXTENSION: u16 = 43;
const R_DROP_SCHEMA: u16 = 44;
const R_FUNCTION_LATE: u16 = 50;
const R_VIEW: u16 = 51;
const R_CONSTRAINT: u16 = 52;
const R_INDEX: u16 = 53;
const R_FK: u16 = 54;
const R_TRIGGER: u16 = 55;
const R_POLICY: u16 = 56;
const R_RLS: u16 = 57;
const R_COMMENT: u16 = 58;
const R_GRANT: u16 = 59;

/// Name of the file section a phase belongs to (used by `dump`).
pub(crate) fn section_of(rank: u16) -> &'static str {
    match rank {
        R_SCHEMA => "schemas",
        R_EXTENSION => "extensions",
        R_ENUM | R_DOMAIN => "types",
        R_SEQUENCE => "sequences",
        R_FUNCTION => "functions",
        R_CREATE_TABLE | R_ALTER_TABLE => "tables",
        R_SEQ_OWNED => "sequence_ownership",
        R_FUNCTION_LATE => "functions_using_tables",
        R_VIEW => "views",
        R_CONSTRAINT => "constraints",
        R_INDEX => "indexes",
        R_FK => "foreign_keys",
        R_TRIGGER => "triggers",
        R_POLICY | R_RLS => "policies",
        R_COMMENT => "comments",
        R_GRANT => "grants",
        _ => "drops",
    }
}

/// A step before ordering.
pub(crate) struct Pending {
    pub rank: u16,
    pub seq: usize,
    pub step: Step,
    pub commit_after: bool,
}

struct Builder {
    out: Vec<Pending>,
}

struct S {
    kind: ObjectKind,
    object: String,
    op: StepOp,
    sql: String,
    lock: LockLevel,
    rewrites: bool,
    transactional: bool,
    hazards: Vec<Hazard>,
    commit_after: bool,
    check_index: Option<String>,
    cleanup: Option<String>,
}

impl S {
    fn new(kind: ObjectKind, object: impl Into<String>, op: StepOp, sql: impl Into<String>) -> S {
        S {
            kind,
            object: object.into(),
            op,
            sql: sql.into(),
            lock: LockLevel::None,
            rewrites: false,
            transactional: true,
            hazards: Vec::new(),
            commit_after: false,
            check_index: None,
            cleanup: None,
        }
    }
    fn lock(mut self, l: LockLevel) -> S {
        self.lock = self.lock.max(l);
        self
    }
    fn hazard(mut self, code: HazardCode, message: impl Into<String>) -> S {
        if !self.hazards.iter().any(|h| h.code == code) {
            self.hazards.push(Hazard { code, message: message.into() });
        }
        self
    }
    fn non_transactional(mut self) -> S {
        self.transactional = false;
        self
    }
    fn commit_after(mut self) -> S {
        self.commit_after = true;
        self
    }
    fn rewrites(mut self) -> S {
        self.rewrites = true;
        self
    }
}

impl Builder {
    fn push(&mut self, rank: u16, s: S) {
        let destructive = s.hazards.iter().any(|h| h.code.is_destructive());
        let seq = self.out.len();
        self.out.push(Pending {
            rank,
            seq,
            commit_after: s.commit_after,
            step: Step {
                id: 0,
                sql: s.sql,
                kind: s.kind,
                object: s.object,
                op: s.op,
                lock: s.lock,
                rewrites_table: s.rewrites,
                transactional: s.transactional,
                group: 0,
                hazards: s.hazards,
                destructive,
                check_index: s.check_index,
                cleanup: s.cleanup,
            },
        });
    }
}

/// Plan the steps that turn `from` into `to`.
pub(crate) fn diff(from: &Model, to: &Model) -> Vec<Step> {
    order(diff_pending(from, to))
}

/// Sort by phase, assign ids and transaction groups.
pub(crate) fn order(mut pending: Vec<Pending>) -> Vec<Step> {
    pending.sort_by_key(|p| (p.rank, p.seq));
    let mut steps = Vec::with_capacity(pending.len());
    let mut group = 0usize;
    let mut prev_breaks = true;
    for (i, p) in pending.into_iter().enumerate() {
        let mut step = p.step;
        if prev_breaks || !step.transactional {
            group += 1;
        }
        step.group = group;
        step.id = i + 1;
        prev_breaks = !step.transactional || p.commit_after;
        steps.push(step);
    }
    steps
}

/// Sections of a create-only plan, for `dump`.
pub(crate) fn dump_sections(live: &Model) -> Vec<(&'static str, Vec<Step>)> {
    let mut pending = diff_pending(&Model::empty(live.pg_major), live);
    pending.sort_by_key(|p| (p.rank, p.seq));
    let mut out: Vec<(&'static str, Vec<Step>)> = Vec::new();
    for (i, p) in pending.into_iter().enumerate() {
        let section = section_of(p.rank);
        let mut step = p.step;
        step.id = i + 1;
        match out.last_mut() {
            Some((s, v)) if *s == section => v.push(step),
            _ => out.push((section, vec![step])),
        }
    }
    out
}

fn int_max(data_type: &str) -> i64 {
    match data_type {
        "smallint" => i16::MAX as i64,
        "integer" => i32::MAX as i64,
        _ => i64::MAX,
    }
}

/// Full sequence options for CREATE/ALTER SEQUENCE.
fn seq_options_sql(o: &SeqOptions) -> String {
    format!(
        "AS {} START WITH {} INCREMENT BY {} MINVALUE {} MAXVALUE {} CACHE {} {}",
        o.data_type,
        o.start,
        o.increment,
        o.min,
        o.max,
        o.cache,
        if o.cycle { "CYCLE" } else { "NO CYCLE" }
    )
}

/// Identity options that differ from the defaults for the column type.
fn identity_options_sql(o: &SeqOptions) -> String {
    let mut parts = Vec::new();
    let asc = o.increment > 0;
    let (dmin, dmax) = if asc { (1, int_max(&o.data_type)) } else { (-int_max(&o.data_type) - 1, -1) };
    let dstart = if asc { o.min } else { o.max };
    if o.start != dstart {
        parts.push(format!("START WITH {}", o.start));
    }
    if o.increment != 1 {
        parts.push(format!("INCREMENT BY {}", o.increment));
    }
    if o.min != dmin {
        parts.push(format!("MINVALUE {}", o.min));
    }
    if o.max != dmax {
        parts.push(format!("MAXVALUE {}", o.max));
    }
    if o.cache != 1 {
        parts.push(format!("CACHE {}", o.cache));
    }
    if o.cycle {
        parts.push("CYCLE".into());
    }
    if parts.is_empty() { String::new() } else { format!(" ({})", parts.join(" ")) }
}

fn column_def_sql(c: &Column) -> String {
    let mut s = format!("{} {}", quote_ident(&c.name), c.type_name);
    if let Some(coll) = &c.collation {
        s.push_str(&format!(" COLLATE {coll}"));
    }
    if let Some(g) = &c.generated {
        s.push_str(&format!(" GENERATED ALWAYS AS ({g}) STORED"));
    }
    if let Some(d) = &c.default {
        s.push_str(&format!(" DEFAULT {d}"));
    }
    if let Some(id) = &c.identity {
        s.push_str(&format!(
            " GENERATED {} AS IDENTITY{}",
            if id.always { "ALWAYS" } else { "BY DEFAULT" },
            identity_options_sql(&id.options)
        ));
    }
    if c.not_null {
        s.push_str(" NOT NULL");
    }
    s
}

fn is_volatile_default(expr: &str) -> bool {
    const VOLATILE: [&str; 8] = [
        "nextval(",
        "random(",
        "gen_random_uuid(",
        "uuid_generate_",
        "clock_timestamp(",
        "timeofday(",
        "statement_timestamp(",
        "txid_current(",
    ];
    VOLATILE.iter().any(|v| expr.contains(v))
}

/// Split `name(mods)` / `name(mods)[]`.
fn parse_type(t: &str) -> (String, Vec<i64>, bool) {
    let (t, array) = match t.strip_suffix("[]") {
        Some(s) => (s, true),
        None => (t, false),
    };
    // "timestamp(3) with time zone" keeps its modifier in the middle.
    match (t.find('('), t.find(')')) {
        (Some(a), Some(b)) if b > a => {
            let base = format!("{}{}", &t[..a], &t[b + 1..]);
            let mods = t[a + 1..b].split(',').filter_map(|m| m.trim().parse().ok()).collect();
            (base, mods, array)
        }
        _ => (t.to_string(), Vec::new(), array),
    }
}

/// Whether changing a column from `from` to `to` rewrites the table, and whether it may lose
/// data (narrowing or an unrecognised conversion).
pub(crate) fn type_change(from: &str, to: &str) -> (bool, bool) {
    if from == to {
        return (false, false);
    }
    let (fb, fm, fa) = parse_type(from);
    let (tb, tm, ta) = parse_type(to);
    if fa != ta {
        return (true, true);
    }
    let stringy = |b: &str| b == "character varying" || b == "text";
    match (fb.as_str(), tb.as_str()) {
        ("character varying", "character varying") if (tm.is_empty() || (!fm.is_empty() && tm[0] >= fm[0])) => (false, false),
        (f, "text") if stringy(f) => (false, false),
        ("text", "character varying") if tm.is_empty() => (false, false),
        ("numeric", "numeric") => {
            if tm.is_empty() {
                return (false, false);
            }
            if fm.is_empty() {
                return (true, true);
            }
            let (fp, fs) = (fm[0], fm.get(1).copied().unwrap_or(0));
            let (tp, ts) = (tm[0], tm.get(1).copied().unwrap_or(0));
            if ts == fs && tp >= fp {
                (false, false)
            } else if ts >= fs && tp - ts >= fp - fs {
                (true, false)
            } else {
                (true, true)
            }
        }
        ("smallint", "integer" | "bigint" | "numeric" | "real" | "double precision")
        | ("integer", "bigint" | "numeric" | "double precision")
        | ("bigint", "numeric")
        | ("real", "double precision")
        | ("character", "character varying" | "text")
        | ("timestamp without time zone", "timestamp with time zone")
        | ("timestamp with time zone", "timestamp without time zone")
        | ("date", "timestamp without time zone" | "timestamp with time zone") => (true, false),
        (_, "text") => (true, false),
        _ => (true, true),
    }
}

/// Topological order of a set of views (dependencies first); ties by name.
fn view_order(views: &BTreeMap<String, View>, keys: &BTreeSet<String>) -> Vec<String> {
    let mut indeg: BTreeMap<&String, usize> = keys.iter().map(|k| (k, 0)).collect();
    let mut users: HashMap<&str, Vec<&String>> = HashMap::new();
    for k in keys {
        if let Some(v) = views.get(k) {
            for d in &v.depends_on {
                if d != k && keys.contains(d) {
                    if let Some(n) = indeg.get_mut(k) {
                        *n += 1;
                    }
                    users.entry(d.as_str()).or_default().push(k);
                }
            }
        }
    }
    let mut ready: BTreeSet<&String> = indeg.iter().filter(|(_, n)| **n == 0).map(|(k, _)| *k).collect();
    let mut out = Vec::with_capacity(keys.len());
    while let Some(k) = ready.pop_first() {
        out.push(k.clone());
        if let Some(us) = users.get(k.as_str()) {
            for u in us {
                if let Some(n) = indeg.get_mut(*u) {
                    *n -= 1;
                    if *n == 0 {
                        ready.insert(u);
                    }
                }
            }
        }
    }
    // A cycle cannot exist between views; keep anything left in name order anyway.
    for k in keys {
        if !out.contains(k) {
            out.push(k.clone());
        }
    }
    out
}

/// Whether a function signature mentions one of the relations (as a row type).
fn mentions_relation(f: &Function, relations: &BTreeSet<String>) -> bool {
    let words = |s: &str| -> bool {
        s.split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '$' || c == '.' || c == '"'))
            .any(|w| w.contains('.') && relations.contains(w))
    };
    words(&f.arguments) || f.result.as_deref().is_some_and(words)
}

/// A function whose body is SQL-standard (`BEGIN ATOMIC … END` or `RETURN …`) rather than a
/// string: `pg_get_functiondef` then prints no `AS $…$` clause.
fn is_sql_standard_body(f: &Function) -> bool {
    !f.definition.contains("\nAS $")
}

fn function_kind(f: &Function) -> ObjectKind {
    if f.procedure { ObjectKind::Procedure } else { ObjectKind::Function }
}

fn comment_sql(target: &str, comment: &Option<String>) -> String {
    format!("COMMENT ON {target} IS {}", comment.as_deref().map(quote_literal).unwrap_or_else(|| "NULL".into()))
}

fn policy_create_sql(p: &Policy) -> String {
    let roles: Vec<String> = p.roles.iter().map(|r| if r == "public" { "PUBLIC".to_string() } else { quote_ident(r) }).collect();
    let mut s = format!(
        "CREATE POLICY {} ON {} AS {} FOR {} TO {}",
        quote_ident(&p.name),
        qualified(&p.schema, &p.table),
        if p.permissive { "PERMISSIVE" } else { "RESTRICTIVE" },
        p.command,
        roles.join(", ")
    );
    if let Some(u) = &p.using {
        s.push_str(&format!(" USING ({u})"));
    }
    if let Some(c) = &p.check {
        s.push_str(&format!(" WITH CHECK ({c})"));
    }
    s
}

fn trigger_enable_sql(t: &Trigger) -> Option<String> {
    let action = match t.enabled.as_str() {
        "D" => "DISABLE TRIGGER",
        "R" => "ENABLE REPLICA TRIGGER",
        "A" => "ENABLE ALWAYS TRIGGER",
        _ => return None,
    };
    Some(format!("ALTER TABLE {} {action} {}", qualified(&t.schema, &t.table), quote_ident(&t.name)))
}

/// The CREATE statement of an index, made concurrent.
fn concurrently(def: &str) -> String {
    for prefix in ["CREATE UNIQUE INDEX ", "CREATE INDEX "] {
        if let Some(rest) = def.strip_prefix(prefix) {
            return format!("{prefix}CONCURRENTLY {rest}");
        }
    }
    def.to_string()
}

fn view_create_sql(v: &View, replace: bool) -> String {
    let opts = if v.options.is_empty() { String::new() } else { format!(" WITH ({})", crate::ident::reloptions_sql(&v.options)) };
    let def = v.definition.trim_end().trim_end_matches(';');
    if v.materialized {
        return format!("CREATE MATERIALIZED VIEW {}{} AS\n{}\nWITH DATA", qualified(&v.schema, &v.name), opts, def);
    }
    format!("CREATE {}VIEW {}{} AS\n{}", if replace { "OR REPLACE " } else { "" }, qualified(&v.schema, &v.name), opts, def)
}

fn view_kind(v: &View) -> ObjectKind {
    if v.materialized { ObjectKind::MaterializedView } else { ObjectKind::View }
}

fn view_word(v: &View) -> &'static str {
    if v.materialized { "MATERIALIZED VIEW" } else { "VIEW" }
}

/// `CREATE OR REPLACE VIEW` may only append columns: the old ones must be a prefix with the
/// same names and types.
fn view_replace_compatible(old: &View, new: &View) -> bool {
    old.columns.len() <= new.columns.len()
        && old.columns.iter().zip(&new.columns).all(|(a, b)| a.name == b.name && a.type_name == b.type_name)
}

fn constraint_add_sql(c: &Constraint, not_valid: bool) -> String {
    format!(
        "ALTER TABLE {} ADD CONSTRAINT {} {}{}",
        qualified(&c.schema, &c.table),
        quote_ident(&c.name),
        c.definition,
        if not_valid { " NOT VALID" } else { "" }
    )
}

fn constraint_kind_word(k: ConstraintKind) -> &'static str {
    match k {
        ConstraintKind::PrimaryKey => "PRIMARY KEY",
        ConstraintKind::Unique => "UNIQUE",
        ConstraintKind::Check => "CHECK",
        ConstraintKind::ForeignKey => "FOREIGN KEY",
        ConstraintKind::Exclude => "EXCLUDE",
    }
}

/// Deferrability clause of a constraint definition (pg_get_constraintdef puts it at the end).
fn deferrable_clause(def: &str) -> &'static str {
    if def.contains("INITIALLY DEFERRED") {
        " DEFERRABLE INITIALLY DEFERRED"
    } else if def.contains("DEFERRABLE") {
        " DEFERRABLE"
    } else {
        ""
    }
}

pub(crate) fn diff_pending(from: &Model, to: &Model) -> Vec<Pending> {
    let mut b = Builder { out: Vec::new() };

    // ---- what goes away, what is new ----------------------------------------------------
    let dropped_tables: BTreeSet<String> = from.tables.keys().filter(|k| !to.tables.contains_key(*k)).cloned().collect();
    let new_tables: BTreeSet<String> = to.tables.keys().filter(|k| !from.tables.contains_key(*k)).cloned().collect();
    let dropped_views: BTreeSet<String> = from.views.keys().filter(|k| !to.views.contains_key(*k)).cloned().collect();

    // Functions whose signature changes incompatibly are dropped and created again.
    let mut recreated_functions: BTreeSet<String> = BTreeSet::new();
    for (k, f) in &from.functions {
        if let Some(t) = to.functions.get(k)
            && (f.result != t.result || f.arguments != t.arguments || f.procedure != t.procedure)
        {
            recreated_functions.insert(k.clone());
        }
    }
    let recreated_fn_names: Vec<String> = recreated_functions
        .iter()
        .filter_map(|k| from.functions.get(k))
        .map(|f| format!("{}(", crate::ident::display_name(&f.schema, &f.name)))
        .collect();

    // Enums rebuilt because values were removed or reordered.
    let mut rebuilt_enums: BTreeSet<String> = BTreeSet::new();
    for (k, e) in &from.enums {
        if let Some(t) = to.enums.get(k)
            && e.labels != t.labels
            && !is_subsequence(&e.labels, &t.labels)
        {
            rebuilt_enums.insert(k.clone());
        }
    }

    // Columns whose change forces dependent views to be dropped and recreated.
    let mut touched_columns: BTreeSet<String> = BTreeSet::new();
    for (k, ft) in &from.tables {
        let Some(tt) = to.tables.get(k) else { continue };
        if ft == tt && rebuilt_enums.is_empty() {
            continue;
        }
        for fc in &ft.columns {
            let touched = match tt.column(&fc.name) {
                None => true,
                Some(tc) => {
                    let enum_rebuilt = rebuilt_enums.iter().any(|e| fc.type_name.trim_end_matches("[]") == e);
                    fc.type_name != tc.type_name || fc.collation != tc.collation || fc.generated != tc.generated || enum_rebuilt
                }
            };
            if touched {
                touched_columns.insert(format!("{k}.{}", display_part(&fc.name)));
            }
        }
    }

    // Views to recreate (drop before, create after): incompatible change, or they read a
    // touched column, a dropped relation, a recreated view or a recreated function.
    let mut recreated_views: BTreeSet<String> = BTreeSet::new();
    for (k, v) in &from.views {
        let Some(t) = to.views.get(k) else { continue };
        let changed = v.definition != t.definition || v.columns != t.columns || v.options != t.options;
        // A materialized view is never replaced in place (a change of options is altered).
        let content_changed = v.definition != t.definition || v.columns != t.columns;
        if (changed && !view_replace_compatible(v, t))
            || v.materialized != t.materialized
            || (v.materialized && content_changed)
            || v.depends_on_columns.iter().any(|c| touched_columns.contains(c))
            || v.depends_on.iter().any(|d| dropped_tables.contains(d) || dropped_views.contains(d))
            || recreated_fn_names.iter().any(|f| v.definition.contains(f.as_str()))
        {
            recreated_views.insert(k.clone());
        }
    }
    loop {
        let before = recreated_views.len();
        for (k, v) in &from.views {
            if to.views.contains_key(k) && !recreated_views.contains(k) && v.depends_on.iter().any(|d| recreated_views.contains(d)) {
                recreated_views.insert(k.clone());
            }
        }
        if recreated_views.len() == before {
            break;
        }
    }

    // Constraints recreated: changed definition, or a foreign key whose referenced table has
    // its primary key / unique constraints recreated.
    let mut recreated_constraints: BTreeSet<String> = BTreeSet::new();
    let mut rekeyed_tables: BTreeSet<String> = BTreeSet::new();
    for (k, c) in &from.constraints {
        if let Some(t) = to.constraints.get(k) {
            if c.kind != t.kind || c.definition != t.definition {
                recreated_constraints.insert(k.clone());
                if matches!(c.kind, ConstraintKind::PrimaryKey | ConstraintKind::Unique) {
                    rekeyed_tables.insert(c.table_key());
                }
            }
        } else if matches!(c.kind, ConstraintKind::PrimaryKey | ConstraintKind::Unique) {
            rekeyed_tables.insert(c.table_key());
        }
    }
    for (k, c) in &from.constraints {
        if c.kind == ConstraintKind::ForeignKey
            && to.constraints.contains_key(k)
            && c.references.as_ref().is_some_and(|r| rekeyed_tables.contains(r))
            && !dropped_tables.contains(&c.table_key())
        {
            recreated_constraints.insert(k.clone());
        }
    }

    let mut recreated_triggers: BTreeSet<String> = BTreeSet::new();
    for (k, t) in &from.triggers {
        if let Some(n) = to.triggers.get(k)
            && (t.definition != n.definition
                || recreated_views.contains(&t.table_key())
                || recreated_fn_names.iter().any(|f| t.definition.contains(f.as_str())))
        {
            recreated_triggers.insert(k.clone());
        }
    }

    let mut recreated_indexes: BTreeSet<String> = BTreeSet::new();
    for (k, i) in &from.indexes {
        if let Some(n) = to.indexes.get(k)
            && (i.definition != n.definition || !i.valid)
        {
            recreated_indexes.insert(k.clone());
        }
    }
    // Indexes of a materialized view that is dropped and created go with it and come back.
    let fresh_relation =
        |key: &str| -> bool { recreated_views.contains(key) || (to.views.contains_key(key) && !from.views.contains_key(key)) };
    if !recreated_views.is_empty() {
        for (k, i) in &from.indexes {
            if to.indexes.contains_key(k) && recreated_views.contains(&i.table_key()) {
                recreated_indexes.insert(k.clone());
            }
        }
    }

    let mut recreated_policies: BTreeSet<String> = BTreeSet::new();
    for (k, p) in &from.policies {
        if let Some(n) = to.policies.get(k) {
            let removes_clause = (p.using.is_some() && n.using.is_none()) || (p.check.is_some() && n.check.is_none());
            // A policy reading a column that is dropped or changes type blocks that ALTER
            // TABLE: change it by dropping it first and creating it afterwards.
            let exprs_changed = p.using != n.using || p.check != n.check || p.roles != n.roles;
            let prefix = format!("{}.", p.table_key());
            let table_touched = exprs_changed && touched_columns.range(prefix.clone()..).next().is_some_and(|c| c.starts_with(&prefix));
            if p.command != n.command || p.permissive != n.permissive || removes_clause || table_touched {
                recreated_policies.insert(k.clone());
            }
        }
    }

    let table_dropped = |schema: &str, table: &str| -> bool {
        !dropped_tables.is_empty() && dropped_tables.contains(&crate::ident::display_name(schema, table))
    };
    let table_new =
        |schema: &str, table: &str| -> bool { !new_tables.is_empty() && new_tables.contains(&crate::ident::display_name(schema, table)) };

    // ---- phase 1: drops of dependents -----------------------------------------------------
    for (k, p) in &from.policies {
        if (!to.policies.contains_key(k) || recreated_policies.contains(k)) && !table_dropped(&p.schema, &p.table) {
            b.push(
                R_DROP_POLICY,
                S::new(
                    ObjectKind::Policy,
                    k,
                    StepOp::Drop,
                    format!("DROP POLICY {} ON {}", quote_ident(&p.name), qualified(&p.schema, &p.table)),
                )
                .lock(LockLevel::AccessExclusive)
                .hazard(HazardCode::AuthzUpdate, "row access rules change"),
            );
        }
    }
    for (k, t) in &from.triggers {
        if to.triggers.contains_key(k) && !recreated_triggers.contains(k) {
            continue;
        }
        let rel = t.table_key();
        if dropped_tables.contains(&rel) || dropped_views.contains(&rel) || recreated_views.contains(&rel) {
            continue;
        }
        b.push(
            R_DROP_TRIGGER,
            S::new(
                ObjectKind::Trigger,
                k,
                StepOp::Drop,
                format!("DROP TRIGGER {} ON {}", quote_ident(&t.name), qualified(&t.schema, &t.table)),
            )
            .lock(LockLevel::AccessExclusive),
        );
    }
    // Foreign keys first (also those between two dropped tables, so table drops never
    // depend on each other).
    for (k, c) in &from.constraints {
        if c.kind != ConstraintKind::ForeignKey {
            continue;
        }
        let own_dropped = table_dropped(&c.schema, &c.table);
        let refs_dropped = c.references.as_ref().is_some_and(|r| dropped_tables.contains(r) && *r != c.table_key());
        let needed = if own_dropped { refs_dropped } else { !to.constraints.contains_key(k) || recreated_constraints.contains(k) };
        if needed {
            b.push(
                R_DROP_FK,
                S::new(
                    ObjectKind::Constraint,
                    k,
                    StepOp::Drop,
                    format!("ALTER TABLE {} DROP CONSTRAINT {}", qualified(&c.schema, &c.table), quote_ident(&c.name)),
                )
                .lock(LockLevel::AccessExclusive),
            );
        }
    }
    {
        let drop_set: BTreeSet<String> =
            from.views.keys().filter(|k| dropped_views.contains(*k) || recreated_views.contains(*k)).cloned().collect();
        let mut order_keys = view_order(&from.views, &drop_set);
        order_keys.reverse();
        for k in order_keys {
            let Some(v) = from.views.get(&k) else {
                continue;
            };
            b.push(
                R_DROP_VIEW,
                S::new(view_kind(v), &k, StepOp::Drop, format!("DROP {} {}", view_word(v), qualified(&v.schema, &v.name)))
                    .lock(LockLevel::AccessExclusive),
            );
        }
    }
    for (k, c) in &from.constraints {
        if c.kind == ConstraintKind::ForeignKey || (to.constraints.contains_key(k) && !recreated_constraints.contains(k)) {
            continue;
        }
        if !table_dropped(&c.schema, &c.table) {
            let mut s = S::new(
                ObjectKind::Constraint,
                k,
                StepOp::Drop,
                format!("ALTER TABLE {} DROP CONSTRAINT {}", qualified(&c.schema, &c.table), quote_ident(&c.name)),
            )
            .lock(LockLevel::AccessExclusive);
            if c.index_definition.is_some() || c.kind == ConstraintKind::Exclude {
                s = s.hazard(HazardCode::IndexDropped, "the constraint's index is dropped; queries using it may slow down");
            }
            b.push(R_DROP_CONSTRAINT, s);
        }
    }
    for (k, i) in &from.indexes {
        if to.indexes.contains_key(k) && !recreated_indexes.contains(k) {
            continue;
        }
        if table_dropped(&i.schema, &i.table) {
            continue;
        }
        let rel = i.table_key();
        if dropped_views.contains(&rel) || recreated_views.contains(&rel) {
            continue; // dropped with its materialized view
        }
        if !to.indexes.contains_key(k) {
            b.push(
                R_DROP_INDEX,
                S::new(ObjectKind::Index, k, StepOp::Drop, format!("DROP INDEX CONCURRENTLY IF EXISTS {}", qualified(&i.schema, &i.name)))
                    .lock(LockLevel::ShareUpdateExclusive)
                    .non_transactional()
                    .hazard(HazardCode::IndexDropped, "queries using this index may slow down"),
            );
        } else if recreated_indexes.contains(k) && i.valid {
            // Keep the old index until the new one is built: rename it out of the way.
            b.push(
                R_DROP_INDEX,
                S::new(
                    ObjectKind::Index,
                    k,
                    StepOp::Alter,
                    format!("ALTER INDEX {} RENAME TO {}", qualified(&i.schema, &i.name), quote_ident(&old_index_name(&i.name))),
                )
                .lock(LockLevel::ShareUpdateExclusive),
            );
        } else if recreated_indexes.contains(k) {
            b.push(
                R_DROP_INDEX,
                S::new(ObjectKind::Index, k, StepOp::Drop, format!("DROP INDEX CONCURRENTLY IF EXISTS {}", qualified(&i.schema, &i.name)))
                    .lock(LockLevel::ShareUpdateExclusive)
                    .non_transactional(),
            );
        }
    }
    let gone_relations: BTreeSet<String> = dropped_tables.iter().chain(dropped_views.iter()).cloned().collect();
    let mut late_dropped_functions: BTreeSet<String> = BTreeSet::new();
    for (k, f) in &from.functions {
        let dropped = !to.functions.contains_key(k);
        let recreated = recreated_functions.contains(k);
        // Dropped before the tables when its signature uses a dropped relation or its
        // SQL-standard body (which depends on what it reads) may read one.
        if (dropped && (mentions_relation(f, &gone_relations) || (is_sql_standard_body(f) && !gone_relations.is_empty()))) || recreated {
            late_dropped_functions.insert(k.clone());
            b.push(
                R_DROP_FUNCTION_EARLY,
                S::new(
                    function_kind(f),
                    k,
                    StepOp::Drop,
                    format!("DROP {} {}", if f.procedure { "PROCEDURE" } else { "FUNCTION" }, f.signature_sql()),
                ),
            );
        }
    }
    for k in &dropped_tables {
        let Some(t) = from.tables.get(k) else {
            continue;
        };
        b.push(
            R_DROP_TABLE,
            S::new(ObjectKind::Table, k, StepOp::Drop, format!("DROP TABLE {}", qualified(&t.schema, &t.name)))
                .lock(LockLevel::AccessExclusive)
                .hazard(HazardCode::DeletesData, "the table and all its rows are deleted"),
        );
    }

    // ---- phase 2: creates and alters ---------------------------------------------------------
    for (k, s) in &to.schemas {
        if !from.schemas.contains_key(k) {
            b.push(
                R_SCHEMA,
                S::new(ObjectKind::Schema, k, StepOp::Create, format!("CREATE SCHEMA IF NOT EXISTS {}", quote_ident(&s.name))),
            );
        }
    }
    for (k, e) in &to.extensions {
        match from.extensions.get(k) {
            None => b.push(
                R_EXTENSION,
                S::new(
                    ObjectKind::Extension,
                    k,
                    StepOp::Create,
                    format!(
                        "CREATE EXTENSION IF NOT EXISTS {} WITH SCHEMA {} VERSION {}",
                        quote_ident(&e.name),
                        quote_ident(&e.schema),
                        quote_literal(&e.version)
                    ),
                ),
            ),
            Some(old) => {
                if old.schema != e.schema {
                    b.push(
                        R_EXTENSION,
                        S::new(
                            ObjectKind::Extension,
                            k,
                            StepOp::Alter,
                            format!("ALTER EXTENSION {} SET SCHEMA {}", quote_ident(&e.name), quote_ident(&e.schema)),
                        ),
                    );
                }
                if old.version != e.version {
                    b.push(
                        R_EXTENSION,
                        S::new(
                            ObjectKind::Extension,
                            k,
                            StepOp::Alter,
                            format!("ALTER EXTENSION {} UPDATE TO {}", quote_ident(&e.name), quote_literal(&e.version)),
                        )
                        .hazard(
                            HazardCode::UpgradingExtensionVersion,
                            format!("extension {} changes from version {} to {}", e.name, old.version, e.version),
                        ),
                    );
                }
            }
        }
    }
    for (k, e) in &to.enums {
        let labels = e.labels.iter().map(|l| quote_literal(l)).collect::<Vec<_>>().join(", ");
        match from.enums.get(k) {
            None => b.push(
                R_ENUM,
                S::new(ObjectKind::Enum, k, StepOp::Create, format!("CREATE TYPE {} AS ENUM ({labels})", qualified(&e.schema, &e.name))),
            ),
            Some(old) if old.labels != e.labels && !rebuilt_enums.contains(k) => {
                // Append-only change: ADD VALUE, each committed before use.
                for (i, l) in e.labels.iter().enumerate() {
                    if old.labels.contains(l) {
                        continue;
                    }
                    let position = match e.labels[i + 1..].iter().find(|n| old.labels.contains(n)) {
                        Some(next) => format!(" BEFORE {}", quote_literal(next)),
                        None => String::new(),
                    };
                    b.push(
                        R_ENUM,
                        S::new(
                            ObjectKind::Enum,
                            k,
                            StepOp::Alter,
                            format!("ALTER TYPE {} ADD VALUE {}{position}", qualified(&e.schema, &e.name), quote_literal(l)),
                        )
                        .commit_after(),
                    );
                }
            }
            _ => {}
        }
    }
    for (k, d) in &to.domains {
        let create = domain_create_sql(d);
        match from.domains.get(k) {
            None => b.push(R_DOMAIN, S::new(ObjectKind::Domain, k, StepOp::Create, create)),
            Some(old) if old.base_type != d.base_type || old.collation != d.collation => {
                b.push(
                    R_DOMAIN,
                    S::new(ObjectKind::Domain, k, StepOp::Replace, format!("DROP DOMAIN {};\n{create}", qualified(&d.schema, &d.name)))
                        .hazard(HazardCode::DataDependent, "the domain is dropped and created again; this fails while columns use it"),
                );
            }
            Some(old) => {
                let q = qualified(&d.schema, &d.name);
                let mut stmts = Vec::new();
                let mut s_h: Vec<(HazardCode, String)> = Vec::new();
                if old.default != d.default {
                    stmts.push(match &d.default {
                        Some(x) => format!("ALTER DOMAIN {q} SET DEFAULT {x}"),
                        None => format!("ALTER DOMAIN {q} DROP DEFAULT"),
                    });
                }
                if old.not_null != d.not_null {
                    stmts.push(format!("ALTER DOMAIN {q} {} NOT NULL", if d.not_null { "SET" } else { "DROP" }));
                    if d.not_null {
                        s_h.push((HazardCode::DataDependent, "every column of the domain is checked for NULLs".into()));
                    }
                }
                for (cn, c) in &old.constraints {
                    if d.constraints.get(cn).map(|n| &n.definition) != Some(&c.definition) {
                        stmts.push(format!("ALTER DOMAIN {q} DROP CONSTRAINT {}", quote_ident(cn)));
                    }
                }
                for (cn, c) in &d.constraints {
                    match old.constraints.get(cn) {
                        Some(o) if o.definition == c.definition => {
                            if !o.validated && c.validated {
                                stmts.push(format!("ALTER DOMAIN {q} VALIDATE CONSTRAINT {}", quote_ident(cn)));
                            }
                        }
                        _ => {
                            stmts.push(format!(
                                "ALTER DOMAIN {q} ADD CONSTRAINT {} {}{}",
                                quote_ident(cn),
                                c.definition,
                                if c.validated { "" } else { " NOT VALID" }
                            ));
                            if c.validated {
                                s_h.push((HazardCode::DataDependent, "every column of the domain is checked".into()));
                            }
                        }
                    }
                }
                if !stmts.is_empty() {
                    let mut s = S::new(ObjectKind::Domain, k, StepOp::Alter, stmts.join(";\n"));
                    for (c, m) in s_h {
                        s = s.hazard(c, m);
                    }
                    b.push(R_DOMAIN, s);
                }
            }
        }
    }
    for (k, ct) in &to.composites {
        let q = qualified(&ct.schema, &ct.name);
        let attr_sql = |a: &CompositeAttribute| {
            format!("{} {}{}", quote_ident(&a.name), a.type_name, a.collation.as_ref().map(|c| format!(" COLLATE {c}")).unwrap_or_default())
        };
        match from.composites.get(k) {
            None => b.push(
                R_DOMAIN,
                S::new(
                    ObjectKind::CompositeType,
                    k,
                    StepOp::Create,
                    format!("CREATE TYPE {q} AS ({})", ct.attributes.iter().map(attr_sql).collect::<Vec<_>>().join(", ")),
                ),
            ),
            Some(old) if old.attributes != ct.attributes => {
                let mut subs = Vec::new();
                let mut s = S::new(ObjectKind::CompositeType, k, StepOp::Alter, String::new());
                for oa in &old.attributes {
                    if !ct.attributes.iter().any(|a| a.name == oa.name) {
                        subs.push(format!("DROP ATTRIBUTE {}", quote_ident(&oa.name)));
                        s = s.hazard(HazardCode::DeletesData, format!("attribute {} and its values are deleted", oa.name));
                    }
                }
                for a in &ct.attributes {
                    match old.attributes.iter().find(|x| x.name == a.name) {
                        None => subs.push(format!("ADD ATTRIBUTE {}", attr_sql(a))),
                        Some(oa) if oa != a => {
                            subs.push(format!(
                                "ALTER ATTRIBUTE {} TYPE {}{}",
                                quote_ident(&a.name),
                                a.type_name,
                                a.collation.as_ref().map(|c| format!(" COLLATE {c}")).unwrap_or_default()
                            ));
                            if type_change(&oa.type_name, &a.type_name).1 {
                                s = s.hazard(
                                    HazardCode::DeletesData,
                                    format!("{} → {} may fail, truncate or round values", oa.type_name, a.type_name),
                                );
                            }
                        }
                        _ => {}
                    }
                }
                // Attribute order is not managed (like column order).
                if !subs.is_empty() {
                    s.sql = format!("ALTER TYPE {q}\n    {}", subs.join(",\n    "));
                    b.push(R_DOMAIN, s);
                }
            }
            _ => {}
        }
    }
    for (k, s) in &to.sequences {
        let q = qualified(&s.schema, &s.name);
        match from.sequences.get(k) {
            None => b.push(
                R_SEQUENCE,
                S::new(ObjectKind::Sequence, k, StepOp::Create, format!("CREATE SEQUENCE {q} {}", seq_options_sql(&s.options))),
            ),
            Some(old) if old.options != s.options => b.push(
                R_SEQUENCE,
                S::new(ObjectKind::Sequence, k, StepOp::Alter, format!("ALTER SEQUENCE {q} {}", seq_options_sql(&s.options))),
            ),
            _ => {}
        }
        let old_owner = from.sequences.get(k).and_then(|o| o.owned_by.clone());
        if old_owner != s.owned_by {
            let owner = match &s.owned_by {
                Some(o) => format!("{}.{}", qualified(&o.schema, &o.table), quote_ident(&o.column)),
                None => "NONE".into(),
            };
            b.push(R_SEQ_OWNED, S::new(ObjectKind::Sequence, k, StepOp::Alter, format!("ALTER SEQUENCE {q} OWNED BY {owner}")));
        }
    }
    let to_relations: BTreeSet<String> = to.tables.keys().chain(to.views.keys()).cloned().collect();
    for (k, f) in &to.functions {
        // SQL-standard bodies (BEGIN ATOMIC / RETURN) are parsed at creation, so they need the
        // tables they read: create them after tables, like functions using row types.
        let late = mentions_relation(f, &to_relations) || is_sql_standard_body(f);
        let rank = if late { R_FUNCTION_LATE } else { R_FUNCTION };
        match from.functions.get(k) {
            Some(old) if !recreated_functions.contains(k) => {
                if old.definition != f.definition {
                    b.push(rank, S::new(function_kind(f), k, StepOp::Replace, f.definition.trim_end().to_string()));
                }
            }
            _ => b.push(rank, S::new(function_kind(f), k, StepOp::Create, f.definition.trim_end().to_string())),
        }
    }
    let mut inline_constraints: HashMap<String, Vec<&Constraint>> = HashMap::new();
    if !new_tables.is_empty() {
        for c in to.constraints.values() {
            if c.kind != ConstraintKind::ForeignKey && c.validated && table_new(&c.schema, &c.table) {
                inline_constraints.entry(c.table_key()).or_default().push(c);
            }
        }
    }
    for k in &new_tables {
        let Some(t) = to.tables.get(k) else { continue };
        let mut lines: Vec<String> = t.columns.iter().map(column_def_sql).collect();
        for c in inline_constraints.get(k).map(|v| v.as_slice()).unwrap_or(&[]) {
            lines.push(format!("CONSTRAINT {} {}", quote_ident(&c.name), c.definition));
        }
        let mut sql = format!(
            "CREATE {}TABLE {} (\n    {}\n)",
            if t.unlogged { "UNLOGGED " } else { "" },
            qualified(&t.schema, &t.name),
            lines.join(",\n    ")
        );
        if !t.options.is_empty() {
            sql.push_str(&format!(" WITH ({})", crate::ident::reloptions_sql(&t.options)));
        }
        b.push(R_CREATE_TABLE, S::new(ObjectKind::Table, k, StepOp::Create, sql));
    }
    for (k, ft) in &from.tables {
        let Some(tt) = to.tables.get(k) else { continue };
        if ft != tt {
            alter_table(&mut b, k, ft, tt);
        }
    }
    for k in &rebuilt_enums {
        let (Some(old), Some(new)) = (from.enums.get(k), to.enums.get(k)) else {
            continue;
        };
        enum_rebuild(&mut b, k, old, new, from, to);
    }

    // ---- phase 3: the remaining drops ---------------------------------------------------------
    for (k, f) in &from.functions {
        if !to.functions.contains_key(k) && !late_dropped_functions.contains(k) {
            b.push(
                R_DROP_FUNCTION,
                S::new(
                    function_kind(f),
                    k,
                    StepOp::Drop,
                    format!("DROP {} {}", if f.procedure { "PROCEDURE" } else { "FUNCTION" }, f.signature_sql()),
                ),
            );
        }
    }
    for (k, s) in &from.sequences {
        if to.sequences.contains_key(k) {
            continue;
        }
        // A sequence owned by a dropped table goes with it.
        if let Some(o) = &s.owned_by
            && dropped_tables.contains(&crate::ident::display_name(&o.schema, &o.table))
        {
            continue;
        }
        b.push(
            R_DROP_SEQUENCE,
            S::new(ObjectKind::Sequence, k, StepOp::Drop, format!("DROP SEQUENCE IF EXISTS {}", qualified(&s.schema, &s.name)))
                .hazard(HazardCode::DeletesData, "the sequence and its current value are deleted"),
        );
    }
    for (k, d) in &from.domains {
        if !to.domains.contains_key(k) {
            b.push(R_DROP_DOMAIN, S::new(ObjectKind::Domain, k, StepOp::Drop, format!("DROP DOMAIN {}", qualified(&d.schema, &d.name))));
        }
    }
    for (k, ct) in &from.composites {
        if !to.composites.contains_key(k) {
            b.push(
                R_DROP_DOMAIN,
                S::new(ObjectKind::CompositeType, k, StepOp::Drop, format!("DROP TYPE {}", qualified(&ct.schema, &ct.name))),
            );
        }
    }
    for (k, e) in &from.enums {
        if !to.enums.contains_key(k) {
            b.push(R_DROP_ENUM, S::new(ObjectKind::Enum, k, StepOp::Drop, format!("DROP TYPE {}", qualified(&e.schema, &e.name))));
        }
    }
    for (k, e) in &from.extensions {
        if !to.extensions.contains_key(k) {
            b.push(
                R_DROP_EXTENSION,
                S::new(ObjectKind::Extension, k, StepOp::Drop, format!("DROP EXTENSION {}", quote_ident(&e.name)))
                    .hazard(HazardCode::DeletesData, "the extension's objects (and data stored in its types) are deleted"),
            );
        }
    }
    for (k, s) in &from.schemas {
        if !to.schemas.contains_key(k) {
            b.push(
                R_DROP_SCHEMA,
                S::new(ObjectKind::Schema, k, StepOp::Drop, format!("DROP SCHEMA {}", quote_ident(&s.name)))
                    .hazard(HazardCode::DeletesData, "the schema is dropped"),
            );
        }
    }

    // ---- phase 4: creates of dependents ---------------------------------------------------------
    {
        let create_set: BTreeSet<String> =
            to.views.keys().filter(|k| !from.views.contains_key(*k) || recreated_views.contains(*k)).cloned().collect();
        for k in view_order(&to.views, &create_set) {
            if let Some(v) = to.views.get(&k) {
                b.push(R_VIEW, S::new(view_kind(v), &k, StepOp::Create, view_create_sql(v, false)));
            }
        }
        let mut replaced: BTreeSet<String> = BTreeSet::new();
        for (k, v) in &to.views {
            let Some(old) = from.views.get(k) else {
                continue;
            };
            if recreated_views.contains(k) {
                continue;
            }
            if old.definition != v.definition || old.columns != v.columns {
                replaced.insert(k.clone());
            } else if old.options != v.options {
                let q = qualified(&v.schema, &v.name);
                let mut stmts = Vec::new();
                let removed: Vec<String> = old
                    .options
                    .iter()
                    .filter_map(|o| o.split('=').next())
                    .filter(|key| !v.options.iter().any(|n| n.split('=').next() == Some(*key)))
                    .map(str::to_string)
                    .collect();
                let word = view_word(v);
                if !removed.is_empty() {
                    stmts.push(format!("ALTER {word} {q} RESET ({})", removed.join(", ")));
                }
                if !v.options.is_empty() {
                    stmts.push(format!("ALTER {word} {q} SET ({})", crate::ident::reloptions_sql(&v.options)));
                }
                b.push(R_VIEW, S::new(view_kind(v), k, StepOp::Alter, stmts.join(";\n")).lock(LockLevel::AccessExclusive));
            }
        }
        for k in view_order(&to.views, &replaced) {
            if let Some(v) = to.views.get(&k) {
                b.push(R_VIEW, S::new(view_kind(v), &k, StepOp::Replace, view_create_sql(v, true)).lock(LockLevel::AccessExclusive));
            }
        }
    }

    // Constraints (FKs last, after every table exists).
    for (k, c) in &to.constraints {
        let exists = from.constraints.contains_key(k) && !recreated_constraints.contains(k);
        if exists {
            if let Some(old) = from.constraints.get(k)
                && !old.validated
                && c.validated
            {
                b.push(
                    if c.kind == ConstraintKind::ForeignKey { R_FK } else { R_CONSTRAINT },
                    S::new(
                        ObjectKind::Constraint,
                        k,
                        StepOp::Alter,
                        format!("ALTER TABLE {} VALIDATE CONSTRAINT {}", qualified(&c.schema, &c.table), quote_ident(&c.name)),
                    )
                    .lock(LockLevel::ShareUpdateExclusive)
                    .hazard(HazardCode::DataDependent, "fails if existing rows violate the constraint"),
                );
            }
            continue;
        }
        let is_new = table_new(&c.schema, &c.table);
        if is_new && c.kind != ConstraintKind::ForeignKey && c.validated {
            continue; // created inline with the table
        }
        add_constraint(&mut b, k, c, is_new);
    }

    for (k, i) in &to.indexes {
        if from.indexes.contains_key(k) && !recreated_indexes.contains(k) {
            continue;
        }
        let q = qualified(&i.schema, &i.name);
        if table_new(&i.schema, &i.table) || (!to.views.is_empty() && fresh_relation(&i.table_key())) {
            b.push(R_INDEX, S::new(ObjectKind::Index, k, StepOp::Create, i.definition.clone()).lock(LockLevel::Share));
        } else {
            let mut s = S::new(ObjectKind::Index, k, StepOp::Create, concurrently(&i.definition))
                .lock(LockLevel::ShareUpdateExclusive)
                .non_transactional()
                .hazard(HazardCode::IndexBuild, "the index is built concurrently; it reads the whole table");
            if i.unique {
                s = s.hazard(HazardCode::DataDependent, "fails if existing rows have duplicates");
            }
            s.check_index = Some(q.clone());
            b.push(R_INDEX, s);
            if recreated_indexes.contains(k)
                && let Some(old) = from.indexes.get(k)
                && old.valid
            {
                b.push(
                    R_INDEX,
                    S::new(
                        ObjectKind::Index,
                        k,
                        StepOp::Drop,
                        format!("DROP INDEX CONCURRENTLY IF EXISTS {}", qualified(&old.schema, &old_index_name(&old.name))),
                    )
                    .lock(LockLevel::ShareUpdateExclusive)
                    .non_transactional(),
                );
            }
        }
    }

    for (k, t) in &to.triggers {
        let rel = t.table_key();
        let exists = from.triggers.contains_key(k) && !recreated_triggers.contains(k) && !recreated_views.contains(&rel);
        if !exists {
            b.push(R_TRIGGER, S::new(ObjectKind::Trigger, k, StepOp::Create, t.definition.clone()).lock(LockLevel::ShareRowExclusive));
            if let Some(sql) = trigger_enable_sql(t) {
                b.push(R_TRIGGER, S::new(ObjectKind::Trigger, k, StepOp::Alter, sql).lock(LockLevel::ShareRowExclusive));
            }
        } else if from.triggers.get(k).map(|o| &o.enabled) != Some(&t.enabled) {
            let sql = trigger_enable_sql(t)
                .unwrap_or_else(|| format!("ALTER TABLE {} ENABLE TRIGGER {}", qualified(&t.schema, &t.table), quote_ident(&t.name)));
            b.push(R_TRIGGER, S::new(ObjectKind::Trigger, k, StepOp::Alter, sql).lock(LockLevel::ShareRowExclusive));
        }
    }

    for (k, p) in &to.policies {
        match from.policies.get(k) {
            Some(old) if !recreated_policies.contains(k) => {
                if old.roles != p.roles || old.using != p.using || old.check != p.check {
                    let roles: Vec<String> =
                        p.roles.iter().map(|r| if r == "public" { "PUBLIC".to_string() } else { quote_ident(r) }).collect();
                    let mut sql =
                        format!("ALTER POLICY {} ON {} TO {}", quote_ident(&p.name), qualified(&p.schema, &p.table), roles.join(", "));
                    if let Some(u) = &p.using {
                        sql.push_str(&format!(" USING ({u})"));
                    }
                    if let Some(c) = &p.check {
                        sql.push_str(&format!(" WITH CHECK ({c})"));
                    }
                    b.push(
                        R_POLICY,
                        S::new(ObjectKind::Policy, k, StepOp::Alter, sql)
                            .lock(LockLevel::AccessExclusive)
                            .hazard(HazardCode::AuthzUpdate, "row access rules change"),
                    );
                }
            }
            _ => {
                let mut s = S::new(ObjectKind::Policy, k, StepOp::Create, policy_create_sql(p)).lock(LockLevel::AccessExclusive);
                if !table_new(&p.schema, &p.table) {
                    s = s.hazard(HazardCode::AuthzUpdate, "row access rules change");
                }
                b.push(R_POLICY, s);
            }
        }
    }

    for (k, t) in &to.tables {
        let old = from.tables.get(k);
        let q = qualified(&t.schema, &t.name);
        let (old_enabled, old_forced) = old.map(|o| (o.rls_enabled, o.rls_forced)).unwrap_or((false, false));
        let mut stmts = Vec::new();
        if old_enabled != t.rls_enabled {
            stmts.push(format!("ALTER TABLE {q} {} ROW LEVEL SECURITY", if t.rls_enabled { "ENABLE" } else { "DISABLE" }));
        }
        if old_forced != t.rls_forced {
            stmts.push(format!("ALTER TABLE {q} {} ROW LEVEL SECURITY", if t.rls_forced { "FORCE" } else { "NO FORCE" }));
        }
        if !stmts.is_empty() {
            let mut s = S::new(ObjectKind::Table, k, StepOp::Alter, stmts.join(";\n")).lock(LockLevel::AccessExclusive);
            if old.is_some() {
                s = s.hazard(
                    HazardCode::AuthzUpdate,
                    if t.rls_enabled {
                        "row-level security turns on: rows not allowed by a policy become invisible to non-owners"
                    } else {
                        "row-level security turns off: every row becomes visible to roles with table privileges"
                    },
                );
            }
            b.push(R_RLS, s);
        }
    }

    // ---- comments ----------------------------------------------------------------------------
    comments(&mut b, from, to, &recreated_views, &recreated_triggers, &recreated_constraints, &recreated_indexes, &recreated_functions);
    grants(&mut b, from, to, &recreated_views, &recreated_functions);

    b.out
}

fn old_index_name(name: &str) -> String {
    let mut base: String = name.to_string();
    while base.len() > 50 {
        base.pop();
    }
    format!("{base}_bfm_old")
}

fn is_subsequence(old: &[String], new: &[String]) -> bool {
    let mut it = new.iter();
    old.iter().all(|o| it.any(|n| n == o))
}

fn domain_create_sql(d: &Domain) -> String {
    let mut s = format!("CREATE DOMAIN {} AS {}", qualified(&d.schema, &d.name), d.base_type);
    if let Some(c) = &d.collation {
        s.push_str(&format!(" COLLATE {c}"));
    }
    if let Some(x) = &d.default {
        s.push_str(&format!(" DEFAULT {x}"));
    }
    if d.not_null {
        s.push_str(" NOT NULL");
    }
    for (n, c) in &d.constraints {
        s.push_str(&format!(" CONSTRAINT {} {}", quote_ident(n), c.definition));
    }
    let invalid: Vec<String> = d.constraints.iter().filter(|(_, c)| !c.validated).map(|(n, _)| quote_ident(n)).collect();
    if invalid.is_empty() {
        s
    } else {
        // Constraints that are NOT VALID live are added as such after the creation.
        let mut s2 = format!("CREATE DOMAIN {} AS {}", qualified(&d.schema, &d.name), d.base_type);
        if let Some(c) = &d.collation {
            s2.push_str(&format!(" COLLATE {c}"));
        }
        if let Some(x) = &d.default {
            s2.push_str(&format!(" DEFAULT {x}"));
        }
        if d.not_null {
            s2.push_str(" NOT NULL");
        }
        for (n, c) in &d.constraints {
            if c.validated {
                s2.push_str(&format!(" CONSTRAINT {} {}", quote_ident(n), c.definition));
            }
        }
        for (n, c) in &d.constraints {
            if !c.validated {
                s2.push_str(&format!(
                    ";\nALTER DOMAIN {} ADD CONSTRAINT {} {} NOT VALID",
                    qualified(&d.schema, &d.name),
                    quote_ident(n),
                    c.definition
                ));
            }
        }
        s2
    }
}

fn add_constraint(b: &mut Builder, k: &str, c: &Constraint, table_new: bool) {
    let table = qualified(&c.schema, &c.table);
    match c.kind {
        ConstraintKind::ForeignKey | ConstraintKind::Check => {
            let rank = if c.kind == ConstraintKind::ForeignKey { R_FK } else { R_CONSTRAINT };
            let lock = if c.kind == ConstraintKind::ForeignKey { LockLevel::ShareRowExclusive } else { LockLevel::AccessExclusive };
            if table_new || !c.validated {
                b.push(rank, S::new(ObjectKind::Constraint, k, StepOp::Create, constraint_add_sql(c, !c.validated)).lock(lock));
            } else {
                // Online: add NOT VALID (brief lock), commit, then validate (weaker lock).
                b.push(rank, S::new(ObjectKind::Constraint, k, StepOp::Create, constraint_add_sql(c, true)).lock(lock).commit_after());
                b.push(
                    rank,
                    S::new(
                        ObjectKind::Constraint,
                        k,
                        StepOp::Alter,
                        format!("ALTER TABLE {table} VALIDATE CONSTRAINT {}", quote_ident(&c.name)),
                    )
                    .lock(LockLevel::ShareUpdateExclusive)
                    .hazard(HazardCode::DataDependent, "fails if existing rows violate the constraint")
                    .commit_after(),
                );
            }
        }
        ConstraintKind::PrimaryKey | ConstraintKind::Unique if !table_new && c.index_definition.is_some() => {
            let def = c.index_definition.clone().unwrap_or_default();
            let mut s = S::new(ObjectKind::Constraint, k, StepOp::Create, concurrently(&def))
                .lock(LockLevel::ShareUpdateExclusive)
                .non_transactional()
                .hazard(HazardCode::IndexBuild, "the constraint's index is built concurrently first")
                .hazard(HazardCode::DataDependent, "fails if existing rows have duplicates (or NULLs for a primary key)");
            s.check_index = Some(qualified(&c.schema, &c.name));
            b.push(R_CONSTRAINT, s);
            b.push(
                R_CONSTRAINT,
                S::new(
                    ObjectKind::Constraint,
                    k,
                    StepOp::Alter,
                    format!(
                        "ALTER TABLE {table} ADD CONSTRAINT {} {} USING INDEX {}{}",
                        quote_ident(&c.name),
                        constraint_kind_word(c.kind),
                        quote_ident(&c.name),
                        deferrable_clause(&c.definition)
                    ),
                )
                .lock(LockLevel::AccessExclusive),
            );
        }
        _ => {
            let mut s = S::new(ObjectKind::Constraint, k, StepOp::Create, constraint_add_sql(c, false)).lock(LockLevel::AccessExclusive);
            if !table_new {
                s = s
                    .hazard(HazardCode::IndexBuild, "the constraint's index is built while the table is locked")
                    .hazard(HazardCode::AccessExclusiveLock, "the table is locked for the whole index build")
                    .hazard(HazardCode::DataDependent, "fails if existing rows violate the constraint");
            }
            b.push(R_CONSTRAINT, s);
        }
    }
}

fn alter_table(b: &mut Builder, k: &str, ft: &Table, tt: &Table) {
    let q = qualified(&tt.schema, &tt.name);
    if ft.unlogged != tt.unlogged {
        b.push(
            R_ALTER_TABLE,
            S::new(ObjectKind::Table, k, StepOp::Alter, format!("ALTER TABLE {q} SET {}", if tt.unlogged { "UNLOGGED" } else { "LOGGED" }))
                .lock(LockLevel::AccessExclusive)
                .rewrites()
                .hazard(HazardCode::TableRewrite, "the table is rewritten")
                .hazard(HazardCode::AccessExclusiveLock, "the table is locked while it is rewritten"),
        );
    }
    if ft.options != tt.options {
        let mut stmts = Vec::new();
        let removed: Vec<String> = ft
            .options
            .iter()
            .filter_map(|o| o.split('=').next())
            .filter(|key| !tt.options.iter().any(|n| n.split('=').next() == Some(*key)))
            .map(str::to_string)
            .collect();
        if !removed.is_empty() {
            stmts.push(format!("ALTER TABLE {q} RESET ({})", removed.join(", ")));
        }
        if !tt.options.is_empty() {
            stmts.push(format!("ALTER TABLE {q} SET ({})", crate::ident::reloptions_sql(&tt.options)));
        }
        b.push(R_ALTER_TABLE, S::new(ObjectKind::Table, k, StepOp::Alter, stmts.join(";\n")).lock(LockLevel::AccessExclusive));
    }
    for fc in &ft.columns {
        if tt.column(&fc.name).is_none() {
            b.push(
                R_ALTER_TABLE,
                S::new(
                    ObjectKind::Column,
                    format!("{k}.{}", display_part(&fc.name)),
                    StepOp::Drop,
                    format!("ALTER TABLE {q} DROP COLUMN {}", quote_ident(&fc.name)),
                )
                .lock(LockLevel::AccessExclusive)
                .hazard(HazardCode::DeletesData, "the column and its values are deleted"),
            );
        }
    }
    for tc in &tt.columns {
        let obj = format!("{k}.{}", display_part(&tc.name));
        let col = quote_ident(&tc.name);
        let Some(fc) = ft.column(&tc.name) else {
            let mut s = S::new(ObjectKind::Column, &obj, StepOp::Create, format!("ALTER TABLE {q} ADD COLUMN {}", column_def_sql(tc)))
                .lock(LockLevel::AccessExclusive);
            let rewrite = tc.generated.is_some() || tc.identity.is_some() || tc.default.as_deref().is_some_and(is_volatile_default);
            if rewrite {
                s = s
                    .rewrites()
                    .hazard(HazardCode::TableRewrite, "the new column's values are computed row by row: the table is rewritten")
                    .hazard(HazardCode::AccessExclusiveLock, "the table is locked while it is rewritten");
            } else if tc.not_null && tc.default.is_none() {
                s = s.hazard(HazardCode::DataDependent, "NOT NULL without a default fails if the table has rows");
            }
            b.push(R_ALTER_TABLE, s);
            continue;
        };
        if fc == tc || (fc.clone_without_comment() == tc.clone_without_comment()) {
            continue;
        }
        // A change of generation expression (or to/from generated) needs drop + add.
        if fc.generated != tc.generated {
            let lossy = fc.generated.is_none() || tc.generated.is_none();
            let mut s = S::new(
                ObjectKind::Column,
                &obj,
                StepOp::Replace,
                format!("ALTER TABLE {q} DROP COLUMN {col};\nALTER TABLE {q} ADD COLUMN {}", column_def_sql(tc)),
            )
            .lock(LockLevel::AccessExclusive)
            .rewrites()
            .hazard(HazardCode::TableRewrite, "the column is dropped and added again: the table is rewritten")
            .hazard(HazardCode::AccessExclusiveLock, "the table is locked while it is rewritten");
            if lossy {
                s = s.hazard(HazardCode::DeletesData, "the column's stored values are replaced");
            }
            b.push(R_ALTER_TABLE, s);
            continue;
        }
        let mut subs: Vec<String> = Vec::new();
        let mut s = S::new(ObjectKind::Column, &obj, StepOp::Alter, String::new()).lock(LockLevel::AccessExclusive);
        let type_changed = fc.type_name != tc.type_name || fc.collation != tc.collation;
        if type_changed && fc.default.is_some() {
            subs.push(format!("ALTER COLUMN {col} DROP DEFAULT"));
        }
        if fc.identity.is_some() && tc.identity.is_none() {
            subs.push(format!("ALTER COLUMN {col} DROP IDENTITY"));
        }
        if type_changed {
            let (rewrite, lossy) = type_change(&fc.type_name, &tc.type_name);
            let coll = tc.collation.as_ref().map(|c| format!(" COLLATE {c}")).unwrap_or_default();
            let using = if rewrite { format!(" USING {col}::{}", tc.type_name) } else { String::new() };
            subs.push(format!("ALTER COLUMN {col} TYPE {}{coll}{using}", tc.type_name));
            if rewrite {
                s = s
                    .rewrites()
                    .hazard(
                        HazardCode::TableRewrite,
                        format!("{} → {}: the table and its indexes are rewritten", fc.type_name, tc.type_name),
                    )
                    .hazard(HazardCode::AccessExclusiveLock, "the table is locked while it is rewritten");
            } else if fc.collation != tc.collation {
                s = s.hazard(HazardCode::AccessExclusiveLock, "indexes on the column are rebuilt while the table is locked");
            }
            if lossy {
                s = s.hazard(
                    HazardCode::DeletesData,
                    format!("{} → {} may fail, truncate or round existing values", fc.type_name, tc.type_name),
                );
            }
        }
        let mut after: Vec<String> = Vec::new();
        if !fc.not_null && tc.not_null {
            let rewritten = s.rewrites;
            let adds_identity = fc.identity.is_none() && tc.identity.is_some();
            if rewritten || adds_identity {
                subs.push(format!("ALTER COLUMN {col} SET NOT NULL"));
                s = s
                    .hazard(HazardCode::DataDependent, "fails if the column has NULLs")
                    .hazard(HazardCode::AccessExclusiveLock, "the table is scanned while it is locked");
            } else {
                // Online: a NOT VALID check (brief lock), validated under SHARE UPDATE
                // EXCLUSIVE, lets SET NOT NULL skip its scan; then the check goes.
                let check = quote_ident(&not_null_check_name(&tt.name, &tc.name));
                b.push(
                    R_ALTER_TABLE,
                    S::new(
                        ObjectKind::Column,
                        &obj,
                        StepOp::Alter,
                        format!("ALTER TABLE {q} ADD CONSTRAINT {check} CHECK ({col} IS NOT NULL) NOT VALID"),
                    )
                    .lock(LockLevel::AccessExclusive)
                    .commit_after(),
                );
                let mut validate = S::new(ObjectKind::Column, &obj, StepOp::Alter, format!("ALTER TABLE {q} VALIDATE CONSTRAINT {check}"))
                    .lock(LockLevel::ShareUpdateExclusive)
                    .hazard(HazardCode::DataDependent, "fails if the column has NULLs")
                    .commit_after();
                validate.cleanup = Some(format!("ALTER TABLE {q} DROP CONSTRAINT IF EXISTS {check}"));
                b.push(R_ALTER_TABLE, validate);
                subs.push(format!("ALTER COLUMN {col} SET NOT NULL"));
                after.push(format!("ALTER TABLE {q} DROP CONSTRAINT {check}"));
            }
        }
        match (&fc.identity, &tc.identity) {
            (None, Some(id)) => subs.push(format!(
                "ALTER COLUMN {col} ADD GENERATED {} AS IDENTITY{}",
                if id.always { "ALWAYS" } else { "BY DEFAULT" },
                identity_options_sql(&id.options)
            )),
            (Some(a), Some(z)) => {
                if a.always != z.always {
                    subs.push(format!("ALTER COLUMN {col} SET GENERATED {}", if z.always { "ALWAYS" } else { "BY DEFAULT" }));
                }
                let (ao, zo) = (&a.options, &z.options);
                let mut opts = Vec::new();
                if ao.increment != zo.increment {
                    opts.push(format!("SET INCREMENT BY {}", zo.increment));
                }
                if ao.min != zo.min {
                    opts.push(format!("SET MINVALUE {}", zo.min));
                }
                if ao.max != zo.max && !(type_changed && zo.max == int_max(&zo.data_type)) {
                    opts.push(format!("SET MAXVALUE {}", zo.max));
                }
                if ao.start != zo.start {
                    opts.push(format!("SET START WITH {}", zo.start));
                }
                if ao.cache != zo.cache {
                    opts.push(format!("SET CACHE {}", zo.cache));
                }
                if ao.cycle != zo.cycle {
                    opts.push(if zo.cycle { "SET CYCLE".into() } else { "SET NO CYCLE".into() });
                }
                if !opts.is_empty() {
                    subs.push(format!("ALTER COLUMN {col} {}", opts.join(" ")));
                }
            }
            _ => {}
        }
        if fc.default != tc.default || (type_changed && fc.default.is_some()) {
            match &tc.default {
                Some(d) => subs.push(format!("ALTER COLUMN {col} SET DEFAULT {d}")),
                None if !type_changed => subs.push(format!("ALTER COLUMN {col} DROP DEFAULT")),
                None => {}
            }
        }
        if fc.not_null && !tc.not_null && tc.identity.is_none() {
            subs.push(format!("ALTER COLUMN {col} DROP NOT NULL"));
        }
        if subs.is_empty() {
            continue;
        }
        s.sql = format!("ALTER TABLE {q}\n    {}", subs.join(",\n    "));
        for stmt in after {
            s.sql.push_str(";\n");
            s.sql.push_str(&stmt);
        }
        b.push(R_ALTER_TABLE, s);
    }
}

/// Name of the temporary check behind an online SET NOT NULL (at most 63 bytes).
fn not_null_check_name(table: &str, column: &str) -> String {
    let mut base = format!("{table}_{column}");
    while base.len() > 50 {
        base.pop();
    }
    format!("{base}_bfm_not_null")
}

impl Column {
    fn clone_without_comment(&self) -> Column {
        Column { comment: None, ..self.clone() }
    }
}

/// Rebuild an enum whose values were removed or reordered: rename the old type, create the
/// new one, convert every column through text, drop the old type.
fn enum_rebuild(b: &mut Builder, k: &str, old: &EnumType, new: &EnumType, from: &Model, to: &Model) {
    let q = qualified(&new.schema, &new.name);
    let tmp = format!("{}_bfm_old", new.name.chars().take(50).collect::<String>());
    let mut stmts = vec![
        format!("ALTER TYPE {q} RENAME TO {}", quote_ident(&tmp)),
        format!("CREATE TYPE {q} AS ENUM ({})", new.labels.iter().map(|l| quote_literal(l)).collect::<Vec<_>>().join(", ")),
    ];
    let type_name = crate::ident::display_name(&old.schema, &old.name);
    for (tk, t) in &from.tables {
        let Some(tt) = to.tables.get(tk) else {
            continue;
        };
        for c in &t.columns {
            let array = c.type_name.ends_with("[]");
            if c.type_name.trim_end_matches("[]") != type_name {
                continue;
            }
            let Some(tc) = tt.column(&c.name) else {
                continue;
            };
            if tc.type_name != c.type_name {
                continue; // the column changes type anyway
            }
            let tq = qualified(&t.schema, &t.name);
            let col = quote_ident(&c.name);
            if c.default.is_some() {
                stmts.push(format!("ALTER TABLE {tq} ALTER COLUMN {col} DROP DEFAULT"));
            }
            let suffix = if array { "[]" } else { "" };
            stmts.push(format!("ALTER TABLE {tq} ALTER COLUMN {col} TYPE {q}{suffix} USING {col}::text{suffix}::{q}{suffix}"));
            if let Some(d) = &tc.default {
                stmts.push(format!("ALTER TABLE {tq} ALTER COLUMN {col} SET DEFAULT {d}"));
            }
        }
    }
    stmts.push(format!("DROP TYPE {}.{}", quote_ident(&new.schema), quote_ident(&tmp)));
    let removed: Vec<&String> = old.labels.iter().filter(|l| !new.labels.contains(l)).collect();
    let mut s = S::new(ObjectKind::Enum, k, StepOp::Replace, stmts.join(";\n"))
        .lock(LockLevel::AccessExclusive)
        .rewrites()
        .hazard(HazardCode::TableRewrite, "every column of the type is rewritten")
        .hazard(HazardCode::AccessExclusiveLock, "tables using the type are locked while they are rewritten");
    if !removed.is_empty() {
        s = s.hazard(
            HazardCode::DeletesData,
            format!(
                "values {} are removed; rows holding them make the conversion fail",
                removed.iter().map(|l| quote_literal(l)).collect::<Vec<_>>().join(", ")
            ),
        );
    }
    b.push(R_ALTER_TABLE, s);
}

#[allow(clippy::too_many_arguments)]
fn comments(
    b: &mut Builder,
    from: &Model,
    to: &Model,
    recreated_views: &BTreeSet<String>,
    recreated_triggers: &BTreeSet<String>,
    recreated_constraints: &BTreeSet<String>,
    recreated_indexes: &BTreeSet<String>,
    recreated_functions: &BTreeSet<String>,
) {
    let mut push =
        |kind: ObjectKind, object: &dyn Fn() -> String, target: &dyn Fn() -> String, old: Option<&Option<String>>, new: &Option<String>| {
            let old = old.and_then(|o| o.as_ref());
            if old != new.as_ref() {
                b.push(R_COMMENT, S::new(kind, object(), StepOp::Comment, comment_sql(&target(), new)));
            }
        };
    for (k, s) in &to.schemas {
        push(
            ObjectKind::Schema,
            &|| k.to_string(),
            &|| format!("SCHEMA {}", quote_ident(&s.name)),
            from.schemas.get(k).map(|o| &o.comment),
            &s.comment,
        );
    }
    for (k, e) in &to.enums {
        push(
            ObjectKind::Enum,
            &|| k.to_string(),
            &|| format!("TYPE {}", qualified(&e.schema, &e.name)),
            from.enums.get(k).map(|o| &o.comment),
            &e.comment,
        );
    }
    for (k, d) in &to.domains {
        let old = from.domains.get(k).filter(|o| o.base_type == d.base_type && o.collation == d.collation);
        push(
            ObjectKind::Domain,
            &|| k.to_string(),
            &|| format!("DOMAIN {}", qualified(&d.schema, &d.name)),
            old.map(|o| &o.comment),
            &d.comment,
        );
    }
    for (k, ct) in &to.composites {
        push(
            ObjectKind::CompositeType,
            &|| k.to_string(),
            &|| format!("TYPE {}", qualified(&ct.schema, &ct.name)),
            from.composites.get(k).map(|o| &o.comment),
            &ct.comment,
        );
    }
    for (k, s) in &to.sequences {
        push(
            ObjectKind::Sequence,
            &|| k.to_string(),
            &|| format!("SEQUENCE {}", qualified(&s.schema, &s.name)),
            from.sequences.get(k).map(|o| &o.comment),
            &s.comment,
        );
    }
    for (k, f) in &to.functions {
        let old = if recreated_functions.contains(k) { None } else { from.functions.get(k) };
        push(
            function_kind(f),
            &|| k.to_string(),
            &|| format!("{} {}", if f.procedure { "PROCEDURE" } else { "FUNCTION" }, f.signature_sql()),
            old.map(|o| &o.comment),
            &f.comment,
        );
    }
    for (k, t) in &to.tables {
        let old = from.tables.get(k);
        if old == Some(t) {
            continue;
        }
        push(
            ObjectKind::Table,
            &|| k.to_string(),
            &|| format!("TABLE {}", qualified(&t.schema, &t.name)),
            old.map(|o| &o.comment),
            &t.comment,
        );
        for c in &t.columns {
            // A column that is dropped and added again loses its comment.
            let oc = old.and_then(|o| o.column(&c.name)).filter(|oc| oc.generated == c.generated);
            push(
                ObjectKind::Column,
                &|| format!("{k}.{}", display_part(&c.name)),
                &|| format!("COLUMN {}.{}", qualified(&t.schema, &t.name), quote_ident(&c.name)),
                oc.map(|o| &o.comment),
                &c.comment,
            );
        }
    }
    for (k, v) in &to.views {
        let old = if recreated_views.contains(k) { None } else { from.views.get(k) };
        push(
            view_kind(v),
            &|| k.to_string(),
            &|| format!("{} {}", view_word(v), qualified(&v.schema, &v.name)),
            old.map(|o| &o.comment),
            &v.comment,
        );
        for c in &v.columns {
            let oc = old.and_then(|o| o.columns.iter().find(|x| x.name == c.name));
            push(
                ObjectKind::Column,
                &|| format!("{k}.{}", display_part(&c.name)),
                &|| format!("COLUMN {}.{}", qualified(&v.schema, &v.name), quote_ident(&c.name)),
                oc.map(|o| &o.comment),
                &c.comment,
            );
        }
    }
    for (k, c) in &to.constraints {
        let old = if recreated_constraints.contains(k) { None } else { from.constraints.get(k) };
        push(
            ObjectKind::Constraint,
            &|| k.to_string(),
            &|| format!("CONSTRAINT {} ON {}", quote_ident(&c.name), qualified(&c.schema, &c.table)),
            old.map(|o| &o.comment),
            &c.comment,
        );
    }
    for (k, i) in &to.indexes {
        let old = if recreated_indexes.contains(k) { None } else { from.indexes.get(k) };
        push(
            ObjectKind::Index,
            &|| k.to_string(),
            &|| format!("INDEX {}", qualified(&i.schema, &i.name)),
            old.map(|o| &o.comment),
            &i.comment,
        );
    }
    for (k, t) in &to.triggers {
        let old = if recreated_triggers.contains(k) || recreated_views.contains(&t.table_key()) { None } else { from.triggers.get(k) };
        push(
            ObjectKind::Trigger,
            &|| k.to_string(),
            &|| format!("TRIGGER {} ON {}", quote_ident(&t.name), qualified(&t.schema, &t.table)),
            old.map(|o| &o.comment),
            &t.comment,
        );
    }
    for (k, p) in &to.policies {
        push(
            ObjectKind::Policy,
            &|| k.to_string(),
            &|| format!("POLICY {} ON {}", quote_ident(&p.name), qualified(&p.schema, &p.table)),
            from.policies.get(k).map(|o| &o.comment),
            &p.comment,
        );
    }
}

fn object_exists(m: &Model, kind: ObjectKind, key: &str) -> bool {
    match kind {
        ObjectKind::Schema => m.schemas.contains_key(key),
        ObjectKind::Sequence => m.sequences.contains_key(key),
        ObjectKind::Function | ObjectKind::Procedure => m.functions.contains_key(key),
        ObjectKind::View | ObjectKind::MaterializedView => m.views.contains_key(key),
        _ => m.tables.contains_key(key),
    }
}

fn grantee_sql(role: &str) -> String {
    if role == "public" { "PUBLIC".to_string() } else { quote_ident(role) }
}

/// GRANT and REVOKE so that every object's privileges (other than its owner's) are the desired
/// ones. A recreated view or function starts from its defaults again.
fn grants(b: &mut Builder, from: &Model, to: &Model, recreated_views: &BTreeSet<String>, recreated_functions: &BTreeSet<String>) {
    let empty: BTreeSet<String> = BTreeSet::new();
    let keys: BTreeSet<&String> = from.grants.keys().chain(to.grants.keys()).collect();
    for key in keys {
        let new = to.grants.get(key);
        let old = from.grants.get(key);
        let Some(kind) = new.or(old).map(|g| g.kind) else { continue };
        if !object_exists(to, kind, key) {
            continue; // dropped: its privileges go with it
        }
        let recreated = recreated_views.contains(key.as_str()) || recreated_functions.contains(key.as_str());
        let fresh = recreated || !object_exists(from, kind, key);
        // A new function starts with EXECUTE for PUBLIC, like the ones PostgreSQL creates.
        let default_fn: BTreeSet<String> = ["public:EXECUTE".to_string()].into_iter().collect();
        let before: &BTreeSet<String> = if fresh {
            if matches!(kind, ObjectKind::Function | ObjectKind::Procedure) { &default_fn } else { &empty }
        } else {
            old.map(|g| &g.privileges).unwrap_or(&empty)
        };
        let after: &BTreeSet<String> = new.map(|g| &g.privileges).unwrap_or(&empty);
        if before == after {
            continue;
        }
        let Some(target) = new.or(old).map(|g| g.target.clone()) else { continue };
        let mut stmts = Vec::new();
        let group = |set: Vec<&String>| -> BTreeMap<(String, bool), Vec<String>> {
            let mut m: BTreeMap<(String, bool), Vec<String>> = BTreeMap::new();
            for p in set {
                let (role, privilege) = p.rsplit_once(':').unwrap_or(("public", p.as_str()));
                let grantable = privilege.ends_with('*');
                m.entry((role.to_string(), grantable)).or_default().push(privilege.trim_end_matches('*').to_string());
            }
            m
        };
        for ((role, _), privs) in group(before.difference(after).collect()) {
            stmts.push(format!("REVOKE {} ON {target} FROM {}", privs.join(", "), grantee_sql(&role)));
        }
        for ((role, grantable), privs) in group(after.difference(before).collect()) {
            stmts.push(format!(
                "GRANT {} ON {target} TO {}{}",
                privs.join(", "),
                grantee_sql(&role),
                if grantable { " WITH GRANT OPTION" } else { "" }
            ));
        }
        b.push(
            R_GRANT,
            S::new(kind, key.as_str(), StepOp::Alter, stmts.join(";\n"))
                .hazard(HazardCode::AuthzUpdate, "privileges of other roles on the object change"),
        );
    }
}

/// The approvals a list of steps needs, as `HAZARD:object` strings (deduplicated, in order).
pub(crate) fn approvals_required(steps: &[Step]) -> Vec<String> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for s in steps {
        for a in s.approvals_needed() {
            let text = a.to_string();
            if seen.insert(text.clone()) {
                out.push(text);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_changes() {
        assert_eq!(type_change("character varying(10)", "character varying(20)"), (false, false));
        assert_eq!(type_change("character varying(20)", "character varying(10)"), (true, true));
        assert_eq!(type_change("character varying(20)", "text"), (false, false));
        assert_eq!(type_change("numeric(10,2)", "numeric(12,2)"), (false, false));
        assert_eq!(type_change("numeric(10,2)", "numeric(10,1)"), (true, true));
        assert_eq!(type_change("integer", "bigint"), (true, false));
        assert_eq!(type_change("bigint", "integer"), (true, true));
        assert_eq!(type_change("text", "integer"), (true, true));
        assert_eq!(type_change("integer", "text"), (true, false));
    }

    #[test]
    fn identity_defaults_are_omitted() {
        let o = SeqOptions { data_type: "bigint".into(), start: 1, increment: 1, min: 1, max: i64::MAX, cache: 1, cycle: false };
        assert_eq!(identity_options_sql(&o), "");
        let o2 = SeqOptions { start: 100, ..o };
        assert_eq!(identity_options_sql(&o2), " (START WITH 100)");
    }

    #[test]
    fn concurrent_index_sql() {
        assert_eq!(concurrently("CREATE INDEX i ON public.t USING btree (a)"), "CREATE INDEX CONCURRENTLY i ON public.t USING btree (a)");
        assert_eq!(
            concurrently("CREATE UNIQUE INDEX i ON public.t USING btree (a)"),
            "CREATE UNIQUE INDEX CONCURRENTLY i ON public.t USING btree (a)"
        );
    }

    #[test]
    fn subsequence() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert!(is_subsequence(&s(&["a", "c"]), &s(&["a", "b", "c"])));
        assert!(!is_subsequence(&s(&["c", "a"]), &s(&["a", "b", "c"])));
        assert!(!is_subsequence(&s(&["a", "x"]), &s(&["a", "b"])));
    }
}
