//! The embedded memory for catch-up after a restart, when there is no coordinator: the last tick
//! each catch-up service started, in a small text file.
//!
//! Only services that ask for catch-up (an explicit [`Misfire::Coalesce`](crate::Misfire::Coalesce)
//! or [`Misfire::All`](crate::Misfire::All)) are written. The format is one line per service, the
//! tick in RFC 3339 and the name after a tab, with `%`, tab, CR and LF in names escaped as `%25`,
//! `%09`, `%0D`, `%0A`; lines starting with `#` are comments (`⇥` is the tab):
//!
//! ```text
//! # scheduler state v1: the last tick each catch-up service started
//! 2024-01-01T03:00:00Z⇥nightly-report
//! ```
//!
//! Writes are atomic: the whole file goes to `<file>.tmp`, is synced, and is renamed over the file,
//! so a crash leaves either the old or the new file, never a mix. A write happens on tokio's
//! blocking pool after a run of such a service begins (bursts are written once), and once more
//! when the manager stops. A write that fails is logged, and the runs go on.
//!
//! ```text
//! run of tick T begins ── record(T) ── [blocking pool] write <file>.tmp, fsync, rename ── done
//!                         a record meanwhile ──────────▶ written by the same or the next write
//! ```

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, Utc};

use crate::error::Error;

const HEADER: &str = "# scheduler state v1: the last tick each catch-up service started";

pub(crate) struct StateFile {
    path: PathBuf,
    ticks: Mutex<BTreeMap<String, DateTime<Utc>>>,
    /// Whether `ticks` holds a change the file does not have yet.
    dirty: AtomicBool,
    /// Whether a write is queued on the blocking pool, so that a burst of records costs one write.
    queued: AtomicBool,
    /// Held while writing: one write at a time, each of the latest ticks.
    writing: Mutex<()>,
    /// Whether the last write failed, so a file that cannot be written is logged once, not at
    /// every run.
    failing: AtomicBool,
}

impl StateFile {
    /// Reads the file at `path`; a file that does not exist yet is empty (the first start).
    ///
    /// # Errors
    /// [`Error::StateFile`] when the file cannot be read or a line is not `<tick>\t<name>`.
    pub(crate) fn load(path: PathBuf) -> Result<Self, Error> {
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                // The first start; but a file that could never be written is a mistake to report
                // now, not at every run.
                let directory = path
                    .parent()
                    .filter(|dir| !dir.as_os_str().is_empty())
                    .unwrap_or(Path::new("."));
                if !directory.is_dir() {
                    let reason = format!("its directory {} does not exist", directory.display());
                    return Err(state_error(&path, reason));
                }
                String::new()
            }
            Err(error) => return Err(state_error(&path, format!("cannot read it: {error}"))),
        };
        let ticks = parse(&text).map_err(|reason| state_error(&path, reason))?;
        Ok(StateFile {
            path,
            ticks: Mutex::new(ticks),
            dirty: AtomicBool::new(false),
            queued: AtomicBool::new(false),
            writing: Mutex::new(()),
            failing: AtomicBool::new(false),
        })
    }

    fn ticks(&self) -> MutexGuard<'_, BTreeMap<String, DateTime<Utc>>> {
        self.ticks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The last tick remembered for `service`.
    pub(crate) fn last_tick(&self, service: &str) -> Option<DateTime<Utc>> {
        self.ticks().get(service).copied()
    }

    /// Remembers that `service` started `tick`, and has the file written soon.
    pub(crate) fn record(self: &Arc<Self>, service: &str, tick: DateTime<Utc>) {
        {
            let mut ticks = self.ticks();
            match ticks.get_mut(service) {
                Some(last) if *last >= tick => return,
                Some(last) => *last = tick,
                None => {
                    ticks.insert(service.to_owned(), tick);
                }
            }
            self.dirty.store(true, Ordering::Release);
        }
        if self.queued.swap(true, Ordering::AcqRel) {
            return;
        }
        let file = self.clone();
        let write = move || {
            file.queued.store(false, Ordering::Release);
            file.write_if_dirty();
        };
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            drop(handle.spawn_blocking(write));
        } else {
            write();
        }
    }

    /// Writes what is not written yet, and waits for it (the manager is stopping).
    ///
    /// `dirty` alone cannot tell that nothing is left: a write in flight has cleared it, and may
    /// still fail and set it again. Only a look under the `writing` lock can, so the flush returns
    /// at once only when that lock is free and nothing is dirty; otherwise it waits on the blocking
    /// pool for the write in flight, then writes what that one left.
    ///
    /// ```text
    /// write in flight: lock ── dirty := false ── write ── (failed: dirty := true) ── unlock
    /// flush:                          try_lock fails ── [blocking pool] lock … ── write if dirty
    /// ```
    pub(crate) async fn flush(self: &Arc<Self>) {
        if let Ok(_idle) = self.writing.try_lock() {
            if !self.dirty.load(Ordering::Acquire) {
                return;
            }
        }
        let file = self.clone();
        if tokio::task::spawn_blocking(move || file.write_if_dirty())
            .await
            .is_err()
        {
            tracing::warn!(path = %self.path.display(), "the state file write did not complete");
        }
    }

    fn write_if_dirty(&self) {
        let _writing = self
            .writing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !self.dirty.swap(false, Ordering::AcqRel) {
            return;
        }
        let text = render(&self.ticks());
        match write_atomically(&self.path, &text) {
            Ok(()) => {
                if self.failing.swap(false, Ordering::AcqRel) {
                    tracing::info!(path = %self.path.display(), "the state file is written again");
                }
            }
            Err(error) => {
                // Written again at the next record (or stop), which may succeed.
                self.dirty.store(true, Ordering::Release);
                if !self.failing.swap(true, Ordering::AcqRel) {
                    tracing::warn!(path = %self.path.display(), %error,
                        "cannot write the state file: catch-up after a restart may miss the latest runs");
                }
            }
        }
    }
}

