//! `Schedule::describe`: a table of expressions and the sentences a person would write for them.
//!
//! The sentences were written by hand from the meaning of each expression (crontab.guru-style
//! English, 24-hour clock), not taken from the code's output. The rules they follow: up to six clock
//! times are listed one by one; runs of three or more values read "a through b"; a week starts on
//! Monday.

use std::time::Duration;

use chrono::{TimeZone, Utc};
use scheduler_core::Schedule;

/// `(expression, time zone or "", sentence)`.
const TABLE: &[(&str, &str, &str)] = &[
    // Repeating within the day
    ("* * * * *", "", "Every minute"),
    ("*/15 * * * *", "", "Every 15 minutes"),
    ("0,15,30,45 * * * *", "", "Every 15 minutes"),
    ("0-59/15 * * * *", "", "Every 15 minutes"),
    ("*/5 * * * *", "", "Every 5 minutes"),
    ("0 * * * *", "", "Every hour"),
    ("@hourly", "", "Every hour"),
    ("30 * * * *", "", "At minute 30 of every hour"),
    ("0,30 * * * *", "", "Every 30 minutes"),
    ("5,35 * * * *", "", "At minutes 5 and 35 of every hour"),
    ("0-10 * * * *", "", "At minutes 0 through 10 of every hour"),
    ("0 */6 * * *", "", "Every 6 hours"),
    ("30 */2 * * *", "", "Every 2 hours, at minute 30"),
    ("0 9-17 * * *", "", "Every hour from 09:00 through 17:00"),
    (
        "30 9-17 * * MON-FRI",
        "",
        "Every hour from 09:30 through 17:30, Monday through Friday",
    ),
    (
        "*/15 9-17 * * *",
        "",
        "Every 15 minutes, between 09:00 and 17:59",
    ),
    ("* 9 * * *", "", "Every minute, between 09:00 and 09:59"),
    (
        "*/10 1,13 * * *",
        "",
        "Every 10 minutes, during hours 1 and 13",
    ),
    ("0 22-4 * * *", "", "Every hour from 22:00 through 04:00"),
    (
        "*/20 23-1 * * *",
        "",
        "Every 20 minutes, between 23:00 and 01:59",
    ),
    (
        "0 2-5,20,22,23 * * *",
        "",
        "At minute 0 of hours 2 through 5, 20, 22 and 23",
    ),
    (
        "0 1,3,5,7,9,11,13 * * *",
        "",
        "At minute 0 of hours 1, 3, 5, 7, 9, 11 and 13",
    ),
    // Clock times
    ("0 9 * * *", "", "At 09:00"),
    ("@daily", "", "At 00:00"),
    ("@midnight", "", "At 00:00"),
    ("30 2 * * *", "Europe/Berlin", "At 02:30 (Europe/Berlin)"),
    ("0 9,17 * * *", "", "At 09:00 and 17:00"),
    ("0,30 9 * * *", "", "At 09:00 and 09:30"),
    ("15 8,12,18 * * *", "", "At 08:15, 12:15 and 18:15"),
    (
        "0 9 * * MON-FRI",
        "Europe/Berlin",
        "At 09:00, Monday through Friday (Europe/Berlin)",
    ),
    ("0 9 * * 1-5", "", "At 09:00, Monday through Friday"),
    ("0 10 * * SAT,SUN", "", "At 10:00, on Saturday and Sunday"),
    ("0 10 * * 0,6", "", "At 10:00, on Saturday and Sunday"),
    ("0 0 * * FRI-SUN", "", "At 00:00, Friday through Sunday"),
    (
        "0 18 * * MON,WED,FRI",
        "",
        "At 18:00, on Monday, Wednesday and Friday",
    ),
    ("0 8 * * 1", "", "At 08:00, on Monday"),
    ("@weekly", "", "At 00:00, on Sunday"),
    // Seconds
    ("* * * * * *", "", "Every second"),
    ("*/10 * * * * *", "", "Every 10 seconds"),
    ("30 0 12 * * *", "", "At 12:00:30"),
    ("15,45 * * * * *", "", "At seconds 15 and 45"),
    (
        "*/20 * 9 * * *",
        "",
        "Every 20 seconds, between 09:00 and 09:59",
    ),
    ("0 */5 * * * *", "", "Every 5 minutes"),
    // Days of the month
    ("0 0 1 * *", "", "At 00:00 on day 1 of the month"),
    ("@monthly", "", "At 00:00 on day 1 of the month"),
    ("0 0 1,15 * *", "", "At 00:00 on days 1 and 15 of the month"),
    (
        "0 0 1-7 * *",
        "",
        "At 00:00 on days 1 through 7 of the month",
    ),
    ("0 0 */2 * *", "", "At 00:00 on every 2nd day of the month"),
    ("0 0 L * *", "", "At 00:00 on the last day of the month"),
    (
        "0 0 L-3 * *",
        "",
        "At 00:00 on 3 days before the last day of the month",
    ),
    (
        "0 0 L-1 * *",
        "",
        "At 00:00 on 1 day before the last day of the month",
    ),
    (
        "0 0 LW * *",
        "",
        "At 00:00 on the last weekday of the month",
    ),
    (
        "0 9 15W * *",
        "",
        "At 09:00 on the weekday nearest day 15 of the month",
    ),
    (
        "0 0 1,L * *",
        "",
        "At 00:00 on day 1 of the month and the last day of the month",
    ),
    // Days of the week by place
    (
        "0 0 * * 5L",
        "",
        "At 00:00, on the last Friday of the month",
    ),
    (
        "0 0 * * FRIL",
        "",
        "At 00:00, on the last Friday of the month",
    ),
    (
        "0 12 * * 5#3",
        "",
        "At 12:00, on the third Friday of the month",
    ),
    (
        "0 12 ? * MON#1",
        "",
        "At 12:00, on the first Monday of the month",
    ),
    (
        "0 12 * * SUN#2,SUN#4",
        "",
        "At 12:00, on the second Sunday of the month and the fourth Sunday of the month",
    ),
    // The day rule
    (
        "0 0 1,15 * MON",
        "",
        "At 00:00 on days 1 and 15 of the month, and on Monday",
    ),
    (
        "0 0 L * FRI",
        "",
        "At 00:00 on the last day of the month, and on Friday",
    ),
    (
        "0 0 */2 * MON",
        "",
        "At 00:00 on every 2nd day of the month, if it is also Monday",
    ),
    ("0 0 1-31 * MON", "", "At 00:00"),
    ("0 0 13 * */1", "", "At 00:00 on day 13 of the month"),
    // Months and years
    ("0 0 1 1 *", "", "At 00:00 on day 1 of the month in January"),
    ("@yearly", "", "At 00:00 on day 1 of the month in January"),
    (
        "0 0 1 1,7 *",
        "",
        "At 00:00 on day 1 of the month in January and July",
    ),
    (
        "0 0 1 NOV-FEB *",
        "",
        "At 00:00 on day 1 of the month in January, February, November and December",
    ),
    (
        "0 0 1 3-5 *",
        "",
        "At 00:00 on day 1 of the month in March through May",
    ),
    (
        "0 0 12 29 2 * 2024-2040/4",
        "",
        "At 12:00 on day 29 of the month in February in 2024, 2028, 2032, 2036 and 2040",
    ),
    (
        "0 0 0 1 1 * 2030",
        "",
        "At 00:00 on day 1 of the month in January in 2030",
    ),
    (
        "0 30 9 * * MON-FRI 2025-2027",
        "",
        "At 09:30, Monday through Friday in 2025 through 2027",
    ),
    (
        "0 0 0 1 * * 2024/4",
        "",
        "At 00:00 on day 1 of the month in every 4th year from 2024 through 2096",
    ),
];

