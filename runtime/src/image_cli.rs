//! `corral image`: import, list, inspect, remove and garbage-collect the
//! images of an image store.

use std::cell::RefCell;
use std::io::IsTerminal;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use corral_runtime::cli::image::{Format, ImageArgs, ImageCommand};
use corral_runtime::image::{
    self, collect_garbage, ImageRecord, ImportOptions, LayerOutcome, NoProgress, Platform,
    Progress, Store,
};
use indicatif::{HumanBytes, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Runs `corral image`; `state_root` is the runtime's `--root`, whose
/// containers gc leaves alone.
pub fn run(args: ImageArgs, state_root: &Path) -> Result<()> {
    // Absolute layer paths in `inspect` and in containers' lower dirs do not
    // depend on where the command ran.
    let store = Store::new(std::path::absolute(&args.store).unwrap_or(args.store));
    match args.command {
        ImageCommand::Import {
            name,
            platform,
            source,
        } => import(&store, name, platform.as_deref(), &source),
        ImageCommand::Ls { format, quiet } => list(&store, format, quiet),
        ImageCommand::Inspect { name } => inspect(&store, &name),
        ImageCommand::Rm { names } => remove(&store, &names),
        ImageCommand::Gc => gc(&store, state_root),
    }
}

fn import(
    store: &Store,
    name: Option<String>,
    platform: Option<&str>,
    source: &Path,
) -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!(
            "corral image import needs root: layers keep file owners and device nodes, \
             and whiteouts are overlayfs device nodes and trusted.* attributes"
        );
    }
    let platform = match platform {
        Some(text) => Platform::parse(text)?,
        None => Platform::host(),
    };
    let terminal = std::io::stdout().is_terminal() && std::io::stderr().is_terminal();
    let bars = TerminalProgress::default();
    let progress: &dyn Progress = if terminal { &bars } else { &NoProgress };
    let options = ImportOptions {
        name,
        platform,
        progress,
    };
    let report = image::import(store, source, &options)
        .with_context(|| format!("failed to import {}", source.display()))?;
    let record = &report.record;
    println!(
        "imported {} {} from {}: {}, {} unpacked, {} reused, {}",
        record.name,
        record.id,
        report.format,
        count(record.layers.len(), "layer"),
        report.layers_unpacked,
        report.layers_reused,
        HumanBytes(record.size)
    );
    Ok(())
}

fn list(store: &Store, format: Format, quiet: bool) -> Result<()> {
    let records = store.images()?;
    if quiet {
        for record in &records {
            println!("{}", record.name);
        }
        return Ok(());
    }
    if format == Format::Json {
        println!("{}", serde_json::to_string(&records)?);
        return Ok(());
    }
    println!(
        "{:<32} {:<12} {:>6} {:>11}  {:<19}  PLATFORM",
        "NAME", "ID", "LAYERS", "SIZE", "IMPORTED (UTC)"
    );
    for record in &records {
        println!(
            "{:<32} {:<12} {:>6} {:>11}  {:<19}  {}",
            record.name,
            record.id.short(),
            record.layers.len(),
            HumanBytes(record.size).to_string(),
            utc_time(record.imported_at),
            record.platform
        );
    }
    Ok(())
}

fn inspect(store: &Store, name: &str) -> Result<()> {
    let record = store.image(name)?;
    let mut view = serde_json::to_value(&record)?;
    view["layers"] = serde_json::Value::Array(layer_views(store, &record)?);
    println!("{}", serde_json::to_string_pretty(&view)?);
    Ok(())
}

/// Returns the layers of `record`, bottom first, with size and directory.
fn layer_views(store: &Store, record: &ImageRecord) -> Result<Vec<serde_json::Value>> {
    let mut views = Vec::new();
    for diff_id in &record.layers {
        let size = store.layer(diff_id).map(|layer| layer.size).ok();
        views.push(serde_json::json!({
            "diff_id": diff_id,
            "size": size,
            "path": store.layer_rootfs(diff_id),
        }));
    }
    Ok(views)
}

