//! The agent and the model dataplane's exec handler speak the same JSON: the runner sends one
//! batch format to a simulated pod and to a real one and reads one result format back.

use harness_agent::{ProbeRequest, ProbeResult, ProbeResultKind};
use harness_scenario::Protocol;
use harness_vrouter_sim::node as model;

fn requests() -> (Vec<ProbeRequest>, Vec<model::ProbeRequest>) {
    let ours = vec![
        ProbeRequest::new("10.32.0.5".parse().unwrap(), Protocol::Tcp, 80),
        ProbeRequest::new("10.96.0.10".parse().unwrap(), Protocol::Udp, 53).with_timeout_ms(250),
        ProbeRequest {
            trace: true,
            ..ProbeRequest::new("192.168.0.11".parse().unwrap(), Protocol::Sctp, 9000)
        },
        ProbeRequest::new("10.32.0.6".parse().unwrap(), Protocol::Icmp, 0),
    ];
    let theirs = ours
        .iter()
        .map(|r| model::ProbeRequest {
            to: r.to.to_string(),
            protocol: r.protocol,
            port: r.port,
            timeout_ms: r.timeout_ms,
            trace: r.trace,
        })
        .collect();
    (ours, theirs)
}

fn results() -> (Vec<ProbeResult>, Vec<model::ProbeResult>) {
    let ours = vec![
        ProbeResult {
            result: ProbeResultKind::Connected,
            backend: Some("x/a".into()),
            detail: "x/a answered on TCP/80, saw source 10.32.0.4:40112".into(),
            hops: vec![],
        },
        ProbeResult {
            result: ProbeResultKind::Refused,
            backend: None,
            detail: "TCP RST from 10.32.0.5:81".into(),
            hops: vec!["node-1 vrf default-domain:x:pod-network".into()],
        },
        ProbeResult {
            result: ProbeResultKind::Timeout,
            backend: None,
            detail: String::new(),
            hops: vec![],
        },
        ProbeResult {
            result: ProbeResultKind::Other,
            backend: None,
            detail: "this kernel has no SCTP".into(),
            hops: vec![],
        },
    ];
    let kind = |k| match k {
        ProbeResultKind::Connected => model::ProbeResultKind::Connected,
        ProbeResultKind::Refused => model::ProbeResultKind::Refused,
        ProbeResultKind::Timeout => model::ProbeResultKind::Timeout,
        ProbeResultKind::Other => model::ProbeResultKind::Other,
    };
    let theirs = ours
        .iter()
        .map(|r| model::ProbeResult {
            result: kind(r.result),
            backend: r.backend.clone(),
            detail: r.detail.clone(),
            hops: r.hops.clone(),
        })
        .collect();
    (ours, theirs)
}

#[test]
fn requests_serialize_identically_and_read_each_other() {
    let (ours, theirs) = requests();
    let a = serde_json::to_string(&ours).unwrap();
    let b = serde_json::to_string(&theirs).unwrap();
    assert_eq!(a, b);
    assert!(
        a.contains(r#""timeoutMs":250"#) && a.contains(r#""trace":true"#),
        "{a}"
    );
    let back: Vec<ProbeRequest> = harness_agent::parse_batch(&b).unwrap();
    assert_eq!(back, ours);
    let back: Vec<model::ProbeRequest> = serde_json::from_str(&a).unwrap();
    assert_eq!(back, theirs);
}

#[test]
fn results_serialize_identically_and_read_each_other() {
    let (ours, theirs) = results();
    let a = serde_json::to_string(&ours).unwrap();
    let b = serde_json::to_string(&theirs).unwrap();
    assert_eq!(a, b);
    // `backend` is always present (null when none); `hops` only when there are some.
    assert!(a.contains(r#""backend":null"#), "{a}");
    let back: Vec<ProbeResult> = serde_json::from_str(&b).unwrap();
    assert_eq!(back, ours);
    let back: Vec<model::ProbeResult> = serde_json::from_str(&a).unwrap();
    assert_eq!(back, theirs);
}

#[test]
fn both_reject_the_same_malformed_probes() {
    for bad in [
        r#"[{"to": "10.0.0.1", "protocol": "tcp", "port": 80}]"#,
        r#"[{"to": "10.0.0.1", "protocol": "TCP", "port": 80, "timeout": 5}]"#,
        r#"[{"protocol": "TCP", "port": 80}]"#,
        r#"{"to": "10.0.0.1", "protocol": "TCP", "port": 80}"#,
    ] {
        assert!(harness_agent::parse_batch(bad).is_err(), "{bad}");
        assert!(
            serde_json::from_str::<Vec<model::ProbeRequest>>(bad).is_err(),
            "{bad}"
        );
    }
}
