//! Job name completion for supervisorctl's scripts. clap_complete generates
//! completions from the static command line only, so each script gets a
//! function that lists the running supervisord's jobs and offers them
//! wherever a command takes job names, with `all` where the command accepts
//! it. The first argument of `signal` completes signal names instead. The
//! function runs the supervisorctl being completed, as typed, with
//! `status --json` and the line's `--socket`, and takes the `name` of each
//! job from the pretty-printed list, so that another program named
//! supervisorctl (Python's) yields no names. With no supervisord to ask,
//! only `all` is offered where it is accepted.

use std::collections::BTreeSet;

use clap::CommandFactory;
use clap_complete::Shell;

/// The subcommands whose arguments are job names or `all`. `signal` takes
/// them after the signal.
const JOBS_OR_ALL: [&str; 4] = ["status", "start", "stop", "restart"];

/// The subcommands whose arguments are job names, without `all`.
const JOBS: [&str; 2] = ["top", "stats"];

/// The subcommands that take one job name, which cannot be `all`.
const ONE_JOB: [&str; 3] = ["pid", "tail", "spec"];

/// The `--timeout` of the request for job names, so that a supervisord
/// that does not respond blocks the shell only this long.
const NAMES_TIMEOUT: &str = "1s";

/// Adds job name completion to supervisorctl's `script` for `shell`.
pub fn with_job_names(shell: Shell, script: Vec<u8>) -> Vec<u8> {
    let text = String::from_utf8(script).expect("clap_complete writes UTF-8");
    let text = match shell {
        Shell::Bash => bash(text),
        Shell::Zsh => zsh(text),
        Shell::Fish => fish(text),
        _ => text,
    };
    text.into_bytes()
}

/// Returns the options of supervisorctl and its subcommands that take a
/// value, such as `--timeout` and `-n`, so that the scripts do not count
/// the value as an argument.
fn value_options() -> Vec<String> {
    let command = super::ctl::Cli::command();
    let mut options = BTreeSet::new();
    let commands = std::iter::once(&command).chain(command.get_subcommands());
    for command in commands {
        for argument in command.get_arguments() {
            if argument.is_positional() || !argument.get_action().takes_values() {
                continue;
            }
            if let Some(short) = argument.get_short() {
                options.insert(format!("-{short}"));
            }
            if let Some(long) = argument.get_long() {
                options.insert(format!("--{long}"));
            }
        }
    }
    options.into_iter().collect()
}

/// Returns the subcommands that take no arguments, such as `reread`, whose
/// words complete nothing instead of file names.
fn no_arguments() -> Vec<String> {
    let command = super::ctl::Cli::command();
    command
        .get_subcommands()
        .filter(|subcommand| subcommand.get_positionals().next().is_none())
        .filter(|subcommand| !subcommand.has_subcommands())
        .map(|subcommand| subcommand.get_name().to_string())
        .collect()
}

/// Returns the signal names that the first argument of `signal` completes,
/// separated by spaces.
fn signal_words() -> String {
    crate::signals::signal_names().join(" ")
}