#[test]
fn the_table_reads_as_written() {
    assert!(TABLE.len() >= 60, "the table lost rows");
    let mut wrong = Vec::new();
    for &(expr, zone, sentence) in TABLE {
        let schedule = if zone.is_empty() {
            Schedule::cron(expr)
        } else {
            Schedule::cron_in(expr, zone)
        }
        .unwrap_or_else(|e| panic!("'{expr}' must parse: {e}"));
        let got = schedule.describe();
        if got != sentence {
            wrong.push(format!(
                "{expr:>28}: expected {sentence:?}\n{:>28}       got {got:?}",
                ""
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} sentences differ:\n{}",
        wrong.len(),
        TABLE.len(),
        wrong.join("\n")
    );
}

#[test]
fn fixed_periods_and_one_shots() {
    let every = |secs: f64| Schedule::every_secs(secs).unwrap().describe();
    assert_eq!(every(2.5), "Every 2.5 seconds");
    assert_eq!(every(1.0), "Every second");
    assert_eq!(every(30.0), "Every 30 seconds");
    assert_eq!(every(60.0), "Every minute");
    assert_eq!(every(300.0), "Every 5 minutes");
    assert_eq!(every(90.0), "Every 90 seconds");
    assert_eq!(every(3600.0), "Every hour");
    assert_eq!(every(7200.0), "Every 2 hours");
    assert_eq!(every(86_400.0), "Every day");
    assert_eq!(every(0.25), "Every 250 milliseconds");
    assert_eq!(
        Schedule::every(Duration::new(1, 5)).unwrap().describe(),
        "Every 1.000000005 seconds"
    );
    let at = Utc.with_ymd_and_hms(2030, 1, 1, 6, 0, 0).unwrap();
    assert_eq!(
        Schedule::once_at(at).describe(),
        "Once, at 2030-01-01 06:00:00 UTC"
    );
    assert_eq!(
        Schedule::once_after_secs(30.0).unwrap().describe(),
        "Once, 30 seconds after the start"
    );
    assert_eq!(
        Schedule::once_after_secs(0.0).unwrap().describe(),
        "Once, at the start"
    );
}
