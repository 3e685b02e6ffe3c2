//! The files in `packaging/`: completion scripts and man pages match the
//! command-line definitions, the systemd units carry the settings that
//! live restore needs and pass `systemd-analyze verify`, and install.sh
//! puts everything in place. They need no root.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use clap::{CommandFactory, Parser};
use corral_supervisor::cli::{
    ctl, daemon, monitor, packaging_files, GeneratedFile, PackagedBinary,
};

fn packaging_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the supervisor crate is inside the workspace")
        .join("packaging")
}

/// Files below `dir`, relative to it.
fn files_below(dir: &Path) -> BTreeSet<PathBuf> {
    let mut files = BTreeSet::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        for entry in fs::read_dir(&current).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else {
                files.insert(path.strip_prefix(dir).unwrap().to_path_buf());
            }
        }
    }
    files
}

/// Returns every binary whose man pages are in `packaging/man`, with its
/// man section, and whether its completions are in `packaging/completions`.
fn packaged_binaries() -> Vec<PackagedBinary> {
    vec![
        PackagedBinary {
            command: ctl::Cli::command(),
            section: "1",
            completions: true,
        },
        PackagedBinary {
            command: daemon::Cli::command(),
            section: "8",
            completions: true,
        },
        PackagedBinary {
            command: monitor::Cli::command(),
            section: "8",
            completions: false,
        },
        PackagedBinary {
            command: corral_runtime::cli::Cli::command(),
            section: "8",
            completions: true,
        },
        PackagedBinary {
            // clap names the command after the package, corral-metrics-agent,
            // which `metrics-agent --version` prints. Pages and completions
            // carry the name of the installed binary.
            command: corral_metrics_agent::cli::Cli::command().name("metrics-agent"),
            section: "8",
            completions: true,
        },
    ]
}

fn generated_files() -> Vec<GeneratedFile> {
    let mut files = packaging_files(packaged_binaries());
    files.push(corral_supervisor::cli::jobpage::job_file_page());
    files
}

#[test]
fn committed_packaging_is_current() {
    let root = packaging_dir();
    let generated = generated_files();
    if std::env::var_os("UPDATE_PACKAGING").is_some() {
        for section in ["completions", "man"] {
            let _ = fs::remove_dir_all(root.join(section));
        }
        for file in &generated {
            let path = root.join(&file.path);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(&path, &file.content).unwrap();
        }
        return;
    }
    let regenerate = "regenerate them with \
         `UPDATE_PACKAGING=1 cargo test -p corral-supervisor --test packaging` and commit the result";
    for file in &generated {
        let path = root.join(&file.path);
        let committed = fs::read(&path).unwrap_or_default();
        assert!(
            committed == file.content,
            "{} differs from what the command-line definitions generate; {regenerate}",
            path.display()
        );
    }
    let expected: BTreeSet<PathBuf> = generated.into_iter().map(|file| file.path).collect();
    let mut committed = BTreeSet::new();
    for section in ["completions", "man"] {
        for file in files_below(&root.join(section)) {
            committed.insert(Path::new(section).join(file));
        }
    }
    let stale: Vec<&PathBuf> = committed.difference(&expected).collect();
    assert!(
        stale.is_empty(),
        "stale generated files {stale:?}; {regenerate}"
    );
}

#[test]
fn every_binary_gets_a_page() {
    let paths: Vec<String> = generated_files()
        .iter()
        .map(|file| file.path.display().to_string())
        .collect();
    for expected in [
        "completions/bash/supervisorctl",
        "completions/bash/supervisord",
        "completions/bash/corral",
        "completions/zsh/_corral",
        "completions/fish/corral.fish",
        "completions/bash/metrics-agent",
        "completions/zsh/_metrics-agent",
        "completions/fish/metrics-agent.fish",
        "man/supervisorctl.1",
        "man/supervisorctl-top.1",
        "man/supervisord.8",
        "man/corral-monitor.8",
        "man/corral.8",
        "man/corral-run.8",
        "man/corral-exec.8",
        "man/corral-image.8",
        "man/corral-image-import.8",
        "man/metrics-agent.8",
    ] {
        assert!(
            paths.iter().any(|path| path == expected),
            "{expected} missing: {paths:?}"
        );
    }
    let monitor_completions = paths
        .iter()
        .any(|path| path.starts_with("completions/") && path.contains("corral-monitor"));
    assert!(
        !monitor_completions,
        "corral-monitor is started only by supervisord: {paths:?}"
    );
    assert!(
        !paths.iter().any(|path| path.contains("shim")),
        "`corral shim` is hidden: {paths:?}"
    );
    assert!(!paths.iter().any(|path| path.contains("help")), "{paths:?}");
}

