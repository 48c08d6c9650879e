use super::*;
use crate::catalog::Lookup;
use crate::migration::{Script, SourceKind, Version};
use proptest::prelude::*;
use std::path::PathBuf;

pub(crate) fn migration(version: &str, name: &str, connection: &str, schema: Option<&str>, deps: &[&str]) -> Migration {
    let up = format!("CREATE TABLE {name} (id int);");
    Migration {
        id: Migration::base_id(version, name, "postgresql", connection),
        version: Version::parse(version).unwrap(),
        name: name.into(),
        backend: "postgresql".into(),
        kind: BackendKind::Postgresql,
        connection: connection.into(),
        schema: schema.map(str::to_string),
        schema_source: None,
        table: None,
        checksum: Checksum::of_sql(&up, crate::sql::Dialect::Postgres).unwrap(),
        up: Script { path: PathBuf::from(format!("{name}.up.sql")), text: up.into() },
        down: Some(Script { path: PathBuf::from(format!("{name}.down.sql")), text: format!("DROP TABLE {name};").into() }),
        dependencies: deps.iter().map(|d| d.to_string()).collect(),
        structured_dependencies: vec![],
        tags: vec![],
        requires_tables: vec![],
        requires_schemas: vec![],
        transactional: true,
        resumable: false,
        source: SourceKind::Sfm,
        metadata_path: None,
    }
}

fn applied(m: &Migration) -> StateEntry {
    StateEntry { status: Status::Applied, checksum: Some(m.checksum.clone()), partial: false }
}

fn ids(plan: &Plan) -> Vec<String> {
    plan.steps.iter().map(Step::display_id).collect()
}

fn conn(c: &str) -> Selector {
    Selector { connection: Some(c.into()), ..Default::default() }
}

#[test]
fn orders_by_version_and_skips_applied() {
    let a = migration("20250101000002", "b", "core", Some("core"), &[]);
    let b = migration("20250101000001", "a", "core", Some("core"), &[]);
    let cat = Catalog::new(vec![a.clone(), b.clone()]);
    let p = plan(&PlanRequest::up(conn("core")), &cat, &StateSnapshot::default());
    assert_eq!(ids(&p), vec![b.id.clone(), a.id.clone()]);
    let mut st = StateSnapshot::default();
    st.insert(&b.id, "core", applied(&b));
    let p = plan(&PlanRequest::up(conn("core")), &cat, &st);
    assert_eq!(ids(&p), vec![a.id.clone()]);
    assert_eq!(p.skipped[0].reason, SkipReason::AlreadyApplied);
}

#[test]
fn dependencies_run_first_even_with_higher_versions_and_across_connections() {
    let base = migration("20250105000000", "base", "core", Some("core"), &[]);
    let app = migration("20250101000000", "app", "org", None, &["base"]);
    let cat = Catalog::new(vec![base.clone(), app.clone()]);
    let mut req = PlanRequest::up(conn("org"));
    req.schemas = vec!["tenant_1".into(), "tenant_2".into()];
    let p = plan(&req, &cat, &StateSnapshot::default());
    assert!(p.errors.is_empty(), "{:?}", p.errors);
    assert_eq!(ids(&p), vec![base.id.clone(), format!("tenant_1_{}", app.id), format!("tenant_2_{}", app.id)]);
    assert_eq!(p.steps[0].reason, Reason::Dependency { of: format!("tenant_1_{}", app.id) });
    assert_eq!(p.steps[1].after, vec![0]);
}

#[test]
fn transitive_pending_dependencies_are_pulled_in() {
    let a = migration("20250101000000", "a", "core", Some("core"), &[]);
    let b = migration("20250102000000", "b", "core", Some("core"), &["a"]);
    let c = migration("20250103000000", "c", "core", Some("core"), &["b"]);
    let cat = Catalog::new(vec![a.clone(), b.clone(), c.clone()]);
    let sel = Selector { version: Some("20250103000000".into()), ..Default::default() };
    let p = plan(&PlanRequest::up(sel.clone()), &cat, &StateSnapshot::default());
    assert_eq!(ids(&p), vec![a.id.clone(), b.id.clone(), c.id.clone()]);
    let mut req = PlanRequest::up(sel);
    req.ignore_dependencies = true;
    assert_eq!(ids(&plan(&req, &cat, &StateSnapshot::default())), vec![c.id.clone()]);
}

