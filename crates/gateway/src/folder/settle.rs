//! When a file that an EHR is writing is complete: its size and its
//! modification time have not changed for the settle time. Files are
//! often written in pieces over seconds (a network share, a slow export);
//! one taken early would be sent cut short. Pure: the caller gives what it
//! saw and when, so the rule is tested on a made-up clock.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

/// What a look at a file saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    /// Its length in bytes.
    pub len: u64,
    /// Its modification time.
    pub modified: SystemTime,
}

/// The files seen in a folder and since when each has stood still.
#[derive(Debug)]
pub struct Settling {
    settle: Duration,
    still_since: HashMap<PathBuf, (Seen, Instant)>,
}

impl Settling {
    /// Files must stand still for `settle` to be taken.
    pub fn new(settle: Duration) -> Settling {
        Settling {
            settle,
            still_since: HashMap::new(),
        }
    }

    /// Records that `path` looked like `seen` at `now`; true when it has
    /// looked the same for the settle time.
    pub fn observe(&mut self, path: PathBuf, seen: Seen, now: Instant) -> bool {
        match self.still_since.get(&path) {
            Some((before, since)) if *before == seen => now.duration_since(*since) >= self.settle,
            _ => {
                self.still_since.insert(path, (seen, now));
                self.settle.is_zero()
            }
        }
    }

    /// Forgets `path` (taken, or gone).
    pub fn forget(&mut self, path: &std::path::Path) {
        self.still_since.remove(path);
    }

    /// Forgets every file not in `present` (removed or renamed by the EHR).
    pub fn keep_only(&mut self, present: &[PathBuf]) {
        self.still_since.retain(|path, _| present.contains(path));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(len: u64, secs: u64) -> Seen {
        Seen {
            len,
            modified: SystemTime::UNIX_EPOCH + Duration::from_secs(secs),
        }
    }

    #[test]
    fn a_file_is_ready_once_it_stood_still_for_the_settle_time() {
        let start = Instant::now();
        let at = |ms| start + Duration::from_millis(ms);
        let mut settling = Settling::new(Duration::from_millis(2000));
        let path = PathBuf::from("OUT/a.xml");
        assert!(!settling.observe(path.clone(), seen(10, 1), at(0)));
        assert!(!settling.observe(path.clone(), seen(10, 1), at(1999)));
        assert!(settling.observe(path.clone(), seen(10, 1), at(2000)));
    }

    #[test]
    fn a_file_still_growing_or_touched_starts_its_wait_again() {
        let start = Instant::now();
        let at = |ms| start + Duration::from_millis(ms);
        let mut settling = Settling::new(Duration::from_millis(2000));
        let path = PathBuf::from("OUT/a.xml");
        assert!(!settling.observe(path.clone(), seen(10, 1), at(0)));
        // Grows every second for five seconds: never ready meanwhile.
        for step in 1..=5u64 {
            assert!(!settling.observe(path.clone(), seen(10 + step, 1 + step), at(step * 1000)));
        }
        // Same length, newer time: written again with the same size.
        assert!(!settling.observe(path.clone(), seen(15, 7), at(6000)));
        assert!(!settling.observe(path.clone(), seen(15, 7), at(7999)));
        assert!(settling.observe(path.clone(), seen(15, 7), at(8000)));
    }

    #[test]
    fn a_file_removed_and_written_again_waits_afresh() {
        let start = Instant::now();
        let at = |ms| start + Duration::from_millis(ms);
        let mut settling = Settling::new(Duration::from_millis(2000));
        let path = PathBuf::from("OUT/a.xml");
        assert!(!settling.observe(path.clone(), seen(10, 1), at(0)));
        settling.keep_only(&[]);
        assert!(!settling.observe(path.clone(), seen(10, 1), at(5000)));
        assert!(settling.observe(path, seen(10, 1), at(7000)));
    }
}
