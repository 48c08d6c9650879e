//! Properties of the planner on generated models (no database).
use bfm_schema::model::*;
use bfm_schema::*;
use proptest::prelude::*;

fn column(name: &str, ty: &str, not_null: bool) -> Column {
    Column {
        name: name.into(),
        type_name: ty.into(),
        not_null,
        default: None,
        identity: None,
        generated: None,
        collation: None,
        comment: None,
    }
}

/// A model of `n` tables; table i may reference table `refs[i] < i`; `views[j]` reads table j.
fn build(n: usize, refs: &[Option<usize>], views: &[bool], extra_cols: &[u8]) -> Model {
    let mut m = Model::empty(15);
    m.schemas.insert("app".into(), Schema { name: "app".into(), comment: None });
    for i in 0..n {
        let name = format!("t{i}");
        let mut columns = vec![column("id", "bigint", true), column("parent", "bigint", false)];
        for c in 0..extra_cols.get(i).copied().unwrap_or(0) {
            columns.push(column(&format!("c{c}"), "text", false));
        }
        m.tables.insert(
            format!("app.{name}"),
            Table {
                schema: "app".into(),
                name: name.clone(),
                unlogged: false,
                options: vec![],
                rls_enabled: false,
                rls_forced: false,
                comment: None,
                columns,
            },
        );
        m.constraints.insert(
            format!("app.{name}.{name}_pkey"),
            Constraint {
                schema: "app".into(),
                table: name.clone(),
                name: format!("{name}_pkey"),
                kind: ConstraintKind::PrimaryKey,
                definition: "PRIMARY KEY (id)".into(),
                validated: true,
                references: None,
                index_definition: Some(format!("CREATE UNIQUE INDEX \"{name}_pkey\" ON \"app\".\"{name}\" USING btree (\"id\")")),
                comment: None,
            },
        );
        m.indexes.insert(
            format!("app.{name}_parent_idx"),
            Index {
                schema: "app".into(),
                table: name.clone(),
                name: format!("{name}_parent_idx"),
                definition: format!("CREATE INDEX \"{name}_parent_idx\" ON \"app\".\"{name}\" USING btree (\"parent\")"),
                unique: false,
                valid: true,
                comment: None,
            },
        );
        if let Some(Some(r)) = refs.get(i)
            && *r < n
        {
            m.constraints.insert(
                format!("app.{name}.{name}_fk"),
                Constraint {
                    schema: "app".into(),
                    table: name.clone(),
                    name: format!("{name}_fk"),
                    kind: ConstraintKind::ForeignKey,
                    definition: format!("FOREIGN KEY (parent) REFERENCES app.t{r}(id)"),
                    validated: true,
                    references: Some(format!("app.t{r}")),
                    index_definition: None,
                    comment: None,
                },
            );
        }
    }
    let mut prev_view: Option<String> = None;
    for (j, on) in views.iter().enumerate() {
        if !on || j >= n {
            continue;
        }
        let mut depends_on = vec![format!("app.t{j}")];
        if let Some(p) = &prev_view {
            depends_on.push(p.clone());
        }
        let key = format!("app.v{j}");
        m.views.insert(
            key.clone(),
            View {
                schema: "app".into(),
                name: format!("v{j}"),
                definition: format!(" SELECT id FROM app.t{j}"),
                options: vec![],
                columns: vec![ViewColumn { name: "id".into(), type_name: "bigint".into(), comment: None }],
                depends_on,
                depends_on_columns: vec![format!("app.t{j}.id")],
                comment: None,
                materialized: j % 3 == 0,
            },
        );
        prev_view = Some(key);
    }
    m
}

fn pos(steps: &[Step], object: &str, op: StepOp) -> Option<usize> {
    steps.iter().position(|s| s.object == object && s.op == op)
}

