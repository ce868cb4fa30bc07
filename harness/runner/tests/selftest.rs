//! The self-test end to end on a small suite: one scenario (three pods, one egress policy whose
//! peer ANDs a namespaceSelector and a podSelector), the clean phase, two faults — one the
//! scenario catches (`egress-rules-dropped`), one it cannot (`rbac-over-grant`: no RBAC
//! check) — and the r5.0 phase, whose failure must be explained by `peer-selectors-or`.

use harness_runner::run::{RunOptions, ScenarioInput};
use harness_runner::selftest::{
    Detection, EXIT_FAILED, EXIT_OK, Phase, SelftestOptions, render_markdown, selftest,
};
use harness_scenario::MockFault;

/// x/a may send only to pods labelled pod=a in namespace y. Under r5.0 the peer's two
/// selectors are ORed, so x/a → y/b is allowed there (and explained by that deviation).
const SCENARIO: &str = include_str!("fixtures/egress-and-peer.yaml");

fn input(dir: &std::path::Path) -> ScenarioInput {
    let file = dir.join("egress-and-peer.yaml");
    std::fs::write(&file, SCENARIO).expect("write the scenario");
    let loaded = harness_scenario::load::load_file(&file)
        .unwrap_or_else(|d| panic!("the test scenario is valid: {}", d.message));
    ScenarioInput {
        loaded,
        file_arg: "egress-and-peer.yaml".into(),
        selection: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caught_fault_an_undetected_fault_and_r50_explained_by_name() {
    let dir = tempfile::tempdir().expect("tmp");
    let inputs = vec![input(dir.path())];
    let opts = SelftestOptions {
        base: RunOptions {
            seed: 9,
            report_dir: Some(dir.path().join("report")),
            ..RunOptions::default()
        },
        faults: vec![MockFault::EgressRulesDropped, MockFault::RbacOverGrant],
        parallel: 4,
    };
    let r = selftest(&inputs, &opts, None).await;
    assert!(r.infrastructure.is_empty(), "{:?}", r.infrastructure);
    assert!(r.clean_failures.is_empty(), "the clean phase passes");

    // The egress fault breaks x/a → y/a; nothing here can see an RBAC fault.
    let egress = &r.faults[0];
    assert_eq!(egress.fault, "egress-rules-dropped");
    assert_eq!(egress.detection, Detection::Caught, "{egress:?}");
    assert_eq!(egress.caught_by.len(), 1);
    assert_eq!(
        egress.caught_by[0].check,
        "x-a-sends-to-y-a-only/reachability-1"
    );
    // The cell stopped waiting once the cluster had settled, not after the whole `within`.
    let caught = &r
        .phase(Phase::Fault(MockFault::EgressRulesDropped))
        .expect("the egress phase")
        .failed[0];
    assert!(
        caught.why.contains("the cluster did not change for"),
        "{}",
        caught.why
    );
    let rbac = &r.faults[1];
    assert_eq!(rbac.detection, Detection::Undetected);
    assert!(rbac.caught_by.is_empty());

    // r5.0: x/a → y/b is allowed there, and that failure carries its deviation's name.
    assert!(r.r50.unexplained.is_empty(), "{:?}", r.r50.unexplained);
    assert!(r.r50.not_shown.is_empty(), "{:?}", r.r50.not_shown);
    let explained = &r.r50.explained;
    assert_eq!(explained.len(), 1, "{explained:?}");
    assert_eq!(explained[0].cell.to, "y/b");
    assert_eq!(explained[0].observed, "allow");
    assert_eq!(
        explained[0].deviations,
        vec!["peer-selectors-or".to_string()]
    );
    assert!(
        explained[0]
            .why
            .contains("explained by r5.0 deviation: peer-selectors-or"),
        "{}",
        explained[0].why
    );

    // One undetected fault is enough to fail the self-test, and the report says which.
    assert_eq!(r.exit_code(), EXIT_FAILED);
    assert_eq!(r.problems.len(), 1, "{:?}", r.problems);
    assert!(
        r.problems[0].contains("rbac-over-grant"),
        "{:?}",
        r.problems
    );
    let md = render_markdown(&r);
    assert!(md.contains("| `rbac-over-grant` | **no** |"), "{md}");
    assert!(md.contains("peer-selectors-or"), "{md}");
    assert_eq!(r.phases.len(), 4);
    assert_eq!(r.phase(Phase::R50).map(|p| p.failed.len()), Some(1));

    // Without the fault nothing here can catch, the same suite passes the self-test.
    let opts = SelftestOptions {
        faults: vec![MockFault::EgressRulesDropped],
        ..opts
    };
    let r = selftest(&inputs, &opts, None).await;
    assert_eq!(
        r.exit_code(),
        EXIT_OK,
        "{:?} {:?}",
        r.problems,
        r.infrastructure
    );
}
