//! Parsing a job text: syntax, types, unknown keys, units and `${VAR}`
//! substitution, each error located at its line and column.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::{expect_error, parse, parse_ok, FILE};
use corral_config::{
    job_name_from_path, parse_job_file_with, parse_job_str_with, ByteSize, ConfigError,
    DurationValue, HostContext, ImageRef, MountSpec, Network, RestartPolicy,
};

#[test]
fn display_names_file_line_column_field() {
    let text = "{\n  \"command\": [\"/x\"],\n  \"resources\": {\n    \"memory\": \"12X\"\n  }\n}";
    let error = parse(text).unwrap_err();
    let display = error.to_string();
    assert!(
        display.starts_with(
            "/etc/corral/jobs.d/web.json:4:15: resources.memory: invalid size \"12X\": expected"
        ),
        "{display}"
    );
    assert_eq!(error.file(), Path::new(FILE));
    assert_eq!(error.line(), Some(4));
    assert_eq!(error.column(), Some(15));
    assert_eq!(error.field(), Some("resources.memory"));
}

#[test]
fn defaults_fill_an_almost_empty_spec() {
    let job = parse_ok(r#"{"command": ["/bin/true"]}"#);
    let spec = job.spec;
    assert_eq!(spec.image, ImageRef::Host);
    assert_eq!(spec.network, Network::Loopback);
    assert_eq!(spec.restart.policy, RestartPolicy::OnFailure);
    assert_eq!(spec.restart.max_restarts, 5);
    assert_eq!(spec.restart.window, DurationValue::from_secs(60));
    assert_eq!(spec.restart.backoff.initial, DurationValue::from_secs(1));
    assert_eq!(spec.restart.backoff.max, DurationValue::from_secs(30));
    assert_eq!(spec.start_seconds, DurationValue::from_secs(1));
    assert_eq!(spec.stop.signal, "SIGTERM");
    assert_eq!(spec.stop.timeout, DurationValue::from_secs(10));
    assert!(spec.autostart);
    assert!(!spec.init);
    assert_eq!(spec.logs.max_size, ByteSize(10 << 20));
    assert_eq!(spec.logs.keep, 3);
    assert_eq!(job.dropins, Vec::<PathBuf>::new());
    assert_eq!(job.file, Path::new(FILE));
}

#[test]
fn syntax_error_has_position() {
    // The comma after the command is missing, so serde_json stops at the
    // next key: line 3, column 3.
    let error = parse("{\n  \"command\": [\"/x\"]\n  \"init\": true\n}").unwrap_err();
    assert!(matches!(error, ConfigError::Syntax { .. }), "{error}");
    assert_eq!(error.line(), Some(3), "{error}");
    assert_eq!(error.column(), Some(3), "{error}");
    assert_eq!(error.field(), None);
    let display = error.to_string();
    assert!(
        display.starts_with(&format!("{FILE}:3:3: invalid JSON: expected")),
        "{display}"
    );
    assert!(!display.contains("at line"), "{display}");
}

#[test]
fn syntax_error_column_counts_characters() {
    let error = parse("{\"env\": {\"É\": \"é\" \"x\"}}").unwrap_err();
    assert_eq!(error.line(), Some(1));
    assert_eq!(error.column(), Some(19), "{error}");
}

#[test]
fn empty_file_is_reported() {
    for text in ["", "  \n\t"] {
        let error = parse(text).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("the file is empty: expected a JSON object"),
            "{error}"
        );
        assert_eq!(error.line(), Some(1));
    }
}

#[test]
fn top_level_must_be_object() {
    for (text, kind) in [
        ("[]", "an array"),
        ("\"web\"", "a string"),
        ("null", "null"),
    ] {
        let error = parse(text).unwrap_err();
        let expected = format!("expected a JSON object at the top level, found {kind}");
        assert!(error.to_string().contains(&expected), "{error}");
    }
}

