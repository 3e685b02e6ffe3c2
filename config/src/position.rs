//! Line and column of every key and value in a JSON text.
//!
//! serde_json reports positions only for syntax errors. Validation runs after
//! deserialization, so this index maps each value's JSON pointer to where the
//! value starts, and each object member to where its key starts. It also
//! rejects duplicate keys, which serde_json's `Value` would silently collapse
//! to the last one.

use std::collections::{HashMap, HashSet};

use crate::field::FieldPath;

/// A 1-based line and column. Columns count characters, not bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Position {
    pub line: usize,
    pub column: usize,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    key: Option<Position>,
    value: Position,
}

/// Positions of all values of one JSON text, keyed by JSON pointer.
#[derive(Debug, Clone, Default)]
pub(crate) struct PositionIndex {
    entries: HashMap<String, Entry>,
}

/// A key that occurs twice in one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DuplicateKey {
    /// Path of the member, for example `resources.memory`.
    pub path: FieldPath,
    pub key: String,
    pub first: Position,
    pub second: Position,
}

impl PositionIndex {
    /// Indexes `text`, which serde_json must already have accepted.
    ///
    /// On text that is not valid JSON the index stops early and is incomplete,
    /// but building it never panics.
    pub(crate) fn build(text: &str) -> Result<Self, DuplicateKey> {
        let mut scanner = Scanner {
            bytes: text.as_bytes(),
            text,
            offset: 0,
            line: 1,
            column: 1,
            index: PositionIndex::default(),
        };
        scanner.skip_whitespace();
        scanner.value(FieldPath::root(), None)?;
        Ok(scanner.index)
    }

    /// Start of the value at `pointer`, if the text contains it.
    pub(crate) fn value(&self, pointer: &str) -> Option<Position> {
        self.entries.get(pointer).map(|entry| entry.value)
    }

    /// Start of the key of the object member at `pointer`, if the text contains
    /// it. Array elements and the root have no key.
    pub(crate) fn key(&self, pointer: &str) -> Option<Position> {
        self.entries.get(pointer).and_then(|entry| entry.key)
    }
}

struct Scanner<'a> {
    bytes: &'a [u8],
    text: &'a str,
    offset: usize,
    line: usize,
    column: usize,
    index: PositionIndex,
}

