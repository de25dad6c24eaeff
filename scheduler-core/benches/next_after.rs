//! Nanoseconds per `next_after` (and per parse) for typical expressions, against the `croner` crate.
//!
//! A plain `harness = false` binary: `cargo bench -p scheduler-core --bench next_after`. Each
//! measurement runs a tight loop over a fixed set of start instants; ours and croner's run interleaved
//! for several rounds and the median is reported. Before timing, the two engines are compared on the
//! same start instants and any disagreement is printed.
//!
//! croner is configured as close to Vixie cron as it goes: seconds optional (a 6-field expression has a
//! leading seconds field), day-of-month and day-of-week combined with OR (`dom_and_dow = false`).
//! Known differences: croner treats only a literal `*` (not `*/2`) as an unrestricted day field, does
//! not accept `N/S` without `sloppy_ranges`, has its own definition of a fixed-time job for DST (one
//! value per field rather than "no field starting with `*`"), and accepts a 7th (year) field.

#![allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds};
use croner::Cron;
use scheduler_core::Schedule;

const CASES: &[(&str, Option<&str>)] = &[
    ("*/5 * * * *", None),
    ("0 9 * * MON-FRI", None),
    ("0 0 1,15 * *", None),
    ("30 2 * * *", Some("Europe/Berlin")),
    ("0 0 29 2 *", None),
    ("*/20 * * * * *", None),
    // Dialect extensions (not in the plain-expression comparison).
    ("0 0 L * *", None),
    ("0 12 * * FRI#3", None),
    ("0 0 12 29 2 * 2024-2040/4", None),
];

/// Start instants per measured batch.
const STARTS: usize = 512;
/// Interleaved rounds; the median is reported.
const ROUNDS: usize = 7;
/// Rough duration of one timed batch.
const TARGET: Duration = Duration::from_millis(25);

fn croner_parser() -> CronParser {
    CronParser::builder()
        .seconds(Seconds::Optional)
        .dom_and_dow(false)
        .build()
}

fn ours(expr: &str, zone: Option<&str>) -> Schedule {
    match zone {
        Some(zone) => Schedule::cron_in(expr, zone),
        None => expr.parse(),
    }
    .expect("our engine parses every bench expression")
}

/// Deterministic pseudo-random whole-second instants in 2020-2030.
fn starts(count: usize) -> Vec<DateTime<Utc>> {
    let lo = Utc
        .with_ymd_and_hms(2020, 1, 1, 0, 0, 0)
        .unwrap()
        .timestamp();
    let hi = Utc
        .with_ymd_and_hms(2030, 1, 1, 0, 0, 0)
        .unwrap()
        .timestamp();
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    (0..count)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let seconds = lo + (state % (hi - lo) as u64) as i64;
            DateTime::from_timestamp(seconds, 0).unwrap()
        })
        .collect()
}

/// Times `work` (one batch), repeated enough to last about [`TARGET`]; returns ns per item.
fn time_batch(reps: u32, items: usize, mut work: impl FnMut()) -> f64 {
    let started = Instant::now();
    for _ in 0..reps {
        work();
    }
    started.elapsed().as_nanos() as f64 / f64::from(reps) / items as f64
}

fn reps_for(mut work: impl FnMut()) -> u32 {
    // Warm up, then size the batch.
    for _ in 0..3 {
        work();
    }
    let started = Instant::now();
    work();
    let once = started.elapsed().max(Duration::from_micros(1));
    (TARGET.as_nanos() / once.as_nanos()).clamp(1, 100_000) as u32
}

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

/// Runs the two measurements interleaved for [`ROUNDS`] rounds; returns their medians.
fn compare(items: usize, mut a: impl FnMut(), mut b: impl FnMut()) -> (f64, f64) {
    let (reps_a, reps_b) = (reps_for(&mut a), reps_for(&mut b));
    let (mut sa, mut sb) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        sa.push(time_batch(reps_a, items, &mut a));
        sb.push(time_batch(reps_b, items, &mut b));
    }
    (median(sa), median(sb))
}

/// croner's answer strictly after `t`, as a UTC instant.
fn croner_next(cron: &Cron, zone: Option<Tz>, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
    match zone {
        Some(tz) => cron
            .find_next_occurrence(&t.with_timezone(&tz), false)
            .ok()
            .map(|n| n.with_timezone(&Utc)),
        None => cron.find_next_occurrence(&t, false).ok(),
    }
}

