//! Paths of values inside a job document, such as `resources.memory` or
//! `ports[0].host`.

use std::fmt;

/// One step of a [`FieldPath`]: an object key or an array index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Segment {
    Key(String),
    Index(usize),
}

/// The location of a value in a JSON document, from the root down.
///
/// It displays as `resources.memory`, `ports[0].host` or
/// `resources.io.read_bps["/dev/vda"]`: keys that are not identifiers are
/// quoted in brackets.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct FieldPath(Vec<Segment>);

impl FieldPath {
    pub(crate) fn root() -> Self {
        FieldPath(Vec::new())
    }

    /// Builds a path of object keys only, such as `["resources", "memory"]`.
    pub(crate) fn of(keys: &[&str]) -> Self {
        FieldPath(
            keys.iter()
                .map(|key| Segment::Key(key.to_string()))
                .collect(),
        )
    }

    pub(crate) fn key(&self, key: &str) -> Self {
        let mut segments = self.0.clone();
        segments.push(Segment::Key(key.to_string()));
        FieldPath(segments)
    }

    pub(crate) fn index(&self, index: usize) -> Self {
        let mut segments = self.0.clone();
        segments.push(Segment::Index(index));
        FieldPath(segments)
    }

    pub(crate) fn push(&mut self, segment: Segment) {
        self.0.push(segment);
    }

    pub(crate) fn parent(&self) -> Option<FieldPath> {
        let (_, rest) = self.0.split_last()?;
        Some(FieldPath(rest.to_vec()))
    }

    pub(crate) fn last(&self) -> Option<&Segment> {
        self.0.last()
    }

    pub(crate) fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// Formats the path as an RFC 6901 JSON pointer (`/resources/memory`).
    pub(crate) fn to_pointer(&self) -> String {
        let mut pointer = String::new();
        for segment in &self.0 {
            pointer.push('/');
            match segment {
                Segment::Key(key) => pointer.push_str(&escape_pointer_token(key)),
                Segment::Index(index) => pointer.push_str(&index.to_string()),
            }
        }
        pointer
    }

    /// Returns the pointers of this path and of each ancestor, longest first.
    /// The root's pointer is the empty string.
    pub(crate) fn pointer_chain(&self) -> Vec<String> {
        (0..=self.0.len())
            .rev()
            .map(|len| FieldPath(self.0[..len].to_vec()).to_pointer())
            .collect()
    }
}

/// Escapes `~` and `/` in an object key for use in a JSON pointer (RFC 6901).
pub(crate) fn escape_pointer_token(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

fn is_identifier(key: &str) -> bool {
    let mut chars = key.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (position, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Key(key) if is_identifier(key) => {
                    if position > 0 {
                        f.write_str(".")?;
                    }
                    f.write_str(key)?;
                }
                Segment::Key(key) => write!(f, "[{key:?}]")?,
                Segment::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_joins_keys_and_indices() {
        let path = FieldPath::of(&["ports"]).index(0).key("host");
        assert_eq!(path.to_string(), "ports[0].host");
    }

    #[test]
    fn display_quotes_non_identifier_keys() {
        let path = FieldPath::of(&["resources", "io", "read_bps"]).key("/dev/vda");
        assert_eq!(path.to_string(), r#"resources.io.read_bps["/dev/vda"]"#);
    }

    #[test]
    fn pointer_escapes_tilde_and_slash() {
        let path = FieldPath::of(&["io", "a~b/c"]).index(3);
        assert_eq!(path.to_pointer(), "/io/a~0b~1c/3");
        assert_eq!(FieldPath::root().to_pointer(), "");
    }

    #[test]
    fn pointer_chain_ends_at_root() {
        let path = FieldPath::of(&["a", "b"]);
        assert_eq!(path.pointer_chain(), vec!["/a/b", "/a", ""]);
    }
}