#[test]
fn duplicate_key_is_rejected() {
    let error = expect_error(
        "{\"command\": [\"/x\"],\n \"env\": {\"A\": \"1\",\n  ▶\"A\": \"2\"}}",
        "env.A",
        "duplicate key \"A\": it is already defined at line 2, column 10",
    );
    assert!(matches!(error, ConfigError::Invalid { .. }));
}

#[test]
fn unknown_field_suggests_closest() {
    let error = expect_error(
        "{\"command\": [\"/x\"],\n  \"resources\": {\n    ▶\"memroy\": \"1M\"}}",
        "resources.memroy",
        "unknown field `memroy` at resources, did you mean `memory`?",
    );
    let ConfigError::UnknownField(unknown) = error else {
        panic!("expected UnknownField");
    };
    assert_eq!(unknown.key, "memroy");
    assert_eq!(unknown.parent, "resources");
    assert_eq!(unknown.suggestion.as_deref(), Some("memory"));
}

#[test]
fn unknown_field_at_top_level() {
    expect_error(
        "{\"command\": [\"/x\"], ▶\"imgae\": \"busybox\"}",
        "imgae",
        "unknown field `imgae` at the top level, did you mean `image`?",
    );
}

#[test]
fn unknown_field_without_close_match() {
    let error = expect_error(
        "{\"command\": [\"/x\"], ▶\"frobnicate\": 1}",
        "frobnicate",
        "unknown field `frobnicate` at the top level",
    );
    assert!(!error.to_string().contains("did you mean"), "{error}");
    assert!(
        error
            .to_string()
            .contains("; known fields: `image`, `command`, `env`"),
        "{error}"
    );
}

#[test]
fn byte_order_mark_is_skipped() {
    let job = parse_ok("\u{feff}{\"command\": [\"/bin/true\"]}");
    assert_eq!(job.spec.command, ["/bin/true"]);
}

#[test]
fn number_given_as_string_names_json_type() {
    expect_error(
        "{\"command\": [\"/x\"], \"logs\": {\"keep\": ▶\"3\"}}",
        "logs.keep",
        "expected a whole number from 0 to 1000, found the string \"3\"",
    );
}

#[test]
fn object_given_as_string_names_json_type() {
    expect_error(
        "{\"command\": [\"/x\"], \"restart\": ▶\"sometimes\"}",
        "restart",
        "expected a JSON object with the keys `policy`, `max_restarts`, `window` and `backoff`, \
         found the string \"sometimes\"",
    );
    expect_error(
        "{\"command\": [\"/x\"], \"restart\": ▶5}",
        "restart",
        "expected a JSON object with the keys `policy`, `max_restarts`, `window` and `backoff`, \
         found the number 5",
    );
}

#[test]
fn restart_policy_name_shows_object() {
    for policy in ["always", "never", "on-failure"] {
        let text = format!("{{\"command\": [\"/x\"], \"restart\": ▶{policy:?}}}");
        let error = expect_error(&text, "restart", &format!("found the string {policy:?}"));
        let expected = format!("write \"restart\": {{\"policy\": {policy:?}}}");
        assert!(error.to_string().ends_with(&expected), "{error}");
    }
}

#[test]
fn array_types_named_in_json() {
    expect_error(
        "{\"command\": ▶\"/bin/true\"}",
        "command",
        "expected a JSON array, found the string \"/bin/true\"",
    );
    expect_error(
        "{\"command\": [\"/x\"], \"cap_add\": ▶{\"NET_ADMIN\": true}}",
        "cap_add",
        "expected a JSON array, found a JSON object",
    );
    expect_error(
        "{\"command\": [\"/x\"], \"mounts\": ▶{}}",
        "mounts",
        "expected a JSON array, found a JSON object",
    );
    expect_error(
        "{\"command\": [\"/x\"], \"ports\": ▶\"127.0.0.1:80\"}",
        "ports",
        "expected a JSON array of objects with the keys `host` and `container`, found the string \
         \"127.0.0.1:80\"",
    );
}