/// Compares the two engines from every start instant (and along a short chain from each); returns a
/// description of the disagreements found.
fn agreement(
    schedule: &Schedule,
    cron: &Cron,
    zone: Option<Tz>,
    starts: &[DateTime<Utc>],
) -> Vec<String> {
    let mut disagreements = Vec::new();
    for &start in starts {
        let mut t = start;
        for _ in 0..5 {
            let (a, b) = (schedule.next_after(t), croner_next(cron, zone, t));
            if a != b {
                disagreements.push(format!("after {t}: ours {a:?}, croner {b:?}"));
                break;
            }
            let Some(next) = a else { break };
            t = next;
        }
    }
    disagreements
}

/// ns per `next_after` for ours and croner's, from the same start instants.
fn time_next_after(
    schedule: &Schedule,
    cron: &Cron,
    zone: Option<Tz>,
    starts: &[DateTime<Utc>],
) -> (f64, f64) {
    match zone {
        None => compare(
            starts.len(),
            || {
                for t in starts {
                    black_box(black_box(schedule).next_after(black_box(*t)));
                }
            },
            || {
                for t in starts {
                    black_box(
                        black_box(cron)
                            .find_next_occurrence(black_box(t), false)
                            .ok(),
                    );
                }
            },
        ),
        Some(tz) => {
            // croner works on zoned instants: convert up front, outside the timed loop.
            let zoned: Vec<DateTime<Tz>> = starts.iter().map(|t| t.with_timezone(&tz)).collect();
            compare(
                starts.len(),
                || {
                    for t in starts {
                        black_box(black_box(schedule).next_after(black_box(*t)));
                    }
                },
                || {
                    for t in &zoned {
                        black_box(
                            black_box(cron)
                                .find_next_occurrence(black_box(t), false)
                                .ok(),
                        );
                    }
                },
            )
        }
    }
}

fn main() {
    let parser = croner_parser();
    let starts = starts(STARTS);
    // Extra, not timed: a few days around Berlin's DST changes for the agreement check.
    let mut check_starts = starts.clone();
    for (y, m, d) in [(2024, 3, 30), (2024, 10, 26), (2025, 3, 29), (2025, 10, 25)] {
        let day = Utc.with_ymd_and_hms(y, m, d, 0, 0, 0).unwrap();
        check_starts.extend((0..96).map(|q| day + chrono::TimeDelta::minutes(30 * q)));
    }

    println!(
        "next_after: median of {ROUNDS} interleaved rounds over {STARTS} start instants in \
         2020-2030 (ratio = croner / ours)\n"
    );
    println!(
        "{:<32} | {:>9} | {:>10} | {:>6} | {:>14} | {:>15} | {:>6}",
        "expr", "ours ns", "croner ns", "ratio", "ours parse ns", "croner parse ns", "ratio"
    );
    println!("{}", "-".repeat(112));
    let mut all_disagreements = Vec::new();
    for &(expr, zone_name) in CASES {
        let schedule = ours(expr, zone_name);
        let cron = parser
            .parse(expr)
            .expect("croner parses every bench expression");
        let zone: Option<Tz> = zone_name.map(|z| z.parse().expect("a known zone"));

        let found = agreement(&schedule, &cron, zone, &check_starts);
        if !found.is_empty() {
            all_disagreements.push((expr, zone_name, found));
        }

        let (ours_ns, croner_ns) = time_next_after(&schedule, &cron, zone, &starts);

        let (ours_parse, croner_parse) = compare(
            1,
            || {
                black_box(ours(black_box(expr), black_box(zone_name)));
            },
            || {
                black_box(parser.parse(black_box(expr)).ok());
            },
        );

        let label = match zone_name {
            Some(z) => format!("{expr} ({z})"),
            None => expr.to_owned(),
        };
        println!(
            "{label:<32} | {ours_ns:>9.1} | {croner_ns:>10.1} | {:>6.2} | {ours_parse:>14.1} | {croner_parse:>15.1} | {:>6.2}",
            croner_ns / ours_ns,
            croner_parse / ours_parse
        );
    }

    println!();
    if all_disagreements.is_empty() {
        println!(
            "agreement: ours and croner gave the same next 5 instants from all {} start instants \
             for every expression",
            check_starts.len()
        );
    } else {
        for (expr, zone, found) in &all_disagreements {
            println!(
                "DISAGREEMENT for '{expr}'{}: {} of {} start instants, e.g.",
                zone.map(|z| format!(" in {z}")).unwrap_or_default(),
                found.len(),
                check_starts.len()
            );
            for line in found.iter().take(3) {
                println!("    {line}");
            }
        }
    }
}
