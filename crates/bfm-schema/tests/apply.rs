//! Apply semantics: approvals, fingerprint check, non-destructive mode, the advisory lock,
//! concurrent index builds, failures.
mod common;
use std::time::Duration;

use bfm_schema::*;
use common::*;

#[tokio::test]
async fn destructive_steps_need_each_approval() {
    let live = TestDb::with("appr_l", "CREATE TABLE users (id int, email text, legacy text); CREATE TABLE old (id int);").await;
    let desired = TestDb::with("appr_d", "CREATE TABLE users (id int, email text, added int);").await;
    let plan = plan_dbs(&live, &desired).await;
    let mut req = plan.approvals_required.clone();
    req.sort();
    assert_eq!(req, vec!["DELETES_DATA:public.old", "DELETES_DATA:public.users.legacy"]);

    // None given: refused, listing what is missing; nothing applied.
    let err = apply(&live.target(), &plan, &[], &ApplyOptions::default()).await.expect_err("refused");
    match &err {
        SchemaError::ApprovalRequired { missing } => assert_eq!(missing.len(), 2),
        e => panic!("unexpected {e}"),
    }
    assert!(err.to_string().contains("DELETES_DATA:public.users.legacy"));
    // Only one of two, or one for the wrong object: still refused.
    let partial: Vec<Approval> = vec!["DELETES_DATA:public.old".parse().unwrap(), "DELETES_DATA:public.users.email".parse().unwrap()];
    let err = apply(&live.target(), &plan, &partial, &ApplyOptions::default()).await.expect_err("refused");
    assert!(matches!(&err, SchemaError::ApprovalRequired { missing } if missing == &vec!["DELETES_DATA:public.users.legacy".to_string()]));
    assert_eq!(live.query_one_i64("SELECT count(*) FROM information_schema.columns WHERE column_name = 'added'").await, 0);

    // All approvals: accepted.
    let all: Vec<Approval> = vec!["DELETES_DATA:public.old".parse().unwrap(), "deletes_data:public.users.legacy".parse().unwrap()];
    let report = apply(&live.target(), &plan, &all, &ApplyOptions::default()).await.expect("applied");
    assert!(report.converged);
    assert_eq!(report.applied.len(), plan.steps.len());
    assert!(plan_dbs(&live, &desired).await.steps.is_empty());
}

#[tokio::test]
async fn non_destructive_only_skips_destructive_steps() {
    let live = TestDb::with("nd_l", "CREATE TABLE t (id int, legacy text);").await;
    let desired = TestDb::with("nd_d", "CREATE TABLE t (id int, added int); CREATE TABLE n (id int);").await;
    let plan = plan_dbs(&live, &desired).await;
    let opts = ApplyOptions { allow_non_destructive_only: true, ..ApplyOptions::default() };
    let report = apply(&live.target(), &plan, &[], &opts).await.expect("applied");
    assert_eq!(report.skipped.len(), 1);
    assert_eq!(report.skipped[0].object, "public.t.legacy");
    assert!(!report.converged);
    let rest = plan_dbs(&live, &desired).await;
    assert_eq!(rest.steps.len(), 1, "{}", render_plan_text(&rest, false));
    assert!(rest.steps[0].destructive);
}

#[tokio::test]
async fn apply_refuses_when_live_changed_after_planning() {
    let live = TestDb::with("fp_l", "CREATE TABLE t (id int);").await;
    let desired = TestDb::with("fp_d", "CREATE TABLE t (id int, x int);").await;
    let plan = plan_dbs(&live, &desired).await;
    live.exec("CREATE INDEX t_id_idx ON t (id);").await;
    let err = apply(&live.target(), &plan, &[], &ApplyOptions::default()).await.expect_err("mismatch");
    match &err {
        SchemaError::FingerprintMismatch { expected, actual } => {
            assert_eq!(expected, &plan.source_fingerprint);
            assert_ne!(expected, actual);
        }
        e => panic!("unexpected {e}"),
    }
    assert_eq!(live.query_one_i64("SELECT count(*) FROM information_schema.columns WHERE table_name = 't'").await, 1);
}

#[tokio::test]
async fn apply_waits_for_the_advisory_lock_with_a_bound() {
    let live = TestDb::with("lock_l", "CREATE TABLE t (id int);").await;
    let desired = TestDb::with("lock_d", "CREATE TABLE t (id int, x int);").await;
    let plan = plan_dbs(&live, &desired).await;
    let holder = client(&live.url).await;
    holder.query_one("SELECT pg_advisory_lock($1)", &[&ADVISORY_LOCK_KEY]).await.expect("lock");
    let opts = ApplyOptions { lock_wait: Duration::from_millis(300), ..ApplyOptions::default() };
    let err = apply(&live.target(), &plan, &[], &opts).await.expect_err("lock busy");
    assert!(matches!(err, SchemaError::LockTimeout { .. }), "{err}");
    // Released in the meantime: the waiting apply goes on.
    let release = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        holder.query_one("SELECT pg_advisory_unlock($1)", &[&ADVISORY_LOCK_KEY]).await.expect("unlock");
    };
    let opts = ApplyOptions { lock_wait: Duration::from_secs(10), ..ApplyOptions::default() };
    let target = live.target();
    let (r, ()) = tokio::join!(apply(&target, &plan, &[], &opts), release);
    assert!(r.expect("applied").converged);
}

