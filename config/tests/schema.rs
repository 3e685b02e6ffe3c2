//! The committed JSON Schema matches the types, describes the units, images
//! and unknown-key rules correctly, and accepts the example job files.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use corral_config::{job_schema, parse_job_file, parse_job_str_with, HostContext};
use serde_json::{json, Value};

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn validator() -> jsonschema::Validator {
    jsonschema::validator_for(&job_schema()).expect("the generated schema compiles")
}

fn schema_errors(instance: &Value) -> Vec<String> {
    validator()
        .iter_errors(instance)
        .map(|error| format!("{} at {}", error, error.instance_path()))
        .collect()
}

#[test]
fn committed_schema_is_current() {
    let path = crate_dir().join("job.schema.json");
    let generated = serde_json::to_string_pretty(&job_schema()).unwrap() + "\n";
    if std::env::var_os("UPDATE_SCHEMA").is_some() {
        fs::write(&path, &generated).unwrap();
        return;
    }
    let committed = fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{} differs from the schema generated from the types; regenerate it with \
         `UPDATE_SCHEMA=1 cargo test -p corral-config` and commit the result",
        path.display()
    );
}

/// Calls `check` on every object schema (one with `properties`) in `schema`.
fn visit_object_schemas(schema: &Value, path: &str, check: &mut dyn FnMut(&str, &Value)) {
    match schema {
        Value::Object(members) => {
            if members.contains_key("properties") {
                check(path, schema);
            }
            for (key, value) in members {
                visit_object_schemas(value, &format!("{path}/{key}"), check);
            }
        }
        Value::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                visit_object_schemas(item, &format!("{path}/{index}"), check);
            }
        }
        _ => {}
    }
}

#[test]
fn schema_properties_are_described() {
    let schema = job_schema();
    let definitions = schema["$defs"].as_object().unwrap().clone();
    let mut undescribed = Vec::new();
    visit_object_schemas(&schema, "", &mut |path, object| {
        let Some(properties) = object.get("properties").and_then(Value::as_object) else {
            return;
        };
        for (key, property) in properties {
            // A property may carry its own text or take that of the
            // definition it refers to.
            // An optional one refers to it from one branch of `anyOf`. The
            // `type` tag of a mount is a constant and names itself.
            let branches = property
                .get("anyOf")
                .and_then(Value::as_array)
                .map_or(vec![property], |branches| branches.iter().collect());
            let referred = branches.iter().any(|branch| {
                branch
                    .get("$ref")
                    .and_then(Value::as_str)
                    .and_then(|target| target.strip_prefix("#/$defs/"))
                    .and_then(|name| definitions.get(name))
                    .is_some_and(|target| target.get("description").is_some())
            });
            let described = property.get("description").is_some()
                || property.get("const").is_some()
                || referred;
            if !described {
                undescribed.push(format!("{path}/{key}"));
            }
        }
    });
    assert!(undescribed.is_empty(), "no description: {undescribed:?}");
}

#[test]
fn schema_objects_reject_unknown_keys() {
    let schema = job_schema();
    let mut count = 0;
    visit_object_schemas(&schema, "", &mut |path, object| {
        count += 1;
        assert_eq!(
            object.get("additionalProperties"),
            Some(&json!(false)),
            "object schema at {path} allows unknown keys"
        );
    });
    // JobSpec, Resources, IoLimits, PortMapping, both mount kinds,
    // RestartConfig, BackoffConfig, StopConfig, LogConfig, UserNamespace and
    // the image path.
    assert_eq!(count, 12);
}

#[test]
fn schema_rejects_unknown_keys_in_documents() {
    for document in [
        json!({"imgae": "busybox"}),
        json!({"resources": {"memroy": "1M"}}),
        json!({"mounts": [{"type": "bind", "source": "/a", "target": "/b", "size": 1}]}),
        json!({"mounts": [{"type": "tmpfs", "target": "/b", "source": "/a"}]}),
        json!({"restart": {"backoff": {"maximum": "1s"}}}),
        json!({"image": {"path": "/srv", "extra": 1}}),
    ] {
        assert!(!schema_errors(&document).is_empty(), "accepted {document}");
    }
}

#[test]
fn schema_byte_size() {
    for size in [
        json!(0),
        json!(512),
        json!("512"),
        json!("64K"),
        json!("128m"),
        json!("2G"),
        json!("1T"),
        json!("7B"),
    ] {
        let document = json!({"resources": {"memory": size}});
        assert_eq!(schema_errors(&document), Vec::<String>::new(), "{size}");
    }
    for size in [
        json!(-1),
        json!(1.5),
        json!("12X"),
        json!("1.5G"),
        json!(" 1M"),
        json!(""),
        json!(true),
    ] {
        let document = json!({"resources": {"memory": size}});
        assert!(!schema_errors(&document).is_empty(), "accepted {size}");
    }
}