fn arb_model() -> impl Strategy<Value = Model> {
    (1usize..12).prop_flat_map(|n| {
        (
            Just(n),
            proptest::collection::vec(proptest::option::of(0usize..12), n),
            proptest::collection::vec(any::<bool>(), n),
            proptest::collection::vec(0u8..4, n),
        )
            .prop_map(|(n, refs, views, extra)| {
                let refs: Vec<Option<usize>> = refs.iter().enumerate().map(|(i, r)| r.filter(|r| *r < i.max(1) && *r != i)).collect();
                build(n, &refs, &views, &extra)
            })
    })
}

proptest! {
    #[test]
    fn identical_models_need_no_steps(m in arb_model()) {
        prop_assert!(diff_models(&m, &m).is_empty());
    }

    #[test]
    fn creates_come_before_their_users(m in arb_model()) {
        let steps = diff_models(&Model::empty(15), &m);
        prop_assert!(steps.iter().all(|s| !s.destructive));
        let schema = pos(&steps, "app", StepOp::Create).unwrap_or(usize::MAX);
        for (k, c) in &m.constraints {
            if c.kind == ConstraintKind::ForeignKey {
                let fk = pos(&steps, k, StepOp::Create).unwrap_or(0);
                let own = pos(&steps, &c.table_key(), StepOp::Create).unwrap_or(usize::MAX);
                let target = pos(&steps, c.references.as_deref().unwrap_or(""), StepOp::Create).unwrap_or(usize::MAX);
                prop_assert!(own < fk && target < fk, "FK {k} before its tables");
            }
        }
        for (k, i) in &m.indexes {
            prop_assert!(pos(&steps, &i.table_key(), StepOp::Create) < pos(&steps, k, StepOp::Create));
        }
        for (k, v) in &m.views {
            let at = pos(&steps, k, StepOp::Create).unwrap_or(0);
            for d in &v.depends_on {
                prop_assert!(pos(&steps, d, StepOp::Create).unwrap_or(usize::MAX) < at, "{d} before view {k}");
            }
            prop_assert!(schema < at);
        }
        // Ids are 1..=n in order, groups never decrease.
        for (i, s) in steps.iter().enumerate() {
            prop_assert_eq!(s.id, i + 1);
            if i > 0 { prop_assert!(s.group >= steps[i - 1].group); }
        }
    }

    #[test]
    fn drops_come_after_their_users_and_need_approval(m in arb_model()) {
        let steps = diff_models(&m, &Model::empty(15));
        for s in &steps {
            prop_assert!(s.op == StepOp::Drop, "only drops: {:?}", s);
        }
        for (k, t) in &m.tables {
            let at = pos(&steps, k, StepOp::Drop);
            prop_assert!(at.is_some());
            prop_assert!(steps[at.unwrap_or(0)].destructive);
            // Foreign keys pointing at it are gone first; views reading it too.
            for (ck, c) in &m.constraints {
                if c.kind == ConstraintKind::ForeignKey && c.references.as_deref() == Some(k.as_str()) && c.table != t.name {
                    let fk = pos(&steps, ck, StepOp::Drop);
                    prop_assert!(fk.is_some() && fk < at, "FK {ck} dropped before {k}");
                }
            }
            for (vk, v) in &m.views {
                if v.depends_on.contains(k) {
                    prop_assert!(pos(&steps, vk, StepOp::Drop) < at);
                }
            }
        }
        for (vk, v) in &m.views {
            for d in &v.depends_on {
                if m.views.contains_key(d) {
                    prop_assert!(pos(&steps, vk, StepOp::Drop) < pos(&steps, d, StepOp::Drop), "{vk} dropped before {d}");
                }
            }
        }
    }

    #[test]
    fn fingerprint_ignores_column_order(m in arb_model(), seed in any::<u64>()) {
        let mut shuffled = m.clone();
        for t in shuffled.tables.values_mut() {
            let n = t.columns.len();
            if n > 1 { t.columns.rotate_left((seed as usize) % n); }
        }
        prop_assert_eq!(m.fingerprint(), shuffled.fingerprint());
        prop_assert!(diff_models(&m, &shuffled).is_empty());
    }
}
