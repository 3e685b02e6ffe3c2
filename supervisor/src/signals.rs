//! Signal names as job files, the API and the command line write them.

use std::str::FromStr;

use nix::sys::signal::Signal;

/// A signal name or number that names no signal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid signal {value:?}: expected a name such as TERM or SIGHUP, or a number from 1 to 31"
)]
pub struct InvalidSignal {
    pub value: String,
}

/// Parses `"HUP"`, `"SIGHUP"`, `"sighup"` or `"1"`.
pub fn parse_signal(text: &str) -> Result<Signal, InvalidSignal> {
    let invalid = || InvalidSignal {
        value: text.to_string(),
    };
    let trimmed = text.trim();
    if let Ok(number) = trimmed.parse::<i32>() {
        return Signal::try_from(number).map_err(|_| invalid());
    }
    let upper = trimmed.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    Signal::from_str(&name).map_err(|_| invalid())
}

/// Returns the name of every signal that [`parse_signal`] accepts, without
/// the `SIG` prefix, in the order of their numbers.
pub fn signal_names() -> Vec<&'static str> {
    Signal::iterator()
        .map(|signal| {
            let name = signal.as_str();
            name.strip_prefix("SIG").unwrap_or(name)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listed_names_parse() {
        let names = signal_names();
        assert_eq!(names[0], "HUP");
        assert!(names.contains(&"TERM"), "{names:?}");
        for name in names {
            assert!(parse_signal(name).is_ok(), "{name}");
        }
    }

    #[test]
    fn names_with_and_without_prefix() {
        assert_eq!(parse_signal("HUP"), Ok(Signal::SIGHUP));
        assert_eq!(parse_signal("SIGHUP"), Ok(Signal::SIGHUP));
        assert_eq!(parse_signal("sigterm"), Ok(Signal::SIGTERM));
        assert_eq!(parse_signal(" usr1 "), Ok(Signal::SIGUSR1));
        assert_eq!(parse_signal("9"), Ok(Signal::SIGKILL));
    }

    #[test]
    fn unknown_signals_rejected() {
        for text in ["", "SIG", "NOPE", "0", "99", "-1"] {
            let error = parse_signal(text).unwrap_err();
            assert_eq!(error.value, text);
            assert!(error.to_string().ends_with("a number from 1 to 31"));
        }
    }
}
