//! The packaged bash, zsh and fish completions of supervisorctl against a
//! live supervisord: each shell completes the same command lines and must
//! offer the same words. zsh runs interactively on a pseudo-terminal with
//! its completion system loaded and a TAB typed. bash calls the registered
//! function with the words as bash splits them, and fish runs
//! `complete -C`.
//! They run as root and skip with a SKIP line otherwise, or when the shell
//! is not installed.

mod harness;

use std::collections::BTreeSet;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use corral_supervisor::machine::JobState;
use harness::{shell_job, skip, stderr_of, stdout_of, tool_missing, Daemon};
use serde_json::json;

const SETTLE: Duration = Duration::from_secs(15);

/// Separates the candidates of one command line from the next in a
/// shell's output.
const SEPARATOR: &str = "=== next line ===";

/// The signal names that the first argument of `signal` completes.
const SIGNALS: &str = "HUP INT QUIT ILL TRAP ABRT BUS FPE KILL USR1 SEGV USR2 PIPE ALRM TERM \
                       STKFLT CHLD CONT STOP TSTP TTIN TTOU URG XCPU XFSZ VTALRM PROF WINCH IO \
                       PWR SYS";

/// Job names in the daemon of [`setup`]: two running jobs and an invalid
/// job file whose name has a space.
const NAMES: [&str; 3] = ["bad name", "web", "worker"];

/// A file in the shells' working directory, offered only where a file name
/// is completed. `decoy-2.txt` is there too.
const DECOY: &str = "decoy.txt";

/// A command line, completed at its end, and what must or must not be
/// offered for it.
struct Case {
    line: String,
    expect: Expect,
}