#[test]
fn object_types_named_in_json() {
    expect_error(
        "{\"command\": [\"/x\"], \"env\": ▶[\"A=B\"]}",
        "env",
        "expected a JSON object, found a JSON array",
    );
    expect_error(
        "{\"command\": [\"/x\"], \"labels\": ▶5}",
        "labels",
        "expected a JSON object, found the number 5",
    );
    expect_error(
        "{\"command\": [\"/x\"],\n \"resources\": {\"io\": {\"read_bps\": ▶[]}}}",
        "resources.io.read_bps",
        "expected a JSON object, found a JSON array",
    );
    expect_error(
        "{\"command\": [\"/x\"], \"ports\": [▶\"127.0.0.1:80\"]}",
        "ports[0]",
        "expected a JSON object with the keys `host` and `container`, found the string",
    );
    expect_error(
        "{\"command\": [\"/x\"], \"mounts\": [▶\"/a:/b\"]}",
        "mounts[0]",
        "expected a JSON object with the keys `type`, `source`, `target`, `readonly` and `size`",
    );
}

#[test]
fn array_in_place_of_object_rejected() {
    let cases = [
        ("\"restart\": ▶[\"always\"]", "restart"),
        ("\"resources\": ▶[]", "resources"),
        ("\"resources\": {\"io\": ▶[100]}", "resources.io"),
        ("\"stop\": ▶[\"SIGINT\"]", "stop"),
        ("\"logs\": ▶[]", "logs"),
        (
            "\"restart\": {\"backoff\": ▶[\"1s\", \"2s\"]}",
            "restart.backoff",
        ),
        ("\"user_namespace\": ▶[1000, 1000]", "user_namespace"),
        ("\"ports\": [▶[\"127.0.0.1:80\", 80]]", "ports[0]"),
        ("\"mounts\": [▶[\"tmpfs\", \"/tmp\"]]", "mounts[0]"),
    ];
    for (member, field) in cases {
        let text = format!("{{\"command\": [\"/x\"], {member}}}");
        expect_error(&text, field, "found a JSON array");
    }
}

#[test]
fn enum_given_as_object_rejected() {
    expect_error(
        "{\"command\": [\"/x\"], \"network\": ▶{\"host\": null}}",
        "network",
        "expected one of \"none\", \"loopback\", \"host\", found a JSON object",
    );
    expect_error(
        "{\"command\": [\"/x\"], \"restart\": {\"policy\": ▶{\"always\": null}}}",
        "restart.policy",
        "expected one of \"never\", \"on-failure\", \"always\", found a JSON object",
    );
    expect_error(
        "{\"command\": [\"/x\"], \"mounts\": [{\"type\": ▶null, \"target\": \"/b\"}]}",
        "mounts[0].type",
        "expected \"bind\" or \"tmpfs\", found null",
    );
}

