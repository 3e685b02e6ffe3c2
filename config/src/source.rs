//! Origins of the values of a (possibly merged) job document, and the
//! conversion of deserialization and validation errors to located
//! [`ConfigError`]s.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::{ConfigError, UnknownField};
use crate::field::{FieldPath, Segment};
use crate::position::{Position, PositionIndex};
use crate::validate::ValidationError;

/// Largest edit distance at which an unknown key or value gets a suggestion.
const MAX_SUGGESTION_DISTANCE: usize = 2;

/// The job file and its drop-ins, with the positions of their values, and the
/// file each value of the merged document came from.
#[derive(Debug)]
pub(crate) struct SourceMap {
    /// The job file first, then the drop-ins in the order they were applied.
    files: Vec<(PathBuf, PositionIndex)>,
    /// File index by JSON pointer. A value whose pointer and ancestors have
    /// no entry came from the job file. An entry covers the whole subtree
    /// below its pointer, except where a deeper entry overrides it.
    origins: BTreeMap<String, usize>,
}

impl SourceMap {
    pub(crate) fn new(file: &Path, index: PositionIndex) -> Self {
        SourceMap {
            files: vec![(file.to_path_buf(), index)],
            origins: BTreeMap::new(),
        }
    }

    /// Adds a drop-in and returns its file index for [`SourceMap::set_origin`].
    pub(crate) fn add_file(&mut self, file: &Path, index: PositionIndex) -> usize {
        self.files.push((file.to_path_buf(), index));
        self.files.len() - 1
    }

    /// Records that the value at `pointer`, with everything below it, came
    /// from file `file`.
    pub(crate) fn set_origin(&mut self, pointer: &str, file: usize) {
        self.clear_origin(pointer);
        self.origins.insert(pointer.to_string(), file);
    }

    /// Forgets the origins of `pointer` and everything below it, as when a
    /// drop-in deletes the value.
    pub(crate) fn clear_origin(&mut self, pointer: &str) {
        let below = format!("{pointer}/");
        let doomed: Vec<String> = self
            .origins
            .range(pointer.to_string()..)
            .map(|(key, _)| key)
            .take_while(|key| *key == pointer || key.starts_with(&below))
            .cloned()
            .collect();
        for key in doomed {
            self.origins.remove(&key);
        }
    }

    /// Origins recorded so far, by pointer.
    #[cfg(test)]
    pub(crate) fn origins(&self) -> impl Iterator<Item = (&str, usize)> {
        self.origins
            .iter()
            .map(|(pointer, file)| (pointer.as_str(), *file))
    }

    /// Returns the file and position of the value at `path`, or of its key
    /// when `at_key` is set. A value missing from the text (a default) is
    /// placed at its nearest ancestor that the text contains.
    fn locate(&self, path: &FieldPath, at_key: bool) -> (PathBuf, Position) {
        let chain = path.pointer_chain();
        let file = chain
            .iter()
            .find_map(|pointer| self.origins.get(pointer))
            .copied()
            .unwrap_or(0);
        let (file, index) = &self.files[file];
        let key_position = if at_key { index.key(&chain[0]) } else { None };
        let position = key_position
            .or_else(|| chain.iter().find_map(|pointer| index.value(pointer)))
            .unwrap_or(Position { line: 1, column: 1 });
        (file.clone(), position)
    }

    pub(crate) fn validation_error(&self, error: ValidationError) -> ConfigError {
        let (file, position) = self.locate(&error.path, error.at_key);
        ConfigError::Invalid {
            file,
            line: position.line,
            column: position.column,
            field: error.path.to_string(),
            message: error.message,
        }
    }

    /// Converts a deserialization error: unknown keys become
    /// [`ConfigError::UnknownField`] with a suggestion, unknown enum values get
    /// a suggestion, and other type errors get the field's allowed range.
    pub(crate) fn deserialize_error(
        &self,
        error: serde_path_to_error::Error<serde_json::Error>,
    ) -> ConfigError {
        let mut path = FieldPath::root();
        for segment in error.path().iter() {
            match segment {
                serde_path_to_error::Segment::Seq { index } => path.push(Segment::Index(*index)),
                serde_path_to_error::Segment::Map { key } => path.push(Segment::Key(key.clone())),
                serde_path_to_error::Segment::Enum { variant } => {
                    path.push(Segment::Key(variant.clone()))
                }
                serde_path_to_error::Segment::Unknown => break,
            }
        }
        let message = error.into_inner().to_string();

        if let Some((key, expected)) = split_unknown(&message, "unknown field `") {
            // The path ends at the unknown key for plain structs, but at the
            // containing object for maps read through a helper struct.
            let field = match path.last() {
                Some(Segment::Key(last)) if *last == key => path.clone(),
                _ => path.key(&key),
            };
            let parent = field.parent().unwrap_or_default();
            let (file, position) = self.locate(&field, true);
            return ConfigError::UnknownField(Box::new(UnknownField {
                file,
                line: position.line,
                column: position.column,
                field: field.to_string(),
                parent: parent.to_string(),
                suggestion: closest(&key, &expected).map(str::to_string),
                key,
                expected,
            }));
        }

        let message = match split_unknown(&message, "unknown variant `") {
            Some((value, expected)) => {
                let hint = closest(&value, &expected)
                    .map(|name| format!(", did you mean `{name}`?"))
                    .unwrap_or_default();
                let choices: Vec<String> =
                    expected.iter().map(|name| format!("`{name}`")).collect();
                format!(
                    "invalid value {value:?}: expected one of {}{hint}",
                    choices.join(", ")
                )
            }
            None => match allowed_range(&path) {
                Some(range) => format!("{} (allowed: {range})", name_json_types(&message)),
                None => name_json_types(&message),
            },
        };
        let (file, position) = self.locate(&path, false);
        ConfigError::Invalid {
            file,
            line: position.line,
            column: position.column,
            field: path.to_string(),
            message,
        }
    }
}

