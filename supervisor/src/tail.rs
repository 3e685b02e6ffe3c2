//! `supervisorctl tail`: the last lines of a job's log file, then, with
//! `-f`, what the job appends, woken by inotify instead of polling.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

use inotify::{EventMask, Inotify, WatchMask};

/// Bytes read per step while searching backwards for line starts.
const BLOCK: u64 = 8192;

/// Writes the last `lines` lines of `path` to `out` and returns the file
/// size, where following continues. A missing file counts as empty,
/// because supervisord creates a job's log files only when it first starts
/// the job.
pub fn print_last_lines(path: &Path, lines: usize, out: &mut impl Write) -> io::Result<u64> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(error) => return Err(error),
    };
    let size = file.metadata()?.len();
    let start = start_of_last_lines(&mut file, size, lines)?;
    file.seek(SeekFrom::Start(start))?;
    io::copy(&mut (&mut file).take(size - start), out)?;
    out.flush()?;
    Ok(size)
}

/// Finds the offset where the last `lines` lines of the first `size` bytes
/// begin. A final line without a newline counts as a line.
fn start_of_last_lines(file: &mut File, size: u64, lines: usize) -> io::Result<u64> {
    if lines == 0 || size == 0 {
        return Ok(size);
    }
    let mut newlines_needed = lines;
    let mut end = size;
    let mut buffer = vec![0u8; BLOCK as usize];
    let mut last_byte_seen = false;
    while end > 0 {
        let begin = end.saturating_sub(BLOCK);
        let chunk = &mut buffer[..(end - begin) as usize];
        file.seek(SeekFrom::Start(begin))?;
        file.read_exact(chunk)?;
        for (index, &byte) in chunk.iter().enumerate().rev() {
            let offset = begin + index as u64;
            // The newline that ends the file terminates the last line and
            // does not start a new one.
            if !last_byte_seen {
                last_byte_seen = true;
                if byte == b'\n' {
                    continue;
                }
            }
            if byte == b'\n' {
                newlines_needed -= 1;
                if newlines_needed == 0 {
                    return Ok(offset + 1);
                }
            }
        }
        end = begin;
    }
    Ok(0)
}

/// Copies what is appended to `path` from `offset` on to `out` until an
/// error or the end of `out`. When rotation renames the file and creates a
/// new one, the rest of the renamed file is copied before the new file
/// from its start, so no line is skipped. A file truncated in place is
/// read again from its start. When the file or its directory is missing,
/// it waits for them and reads the file from its start. A missing parent
/// of that directory is an error.
pub fn follow(path: &Path, mut offset: u64, out: &mut impl Write) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().unwrap_or(OsStr::new(""));
    let mut inotify = Inotify::init()?;
    let mut buffer = [0u8; 4096];
    wait_for_directory(&mut inotify, dir, &mut buffer)?;
    inotify.watches().add(
        dir,
        WatchMask::MODIFY | WatchMask::CREATE | WatchMask::MOVED_TO | WatchMask::CLOSE_WRITE,
    )?;
    // Opened after the watch exists, so a file created in between still
    // sends CREATE.
    let mut file = open_if_present(path)?;
    offset = match file.as_mut() {
        // Copies what was written since `offset` was read.
        Some(file) => copy_new_bytes(file, offset, out)?,
        None => 0,
    };
    loop {
        let mut reopen = false;
        let mut grew = false;
        for event in inotify.read_events_blocking(&mut buffer)? {
            if event.name != Some(name) {
                continue;
            }
            if event
                .mask
                .intersects(EventMask::CREATE | EventMask::MOVED_TO)
            {
                reopen = true;
            } else {
                grew = true;
            }
        }
        if reopen {
            // The old handle still reads the renamed file, which its writer
            // closed before the rename.
            if let Some(old) = file.as_mut() {
                copy_new_bytes(old, offset, out)?;
            }
            file = open_if_present(path)?;
            offset = 0;
        }
        if reopen || grew {
            if let Some(current) = file.as_mut() {
                offset = copy_new_bytes(current, offset, out)?;
            }
        }
    }
}

/// Opens `path` for reading, or returns `None` when it does not exist.
fn open_if_present(path: &Path) -> io::Result<Option<File>> {
    match File::open(path) {
        Ok(file) => Ok(Some(file)),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error),
    }
}

/// Returns once `dir` exists, watching its parent for the directory's
/// creation. A missing parent is an error, so a wrong path fails at once.
fn wait_for_directory(inotify: &mut Inotify, dir: &Path, buffer: &mut [u8]) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let parent = dir.parent().unwrap_or(Path::new("/"));
    let watch = inotify
        .watches()
        .add(parent, WatchMask::CREATE | WatchMask::MOVED_TO)?;
    // Checked again after the watch exists, for a directory created in
    // between.
    while !dir.is_dir() {
        inotify.read_events_blocking(buffer)?;
    }
    inotify.watches().remove(watch)?;
    Ok(())
}