#[test]
fn agent_page_names_the_binary() {
    let files = generated_files();
    let page = files
        .iter()
        .find(|file| file.path == Path::new("man/metrics-agent.8"))
        .unwrap();
    let text = String::from_utf8_lossy(&page.content);
    assert!(text.contains(".TH metrics-agent 8"), "{text:.400}");
    assert!(text.contains("\\fBmetrics\\-agent\\fR"), "{text:.800}");
    assert!(!text.contains("corral\\-metrics\\-agent"), "{text}");
}

#[test]
fn completions_command_prints_packaged_scripts() {
    for (shell, file) in [
        ("bash", "bash/supervisorctl"),
        ("zsh", "zsh/_supervisorctl"),
        ("fish", "fish/supervisorctl.fish"),
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_supervisorctl"))
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "supervisorctl completions {shell}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let packaged = fs::read(packaging_dir().join("completions").join(file)).unwrap();
        assert!(
            output.stdout == packaged,
            "`supervisorctl completions {shell}` differs from packaging/completions/{file}"
        );
    }
}

/// Reads the settings of one unit file, `KEY=VALUE` per line.
fn unit_settings(name: &str) -> Vec<(String, String)> {
    let text = fs::read_to_string(packaging_dir().join("systemd").join(name)).unwrap();
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.starts_with('['))
        .filter_map(|line| line.split_once('='))
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect()
}

fn setting<'a>(settings: &'a [(String, String)], key: &str) -> Option<&'a str> {
    settings
        .iter()
        .find(|(name, _)| name == key)
        .map(|(_, value)| value.as_str())
}

#[test]
fn supervisord_unit_keeps_jobs_across_restarts() {
    let settings = unit_settings("supervisord.service");
    for (key, expected) in [
        ("Delegate", "yes"),
        ("KillMode", "process"),
        // A clean exit after `supervisorctl shutdown` must not start the
        // daemon and its jobs again.
        ("Restart", "on-failure"),
        ("TasksMax", "infinity"),
        // The jobs get the soft limit, and supervisord raises its own to
        // the hard one.
        ("LimitNOFILE", "1024:1048576"),
        ("RuntimeDirectory", "corral"),
        ("RuntimeDirectoryPreserve", "yes"),
        ("ExecReload", "/bin/kill -HUP $MAINPID"),
        ("WantedBy", "multi-user.target"),
    ] {
        assert_eq!(setting(&settings, key), Some(expected), "{key}");
    }
    let exec_start = setting(&settings, "ExecStart").unwrap();
    let arguments: Vec<&str> = exec_start.split_whitespace().collect();
    assert_eq!(arguments[0], "/usr/local/bin/supervisord");
    let cli = daemon::Cli::try_parse_from(&arguments).unwrap();
    assert!(cli.live_restore, "KillMode=process needs --live-restore");
    assert_eq!(
        cli.run_dir,
        Path::new("/run/corral"),
        "RuntimeDirectory=corral"
    );
    assert_eq!(
        cli.data_dir,
        Path::new("/var/lib/corral"),
        "StateDirectory=corral"
    );
    assert_eq!(
        cli.log_dir,
        Path::new("/var/log/corral"),
        "LogsDirectory=corral"
    );
    let exec_stop = setting(&settings, "ExecStop").unwrap();
    assert!(exec_stop.contains("supervisorctl shutdown"), "{exec_stop}");
    assert!(
        exec_stop.starts_with("-/bin/sh"),
        "a shutdown that needed SIGKILL would fail the unit: {exec_stop}"
    );
}

