//! The man page of the job file format, `corral-job(5)`, rendered from the
//! job spec's JSON Schema, so that every field, type and default in it is
//! the one the parser uses.

use std::fmt::Write;
use std::path::PathBuf;

use serde_json::{Map, Value};

use super::GeneratedFile;

/// Returns `man/corral-job.5`.
pub fn job_file_page() -> GeneratedFile {
    let schema = corral_config::job_schema();
    let mut page = String::new();
    let _ = writeln!(
        page,
        ".TH CORRAL-JOB 5 \"\" \"corral {}\" \"corral\"",
        env!("CARGO_PKG_VERSION")
    );
    page.push_str(".SH NAME\ncorral\\-job \\- job files of supervisord\n");
    page.push_str(".SH SYNOPSIS\n/etc/corral/jobs.d/\\fINAME\\fR.json\n");
    page.push_str(DESCRIPTION);
    page.push_str(".SH FIELDS\n");
    let root = Walk {
        defs: schema.get("$defs").and_then(Value::as_object),
    };
    if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
        root.fields(properties, "", &mut page);
    }
    page.push_str(VALUES);
    page.push_str(EXAMPLE);
    page.push_str(SEE_ALSO);
    GeneratedFile {
        path: PathBuf::from("man").join("corral-job.5"),
        content: page.into_bytes(),
    }
}

