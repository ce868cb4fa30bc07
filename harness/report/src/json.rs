//! `results.json`: the whole [`RunResult`] as pretty JSON, with its summary and exit code.
//!
//! The document is the model itself (camelCase fields, outcomes tagged by `status`) plus three
//! derived fields: `schemaVersion` first, then `summary` and `exitCode` after the model's fields.
//! [`parse`] reads it back into a [`RunResult`], ignoring the derived fields.

use serde::Serialize;

use crate::model::{RunResult, Status, Summary};

/// Version of the `results.json` layout; bumped on incompatible changes.
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ResultsDocument<'a> {
    schema_version: u32,
    #[serde(flatten)]
    run: &'a RunResult,
    status: Status,
    summary: Summary,
    exit_code: u8,
}

/// Renders `results.json`.
pub fn render(run: &RunResult) -> String {
    to_pretty_json(&ResultsDocument {
        schema_version: SCHEMA_VERSION,
        run,
        status: run.status(),
        summary: run.summary(),
        exit_code: run.exit_code(),
    })
}

/// Parses a `results.json` (or a bare serialized [`RunResult`]) back into the model.
///
/// # Errors
///
/// The JSON error when the text is not a results document.
pub fn parse(text: &str) -> serde_json::Result<RunResult> {
    serde_json::from_str(text)
}

/// Pretty JSON with a trailing newline. Serializing this crate's types cannot fail (string
/// keys, no custom serializers); should it ever, the error is rendered as a JSON document
/// rather than panicking at the end of a run.
pub(crate) fn to_pretty_json<T: Serialize>(value: &T) -> String {
    match serde_json::to_string_pretty(value) {
        Ok(mut text) => {
            text.push('\n');
            text
        }
        Err(e) => format!(
            "{{\n  \"error\": {}\n}}\n",
            serde_json::Value::String(format!("could not serialize the report: {e}"))
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;

    #[test]
    fn round_trips_and_carries_derived_fields() {
        let run = fixtures::run_result();
        let text = render(&run);
        assert_eq!(parse(&text).expect("parses"), run);
        let value: serde_json::Value = serde_json::from_str(&text).expect("json");
        assert_eq!(value["exitCode"], 1);
        assert_eq!(value["status"], "failed");
        assert_eq!(value["summary"]["flaky"], 1);
        assert_eq!(value["schemaVersion"], 1);
        assert_eq!(
            value["scenarios"][0]["steps"][1]["checks"][0]["cells"][0]["outcome"]["status"],
            "ignored"
        );
    }
}