#[test]
fn metrics_agent_unit_restarts_and_reads_only() {
    let settings = unit_settings("metrics-agent.service");
    assert_eq!(setting(&settings, "Restart"), Some("on-failure"));
    assert_eq!(setting(&settings, "ProtectSystem"), Some("strict"));
    assert_eq!(setting(&settings, "After"), Some("supervisord.service"));
    let exec_start = setting(&settings, "ExecStart").unwrap();
    assert!(
        exec_start.starts_with("/usr/local/bin/metrics-agent "),
        "{exec_start}"
    );
    assert!(
        exec_start.contains("--supervisor-socket /run/corral/supervisor.sock"),
        "{exec_start}"
    );
}

#[test]
fn completion_scripts_parse() {
    let root = packaging_dir().join("completions");
    for (shell, dir) in [("bash", "bash"), ("zsh", "zsh"), ("fish", "fish")] {
        if Command::new(shell).arg("-c").arg("true").output().is_err() {
            eprintln!("SKIP completion_scripts_parse for {shell}: {shell} is not installed");
            continue;
        }
        for file in files_below(&root.join(dir)) {
            let path = root.join(dir).join(&file);
            let output = Command::new(shell).arg("-n").arg(&path).output().unwrap();
            assert!(
                output.status.success(),
                "{shell} -n {}: {}",
                path.display(),
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }
}

#[test]
fn units_pass_systemd_analyze() {
    let Ok(version) = Command::new("systemd-analyze").arg("--version").output() else {
        eprintln!("SKIP units_pass_systemd_analyze: systemd-analyze is not installed");
        return;
    };
    assert!(version.status.success());
    let scratch = tempfile::tempdir().unwrap();
    let bin = scratch.path().join("bin");
    fs::create_dir(&bin).unwrap();
    let supervisord = Path::new(env!("CARGO_BIN_EXE_supervisord"));
    std::os::unix::fs::symlink(supervisord, bin.join("supervisord")).unwrap();
    std::os::unix::fs::symlink(
        env!("CARGO_BIN_EXE_supervisorctl"),
        bin.join("supervisorctl"),
    )
    .unwrap();
    // metrics-agent belongs to another crate and may not be built yet;
    // verify only checks that the file is executable.
    let agent = supervisord.with_file_name("metrics-agent");
    if agent.is_file() {
        std::os::unix::fs::symlink(&agent, bin.join("metrics-agent")).unwrap();
    } else {
        fs::copy("/bin/true", bin.join("metrics-agent")).unwrap();
    }
    let mut units = Vec::new();
    for unit in ["supervisord.service", "metrics-agent.service"] {
        let text = fs::read_to_string(packaging_dir().join("systemd").join(unit)).unwrap();
        let path = scratch.path().join(unit);
        fs::write(
            &path,
            text.replace("/usr/local/bin", &bin.display().to_string()),
        )
        .unwrap();
        units.push(path);
    }
    let output = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .args(&units)
        .output()
        .unwrap();
    assert!(
        output.status.success() && output.stderr.is_empty(),
        "systemd-analyze verify: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Returns where install.sh puts a generated file, relative to
/// PREFIX/share: the directories that bash-completion, zsh and fish load
/// completions from, and the man directory of the page's section.
fn install_path(generated: &Path) -> PathBuf {
    let file_name = generated.file_name().unwrap();
    let directory = match generated.parent().unwrap().to_str().unwrap() {
        "completions/bash" => PathBuf::from("bash-completion/completions"),
        "completions/zsh" => PathBuf::from("zsh/site-functions"),
        "completions/fish" => PathBuf::from("fish/vendor_completions.d"),
        "man" => {
            let section = generated.extension().unwrap().to_str().unwrap();
            Path::new("man").join(format!("man{section}"))
        }
        other => panic!("no install directory for packaging/{other}"),
    };
    directory.join(file_name)
}

/// Runs install.sh with `args` and no build directory in place.
fn run_install_script(args: &[&str]) -> std::process::Output {
    Command::new("sh")
        .arg(packaging_dir().join("install.sh"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn install_script_help_and_bad_options() {
    for flag in ["--help", "-h"] {
        let help = run_install_script(&[flag]);
        assert_eq!(help.status.code(), Some(0), "{flag}");
        let text = String::from_utf8_lossy(&help.stdout);
        assert!(text.starts_with("Usage: install.sh"), "{flag}: {text}");
        for word in [
            "BUILD_DIR",
            "PREFIX",
            "DESTDIR",
            "corral, supervisord, supervisorctl",
            "corral-monitor, metrics-agent",
            "supervisord.service, metrics-agent.service",
            "completions of\n                                  corral, supervisord, supervisorctl and",
            "metrics-agent (section 8)",
            "man pages",
            "completions",
        ] {
            assert!(text.contains(word), "{flag} lacks {word}: {text}");
        }
        assert!(help.stderr.is_empty(), "{flag}");
    }

    for args in [&["--bogus"][..], &["-x"], &["a", "b"]] {
        let output = run_install_script(args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let message = String::from_utf8_lossy(&output.stderr);
        assert!(message.contains("Usage: install.sh"), "{args:?}: {message}");
        assert!(output.stdout.is_empty(), "{args:?}");
    }
    let unknown = run_install_script(&["--bogus"]);
    let message = String::from_utf8_lossy(&unknown.stderr);
    assert!(
        message.starts_with("install.sh: unknown option --bogus\n"),
        "{message}"
    );
}

/// Writes a stand-in script for each binary that install.sh installs into
/// `dir/build` and returns that directory.
fn fake_build_dir(dir: &Path) -> PathBuf {
    let build = dir.join("build");
    fs::create_dir(&build).unwrap();
    for binary in [
        "corral",
        "supervisord",
        "supervisorctl",
        "corral-monitor",
        "metrics-agent",
    ] {
        fs::write(build.join(binary), format!("#!/bin/sh\necho {binary}\n")).unwrap();
        let mode = std::os::unix::fs::PermissionsExt::from_mode(0o755);
        fs::set_permissions(build.join(binary), mode).unwrap();
    }
    build
}

/// Returns whether the ELF file at `path` has a `.debug_info` section.
fn has_debug_info(path: &Path) -> bool {
    let output = Command::new("readelf")
        .arg("--section-headers")
        .arg("--wide")
        .arg(path)
        .output()
        .expect("readelf (binutils) runs");
    assert!(output.status.success(), "readelf {}", path.display());
    String::from_utf8_lossy(&output.stdout).contains(" .debug_info ")
}

#[test]
fn install_script_strips_debug_information() {
    // This test's own executable is an ELF file with debug information, as
    // a release build with line tables is.
    let test_binary = std::env::current_exe().unwrap();
    assert!(has_debug_info(&test_binary));
    for (keep_debug, expect_debug) in [(None, false), (Some("1"), true)] {
        let scratch = tempfile::tempdir().unwrap();
        let build = fake_build_dir(scratch.path());
        fs::copy(&test_binary, build.join("supervisord")).unwrap();
        let destination = scratch.path().join("root");
        let mut command = Command::new("sh");
        command
            .arg(packaging_dir().join("install.sh"))
            .arg(&build)
            .env("DESTDIR", &destination)
            .env("PREFIX", "/opt/corral")
            .env_remove("KEEP_DEBUG");
        if let Some(value) = keep_debug {
            command.env("KEEP_DEBUG", value);
        }
        let output = command.output().unwrap();
        assert!(
            output.status.success(),
            "install.sh: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let installed = destination.join("opt/corral/bin/supervisord");
        assert_eq!(
            has_debug_info(&installed),
            expect_debug,
            "KEEP_DEBUG={keep_debug:?}"
        );
        // Symbols stay for backtraces; stand-in scripts are copied as they are.
        let symbols = Command::new("nm").arg(&installed).output().unwrap();
        assert!(symbols.status.success(), "nm {}", installed.display());
        assert!(
            !symbols.stdout.is_empty(),
            "no symbols in {}",
            installed.display()
        );
        let script = fs::read_to_string(destination.join("opt/corral/bin/corral")).unwrap();
        assert_eq!(script, "#!/bin/sh\necho corral\n");
    }
}

#[test]
fn completions_help_names_installed_paths() {
    let scratch = tempfile::tempdir().unwrap();
    let build = fake_build_dir(scratch.path());
    let destination = scratch.path().join("root");
    let output = Command::new("sh")
        .arg(packaging_dir().join("install.sh"))
        .arg(&build)
        .env("DESTDIR", &destination)
        .env_remove("PREFIX")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "install.sh: {}",
        String::from_utf8_lossy(&output.stderr)
    );

    let mut command = ctl::Cli::command();
    let completions = command
        .find_subcommand_mut("completions")
        .expect("supervisorctl has a completions command");
    let help = completions.render_long_help().to_string();
    // Each example redirects the script to a file: `... > PATH`.
    let words: Vec<&str> = help.split_whitespace().collect();
    let paths: Vec<&str> = words
        .windows(2)
        .filter(|pair| pair[0] == ">")
        .map(|pair| pair[1])
        .collect();
    assert_eq!(paths.len(), 3, "{help}");
    for path in paths {
        let installed = destination.join(path.trim_start_matches('/'));
        assert!(
            installed.is_file(),
            "completions --help names {path}, which install.sh does not install"
        );
    }
}

#[test]
fn install_script_places_everything() {
    let scratch = tempfile::tempdir().unwrap();
    let build = fake_build_dir(scratch.path());
    let destination = scratch.path().join("root");
    let output = Command::new("sh")
        .arg(packaging_dir().join("install.sh"))
        .arg(&build)
        .env("DESTDIR", &destination)
        .env("PREFIX", "/opt/corral")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "install.sh: {}",
        String::from_utf8_lossy(&output.stderr)
    );

    for path in [
        "opt/corral/bin/supervisord",
        "opt/corral/bin/corral-monitor",
        "opt/corral/share/bash-completion/completions/supervisorctl",
        "opt/corral/share/zsh/site-functions/_supervisorctl",
        "opt/corral/share/fish/vendor_completions.d/supervisord.fish",
        "opt/corral/share/man/man1/supervisorctl-top.1",
        "opt/corral/share/man/man8/supervisord.8",
        "opt/corral/share/bash-completion/completions/corral",
        "opt/corral/share/zsh/site-functions/_metrics-agent",
        "opt/corral/share/fish/vendor_completions.d/metrics-agent.fish",
        "opt/corral/share/man/man8/corral.8",
        "opt/corral/share/man/man8/corral-image-import.8",
        "opt/corral/share/man/man8/metrics-agent.8",
        "etc/systemd/system/metrics-agent.service",
    ] {
        assert!(destination.join(path).is_file(), "{path} was not installed");
    }
    for file in generated_files() {
        let installed = destination
            .join("opt/corral/share")
            .join(install_path(&file.path));
        let content = fs::read(&installed).unwrap_or_default();
        assert!(
            content == file.content,
            "packaging/{} was not installed as {}",
            file.path.display(),
            installed.display()
        );
    }
    assert!(destination.join("etc/corral/jobs.d").is_dir());
    let unit =
        fs::read_to_string(destination.join("etc/systemd/system/supervisord.service")).unwrap();
    assert!(
        unit.contains("ExecStart=/opt/corral/bin/supervisord --live-restore"),
        "{unit}"
    );
    assert!(!unit.contains("/usr/local/bin"), "{unit}");

    fs::remove_file(build.join("metrics-agent")).unwrap();
    let missing = Command::new("sh")
        .arg(packaging_dir().join("install.sh"))
        .arg(&build)
        .env("DESTDIR", &destination)
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(1));
    let message = String::from_utf8_lossy(&missing.stderr);
    assert!(message.contains("metrics-agent is missing"), "{message}");
    assert!(message.contains("cargo build --release"), "{message}");
}
