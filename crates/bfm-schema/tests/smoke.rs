mod common;
use bfm_schema::*;
use common::*;

#[tokio::test]
async fn create_everything_from_empty() {
    let plan = scenario("create_all", "", RICH).await;
    println!("{}", render_plan_text(&plan, false));
}

#[tokio::test]
async fn drop_everything() {
    let plan = scenario("drop_all", RICH, "").await;
    println!("{}", render_plan_text(&plan, false));
}

#[tokio::test]
async fn noop_on_identical() {
    let live = TestDb::with("noop_l", RICH).await;
    let desired = TestDb::with("noop_d", RICH).await;
    let plan = plan_dbs(&live, &desired).await;
    assert!(plan.steps.is_empty(), "{}", render_plan_text(&plan, false));
    assert_eq!(plan.source_fingerprint, plan.desired_fingerprint);
}
