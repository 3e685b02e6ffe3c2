//! Tells the supervisor task when a shim wrote a container's pid file
//! (`RUN_DIR/pids/ID.pid`) and when it created or removed the container's
//! stopped file (`RUN_DIR/pids/ID.stopped`), through inotify on that
//! directory. A job becomes RUNNING only once its container's init exists,
//! so that status never shows a RUNNING job without a PID, also when the
//! machine is too busy to create the container within `start_seconds`. The
//! stopped file exists while the container's init is stopped by a signal,
//! which the job's paused mark follows.

use std::path::PathBuf;

use inotify::{EventMask, Inotify, WatchMask};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::StreamExt;

use crate::daemon::Event;

/// The end of the name of a container's stopped file, after the container
/// id.
pub const STOPPED_SUFFIX: &str = ".stopped";

/// Starts watching `pids_dir`. The runtime writes pid files through a
/// temporary name and a rename; a close after writing counts too, for pid
/// files written in place. The shim writes a stopped file in place and
/// deletes it.
pub fn spawn(
    pids_dir: PathBuf,
    events: mpsc::UnboundedSender<Event>,
) -> std::io::Result<JoinHandle<()>> {
    let inotify = Inotify::init()?;
    inotify.watches().add(
        &pids_dir,
        WatchMask::MOVED_TO | WatchMask::CLOSE_WRITE | WatchMask::DELETE,
    )?;
    let mut stream = inotify.into_event_stream(vec![0u8; 16 * 1024])?;
    Ok(tokio::spawn(async move {
        while let Some(event) = stream.next().await {
            let event = match event {
                Ok(event) => event,
                Err(error) => {
                    tracing::error!(dir = %pids_dir.display(), %error, "reading inotify events for pid files failed; jobs become RUNNING on a timer only");
                    let _ = events.send(Event::PidWatchFailed);
                    return;
                }
            };
            let name = event.name.as_deref().and_then(|name| name.to_str());
            let Some(message) = message_for(event.mask, name) else {
                continue;
            };
            if events.send(message).is_err() {
                return;
            }
        }
    }))
}

/// Returns the supervisor event for an inotify event with `mask` on the
/// file `name` of the pids directory, if any.
fn message_for(mask: EventMask, name: Option<&str>) -> Option<Event> {
    if mask.contains(EventMask::Q_OVERFLOW) {
        return Some(Event::PidEventsLost);
    }
    let name = name?;
    let deleted = mask.contains(EventMask::DELETE);
    if let Some(container_id) = name.strip_suffix(".pid") {
        return (!deleted).then(|| Event::PidWritten {
            container_id: container_id.to_string(),
        });
    }
    let container_id = name.strip_suffix(STOPPED_SUFFIX)?;
    Some(Event::StoppedChanged {
        container_id: container_id.to_string(),
        stopped: !deleted,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pid_file_written_not_deleted() {
        let written = message_for(EventMask::MOVED_TO, Some("web-1f2e3d4c.pid"));
        assert!(
            matches!(&written, Some(Event::PidWritten { container_id }) if container_id == "web-1f2e3d4c"),
            "{written:?}"
        );
        let deleted = message_for(EventMask::DELETE, Some("web-1f2e3d4c.pid"));
        assert!(deleted.is_none(), "{deleted:?}");
    }

    #[test]
    fn stopped_file_created_and_deleted() {
        let created = message_for(EventMask::CLOSE_WRITE, Some("web-1f2e3d4c.stopped"));
        assert!(
            matches!(&created, Some(Event::StoppedChanged { container_id, stopped: true }) if container_id == "web-1f2e3d4c"),
            "{created:?}"
        );
        let deleted = message_for(EventMask::DELETE, Some("web-1f2e3d4c.stopped"));
        assert!(
            matches!(&deleted, Some(Event::StoppedChanged { container_id, stopped: false }) if container_id == "web-1f2e3d4c"),
            "{deleted:?}"
        );
    }

    #[test]
    fn other_files_and_overflow() {
        assert!(message_for(EventMask::MOVED_TO, Some("web-1f2e3d4c.tmp")).is_none());
        assert!(message_for(EventMask::CLOSE_WRITE, None).is_none());
        let lost = message_for(EventMask::Q_OVERFLOW, None);
        assert!(matches!(lost, Some(Event::PidEventsLost)), "{lost:?}");
    }
}
