#!/usr/bin/env python3
"""Generate conformance vectors for the scheduler-core cron engine.

How to run (from the repository root; Python >= 3.9 for zoneinfo):

    pip install croniter==7.0.0        # the version these vectors were made with
    python3 scheduler-core/tests/data/gen_cron_vectors.py \
        > scheduler-core/tests/data/cron_vectors.json

A summary (per-category counts, croniter disagreements) goes to stderr.
The output is deterministic: the random cases come from a fixed seed and
every start instant is fixed.  (If the system tz database changes, DST-related
vectors may change; 2020-2030 rules for the zones used here are stable.)

`expected` is computed by OUR OWN brute-force evaluator below, which
implements the spec rules.  croniter is only a second opinion:
`croniter_agrees` says whether croniter produced exactly the same list.
Where they differ, the spec rules win and `note` explains why.

Rules implemented (the spec):
  * 5 fields `min hour dom month dow`, or 6 with a LEADING `second` field.
    Ranges: sec 0-59, min 0-59, hour 0-23, dom 1-31, month 1-12 (JAN-DEC),
    dow 0-7 (0 and 7 = Sunday, SUN-SAT).  Names are case-insensitive.
    Items: `*`, `N`, `a-b`, `*/s`, `a-b/s`, `a/s` (= a-max/s, max of dow = 7).
    A step wider than the field yields only the first value (`*/60` = 0).
    `N-N` = just N.
    Macros: @yearly/@annually, @monthly, @weekly, @daily/@midnight, @hourly.
  * Day matching (Vixie cron): if the dom field text OR the dow field text
    starts with `*`, a day matches when dom AND dow match; otherwise a day
    matches when dom OR dow matches.
  * Evaluation is on the wall clock of the case's zone; results are in UTC.
  * DST (Vixie cron(8)): a job is *wildcard* if its second, minute or hour
    field text starts with `*` (5-field: implicit second "0" is not);
    otherwise it is *fixed-time*.
      - spring-forward gap: fixed-time matches inside the gap fire ONCE at the
        transition instant (first instant after the gap); wildcard matches
        inside the gap are skipped.
      - fall-back overlap: fixed-time fires only at the FIRST occurrence;
        wildcard fires at every occurrence.
  * A never-firing expression gives `expected: []` (search horizon 60 years).

Where croniter 7.0.0 disagrees (all recorded with croniter_agrees=false):
  * fixed-time job in a fall-back overlap: croniter fires at BOTH occurrences
    (New York, Berlin, Sydney, Lord Howe).
  * wildcard job in Lord Howe's 30-minute overlap: croniter does not repeat
    some second occurrences (e.g. `*/20 1-3 * * *` misses 01:40 +10:30).
  * wildcard job in Lord Howe's 30-minute gap: croniter fires at the
    transition instant for a gap match (`*/20 1-3 * * *`, 02:00/02:20);
    the rule skips it.  Also 6-field `*/30 30 2 * * *` in New York.
  * 6-field fixed-time job in a gap (`30 30 2 * * *`): the rule fires exactly
    at the transition instant (07:00:00Z); croniter keeps the seconds and
    fires at 07:00:30Z.
  * dom/dow where one field starts with `*` but is restricted (e.g. `*/2`):
    croniter ORs the two fields (it only looks at the expanded value), Vixie
    ANDs them.
  * `N-N` ranges: croniter reads them as the whole field.
  * `a/s` in day-of-week: croniter uses max 6, so `1/2` misses Sunday (7).
  * 6-field expressions are given to croniter with second_at_beginning=True.
  The generator asserts that every disagreement is explained by one of the
  known reasons (see explain_disagreement()).

The brute force works per local calendar day (enumerating matching wall
times and resolving each one in the zone); it is cross-checked for every case
whose answer spans a bounded window by a second, independent evaluator that
walks UTC instants minute by minute (second by second for 6-field).
"""

import json
import random
import sys
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import croniter as croniter_pkg
from croniter import croniter, CroniterBadDateError

UTC = timezone.utc
N_RESULTS = 6
HORIZON_YEARS = 60
SEED = 20240531

MONTHS = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN",
          "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
