//! The JSON Schema (draft 2020-12) of the scenario language, for editors
//! (`# yaml-language-server: $schema=…`) and for `harness schema`.

use crate::model::Scenario;

/// The schema as pretty JSON with a trailing newline (the form committed at
/// `schema/scenario.schema.json`).
pub fn scenario_schema_json() -> String {
    let schema = schemars::schema_for!(Scenario);
    let mut s = serde_json::to_string_pretty(&schema).unwrap_or_default();
    s.push('\n');
    s
}
