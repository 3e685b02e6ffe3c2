//! Origins of the values of a (possibly merged) job document, and the
//! conversion of deserialization and validation errors to located
//! [`ConfigError`]s.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::{ConfigError, UnknownField};
use crate::field::{FieldPath, Segment};
use crate::position::{Position, PositionIndex};
use crate::strict::describe_names;
use crate::validate::ValidationError;

/// Largest edit distance at which an unknown key or value gets a suggestion,
/// however long the names are.
const MAX_SUGGESTION_DISTANCE: usize = 2;

/// Number of characters of the longer name per allowed edit. One edit in
/// three characters is taken as the most that a typo changes, so `bogus`,
/// 2 edits from `logs`, gets no suggestion.
const CHARACTERS_PER_EDIT: usize = 3;

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
                    .map(|name| format!(", did you mean {name:?}?"))
                    .unwrap_or_default();
                format!(
                    "invalid value {value:?}: expected {}{hint}",
                    describe_names(&expected)
                )
            }
            None => describe_serde_error(&message, &path),
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

/// Rewrites serde's type and value errors in JSON terms. Serde names Rust
/// types and its own data model, as in "invalid type: map, expected a
/// sequence" or "invalid value: integer `-1`, expected u16". Other messages
/// are returned unchanged.
fn describe_serde_error(message: &str, path: &FieldPath) -> String {
    if let Some(rest) = message.strip_prefix("invalid type: ") {
        // The expected part is ours or serde's, but the found part may quote
        // a string from the job file, so split at the last separator.
        if let Some((found, expected)) = rest.rsplit_once(", expected ") {
            return format!(
                "expected {}, found {}",
                describe_expected(expected, path),
                describe_found(found)
            );
        }
    }
    if let Some(rest) = message.strip_prefix("invalid value: ") {
        if let Some((found, expected)) = rest.rsplit_once(", expected ") {
            let number = found
                .strip_prefix("integer `")
                .and_then(|rest| rest.strip_suffix('`'));
            if let (Some(number), Some(range)) = (number, numeric_range(expected, path)) {
                return format!(
                    "{} {number} is out of range: allowed {}",
                    range.label, range.allowed
                );
            }
            return format!(
                "invalid value {}: expected {}",
                describe_found(found),
                describe_expected(expected, path)
            );
        }
    }
    if let Some(rest) = message.strip_prefix("invalid length ") {
        if let Some((length, expected)) = rest.split_once(", expected ") {
            return format!(
                "expected {}, found a JSON array of {length} elements",
                describe_expected(expected, path)
            );
        }
    }
    message.to_string()
}

/// Names the JSON type or value that serde's "expected" part describes.
fn describe_expected(expected: &str, path: &FieldPath) -> String {
    if let Some(range) = numeric_range(expected, path) {
        let kind = if range.whole {
            "a whole number"
        } else {
            "a number"
        };
        return format!("{kind} from {}", range.allowed);
    }
    let json = match expected {
        "a sequence" => "a JSON array",
        "a map" => "a JSON object",
        "a string" | "a borrowed string" | "path string" | "string or map" => "a string",
        "unit" | "unit variant" => "null",
        "map with a single key" => "a JSON object with one key",
        _ if expected.starts_with("struct ") => "a JSON object",
        _ if expected.starts_with("enum ") => "a string",
        _ => expected,
    };
    json.to_string()
}

/// Names the JSON value that serde's "invalid type" or "invalid value" part
/// describes, such as ``integer `5` `` or ``string "x"``.
fn describe_found(found: &str) -> String {
    let quoted = |prefix: &str| {
        found
            .strip_prefix(prefix)
            .and_then(|rest| rest.strip_suffix('`'))
    };
    if let Some(number) = quoted("integer `").or_else(|| quoted("floating point `")) {
        return format!("the number {number}");
    }
    if let Some(boolean) = quoted("boolean `") {
        return format!("the boolean {boolean}");
    }
    if let Some(string) = found.strip_prefix("string ") {
        return format!("the string {string}");
    }
    let json = match found {
        "null" | "unit value" => "null",
        "sequence" => "a JSON array",
        "map" => "a JSON object",
        _ => found,
    };
    json.to_string()
}

