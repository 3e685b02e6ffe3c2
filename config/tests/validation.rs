//! Every semantic check of a job spec: the error names the field, the line and
//! column of the offending value, and the allowed range.

mod common;

use std::path::Path;

use common::{expect_error, parse, parse_ok, FILE};
use corral_config::{parse_job_str_with, ConfigError, ImageRef, MountSpec};

#[test]
fn job_name_must_match_syntax() {
    for name in ["Web", "", "-web", "_web", "web/x", "wéb", &"a".repeat(64)] {
        let error = parse_job_str_with(name, Path::new(FILE), "{}", &common::host()).unwrap_err();
        assert!(
            matches!(error, ConfigError::InvalidName { .. }),
            "{name:?}: {error}"
        );
        assert!(
            error.to_string().contains("[a-z0-9][a-z0-9_.-]{0,62}"),
            "{error}"
        );
        assert_eq!(error.line(), None);
    }
    for name in ["web", "0", "a.b_c-d", &"a".repeat(63)] {
        let text = r#"{"command": ["/bin/true"]}"#;
        assert!(
            parse_job_str_with(name, Path::new(FILE), text, &common::host()).is_ok(),
            "{name}"
        );
    }
}

#[test]
fn job_name_all_is_reserved() {
    let text = r#"{"command": ["/bin/true"]}"#;
    let error = parse_job_str_with("all", Path::new(FILE), text, &common::host()).unwrap_err();
    assert!(matches!(error, ConfigError::ReservedName { .. }), "{error}");
    assert!(error.to_string().contains("is reserved"), "{error}");
    for name in ["all.web", "allx", "web-all"] {
        assert!(
            parse_job_str_with(name, Path::new(FILE), text, &common::host()).is_ok(),
            "{name}"
        );
    }
}

#[test]
fn command_required_for_host_image() {
    expect_error(
        "▶{\"image\": \"host\"}",
        "command",
        "command is required when image is \"host\"",
    );
    expect_error("{\"command\": ▶[]}", "command", "command is required");
}

#[test]
fn command_required_for_path_image() {
    expect_error(
        "▶{\"image\": {\"path\": \"/srv/rootfs\"}}",
        "command",
        "or a path",
    );
}

