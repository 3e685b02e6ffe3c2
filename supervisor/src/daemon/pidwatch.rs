//! Tells the supervisor task when a shim wrote a container's pid file
//! (`RUN_DIR/pids/ID.pid`), through inotify on that directory. A job
//! becomes RUNNING only once its container's init exists, so that status
//! never shows a RUNNING job without a PID, also when the machine is too
//! busy to create the container within `start_seconds`.

use std::path::PathBuf;

use inotify::{Inotify, WatchMask};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::StreamExt;

use crate::daemon::Event;

/// Starts watching `pids_dir`. The runtime writes pid files through a
/// temporary name and a rename; a close after writing counts too, for pid
/// files written in place.
pub fn spawn(
    pids_dir: PathBuf,
    events: mpsc::UnboundedSender<Event>,
) -> std::io::Result<JoinHandle<()>> {
    let inotify = Inotify::init()?;
    inotify
        .watches()
        .add(&pids_dir, WatchMask::MOVED_TO | WatchMask::CLOSE_WRITE)?;
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
            let Some(container_id) = event
                .name
                .as_deref()
                .and_then(|name| name.to_str())
                .and_then(|name| name.strip_suffix(".pid"))
            else {
                continue;
            };
            let written = Event::PidWritten {
                container_id: container_id.to_string(),
            };
            if events.send(written).is_err() {
                return;
            }
        }
    }))
}