/// The allowed values of a numeric field.
struct NumericRange {
    /// Name of the value in messages, such as `container port`.
    label: String,
    allowed: String,
    /// Whether only whole numbers are allowed.
    whole: bool,
}

/// Returns the allowed values of the numeric field at `path`, for serde's
/// errors that name only the Rust type, such as "expected u16". Returns None
/// when `expected` is not a Rust number type.
fn numeric_range(expected: &str, path: &FieldPath) -> Option<NumericRange> {
    let type_range = match expected {
        "u8" => "0 to 255",
        "u16" => "0 to 65535",
        "u32" => "0 to 4294967295",
        "u64" | "usize" => "0 to 18446744073709551615",
        "i32" => "-2147483648 to 2147483647",
        "i64" | "isize" => "-9223372036854775808 to 9223372036854775807",
        "f32" | "f64" => "",
        _ => return None,
    };
    let text = path.to_string();
    let (label, allowed) = match text.as_str() {
        "resources.cpu_weight" | "resources.io.weight" => (None, "1 to 10000"),
        "resources.pids" => (None, "1 to 4194304"),
        "logs.keep" => (None, "0 to 1000"),
        "resources.cpus" => (None, "0.01 to the number of online CPUs"),
        "user_namespace.uid" | "user_namespace.gid" | "user_namespace.size" => {
            (None, "1 to 4294967295")
        }
        _ if text.starts_with("ports[") && text.ends_with("].container") => {
            (Some("container port".to_string()), "1 to 65535")
        }
        _ if text.starts_with("resources.io.read_iops[") => {
            (Some("read_iops limit".to_string()), "1 or more")
        }
        _ if text.starts_with("resources.io.write_iops[") => {
            (Some("write_iops limit".to_string()), "1 or more")
        }
        _ => (None, type_range),
    };
    if allowed.is_empty() {
        return None;
    }
    let label = label.unwrap_or_else(|| match path.last() {
        Some(Segment::Key(key)) => key.clone(),
        _ => "value".to_string(),
    });
    Some(NumericRange {
        label,
        allowed: allowed.to_string(),
        whole: !expected.starts_with('f'),
    })
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
/// likely typo: at most one edit (an insertion, deletion, substitution or
/// transposition) per [`CHARACTERS_PER_EDIT`] characters of the longer
/// name, at least one edit and at most [`MAX_SUGGESTION_DISTANCE`].
fn closest<'a>(input: &str, candidates: &'a [String]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|candidate| (strsim::damerau_levenshtein(input, candidate), candidate))
        .filter(|&(distance, candidate)| distance <= max_typo_distance(input, candidate))
        .min_by_key(|&(distance, _)| distance)
        .map(|(_, candidate)| candidate.as_str())
}

/// Returns the largest edit distance between `input` and `candidate` that
/// [`closest`] takes for a typo.
pub(crate) fn max_typo_distance(input: &str, candidate: &str) -> usize {
    let longer = input.chars().count().max(candidate.chars().count());
    (longer / CHARACTERS_PER_EDIT).clamp(1, MAX_SUGGESTION_DISTANCE)
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
    fn closest_suggests_only_plausible_typos() {
        let top_level: Vec<String> = [
            "image",
            "command",
            "env",
            "cwd",
            "user",
            "resources",
            "mounts",
            "ports",
            "network",
            "restart",
            "logs",
            "stop",
            "autostart",
            "labels",
        ]
        .map(String::from)
        .into();
        for (input, expected) in [
            ("comand", Some("command")),
            ("commnad", Some("command")),
            ("imgae", Some("image")),
            ("lgos", Some("logs")),
            ("log", Some("logs")),
            ("evn", Some("env")),
            ("restrat", Some("restart")),
            ("autostrat", Some("autostart")),
            ("resorces", Some("resources")),
            ("bogus", None),
            ("foo", None),
            ("x", None),
            ("stdin", None),
            ("networks_x", None),
        ] {
            assert_eq!(closest(input, &top_level), expected, "{input}");
        }
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
