//! The bounded queue between the thread that reads a container's output
//! pipes and the thread that writes the log files.
//!
//! A chunk that would take its stream above the byte limit waits up to the
//! queue's patience for the writer to make room, which holds the container
//! back only as long as its pipe buffer lasts. After that the chunk is
//! dropped, and a [`Item::Dropped`] marker takes its place in the queue, so
//! the writer finds where the gap is. Until the writer makes room again,
//! further chunks of that stream are dropped at once, so a stalled disk
//! costs log lines and never blocks the container for longer.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::LogSettings;

/// One of the two output streams of a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub const BOTH: [Stream; 2] = [Stream::Stdout, Stream::Stderr];

    pub fn index(self) -> usize {
        match self {
            Stream::Stdout => 0,
            Stream::Stderr => 1,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// An entry of the queue, as the writer thread takes it.
#[derive(Debug, PartialEq)]
pub enum Item {
    Data(Stream, Vec<u8>),
    /// Bytes of a stream dropped at this point because the queue was full.
    /// Consecutive drops of one stream share one marker, so markers never
    /// outnumber the data items.
    Dropped(Stream, u64),
    /// New rotation limits, never dropped.
    Settings(LogSettings),
}

#[derive(Debug, Default)]
struct State {
    items: VecDeque<Item>,
    queued: [usize; 2],
    /// Streams whose last chunk was dropped and that found no room since.
    dropping: [bool; 2],
    closed: bool,
}

/// A queue of at most `limit` bytes of each stream.
#[derive(Debug)]
pub struct BoundedQueue {
    state: Mutex<State>,
    /// Signalled when an item is queued.
    ready: Condvar,
    /// Signalled when the writer took an item.
    room: Condvar,
    limit: usize,
    /// How long a chunk waits for room before it is dropped.
    patience: Duration,
}

impl BoundedQueue {
    pub fn new(limit: usize, patience: Duration) -> Self {
        BoundedQueue {
            state: Mutex::new(State::default()),
            ready: Condvar::new(),
            room: Condvar::new(),
            limit,
            patience,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic in the other thread ends the monitor anyway; the counters
        // stay usable for what is left.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues a copy of `data`, waiting up to the patience for room, or
    /// drops it. Returns whether it was queued.
    pub fn push_data(&self, stream: Stream, data: &[u8]) -> bool {
        let mut state = self.lock();
        let index = stream.index();
        let deadline = Instant::now() + self.patience;
        while state.queued[index] + data.len() > self.limit && !state.dropping[index] {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            state = self
                .room
                .wait_timeout(state, left)
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .0;
        }
        if state.queued[index] + data.len() > self.limit {
            state.dropping[index] = true;
            let bytes = data.len() as u64;
            match state.items.back_mut() {
                Some(Item::Dropped(last, count)) if *last == stream => *count += bytes,
                _ => state.items.push_back(Item::Dropped(stream, bytes)),
            }
            drop(state);
            self.ready.notify_one();
            return false;
        }
        state.dropping[index] = false;
        state.queued[index] += data.len();
        state.items.push_back(Item::Data(stream, data.to_vec()));
        drop(state);
        self.ready.notify_one();
        true
    }

    pub fn push_settings(&self, settings: LogSettings) {
        self.lock().items.push_back(Item::Settings(settings));
        self.ready.notify_one();
    }

    /// Bytes of both streams that wait for the writer.
    pub fn queued_bytes(&self) -> usize {
        self.lock().queued.iter().sum()
    }

    /// Ends the queue: the writer takes what is left, then gets `None`.
    pub fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_one();
    }

    /// Waits for the next item. Returns `None` once the queue is closed
    /// and empty.
    pub fn take(&self) -> Option<Item> {
        loop {
            match self.take_timeout(Duration::from_secs(3600)) {
                Taken::Item(item) => return Some(item),
                Taken::Closed => return None,
                Taken::TimedOut => {}
            }
        }
    }

    /// Takes the next item like [`take`](Self::take), but waits at most
    /// `timeout` for one.
    pub fn take_timeout(&self, timeout: Duration) -> Taken {
        let deadline = std::time::Instant::now() + timeout;
        let mut state = self.lock();
        loop {
            if let Some(item) = state.items.pop_front() {
                if let Item::Data(stream, data) = &item {
                    state.queued[stream.index()] -= data.len();
                    self.room.notify_all();
                }
                return Taken::Item(item);
            }
            if state.closed {
                return Taken::Closed;
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Taken::TimedOut;
            }
            state = self
                .ready
                .wait_timeout(state, left)
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .0;
        }
    }
}

/// Result of [`BoundedQueue::take_timeout`].
#[derive(Debug, PartialEq)]
pub enum Taken {
    Item(Item),
    /// The queue is closed and empty.
    Closed,
    /// No item came within the timeout.
    TimedOut,
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn data(stream: Stream, text: &str) -> Option<Item> {
        Some(Item::Data(stream, text.as_bytes().to_vec()))
    }

    #[test]
    fn full_stream_drops_and_marks_the_gap() {
        let queue = BoundedQueue::new(8, Duration::ZERO);
        assert!(queue.push_data(Stream::Stdout, b"12345"));
        assert!(!queue.push_data(Stream::Stdout, b"6789"));
        assert!(!queue.push_data(Stream::Stdout, b"0000"));
        assert!(
            queue.push_data(Stream::Stderr, b"other"),
            "streams have separate limits"
        );
        assert!(queue.push_data(Stream::Stdout, b"abc"));

        assert_eq!(queue.take(), data(Stream::Stdout, "12345"));
        assert_eq!(queue.take(), Some(Item::Dropped(Stream::Stdout, 8)));
        // Taking frees room for the stream.
        assert!(queue.push_data(Stream::Stdout, b"defgh"));
        assert_eq!(queue.take(), data(Stream::Stderr, "other"));
        assert_eq!(queue.take(), data(Stream::Stdout, "abc"));
        assert_eq!(queue.take(), data(Stream::Stdout, "defgh"));
    }

    #[test]
    fn chunk_waits_for_room_within_patience() {
        let queue = Arc::new(BoundedQueue::new(8, Duration::from_secs(5)));
        assert!(queue.push_data(Stream::Stdout, b"12345678"));
        let writer = {
            let queue = Arc::clone(&queue);
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(100));
                queue.take()
            })
        };
        let started = Instant::now();
        assert!(
            queue.push_data(Stream::Stdout, b"next"),
            "the chunk was dropped"
        );
        assert!(started.elapsed() >= Duration::from_millis(50));
        assert_eq!(writer.join().unwrap(), data(Stream::Stdout, "12345678"));
        assert_eq!(queue.take(), data(Stream::Stdout, "next"));
    }

    #[test]
    fn stalled_writer_costs_one_wait() {
        let queue = BoundedQueue::new(4, Duration::from_millis(100));
        assert!(queue.push_data(Stream::Stdout, b"full"));
        let started = Instant::now();
        assert!(!queue.push_data(Stream::Stdout, b"a"));
        assert!(started.elapsed() >= Duration::from_millis(100));
        let again = Instant::now();
        assert!(!queue.push_data(Stream::Stdout, b"b"));
        assert!(
            again.elapsed() < Duration::from_millis(50),
            "a stream that is dropping waits again"
        );
        assert_eq!(queue.take(), data(Stream::Stdout, "full"));
        assert_eq!(queue.take(), Some(Item::Dropped(Stream::Stdout, 2)));
        assert!(
            queue.push_data(Stream::Stdout, b"ok"),
            "room ends the dropping"
        );
    }

    #[test]
    fn drops_of_an_empty_queue_are_marked() {
        let queue = BoundedQueue::new(2, Duration::ZERO);
        assert!(!queue.push_data(Stream::Stderr, b"too long"));
        queue.close();
        assert_eq!(queue.take(), Some(Item::Dropped(Stream::Stderr, 8)));
        assert_eq!(queue.take(), None);
    }

    #[test]
    fn settings_are_never_dropped() {
        let queue = BoundedQueue::new(1, Duration::ZERO);
        let settings = LogSettings {
            max_size: 10,
            keep: 2,
            cpus: None,
        };
        queue.push_settings(settings);
        queue.push_settings(settings);
        assert_eq!(queue.take(), Some(Item::Settings(settings)));
        assert_eq!(queue.take(), Some(Item::Settings(settings)));
    }

    #[test]
    fn take_waits_for_the_reader() {
        let queue = Arc::new(BoundedQueue::new(1024, Duration::ZERO));
        let writer = {
            let queue = Arc::clone(&queue);
            std::thread::spawn(move || {
                let mut received = Vec::new();
                while let Some(item) = queue.take() {
                    if let Item::Data(_, bytes) = item {
                        received.extend_from_slice(&bytes);
                    }
                }
                received
            })
        };
        for number in 0..100 {
            queue.push_data(Stream::Stdout, format!("{number},").as_bytes());
            if number % 10 == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        queue.close();
        let received = String::from_utf8(writer.join().unwrap()).unwrap();
        let expected: String = (0..100).map(|number| format!("{number},")).collect();
        assert_eq!(received, expected);
    }
}