fn copy_new_bytes(file: &mut File, offset: u64, out: &mut impl Write) -> io::Result<u64> {
    let size = file.metadata()?.len();
    let start = if size < offset { 0 } else { offset };
    file.seek(SeekFrom::Start(start))?;
    let copied = io::copy(&mut file.take(size - start), out)?;
    out.flush()?;
    Ok(start + copied)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn last_lines(content: &[u8], lines: usize) -> String {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stdout.log");
        std::fs::write(&path, content).unwrap();
        let mut out = Vec::new();
        let size = print_last_lines(&path, lines, &mut out).unwrap();
        assert_eq!(size, content.len() as u64);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn last_lines_cases() {
        assert_eq!(last_lines(b"a\nb\nc\n", 2), "b\nc\n");
        assert_eq!(last_lines(b"a\nb\nc", 2), "b\nc");
        assert_eq!(last_lines(b"a\nb\n", 5), "a\nb\n");
        assert_eq!(last_lines(b"a\nb\n", 0), "");
        assert_eq!(last_lines(b"", 3), "");
        assert_eq!(last_lines(b"\n\n\n", 2), "\n\n");
    }

    #[test]
    fn last_lines_across_blocks() {
        let mut content = Vec::new();
        for number in 0..5000 {
            content.extend_from_slice(format!("line {number}\n").as_bytes());
        }
        assert_eq!(last_lines(&content, 3), "line 4997\nline 4998\nline 4999\n");
        let all = last_lines(&content, 10_000);
        assert_eq!(all.len(), content.len());
    }

    /// A writer that sends each write to a channel, so a test can read what
    /// `follow` copied while it runs.
    struct Channel(std::sync::mpsc::Sender<Vec<u8>>);

    impl Write for Channel {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0
                .send(bytes.to_vec())
                .map_err(|_| io::Error::from(io::ErrorKind::BrokenPipe))?;
            Ok(bytes.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// Collects what arrives on `receiver` until it equals `expected` or 5
    /// seconds passed, and returns it.
    fn receive_until(receiver: &std::sync::mpsc::Receiver<Vec<u8>>, expected: &[u8]) -> String {
        let mut received = Vec::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while received != expected && std::time::Instant::now() < deadline {
            if let Ok(bytes) = receiver.recv_timeout(std::time::Duration::from_millis(100)) {
                received.extend_from_slice(&bytes);
            }
        }
        String::from_utf8_lossy(&received).into_owned()
    }

    #[test]
    fn follow_reads_the_rest_of_a_rotated_file() {
        use std::io::Write as _;

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stdout.log");
        std::fs::write(&path, b"old 1\n").unwrap();
        let (sender, receiver) = std::sync::mpsc::channel::<Vec<u8>>();
        let follower = {
            let path = path.clone();
            std::thread::spawn(move || follow(&path, 6, &mut Channel(sender)))
        };
        std::thread::sleep(std::time::Duration::from_millis(200));

        let mut writer = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        writer.write_all(b"old 2\n").unwrap();
        drop(writer);
        std::fs::rename(&path, dir.path().join("stdout.log.1")).unwrap();
        std::fs::write(&path, b"new 1\n").unwrap();

        assert_eq!(
            receive_until(&receiver, b"old 2\nnew 1\n"),
            "old 2\nnew 1\n"
        );
        drop(receiver);
        // The follower ends at its next write into the closed channel.
        std::fs::write(dir.path().join("stdout.log"), b"x\n").unwrap();
        assert!(follower.join().unwrap().is_err());
    }

    #[test]
    fn missing_file_prints_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut out = Vec::new();
        let size = print_last_lines(&dir.path().join("stdout.log"), 10, &mut out).unwrap();
        assert_eq!(size, 0);
        assert!(out.is_empty());
    }

    #[test]
    fn follow_waits_for_file_and_directory() {
        use std::io::Write as _;

        let dir = tempfile::tempdir().unwrap();
        let job_dir = dir.path().join("web");
        let path = job_dir.join("stdout.log");
        let (sender, receiver) = std::sync::mpsc::channel::<Vec<u8>>();
        let follower = {
            let path = path.clone();
            std::thread::spawn(move || follow(&path, 0, &mut Channel(sender)))
        };
        std::thread::sleep(std::time::Duration::from_millis(200));
        assert!(!follower.is_finished(), "follow returned without a file");

        std::fs::create_dir(&job_dir).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(200));
        std::fs::write(&path, b"first\n").unwrap();
        assert_eq!(receive_until(&receiver, b"first\n"), "first\n");

        let mut writer = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        writer.write_all(b"second\n").unwrap();
        drop(writer);
        assert_eq!(receive_until(&receiver, b"second\n"), "second\n");
        drop(receiver);
        std::fs::write(&path, b"x\n").unwrap();
        assert!(follower.join().unwrap().is_err());
    }

    #[test]
    fn follow_rejects_missing_parent_directory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing").join("web").join("stdout.log");
        let error = follow(&path, 0, &mut Vec::new()).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn copy_restarts_after_truncation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stdout.log");
        std::fs::write(&path, b"first\n").unwrap();
        let mut file = File::open(&path).unwrap();
        let mut out = Vec::new();
        let offset = copy_new_bytes(&mut file, 0, &mut out).unwrap();
        assert_eq!(offset, 6);
        std::fs::write(&path, b"new\n").unwrap();
        let offset = copy_new_bytes(&mut file, offset, &mut out).unwrap();
        assert_eq!(offset, 4);
        assert_eq!(out, b"first\nnew\n");
    }
}