impl Scanner<'_> {
    fn position(&self) -> Position {
        Position {
            line: self.line,
            column: self.column,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.offset).copied()
    }

    /// Moves past one byte. UTF-8 continuation bytes do not advance the column,
    /// so columns count characters.
    fn advance(&mut self) {
        let Some(byte) = self.peek() else { return };
        self.offset += 1;
        if byte == b'\n' {
            self.line += 1;
            self.column = 1;
        } else if byte & 0xC0 != 0x80 {
            self.column += 1;
        }
    }

    fn skip_whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.advance();
        }
    }

    fn value(&mut self, path: FieldPath, key: Option<Position>) -> Result<(), DuplicateKey> {
        let start = self.position();
        self.index
            .entries
            .insert(path.to_pointer(), Entry { key, value: start });
        match self.peek() {
            Some(b'{') => self.object(&path),
            Some(b'[') => self.array(&path),
            Some(b'"') => {
                self.string();
                Ok(())
            }
            Some(_) => {
                self.scalar();
                Ok(())
            }
            None => Ok(()),
        }
    }

    fn object(&mut self, path: &FieldPath) -> Result<(), DuplicateKey> {
        self.advance();
        let mut seen: HashSet<String> = HashSet::new();
        loop {
            self.skip_whitespace();
            match self.peek() {
                Some(b'"') => {}
                Some(b'}') => {
                    self.advance();
                    return Ok(());
                }
                _ => return Ok(()),
            }
            let key_position = self.position();
            let raw_key = self.string();
            // The scanner runs only on text that serde_json parsed, so the
            // key is a valid JSON string and decoding it cannot fail there.
            let key: String = serde_json::from_str(raw_key).unwrap_or_default();
            let member = path.key(&key);
            if !seen.insert(key.clone()) {
                let first = self.index.key(&member.to_pointer()).unwrap_or(key_position);
                return Err(DuplicateKey {
                    path: member,
                    key,
                    first,
                    second: key_position,
                });
            }
            self.skip_whitespace();
            if self.peek() != Some(b':') {
                return Ok(());
            }
            self.advance();
            self.skip_whitespace();
            self.value(member, Some(key_position))?;
            self.skip_whitespace();
            if self.peek() == Some(b',') {
                self.advance();
            }
        }
    }

    fn array(&mut self, path: &FieldPath) -> Result<(), DuplicateKey> {
        self.advance();
        let mut element = 0usize;
        loop {
            self.skip_whitespace();
            match self.peek() {
                Some(b']') => {
                    self.advance();
                    return Ok(());
                }
                None => return Ok(()),
                Some(_) => {}
            }
            self.value(path.index(element), None)?;
            element += 1;
            self.skip_whitespace();
            if self.peek() == Some(b',') {
                self.advance();
            }
        }
    }

    /// Moves past a string, returning its source text with the quotes.
    fn string(&mut self) -> &str {
        let start = self.offset;
        self.advance();
        while let Some(byte) = self.peek() {
            self.advance();
            match byte {
                b'\\' => self.advance(),
                b'"' => break,
                _ => {}
            }
        }
        &self.text[start..self.offset]
    }

    fn scalar(&mut self) {
        while let Some(byte) = self.peek() {
            if matches!(byte, b',' | b']' | b'}' | b' ' | b'\t' | b'\n' | b'\r') {
                break;
            }
            self.advance();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(line: usize, column: usize) -> Option<Position> {
        Some(Position { line, column })
    }

    #[test]
    fn index_records_nested_values_and_keys() {
        let text = "{\n  \"resources\": {\n    \"memory\": \"12X\"\n  },\n  \"ports\": [1, {\"host\": \"a\"}]\n}";
        let index = PositionIndex::build(text).unwrap();
        assert_eq!(index.value(""), at(1, 1));
        assert_eq!(index.key("/resources"), at(2, 3));
        assert_eq!(index.value("/resources"), at(2, 16));
        assert_eq!(index.key("/resources/memory"), at(3, 5));
        assert_eq!(index.value("/resources/memory"), at(3, 15));
        assert_eq!(index.value("/ports/0"), at(5, 13));
        assert_eq!(index.value("/ports/1"), at(5, 16));
        assert_eq!(index.value("/ports/1/host"), at(5, 25));
        assert_eq!(index.key("/ports/1"), None);
        assert_eq!(index.value("/missing"), None);
    }

    #[test]
    fn index_counts_columns_in_characters() {
        let text = "{\"a\": \"héllo\", \"b\": 1}";
        let index = PositionIndex::build(text).unwrap();
        assert_eq!(index.value("/b"), at(1, 21));
    }

    #[test]
    fn index_decodes_escaped_keys() {
        let text = r#"{"read_bps": {"\/dev\/vda": 1, "a\"b": 2, "t~x": 3}}"#;
        let index = PositionIndex::build(text).unwrap();
        assert_eq!(index.value("/read_bps/~1dev~1vda"), at(1, 29));
        assert!(index.value("/read_bps/a\"b").is_some());
        assert!(index.value("/read_bps/t~0x").is_some());
    }

    #[test]
    fn index_skips_brackets_inside_strings() {
        let text = r#"{"a": "}]{[,\"", "b": [true, null]}"#;
        let index = PositionIndex::build(text).unwrap();
        assert_eq!(index.value("/b/1"), at(1, 30));
    }

    #[test]
    fn index_rejects_duplicate_key() {
        let text = "{\"env\": {\n  \"A\": \"1\",\n  \"A\": \"2\"\n}}";
        let duplicate = PositionIndex::build(text).unwrap_err();
        assert_eq!(duplicate.path.to_string(), "env.A");
        assert_eq!(duplicate.key, "A");
        assert_eq!(duplicate.first, Position { line: 2, column: 3 });
        assert_eq!(duplicate.second, Position { line: 3, column: 3 });
    }

    #[test]
    fn index_allows_same_key_in_sibling_objects() {
        let text = r#"[{"a": 1}, {"a": 2}]"#;
        let index = PositionIndex::build(text).unwrap();
        assert_eq!(index.value("/1/a"), at(1, 18));
    }

    #[test]
    fn index_survives_truncated_text() {
        for text in ["{\"a\": [1, {\"b\": \"x", "{\"a\"", "[", "\"abc", ""] {
            let _ = PositionIndex::build(text);
        }
    }
}