/// Wraps the generated `_supervisorctl` in a function that completes job
/// and signal names where a command takes them, in place of the generated
/// candidates, and registers the wrapper instead. Option names, option
/// values and the arguments of other commands keep the generated
/// completion.
fn bash(text: String) -> String {
    let wrapper = r#"
# Job names from the running supervisord where a command takes them, with
# `all` where the command accepts it, and signal names for the first
# argument of `signal`.
_supervisorctl_jobs() {
    _supervisorctl "$@"
    local cur="${COMP_WORDS[COMP_CWORD]}" command="" arguments=0 socket=() index word
    for ((index = 1; index < COMP_CWORD; index++)); do
        word="${COMP_WORDS[index]}"
        # bash splits `--socket=PATH` into three words at the `=`.
        [[ "$word" == -* && "${COMP_WORDS[index + 1]}" == "=" ]] && index=$((index + 1))
        case "$word" in
            --socket) socket=(--socket "${COMP_WORDS[index + 1]/#\~/$HOME}"); index=$((index + 1)) ;;
            --socket=*) socket=(--socket "${word#--socket=}") ;;
            @VALUE_OPTIONS@) index=$((index + 1)) ;;
            -*) ;;
            *)
                if [[ -z "$command" ]]; then
                    command="$word"
                else
                    arguments=$((arguments + 1))
                fi
                ;;
        esac
    done
    # The word is an option's value, an option or the command.
    ((index > COMP_CWORD)) && return 0
    [[ -z "$command" || "$cur" == -* ]] && return 0
    local offer=""
    case "$command" in
        @JOBS_OR_ALL@) offer=jobs-or-all ;;
        signal)
            if ((arguments == 0)); then
                offer=signals
            else
                offer=jobs-or-all
            fi
            ;;
        @ONE_JOB@) ((arguments == 0)) && offer=jobs || offer=none ;;
        @JOBS@) offer=jobs ;;
        @NO_ARGUMENTS@) offer=none ;;
        *) return 0 ;;
    esac
    local candidates=""
    case "$offer" in
        signals) candidates="$(printf '%s\n' @SIGNALS@)" ;;
        jobs | jobs-or-all)
            candidates="$("${COMP_WORDS[0]/#\~/$HOME}" "${socket[@]}" --timeout @TIMEOUT@ status --json 2>/dev/null |
                sed -n 's/^    "name": "\(.*\)",$/\1/p')"
            # Without names, supervisord did not respond, and `all` alone
            # would be inserted into the line.
            [[ "$offer" == jobs-or-all && -n "$candidates" ]] && candidates="$candidates"$'\n'all
            ;;
    esac
    # Without a match, bash would fall back to file names.
    compopt +o default +o bashdefault 2>/dev/null
    local IFS=$'\n'
    COMPREPLY=($(compgen -W "$candidates" -- "$cur" | sort -u))
}
"#
    .replace("@VALUE_OPTIONS@", &value_options().join(" | "))
    .replace("@JOBS_OR_ALL@", &JOBS_OR_ALL.join(" | "))
    .replace("@ONE_JOB@", &ONE_JOB.join(" | "))
    .replace("@JOBS@", &JOBS.join(" | "))
    .replace("@NO_ARGUMENTS@", &no_arguments().join(" | "))
    .replace("@SIGNALS@", &signal_words())
    .replace("@TIMEOUT@", NAMES_TIMEOUT);
    let registered = "complete -F _supervisorctl ";
    let text = text.replace(registered, "complete -F _supervisorctl_jobs ");
    let marker = "if [[ \"${BASH_VERSINFO[0]}\"";
    match text.rfind(marker) {
        Some(at) => format!("{}{}\n{}", &text[..at], wrapper.trim_start(), &text[at..]),
        None => format!("{text}{wrapper}"),
    }
}