#[test]
fn per_tenant_migrations_need_a_schema_on_postgresql() {
    let t = migration("20250101000000", "t", "org", None, &[]);
    let cat = Catalog::new(vec![t.clone()]);
    let p = plan(&PlanRequest::up(conn("org")), &cat, &StateSnapshot::default());
    assert!(p.steps.is_empty());
    assert_eq!(p.errors, vec![PlanError::NeedsSchema { migration: t.id.clone() }]);
    let mut req = PlanRequest::up(conn("org"));
    req.missing_schema = MissingSchema::Skip;
    let p = plan(&req, &cat, &StateSnapshot::default());
    assert!(p.errors.is_empty());
    assert_eq!(p.skipped[0].reason, SkipReason::NeedsSchema);
}

#[test]
fn fixed_schema_wins_over_request_schemas() {
    let f = migration("20250101000000", "f", "core", Some("core"), &[]);
    let cat = Catalog::new(vec![f.clone()]);
    let mut req = PlanRequest::up(conn("core"));
    req.schemas = vec!["a".into(), "b".into()];
    let p = plan(&req, &cat, &StateSnapshot::default());
    assert_eq!(p.steps.len(), 1);
    assert_eq!(p.steps[0].schema, "core");
}

#[test]
fn a_failed_partial_step_blocks_its_chain_and_a_clean_failure_retries() {
    let a = migration("20250101000000", "a", "org", None, &[]);
    let b = migration("20250102000000", "b", "org", None, &["a"]);
    let cat = Catalog::new(vec![a.clone(), b.clone()]);
    let mut req = PlanRequest::up(conn("org"));
    req.schemas = vec!["t1".into(), "t2".into()];
    let mut st = StateSnapshot::default();
    st.insert(&a.id, "t1", StateEntry { status: Status::Failed, checksum: None, partial: true });
    st.insert(&a.id, "t2", StateEntry { status: Status::Failed, checksum: None, partial: false });
    let p = plan(&req, &cat, &st);
    assert_eq!(ids(&p), vec![format!("t2_{}", a.id), format!("t2_{}", b.id)]);
    assert_eq!(p.steps[0].reason, Reason::Retry);
    let reasons: Vec<_> = p.skipped.iter().map(|s| (s.display_id(), s.reason.clone())).collect();
    assert!(reasons.contains(&(format!("t1_{}", a.id), SkipReason::NeedsRetry)));
    assert!(reasons.contains(&(format!("t1_{}", b.id), SkipReason::Blocked { by: format!("t1_{}", a.id) })));
    assert_eq!(p.errors, vec![PlanError::NeedsRetry { migration: format!("t1_{}", a.id) }]);
}

#[test]
fn a_blocked_step_blocks_later_versions_of_its_schema_even_without_dependencies() {
    let a = migration("20250101000000", "a", "core", Some("core"), &[]);
    let b = migration("20250102000000", "b", "core", Some("core"), &[]);
    let other = migration("20250103000000", "c", "core", Some("other"), &[]);
    let cat = Catalog::new(vec![a.clone(), b.clone(), other.clone()]);
    let mut st = StateSnapshot::default();
    st.insert(&a.id, "core", StateEntry { status: Status::Failed, checksum: None, partial: true });
    let p = plan(&PlanRequest::up(conn("core")), &cat, &st);
    assert_eq!(ids(&p), vec![other.id.clone()]);
    assert!(p.skipped.iter().any(|s| s.migration.id == b.id && s.reason == SkipReason::Blocked { by: a.id.clone() }));
}

#[test]
fn modified_applied_migrations_block_their_connection() {
    let a = migration("20250101000000", "a", "core", Some("core"), &[]);
    let b = migration("20250102000000", "b", "core", Some("core"), &[]);
    let other = migration("20250102000000", "o", "guard", Some("guard"), &[]);
    let cat = Catalog::new(vec![a.clone(), b.clone(), other.clone()]);
    let mut st = StateSnapshot::default();
    st.insert(&a.id, "core", StateEntry { status: Status::Applied, checksum: Some(Checksum::of_statements(&["old"])), partial: false });
    let p = plan(&PlanRequest::up(Selector::default()), &cat, &st);
    assert_eq!(ids(&p), vec![other.id.clone()]);
    assert!(matches!(&p.errors[0], PlanError::Modified { connection, .. } if connection == "core"));
    let mut req = PlanRequest::up(Selector::default());
    req.allow_modified = true;
    let p = plan(&req, &cat, &st);
    assert_eq!(ids(&p), vec![b.id.clone(), other.id.clone()]);
}