#[test]
fn optional_objects_accept_null() {
    let job = parse_ok(r#"{"command": ["/x"], "user_namespace": null, "resources": {"io": null}}"#);
    assert_eq!(job.spec.user_namespace, None);
    assert_eq!(job.spec.resources.io, None);
}

#[test]
fn integer_range_errors_read_correctly() {
    let cases = [
        (
            "\"ports\": [{\"host\": \"127.0.0.1:80\", \"container\": ▶70000}]",
            "ports[0].container",
            "container port 70000 is out of range: allowed 1 to 65535",
        ),
        (
            "\"ports\": [{\"host\": \"127.0.0.1:80\", \"container\": ▶-1}]",
            "ports[0].container",
            "container port -1 is out of range: allowed 1 to 65535",
        ),
        (
            "\"ports\": [{\"host\": \"127.0.0.1:80\", \"container\": ▶8.5}]",
            "ports[0].container",
            "expected a whole number from 1 to 65535, found the number 8.5",
        ),
        (
            "\"resources\": {\"pids\": ▶-1}",
            "resources.pids",
            "pids -1 is out of range: allowed 1 to 4194304",
        ),
        (
            "\"resources\": {\"cpus\": ▶\"2\"}",
            "resources.cpus",
            "expected a number from 0.01 to the number of online CPUs, found the string \"2\"",
        ),
        (
            "\"logs\": {\"keep\": ▶-1}",
            "logs.keep",
            "keep -1 is out of range: allowed 0 to 1000",
        ),
        (
            "\"restart\": {\"max_restarts\": ▶99999999999}",
            "restart.max_restarts",
            "max_restarts 99999999999 is out of range: allowed 0 to 4294967295",
        ),
        (
            "\"user_namespace\": {\"uid\": ▶-1, \"gid\": 1}",
            "user_namespace.uid",
            "uid -1 is out of range: allowed 1 to 4294967295",
        ),
        (
            "\"resources\": {\"io\": {\"write_iops\": {\"/dev/vda\": ▶-1}}}",
            "resources.io.write_iops[\"/dev/vda\"]",
            "write_iops limit -1 is out of range: allowed 1 or more",
        ),
    ];
    for (member, field, message) in cases {
        let text = format!("{{\"command\": [\"/x\"], {member}}}");
        let error = expect_error(&text, field, message);
        assert!(error.to_string().ends_with(message), "{error}");
    }
}

#[test]
fn type_errors_use_no_rust_terms() {
    let members = [
        "\"command\": {}",
        "\"command\": [1]",
        "\"env\": []",
        "\"env\": {\"A\": []}",
        "\"ports\": {}",
        "\"ports\": [{\"host\": 1, \"container\": 80}]",
        "\"ports\": [{\"host\": \"127.0.0.1:80\", \"container\": 1e3}]",
        "\"mounts\": [{\"type\": \"bind\", \"source\": [], \"target\": \"/b\"}]",
        "\"network\": 5",
        "\"network\": {\"a\": 1, \"b\": 2}",
        "\"restart\": {\"policy\": 5}",
        "\"restart\": {\"max_restarts\": true}",
        "\"resources\": {\"cpus\": []}",
        "\"resources\": {\"cpu_weight\": {}}",
        "\"resources\": {\"memory\": []}",
        "\"stop\": {\"timeout\": {}}",
        "\"user_namespace\": 5",
        "\"image\": {\"path\": 5}",
        "\"init\": null",
    ];
    let rust_terms = [
        "sequence",
        "map",
        "struct",
        "enum",
        "unit",
        "integer",
        "floating point",
        "u16",
        "u32",
        "u64",
        "f64",
        "path string",
        "0 or more",
    ];
    for member in members {
        let text = format!("{{\"command\": [\"/x\"], {member}}}");
        let message = match parse(&text) {
            Err(ConfigError::Invalid { message, .. }) => message,
            other => panic!("{member}: expected an invalid value, got {other:?}"),
        };
        for term in rust_terms {
            assert!(!message.contains(term), "{member}: {term:?} in: {message}");
        }
    }
}

#[test]
fn missing_mount_type_lists_values() {
    expect_error(
        "{\"command\": [\"/x\"],\n \"mounts\": [▶{\"target\": \"/b\"}]}",
        "mounts[0]",
        "missing field `type`: expected \"bind\" or \"tmpfs\"",
    );
}

#[test]
fn unknown_field_far_from_known_ones() {
    for key in ["bogus", "xyz", "timeout"] {
        let text = format!("{{\"command\": [\"/x\"], \"{key}\": 1}}");
        let error = parse(&text).unwrap_err();
        assert!(
            !error.to_string().contains("did you mean"),
            "{key}: {error}"
        );
        assert!(error.to_string().contains("; known fields: "), "{error}");
    }
}

#[test]
fn unknown_field_in_nested_objects() {
    expect_error(
        "{\"command\": [\"/x\"],\n \"restart\": {\"backoff\": {▶\"maximum\": \"1s\"}}}",
        "restart.backoff.maximum",
        "unknown field `maximum` at restart.backoff",
    );
    expect_error(
        "{\"command\": [\"/x\"],\n \"ports\": [{\"host\": \"127.0.0.1:80\", ▶\"containr\": 80}]}",
        "ports[0].containr",
        "unknown field `containr` at ports[0], did you mean `container`?",
    );
    expect_error(
        "{\"command\": [\"/x\"],\n \"resources\": {\"io\": {▶\"read_bsp\": {}}}}",
        "resources.io.read_bsp",
        "did you mean `read_bps`?",
    );
}

#[test]
fn unknown_field_in_mount_and_image() {
    expect_error(
        "{\"command\": [\"/x\"],\n \"mounts\": [{\"type\": \"bind\", ▶\"sorce\": \"/a\", \"target\": \"/b\"}]}",
        "mounts[0].sorce",
        "unknown field `sorce` at mounts[0], did you mean `source`?",
    );
    expect_error(
        "{\"command\": [\"/x\"],\n \"image\": {▶\"pth\": \"/srv\"}}",
        "image.pth",
        "unknown field `pth` at image, did you mean `path`?",
    );
}

#[test]
fn unknown_variant_suggests_closest() {
    expect_error(
        "{\"command\": [\"/x\"],\n \"restart\": {\"policy\": ▶\"alwyas\"}}",
        "restart.policy",
        "invalid value \"alwyas\": expected one of \"never\", \"on-failure\", \"always\", did you \
         mean \"always\"?",
    );
    expect_error(
        "{\"command\": [\"/x\"], \"network\": ▶\"bridge\"}",
        "network",
        "expected one of \"none\", \"loopback\", \"host\"",
    );
    expect_error(
        "{\"command\": [\"/x\"],\n \"mounts\": [{\"type\": ▶\"bnd\", \"target\": \"/b\"}]}",
        "mounts[0].type",
        "invalid value \"bnd\": expected \"bind\" or \"tmpfs\", did you mean \"bind\"?",
    );
}

#[test]
fn wrong_type_names_field() {
    expect_error(
        "{\"command\": ▶\"/bin/true\"}",
        "command",
        "expected a JSON array, found the string \"/bin/true\"",
    );
    expect_error(
        "{\"command\": [\"/x\"], \"init\": ▶\"yes\"}",
        "init",
        "expected a boolean, found the string \"yes\"",
    );
    expect_error(
        "{\"command\": [\"/x\"], \"env\": {\"A\": ▶1}}",
        "env.A",
        "expected a string, found the number 1",
    );
    expect_error(
        "{\"command\": [\"/x\"],\n \"mounts\": [{\"type\": \"bind\", \"source\": ▶5, \"target\": \"/b\"}]}",
        "mounts[0].source",
        "expected a string, found the number 5",
    );
    expect_error(
        "{\"command\": [\"/x\"], \"image\": ▶5}",
        "image",
        "expected \"host\", an image name, or {\"path\": \"/absolute/dir\"}, found the number 5",
    );
}

#[test]
fn missing_required_key_names_object() {
    expect_error(
        "{\"command\": [\"/x\"],\n \"ports\": [▶{\"host\": \"127.0.0.1:80\"}]}",
        "ports[0]",
        "missing field `container`",
    );
    expect_error(
        "{\"command\": [\"/x\"],\n \"mounts\": [▶{\"target\": \"/b\"}]}",
        "mounts[0]",
        "missing field `type`: expected \"bind\" or \"tmpfs\"",
    );
    expect_error(
        "{\"command\": [\"/x\"],\n \"mounts\": [▶{\"type\": \"bind\", \"target\": \"/b\"}]}",
        "mounts[0]",
        "missing field `source`",
    );
}

#[test]
fn mount_keys_must_match_type() {
    expect_error(
        "{\"command\": [\"/x\"],\n \"mounts\": [▶{\"type\": \"bind\", \"source\": \"/a\", \"target\": \"/b\", \"size\": 1}]}",
        "mounts[0]",
        "field `size` applies only to tmpfs mounts",
    );
    expect_error(
        "{\"command\": [\"/x\"],\n \"mounts\": [▶{\"type\": \"tmpfs\", \"source\": \"/a\", \"target\": \"/b\"}]}",
        "mounts[0]",
        "field `source` applies only to bind mounts",
    );
}

#[test]
fn bad_sizes_and_durations() {
    expect_error(
        "{\"command\": [\"/x\"],\n \"resources\": {\"memory\": ▶\"1.5G\"}}",
        "resources.memory",
        "invalid size \"1.5G\"",
    );
    expect_error(
        "{\"command\": [\"/x\"],\n \"resources\": {\"memory\": ▶-1}}",
        "resources.memory",
        "invalid size -1: must not be negative",
    );
    expect_error(
        "{\"command\": [\"/x\"],\n \"resources\": {\"memory\": ▶\"99999999999G\"}}",
        "resources.memory",
        "is too large: the maximum is 9223372036854775807 bytes",
    );
    expect_error(
        "{\"command\": [\"/x\"],\n \"stop\": {\"timeout\": ▶\"10\"}}",
        "stop.timeout",
        "invalid duration \"10\": expected a string with an ms, s, m or h suffix",
    );
    expect_error(
        "{\"command\": [\"/x\"],\n \"restart\": {\"window\": ▶-5}}",
        "restart.window",
        "must not be negative",
    );
}

#[test]
fn sizes_and_durations_accept_numbers_and_strings() {
    let job = parse_ok(
        r#"{"command": ["/x"], "resources": {"memory": 2097152, "memory_swap": "3m"},
            "stop": {"timeout": 2.5}, "start_seconds": "500ms"}"#,
    );
    assert_eq!(job.spec.resources.memory, Some(ByteSize(2 << 20)));
    assert_eq!(job.spec.resources.memory_swap, Some(ByteSize(3 << 20)));
    assert_eq!(job.spec.stop.timeout, DurationValue::from_millis(2500));
    assert_eq!(job.spec.start_seconds, DurationValue::from_millis(500));
}

