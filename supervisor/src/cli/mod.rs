//! Command lines of `supervisorctl`, `supervisord` and `corral-monitor`,
//! and the completion scripts and man pages generated from them.
//!
//! `packaging/completions/` and `packaging/man/` are committed copies of
//! [`packaging_files`]. A test compares them with the definitions, and
//! `UPDATE_PACKAGING=1 cargo test -p corral-supervisor --test packaging`
//! rewrites them.

pub mod ctl;
pub mod daemon;
pub mod monitor;

use std::path::PathBuf;

use clap::CommandFactory;
use clap_complete::{Generator, Shell};

/// Shells whose completion scripts are packaged.
pub const SHELLS: [Shell; 3] = [Shell::Bash, Shell::Zsh, Shell::Fish];

/// One generated file, with its path relative to `packaging/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedFile {
    pub path: PathBuf,
    pub content: Vec<u8>,
}

/// A binary and the man section of its page: 1 for user commands, 8 for
/// daemons and tools that only administrators or supervisord run.
struct Binary {
    command: clap::Command,
    section: &'static str,
    completions: bool,
}

fn binaries() -> [Binary; 3] {
    [
        Binary {
            command: ctl::Cli::command(),
            section: "1",
            completions: true,
        },
        Binary {
            command: daemon::Cli::command(),
            section: "8",
            completions: true,
        },
        Binary {
            command: monitor::Cli::command(),
            section: "8",
            completions: false,
        },
    ]
}

/// Returns the completion script of `command` for `shell`.
pub fn completion_script(shell: Shell, command: &mut clap::Command) -> Vec<u8> {
    let name = command.get_name().to_string();
    let mut script = Vec::new();
    clap_complete::generate(shell, command, name, &mut script);
    script
}

/// Returns every completion script and man page, in a stable order:
/// `completions/SHELL/FILE` in the place each shell looks for it, and
/// `man/NAME.SECTION`, with one page per `supervisorctl` subcommand.
pub fn packaging_files() -> Vec<GeneratedFile> {
    let mut files = Vec::new();
    for binary in binaries() {
        let mut command = binary.command.disable_help_subcommand(true);
        command.build();
        let name = command.get_name().to_string();
        if binary.completions {
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
        // After `build`, each subcommand's display name is `parent-sub`.
        for subcommand in command.get_subcommands() {
            if subcommand.is_hide_set() {
                continue;
            }
            let page_name = subcommand
                .get_display_name()
                .unwrap_or_else(|| subcommand.get_name())
                .to_string();
            files.push(man_page(subcommand, &page_name, binary.section));
        }
    }
    files
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
    GeneratedFile {
        path: PathBuf::from("man").join(format!("{name}.{section}")),
        content: page,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_binary_gets_a_page() {
        let files = packaging_files();
        let paths: Vec<String> = files
            .iter()
            .map(|file| file.path.display().to_string())
            .collect();
        for expected in [
            "completions/bash/supervisorctl",
            "completions/zsh/_supervisorctl",
            "completions/fish/supervisorctl.fish",
            "completions/bash/supervisord",
            "man/supervisorctl.1",
            "man/supervisorctl-top.1",
            "man/supervisorctl-status.1",
            "man/supervisord.8",
            "man/corral-monitor.8",
        ] {
            assert!(
                paths.iter().any(|path| path == expected),
                "{expected} missing: {paths:?}"
            );
        }
        assert!(!paths.iter().any(|path| path.contains("help")), "{paths:?}");
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
        let files = packaging_files();
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