#[test]
fn command_optional_for_named_image() {
    let job = parse_ok(r#"{"image": "busybox"}"#);
    assert_eq!(job.spec.image, ImageRef::Named("busybox".into()));
    assert!(job.spec.command.is_empty());
}

#[test]
fn command_program_must_not_be_empty() {
    expect_error(
        "{\"command\": [▶\"\", \"-x\"]}",
        "command[0]",
        "must not be empty",
    );
}

#[test]
fn command_arguments_reject_nul() {
    expect_error(
        "{\"command\": [\"/bin/echo\", ▶\"a\\u0000b\"]}",
        "command[1]",
        "NUL byte",
    );
}

#[test]
fn image_path_must_be_absolute() {
    expect_error(
        "{\"command\": [\"/x\"], \"image\": {\"path\": ▶\"srv/rootfs\"}}",
        "image.path",
        "must be an absolute path",
    );
}

#[test]
fn image_name_not_empty_or_path() {
    expect_error("{\"image\": ▶\"\"}", "image", "must not be empty");
    expect_error(
        "{\"image\": ▶\"/srv/rootfs\"}",
        "image",
        "written {\"path\": \"/srv/rootfs\"}",
    );
}

#[test]
fn env_key_must_not_be_empty() {
    expect_error(
        "{\"command\": [\"/x\"],\n \"env\": {▶\"\": \"x\"}}",
        "env[\"\"]",
        "must be non-empty and contain neither '=' nor a NUL byte",
    );
}

#[test]
fn env_key_must_not_contain_equals_or_nul() {
    expect_error(
        "{\"command\": [\"/x\"],\n \"env\": {\"OK\": \"1\", ▶\"A=B\": \"x\"}}",
        "env[\"A=B\"]",
        "invalid variable name \"A=B\"",
    );
    expect_error(
        "{\"command\": [\"/x\"],\n \"env\": {▶\"A\\u0000\": \"x\"}}",
        "env[\"A\\0\"]",
        "NUL",
    );
}

#[test]
fn env_value_must_not_contain_nul() {
    expect_error(
        "{\"command\": [\"/x\"],\n \"env\": {\"A\": ▶\"x\\u0000y\"}}",
        "env.A",
        "must not contain a NUL byte",
    );
}

#[test]
fn env_value_may_contain_equals() {
    let job = parse_ok(r#"{"command": ["/x"], "env": {"OPTS": "a=b=c"}}"#);
    assert_eq!(job.spec.env["OPTS"], "a=b=c");
}

#[test]
fn working_dir_must_be_absolute() {
    expect_error(
        "{\"command\": [\"/x\"],\n  \"working_dir\": ▶\"www\"}",
        "working_dir",
        "invalid working directory \"www\": must be an absolute path",
    );
}

#[test]
fn hostname_must_be_valid() {
    for bad in ["", "web_1", "web 1", "wéb", &"h".repeat(65)] {
        let text = format!("{{\"command\": [\"/x\"], \"hostname\": ▶{bad:?}}}");
        expect_error(
            &text,
            "hostname",
            "must be 1 to 64 characters of letters, digits, '-' and '.'",
        );
    }
    let job = parse_ok(&format!(
        r#"{{"command": ["/x"], "hostname": "{}"}}"#,
        "h".repeat(64)
    ));
    assert_eq!(job.spec.hostname.as_deref().map(str::len), Some(64));
    parse_ok(r#"{"command": ["/x"], "hostname": "web-1.example"}"#);
}

#[test]
fn user_accepts_ids_and_names() {
    for user in [
        "0",
        "1000",
        "1000:1000",
        "nobody",
        "www-data:www-data",
        "_apt",
        "1000:users",
    ] {
        let job = parse_ok(&format!(r#"{{"command": ["/x"], "user": "{user}"}}"#));
        assert_eq!(job.spec.user.as_deref(), Some(user));
    }
}

#[test]
fn user_rejects_malformed() {
    for bad in [
        "",
        ":",
        "1000:",
        ":1000",
        "a:b:c",
        "4294967295",
        "99999999999",
        "-1",
        "1x",
        "a b",
    ] {
        let text = format!("{{\"command\": [\"/x\"], \"user\": ▶{bad:?}}}");
        expect_error(&text, "user", "expected USER or USER:GROUP");
    }
}

#[test]
fn memory_minimum_is_1m() {
    expect_error(
        "{\"command\": [\"/x\"],\n  \"resources\": {\"memory\": ▶\"512K\"}}",
        "resources.memory",
        "memory 512K is below the minimum of 1M",
    );
    parse_ok(r#"{"command": ["/x"], "resources": {"memory": "1M"}}"#);
}

#[test]
fn memory_swap_requires_memory() {
    expect_error(
        "{\"command\": [\"/x\"],\n  \"resources\": {\"memory_swap\": ▶\"128M\"}}",
        "resources.memory_swap",
        "memory_swap requires resources.memory",
    );
}

#[test]
fn memory_swap_at_least_memory() {
    expect_error(
        "{\"command\": [\"/x\"],\n  \"resources\": {\"memory\": \"128M\", \"memory_swap\": ▶\"64M\"}}",
        "resources.memory_swap",
        "memory_swap 64M is below memory 128M",
    );
    parse_ok(r#"{"command": ["/x"], "resources": {"memory": "128M", "memory_swap": "128M"}}"#);
}

#[test]
fn cpus_must_be_positive() {
    for bad in ["0", "-1", "0.0"] {
        let text = format!("{{\"command\": [\"/x\"], \"resources\": {{\"cpus\": ▶{bad}}}}}");
        expect_error(
            &text,
            "resources.cpus",
            "must be greater than 0 (allowed: 0.01 to 2",
        );
    }
}

#[test]
fn cpus_minimum_gives_1ms_quota() {
    expect_error(
        "{\"command\": [\"/x\"], \"resources\": {\"cpus\": ▶0.005}}",
        "resources.cpus",
        "below the minimum of 0.01, because its CFS quota per 100ms period would be under the \
         kernel's 1ms minimum",
    );
    parse_ok(r#"{"command": ["/x"], "resources": {"cpus": 0.01}}"#);
}

#[test]
fn cpus_at_most_host_count() {
    expect_error(
        "{\"command\": [\"/x\"], \"resources\": {\"cpus\": ▶2.5}}",
        "resources.cpus",
        "more than the host has (allowed: 0.01 to 2, the number of online CPUs)",
    );
    parse_ok(r#"{"command": ["/x"], "resources": {"cpus": 2}}"#);
}

#[test]
fn cpu_weight_range() {
    for bad in [0, 10_001] {
        let text = format!("{{\"command\": [\"/x\"], \"resources\": {{\"cpu_weight\": ▶{bad}}}}}");
        expect_error(
            &text,
            "resources.cpu_weight",
            &format!("weight {bad} is out of range: allowed 1 to 10000"),
        );
    }
    parse_ok(r#"{"command": ["/x"], "resources": {"cpu_weight": 1}}"#);
    parse_ok(r#"{"command": ["/x"], "resources": {"cpu_weight": 10000}}"#);
}

#[test]
fn cpu_weight_negative_names_range() {
    expect_error(
        "{\"command\": [\"/x\"], \"resources\": {\"cpu_weight\": ▶-5}}",
        "resources.cpu_weight",
        "cpu_weight -5 is out of range: allowed 1 to 10000",
    );
}

#[test]
fn cpuset_syntax() {
    for bad in ["a", "0-", "1-0", "0,,1"] {
        let text = format!("{{\"command\": [\"/x\"], \"resources\": {{\"cpuset\": ▶{bad:?}}}}}");
        expect_error(&text, "resources.cpuset", "invalid CPU list");
    }
    expect_error(
        "{\"command\": [\"/x\"], \"resources\": {\"cpuset\": ▶\"\"}}",
        "resources.cpuset",
        "must name at least one CPU",
    );
    let job = parse_ok(r#"{"command": ["/x"], "resources": {"cpuset": "0-1"}}"#);
    assert_eq!(job.spec.resources.cpuset.as_deref(), Some("0-1"));
}

#[test]
fn cpuset_cpus_must_be_online() {
    expect_error(
        "{\"command\": [\"/x\"], \"resources\": {\"cpuset\": ▶\"0,2\"}}",
        "resources.cpuset",
        "CPU 2 in cpuset \"0,2\" is not online (online CPUs: 0-1)",
    );
}

#[test]
fn pids_at_least_one() {
    expect_error(
        "{\"command\": [\"/x\"], \"resources\": {\"pids\": ▶0}}",
        "resources.pids",
        "below the minimum of 1",
    );
    parse_ok(r#"{"command": ["/x"], "resources": {"pids": 1}}"#);
}

#[test]
fn pids_with_init_at_least_two() {
    expect_error(
        "{\"command\": [\"/x\"], \"init\": true, \"resources\": {\"pids\": ▶1}}",
        "resources.pids",
        "pids 1 leaves no process for the command with init true",
    );
    parse_ok(r#"{"command": ["/x"], "init": true, "resources": {"pids": 2}}"#);
}

#[test]
fn pids_at_most_kernel_limit() {
    expect_error(
        "{\"command\": [\"/x\"], \"resources\": {\"pids\": ▶4194305}}",
        "resources.pids",
        "pids 4194305 is above the kernel's maximum of 4194304",
    );
    parse_ok(r#"{"command": ["/x"], "resources": {"pids": 4194304}}"#);
}

#[test]
fn huge_sizes_and_durations_rejected() {
    expect_error(
        "{\"command\": [\"/x\"], \"resources\": {\"memory\": ▶99999999999999999999999}}",
        "resources.memory",
        "is too large: the maximum is 9223372036854775807 bytes",
    );
    expect_error(
        "{\"command\": [\"/x\"], \"logs\": {\"max_size\": ▶\"9999999999G\"}}",
        "logs.max_size",
        "\"9999999999G\" is too large",
    );
    expect_error(
        "{\"command\": [\"/x\"], \"stop\": {\"timeout\": ▶\"5000000000000h\"}}",
        "stop.timeout",
        "duration \"5000000000000h\" is too long: the maximum is 8760h",
    );
}

#[test]
fn io_weight_range() {
    for bad in [0, 10_001] {
        let text =
            format!("{{\"command\": [\"/x\"], \"resources\": {{\"io\": {{\"weight\": ▶{bad}}}}}}}");
        expect_error(
            &text,
            "resources.io.weight",
            "is out of range: allowed 1 to 10000",
        );
    }
}

#[test]
fn io_device_must_be_under_dev() {
    for bad in ["sda", "/sys/block/sda", "/dev/", "/dev/../etc/passwd"] {
        let text = format!(
            "{{\"command\": [\"/x\"],\n \"resources\": {{\"io\": {{\"read_bps\": {{▶{bad:?}: \"1M\"}}}}}}}}"
        );
        let field = if bad == "sda" {
            "resources.io.read_bps.sda".to_string()
        } else {
            format!("resources.io.read_bps[{bad:?}]")
        };
        expect_error(&text, &field, "must be an absolute path under /dev");
    }
}

#[test]
fn io_limits_must_be_positive() {
    expect_error(
        "{\"command\": [\"/x\"],\n \"resources\": {\"io\": {\"write_bps\": {\"/dev/vda\": ▶0}}}}",
        "resources.io.write_bps[\"/dev/vda\"]",
        "write_bps limit 0 must be greater than 0",
    );
    expect_error(
        "{\"command\": [\"/x\"],\n \"resources\": {\"io\": {\"read_iops\": {\"/dev/vda\": ▶0}}}}",
        "resources.io.read_iops[\"/dev/vda\"]",
        "read_iops limit 0 must be greater than 0",
    );
    expect_error(
        "{\"command\": [\"/x\"],\n \"resources\": {\"io\": {\"write_iops\": {\"/dev/vda\": ▶0}}}}",
        "resources.io.write_iops[\"/dev/vda\"]",
        "must be greater than 0",
    );
}

#[test]
fn ports_host_must_parse() {
    for bad in ["8080", "localhost:8080", "127.0.0.1", "::1:8080"] {
        let text = format!(
            "{{\"command\": [\"/x\"],\n \"ports\": [{{\"host\": ▶{bad:?}, \"container\": 80}}]}}"
        );
        expect_error(&text, "ports[0].host", "expected IP:PORT");
    }
    let job =
        parse_ok(r#"{"command": ["/x"], "ports": [{"host": "[::1]:8080", "container": 80}]}"#);
    assert_eq!(job.spec.ports[0].host, "[::1]:8080");
}

#[test]
fn ports_host_rejects_multicast_and_broadcast() {
    for bad in [
        "224.0.0.1:80",
        "239.255.255.250:80",
        "255.255.255.255:80",
        "[ff02::1]:80",
    ] {
        let text = format!(
            "{{\"command\": [\"/x\"],\n \"ports\": [{{\"host\": ▶{bad:?}, \"container\": 80}}]}}"
        );
        expect_error(
            &text,
            "ports[0].host",
            "is a multicast or broadcast address, which never receives TCP connections",
        );
    }
}

#[test]
fn ports_host_accepts_unicast_addresses() {
    for host in [
        "0.0.0.0:8080",
        "[::]:8080",
        "192.0.2.10:8080",
        "[2001:db8::1]:8080",
    ] {
        let text =
            format!(r#"{{"command": ["/x"], "ports": [{{"host": {host:?}, "container": 80}}]}}"#);
        let job = parse_ok(&text);
        assert_eq!(job.spec.ports[0].host, host);
    }
}

#[test]
fn ports_host_port_nonzero() {
    expect_error(
        "{\"command\": [\"/x\"],\n \"ports\": [{\"host\": ▶\"127.0.0.1:0\", \"container\": 80}]}",
        "ports[0].host",
        "host port 0 in \"127.0.0.1:0\" is out of range: allowed 1 to 65535",
    );
}

#[test]
fn ports_host_errors_name_the_wrong_part() {
    let cases = [
        (
            "127.0.0.1:70000",
            "host port 70000 in \"127.0.0.1:70000\" is out of range: allowed 1 to 65535",
        ),
        (
            "[::1]:65536",
            "host port 65536 in \"[::1]:65536\" is out of range: allowed 1 to 65535",
        ),
        (
            "127.0.0.1",
            "invalid host address \"127.0.0.1\": the port is missing; expected IP:PORT, such as \
             \"127.0.0.1:8080\" or \"[::1]:8080\"",
        ),
        (
            "[::1]",
            "invalid host address \"[::1]\": the port is missing; expected IP:PORT, such as \
             \"127.0.0.1:8080\" or \"[::1]:8080\"",
        ),
        (
            "localhost:8080",
            "invalid host address \"localhost:8080\": \"localhost\" is not an IP address (host \
             names are not resolved); expected IP:PORT, such as \"127.0.0.1:8080\" or \
             \"[::1]:8080\"",
        ),
        (
            "127.0.0.1:http",
            "invalid host address \"127.0.0.1:http\": expected IP:PORT, such as \
             \"127.0.0.1:8080\" or \"[::1]:8080\"",
        ),
    ];
    for (host, message) in cases {
        let text = format!(
            "{{\"command\": [\"/x\"],\n \"ports\": [{{\"host\": ▶{host:?}, \"container\": 80}}]}}"
        );
        expect_error(&text, "ports[0].host", message);
    }
}

#[test]
fn ports_container_port_nonzero() {
    expect_error(
        "{\"command\": [\"/x\"],\n \"ports\": [{\"host\": \"127.0.0.1:80\", \"container\": ▶0}]}",
        "ports[0].container",
        "container port 0 is out of range: allowed 1 to 65535",
    );
    expect_error(
        "{\"command\": [\"/x\"],\n \"ports\": [{\"host\": \"127.0.0.1:80\", \"container\": ▶70000}]}",
        "ports[0].container",
        "container port 70000 is out of range: allowed 1 to 65535",
    );
}

#[test]
fn ports_reject_duplicate_host_address() {
    expect_error(
        "{\"command\": [\"/x\"], \"ports\": [\n  {\"host\": \"127.0.0.1:80\", \"container\": 80},\n  \
         {\"host\": ▶\"127.0.0.1:80\", \"container\": 81}]}",
        "ports[1].host",
        "duplicate host address 127.0.0.1:80: ports[0] already uses it",
    );
    parse_ok(
        r#"{"command": ["/x"], "ports": [{"host": "127.0.0.1:80", "container": 80},
           {"host": "127.0.0.2:80", "container": 80}]}"#,
    );
}

#[test]
fn ports_need_loopback_network() {
    expect_error(
        "{\"command\": [\"/x\"], \"network\": \"none\",\n \"ports\": ▶[{\"host\": \"127.0.0.1:80\", \"container\": 80}]}",
        "ports",
        "published ports need \"network\": \"loopback\": with \"network\": \"none\" no interface",
    );
    expect_error(
        "{\"command\": [\"/x\"], \"network\": \"host\",\n \"ports\": ▶[{\"host\": \"127.0.0.1:80\", \"container\": 80}]}",
        "ports",
        "needs no relay; remove \"ports\"",
    );
    parse_ok(r#"{"command": ["/x"], "network": "host"}"#);
    parse_ok(r#"{"command": ["/x"], "network": "none", "ports": []}"#);
}

#[test]
fn mounts_target_must_be_absolute() {
    expect_error(
        "{\"command\": [\"/x\"],\n \"mounts\": [{\"type\": \"tmpfs\", \"target\": ▶\"tmp\"}]}",
        "mounts[0].target",
        "must be an absolute path inside the container",
    );
    expect_error(
        "{\"command\": [\"/x\"],\n \"mounts\": [{\"type\": \"tmpfs\", \"target\": ▶\"/a/../b\"}]}",
        "mounts[0].target",
        "must not contain \"..\"",
    );
}

#[test]
fn mounts_target_not_root() {
    for root in ["/", "//", "/./"] {
        let text = format!(
            "{{\"command\": [\"/x\"],\n \"mounts\": [{{\"type\": \"tmpfs\", \"target\": ▶{root:?}}}]}}"
        );
        expect_error(&text, "mounts[0].target", "must not be \"/\"");
    }
}

#[test]
fn mounts_reject_duplicate_target() {
    expect_error(
        "{\"command\": [\"/x\"], \"mounts\": [\n  {\"type\": \"tmpfs\", \"target\": \"/data\"},\n  \
         {\"type\": \"bind\", \"source\": \"/srv\", \"target\": ▶\"/data/\"}]}",
        "mounts[1].target",
        "duplicate mount target \"/data\": mounts[0] already uses it",
    );
}

#[test]
fn mounts_bind_source_must_be_absolute() {
    expect_error(
        "{\"command\": [\"/x\"],\n \"mounts\": [{\"type\": \"bind\", \"source\": ▶\"srv\", \"target\": \"/w\"}]}",
        "mounts[0].source",
        "must be an absolute host path",
    );
}

#[test]
fn mounts_tmpfs_size_positive() {
    expect_error(
        "{\"command\": [\"/x\"],\n \"mounts\": [{\"type\": \"tmpfs\", \"target\": \"/t\", \"size\": ▶0}]}",
        "mounts[0].size",
        "tmpfs size 0 must be greater than 0",
    );
}

#[test]
fn stop_signal_must_not_be_sigstop() {
    for name in ["SIGSTOP", "STOP", "stop"] {
        let text = format!("{{\"command\": [\"/x\"],\n \"stop\": {{\"signal\": ▶\"{name}\"}}}}");
        expect_error(
            &text,
            "stop.signal",
            "SIGSTOP suspends the job instead of ending it",
        );
    }
    // A signal whose default action is to ignore it can still end a
    // program that handles it, as SIGWINCH ends Apache httpd gracefully.
    let handled = parse("{\"command\": [\"/x\"], \"stop\": {\"signal\": \"WINCH\"}}").unwrap();
    assert_eq!(handled.spec.stop.signal, "SIGWINCH");
}

#[test]
fn stop_signal_must_be_known() {
    expect_error(
        "{\"command\": [\"/x\"],\n \"stop\": {\"signal\": ▶\"SIGTREM\"}}",
        "stop.signal",
        "unknown signal \"SIGTREM\": did you mean SIGTERM?",
    );
    expect_error(
        "{\"command\": [\"/x\"],\n \"stop\": {\"signal\": ▶\"usr\"}}",
        "stop.signal",
        "unknown signal \"usr\": did you mean SIGUSR1?",
    );
    // A word that only shares letters with a short name gets no guess.
    for far in ["SIGBOGUS", "bogus", "SIGNAL"] {
        let text = format!("{{\"command\": [\"/x\"], \"stop\": {{\"signal\": \"{far}\"}}}}");
        let error = parse(&text).unwrap_err().to_string();
        assert!(error.contains("unknown signal"), "{far}: {error}");
        assert!(!error.contains("did you mean"), "{far}: {error}");
    }
    expect_error(
        "{\"command\": [\"/x\"],\n \"stop\": {\"signal\": ▶\"15\"}}",
        "stop.signal",
        "expected a Linux signal name such as SIGTERM",
    );
}

#[test]
fn stop_signal_stored_canonical() {
    for (input, canonical) in [
        ("term", "SIGTERM"),
        ("SIGINT", "SIGINT"),
        ("Quit", "SIGQUIT"),
        ("iot", "SIGABRT"),
    ] {
        let job = parse_ok(&format!(
            r#"{{"command": ["/x"], "stop": {{"signal": "{input}"}}}}"#
        ));
        assert_eq!(job.spec.stop.signal, canonical);
    }
    assert_eq!(
        parse_ok(r#"{"command": ["/x"]}"#).spec.stop.signal,
        "SIGTERM"
    );
}

#[test]
fn stop_timeout_positive() {
    expect_error(
        "{\"command\": [\"/x\"],\n \"stop\": {\"timeout\": ▶\"0s\"}}",
        "stop.timeout",
        "stop.timeout: 0 is not allowed: the duration must be greater than 0",
    );
}

#[test]
fn restart_backoff_initial_positive() {
    expect_error(
        "{\"command\": [\"/x\"],\n \"restart\": {\"backoff\": {\"initial\": ▶0}}}",
        "restart.backoff.initial",
        "must be greater than 0",
    );
}

#[test]
fn restart_backoff_max_positive() {
    expect_error(
        "{\"command\": [\"/x\"],\n \"restart\": {\"backoff\": {\"max\": ▶0}}}",
        "restart.backoff.max",
        "restart.backoff.max: 0 is not allowed",
    );
}

#[test]
fn restart_backoff_initial_at_most_max() {
    expect_error(
        "{\"command\": [\"/x\"],\n \"restart\": {\"backoff\": {\"initial\": ▶\"40s\", \"max\": \"30s\"}}}",
        "restart.backoff.initial",
        "initial backoff 40s is greater than restart.backoff.max 30s",
    );
    // The default max (30s) applies when only initial is set.
    expect_error(
        "{\"command\": [\"/x\"],\n \"restart\": {\"backoff\": {\"initial\": ▶\"1m\"}}}",
        "restart.backoff.initial",
        "greater than restart.backoff.max 30s",
    );
}

#[test]
fn restart_window_positive() {
    expect_error(
        "{\"command\": [\"/x\"],\n \"restart\": {\"window\": ▶\"0ms\"}}",
        "restart.window",
        "must be greater than 0",
    );
}

#[test]
fn logs_max_size_at_least_4k() {
    expect_error(
        "{\"command\": [\"/x\"],\n \"logs\": {\"max_size\": ▶4095}}",
        "logs.max_size",
        "below the minimum of 4K",
    );
    parse_ok(r#"{"command": ["/x"], "logs": {"max_size": "4K"}}"#);
}

#[test]
fn logs_keep_at_most_1000() {
    expect_error(
        "{\"command\": [\"/x\"],\n \"logs\": {\"keep\": ▶4294967295}}",
        "logs.keep",
        "above the maximum of 1000",
    );
    expect_error(
        "{\"command\": [\"/x\"],\n \"logs\": {\"keep\": ▶1001}}",
        "logs.keep",
        "above the maximum of 1000",
    );
    parse_ok(r#"{"command": ["/x"], "logs": {"keep": 1000}}"#);
    parse_ok(r#"{"command": ["/x"], "logs": {"keep": 0}}"#);
}

#[test]
fn labels_key_non_empty() {
    expect_error(
        "{\"command\": [\"/x\"],\n \"labels\": {\"team\": \"web\", ▶\"\": \"x\"}}",
        "labels[\"\"]",
        "label name must not be empty",
    );
}

#[test]
fn validation_error_without_value_points_at_parent() {
    // memory_swap is checked against memory, which is absent: the error is on
    // memory_swap, which exists. A missing command has no value at all and is
    // placed at the document start.
    let error = parse("\n\n{\"image\": \"host\"}").unwrap_err();
    assert_eq!(error.field(), Some("command"));
    assert_eq!((error.line(), error.column()), (Some(3), Some(1)));
}

#[test]
fn design_example_is_valid() {
    let text = r#"{
      "image": "busybox",
      "command": ["/bin/httpd", "-f", "-p", "8080", "-h", "/www"],
      "env": {"GREETING": "hello world", "OPTS": "a=b=c"},
      "working_dir": "/www",
      "user": "1000:1000",
      "hostname": "web",
      "resources": {
        "memory": "128M", "memory_swap": "128M",
        "cpus": 0.5, "cpu_weight": 100, "cpuset": "0",
        "pids": 64,
        "io": {"weight": 100, "read_bps": {"/dev/vda": "20M"}, "write_iops": {"/dev/vda": 500}}
      },
      "network": "loopback",
      "ports": [{"host": "127.0.0.1:8080", "container": 8080}],
      "mounts": [
        {"type": "bind", "source": "/srv/www", "target": "/www", "readonly": true},
        {"type": "tmpfs", "target": "/tmp", "size": "16M"}
      ],
      "readonly_rootfs": false,
      "init": true,
      "restart": {"policy": "on-failure", "max_restarts": 5, "window": "60s",
                  "backoff": {"initial": "1s", "max": "30s"}},
      "start_seconds": 1,
      "stop": {"signal": "SIGTERM", "timeout": "10s"},
      "autostart": true,
      "logs": {"max_size": "10M", "keep": 3},
      "labels": {"team": "web"}
    }"#;
    let job = parse_ok(text);
    assert_eq!(job.name, "web");
    assert_eq!(
        job.spec.resources.memory.map(|size| size.bytes()),
        Some(128 << 20)
    );
    assert_eq!(
        job.spec.resources.io.as_ref().unwrap().write_iops["/dev/vda"],
        500
    );
    assert_eq!(
        job.spec.mounts[1],
        MountSpec::Tmpfs {
            target: "/tmp".into(),
            size: Some(corral_config::ByteSize(16 << 20)),
            readonly: false
        }
    );
}