DOWS = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]
MACROS = {
    "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *", "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
# (lo, hi, names, names_base)
FIELD_SPECS = {
    "second": (0, 59, None, 0),
    "minute": (0, 59, None, 0),
    "hour": (0, 23, None, 0),
    "dom": (1, 31, None, 0),
    "month": (1, 12, MONTHS, 1),
    "dow": (0, 7, DOWS, 0),
}


# --------------------------------------------------------------------------
# Parsing (our own implementation of the spec)
# --------------------------------------------------------------------------

def parse_value(text, kind):
    lo, hi, names, base = FIELD_SPECS[kind]
    if names is not None and text.upper() in names:
        return names.index(text.upper()) + base
    if not text.isdigit():
        raise ValueError(f"bad value {text!r} in {kind}")
    v = int(text)
    if not lo <= v <= hi:
        raise ValueError(f"{v} out of range for {kind}")
    return v


def parse_field(text, kind):
    lo, hi, _, _ = FIELD_SPECS[kind]
    values = set()
    for item in text.split(","):
        step = 1
        has_step = "/" in item
        if has_step:
            item, step_txt = item.split("/")
            step = int(step_txt)
            if step <= 0:
                raise ValueError("step must be positive")
        if item == "*":
            a, b = lo, hi
        elif "-" in item:
            a_txt, b_txt = item.split("-")
            a, b = parse_value(a_txt, kind), parse_value(b_txt, kind)
            if a > b:
                raise ValueError("descending range")
        else:
            a = parse_value(item, kind)
            b = hi if has_step else a       # `a/s` = a-max/s
        values.update(range(a, b + 1, step))
    if kind == "dow" and 7 in values:
        values.discard(7)
        values.add(0)
    return values


class Cron:
    def __init__(self, expr):
        self.expr = expr
        text = MACROS.get(expr.strip().lower(), expr)
        parts = text.split()
        if len(parts) == 5:
            parts = ["0"] + parts
            self.six = False
        elif len(parts) == 6:
            self.six = True
        else:
            raise ValueError("need 5 or 6 fields")
        kinds = ["second", "minute", "hour", "dom", "month", "dow"]
        self.texts = dict(zip(kinds, parts))
        f = {k: parse_field(t, k) for k, t in self.texts.items()}
        self.secs = sorted(f["second"])
        self.mins = sorted(f["minute"])
        self.hours = sorted(f["hour"])
        self.doms, self.months, self.dows = f["dom"], f["month"], f["dow"]
        self.day_and = (self.texts["dom"].startswith("*")
                        or self.texts["dow"].startswith("*"))
        self.wildcard = any(self.texts[k].startswith("*")
                            for k in ("second", "minute", "hour"))
        self.sec_set, self.min_set, self.hour_set = (
            set(self.secs), set(self.mins), set(self.hours))

    def day_matches(self, d):
        if d.month not in self.months:
            return False
        dom_ok = d.day in self.doms
        dow_ok = (d.isoweekday() % 7) in self.dows
        return (dom_ok and dow_ok) if self.day_and else (dom_ok or dow_ok)

    def wall_matches(self, w):
        return (w.second in self.sec_set and w.minute in self.min_set
                and w.hour in self.hour_set and self.day_matches(w.date()))


# --------------------------------------------------------------------------
# Evaluator 1: per local day, resolve each matching wall time in the zone
# --------------------------------------------------------------------------

def transition_after(t_utc, tz):
    """First whole-minute UTC instant >= t_utc whose offset differs."""
    off = t_utc.astimezone(tz).utcoffset()
    t = t_utc.replace(second=0) + timedelta(minutes=1)
    for _ in range(24 * 60):
        if t.astimezone(tz).utcoffset() != off:
            return t
        t += timedelta(minutes=1)
    raise AssertionError("no transition found")


def resolve(wall, tz, wildcard):
    """UTC instants at which a job matching local wall time `wall` fires."""
    u0 = wall.replace(tzinfo=tz, fold=0).astimezone(UTC)
    u1 = wall.replace(tzinfo=tz, fold=1).astimezone(UTC)
    ok0 = u0.astimezone(tz).replace(tzinfo=None) == wall
    ok1 = u1.astimezone(tz).replace(tzinfo=None) == wall
    if ok0 and ok1:
        if u0 == u1:
            return [u0]
        first, second = sorted([u0, u1])
        return [first, second] if wildcard else [first]   # overlap
    assert not ok0 and not ok1, wall
    if wildcard:                                          # gap
        return []
    return [transition_after(min(u0, u1), tz)]


def brute_force(cron, tz, start_utc, n=N_RESULTS):
    start_wall = start_utc.astimezone(tz).replace(tzinfo=None)
    lower = start_wall - timedelta(hours=3)
    d = start_wall.date() - timedelta(days=1)
    end = date(min(start_wall.year + HORIZON_YEARS, 9999), 1, 1)
    found = set()
    stop_wall = None
    while d < end:
        if stop_wall is not None and datetime(d.year, d.month, d.day) > stop_wall:
            break
        if cron.day_matches(d):
            for h in cron.hours:
                for m in cron.mins:
                    for s in cron.secs:
                        w = datetime(d.year, d.month, d.day, h, m, s)
                        if w < lower:
                            continue
                        if stop_wall is not None and w > stop_wall:
                            break
                        for u in resolve(w, tz, cron.wildcard):
                            if u > start_utc:
                                found.add(u)
                        if stop_wall is None and len(found) >= n:
                            # later walls can't map before this one by more
                            # than the biggest DST shift: look 3h further.
                            stop_wall = w + timedelta(hours=3)
        d += timedelta(days=1)
    return sorted(found)[:n]


# --------------------------------------------------------------------------
# Evaluator 2 (cross-check): walk UTC instants one by one
# --------------------------------------------------------------------------

def utc_walk(cron, tz, start_utc, until_utc, n=N_RESULTS):
    step = timedelta(seconds=1 if cron.six else 60)
    t = start_utc + step
    t = t.replace(second=0) if not cron.six else t
    if t <= start_utc:
        t += step
    prev_off = (t - step).astimezone(tz).utcoffset()
    out = []
    while t <= until_utc and len(out) < n:
        local = t.astimezone(tz)
        off = local.utcoffset()
        fire = cron.wall_matches(local) and (cron.wildcard or local.fold == 0)
        if off > prev_off and not cron.wildcard:
            # spring forward at t: walls [t+prev_off, t+off) were skipped
            w = (t + prev_off).replace(tzinfo=None)
            w_end = (t + off).replace(tzinfo=None)
            while w < w_end and not fire:
                fire = cron.wall_matches(w)
                w += step
        if fire:
            out.append(t)
        prev_off = off
        t += step
    return out


# --------------------------------------------------------------------------
# croniter
# --------------------------------------------------------------------------

def run_croniter(expr, tz, start_utc, six, n=N_RESULTS):
    it = croniter(expr, start_utc.astimezone(tz), second_at_beginning=six)
    out = []
    try:
        for _ in range(n):
            out.append(it.get_next(datetime).astimezone(UTC))
    except CroniterBadDateError:
        pass
    return out


def fmt(t):
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_utc(s):
    return datetime.strptime(s, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def explain_disagreement(cron, tz, start, expected, got):
    """Return notes for the known croniter deviations, or [] if unexplained."""
    reasons = []
    exp_set, got_set = set(expected), set(got)
    extra = sorted(got_set - exp_set)
    # fixed-time job fired at the second occurrence of a repeated wall time
    for u in extra:
        loc = u.astimezone(tz)
        if loc.fold == 1 and not cron.wildcard:
            wall = loc.replace(tzinfo=None, fold=0)
            if True:
                reasons.append(
                    "croniter fires this fixed-time job at both occurrences "
                    "of the repeated fall-back wall time %s (%s); the rule "
                    "fires only the first" % (wall.isoformat(), fmt(u)))
                break
    for u in sorted(exp_set - got_set):
        loc = u.astimezone(tz)
        if loc.fold == 1 and cron.wildcard:
            reasons.append(
                "croniter skips the second occurrence %s (%s) of a repeated "
                "fall-back wall time; the rule fires a wildcard job at every "
                "occurrence" % (loc.replace(tzinfo=None).isoformat(), fmt(u)))
            break
    for u in sorted((got_set - exp_set) | (exp_set - got_set)):
        before = (u - timedelta(seconds=1)).astimezone(tz).utcoffset()
        if u.astimezone(tz).utcoffset() <= before:
            continue                      # not a spring-forward instant
        if cron.wildcard and u in got_set:
            reasons.append(
                "croniter fires this wildcard job at the spring-forward "
                "transition %s for a wall time inside the gap; the rule "
                "skips wildcard matches in the gap" % fmt(u))
            break
        if not cron.wildcard and u in exp_set:
            reasons.append(
                "the rule fires this fixed-time job exactly at the "
                "spring-forward transition %s (first instant after the gap) "
                "for its wall time inside the gap; croniter does not" % fmt(u))
            break
    t = cron.texts
    if cron.day_and and t["dom"] != "*" and t["dow"] != "*":
        # croniter ORs unless the *expanded* field is '*'
        reasons.append(
            "dom '%s' / dow '%s': one field starts with '*', so Vixie ANDs "
            "them; croniter ORs restricted fields" % (t["dom"], t["dow"]))
    for k, txt in t.items():
        for item in txt.split(","):
            base = item.split("/")[0]
            if "-" in base and base.split("-")[0] == base.split("-")[1]:
                reasons.append("croniter reads the single-value range '%s' "
                               "(%s) as the whole field" % (item, k))
    for item in t["dow"].split(","):
        if "/" in item and not item.startswith("*") and "-" not in item:
            reasons.append("dow '%s' means %s-7/%s (Sunday=7 included); "
                           "croniter stops at 6" % (item, item.split("/")[0],
                                                    item.split("/")[1]))
    return reasons


# --------------------------------------------------------------------------
# Case construction
# --------------------------------------------------------------------------

DST_ZONES = ["America/New_York", "Europe/Berlin",
             "Australia/Sydney", "Australia/Lord_Howe"]


def transitions(zone, year):
    """All (utc_instant, kind) offset changes of `zone` in `year`."""
    tz = ZoneInfo(zone)
    out = []
    t = datetime(year, 1, 1, tzinfo=UTC)
    end = datetime(year + 1, 1, 1, tzinfo=UTC)
    off = t.astimezone(tz).utcoffset()
    while t < end:
        nt = t + timedelta(hours=1)
        noff = nt.astimezone(tz).utcoffset()
        if noff != off:
            tr = transition_after(t, tz)
            out.append((tr, "gap" if noff > off else "overlap"))
        t, off = nt, noff
    return out


def trap_cases():
    C = []

    def add(cat, expr, tz, start):
        C.append((cat, expr, tz, start))

    # month ends
    for e in ["0 0 31 * *", "0 0 30 * *", "59 23 28-31 * *"]:
        for s in ["2024-01-15T00:00:00Z", "2023-01-31T00:00:00Z",
                  "2025-11-30T23:59:00Z"]:
            add("month-end", e, "UTC", s)
    add("month-end", "0 0 31 * *", "America/New_York", "2024-01-31T05:00:00Z")
    add("month-end", "59 23 28-31 * *", "Australia/Sydney",
        "2024-02-27T00:00:00Z")
    # leap years / Feb 29
    for s in ["2023-06-01T00:00:00Z", "2024-02-29T00:00:00Z",
              "2024-02-28T23:59:59Z", "2096-03-01T00:00:00Z",
              "2097-07-04T12:00:00Z", "2099-12-31T23:59:59Z",
              "2095-12-31T00:00:00Z"]:
        add("leap-feb29", "0 0 29 2 *", "UTC", s)
    add("leap-feb29", "30 12 29 FEB *", "America/New_York",
        "2021-03-01T00:00:00Z")
    add("leap-feb29", "0 0 28-29 2 *", "UTC", "2098-01-01T00:00:00Z")
    add("leap-feb29", "0 0 29 2 *", "Europe/Berlin", "2096-02-28T23:30:00Z")
    # never fires
    for e in ["0 0 30 2 *", "0 0 31 4,6,9,11 *", "0 0 31 2 *",
              "0 0 30,31 feb *", "0 0 31 apr,jun,sep,nov *"]:
        add("never-fires", e, "UTC", "2024-01-01T00:00:00Z")
    add("never-fires", "0 0 31 2 *", "Europe/Berlin", "2027-05-05T05:05:05Z")
    add("never-fires", "*/10 * * 30 2 *", "UTC", "2024-01-01T00:00:00Z")
    # dom / dow OR (neither field starts with '*')
    for e, s in [("0 0 1,15 * MON", "2024-01-01T00:00:00Z"),
                 ("0 0 1,15 * MON", "2024-07-10T08:00:00Z"),
                 ("0 12 13 * FRI", "2024-09-01T00:00:00Z"),
                 ("0 12 13 * FRI", "2026-02-01T00:00:00Z"),
                 ("0 0 30 2 mon", "2024-01-20T00:00:00Z"),
                 ("0 0 1-7 * 1", "2024-05-01T00:00:00Z"),
                 ("0 0 1-31 * MON", "2024-01-01T00:00:00Z"),
                 ("0 0 29 2 1", "2023-02-01T00:00:00Z"),
                 ("30 8 10-12 * 6,0", "2025-03-01T00:00:00Z")]:
        add("dom-dow-or", e, "UTC", s)
    add("dom-dow-or", "0 0 1,15 * MON", "America/New_York",
        "2024-03-01T00:00:00Z")
    # dom / dow AND (one field starts with '*')
    for e, s in [("0 0 */2 * MON", "2024-01-01T00:00:00Z"),
                 ("0 0 */2 * MON", "2025-06-01T00:00:00Z"),
                 ("0 0 */10 * 1-5", "2024-01-01T00:00:00Z"),
                 ("0 12 1-7 * */1", "2024-01-01T00:00:00Z"),
                 ("0 0 13 * */7", "2024-01-01T00:00:00Z"),
                 ("0 0 * * FRI", "2024-01-01T00:00:00Z"),
                 ("0 0 13 * *", "2024-01-01T00:00:00Z"),
                 ("0 0 1-10 * */2", "2024-02-01T00:00:00Z")]:
        add("dom-dow-star-and", e, "UTC", s)
    add("dom-dow-star-and", "0 9 */3 * SAT", "Europe/Berlin",
        "2024-02-01T00:00:00Z")
    # Sunday as 0 and 7
    for e, s in [("0 0 * * 0", "2024-01-01T00:00:00Z"),
                 ("0 0 * * 7", "2024-01-01T00:00:00Z"),
                 ("0 0 * * 5-7", "2024-01-01T00:00:00Z"),
                 ("0 12 * * 0,7", "2024-01-01T00:00:00Z"),
                 ("0 0 * * 6-7", "2024-01-01T00:00:00Z"),
                 ("* * * * 7", "2024-01-06T23:58:00Z"),
                 ("0 0 * * SUN", "2024-01-01T00:00:00Z"),
                 ("0 0 * * sun,7", "2024-01-01T00:00:00Z")]:
        add("sunday-0-7", e, "UTC", s)
    # names
    for e, s in [("0 0 1 JAN,jul *", "2024-01-01T00:00:00Z"),
                 ("0 9 * * mon-fri", "2024-01-05T10:00:00Z"),
                 ("0 0 * feb-apr sun", "2024-01-01T00:00:00Z"),
                 ("0 0 1 Dec *", "2024-01-01T00:00:00Z"),
                 ("30 6 * * Sat,SUN", "2024-01-01T00:00:00Z"),
                 ("0 0 15 jan-mar/2 *", "2024-01-01T00:00:00Z"),
                 ("0 18 * * Mon,Wed-Fri", "2024-06-03T00:00:00Z")]:
        add("names", e, "UTC", s)
    add("names", "0 9 * * mon-fri", "Australia/Sydney", "2024-01-05T10:00:00Z")
    # steps
    for e, s in [("*/15 * * * *", "2024-01-01T00:07:00Z"),
                 ("1-10/3 * * * *", "2024-01-01T00:00:00Z"),
                 ("5/10 * * * *", "2024-01-01T00:00:00Z"),
                 ("10-50/20 */6 * * *", "2024-01-01T00:00:00Z"),
                 ("*/60 * * * *", "2024-01-01T00:00:00Z"),
                 ("0 */25 * * *", "2024-01-01T00:00:00Z"),
                 ("0 0 */10 * *", "2024-01-01T00:00:00Z"),
                 ("0 0 1 */5 *", "2024-01-01T00:00:00Z"),
                 ("0 0 * * */3", "2024-01-01T00:00:00Z"),
                 ("0 5/7 * * *", "2024-01-01T00:00:00Z"),
                 ("0 0 31/2 * *", "2024-01-01T00:00:00Z"),
                 ("*/7 * * * *", "2024-01-01T00:50:00Z"),
                 ("0 0 1 */12 *", "2024-03-01T00:00:00Z")]:
        add("steps", e, "UTC", s)
    # croniter quirks that the rules define differently
    add("single-value-range", "0 0 5-5 * *", "UTC", "2024-01-01T00:00:00Z")
    add("single-value-range", "0 12-12 * * *", "UTC", "2024-01-01T00:00:00Z")
    add("single-value-range", "30-30 * * * *", "UTC", "2024-01-01T00:00:00Z")
    add("dow-start-step", "0 0 * * 1/2", "UTC", "2024-01-01T00:00:00Z")
    add("dow-start-step", "0 0 * * 4/3", "UTC", "2024-01-01T00:00:00Z")
    add("dow-start-step", "0 0 * * 2/5", "UTC", "2024-01-01T00:00:00Z")
    # macros
    for e in ["@yearly", "@annually", "@monthly", "@weekly", "@daily",
              "@midnight", "@hourly"]:
        add("macros", e, "UTC", "2024-02-27T13:14:15Z")
    add("macros", "@daily", "America/New_York", "2024-03-08T12:00:00Z")
    add("macros", "@weekly", "Europe/Berlin", "2024-10-20T12:00:00Z")
    add("macros", "@hourly", "Australia/Lord_Howe", "2024-10-05T13:10:00Z")
    add("macros", "@monthly", "Australia/Sydney", "2024-12-31T12:00:00Z")
    # 6-field with seconds
    for e, s in [("*/20 * * * * *", "2024-01-01T00:00:00Z"),
                 ("30 0 12 * * *", "2024-01-01T00:00:00Z"),
                 ("0 0 0 1 * *", "2024-01-15T00:00:00Z"),
                 ("15,45 * * * * *", "2024-01-01T00:00:50Z"),
                 ("0 */30 * * * *", "2024-01-01T00:00:00Z"),
                 ("5-8 0 0 * * *", "2024-12-31T23:59:59Z"),
                 ("*/60 * * * * *", "2024-01-01T00:00:00Z"),
                 ("59 59 23 31 12 *", "2024-06-01T00:00:00Z")]:
        add("seconds", e, "UTC", s)
    add("seconds", "30 0 12 * * *", "Australia/Sydney", "2024-01-01T00:00:00Z")
    return C


FIXED_DST = ["30 2 * * *", "0 2 * * *", "30 1 * * *", "0 1 * * *",
             "15 2 * * *", "45 1 * * *", "0 1-3 * * *", "0,30 2 * * *"]
WILD_DST = {"30 * * * *": 3 * 60, "*/15 * * * *": 30, "0 * * * *": 3 * 60,
            "*/20 1-3 * * *": 6 * 60}


def dst_cases():
    C = []
    for zone in DST_ZONES:
        for year in (2024, 2025):
            for tr, kind in transitions(zone, year):
                cat = "dst-" + kind
                for e in FIXED_DST:
                    C.append((cat, e, zone, fmt(tr - timedelta(hours=6))))
                for e, lead in WILD_DST.items():
                    C.append((cat, e, zone, fmt(tr - timedelta(minutes=lead))))
    # 6-field, around New York 2024
    C.append(("dst-gap", "30 30 2 * * *", "America/New_York",
              "2024-03-10T06:00:00Z"))
    C.append(("dst-gap", "*/30 30 2 * * *", "America/New_York",
              "2024-03-10T06:00:00Z"))
    C.append(("dst-overlap", "0 30 1 * * *", "America/New_York",
              "2024-11-03T04:00:00Z"))
    C.append(("dst-overlap", "*/30 30 1 * * *", "America/New_York",
              "2024-11-03T05:00:00Z"))
    C.append(("dst-overlap", "0 59 1 * * *", "Australia/Lord_Howe",
              "2024-04-06T12:00:00Z"))
    return C


def random_field(rng, kind):
    lo, hi, names, base = FIELD_SPECS[kind]
    if kind == "dow":
        hi = 7

    def val(v):
        if names is not None and v - base < len(names) and rng.random() < 0.3:
            name = names[(v - base) % len(names)]
            return rng.choice([name, name.lower(), name.capitalize()])
        return str(v)

    star_p = {"second": 0.2, "minute": 0.15, "hour": 0.3, "dom": 0.6,
              "month": 0.7, "dow": 0.6}[kind]
    r = rng.random()
    if r < star_p:
        return "*"
    r = rng.random()
    if r < 0.2:
        return "*/%d" % rng.randint(2, max(2, (hi - lo) // 2 + 3))
    items = []
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        c = rng.random()
        a = rng.randint(lo, hi)
        if c < 0.45:
            items.append(val(a))
        elif c < 0.75 and a < hi:
            b = rng.randint(a + 1, hi)
            items.append("%s-%s" % (val(a), val(b)))
        elif c < 0.9 and a < hi:
            b = rng.randint(a + 1, hi)
            items.append("%s-%s/%d" % (val(a), val(b), rng.randint(2, 9)))
        elif kind != "dow":
            items.append("%s/%d" % (val(a), rng.randint(2, 15)))
        else:
            items.append(val(a))
    return ",".join(items)


def random_cases(rng, count):
    C = []
    zones = ["UTC", "UTC"] + DST_ZONES
    t0 = datetime(2020, 1, 1, tzinfo=UTC).timestamp()
    t1 = datetime(2030, 1, 1, tzinfo=UTC).timestamp()
    while len(C) < count:
        six = rng.random() < 0.15
        kinds = (["second"] if six else []) + ["minute", "hour", "dom",
                                                "month", "dow"]
        expr = " ".join(random_field(rng, k) for k in kinds)
        zone = rng.choice(zones)
        start = datetime.fromtimestamp(rng.randint(int(t0), int(t1)), UTC)
        C.append(("random", expr, zone, fmt(start)))
    return C


CROSS_CHECKED = [0]


def build_case(cat, expr, zone, start_s):
    cron = Cron(expr)
    tz = ZoneInfo(zone)
    start = parse_utc(start_s)
    expected = brute_force(cron, tz, start)
    # cross-check with the independent UTC walk when the window is bounded
    if expected:
        step = 1 if cron.six else 60
        span = (expected[-1] - start).total_seconds() / step
        if span <= 600_000:
            CROSS_CHECKED[0] += 1
            walked = utc_walk(cron, tz, start, expected[-1] + timedelta(hours=3))
            assert walked == expected, (cat, expr, zone, start_s,
                                        list(map(fmt, walked)),
                                        list(map(fmt, expected)))
    got = run_croniter(expr, tz, start, cron.six)
    agrees = got == expected
    note = ""
    if not agrees:
        reasons = explain_disagreement(cron, tz, start, expected, got)
        if not reasons:
            raise AssertionError("unexplained croniter disagreement: %r" % (
                (cat, expr, zone, start_s, list(map(fmt, expected)),
                 list(map(fmt, got))),))
        note = "; ".join(reasons) + ". croniter gave: " + ", ".join(
            map(fmt, got))
    return {"category": cat, "expr": expr, "tz": zone, "start": start_s,
            "expected": [fmt(u) for u in expected],
            "croniter_agrees": agrees, "note": note}, len(expected)


def main():
    rng = random.Random(SEED)
    specs = trap_cases() + dst_cases()
    out = []
    for spec in specs:
        case, n = build_case(*spec)
        if n != N_RESULTS and case["category"] != "never-fires":
            raise AssertionError("short result for %r" % (spec,))
        out.append(case)
    n_random = 0
    for spec in random_cases(rng, 400):
        if n_random >= 150:
            break
        case, n = build_case(*spec)
        if n != N_RESULTS:   # keep random cases to full-length answers
            continue
        out.append(case)
        n_random += 1
    version = getattr(croniter_pkg, "__version__", None)
    if version is None:
        from importlib.metadata import version as v
        version = v("croniter")
    json.dump({"generator": "gen_cron_vectors.py with croniter %s" % version,
               "cases": out}, sys.stdout, indent=1)
    sys.stdout.write("\n")
    stats = {}
    for c in out:
        s = stats.setdefault(c["category"], [0, 0])
        s[0] += 1
        s[1] += not c["croniter_agrees"]
    for k, (n, d) in stats.items():
        print("%-20s %4d cases, croniter disagrees on %d" % (k, n, d),
              file=sys.stderr)
    print("total %d cases, %d disagreements, %d cross-checked by UTC walk" % (
        len(out), sum(d for _, d in stats.values()), CROSS_CHECKED[0]),
        file=sys.stderr)


if __name__ == "__main__":
    main()