const DESCRIPTION: &str = r#".SH DESCRIPTION
Each file \fINAME\fR.json in the jobs directory of
.BR supervisord (8)
describes one job, named after the file. The file holds one JSON object;
every field is optional except \fBcommand\fR when the image supplies no
command. A field the format does not know, or a value of the wrong type,
makes the file invalid: the job shows INVALID with the file, line, column
and field of the error, and a job that runs keeps its last valid version.
.PP
Files \fINAME\fR.json.d/*.json change a job without editing its file. They
apply in byte order of their names, each as a JSON merge patch (RFC 7396):
an object merges key by key, an array or a scalar replaces the value, and
\fBnull\fR deletes the key so that the default applies again.
.PP
\fB${VAR}\fR in \fBcommand\fR, \fBenv\fR, \fBworking_dir\fR and bind mount
sources is replaced by a variable of the job's \fBenv\fR or of
supervisord's environment; \fB$$\fR stands for one \fB$\fR.
"#;

const VALUES: &str = r#".SH VALUES
.TP
.I duration
A number of seconds, such as \fB5\fR or \fB0.5\fR, or a string with a
unit: \fB"300ms"\fR, \fB"10s"\fR, \fB"2m"\fR, \fB"1h"\fR.
.TP
.I size
A number of bytes, or a string with a suffix for powers of 1024:
\fB"512K"\fR, \fB"64M"\fR, \fB"2G"\fR.
"#;

const EXAMPLE: &str = r#".SH EXAMPLE
.nf
{
  "command": ["/usr/bin/python3", "-m", "http.server", "8080"],
  "init": true,
  "network": "loopback",
  "ports": [{"host": "127.0.0.1:8080", "container": 8080}],
  "resources": {"memory": "128M", "cpus": 0.5, "pids": 64},
  "restart": {"policy": "always", "max_restarts": 10, "window": "5m"},
  "stop": {"signal": "SIGTERM", "timeout": "15s"}
}
.fi
"#;

const SEE_ALSO: &str = r#".SH FILES
.TP
.I /etc/corral/jobs.d/
The default jobs directory.
.SH SEE ALSO
.BR supervisord (8),
.BR supervisorctl (1),
.BR corral (8)
"#;

/// The schema's shared definitions, to resolve `$ref`s against.
struct Walk<'a> {
    defs: Option<&'a Map<String, Value>>,
}

impl Walk<'_> {
    /// Returns the definition a `$ref` names, or the schema itself.
    fn resolve<'b>(&'b self, schema: &'b Value) -> &'b Value {
        let target = schema
            .get("$ref")
            .and_then(Value::as_str)
            .and_then(|reference| reference.strip_prefix("#/$defs/"))
            .and_then(|name| self.defs?.get(name));
        match target {
            Some(target) => self.resolve(target),
            None => schema,
        }
    }

    /// Returns the schema without the `null` of an optional field.
    fn unwrap_optional<'b>(&'b self, schema: &'b Value) -> &'b Value {
        let variants = schema.get("anyOf").and_then(Value::as_array);
        let not_null: Vec<&Value> = variants
            .into_iter()
            .flatten()
            .filter(|variant| variant.get("type").and_then(Value::as_str) != Some("null"))
            .collect();
        match not_null.as_slice() {
            [only] => self.resolve(only),
            _ => self.resolve(schema),
        }
    }

    /// Writes one `.TP` entry per field of `properties`, and the fields of
    /// nested objects after their parent, with `prefix` before each name.
    fn fields(&self, properties: &Map<String, Value>, prefix: &str, page: &mut String) {
        for (name, property) in properties {
            let path = format!("{prefix}{name}");
            let definition = self.unwrap_optional(property);
            let item = definition.get("items").map(|items| self.resolve(items));
            let description = property
                .get("description")
                .or_else(|| definition.get("description"))
                .or_else(|| item?.get("description"))
                .and_then(Value::as_str)
                .unwrap_or("");
            let _ = writeln!(
                page,
                ".TP\n\\fB{}\\fR ({})",
                escape(&path),
                self.kind(property)
            );
            if !description.is_empty() {
                page.push_str(&prose(description));
                page.push('\n');
            }
            if let Some(default) = property.get("default").filter(|default| !is_empty(default)) {
                if !description.is_empty() {
                    page.push_str(".br\n");
                }
                let _ = writeln!(page, "Default: \\fB{}\\fR.", escape(&default.to_string()));
            }
            self.choices(definition, page);
            self.nested(definition, &path, page);
        }
    }

    /// Writes the fields of an object, of the objects in an array, and of
    /// each object variant of a field that takes several forms.
    fn nested(&self, definition: &Value, path: &str, page: &mut String) {
        if let Some(properties) = definition.get("properties").and_then(Value::as_object) {
            self.fields(properties, &format!("{path}."), page);
        }
        if let Some(items) = definition.get("items") {
            let item = self.resolve(items);
            if let Some(properties) = item.get("properties").and_then(Value::as_object) {
                self.fields(properties, &format!("{path}[]."), page);
            }
            let variants = item.get("oneOf").and_then(Value::as_array);
            let tags: Vec<String> = variants
                .into_iter()
                .flatten()
                .filter_map(|variant| variant.pointer("/properties/type/const")?.as_str())
                .map(|tag| format!("\"{tag}\""))
                .collect();
            if !tags.is_empty() {
                let _ = writeln!(
                    page,
                    ".TP\n\\fB{}[].type\\fR (one of {})\nThe kind of entry, which decides the fields below.",
                    escape(path),
                    tags.join(", ")
                );
            }
            for variant in variants.into_iter().flatten() {
                let Some(properties) = variant.get("properties").and_then(Value::as_object) else {
                    continue;
                };
                let tag = properties
                    .get("type")
                    .and_then(|tag| tag.get("const"))
                    .and_then(Value::as_str);
                let prefix = match tag {
                    Some(tag) => format!("{path}[] with type {tag}: "),
                    None => format!("{path}[]."),
                };
                let untagged: Map<String, Value> = properties
                    .iter()
                    .filter(|(name, _)| tag.is_none() || name.as_str() != "type")
                    .map(|(name, value)| (name.clone(), value.clone()))
                    .collect();
                self.fields(&untagged, &prefix, page);
            }
        }
    }

    /// Writes the allowed values of a field with a fixed set of them.
    fn choices(&self, definition: &Value, page: &mut String) {
        let variants = definition.get("oneOf").and_then(Value::as_array);
        let constants: Vec<(&str, &str)> = variants
            .into_iter()
            .flatten()
            .filter_map(|variant| {
                let value = variant.get("const")?.as_str()?;
                let description = variant
                    .get("description")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                Some((value, description))
            })
            .collect();
        for (value, description) in constants {
            let _ = writeln!(
                page,
                ".br\n\\fB\"{}\"\\fR: {}",
                escape(value),
                prose(description)
            );
        }
    }

    /// Names the type of a field, as the page's VALUES section does.
    fn kind(&self, property: &Value) -> String {
        match definition_name(property) {
            Some("Duration") => return "duration".to_string(),
            Some("ByteSize") => return "size".to_string(),
            _ => {}
        }
        let definition = self.unwrap_optional(property);
        if let Some(values) = definition.get("enum").and_then(Value::as_array) {
            let values: Vec<String> = values.iter().map(Value::to_string).collect();
            return format!("one of {}", escape(&values.join(", ")));
        }
        if definition.get("oneOf").is_some() {
            let kinds: Vec<String> = definition["oneOf"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|variant| variant.get("type").and_then(Value::as_str))
                .map(str::to_string)
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect();
            return kinds.join(" or ");
        }
        let types: Vec<&str> = match definition.get("type") {
            Some(Value::String(single)) => vec![single.as_str()],
            Some(Value::Array(several)) => several
                .iter()
                .filter_map(Value::as_str)
                .filter(|kind| *kind != "null")
                .collect(),
            _ => Vec::new(),
        };
        match types.as_slice() {
            ["array"] => {
                let item = definition.get("items").map(|items| self.resolve(items));
                match item
                    .and_then(|item| item.get("type"))
                    .and_then(Value::as_str)
                {
                    Some("string") => "array of strings".to_string(),
                    _ => "array of objects".to_string(),
                }
            }
            ["object"]
                if definition
                    .get("additionalProperties")
                    .is_some_and(Value::is_object) =>
            {
                let value = self.kind(&definition["additionalProperties"]);
                format!("object of {value}s")
            }
            [] => "value".to_string(),
            kinds => kinds.join(" or "),
        }
    }
}

/// Returns the name of the shared definition a field refers to, directly
/// or as the non-null variant of an optional field.
fn definition_name(property: &Value) -> Option<&str> {
    let direct = property.get("$ref").and_then(Value::as_str);
    let optional = || {
        property
            .get("anyOf")?
            .as_array()?
            .iter()
            .find_map(|variant| variant.get("$ref").and_then(Value::as_str))
    };
    direct.or_else(optional)?.strip_prefix("#/$defs/")
}

/// Returns whether a default is left out of the page: an empty array, or
/// an object, whose fields show their own defaults.
fn is_empty(default: &Value) -> bool {
    match default {
        Value::Array(items) => items.is_empty(),
        Value::Object(_) => true,
        _ => false,
    }
}

/// Turns a schema description into roff: one line, `code` in bold.
fn prose(text: &str) -> String {
    let joined = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut out = String::new();
    for (index, part) in escape(&joined).split('`').enumerate() {
        if index % 2 == 1 {
            let _ = write!(out, "\\fB{part}\\fR");
        } else {
            out.push_str(part);
        }
    }
    out
}

/// Escapes roff's backslash and hyphen, and a leading dot or quote.
fn escape(text: &str) -> String {
    let escaped = text.replace('\\', "\\e").replace('-', "\\-");
    if escaped.starts_with('.') || escaped.starts_with('\'') {
        format!("\\&{escaped}")
    } else {
        escaped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page_text() -> String {
        String::from_utf8(job_file_page().content).unwrap()
    }

    #[test]
    fn page_lists_every_field() {
        let text = page_text();
        for field in [
            "\\fBcommand\\fR (array of strings)",
            "\\fBresources.memory\\fR (size)",
            "\\fBrestart.backoff.initial\\fR (duration)",
            "\\fBrestart.policy\\fR (one of \"never\", \"on\\-failure\", \"always\")",
            "\\fBports[].host\\fR (string)",
            "\\fBmounts[] with type bind: source\\fR",
            "\\fBmounts[].type\\fR (one of \"bind\", \"tmpfs\")",
            "\\fBuser_namespace.uid\\fR",
            "\\fBnetwork\\fR (string)",
        ] {
            assert!(text.contains(field), "{field} is missing from:\n{text}");
        }
    }

    #[test]
    fn page_shows_defaults_and_choices() {
        let text = page_text();
        assert!(text.contains("Default: \\fB\"loopback\"\\fR."), "{text}");
        assert!(
            text.contains("\\fB\"host\"\\fR: The host's network namespace."),
            "{text}"
        );
    }

    #[test]
    fn page_example_is_a_valid_job() {
        let json: String = EXAMPLE
            .lines()
            .filter(|line| !line.starts_with('.'))
            .collect::<Vec<_>>()
            .join("\n");
        let parsed = corral_config::parse_job_str(
            "web",
            std::path::Path::new("/etc/corral/jobs.d/web.json"),
            &json,
        );
        assert!(parsed.is_ok(), "{json}\n{:?}", parsed.err());
    }

    #[test]
    fn escape_keeps_roff_requests_out() {
        assert_eq!(escape(".hidden"), "\\&.hidden");
        assert_eq!(escape("a\\b"), "a\\eb");
        assert_eq!(prose("use `x`\n  now"), "use \\fBx\\fR now");
    }
}