#[tokio::test]
async fn concurrent_index_build_on_existing_table() {
    let live = TestDb::with(
        "cic_l",
        "CREATE TABLE big (id bigint PRIMARY KEY, v text); INSERT INTO big SELECT g, md5(g::text) FROM generate_series(1, 20000) g;",
    )
    .await;
    let desired = TestDb::with("cic_d", "CREATE TABLE big (id bigint PRIMARY KEY, v text); CREATE INDEX big_v_idx ON big (v);").await;
    let plan = plan_dbs(&live, &desired).await;
    assert_eq!(plan.steps.len(), 1);
    let s = &plan.steps[0];
    assert_eq!(s.sql, "CREATE INDEX CONCURRENTLY \"big_v_idx\" ON \"public\".\"big\" USING btree (\"v\")");
    assert!(!s.transactional && s.hazards.iter().any(|h| h.code == HazardCode::IndexBuild));
    // A concurrent session holding the advisory lock idle must not block the build: the
    // apply takes its own lock by polling and runs CONCURRENTLY outside any transaction.
    apply_converges(&live, &desired, &plan).await;
    assert_eq!(live.query_one_i64("SELECT count(*) FROM pg_index WHERE indexrelid = 'big_v_idx'::regclass AND indisvalid").await, 1);
}

#[tokio::test]
async fn failed_concurrent_unique_build_leaves_no_invalid_index() {
    let live = TestDb::with("cicfail_l", "CREATE TABLE t (v int); INSERT INTO t VALUES (1), (1);").await;
    let desired = TestDb::with("cicfail_d", "CREATE TABLE t (v int); CREATE UNIQUE INDEX t_v_key ON t (v);").await;
    let plan = plan_dbs(&live, &desired).await;
    let err = apply(&live.target(), &plan, &[], &ApplyOptions::default()).await.expect_err("duplicates");
    match &err {
        SchemaError::Step { object, sqlstate, .. } => {
            assert_eq!(object, "public.t_v_key");
            assert_eq!(sqlstate.as_deref(), Some("23505"));
        }
        e => panic!("unexpected {e}"),
    }
    assert_eq!(live.query_one_i64("SELECT count(*) FROM pg_class WHERE relname = 't_v_key'").await, 0);
}

#[tokio::test]
async fn failed_step_rolls_back_its_transaction_group() {
    let live = TestDb::with("rb_l", "CREATE TABLE t (v text); INSERT INTO t VALUES ('abc');").await;
    let desired = TestDb::with("rb_d", "CREATE TABLE t (v integer); CREATE TABLE other (id int);").await;
    let plan = plan_dbs(&live, &desired).await;
    let err = apply(&live.target(), &plan, &approvals_for(&plan), &ApplyOptions::default()).await.expect_err("not a number");
    let text = err.to_string();
    assert!(text.contains("public.t.v") && text.contains("TYPE integer"), "{text}");
    assert!(matches!(err, SchemaError::Step { rolled_back: true, .. }));
    // `other` was in the same transaction group: rolled back with it.
    assert_eq!(live.query_one_i64("SELECT count(*) FROM pg_class WHERE relname = 'other'").await, 0);
}

#[tokio::test]
async fn failed_online_not_null_leaves_no_temporary_check() {
    let live = TestDb::with("nn_l", "CREATE TABLE t (id int); INSERT INTO t VALUES (NULL);").await;
    let desired = TestDb::with("nn_d", "CREATE TABLE t (id int NOT NULL);").await;
    let plan = plan_dbs(&live, &desired).await;
    let err = apply(&live.target(), &plan, &[], &ApplyOptions::default()).await.expect_err("nulls");
    assert!(err.to_string().contains("VALIDATE CONSTRAINT"), "{err}");
    assert_eq!(live.query_one_i64("SELECT count(*) FROM pg_constraint WHERE conname LIKE '%bfm_not_null'").await, 0);
    // Once the NULLs are gone the same plan applies (the live schema did not change).
    live.exec("UPDATE t SET id = 1").await;
    apply_converges(&live, &desired, &plan).await;
}

#[tokio::test]
async fn plan_json_round_trip() {
    let live = TestDb::with("json_l", "CREATE TABLE t (id int, x text);").await;
    let desired = TestDb::with("json_d", "CREATE TABLE t (id int); CREATE INDEX t_id ON t (id);").await;
    let plan = plan_dbs(&live, &desired).await;
    let json = serde_json::to_string_pretty(&plan).expect("json");
    assert!(json.contains("\"DELETES_DATA\"") && json.contains("\"ACCESS EXCLUSIVE\""), "{json}");
    let mut back: SchemaPlan = serde_json::from_str(&json).expect("parse");
    assert!((back.timings.total_ms - plan.timings.total_ms).abs() < 0.001);
    back.timings = plan.timings.clone(); // floats may differ in the last bit
    assert_eq!(back, plan);
    let text = render_plan_text(&plan, false);
    assert!(text.contains("DESTRUCTIVE") && text.contains("approve with DELETES_DATA:public.t.x"), "{text}");
    let colored = render_plan_text(&plan, true);
    assert!(colored.contains("\x1b[31m"));
    // A plan applied from its JSON form behaves the same.
    let report = apply(&live.target(), &back, &approvals_for(&back), &ApplyOptions::default()).await.expect("apply");
    assert!(report.converged);
}