#[test]
fn schema_duration() {
    for duration in [
        json!(0),
        json!(1.5),
        json!("500ms"),
        json!("10s"),
        json!("1.5s"),
        json!("5m"),
        json!("2h"),
    ] {
        let document = json!({"stop": {"timeout": duration}});
        assert_eq!(schema_errors(&document), Vec::<String>::new(), "{duration}");
    }
    for duration in [
        json!(-1),
        json!("10"),
        json!(".5s"),
        json!("1d"),
        json!("1m30s"),
        json!(null),
    ] {
        let document = json!({"stop": {"timeout": duration}});
        assert!(!schema_errors(&document).is_empty(), "accepted {duration}");
    }
}

#[test]
fn schema_image_ref() {
    for image in [
        json!("host"),
        json!("busybox"),
        json!({"path": "/srv/rootfs"}),
    ] {
        let document = json!({"image": image});
        assert_eq!(schema_errors(&document), Vec::<String>::new(), "{image}");
    }
    for image in [
        json!(5),
        json!(""),
        json!(null),
        json!({"pth": "/srv"}),
        json!({"path": "srv"}),
        json!({}),
    ] {
        let document = json!({"image": image});
        assert!(!schema_errors(&document).is_empty(), "accepted {image}");
    }
}

#[test]
fn schema_ranges_match_validation() {
    for document in [
        json!({"resources": {"cpu_weight": 0}}),
        json!({"resources": {"cpu_weight": 10001}}),
        json!({"resources": {"io": {"weight": 0}}}),
        json!({"resources": {"io": {"read_iops": {"/dev/vda": 0}}}}),
        json!({"resources": {"pids": 0}}),
        json!({"resources": {"cpus": 0.001}}),
        json!({"ports": [{"host": "127.0.0.1:80", "container": 0}]}),
        json!({"network": "bridge"}),
        json!({"restart": {"policy": "sometimes"}}),
    ] {
        assert!(!schema_errors(&document).is_empty(), "accepted {document}");
    }
}

/// Job files that the parser accepts must pass the schema too.
#[test]
fn schema_accepts_parsed_jobs() {
    let host = HostContext::with_cpus(4, Default::default());
    for text in [
        r#"{"command": ["/bin/true"]}"#,
        r#"{"image": "busybox"}"#,
        r#"{"image": {"path": "/srv/rootfs"}, "command": ["/x"], "network": "none"}"#,
        r#"{"command": ["/x"], "resources": {"memory": "1M", "memory_swap": 2097152, "cpus": 4,
            "cpu_weight": 10000, "cpuset": "0-3", "pids": 1,
            "io": {"weight": 1, "write_bps": {"/dev/sda": 1}, "write_iops": {"/dev/sda": 1}}}}"#,
        r#"{"command": ["/x"], "mounts": [{"type": "tmpfs", "target": "/t", "readonly": true}],
            "restart": {"policy": "always", "max_restarts": 0, "window": 1,
            "backoff": {"initial": "0.5s", "max": "0.5s"}}, "start_seconds": 0,
            "stop": {"signal": "kill", "timeout": "1ms"}, "autostart": false,
            "logs": {"max_size": 4096, "keep": 0}, "labels": {"a": ""}}"#,
    ] {
        parse_job_str_with("web", Path::new("web.json"), text, &host).expect(text);
        let document: Value = serde_json::from_str(text).unwrap();
        assert_eq!(schema_errors(&document), Vec::<String>::new(), "{text}");
    }
}

#[test]
fn example_job_files_validate() {
    let examples = crate_dir().join("../examples/jobs.d");
    let mut files: Vec<PathBuf> = fs::read_dir(&examples)
        .map(|entries| {
            entries
                .filter_map(|entry| entry.ok().map(|entry| entry.path()))
                .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    if files.is_empty() {
        // Written to the stderr handle rather than with eprintln!, which the
        // test harness captures and hides for passing tests.
        let _ = writeln!(
            std::io::stderr(),
            "SKIP example_job_files_validate: no *.json files in {}",
            examples.display()
        );
        return;
    }
    for file in files {
        let text = fs::read_to_string(&file).unwrap();
        let document: Value = serde_json::from_str(&text)
            .unwrap_or_else(|error| panic!("{}: {error}", file.display()));
        let errors = schema_errors(&document);
        assert!(errors.is_empty(), "{}: {errors:?}", file.display());
        if let Err(error) = parse_job_file(&file) {
            panic!("{error}");
        }
    }
}
