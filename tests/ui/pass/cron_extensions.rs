//! The cron dialect extensions compile: they are checked by the runtime's own parser.
#![deny(warnings)]

use scheduler::background_service;

#[background_service(interval = "0 0 L * *")]
fn month_end() {}

#[background_service(interval = "0 9 LW,15W * *", tz = "Europe/Berlin")]
fn weekdays_by_place() {}

#[background_service(interval = "0 18 ? * FRI#3,5L")]
async fn third_and_last_friday() {}

#[background_service(interval = "*/30 22-2 * * FRI-SUN")]
fn weekend_nights() {}

#[background_service(interval = "0 0 12 29 2 * 2024-2040/4")]
fn leap_days() {}

fn main() {}
