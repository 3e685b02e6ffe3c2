//! Deserializers that accept only the JSON types the job spec documents, for
//! use with `#[serde(deserialize_with)]`.
//!
//! Serde's derived impls accept more than a job file may contain: a struct
//! also accepts a JSON array of its field values in declaration order, and a
//! unit-only enum also accepts a one-key object such as `{"host": null}`.
//! The helpers here accept only a JSON object for a struct and only a JSON
//! string for an enum, and their messages list the keys or values accepted.

use std::fmt;
use std::marker::PhantomData;

use serde::de::value::MapAccessDeserializer;
use serde::de::{self, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};

/// Returns the names that serde_derive passes to the deserializer for `T`:
/// the keys of a struct or the variant names of an enum. Returns an empty
/// list for any other type.
pub(crate) fn serde_names<'de, T: Deserialize<'de>>() -> &'static [&'static str] {
    let mut capture = NameCapture { names: &[] };
    // The capture always fails after recording the names, so the result
    // carries no information.
    let _ = T::deserialize(&mut capture);
    capture.names
}

/// A deserializer that records the names of the requested struct or enum and
/// then fails.
struct NameCapture {
    names: &'static [&'static str],
}

impl<'de> Deserializer<'de> for &mut NameCapture {
    type Error = de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("not a struct or an enum"))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Self::Error> {
        self.names = fields;
        Err(de::Error::custom("struct keys recorded"))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        variants: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Self::Error> {
        self.names = variants;
        Err(de::Error::custom("enum variants recorded"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map identifier ignored_any
    }
}

/// Describes a JSON object by its keys, such as ``a JSON object with the keys
/// `initial` and `max` ``.
pub(crate) fn describe_object(keys: &[&str]) -> String {
    format!("a JSON object{}", describe_keys(keys))
}

/// Returns `` with the keys `a` and `b` ``, or nothing for no keys.
fn describe_keys(keys: &[&str]) -> String {
    if keys.is_empty() {
        return String::new();
    }
    let keys: Vec<String> = keys.iter().map(|key| format!("`{key}`")).collect();
    format!(" with the keys {}", join_alternatives(&keys, "and"))
}

/// Describes the accepted JSON strings, such as `"bind" or "tmpfs"` or
/// `one of "none", "loopback", "host"`.
pub(crate) fn describe_names<S: AsRef<str>>(names: &[S]) -> String {
    let quoted: Vec<String> = names
        .iter()
        .map(|name| format!("{:?}", name.as_ref()))
        .collect();
    match quoted.len() {
        0 => "no value".to_string(),
        1 | 2 => join_alternatives(&quoted, "or"),
        _ => format!("one of {}", quoted.join(", ")),
    }
}

/// Joins `a`, `a and b` or `a, b and c` with the given conjunction.
fn join_alternatives(items: &[String], conjunction: &str) -> String {
    match items.split_last() {
        None => String::new(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} {conjunction} {last}", rest.join(", ")),
    }
}

/// Deserializes a struct from a JSON object only.
pub(crate) fn object<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    deserializer.deserialize_map(ObjectVisitor(PhantomData))
}

struct ObjectVisitor<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&describe_object(serde_names::<T>()))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
        // The map access tracks the path of each value, so errors inside the
        // struct keep their field paths.
        T::deserialize(MapAccessDeserializer::new(map))
    }
}

/// Deserializes an optional struct from `null` or a JSON object.
pub(crate) fn optional_object<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    deserializer.deserialize_option(OptionalObjectVisitor(PhantomData))
}

struct OptionalObjectVisitor<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for OptionalObjectVisitor<T> {
    type Value = Option<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "null or {}", describe_object(serde_names::<T>()))
    }

    fn visit_none<E: de::Error>(self) -> Result<Option<T>, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Option<T>, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Option<T>, D::Error> {
        object(deserializer).map(Some)
    }
}

/// Deserializes a list of structs from a JSON array of JSON objects only.
pub(crate) fn object_list<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    deserializer.deserialize_seq(ObjectListVisitor(PhantomData))
}

struct ObjectListVisitor<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectListVisitor<T> {
    type Value = Vec<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys = describe_keys(serde_names::<T>());
        write!(f, "a JSON array of objects{keys}")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(ObjectSeed(PhantomData))? {
            items.push(item);
        }
        Ok(items)
    }
}

struct ObjectSeed<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> DeserializeSeed<'de> for ObjectSeed<T> {
    type Value = T;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<T, D::Error> {
        object(deserializer)
    }
}

/// Deserializes a unit-only enum from a JSON string only.
pub(crate) fn name<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    deserializer.deserialize_str(NameVisitor(PhantomData))
}

/// Like [`name`], for a field whose absence the caller reports itself.
pub(crate) fn present_name<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    name(deserializer).map(Some)
}

struct NameVisitor<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for NameVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&describe_names(serde_names::<T>()))
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<T, E> {
        T::deserialize(value.into_deserializer())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{BackoffConfig, MountSpec, Network};

    #[test]
    fn names_of_struct_and_enum() {
        assert_eq!(serde_names::<BackoffConfig>(), ["initial", "max"]);
        assert_eq!(serde_names::<Network>(), ["none", "loopback", "host"]);
        assert!(serde_names::<u32>().is_empty());
        assert!(serde_names::<MountSpec>().is_empty());
    }

    #[test]
    fn describe_lists() {
        assert_eq!(describe_object(&[]), "a JSON object");
        assert_eq!(
            describe_object(&["initial", "max"]),
            "a JSON object with the keys `initial` and `max`"
        );
        assert_eq!(
            describe_object(&["a", "b", "c"]),
            "a JSON object with the keys `a`, `b` and `c`"
        );
        assert_eq!(describe_names(&["bind"]), "\"bind\"");
        assert_eq!(describe_names(&["bind", "tmpfs"]), "\"bind\" or \"tmpfs\"");
        assert_eq!(
            describe_names(&["none", "loopback", "host"]),
            "one of \"none\", \"loopback\", \"host\""
        );
    }
}