/// Replaces the Rust type that serde names, as in "expected struct
/// RestartConfig" or "expected u32", with the JSON type a job file needs.
fn name_json_types(message: &str) -> String {
    if let Some((found, _)) = message.split_once(", expected struct ") {
        return format!("{found}, expected a JSON object");
    }
    let Some((found, rust_type)) = message.rsplit_once(", expected ") else {
        return message.to_string();
    };
    let json_type = match rust_type {
        "u8" | "u16" | "u32" | "u64" | "usize" => "a whole number, 0 or more",
        "i8" | "i16" | "i32" | "i64" | "isize" => "a whole number",
        "f32" | "f64" => "a number",
        _ => return message.to_string(),
    };
    format!("{found}, expected {json_type}")
}

/// Splits serde's "unknown field `x`, expected one of `a`, `b`" message into
/// the unknown name and the expected names.
fn split_unknown(message: &str, prefix: &str) -> Option<(String, Vec<String>)> {
    let rest = message.strip_prefix(prefix)?;
    let (name, rest) = rest.split_once('`')?;
    let expected = rest
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect();
    Some((name.to_string(), expected))
}

/// Returns the candidate closest to `input`, if it is close enough to be a
/// likely typo.
fn closest<'a>(input: &str, candidates: &'a [String]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|candidate| (strsim::damerau_levenshtein(input, candidate), candidate))
        .filter(|&(distance, _)| distance <= MAX_SUGGESTION_DISTANCE)
        .min_by_key(|&(distance, _)| distance)
        .map(|(_, candidate)| candidate.as_str())
}

/// Returns the allowed values of a numeric field, for serde's type errors such
/// as "invalid value: integer `-5`, expected u64" that do not state them.
fn allowed_range(path: &FieldPath) -> Option<&'static str> {
    let text = path.to_string();
    let range = match text.as_str() {
        "resources.cpu_weight" | "resources.io.weight" => "1 to 10000",
        "resources.pids" => "1 to 4194304",
        "resources.cpus" => "0.01 to the number of online CPUs",
        "restart.max_restarts" | "logs.keep" => "0 to 4294967295",
        _ if text.starts_with("ports[") && text.ends_with("].container") => "1 to 65535",
        _ if text.starts_with("resources.io.read_iops")
            || text.starts_with("resources.io.write_iops") =>
        {
            "1 or more"
        }
        _ => return None,
    };
    Some(range)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_unknown_field_message() {
        let message = "unknown field `memroy`, expected one of `memory`, `memory_swap`, `cpus`";
        let (key, expected) = split_unknown(message, "unknown field `").unwrap();
        assert_eq!(key, "memroy");
        assert_eq!(expected, vec!["memory", "memory_swap", "cpus"]);
    }

    #[test]
    fn split_unknown_with_two_or_no_choices() {
        let (key, expected) = split_unknown(
            "unknown variant `bnd`, expected `bind` or `tmpfs`",
            "unknown variant `",
        )
        .unwrap();
        assert_eq!(key, "bnd");
        assert_eq!(expected, vec!["bind", "tmpfs"]);
        let (key, expected) =
            split_unknown("unknown field `x`, there are no fields", "unknown field `").unwrap();
        assert_eq!(key, "x");
        assert!(expected.is_empty());
    }

    #[test]
    fn closest_suggests_only_near_names() {
        let names: Vec<String> = ["memory", "memory_swap", "cpus"].map(String::from).into();
        assert_eq!(closest("memroy", &names), Some("memory"));
        assert_eq!(closest("cpu", &names), Some("cpus"));
        assert_eq!(closest("network", &names), None);
    }

    #[test]
    fn origins_cover_subtrees_until_cleared() {
        let mut sources = SourceMap::new(Path::new("/a.json"), PositionIndex::default());
        let dropin = sources.add_file(Path::new("/b.json"), PositionIndex::default());
        sources.set_origin("/resources/io", dropin);
        sources.set_origin("/resources/io/weight", 0);
        sources.set_origin("/resources/iox", dropin);
        sources.clear_origin("/resources/io");
        assert!(!sources.origins.contains_key("/resources/io"));
        assert!(!sources.origins.contains_key("/resources/io/weight"));
        assert_eq!(sources.origins.get("/resources/iox"), Some(&dropin));
    }
}
