//! Command lines of `supervisorctl`, `supervisord` and `corral-monitor`,
//! and the generator of completion scripts and man pages, the job file
//! format's page among them ([`jobpage`]).
//!
//! `packaging/completions/` and `packaging/man/` are committed copies of
//! [`packaging_files`] for the binaries that `supervisor/tests/packaging.rs`
//! lists: these three, `corral` and `metrics-agent`. That test compares the
//! committed files with the definitions, and
//! `UPDATE_PACKAGING=1 cargo test -p corral-supervisor --test packaging`
//! rewrites them.

pub mod ctl;
pub mod daemon;
pub mod jobnames;
pub mod jobpage;
pub mod monitor;

use std::path::PathBuf;

use clap_complete::{Generator, Shell};

/// Shells whose completion scripts are packaged.
pub const SHELLS: [Shell; 3] = [Shell::Bash, Shell::Zsh, Shell::Fish];

/// One generated file, with its path relative to `packaging/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedFile {
    pub path: PathBuf,
    pub content: Vec<u8>,
}

/// A binary whose man pages, and optionally completion scripts, are
/// packaged.
pub struct PackagedBinary {
    /// The command line; its name names the generated files.
    pub command: clap::Command,
    /// Man section of its pages: 1 for user commands, 8 for daemons and
    /// tools that only administrators or supervisord run.
    pub section: &'static str,
    /// Whether bash, zsh and fish completion scripts are generated.
    pub completions: bool,
}

/// Returns the completion script of `command` for `shell`; supervisorctl's
/// also completes the names of the running supervisord's jobs.
pub fn completion_script(shell: Shell, command: &mut clap::Command) -> Vec<u8> {
    let name = command.get_name().to_string();
    let mut script = Vec::new();
    clap_complete::generate(shell, command, name.clone(), &mut script);
    if name == "supervisorctl" {
        script = jobnames::with_job_names(shell, script);
    }
    script
}

/// Returns the completion scripts and man pages of `binaries`, in a stable
/// order: `completions/SHELL/FILE` in the place each shell looks for it,
/// and `man/NAME.SECTION`, with one page per visible subcommand at every
/// level (`supervisorctl-top`, `corral-image-import`).
pub fn packaging_files(binaries: impl IntoIterator<Item = PackagedBinary>) -> Vec<GeneratedFile> {
    let mut files = Vec::new();
    for binary in binaries {
        let mut command = binary.command.disable_help_subcommand(true);
        command.build();
        let name = command.get_name().to_string();
        if binary.completions {
            // NOTE: the bash, zsh and fish generators of clap_complete 4.6
            // also complete hidden subcommands, such as `corral shim`.
            for shell in SHELLS {
                files.push(GeneratedFile {
                    path: PathBuf::from("completions")
                        .join(shell.to_string())
                        .join(completion_file_name(shell, &name)),
                    content: completion_script(shell, &mut command),
                });
            }
        }
        files.push(man_page(&command, &name, binary.section));
        push_subcommand_pages(&command, binary.section, &mut files);
    }
    files
}

/// Appends a man page for each visible subcommand of `command` and, after
/// it, the pages of that subcommand's own subcommands.
fn push_subcommand_pages(command: &clap::Command, section: &str, files: &mut Vec<GeneratedFile>) {
    // After `build`, each subcommand's display name is `parent-sub`.
    for subcommand in command.get_subcommands() {
        if subcommand.is_hide_set() {
            continue;
        }
        let page_name = subcommand
            .get_display_name()
            .unwrap_or_else(|| subcommand.get_name())
            .to_string();
        files.push(man_page(subcommand, &page_name, section));
        push_subcommand_pages(subcommand, section, files);
    }
}

/// Returns the file name that `shell` loads completions of `name` from:
/// `name` for bash-completion, `_name` for zsh, `name.fish` for fish.
fn completion_file_name(shell: Shell, name: &str) -> String {
    match shell {
        Shell::Bash => name.to_string(),
        Shell::Zsh => format!("_{name}"),
        other => other.file_name(name),
    }
}

fn man_page(command: &clap::Command, name: &str, section: &str) -> GeneratedFile {
    let mut page = Vec::new();
    clap_mangen::Man::new(command.clone())
        .section(section)
        .source(format!("corral {}", env!("CARGO_PKG_VERSION")))
        .manual("corral")
        .render(&mut page)
        .expect("rendering into memory cannot fail");
    let page = String::from_utf8(page).expect("clap_mangen writes UTF-8");
    GeneratedFile {
        path: PathBuf::from("man").join(format!("{name}.{section}")),
        content: with_value_names(&page, command).into_bytes(),
    }
}

/// Escapes `text` for roff, where `-` is a hyphen and `\-` a minus sign
/// as options need.
fn roff_dashes(text: &str) -> String {
    text.replace('-', "\\-")
}