/// Removes image records, naming the containers that still use their
/// layers, which stay until those containers are deleted and gc runs.
fn remove(store: &Store, names: &[String]) -> Result<()> {
    for name in names {
        let record = store.remove_image(name)?;
        let leased = {
            let _lock = store.lock_exclusive()?;
            image::lease::live_leases(store)?
        };
        let mut users: Vec<&str> = record
            .layers
            .iter()
            .filter_map(|layer| leased.get(layer))
            .flatten()
            .map(String::as_str)
            .collect();
        users.sort_unstable();
        users.dedup();
        if users.is_empty() {
            println!("removed {name}");
        } else {
            println!(
                "removed {name}; its layers stay while containers {} use them",
                users.join(", ")
            );
        }
    }
    Ok(())
}

fn gc(store: &Store, state_root: &Path) -> Result<()> {
    let report = collect_garbage(store, &[state_root.to_path_buf()])?;
    println!(
        "removed {} ({} of files) and {} of interrupted imports",
        count(report.removed.len(), "layer"),
        HumanBytes(report.freed_bytes),
        count(report.staging_removed, "leftover")
    );
    for (layer, containers) in &report.kept_in_use {
        println!("kept {layer}: used by containers {}", containers.join(", "));
    }
    Ok(())
}

/// Formats `number` with `noun`, adding an `s` unless the number is 1.
fn count(number: usize, noun: &str) -> String {
    if number == 1 {
        format!("1 {noun}")
    } else {
        format!("{number} {noun}s")
    }
}

/// Formats seconds since the Unix epoch as `YYYY-MM-DD HH:MM:SS` in UTC.
fn utc_time(seconds: u64) -> String {
    let days = (seconds / 86_400) as i64;
    let rest = seconds % 86_400;
    // Converts days since 1970-01-01 to a proleptic Gregorian date by
    // counting 400-year eras of 146097 days from 0000-03-01.
    let shifted = days + 719_468;
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// Draws one progress bar per layer on stderr.
#[derive(Default)]
struct TerminalProgress {
    bar: RefCell<Option<ProgressBar>>,
}

impl Progress for TerminalProgress {
    fn layer_started(&self, index: usize, count: usize, label: &str, size: Option<u64>) {
        let bar = match size {
            Some(total) if total > 0 => {
                let style = ProgressStyle::with_template(
                    "{prefix} {msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
                )
                .expect("progress template is valid")
                .progress_chars("=> ");
                ProgressBar::new(total).with_style(style)
            }
            _ => {
                let style = ProgressStyle::with_template("{prefix} {msg} {spinner} {bytes}")
                    .expect("progress template is valid");
                let bar = ProgressBar::new_spinner().with_style(style);
                bar.enable_steady_tick(Duration::from_millis(120));
                bar
            }
        };
        bar.set_draw_target(ProgressDrawTarget::stderr());
        bar.set_prefix(format!("[{}/{count}]", index + 1));
        bar.set_message(short_label(label));
        *self.bar.borrow_mut() = Some(bar);
    }

    fn bytes_read(&self, bytes: u64) {
        if let Some(bar) = self.bar.borrow().as_ref() {
            bar.inc(bytes);
        }
    }

    fn layer_finished(&self, _index: usize, outcome: LayerOutcome) {
        let Some(bar) = self.bar.borrow_mut().take() else {
            return;
        };
        let prefix = bar.prefix();
        let message = bar.message();
        bar.finish_and_clear();
        match outcome {
            LayerOutcome::Reused => eprintln!("{prefix} {message} already in the store"),
            LayerOutcome::Unpacked(stats) => eprintln!(
                "{prefix} {message} unpacked: {} entries, {}",
                stats.entries,
                HumanBytes(stats.bytes)
            ),
        }
    }
}

/// Shortens `sha256:HEX` to `sha256:` and 12 hex digits.
fn short_label(label: &str) -> String {
    match label.split_once(':') {
        Some((algorithm, hex)) if hex.len() > 12 && !label.contains('/') => {
            format!("{algorithm}:{}", &hex[..12])
        }
        _ => label.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_time_formats_known_instants() {
        assert_eq!(utc_time(0), "1970-01-01 00:00:00");
        assert_eq!(utc_time(951_782_400), "2000-02-29 00:00:00");
        assert_eq!(utc_time(1_796_405_402), "2026-12-04 17:30:02");
    }
}
