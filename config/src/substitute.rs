//! `${VAR}` substitution in job specs.
//!
//! `${NAME}` is replaced by a variable's value and `$$` by a single `$`. A `$`
//! followed by anything else stays as written, so shell code such as
//! `sh -c 'echo $HOME'` passes through unchanged. `NAME` is letters, digits and
//! `_`, not starting with a digit.
//!
//! Substitution applies to `env` values, `command`, `working_dir` and bind
//! mount sources. In `env` values a variable comes from supervisord's
//! environment only, so `"PATH": "/opt/bin:${PATH}"` extends supervisord's
//! `PATH` and no order among the entries matters. Everywhere else the job's
//! own `env` (after its substitution) comes first and supervisord's
//! environment second.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::field::FieldPath;
use crate::host::HostContext;
use crate::types::{JobSpec, MountSpec};
use crate::validate::ValidationError;

/// A `${...}` reference that cannot be replaced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SubstituteError {
    #[error(
        "undefined variable ${{{name}}}: define {name} in the job's env or in supervisord's \
         environment, or write $$ for a literal $"
    )]
    Undefined { name: String },
    #[error("unterminated \"${{\": expected ${{NAME}}, or $$ for a literal $")]
    Unterminated,
    #[error(
        "invalid variable name {name:?} in ${{...}}: expected letters, digits and '_', not \
         starting with a digit"
    )]
    InvalidName { name: String },
}

/// Replaces each `${NAME}` in `text` by `lookup(NAME)` and each `$$` by `$`.
pub(crate) fn substitute(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, SubstituteError> {
    let mut output = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(dollar) = rest.find('$') {
        output.push_str(&rest[..dollar]);
        let after = &rest[dollar + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            output.push('$');
            rest = tail;
        } else if let Some(reference) = after.strip_prefix('{') {
            let end = reference.find('}').ok_or(SubstituteError::Unterminated)?;
            let name = &reference[..end];
            if !is_variable_name(name) {
                return Err(SubstituteError::InvalidName {
                    name: name.to_string(),
                });
            }
            let value = lookup(name).ok_or_else(|| SubstituteError::Undefined {
                name: name.to_string(),
            })?;
            output.push_str(&value);
            rest = &reference[end + 1..];
        } else {
            output.push('$');
            rest = after;
        }
    }
    output.push_str(rest);
    Ok(output)
}

fn is_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Substitutes variables in the fields of `spec` listed in the module
/// documentation. The error points at the string that contains the reference.
pub(crate) fn substitute_spec(
    spec: &mut JobSpec,
    host: &HostContext,
) -> Result<(), ValidationError> {
    let from_host = |name: &str| host.environment.get(name).cloned();
    let mut env = BTreeMap::new();
    for (key, value) in &spec.env {
        let expanded = substitute(value, &from_host)
            .map_err(|error| ValidationError::new(FieldPath::of(&["env"]).key(key), error))?;
        env.insert(key.clone(), expanded);
    }
    spec.env = env;

    let env = &spec.env;
    let from_job = |name: &str| env.get(name).cloned().or_else(|| from_host(name));
    let mut command = Vec::with_capacity(spec.command.len());
    for (index, argument) in spec.command.iter().enumerate() {
        let expanded = substitute(argument, &from_job).map_err(|error| {
            ValidationError::new(FieldPath::of(&["command"]).index(index), error)
        })?;
        command.push(expanded);
    }

    let working_dir = match &spec.working_dir {
        Some(dir) => Some(
            substitute(dir, &from_job)
                .map_err(|error| ValidationError::new(FieldPath::of(&["working_dir"]), error))?,
        ),
        None => None,
    };

    let mut sources = Vec::new();
    for (index, mount) in spec.mounts.iter().enumerate() {
        if let MountSpec::Bind { source, .. } = mount {
            let path = FieldPath::of(&["mounts"]).index(index).key("source");
            let expanded = substitute(&source.to_string_lossy(), &from_job)
                .map_err(|error| ValidationError::new(path, error))?;
            sources.push((index, PathBuf::from(expanded)));
        }
    }

    spec.command = command;
    spec.working_dir = working_dir;
    for (index, expanded) in sources {
        if let MountSpec::Bind { source, .. } = &mut spec.mounts[index] {
            *source = expanded;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(name: &str) -> Option<String> {
        match name {
            "HOME" => Some("/root".to_string()),
            "EMPTY" => Some(String::new()),
            "DOLLAR" => Some("$$".to_string()),
            _ => None,
        }
    }

    #[test]
    fn substitute_replaces_references() {
        assert_eq!(substitute("${HOME}/data", &lookup).unwrap(), "/root/data");
        assert_eq!(substitute("a${EMPTY}b", &lookup).unwrap(), "ab");
        assert_eq!(substitute("${HOME}${HOME}", &lookup).unwrap(), "/root/root");
        assert_eq!(substitute("héllo ${HOME}", &lookup).unwrap(), "héllo /root");
    }

    #[test]
    fn substitute_escapes_double_dollar() {
        assert_eq!(substitute("cost: $$5", &lookup).unwrap(), "cost: $5");
        assert_eq!(substitute("$${HOME}", &lookup).unwrap(), "${HOME}");
        assert_eq!(substitute("$$$$", &lookup).unwrap(), "$$");
    }

    #[test]
    fn substitute_keeps_other_dollars() {
        assert_eq!(substitute("echo $HOME", &lookup).unwrap(), "echo $HOME");
        assert_eq!(substitute("price $", &lookup).unwrap(), "price $");
        assert_eq!(substitute("$1 $?", &lookup).unwrap(), "$1 $?");
    }

    #[test]
    fn substitute_does_not_recurse() {
        assert_eq!(substitute("${DOLLAR}", &lookup).unwrap(), "$$");
    }

    #[test]
    fn substitute_rejects_undefined() {
        let error = substitute("x ${NOPE} y", &lookup).unwrap_err();
        assert_eq!(
            error,
            SubstituteError::Undefined {
                name: "NOPE".into()
            }
        );
        assert!(
            error.to_string().starts_with("undefined variable ${NOPE}"),
            "{error}"
        );
    }

    #[test]
    fn substitute_rejects_unterminated() {
        assert_eq!(
            substitute("${HOME", &lookup),
            Err(SubstituteError::Unterminated)
        );
    }

    #[test]
    fn substitute_rejects_invalid_names() {
        for text in ["${}", "${1X}", "${A-B}", "${A B}", "${HOME:-x}"] {
            assert!(
                matches!(
                    substitute(text, &lookup),
                    Err(SubstituteError::InvalidName { .. })
                ),
                "{text}"
            );
        }
    }
}