#[test]
fn cycles_and_missing_dependencies_are_errors() {
    let a = migration("20250101000000", "a", "core", Some("core"), &["b"]);
    let b = migration("20250102000000", "b", "core", Some("core"), &["a"]);
    let cat = Catalog::new(vec![a, b]);
    let p = plan(&PlanRequest::up(conn("core")), &cat, &StateSnapshot::default());
    assert!(p.steps.is_empty());
    assert!(matches!(&p.errors[0], PlanError::Cycle { path } if path.len() == 3));
    let c = migration("20250101000000", "c", "core", Some("core"), &["nothing"]);
    let d = migration("20250101000001", "d", "core", Some("core"), &[]);
    let p = plan(&PlanRequest::up(conn("core")), &Catalog::new(vec![c, d]), &StateSnapshot::default());
    assert!(matches!(&p.errors[0], PlanError::MissingDependency { .. }));
    assert!(p.steps.is_empty(), "nothing runs when a dependency is missing");
}

#[test]
fn tags_and_backend_aliases_filter() {
    let mut a = migration("20250101000000", "a", "core", Some("core"), &[]);
    a.tags = vec!["env=prod".into()];
    let b = migration("20250102000000", "b", "core", Some("core"), &[]);
    let cat = Catalog::new(vec![a.clone(), b]);
    let sel = Selector { backend: Some("postgres".into()), tags: TagFilter::parse(&["env=prod"]).unwrap(), ..Default::default() };
    assert_eq!(ids(&plan(&PlanRequest::up(sel), &cat, &StateSnapshot::default())), vec![a.id.clone()]);
    let sel = Selector { backend: Some("mysql".into()), ..Default::default() };
    assert!(plan(&PlanRequest::up(sel), &cat, &StateSnapshot::default()).steps.is_empty());
}

#[test]
fn down_refuses_when_applied_dependents_exist_unless_cascading() {
    let a = migration("20250101000000", "a", "core", Some("core"), &[]);
    let b = migration("20250102000000", "b", "org", None, &["a"]);
    let cat = Catalog::new(vec![a.clone(), b.clone()]);
    let mut st = StateSnapshot::default();
    st.insert(&a.id, "core", applied(&a));
    st.insert(&b.id, "t1", applied(&b));
    let sel = Selector { ids: vec![(a.id.clone(), None)], ..Default::default() };
    let p = plan(&PlanRequest::down(sel.clone()), &cat, &st);
    assert!(p.steps.is_empty());
    assert!(matches!(&p.errors[0], PlanError::HasDependents { dependents, .. } if dependents == &vec![format!("t1_{}", b.id)]));
    let mut req = PlanRequest::down(sel);
    req.cascade = true;
    let p = plan(&req, &cat, &st);
    assert_eq!(ids(&p), vec![format!("t1_{}", b.id), a.id.clone()]);
}

#[test]
fn down_of_a_step_that_is_not_applied_is_skipped() {
    let a = migration("20250101000000", "a", "core", Some("core"), &[]);
    let cat = Catalog::new(vec![a.clone()]);
    let sel = Selector { ids: vec![(a.id.clone(), None)], ..Default::default() };
    let p = plan(&PlanRequest::down(sel), &cat, &StateSnapshot::default());
    assert!(p.steps.is_empty() && p.errors.is_empty());
    assert_eq!(p.skipped[0].reason, SkipReason::NotApplied);
}

#[test]
fn order_batch() {
    let a = migration("20250105000000", "a", "core", Some("core"), &[]);
    let b = migration("20250101000000", "b", "core", Some("core"), &["a"]);
    let c = migration("20250102000000", "c", "core", Some("core"), &[]);
    let cat = Catalog::new(vec![a.clone(), b.clone(), c.clone()]);
    let o = order(&cat, &[b.id.clone(), a.id.clone(), c.id.clone()]).unwrap();
    assert_eq!(o, vec![c.id.clone(), a.id.clone(), b.id.clone()]);
    assert!(matches!(order(&cat, &["x".into()]), Err(PlanError::UnknownMigration { .. })));
}