fn state_error(path: &Path, reason: String) -> Error {
    Error::StateFile {
        path: path.to_owned(),
        reason,
    }
}

fn parse(text: &str) -> Result<BTreeMap<String, DateTime<Utc>>, String> {
    let mut ticks = BTreeMap::new();
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((tick, name)) = line.split_once('\t') else {
            return Err(format!(
                "line {number}: expected `<tick>\\t<service name>`, found {line:?}"
            ));
        };
        let tick = DateTime::parse_from_rfc3339(tick)
            .map_err(|error| format!("line {number}: the tick {tick:?} is not RFC 3339: {error}"))?
            .with_timezone(&Utc);
        let name = unescape(name).ok_or_else(|| {
            format!("line {number}: the service name {name:?} has a bad `%` escape")
        })?;
        ticks.insert(name, tick);
    }
    Ok(ticks)
}

fn render(ticks: &BTreeMap<String, DateTime<Utc>>) -> String {
    let mut text = String::from(HEADER);
    text.push('\n');
    for (name, tick) in ticks {
        let tick = tick.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
        let _ = writeln!(text, "{tick}\t{}", escape(name));
    }
    text
}

fn escape(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        match c {
            '%' => out.push_str("%25"),
            '\t' => out.push_str("%09"),
            '\r' => out.push_str("%0D"),
            '\n' => out.push_str("%0A"),
            c => out.push(c),
        }
    }
    out
}

fn unescape(text: &str) -> Option<String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('%') {
        out.push_str(&rest[..at]);
        let code = rest.get(at + 1..at + 3)?;
        out.push(match code {
            "25" => '%',
            "09" => '\t',
            "0D" => '\r',
            "0A" => '\n',
            _ => return None,
        });
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
    Some(out)
}

/// Replaces the file at `path` with `text`, so that a crash leaves the old file or the new one.
fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    let temporary = PathBuf::from(temporary);
    let mut file = std::fs::File::create(&temporary)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&temporary, path)?;
    // The rename itself is durable once the directory is synced (where directories can be opened).
    if let Some(directory) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        if let Ok(directory) = std::fs::File::open(directory) {
            let _ = directory.sync_all();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn a_state_round_trips_with_awkward_names() {
        let mut ticks = BTreeMap::new();
        let t = Utc.with_ymd_and_hms(2024, 1, 1, 3, 0, 0).unwrap();
        ticks.insert("plain".to_owned(), t);
        ticks.insert(
            "tab\there 100%\nnew line\r".to_owned(),
            t + chrono::TimeDelta::nanoseconds(5),
        );
        let text = render(&ticks);
        assert!(text.starts_with(HEADER));
        assert_eq!(parse(&text).unwrap(), ticks);
    }

    /// A write in flight when the manager stops (here: the test holds its lock, and it has taken
    /// the dirty flag): the flush waits for it, and writes again what it failed to write.
    #[tokio::test]
    async fn a_flush_waits_for_the_write_in_flight_and_writes_what_it_failed_to() {
        use futures_util::FutureExt as _;
        let path = std::env::temp_dir().join(format!(
            "scheduler-state-file-{}-flush.state",
            std::process::id()
        ));
        let _ = std::fs::remove_file(&path);
        let file = Arc::new(StateFile::load(path.clone()).unwrap());
        let tick = Utc.with_ymd_and_hms(2024, 1, 1, 3, 0, 0).unwrap();
        file.ticks().insert("report".to_owned(), tick);
        let in_flight = file.writing.lock().unwrap();
        let mut flush = Box::pin(file.flush());
        assert!(
            (&mut flush).now_or_never().is_none(),
            "the flush must wait for the write in flight"
        );
        // The write in flight fails: what it took is dirty again.
        file.dirty.store(true, Ordering::Release);
        drop(in_flight);
        flush.await;
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(parse(&text).unwrap().get("report"), Some(&tick), "{text}");
        assert!(!file.dirty.load(Ordering::Acquire));
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn a_corrupt_state_names_the_line_and_the_problem() {
        for (text, expected) in [
            ("# c\n2024-01-01T00:00:00Z svc\n", "line 2: expected"),
            (
                "yesterday\tsvc\n",
                "line 1: the tick \"yesterday\" is not RFC 3339",
            ),
            (
                "2024-01-01T00:00:00Z\tbad%zz\n",
                "line 1: the service name \"bad%zz\" has a bad",
            ),
            ("2024-01-01T00:00:00Z\tcut%2", "bad `%` escape"),
        ] {
            let error = parse(text).unwrap_err();
            assert!(error.contains(expected), "{text:?}: {error}");
        }
    }
}
