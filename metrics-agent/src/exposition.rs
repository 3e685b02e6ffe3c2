//! The samples of one scrape and their text exposition format 0.0.4.
//!
//! The text is written directly instead of through protobuf metrics and the
//! `prometheus` crate's encoder, which at 1000 containers spares about
//! 20 000 metric objects and their label copies per scrape. A container's
//! labels are written once, and every line of the container copies that
//! text after the family's own label (`cpu`, `device` or `interface`), so
//! no line sorts its labels.

use std::fmt::Write;
use std::sync::LazyLock;

use prometheus::proto::MetricType;

use crate::families::{self, Family};

/// One label name and its value.
pub type Label = (&'static str, String);

struct Sample {
    family: &'static Family,
    /// The family's own label, added before the container's labels.
    label: Option<Label>,
    value: f64,
}

/// Samples of one container, held back until the whole container has been
/// read: a container that disappears halfway is dropped as a whole.
pub(crate) struct Samples {
    /// The container's labels, written once: `id="...",image="...",...`.
    labels: String,
    samples: Vec<Sample>,
}

impl Samples {
    /// Starts a buffer whose samples all carry `labels`, in this order.
    pub(crate) fn new<'a>(labels: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut text = String::new();
        write_labels(&mut text, labels);
        Self {
            labels: text,
            samples: Vec::with_capacity(40),
        }
    }

    /// Adds a sample with the container's labels and no others.
    pub(crate) fn push(&mut self, family: &'static Family, value: f64) {
        self.samples.push(Sample {
            family,
            label: None,
            value,
        });
    }

    /// Adds a sample with `label` before the container's labels.
    pub(crate) fn push_labeled(&mut self, family: &'static Family, label: Label, value: f64) {
        self.samples.push(Sample {
            family,
            label: Some(label),
            value,
        });
    }
}

/// The samples of one scrape.
#[derive(Default)]
pub(crate) struct Exposition {
    containers: Vec<Samples>,
    /// Samples with their own labels, such as the job states.
    others: Vec<(&'static Family, String, f64)>,
}

impl Exposition {
    /// Adds the samples of a container that was read completely.
    pub(crate) fn extend(&mut self, samples: Samples) {
        self.containers.push(samples);
    }

    /// Adds one sample with exactly `labels`, in this order.
    pub(crate) fn add(&mut self, family: &'static Family, labels: &[Label], value: f64) {
        let mut text = String::new();
        write_labels(
            &mut text,
            labels.iter().map(|(name, value)| (*name, value.as_str())),
        );
        self.others.push((family, text, value));
    }

    /// Appends every family that has samples to `out`, sorted by name, each
    /// with its `HELP` and `TYPE` lines.
    ///
    /// The samples stay with their container until here and each family
    /// picks its own out of every container, so the text is built once, in
    /// one buffer, instead of in a buffer per family that is copied at the
    /// end. That scan costs about a millisecond at 1000 containers.
    pub(crate) fn write_to(&self, out: &mut String) {
        let estimate: usize = self
            .containers
            .iter()
            .map(|container| container.samples.len() * (container.labels.len() + 64))
            .sum();
        out.reserve(estimate + self.others.len() * 96 + BY_NAME.len() * 160);

        for &family in BY_NAME.iter() {
            let mut header = false;
            for container in &self.containers {
                for sample in &container.samples {
                    if !std::ptr::eq(sample.family, family) {
                        continue;
                    }
                    if !header {
                        write_header(out, family);
                        header = true;
                    }
                    let own = sample.label.as_ref().filter(|(_, value)| !value.is_empty());
                    write_line(out, family, own, &container.labels, sample.value);
                }
            }
            for (_, labels, value) in self
                .others
                .iter()
                .filter(|(other, _, _)| std::ptr::eq(*other, family))
            {
                if !header {
                    write_header(out, family);
                    header = true;
                }
                write_line(out, family, None, labels, *value);
            }
        }
    }
}

/// Every family, sorted by name.
static BY_NAME: LazyLock<Vec<&'static Family>> = LazyLock::new(|| {
    let mut families = families::ALL.to_vec();
    families.sort_by_key(|family| family.name);
    families
});

fn write_header(out: &mut String, family: &Family) {
    let kind = match family.kind {
        MetricType::COUNTER => "counter",
        _ => "gauge",
    };
    out.push_str("# HELP ");
    out.push_str(family.name);
    out.push(' ');
    escape(out, family.help, false);
    out.push_str("\n# TYPE ");
    out.push_str(family.name);
    out.push(' ');
    out.push_str(kind);
    out.push('\n');
}

