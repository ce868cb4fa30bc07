//! The committed schema (`schema/scenario.schema.json`) is the generated one.

use std::path::Path;

#[test]
fn committed_schema_is_in_sync() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schema/scenario.schema.json");
    let generated = harness_scenario::schema::scenario_schema_json();
    if std::env::var_os("BLESS").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "schema/scenario.schema.json is stale: regenerate it with `BLESS=1 cargo test -p harness-scenario --test schema` or `harness schema -o schema/scenario.schema.json`"
    );
}

#[test]
fn schema_is_draft_2020_12_and_strict() {
    let v: serde_json::Value =
        serde_json::from_str(&harness_scenario::schema::scenario_schema_json()).unwrap();
    assert_eq!(v["$schema"], "https://json-schema.org/draft/2020-12/schema");
    assert_eq!(v["additionalProperties"], false);
    assert!(v["properties"]["steps"].is_object());
    assert!(v["$defs"]["ReachabilityCheck"]["properties"]["holdFor"].is_object());
}