enum Expect {
    /// Exactly these words.
    Exactly(Vec<&'static str>),
    /// None of these words, whatever else is offered.
    Excludes(Vec<&'static str>),
    /// At least this word.
    Includes(&'static str),
}

impl Case {
    fn exactly(line: String, words: &[&'static str]) -> Case {
        let expect = Expect::Exactly(words.to_vec());
        Case { line, expect }
    }

    /// No job name, no `all` and no file name.
    fn nothing_of_ours(line: String) -> Case {
        let mut words = NAMES.to_vec();
        words.extend(["all", DECOY]);
        let expect = Expect::Excludes(words);
        Case { line, expect }
    }
}

fn with_all() -> Vec<&'static str> {
    let mut words = NAMES.to_vec();
    words.push("all");
    words
}

/// The command lines every shell must complete alike, against the daemon
/// listening on `socket`, and against `hung`, which accepts connections
/// and never responds.
fn cases(socket: &str, hung: &str) -> Vec<Case> {
    let at = |rest: &str| format!("supervisorctl --socket {socket} {rest}");
    let signals: Vec<&str> = SIGNALS.split_whitespace().collect();
    vec![
        Case::exactly(at("stop "), &with_all()),
        Case::exactly(at("stop w"), &["web", "worker"]),
        Case::exactly(at("status "), &with_all()),
        Case::exactly(at("restart web "), &with_all()),
        // Commands that reject `all` get the job names alone.
        Case::exactly(at("pid "), &NAMES),
        Case::exactly(at("tail "), &NAMES),
        Case::exactly(at("spec "), &NAMES),
        Case::exactly(at("top "), &NAMES),
        Case::exactly(at("stats "), &NAMES),
        Case::exactly(at("tail -n 5 "), &NAMES),
        // `signal` takes a signal first, then job names or `all`.
        Case::exactly(at("signal "), &signals),
        Case::exactly(at("signal TERM "), &with_all()),
        // The socket may be joined with `=` or follow the command.
        Case::exactly(
            format!("supervisorctl --socket={socket} stop "),
            &with_all(),
        ),
        Case::exactly(
            format!("supervisorctl stop --socket {socket} "),
            &with_all(),
        ),
        // One job name and no more. Other commands and values of options
        // that take a number or a duration get no names and no files.
        Case::nothing_of_ours(at("tail web ")),
        Case::nothing_of_ours(at("pid web ")),
        Case::nothing_of_ours(at("reread ")),
        Case::nothing_of_ours(at("tail -n ")),
        Case::nothing_of_ours(at("stop --timeout ")),
        Case::nothing_of_ours(at("top -d ")),
        Case::nothing_of_ours(at("top -n ")),
        // The socket's value is a file name.
        Case {
            line: format!("supervisorctl stop --socket {socket} --socket "),
            expect: Expect::Includes(DECOY),
        },
        // Without a daemon to ask, or with one that does not respond, there
        // is nothing to offer, not even `all`, which a shell would insert
        // into the line as the only candidate.
        Case::exactly(
            "supervisorctl --socket /nonexistent/supervisor.sock stop ".to_string(),
            &[],
        ),
        Case::exactly(
            "supervisorctl --socket /nonexistent/supervisor.sock tail ".to_string(),
            &[],
        ),
        Case::exactly(format!("supervisorctl --socket {hung} stop "), &[]),
        Case::exactly(format!("supervisorctl --socket {hung} tail "), &[]),
    ]
}

/// Checks the words that `shell` offered for each case.
fn check(shell: &str, cases: &[Case], offered: &[BTreeSet<String>]) {
    assert_eq!(offered.len(), cases.len(), "{shell}: {offered:?}");
    for (case, offered) in cases.iter().zip(offered) {
        match &case.expect {
            Expect::Exactly(words) => {
                let expected: BTreeSet<String> =
                    words.iter().map(|word| word.to_string()).collect();
                assert_eq!(offered, &expected, "{shell}: `{}`", case.line);
            }
            Expect::Excludes(words) => {
                for word in words {
                    assert!(
                        !offered.contains(*word),
                        "{shell}: `{}` offers {word}: {offered:?}",
                        case.line
                    );
                }
            }
            Expect::Includes(word) => {
                assert!(
                    offered.contains(*word),
                    "{shell}: `{}` does not offer {word}: {offered:?}",
                    case.line
                );
            }
        }
    }
}

/// A running daemon with the jobs of [`NAMES`], a socket that accepts
/// connections and never responds, and a working directory for the shells
/// that holds only [`DECOY`] and `decoy-2.txt`.
struct Setup {
    daemon: Daemon,
    scratch: tempfile::TempDir,
    _hung: UnixListener,
}

fn setup() -> Setup {
    let job = shell_job(
        "trap 'exit 0' TERM; while :; do sleep 0.1; done",
        json!({"start_seconds": "300ms", "stop": {"timeout": "10s"}}),
    );
    let daemon = Daemon::start(&[("web", &job), ("worker", &job), ("bad name", "{}")]);
    daemon.wait_for_state("web", JobState::Running, SETTLE);
    daemon.wait_for_state("worker", JobState::Running, SETTLE);
    let scratch = tempfile::tempdir().unwrap();
    std::fs::create_dir(scratch.path().join("cwd")).unwrap();
    // Two files, so that readline lists them instead of inserting one.
    std::fs::write(scratch.path().join("cwd").join(DECOY), "").unwrap();
    std::fs::write(scratch.path().join("cwd").join("decoy-2.txt"), "").unwrap();
    let hung = UnixListener::bind(scratch.path().join("hung.sock")).unwrap();
    Setup {
        daemon,
        scratch,
        _hung: hung,
    }
}

impl Setup {
    fn socket(&self) -> String {
        self.daemon.socket().display().to_string()
    }

    fn hung_socket(&self) -> String {
        self.scratch.path().join("hung.sock").display().to_string()
    }

    fn cases(&self) -> Vec<Case> {
        cases(&self.socket(), &self.hung_socket())
    }

    /// Runs `shell` with `args` in the working directory, with HOME in the
    /// scratch directory and the supervisorctl under test first in PATH,
    /// as the scripts run `supervisorctl` by name. `timeout` ends a shell
    /// that waits for input it never gets. Each completion that queries the
    /// socket that never responds gives up after one second, so a run
    /// that takes 30 s, the default request timeout, fails.
    fn run(&self, shell: &str, args: &[&str]) -> Output {
        let bin_dir = Path::new(env!("CARGO_BIN_EXE_supervisorctl"))
            .parent()
            .unwrap();
        let path = format!(
            "{}:{}",
            bin_dir.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let started = Instant::now();
        let output = Command::new("timeout")
            .args(["120", shell])
            .args(args)
            .current_dir(self.scratch.path().join("cwd"))
            .env("HOME", self.scratch.path())
            .env("PATH", path)
            .env_remove("CORRAL_SUPERVISOR_SOCKET")
            .env_remove("ZDOTDIR")
            .output()
            .unwrap();
        let took = started.elapsed();
        assert!(
            output.status.success(),
            "{shell} {args:?}: {}\n{}",
            output.status,
            stderr_of(&output)
        );
        assert!(
            took < Duration::from_secs(30),
            "{shell} took {took:?}: a completion waited for the socket that never responds"
        );
        output
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.scratch.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    }
}

/// Splits a shell's output at the separator lines into one set of words
/// per command line.
fn split_offers(output: &str) -> Vec<BTreeSet<String>> {
    let mut sets = Vec::new();
    for part in output.split(&format!("{SEPARATOR}\n")).skip(1) {
        let words = part
            .lines()
            .map(|line| line.split('\t').next().unwrap_or_default())
            .filter(|word| !word.is_empty())
            .map(str::to_string)
            .collect();
        sets.push(words);
    }
    sets
}

/// Returns the packaged completion script `file` of `shell`.
fn completion_file(shell: &str, file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../packaging/completions")
        .join(shell)
        .join(file)
}

/// Quotes `word` for a POSIX shell.
fn quoted(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// Splits `line` into words as bash does for completion with its default
/// COMP_WORDBREAKS: at spaces, with `=` a word of its own. A line that
/// ends in a space ends in an empty word, the one being completed.
fn bash_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    for piece in line.split(' ') {
        match piece.split_once('=') {
            Some((option, value)) => words.extend([option, "=", value]),
            None => words.push(piece),
        }
    }
    words.into_iter().map(str::to_string).collect()
}

#[test]
fn bash_completion_offers_job_names() {
    if skip("bash_completion_offers_job_names") {
        return;
    }
    let setup = setup();
    let cases = setup.cases();
    let mut probe = format!(
        "source {}\n",
        quoted(
            &completion_file("bash", "supervisorctl")
                .display()
                .to_string()
        )
    );
    for case in &cases {
        let words = bash_words(&case.line);
        let current = words.len() - 1;
        let previous = if current > 0 { &words[current - 1] } else { "" };
        let list: Vec<String> = words.iter().map(|word| quoted(word)).collect();
        probe.push_str(&format!(
            "echo {SEPARATOR:?}; COMPREPLY=(); COMP_WORDS=({}); COMP_CWORD={current}; \
             COMP_LINE={}; COMP_POINT=${{#COMP_LINE}}; \
             _supervisorctl_jobs supervisorctl {} {} 2>/dev/null; \
             printf '%s\\n' \"${{COMPREPLY[@]}}\"\n",
            list.join(" "),
            quoted(&case.line),
            quoted(&words[current]),
            quoted(previous),
        ));
    }
    let script = setup.write("probe.bash", &probe);
    let output = setup.run("bash", &[&script.display().to_string()]);
    check("bash", &cases, &split_offers(&stdout_of(&output)));

    // Another program of that name, such as Python's supervisorctl, whose
    // status lists programs as text, yields no names and no `all`.
    let other = setup.write(
        "supervisorctl",
        "#!/bin/sh\necho 'web RUNNING pid 1, uptime 0:01:00'\n",
    );
    std::fs::set_permissions(&other, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let other = other.display().to_string();
    let probe = format!(
        "source {}; echo {SEPARATOR:?}; COMP_WORDS=({} stop ''); COMP_CWORD=2; \
         _supervisorctl_jobs supervisorctl '' stop; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        quoted(
            &completion_file("bash", "supervisorctl")
                .display()
                .to_string()
        ),
        quoted(&other),
    );
    let output = setup.run("bash", &["-c", &probe]);
    let offered = split_offers(&stdout_of(&output));
    assert_eq!(offered.len(), 1);
    assert_eq!(offered[0], BTreeSet::new());
}

#[test]
fn fish_completion_offers_job_names() {
    if skip("fish_completion_offers_job_names")
        || tool_missing("fish_completion_offers_job_names", "fish")
    {
        return;
    }
    let setup = setup();
    let cases = setup.cases();
    let mut probe = format!(
        "source {}\n",
        quoted(
            &completion_file("fish", "supervisorctl.fish")
                .display()
                .to_string()
        )
    );
    for case in &cases {
        probe.push_str(&format!(
            "echo {SEPARATOR:?}; complete -C {}\n",
            quoted(&case.line)
        ));
    }
    let script = setup.write("probe.fish", &probe);
    let output = setup.run("fish", &["--no-config", &script.display().to_string()]);
    check("fish", &cases, &split_offers(&stdout_of(&output)));
}

/// Sourced by the interactive zsh: loads the completion system with the
/// packaged `_supervisorctl` first in fpath, and records every word that a
/// completion function adds. Calls that only fill an array (-O, -A) or
/// filter descriptions (-D) add nothing and pass through.
const ZSH_SETUP: &str = r#"PS1='READY> '
fpath=("$ZT_COMPLETIONS" $fpath)
autoload -Uz compinit
compinit -u -d "$ZT_DIR/zcompdump"
compadd() {
    if (( ${@[(Ie)-O]} || ${@[(Ie)-A]} || ${@[(Ie)-D]} )); then
        builtin compadd "$@"
        return
    fi
    local -a added
    builtin compadd -A added "$@"
    (( $#added )) && print -rl -- $added >>| "$ZT_DIR/offered"
    builtin compadd "$@"
}
"#;

/// Starts an interactive zsh on a pseudo-terminal, types each line of the
/// file given as $1 followed by TAB, and prints the separator and the
/// words offered for each. Each step waits for the prompt, so no typed
/// input reaches the shell before it reads the terminal.
const ZSH_DRIVER: &str = r#"zmodload zsh/zpty || exit 3
zpty session zsh -f -i
zpty -w session "source ${(q)ZT_DIR}/setup.zsh"
zpty -r session out '*READY> ' || exit 4
for line in "${(@f)$(<$1)}"; do
    rm -f "$ZT_DIR/offered"
    zpty -w -n session "$line"$'\t'
    zpty -w session $'\C-u'"print DONE-\$((6 * 7))"
    zpty -r session out '*DONE-42*READY> ' || exit 5
    print -r -- "=== next line ==="
    [[ -e "$ZT_DIR/offered" ]] && cat "$ZT_DIR/offered"
done
zpty -d session
return 0
"#;

#[test]
fn zsh_completion_offers_job_names() {
    if skip("zsh_completion_offers_job_names")
        || tool_missing("zsh_completion_offers_job_names", "zsh")
    {
        return;
    }
    let setup = setup();
    let cases = setup.cases();
    setup.write("setup.zsh", ZSH_SETUP);
    let driver = setup.write("driver.zsh", ZSH_DRIVER);
    let lines: Vec<&str> = cases.iter().map(|case| case.line.as_str()).collect();
    let lines = setup.write("lines", &(lines.join("\n") + "\n"));
    let script = format!(
        "export ZT_DIR={} ZT_COMPLETIONS={}; source {} {}",
        quoted(&setup.scratch.path().display().to_string()),
        quoted(&completion_file("zsh", "").display().to_string()),
        quoted(&driver.display().to_string()),
        quoted(&lines.display().to_string()),
    );
    let output = setup.run("zsh", &["-f", "-c", &script]);
    // zsh adds a name with a space quoted, as `bad\ name`.
    let offered = stdout_of(&output).replace("\\ ", " ");
    check("zsh", &cases, &split_offers(&offered));
}

/// Sourced by the interactive bash: loads the packaged completion and
/// lists every candidate on the first TAB.
const BASH_SETUP: &str = r#"PS1='READY> '
source "$ZT_COMPLETION"
bind 'set show-all-if-ambiguous on'
bind 'set bell-style none'
"#;

/// Starts an interactive bash on a pseudo-terminal through zsh's zpty,
/// types each line of the file given as $1 followed by TAB, and prints the
/// separator and what the terminal showed for each.
const BASH_DRIVER: &str = r#"zmodload zsh/zpty || exit 3
zpty session bash --norc --noprofile -i
zpty -w session "source ${(q)ZT_DIR}/setup.bash"
zpty -r session out '*READY> ' || exit 4
for line in "${(@f)$(<$1)}"; do
    zpty -w -n session "$line"$'\t'
    zpty -w session $'\C-u'"echo DONE-\$((6 * 7))"
    zpty -r session out '*DONE-42*READY> ' || exit 5
    print -r -- "=== next line ==="
    print -r -- "${out//$'\r'/}"
done
zpty -d session
return 0
"#;

/// bash itself, through readline, where the function alone cannot show
/// what bash does with its result: an empty result must not fall back to
/// file names.
#[test]
fn bash_completion_in_readline() {
    if skip("bash_completion_in_readline") || tool_missing("bash_completion_in_readline", "zsh") {
        return;
    }
    let setup = setup();
    let socket = setup.socket();
    setup.write("setup.bash", BASH_SETUP);
    let driver = setup.write("driver.zsh", BASH_DRIVER);

    let lines = [
        format!("supervisorctl --socket {socket} stop w"),
        format!("supervisorctl --socket {socket} pid web "),
        format!("supervisorctl --socket {socket} tail -n "),
        format!("supervisorctl --socket {socket} reread "),
    ];
    let file = setup.write("lines", &(lines.join("\n") + "\n"));
    let script = format!(
        "export ZT_DIR={} ZT_COMPLETION={}; source {} {}",
        quoted(&setup.scratch.path().display().to_string()),
        quoted(
            &completion_file("bash", "supervisorctl")
                .display()
                .to_string()
        ),
        quoted(&driver.display().to_string()),
        quoted(&file.display().to_string()),
    );
    let output = setup.run("zsh", &["-f", "-c", &script]);

    let text = stdout_of(&output);
    let screens: Vec<&str> = text.split(&format!("{SEPARATOR}\n")).skip(1).collect();
    assert_eq!(screens.len(), lines.len(), "{text}");
    assert!(screens[0].contains("web"), "{}", screens[0]);
    assert!(screens[0].contains("worker"), "{}", screens[0]);
    for (line, screen) in lines.iter().zip(&screens).skip(1) {
        assert!(!screen.contains(DECOY), "`{line}` offers files: {screen}");
    }
}