/// Writes one sample line: the family's own label, if any, before the
/// already written `labels`.
fn write_line(out: &mut String, family: &Family, own: Option<&Label>, labels: &str, value: f64) {
    out.push_str(family.name);
    if own.is_some() || !labels.is_empty() {
        out.push('{');
        if let Some((name, value)) = own {
            write_labels(out, [(*name, value.as_str())]);
            if !labels.is_empty() {
                out.push(',');
            }
        }
        out.push_str(labels);
        out.push('}');
    }
    // Rust's shortest round-trip form of an f64 (`2.5`, `1048576`, `NaN`)
    // is also what the `prometheus` crate writes. Most values are whole
    // numbers below 2^53, whose i64 form is the same text and is formatted
    // faster.
    if value.fract() == 0.0 && value.abs() < MAX_EXACT_INTEGER && !is_negative_zero(value) {
        write!(out, " {}", value as i64)
    } else {
        write!(out, " {value}")
    }
    .expect("writing to a String cannot fail");
    out.push('\n');
}

/// 2^53: every whole f64 below it converts to i64 exactly.
const MAX_EXACT_INTEGER: f64 = 9_007_199_254_740_992.0;

fn is_negative_zero(value: f64) -> bool {
    value == 0.0 && value.is_sign_negative()
}

/// Writes `name="value"` pairs separated by commas. Pairs with an empty
/// value are left out, because Prometheus treats an empty label as absent.
fn write_labels<'a>(out: &mut String, labels: impl IntoIterator<Item = (&'a str, &'a str)>) {
    let mut first = true;
    for (name, value) in labels {
        if value.is_empty() {
            continue;
        }
        if !first {
            out.push(',');
        }
        first = false;
        out.push_str(name);
        out.push_str("=\"");
        escape(out, value, true);
        out.push('"');
    }
}

/// Appends `text` with a backslash before `\` and a newline written as
/// `\n`, as the text format requires in label values and help texts, and
/// with `"` escaped in label values.
fn escape(out: &mut String, text: &str, quote: bool) {
    if !text.contains(['\\', '\n', '"']) {
        out.push_str(text);
        return;
    }
    for character in text.chars() {
        match character {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quote => out.push_str("\\\""),
            other => out.push(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(exposition: Exposition) -> String {
        let mut text = String::new();
        exposition.write_to(&mut text);
        text
    }

    #[test]
    fn family_label_comes_first() {
        let mut samples = Samples::new([("id", "/a"), ("name", "web")]);
        samples.push_labeled(&families::CPU_USAGE, ("cpu", "total".to_string()), 2.5);
        samples.push(&families::MEMORY_USAGE, 1048576.0);
        let mut exposition = Exposition::default();
        exposition.extend(samples);
        let text = render(exposition);

        assert!(
            text.contains(
                "container_cpu_usage_seconds_total{cpu=\"total\",id=\"/a\",name=\"web\"} 2.5\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("container_memory_usage_bytes{id=\"/a\",name=\"web\"} 1048576\n"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE container_cpu_usage_seconds_total counter\n"),
            "{text}"
        );
    }

    #[test]
    fn values_keep_float_form() {
        let mut samples = Samples::new([("name", "web")]);
        for value in [1048576.0, 2.5, -3.0, -0.0, 1e20, f64::NAN, 0.0] {
            samples.push(&families::PROCESSES, value);
        }
        let mut exposition = Exposition::default();
        exposition.extend(samples);
        let text = render(exposition);

        let values: Vec<&str> = text
            .lines()
            .filter(|line| !line.starts_with('#'))
            .map(|line| line.rsplit(' ').next().unwrap())
            .collect();
        let expected: Vec<String> = [1048576.0, 2.5, -3.0, -0.0, 1e20, f64::NAN, 0.0]
            .iter()
            .map(|value: &f64| value.to_string())
            .collect();
        assert_eq!(values, expected);
    }

    #[test]
    fn values_are_escaped() {
        let mut samples = Samples::new([("name", "a\"b\\c\nd")]);
        samples.push(&families::PROCESSES, 1.0);
        let mut exposition = Exposition::default();
        exposition.extend(samples);
        let text = render(exposition);

        assert!(
            text.contains(r#"container_processes{name="a\"b\\c\nd"} 1"#),
            "{text}"
        );
    }

    #[test]
    fn empty_values_are_left_out() {
        let mut samples = Samples::new([("id", "/x"), ("image", ""), ("name", "/x")]);
        samples.push(&families::PROCESSES, 2.0);
        let mut exposition = Exposition::default();
        exposition.extend(samples);
        let text = render(exposition);

        assert!(
            text.contains("container_processes{id=\"/x\",name=\"/x\"} 2\n"),
            "{text}"
        );
    }

    #[test]
    fn families_are_sorted_by_name() {
        let mut exposition = Exposition::default();
        exposition.add(&families::JOB_UP, &[("name", "web".to_string())], 1.0);
        exposition.add(&families::CPU_USAGE, &[], 3.0);
        let text = render(exposition);

        let cpu = text.find("container_cpu_usage_seconds_total 3\n").unwrap();
        let job = text.find("corral_job_up{name=\"web\"} 1\n").unwrap();
        assert!(cpu < job, "{text}");
    }
}
