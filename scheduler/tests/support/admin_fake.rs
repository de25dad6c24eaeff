//! A test double of the runtime behind the admin router: services whose runs the test makes happen
//! (`tick`), with the actions the runtime does not have yet (pause, resume, run now) really working.
//!
//! Shared by `scheduler/tests/admin_api.rs` and `admin_browser.rs`.

#![allow(
    dead_code,
    reason = "each test crate that includes this file uses a different part of it"
)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use scheduler::admin::{
    AdminBackend, AdminError, ReloadView, RunOutcome, RunView, ServiceView, State,
};

/// 2024-01-01T00:00:00Z plus `secs`.
pub(crate) fn at(secs: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap() + TimeDelta::seconds(secs)
}

struct Fake {
    start: DateTime<Utc>,
    view: ServiceView,
    /// Newest last.
    runs: Vec<RunView>,
}

/// Services every 60 s from a minute after their start ([`at`]`(0)` unless given); each run takes 1 s
/// and is stamped on a clock that only [`FakeBackend::tick`] and runs move.
#[derive(Clone)]
pub(crate) struct FakeBackend {
    services: Arc<Mutex<BTreeMap<String, Fake>>>,
    reloads: Arc<Mutex<u32>>,
}

impl FakeBackend {
    pub(crate) fn new(names: &[&str]) -> Self {
        FakeBackend::starting_at(names, at(0))
    }

    pub(crate) fn starting_at(names: &[&str], start: DateTime<Utc>) -> Self {
        let services = names
            .iter()
            .map(|name| {
                let mut view = ServiceView::new(*name, "every 60s");
                view.state = State::Idle;
                view.next_fire = Some(start + TimeDelta::seconds(60));
                let fake = Fake {
                    start,
                    view,
                    runs: Vec::new(),
                };
                ((*name).to_owned(), fake)
            })
            .collect();
        FakeBackend {
            services: Arc::new(Mutex::new(services)),
            reloads: Arc::default(),
        }
    }

    /// Every service that is not paused runs once, as its schedule would have it.
    pub(crate) fn tick(&self) {
        let mut services = self.services.lock().unwrap();
        for fake in services.values_mut() {
            if fake.view.state != State::Paused {
                run(fake, Ok(()));
            }
        }
    }

    /// `name` runs once between its ticks, 30 s after its last run, and fails with `error`.
    pub(crate) fn fail(&self, name: &str, error: &str) {
        let mut services = self.services.lock().unwrap();
        let fake = services.get_mut(name).unwrap();
        let tick = fake.view.last_start.unwrap_or(fake.start) + TimeDelta::seconds(30);
        record(fake, tick, Err(error.to_owned()));
    }

    pub(crate) fn runs(&self, name: &str) -> u64 {
        self.services.lock().unwrap()[name].view.runs
    }

    pub(crate) fn state(&self, name: &str) -> State {
        self.services.lock().unwrap()[name].view.state
    }

    pub(crate) fn reloads(&self) -> u32 {
        *self.reloads.lock().unwrap()
    }

    fn with<T>(&self, name: &str, f: impl FnOnce(&mut Fake) -> T) -> Result<T, AdminError> {
        let mut services = self.services.lock().unwrap();
        let fake = services
            .get_mut(name)
            .ok_or_else(|| AdminError::UnknownService(name.to_owned()))?;
        Ok(f(fake))
    }
}

/// One run of `fake` at its next tick (or right after its last run when paused), which moves its
/// next tick on.
fn run(fake: &mut Fake, result: Result<(), String>) {
    let tick = fake
        .view
        .next_fire
        .unwrap_or_else(|| fake.view.last_start.unwrap_or(fake.start) + TimeDelta::seconds(1));
    record(fake, tick, result);
    if fake.view.state != State::Paused {
        fake.view.next_fire = Some(tick + TimeDelta::seconds(60));
    }
}

/// Records a run of `fake` at `tick`.
fn record(fake: &mut Fake, tick: DateTime<Utc>, result: Result<(), String>) {
    let mut record = RunView::new(tick, tick);
    record.duration_secs = Some(1.0);
    let (outcome, error) = match result {
        Ok(()) => (RunOutcome::Succeeded, None),
        Err(error) => (RunOutcome::Failed, Some(error)),
    };
    record.outcome = Some(outcome);
    record.error.clone_from(&error);
    let view = &mut fake.view;
    view.runs += 1;
    if error.is_some() {
        view.failures += 1;
    }
    view.last_start = Some(tick);
    view.last_duration_secs = Some(1.0);
    view.last_outcome = Some(outcome);
    view.last_error = error;
    fake.runs.push(record);
    view.recent = fake
        .runs
        .iter()
        .rev()
        .take(20)
        .rev()
        .filter_map(|r| r.outcome)
        .collect();
}

impl AdminBackend for FakeBackend {
    fn services(&self) -> Vec<ServiceView> {
        let services = self.services.lock().unwrap();
        services.values().map(|fake| fake.view.clone()).collect()
    }

    fn service(&self, name: &str) -> Option<ServiceView> {
        self.with(name, |fake| fake.view.clone()).ok()
    }

    async fn history(&self, name: &str, limit: usize) -> Result<Vec<RunView>, AdminError> {
        self.with(name, |fake| {
            fake.runs.iter().rev().take(limit).cloned().collect()
        })
    }

    fn upcoming(&self, name: &str, count: usize) -> Result<Vec<DateTime<Utc>>, AdminError> {
        self.with(name, |fake| {
            let Some(next) = fake.view.next_fire else {
                return Vec::new();
            };
            (0..count as i64)
                .map(|k| next + TimeDelta::seconds(60 * k))
                .collect()
        })
    }

    fn describe(&self, name: &str) -> Result<Option<String>, AdminError> {
        self.with(name, |_| Some("Every minute".to_owned()))
    }

    fn pause(&self, name: &str) -> Result<(), AdminError> {
        self.with(name, |fake| {
            fake.view.state = State::Paused;
            fake.view.next_fire = None;
        })
    }

    fn resume(&self, name: &str) -> Result<(), AdminError> {
        self.with(name, |fake| {
            if fake.view.state == State::Paused {
                fake.view.state = State::Idle;
                let last = fake.view.last_start.unwrap_or(fake.start);
                fake.view.next_fire = Some(last + TimeDelta::seconds(60));
            }
        })
    }

    fn run_now(&self, name: &str) -> Result<(), AdminError> {
        self.with(name, |fake| run(fake, Ok(())))
    }

    fn reload(&self) -> Result<ReloadView, AdminError> {
        *self.reloads.lock().unwrap() += 1;
        Ok(ReloadView::default())
    }
}