#[test]
fn substitution_uses_job_env_then_host() {
    let job = parse_ok(
        r#"{"command": ["/bin/sh", "-c", "echo ${GREETING} $$HOME ${HOME}"],
            "env": {"GREETING": "hello", "DATA": "${HOME}/data"},
            "working_dir": "${DATA}",
            "mounts": [{"type": "bind", "source": "${DATA}/www", "target": "/www"}]}"#,
    );
    assert_eq!(job.spec.command[2], "echo hello $HOME /home/corral");
    assert_eq!(job.spec.env["DATA"], "/home/corral/data");
    assert_eq!(job.spec.working_dir.as_deref(), Some("/home/corral/data"));
    let MountSpec::Bind { source, .. } = &job.spec.mounts[0] else {
        panic!("expected a bind mount");
    };
    assert_eq!(source, Path::new("/home/corral/data/www"));
}

#[test]
fn substitution_env_self_reference_uses_host() {
    let job = parse_ok(r#"{"command": ["/x"], "env": {"PATH": "/opt/bin:${PATH}"}}"#);
    assert_eq!(job.spec.env["PATH"], "/opt/bin:/usr/bin:/bin");
}

#[test]
fn substitution_job_env_overrides_host() {
    let job = parse_ok(r#"{"command": ["${HOME}/run"], "env": {"HOME": "/srv"}}"#);
    assert_eq!(job.spec.command[0], "/srv/run");
}

#[test]
fn substitution_leaves_other_fields_alone() {
    let job = parse_ok(r#"{"command": ["/x"], "labels": {"a": "${NOPE}"}, "hostname": "h"}"#);
    assert_eq!(job.spec.labels["a"], "${NOPE}");
}

#[test]
fn substitution_undefined_points_at_string() {
    expect_error(
        "{\"command\": [\"/bin/echo\",\n  ▶\"${NOPE}\"]}",
        "command[1]",
        "undefined variable ${NOPE}: define NOPE in the job's env or in supervisord's environment",
    );
    expect_error(
        "{\"command\": [\"/x\"],\n \"env\": {\"A\": ▶\"${GREETING}\", \"GREETING\": \"hi\"}}",
        "env.A",
        "undefined variable ${GREETING}",
    );
    expect_error(
        "{\"command\": [\"/x\"], \"working_dir\": ▶\"/${NOPE\"}",
        "working_dir",
        "unterminated",
    );
    expect_error(
        "{\"command\": [\"/x\"],\n \"mounts\": [{\"type\": \"bind\", \"source\": ▶\"${1}\", \"target\": \"/b\"}]}",
        "mounts[0].source",
        "invalid variable name \"1\"",
    );
}

#[test]
fn substituted_working_dir_is_validated() {
    let host = HostContext::with_cpus(
        1,
        BTreeMap::from([("REL".to_string(), "relative".to_string())]),
    );
    let text = r#"{"command": ["/x"], "working_dir": "${REL}"}"#;
    let error = parse_job_str_with("web", Path::new(FILE), text, &host).unwrap_err();
    assert_eq!(error.field(), Some("working_dir"));
    assert!(
        error
            .to_string()
            .contains("\"relative\": must be an absolute path"),
        "{error}"
    );
}

#[test]
fn job_name_from_file_stem() {
    assert_eq!(
        job_name_from_path(Path::new("/etc/corral/jobs.d/web.json")).unwrap(),
        "web"
    );
    assert_eq!(
        job_name_from_path(Path::new("a.b-c_d.json")).unwrap(),
        "a.b-c_d"
    );
    for bad in [
        "/x/Web.json",
        "/x/web.yaml",
        "/x/.json",
        "/x/web",
        "/",
        "/x/we b.json",
    ] {
        let error = job_name_from_path(Path::new(bad)).unwrap_err();
        assert!(
            matches!(error, ConfigError::InvalidName { .. }),
            "{bad}: {error}"
        );
        assert_eq!(error.file(), Path::new(bad));
    }
    let error = job_name_from_path(Path::new("/x/all.json")).unwrap_err();
    assert!(matches!(error, ConfigError::ReservedName { .. }), "{error}");
}

#[test]
fn parse_job_file_reads_disk() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("web.json");
    std::fs::write(&path, r#"{"command": ["/bin/true"]}"#).unwrap();
    let job = parse_job_file_with(&path, &common::host()).unwrap();
    assert_eq!(job.name, "web");
    assert_eq!(job.file, path);
    assert_eq!(job.spec.command, vec!["/bin/true"]);
}

#[test]
fn parse_job_file_missing_names_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gone.json");
    let error = parse_job_file_with(&path, &common::host()).unwrap_err();
    assert!(matches!(error, ConfigError::Io { .. }), "{error}");
    assert_eq!(error.file(), path);
    assert!(error.to_string().contains("failed to read"), "{error}");
    assert_eq!(error.line(), None);
}

#[test]
fn spec_serializes_back_to_valid_text() {
    let job = parse_ok(
        r#"{"command": ["/x"], "resources": {"memory": "128M", "cpus": 0.5},
            "mounts": [{"type": "tmpfs", "target": "/t"}], "stop": {"timeout": "1.5s"}}"#,
    );
    let text = serde_json::to_string(&job.spec).unwrap();
    assert!(!text.contains("null"), "{text}");
    let again = parse_ok(&text);
    assert_eq!(again.spec, job.spec);
}