/// Adds the value name after each option that takes a value in the
/// SYNOPSIS line of `page`, which clap_mangen renders as `[--socket]`
/// alone: `[--socket PATH]`.
fn with_value_names(page: &str, command: &clap::Command) -> String {
    let Some(start) = page.find(".SH SYNOPSIS\n") else {
        return page.to_string();
    };
    let line_start = start + ".SH SYNOPSIS\n".len();
    let line_end = page[line_start..]
        .find('\n')
        .map_or(page.len(), |end| line_start + end);
    let mut synopsis = page[line_start..line_end].to_string();
    for arg in command.get_arguments() {
        if arg.is_positional() {
            // A positional that takes several values gets the `...` that
            // --help shows after it.
            let repeated = arg
                .get_num_args()
                .is_some_and(|range| range.max_values() > 1);
            if repeated {
                let name = arg
                    .get_value_names()
                    .and_then(|names| names.first())
                    .map_or_else(
                        || arg.get_id().as_str().to_uppercase(),
                        |name| name.to_string(),
                    );
                let value = format!("\\fI{}\\fR", roff_dashes(&name));
                for close in ["]", ">"] {
                    synopsis = synopsis
                        .replace(&format!("{value}{close} "), &format!("{value}{close}... "));
                }
            }
            continue;
        }
        if !arg.get_action().takes_values() {
            continue;
        }
        let value = arg
            .get_value_names()
            .map(|names| {
                names
                    .iter()
                    .map(|name| name.as_str())
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_else(|| arg.get_id().as_str().to_uppercase());
        let flag = match (arg.get_long(), arg.get_short()) {
            (Some(long), _) => format!("\\fB\\-\\-{}\\fR", roff_dashes(long)),
            (None, Some(short)) => format!("\\fB\\-{short}\\fR"),
            (None, None) => continue,
        };
        // The flag closes its bracket, or its `<...>` when required.
        for close in ["]", ">"] {
            synopsis = synopsis.replace(
                &format!("{flag}{close}"),
                &format!("{flag} \\fI{}\\fR{close}", roff_dashes(&value)),
            );
        }
    }
    format!("{}{synopsis}{}", &page[..line_start], &page[line_end..])
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    fn paths_of(files: &[GeneratedFile]) -> Vec<String> {
        files
            .iter()
            .map(|file| file.path.display().to_string())
            .collect()
    }

    #[test]
    fn subcommands_get_pages() {
        let files = packaging_files([PackagedBinary {
            command: ctl::Cli::command(),
            section: "1",
            completions: true,
        }]);
        let paths = paths_of(&files);
        for expected in [
            "completions/bash/supervisorctl",
            "completions/zsh/_supervisorctl",
            "completions/fish/supervisorctl.fish",
            "man/supervisorctl.1",
            "man/supervisorctl-top.1",
            "man/supervisorctl-status.1",
        ] {
            assert!(
                paths.iter().any(|path| path == expected),
                "{expected} missing: {paths:?}"
            );
        }
        assert!(!paths.iter().any(|path| path.contains("help")), "{paths:?}");
    }

    #[test]
    fn synopsis_names_option_values() {
        let files = packaging_files([PackagedBinary {
            command: ctl::Cli::command(),
            section: "1",
            completions: false,
        }]);
        let page = |name: &str| {
            let file = files
                .iter()
                .find(|file| file.path == PathBuf::from("man").join(name))
                .unwrap();
            String::from_utf8(file.content.clone()).unwrap()
        };
        let synopsis = |text: &str| {
            let start = text.find(".SH SYNOPSIS\n").unwrap() + ".SH SYNOPSIS\n".len();
            text[start..].lines().next().unwrap().to_string()
        };

        let tail = synopsis(&page("supervisorctl-tail.1"));
        for expected in [
            "[\\fB\\-\\-socket\\fR \\fISOCKET\\fR]",
            "[\\fB\\-n\\fR|\\fB\\-\\-lines\\fR \\fILINES\\fR]",
            "[\\fB\\-\\-log\\-dir\\fR \\fILOG_DIR\\fR]",
            // Flags without a value stay as they are.
            "[\\fB\\-f\\fR|\\fB\\-\\-follow\\fR]",
        ] {
            assert!(tail.contains(expected), "{expected} not in {tail}");
        }

        let stop = synopsis(&page("supervisorctl-stop.1"));
        assert!(stop.contains("<\\fINAMES\\fR>..."), "{stop}");
        let pid = synopsis(&page("supervisorctl-pid.1"));
        assert!(!pid.contains("..."), "{pid}");

        // Only the SYNOPSIS changes: the OPTIONS section keeps its form.
        let text = page("supervisorctl-tail.1");
        assert!(
            text.contains(".TP\n\\fB\\-\\-socket\\fR \\fI<SOCKET>\\fR"),
            "{text}"
        );
    }

    #[test]
    fn nested_subcommands_get_pages() {
        let image = clap::Command::new("image")
            .about("Manage images")
            .subcommand(clap::Command::new("import").about("Import an image"))
            .subcommand(clap::Command::new("internal").hide(true));
        let tool = clap::Command::new("tool")
            .subcommand(image)
            .subcommand(clap::Command::new("secret").hide(true));
        let files = packaging_files([PackagedBinary {
            command: tool,
            section: "8",
            completions: false,
        }]);
        let paths = paths_of(&files);
        assert_eq!(
            paths,
            ["man/tool.8", "man/tool-image.8", "man/tool-image-import.8"],
        );
    }

    #[test]
    fn completions_name_subcommands_and_aliases() {
        let script =
            String::from_utf8(completion_script(Shell::Bash, &mut ctl::Cli::command())).unwrap();
        for word in ["status", "top", "stats", "tail", "completions", "--socket"] {
            assert!(script.contains(word), "bash completions lack {word}");
        }
    }

    #[test]
    fn man_page_has_the_description() {
        let files = packaging_files([PackagedBinary {
            command: daemon::Cli::command(),
            section: "8",
            completions: false,
        }]);
        let page = files
            .iter()
            .find(|file| file.path == std::path::Path::new("man/supervisord.8"))
            .unwrap();
        let text = String::from_utf8_lossy(&page.content);
        assert!(text.starts_with(".ie \\n(.g .ds Aq"), "{text:.200}");
        assert!(text.contains(".TH supervisord 8"), "{text:.400}");
        assert!(text.contains("live\\-restore"), "{text}");
    }
}
