//! The log filter of corral's binaries, read from an environment variable.
//!
//! The variable contains comma-separated directives: `LEVEL` for every target,
//! or `TARGET=LEVEL` for a module and the modules below it, as in
//! `info,corral_supervisor::daemon=debug`. Levels are `off`, `error`,
//! `warn`, `info`, `debug` and `trace`. A word that is not a level names
//! a target, which is then logged at every level.

use tracing_subscriber::filter::{LevelFilter, Targets};

/// Reads the filter from `variable`, or filters at `default` when the
/// variable is unset or empty. An invalid value is reported once on stderr,
/// prefixed with `program`, and the default applies.
pub fn from_env(program: &str, variable: &str, default: LevelFilter) -> Targets {
    let fallback = Targets::new().with_default(default);
    let Some(value) = std::env::var_os(variable) else {
        return fallback;
    };
    let Some(text) = value.to_str() else {
        eprintln!("{program}: ignoring {variable}: the value is not UTF-8");
        return fallback;
    };
    if text.trim().is_empty() {
        return fallback;
    }
    parse(text).unwrap_or_else(|error| {
        eprintln!("{program}: ignoring {variable}={text:?}: {error}");
        fallback
    })
}

fn parse(text: &str) -> Result<Targets, String> {
    text.trim()
        .parse::<Targets>()
        .map_err(|error| format!("{error}: expected LEVEL or TARGET=LEVEL, separated by commas"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::Level;

    #[test]
    fn directives_set_levels_per_target() {
        let filter = parse("warn,corral_supervisor::daemon=debug").expect("valid");
        assert!(filter.would_enable("corral_supervisor::daemon::launch", &Level::DEBUG));
        assert!(!filter.would_enable("corral_supervisor::client", &Level::INFO));
        assert!(filter.would_enable("corral_supervisor::client", &Level::WARN));
        let filter = parse("debug").expect("valid");
        assert!(filter.would_enable("anything", &Level::DEBUG));
    }

    #[test]
    fn bad_directives_are_errors() {
        for text in ["corral=verbose", "info,corral=loud"] {
            let error = parse(text).expect_err(text);
            assert!(error.contains("expected LEVEL"), "{text}: {error}");
        }
    }
}