/// Points the job name arguments at `_supervisorctl_jobs_or_all` or
/// `_supervisorctl_jobs` and the signal argument at the list of signal
/// names. The generated `_supervisorctl` becomes `_supervisorctl_clap`,
/// called by a `_supervisorctl` that keeps the words of the whole line:
/// `_arguments` narrows `words` to a subcommand's arguments, which leaves
/// out the program and a `--socket` given before the subcommand.
fn zsh(text: String) -> String {
    let functions = r#"# The words of the line before the one being completed, kept for the job
# name functions below.
_supervisorctl() {
    local -a _supervisorctl_line
    _supervisorctl_line=("${(@)words[1,CURRENT-1]}")
    _supervisorctl_clap "$@"
}

(( $+functions[_supervisorctl_job_names] )) ||
_supervisorctl_job_names() {
    local -a line socket
    local index program
    line=("${(@Q)_supervisorctl_line}")
    for ((index = 2; index <= $#line; index++)); do
        case "${line[index]}" in
            --socket) socket=(--socket "${line[index + 1]/#\~/$HOME}") ;;
            --socket=*) socket=("--socket=${${line[index]#--socket=}/#\~/$HOME}") ;;
        esac
    done
    program="${line[1]/#\~/$HOME}"
    [[ -n "$program" ]] || return
    reply=(${(f)"$("$program" $socket --timeout @TIMEOUT@ status --json 2>/dev/null |
        sed -n 's/^    "name": "\(.*\)",$/\1/p')"})
}

(( $+functions[_supervisorctl_jobs] )) ||
_supervisorctl_jobs() {
    local -a reply jobs
    _supervisorctl_job_names
    jobs=(${(u)reply})
    _describe -t jobs 'job' jobs
}

(( $+functions[_supervisorctl_jobs_or_all] )) ||
_supervisorctl_jobs_or_all() {
    local -a reply jobs
    _supervisorctl_job_names
    # Without names, supervisord did not respond, and `all` alone would be
    # inserted into the line.
    (( $#reply )) && jobs=(${(u)reply} all)
    jobs=(${(u)jobs})
    _describe -t jobs 'job' jobs
}

"#;
    let functions = functions.replace("@TIMEOUT@", NAMES_TIMEOUT);
    let signals = format!(":({})'", signal_words());
    let text = text
        .lines()
        .map(|line| {
            if line == "_supervisorctl() {" {
                "_supervisorctl_clap() {".to_string()
            } else if line.starts_with("'*::names -- Job names, or `all`") {
                line.replace(":_default'", ":_supervisorctl_jobs_or_all'")
            } else if line.starts_with("'*::names -- Job names")
                || line.starts_with("':name -- Job name")
                || line.starts_with("'::name -- Job name")
            {
                line.replace(":_default'", ":_supervisorctl_jobs'")
            } else if line.starts_with("':signal -- Signal") {
                line.replace(":_default'", &signals)
            } else {
                line.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n";
    let marker = "if [ \"$funcstack[1]\" = \"_supervisorctl\" ]; then";
    match text.rfind(marker) {
        Some(at) => format!("{}{functions}{}", &text[..at], &text[at..]),
        None => format!("{text}{functions}"),
    }
}

/// Adds a completion of job names, without file names, where the commands
/// take them, and of signal names for the first argument of `signal`.
fn fish(text: String) -> String {
    let functions = r#"
# Job names from the running supervisord.
function __supervisorctl_jobs
    set -l socket
    set -l words (commandline -opc)
    for index in (seq 2 (count $words))
        switch $words[$index]
            case --socket
                set socket --socket (string replace -r '^~' -- $HOME $words[(math $index + 1)])
            case '--socket=*'
                set -l path (string replace -- --socket= '' $words[$index])
                set socket --socket (string replace -r '^~' -- $HOME $path)
        end
    end
    set -l program (string replace -r '^~' -- $HOME $words[1])
    $program $socket --timeout @TIMEOUT@ status --json 2>/dev/null | string match -r -g '^    "name": "(.*)",$'
end

# Job names and `all`, or nothing when supervisord did not respond, so
# that `all` alone is not inserted into the line.
function __supervisorctl_jobs_or_all
    set -l names (__supervisorctl_jobs)
    test (count $names) -gt 0; or return
    printf '%s\n' $names all
end

# Succeeds when the word being completed takes what $argv[1] names:
# jobs-or-all, jobs or signal.
function __supervisorctl_completes
    set -l words (commandline -opc)
    set -l command
    set -l arguments 0
    set -l skip 0
    for index in (seq 2 (count $words))
        set -l word $words[$index]
        if test $skip -eq 1
            set skip 0
            continue
        end
        switch $word
            case @VALUE_OPTIONS@
                set skip 1
            case '-*'
            case '*'
                if test -z "$command"
                    set command $word
                else
                    set arguments (math $arguments + 1)
                end
        end
    end
    # The word being completed is an option's value.
    test $skip -eq 0; or return 1
    switch $argv[1]
        case signal
            test "$command" = signal; and test $arguments -eq 0
        case jobs-or-all
            if contains -- "$command" @JOBS_OR_ALL@
                return 0
            end
            test "$command" = signal; and test $arguments -gt 0
        case jobs
            if contains -- "$command" @JOBS@
                return 0
            end
            contains -- "$command" @ONE_JOB@; and test $arguments -eq 0
        case none
            contains -- "$command" @NO_ARGUMENTS@; and return 0
            contains -- "$command" @ONE_JOB@; and test $arguments -gt 0
        case '*'
            return 1
    end
end
complete -c supervisorctl -n "__supervisorctl_completes jobs-or-all" -f -a "(__supervisorctl_jobs_or_all)"
complete -c supervisorctl -n "__supervisorctl_completes jobs" -f -a "(__supervisorctl_jobs)"
complete -c supervisorctl -n "__supervisorctl_completes signal" -f -a "@SIGNALS@"
complete -c supervisorctl -n "__supervisorctl_completes none" -f
"#
    .replace("@VALUE_OPTIONS@", &value_options().join(" "))
    .replace("@JOBS_OR_ALL@", &JOBS_OR_ALL.join(" "))
    .replace("@ONE_JOB@", &ONE_JOB.join(" "))
    .replace("@JOBS@", &JOBS.join(" "))
    .replace("@NO_ARGUMENTS@", &no_arguments().join(" "))
    .replace("@SIGNALS@", &signal_words())
    .replace("@TIMEOUT@", NAMES_TIMEOUT);
    format!("{text}{functions}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLACEHOLDERS: [&str; 7] = [
        "@TIMEOUT@",
        "@NO_ARGUMENTS@",
        "@VALUE_OPTIONS@",
        "@JOBS_OR_ALL@",
        "@ONE_JOB@",
        "@JOBS@",
        "@SIGNALS@",
    ];

    #[test]
    fn bash_registers_the_wrapper() {
        let text = bash("_supervisorctl() {\n}\nif [[ \"${BASH_VERSINFO[0]}\" -eq 4 ]]; then\n    complete -F _supervisorctl -o default supervisorctl\nfi\n".to_string());
        assert!(text.contains("complete -F _supervisorctl_jobs -o default supervisorctl"));
        assert!(!text.contains("complete -F _supervisorctl -o"));
        let defined = text.find("_supervisorctl_jobs() {").unwrap();
        let registered = text.find("if [[").unwrap();
        assert!(defined < registered, "{text}");
    }

    #[test]
    fn bash_offers_all_only_where_accepted() {
        let text = bash(String::new());
        assert!(
            text.contains("status | start | stop | restart) offer=jobs-or-all ;;"),
            "{text}"
        );
        assert!(
            text.contains("pid | tail | spec) ((arguments == 0)) && offer=jobs || offer=none ;;"),
            "{text}"
        );
        assert!(text.contains("top | stats) offer=jobs ;;"), "{text}");
        assert!(
            text.contains("signals) candidates=\"$(printf '%s\\n' HUP INT "),
            "{text}"
        );
        assert!(
            text.contains("reread | update | shutdown) offer=none ;;"),
            "{text}"
        );
        for placeholder in PLACEHOLDERS {
            assert!(!text.contains(placeholder), "{placeholder} is left: {text}");
        }
    }

    #[test]
    fn value_options_cover_subcommands() {
        let options = value_options();
        for option in ["--socket", "--timeout", "-n", "--lines", "--log-dir", "-d"] {
            assert!(options.contains(&option.to_string()), "{options:?}");
        }
        for flag in ["-h", "--help", "-f", "--follow", "--json"] {
            assert!(!options.contains(&flag.to_string()), "{options:?}");
        }
    }

    #[test]
    fn lists_cover_every_command_with_names() {
        let command = super::super::ctl::Cli::command();
        for subcommand in command.get_subcommands() {
            let takes_names = subcommand
                .get_positionals()
                .any(|argument| matches!(argument.get_id().as_str(), "name" | "names"));
            let name = subcommand.get_name();
            let listed = JOBS_OR_ALL.contains(&name)
                || JOBS.contains(&name)
                || ONE_JOB.contains(&name)
                || name == "signal";
            assert_eq!(takes_names, listed, "{name}");
        }
    }

    #[test]
    fn zsh_offers_all_only_where_accepted() {
        let text = zsh("_supervisorctl() {\n}\n\
             '*::names -- Job names, or `all`:_default' \\\n\
             '*::names -- Job names \\[default\\: every job\\]:_default' \\\n\
             ':name -- Job name:_default' \\\n\
             ':signal -- Signal name or number\\: HUP, SIGUSR1, 15:_default' \\\n\
             if [ \"$funcstack[1]\" = \"_supervisorctl\" ]; then\nfi\n"
            .to_string());
        assert!(
            text.contains("'*::names -- Job names, or `all`:_supervisorctl_jobs_or_all'"),
            "{text}"
        );
        assert!(
            text.contains("'*::names -- Job names \\[default\\: every job\\]:_supervisorctl_jobs'"),
            "{text}"
        );
        assert!(
            text.contains("':name -- Job name:_supervisorctl_jobs'"),
            "{text}"
        );
        assert!(
            text.contains("15:(HUP INT QUIT "),
            "the signal is not completed from the list: {text}"
        );
        assert!(!text.contains("@TIMEOUT@"), "{text}");
        assert!(text.contains(" --timeout 1s status --json "), "{text}");
        let defined = text.find("_supervisorctl_jobs() {").unwrap();
        let dispatch = text.find("if [ \"$funcstack[1]\"").unwrap();
        assert!(defined < dispatch, "{text}");
        // The generated function is renamed, and the wrapper that keeps the
        // whole line calls it.
        assert!(text.starts_with("_supervisorctl_clap() {\n"), "{text}");
        assert_eq!(text.matches("\n_supervisorctl() {\n").count(), 1, "{text}");
        assert!(text.contains("    _supervisorctl_clap \"$@\"\n"), "{text}");
    }

    #[test]
    fn fish_completes_names_without_files() {
        let text = fish(String::new());
        assert!(text.contains(
            "complete -c supervisorctl -n \"__supervisorctl_completes jobs-or-all\" -f -a \"(__supervisorctl_jobs_or_all)\""
        ));
        assert!(text.contains(
            "complete -c supervisorctl -n \"__supervisorctl_completes jobs\" -f -a \"(__supervisorctl_jobs)\""
        ));
        assert!(text.contains("contains -- \"$command\" pid tail spec; and test $arguments -eq 0"));
        assert!(text.contains("-n \"__supervisorctl_completes signal\" -f -a \"HUP INT "));
        for placeholder in PLACEHOLDERS {
            assert!(!text.contains(placeholder), "{placeholder} is left: {text}");
        }
    }
}
