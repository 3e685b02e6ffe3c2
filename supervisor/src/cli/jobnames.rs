//! Job name completion for supervisorctl's scripts. clap_complete generates
//! completions from the static command line only, so each script gets a
//! function that lists the running supervisord's jobs and offers them, and
//! `all`, wherever a command takes job names. It runs the supervisorctl
//! being completed, as typed, with `status --json` and the line's
//! `--socket`, and takes the `name` of each job from the pretty-printed
//! list, so that another program named supervisorctl (Python's) yields no
//! names. With no supervisord to ask, only `all` is offered.

use clap_complete::Shell;

/// The subcommands whose positional arguments are job names. `signal`
/// takes a signal first, and job names are offered for that word too.
const COMMANDS: &str = "status start stop restart signal pid tail spec top";

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

/// Wraps the generated `_supervisorctl` in a function that appends job
/// names, and registers the wrapper instead.
fn bash(text: String) -> String {
    let wrapper = format!(
        r#"
# Job names from the running supervisord, after the commands that take them.
_supervisorctl_jobs() {{
    _supervisorctl "$@"
    local cur="${{COMP_WORDS[COMP_CWORD]}}" command="" socket=() index word
    for ((index = 1; index < COMP_CWORD; index++)); do
        word="${{COMP_WORDS[index]}}"
        case "$word" in
            --socket) socket=(--socket "${{COMP_WORDS[index + 1]}}"); ((index++)) ;;
            --socket=*) socket=("$word") ;;
            --timeout) ((index++)) ;;
            -*) ;;
            *) [[ -z "$command" ]] && command="$word" ;;
        esac
    done
    case " {COMMANDS} " in
        *" $command "*) ;;
        *) return 0 ;;
    esac
    [[ -z "$command" || "$cur" == -* ]] && return 0
    local jobs
    jobs="$("${{COMP_WORDS[0]}}" "${{socket[@]}}" status --json 2>/dev/null |
        sed -n 's/^    "name": "\(.*\)",$/\1/p')"
    COMPREPLY+=($(compgen -W "$jobs all" -- "$cur"))
    local unique
    unique="$(printf '%s\n' "${{COMPREPLY[@]}}" | sort -u)"
    COMPREPLY=($unique)
}}
"#
    );
    let registered = "complete -F _supervisorctl ";
    let text = text.replace(registered, "complete -F _supervisorctl_jobs ");
    let marker = "if [[ \"${BASH_VERSINFO[0]}\"";
    match text.rfind(marker) {
        Some(at) => format!("{}{}\n{}", &text[..at], wrapper.trim_start(), &text[at..]),
        None => format!("{text}{wrapper}"),
    }
}

/// Points the job name arguments at `_supervisorctl_jobs`, defined before
/// the script's final dispatch.
// NOTE: the tests run this script with stand-ins for compdef and
// _describe, outside the completion system, against a live supervisord.
fn zsh(text: String) -> String {
    let function = r#"(( $+functions[_supervisorctl_jobs] )) ||
_supervisorctl_jobs() {
    local -a jobs socket
    local index
    for ((index = 2; index < CURRENT; index++)); do
        case "${words[index]}" in
            --socket) socket=(--socket "${words[index + 1]}") ;;
            --socket=*) socket=("${words[index]}") ;;
        esac
    done
    jobs=(${(f)"$(${words[1]} $socket status --json 2>/dev/null |
        sed -n 's/^    "name": "\(.*\)",$/\1/p')"} all)
    jobs=(${(u)jobs})
    _describe -t jobs 'job' jobs
}

"#;
    let text = text
        .lines()
        .map(|line| {
            let names = line.starts_with("'*::names -- Job names")
                || line.starts_with("':name -- Job name")
                || line.starts_with("'::name -- Job name");
            if names {
                line.replace(":_default'", ":_supervisorctl_jobs'")
            } else {
                line.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n";
    let marker = "if [ \"$funcstack[1]\" = \"_supervisorctl\" ]; then";
    match text.rfind(marker) {
        Some(at) => format!("{}{function}{}", &text[..at], &text[at..]),
        None => format!("{text}{function}"),
    }
}

/// Adds a completion of job names, without file names, after the commands
/// that take them.
fn fish(text: String) -> String {
    format!(
        r#"{text}
# Job names from the running supervisord, after the commands that take them.
function __supervisorctl_jobs
    set -l socket
    set -l words (commandline -opc)
    for index in (seq 2 (count $words))
        switch $words[$index]
            case --socket
                set socket --socket $words[(math $index + 1)]
            case '--socket=*'
                set socket $words[$index]
        end
    end
    $words[1] $socket status --json 2>/dev/null | string match -r -g '^    "name": "(.*)",$'
    echo all
end
complete -c supervisorctl -n "__fish_seen_subcommand_from {COMMANDS}" -f -a "(__supervisorctl_jobs)"
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn zsh_uses_the_function_for_names_only() {
        let text = zsh(
            "'*::names -- Job names:_default' \\\n'::signal -- Signal:_default' \\\nif [ \"$funcstack[1]\" = \"_supervisorctl\" ]; then\nfi\n"
                .to_string(),
        );
        assert!(
            text.contains("'*::names -- Job names:_supervisorctl_jobs'"),
            "{text}"
        );
        assert!(text.contains("'::signal -- Signal:_default'"), "{text}");
        let defined = text.find("_supervisorctl_jobs() {").unwrap();
        let dispatch = text.find("if [ \"$funcstack[1]\"").unwrap();
        assert!(defined < dispatch, "{text}");
    }

    #[test]
    fn fish_completes_names_without_files() {
        let text = fish(String::new());
        assert!(text.contains(
            "complete -c supervisorctl -n \"__fish_seen_subcommand_from status start stop restart signal pid tail spec top\" -f -a \"(__supervisorctl_jobs)\""
        ));
    }
}
