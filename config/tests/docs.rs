//! docs/job-spec.md stays true: its example is valid and its table of
//! defaults matches the types.

use std::collections::BTreeSet;
use std::fs;
use std::path::PathBuf;

use corral_config::{job_schema, parse_job_str_with, HostContext, JobSpec};
use serde_json::Value;

fn doc_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/job-spec.md")
}

fn read_doc() -> String {
    fs::read_to_string(doc_path()).expect("docs/job-spec.md exists")
}

#[test]
fn documented_example_validates() {
    let doc = read_doc();
    let start_marker = "<!-- example-job -->\n```json\n";
    let start = doc.find(start_marker).expect("example-job marker") + start_marker.len();
    let end = start + doc[start..].find("```").expect("end of example");
    let text = &doc[start..end];

    let document: Value = serde_json::from_str(text).expect("the example is JSON");
    let validator = jsonschema::validator_for(&job_schema()).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&document)
        .map(|e| e.to_string())
        .collect();
    assert_eq!(errors, Vec::<String>::new());

    let host = HostContext::with_cpus(2, Default::default());
    if let Err(error) = parse_job_str_with("web", &doc_path(), text, &host) {
        panic!("{error}");
    }
}

/// Rows of the fields table: field path and default column.
fn table_rows(doc: &str) -> Vec<(String, String)> {
    doc.lines()
        .filter(|line| line.starts_with("| `"))
        .map(|line| {
            let cells: Vec<&str> = line.split(" | ").collect();
            let field = cells[0]
                .trim_start_matches("| ")
                .trim_matches('`')
                .to_string();
            (field, cells[2].to_string())
        })
        .collect()
}

#[test]
fn documented_defaults_match_types() {
    // An empty io object makes the io maps appear in the serialized defaults.
    let spec: JobSpec = serde_json::from_str(r#"{"resources": {"io": {}}}"#).unwrap();
    let defaults = serde_json::to_value(&spec).unwrap();
    let rows = table_rows(&read_doc());
    assert!(rows.len() >= 40, "found only {} rows", rows.len());

    let mut checked = 0;
    for (field, default) in rows {
        if field.contains("[]") {
            continue;
        }
        let pointer = format!("/{}", field.replace('.', "/"));
        let actual = defaults.pointer(&pointer);
        if default.starts_with("unset") {
            assert!(actual.is_none(), "{field}: documented unset, is {actual:?}");
        } else {
            let literal = default
                .strip_prefix('`')
                .and_then(|rest| rest.strip_suffix('`'))
                .unwrap_or_else(|| panic!("{field}: default {default:?} is not `JSON`"));
            let documented: Value = serde_json::from_str(literal)
                .unwrap_or_else(|error| panic!("{field}: {literal}: {error}"));
            assert_eq!(actual, Some(&documented), "{field}");
        }
        checked += 1;
    }
    assert!(checked >= 30, "checked only {checked} rows");
}

/// Collects the documented field paths of a schema node: every property that
/// is not itself an object with properties, with `[]` for array items.
fn collect_fields(node: &Value, defs: &Value, prefix: &str, fields: &mut BTreeSet<String>) {
    if let Some(reference) = node.get("$ref").and_then(Value::as_str) {
        let name = reference.trim_start_matches("#/$defs/");
        // An image is one documented field whatever its form.
        if name != "ImageRef" {
            collect_fields(&defs[name], defs, prefix, fields);
        }
        return;
    }
    for alternatives in ["anyOf", "oneOf"] {
        for alternative in node
            .get(alternatives)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            collect_fields(alternative, defs, prefix, fields);
        }
    }
    if let Some(items) = node.get("items") {
        collect_fields(items, defs, &format!("{prefix}[]"), fields);
    }
    let Some(properties) = node.get("properties").and_then(Value::as_object) else {
        return;
    };
    for (key, property) in properties {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        let before = fields.len();
        collect_fields(property, defs, &path, fields);
        let has_subfields = fields
            .iter()
            .any(|field| field.starts_with(&format!("{path}.")));
        if fields.len() == before || !has_subfields {
            fields.insert(path);
        }
    }
}

#[test]
fn every_field_is_documented() {
    let schema = job_schema();
    let mut schema_fields = BTreeSet::new();
    collect_fields(&schema, &schema["$defs"], "", &mut schema_fields);
    let documented: BTreeSet<String> = table_rows(&read_doc())
        .into_iter()
        .map(|(field, _)| field)
        .collect();
    let missing: Vec<&String> = schema_fields.difference(&documented).collect();
    let extra: Vec<&String> = documented.difference(&schema_fields).collect();
    assert!(
        missing.is_empty(),
        "fields missing from docs/job-spec.md: {missing:?}"
    );
    assert!(
        extra.is_empty(),
        "documented fields that do not exist: {extra:?}"
    );
}