/// A random acyclic catalogue: migration i may depend on migrations with a smaller index in a
/// random permutation, while versions are random (so dependency order and version order differ).
fn arb_case() -> impl Strategy<Value = (Vec<Migration>, Vec<bool>, Vec<String>, Option<usize>)> {
    (2usize..14).prop_flat_map(|n| {
        (
            proptest::collection::vec(0u32..50, n),
            proptest::collection::vec(proptest::collection::vec(any::<prop::sample::Index>(), 0..3), n),
            proptest::collection::vec(any::<bool>(), n),
            proptest::collection::vec(any::<bool>(), n),
            proptest::collection::vec(any::<bool>(), n),
            proptest::option::of(0..n),
        )
            .prop_map(move |(versions, deps, dynamic, applied, schemas_pick, sel)| {
                let ms: Vec<Migration> = (0..n)
                    .map(|i| {
                        let names: Vec<String> = deps[i].iter().filter(|_| i > 0).map(|ix| format!("m{}", ix.index(i))).collect();
                        let names: Vec<&str> = names.iter().map(String::as_str).collect();
                        let v = format!("{:014}", 20250101000000u64 + versions[i] as u64);
                        let conn = if i % 3 == 0 { "core" } else { "org" };
                        migration(&v, &format!("m{i}"), conn, if dynamic[i] { None } else { Some("fixed") }, &names)
                    })
                    .collect();
                let schemas: Vec<String> =
                    schemas_pick.iter().enumerate().filter(|(_, b)| **b).map(|(i, _)| format!("t_{}", i % 3)).collect();
                (ms, applied, schemas, sel)
            })
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn plans_respect_dependencies_are_deterministic_and_skip_applied((ms, applied_flags, schemas, sel) in arb_case()) {
        let cat = Catalog::new(ms.clone());
        let mut st = StateSnapshot::default();
        for (m, a) in ms.iter().zip(&applied_flags) {
            if *a {
                for s in ["fixed", "t_0", "t_1", "t_2"] {
                    st.insert(&m.id, s, applied(m));
                }
            }
        }
        let selector = match sel {
            Some(i) => Selector { version: Some(ms[i].version.to_string()), ..Default::default() },
            None => Selector::default(),
        };
        let mut req = PlanRequest::up(selector);
        req.schemas = schemas;
        req.missing_schema = MissingSchema::Skip;
        let p1 = plan(&req, &cat, &st);
        let p2 = plan(&req, &cat, &st);
        prop_assert_eq!(&p1, &p2);

        let position: HashMap<(String, String), usize> =
            p1.steps.iter().enumerate().map(|(i, s)| ((s.migration.id.clone(), s.schema.clone()), i)).collect();
        for (i, step) in p1.steps.iter().enumerate() {
            prop_assert!(!st.is_applied(&step.migration.id, &step.schema), "applied step planned: {}", step.display_id());
            for dep in step.migration.all_dependencies() {
                for t in cat.targets_of(&dep) {
                    let target = cat.at(t);
                    let ts = dependency_schema(target, &dep, &step.schema);
                    if st.is_applied(&target.id, &ts) {
                        continue;
                    }
                    // Every pending dependency is in the plan, before its dependent.
                    let pos = position.get(&(target.id.clone(), ts.clone()));
                    prop_assert!(pos.is_some_and(|&p| p < i), "{} runs before its dependency {}", step.display_id(), target.display_id(&ts));
                }
            }
            for &a in &step.after {
                prop_assert!(a < i);
            }
        }
    }
}

proptest! {
    /// The catalogue finds every migration by id and by `{version}_{name}` with binary search,
    /// also when versions are written with different numbers of leading zeros.
    #[test]
    fn catalogue_lookups_find_every_migration(entries in proptest::collection::vec((0u32..40, 0usize..3, "[a-c]{1,2}(_[a-c])?", 0usize..3), 1..60)) {
        let mut ms = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (v, zeros, name, conn) in entries {
            let version = format!("{}{v}", "0".repeat(zeros));
            let conn = ["core", "org", "x_y"][conn];
            let m = migration(&version, &name, conn, Some("s"), &[]);
            if seen.insert(m.id.clone()) {
                ms.push(m);
            }
        }
        let cat = Catalog::new(ms.clone());
        for m in &ms {
            let i = cat.index_of(&m.id);
            prop_assert!(i.is_some(), "{} not found", m.id);
            prop_assert_eq!(&cat.at(i.unwrap()).id, &m.id);
            let longer = format!("{}x", m.id);
            prop_assert!(cat.get(&longer).is_none_or(|o| o.id != m.id));
            match cat.lookup(&format!("s_{}", m.id)) {
                Lookup::Found { migration, schema } => {
                    prop_assert_eq!(&migration.id, &m.id);
                    prop_assert_eq!(schema.as_deref(), Some("s"));
                }
                other => prop_assert!(false, "s_{}: {:?}", m.id, other),
            }
            let legacy = format!("{}_{}", m.version, m.name);
            let expected: Vec<&str> = ms.iter().filter(|o| format!("{}_{}", o.version, o.name) == legacy).map(|o| o.id.as_str()).collect();
            match cat.lookup(&legacy) {
                Lookup::Found { migration, .. } => prop_assert_eq!(vec![migration.id.as_str()], expected),
                Lookup::Ambiguous(mut ids) => {
                    ids.sort();
                    let mut expected = expected.clone();
                    expected.sort();
                    prop_assert_eq!(ids.iter().map(String::as_str).collect::<Vec<_>>(), expected);
                }
                Lookup::NotFound => prop_assert!(false, "{legacy} not found"),
            }
        }
        prop_assert!(cat.get("999_zz_postgresql_core").is_none());
        prop_assert!(cat.get("abc").is_none());
    }
}
