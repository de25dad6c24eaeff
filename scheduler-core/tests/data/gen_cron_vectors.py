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

Extensions (categories starting with `ext-`):
  * A range whose start is after its end wraps past the field's end:
    `22-2` = 22,23,0,1,2; `FRI-SUN` = 5,6,0; a step counts on across the wrap
    (`22-2/2` = 22,0,2).  Day of week wraps after Saturday (Sunday counted
    once); a start of 7 is Sunday (`7-2` = 0-2).  Years never wrap.
  * Day of month: `L` (last day), `L-n` (n = 1-30 days before it), `LW` (the
    last Monday-Friday), `nW` (the Monday-Friday nearest day n without
    leaving the month; nothing in a month without day n).
  * Day of week: `wL` (the last weekday w of the month), `w#k` (the k-th,
    k = 1-5).  Numbers are cron's (0/7 = Sunday), names allowed.
  * These are list elements like any other and take part in the dom/dow
    rule unchanged: a field holding them is restricted (does not start
    with `*`), so `L` with `FRI` ORs, `?` or `*` with `5L` ANDs.
  * An optional 7th field, the year (1970-2099; `*` = every year), after a
    leading seconds field: exactly 7 fields.  When its years run out the
    schedule ends: a list shorter than six is the schedule's whole future
    (category `ext-year-end`).

The brute force (evaluator 1) computes the day rules arithmetically from the
month's length and weekdays; the UTC walk (evaluator 2) uses a second,
independent reading that lists the days of the month and picks from the list
(the last one, the k-th Friday, the weekday closest to day n, ...).

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

import calendar
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
    "year": (1970, 2099, None, 0),
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


def wrap_values(a, b, kind, step):
    """A reversed range a-b (a > b) read as a, a+1, ..., top, lo, ..., b."""
    lo, hi, _, _ = FIELD_SPECS[kind]
    top = 6 if kind == "dow" else hi
    seq = list(range(a, top + 1)) + list(range(lo, b + 1))
    return set(seq[::step])


def parse_special(item, kind, rules):
    """Record an L / W / # element in `rules`; False for a plain element."""
    up = item.upper()
    if kind == "dom" and any(c in up for c in "LW#"):
        if up == "L":
            rules["from_end"].add(0)
        elif up == "LW":
            rules["last_weekday"] = True
        elif up.startswith("L-"):
            n = int(up[2:])
            if not 1 <= n <= 30:
                raise ValueError("bad L-n")
            rules["from_end"].add(n)
        elif up.endswith("W") and up[:-1].isdigit():
            n = int(up[:-1])
            if not 1 <= n <= 31:
                raise ValueError("bad nW")
            rules["nearest"].add(n)
        else:
            raise ValueError("bad dom extension %r" % item)
        return True
    if kind == "dow" and ("#" in up or up.endswith("L")):
        if "#" in up:
            w_txt, k_txt = up.split("#")
            k = int(k_txt)
            if not 1 <= k <= 5:
                raise ValueError("bad #k")
            rules["nth"].add((parse_value(w_txt, "dow") % 7, k))
        else:
            rules["last"].add(parse_value(up[:-1], "dow") % 7)
        return True
    return False


def parse_field(text, kind, rules=None):
    lo, hi, _, _ = FIELD_SPECS[kind]
    values = set()
    for item in text.split(","):
        if rules is not None and parse_special(item, kind, rules):
            continue
        step = 1
        has_step = "/" in item
        if has_step:
            item, step_txt = item.split("/")
            step = int(step_txt)
            if step <= 0:
                raise ValueError("step must be positive")
        if item == "*" or (item == "?" and kind in ("dom", "dow")):
            a, b = lo, hi
        elif "-" in item:
            a_txt, b_txt = item.split("-")
            a, b = parse_value(a_txt, kind), parse_value(b_txt, kind)
            if kind == "dow" and a == 7 and b < 7:
                a = 0
            if a > b:
                if kind == "year":
                    raise ValueError("descending year range")
                values.update(wrap_values(a, b, kind, step))
                continue
        else:
            a = parse_value(item, kind)
            b = hi if has_step else a       # `a/s` = a-max/s
        values.update(range(a, b + 1, step))
    if kind == "dow" and 7 in values:
        values.discard(7)
        values.add(0)
    return values


def new_rules():
    return {"from_end": set(), "last_weekday": False, "nearest": set(),
            "last": set(), "nth": set()}


def month_last(d):
    return calendar.monthrange(d.year, d.month)[1]


def rules_match_arith(rules, d):
    """Evaluator 1's reading of the extensions: arithmetic on the month."""
    last = month_last(d)
    wd = d.isoweekday() % 7                       # Sunday = 0
    dom = (last - d.day) in rules["from_end"]
    if rules["last_weekday"]:
        lw_wd = (wd + last - d.day) % 7
        lw = last - {6: 1, 0: 2}.get(lw_wd, 0)
        dom = dom or d.day == lw
    for n in rules["nearest"]:
        if n > last:
            continue
        n_wd = (wd + n - d.day) % 7
        if n_wd == 6:
            target = 3 if n == 1 else n - 1
        elif n_wd == 0:
            target = n - 2 if n == last else n + 1
        else:
            target = n
        dom = dom or d.day == target
    dow = (wd in rules["last"] and d.day + 7 > last) or \
        (wd, (d.day - 1) // 7 + 1) in rules["nth"]
    return dom, dow


def rules_match_listing(rules, d):
    """Evaluator 2's reading: list the month's days and pick from the list."""
    month = [date(d.year, d.month, k) for k in range(1, month_last(d) + 1)]
    weekdays = [x for x in month if x.isoweekday() <= 5]
    picked_dom = set()
    for n in rules["from_end"]:
        if n < len(month):
            picked_dom.add(month[-1 - n])
    if rules["last_weekday"]:
        picked_dom.add(weekdays[-1])
    for n in rules["nearest"]:
        if n <= len(month):
            picked_dom.add(min(weekdays, key=lambda x: abs(x.day - n)))
    picked_dow = set()
    for w in rules["last"]:
        picked_dow.add([x for x in month if x.isoweekday() % 7 == w][-1])
    for w, k in rules["nth"]:
        same = [x for x in month if x.isoweekday() % 7 == w]
        if k <= len(same):
            picked_dow.add(same[k - 1])
    return d in picked_dom, d in picked_dow


class Cron:
    def __init__(self, expr):
        self.expr = expr
        text = MACROS.get(expr.strip().lower(), expr)
        parts = text.split()
        if len(parts) == 5:
            parts = ["0"] + parts + ["*"]
            self.six = False
        elif len(parts) == 6:
            parts = parts + ["*"]
            self.six = True
        elif len(parts) == 7:
            self.six = True
        else:
            raise ValueError("need 5, 6 or 7 fields")
        kinds = ["second", "minute", "hour", "dom", "month", "dow", "year"]
        self.texts = dict(zip(kinds, parts))
        self.rules = new_rules()
        f = {k: parse_field(t, k, self.rules if k in ("dom", "dow") else None)
             for k, t in self.texts.items() if k != "year"}
        self.years = (None if self.texts["year"] == "*"
                      else parse_field(self.texts["year"], "year"))
        self.extended = (self.years is not None
                         or any(self.rules[k] for k in self.rules))
        self.secs = sorted(f["second"])
        self.mins = sorted(f["minute"])
        self.hours = sorted(f["hour"])
        self.doms, self.months, self.dows = f["dom"], f["month"], f["dow"]
        self.day_and = (self.texts["dom"].startswith(("*", "?"))
                        or self.texts["dow"].startswith(("*", "?")))
        self.wildcard = any(self.texts[k].startswith("*")
                            for k in ("second", "minute", "hour"))
        self.sec_set, self.min_set, self.hour_set = (
            set(self.secs), set(self.mins), set(self.hours))

    def day_matches(self, d, reading=rules_match_arith):
        if d.month not in self.months:
            return False
        if self.years is not None and d.year not in self.years:
            return False
        dom_ok = d.day in self.doms
        dow_ok = (d.isoweekday() % 7) in self.dows
        if self.extended:
            dom_rule, dow_rule = reading(self.rules, d)
            dom_ok, dow_ok = dom_ok or dom_rule, dow_ok or dow_rule
        return (dom_ok and dow_ok) if self.day_and else (dom_ok or dow_ok)

    def wall_matches(self, w, reading=rules_match_arith):
        return (w.second in self.sec_set and w.minute in self.min_set
                and w.hour in self.hour_set
                and self.day_matches(w.date(), reading))


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
        fire = (cron.wall_matches(local, rules_match_listing)
                and (cron.wildcard or local.fold == 0))
        if off > prev_off and not cron.wildcard:
            # spring forward at t: walls [t+prev_off, t+off) were skipped
            w = (t + prev_off).replace(tzinfo=None)
            w_end = (t + off).replace(tzinfo=None)
            while w < w_end and not fire:
                fire = cron.wall_matches(w, rules_match_listing)
                w += step
        if fire:
            out.append(t)
        prev_off = off
        t += step
    return out


# --------------------------------------------------------------------------
# croniter
# --------------------------------------------------------------------------

def croniter_syntax(expr):
    """Our `5L` / `FRIL` (last Friday) is croniter's `L5`."""
    parts = expr.split()
    if len(parts) >= 5:
        dow = parts[4 if len(parts) == 5 else 5]
        items = []
        for item in dow.split(","):
            if item.upper().endswith("L") and len(item) > 1:
                w = parse_value(item[:-1], "dow") % 7
                item = "L%d" % w
            items.append(item)
        parts[4 if len(parts) == 5 else 5] = ",".join(items)
    return " ".join(parts)


def run_croniter(expr, tz, start_utc, six, n=N_RESULTS):
    """croniter's answers, or None when it rejects the expression."""
    try:
        it = croniter(croniter_syntax(expr), start_utc.astimezone(tz),
                      second_at_beginning=six)
    except Exception:                              # its own error types vary
        return None
    out = []
    try:
        for _ in range(n):
            out.append(it.get_next(datetime).astimezone(UTC))
    except CroniterBadDateError:
        pass
    except Exception:
        return None
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


def extension_cases():
    C = []

    def add(cat, expr, tz, start):
        C.append((cat, expr, tz, start))

    # June 2024 starts on a Saturday and ends on a Sunday; March 2024 ends on
    # a Sunday; February 2024 has 29 days, February 2025 28.
    for e in ["0 0 L * *", "0 0 L-3 * *", "30 12 L-1 2 *", "0 0 L,15 * *",
              "0 0 L-30 * *", "0 0 L-27 2 *", "0 6 l * *"]:
        for s in ["2024-01-15T00:00:00Z", "2025-02-27T12:00:00Z"]:
            add("ext-last-day", e, "UTC", s)
    add("ext-last-day", "0 0 L * *", "America/New_York", "2024-01-31T05:00:00Z")
    # Berlin springs forward on the last Sunday of March: 2024-03-31 01:00Z
    add("ext-last-day", "30 2 L * *", "Europe/Berlin", "2024-03-20T00:00:00Z")
    add("ext-last-day", "30 2 L 3,10 *", "Europe/Berlin", "2024-03-20T00:00:00Z")
    for e in ["0 0 LW * *", "0 9 LW * *", "0 0 LW,1 * *", "0 0 lw 6 *"]:
        for s in ["2024-01-01T00:00:00Z", "2024-05-31T12:00:00Z"]:
            add("ext-last-weekday", e, "UTC", s)
    add("ext-last-weekday", "0 9 LW * *", "America/New_York",
        "2024-02-01T00:00:00Z")
    for e in ["0 0 1W * *", "0 0 15W * *", "0 0 31W * *", "0 0 30W * *",
              "0 0 1W,15W * *", "0 12 16w * *", "0 0 29W 2 *"]:
        for s in ["2024-01-01T00:00:00Z", "2024-05-20T00:00:00Z"]:
            add("ext-nearest-weekday", e, "UTC", s)
    add("ext-nearest-weekday", "0 9 1W * *", "Australia/Sydney",
        "2024-05-20T00:00:00Z")
    for e in ["0 0 * * 5L", "0 0 * * FRIL", "0 0 * * 0L", "0 0 * * 7L",
              "0 0 ? * sunL", "0 18 * * MON#1,FRIL", "0 0 * 2 6L"]:
        for s in ["2024-01-01T00:00:00Z", "2025-03-20T00:00:00Z"]:
            add("ext-last-weekday-of-month", e, "UTC", s)
    add("ext-last-weekday-of-month", "30 2 * * SUNL", "Europe/Berlin",
        "2024-03-01T00:00:00Z")
    add("ext-last-weekday-of-month", "30 2 * * 0L", "Europe/Berlin",
        "2024-10-01T00:00:00Z")
    for e in ["0 0 * * 5#3", "0 0 * * FRI#3", "0 0 * * 1#5", "0 12 ? * tue#2",
              "0 0 * * 0#1,7#3", "0 0 * * THU#4", "0 0 * 2,3 MON#5"]:
        for s in ["2024-01-01T00:00:00Z", "2025-08-10T00:00:00Z"]:
            add("ext-nth-weekday", e, "UTC", s)
    add("ext-nth-weekday", "0 9 * * MON#1", "Australia/Sydney",
        "2024-03-25T00:00:00Z")
    add("ext-nth-weekday", "30 2 * * SUN#2", "America/New_York",
        "2024-03-01T00:00:00Z")
    # the day-of-month / day-of-week rule, unchanged
    for e in ["0 0 L * FRI", "0 0 15W * MON", "0 0 L * 5L", "0 0 1 * FRI#3",
              "0 0 */2 * 5L", "0 0 L * */2", "0 0 ? * 5#3", "0 0 LW * ?",
              "0 0 1-7 * 5L", "0 0 L-2 * MON#2", "0 0 * * 5#3,SAT",
              "0 0 13 * FRI#2", "0 0 */7 * 1#5"]:
        add("ext-day-rule", e, "UTC", "2024-01-01T00:00:00Z")
    # wrapping ranges
    for e, s in [("0 0 * * FRI-SUN", "2024-01-01T00:00:00Z"),
                 ("0 0 * * SAT-TUE/2", "2024-01-01T00:00:00Z"),
                 ("0 22-2 * * *", "2024-01-01T00:00:00Z"),
                 ("0 22-2/2 * * *", "2024-01-01T00:00:00Z"),
                 ("*/30 23-1 * * *", "2024-01-01T21:00:00Z"),
                 ("0 0 28-3 * *", "2024-02-01T00:00:00Z"),
                 ("0 0 1 NOV-FEB *", "2024-01-01T00:00:00Z"),
                 ("50-10/5 * * * *", "2024-01-01T00:00:00Z"),
                 ("0 0 * * 5-1", "2024-01-01T00:00:00Z"),
                 ("0 0 * * 7-2", "2024-01-01T00:00:00Z"),
                 ("0 0 * * fri-mon", "2024-01-01T00:00:00Z"),
                 ("0 0 30-2 * MON", "2024-01-01T00:00:00Z"),
                 ("55-5 59 23 * * *", "2024-01-01T00:00:00Z")]:
        add("ext-wrap", e, "UTC", s)
    add("ext-wrap", "30 23-3 * * *", "Europe/Berlin", "2024-03-30T12:00:00Z")
    add("ext-wrap", "30 23-3 * * *", "Europe/Berlin", "2024-10-26T12:00:00Z")
    add("ext-wrap", "0 22-2 * * *", "America/New_York", "2024-11-02T20:00:00Z")
    # the year field
    for e, s in [("0 0 12 29 2 * 2024/4", "2023-06-01T00:00:00Z"),
                 ("0 30 9 * * MON-FRI 2025", "2024-12-30T00:00:00Z"),
                 ("0 0 0 1 * * 2024-2099", "2030-05-05T00:00:00Z"),
                 ("*/20 * * * * * *", "2024-01-01T00:00:00Z"),
                 ("0 0 0 L 12 * 2024,2026/2", "2024-01-01T00:00:00Z"),
                 ("0 0 0 ? * FRI#3 2030/5", "2024-01-01T00:00:00Z")]:
        add("ext-year", e, "UTC", s)
    add("ext-year", "0 30 2 * * * 2025", "America/New_York",
        "2025-03-07T00:00:00Z")
    # years that run out: the list is the schedule's whole future
    for e, s in [("*/30 * * * * * 2024", "2024-12-31T23:58:00Z"),
                 ("0 0 0 1 1 * 2025-2027", "2024-06-01T00:00:00Z"),
                 ("0 0 0 ? 2 FRI#5 2024-2080", "2024-01-01T00:00:00Z"),
                 ("0 0 12 29 2 * 2024-2040/4", "2031-01-01T00:00:00Z"),
                 ("0 0 0 L 2 * 2030,2031", "2024-01-01T00:00:00Z")]:
        add("ext-year-end", e, "UTC", s)
    add("ext-year-end", "0 0 0 1 1 * 2026", "Europe/Berlin",
        "2025-12-31T22:00:00Z")
    # never fires
    for e in ["0 0 L-30 2 *", "0 0 31W 4,6,9,11 *", "0 0 0 29 2 * 2025-2027",
              "0 0 0 L-29 * * *", "0 0 L-30 4 *"]:
        add("never-fires", e, "UTC", "2024-01-01T00:00:00Z")
    # years already past: nothing left
    add("ext-year-end", "0 0 0 1 1 * 2020", "UTC", "2024-01-01T00:00:00Z")
    return C


def random_extended_field(rng, kind):
    """A day field with extension elements mixed into plain ones."""
    items = []
    for _ in range(rng.choice([1, 1, 2])):
        c = rng.random()
        if kind == "dom":
            if c < 0.2:
                items.append("L")
            elif c < 0.35:
                items.append("L-%d" % rng.randint(1, 30))
            elif c < 0.5:
                items.append(rng.choice(["LW", "lw"]))
            elif c < 0.75:
                items.append("%dW" % rng.randint(1, 31))
            else:
                items.append(random_field(rng, "dom").split(",")[0])
        else:
            w = rng.randint(0, 7)
            w_txt = DOWS[w % 7] if rng.random() < 0.4 else str(w)
            if c < 0.4:
                items.append("%sL" % w_txt)
            elif c < 0.8:
                items.append("%s#%d" % (w_txt, rng.randint(1, 5)))
            else:
                items.append(random_field(rng, "dow").split(",")[0])
    return ",".join(i for i in items if i != "*") or (
        "L" if kind == "dom" else "5L")


def random_wrap(rng, kind):
    lo, hi, names, base = FIELD_SPECS[kind]
    top = 6 if kind == "dow" else hi
    a = rng.randint(lo + 1, top)
    b = rng.randint(lo, a - 1)
    item = "%d-%d" % (a, b)
    if rng.random() < 0.3:
        item += "/%d" % rng.randint(2, 5)
    return item


def random_extended_cases(rng, count):
    C = []
    zones = ["UTC", "UTC"] + DST_ZONES
    t0 = datetime(2020, 1, 1, tzinfo=UTC).timestamp()
    t1 = datetime(2030, 1, 1, tzinfo=UTC).timestamp()
    while len(C) < count:
        seven = rng.random() < 0.2
        six = seven or rng.random() < 0.1
        fields = {k: random_field(rng, k)
                  for k in ["second", "minute", "hour", "dom", "month", "dow"]}
        r = rng.random()
        if r < 0.35:
            fields["dom"] = random_extended_field(rng, "dom")
        elif r < 0.7:
            fields["dow"] = random_extended_field(rng, "dow")
        elif r < 0.85:
            fields["dom"] = random_extended_field(rng, "dom")
            fields["dow"] = random_extended_field(rng, "dow")
        for k in ["minute", "hour", "dom", "month", "dow"]:
            if rng.random() < 0.12 and not any(
                    ch in fields[k].upper() for ch in "LW#"):
                fields[k] = random_wrap(rng, k)
        kinds = (["second"] if six else []) + ["minute", "hour", "dom",
                                                "month", "dow"]
        expr = " ".join(fields[k] for k in kinds)
        if seven:
            y = rng.randint(2020, 2040)
            expr += " " + rng.choice(["*", "%d-%d" % (y, y + rng.randint(5, 40)),
                                      "%d/%d" % (y, rng.randint(1, 4))])
        zone = rng.choice(zones)
        start = datetime.fromtimestamp(rng.randint(int(t0), int(t1)), UTC)
        C.append(("ext-random", expr, zone, fmt(start)))
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
UNEXPLAINED = []


def explain_extension(cron, tz, start, expected, got):
    """Notes for the known croniter departures on the extensions."""
    reasons = []
    day_rules = any(cron.rules[k] for k in cron.rules)
    if day_rules and not cron.day_and:
        reasons.append(
            "both day fields are restricted and one holds L, W or #: the rule "
            "ORs them as for plain values; croniter does not (it keeps the "
            "extension's days only, or finds none)")
    t = cron.texts
    if day_rules and cron.day_and and t["dom"] not in ("*", "?") \
            and t["dow"] not in ("*", "?"):
        reasons.append(
            "dom '%s' / dow '%s': one field starts with '*', so the rule ANDs "
            "them; croniter keeps the days of the L or # field only"
            % (t["dom"], t["dow"]))
    if has_wrap(cron, stepped_only=True):
        reasons.append(
            "croniter steps a wrapped range differently; the rule counts the "
            "step on across the wrap (SAT-TUE/2 = Sat, Mon)")
    if any(n >= 29 for n in cron.rules["nearest"]):
        reasons.append(
            "croniter moves nW in a month without day n to that month's "
            "last weekday; the rule gives such a month no nW day")
    return reasons


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
    if cron.extended:
        # the two readings of the day extensions agree on every day of the window
        last_day = (expected[-1] if expected else start).astimezone(tz).date()
        last_day = max(last_day, start.astimezone(tz).date() + timedelta(days=400))
        d = start.astimezone(tz).date()
        while d <= last_day:
            assert cron.day_matches(d) == cron.day_matches(
                d, rules_match_listing), (expr, d)
            d += timedelta(days=1)
    if cat == "ext-year-end":
        assert max(cron.years) < parse_utc(start_s).year + HORIZON_YEARS - 1
    got = run_croniter(expr, tz, start, cron.six)
    if got is None and not (cron.extended or has_wrap(cron)):
        raise AssertionError("croniter rejects a plain expression: %r" % expr)
    if got is None:
        return {"category": cat, "expr": expr, "tz": zone, "start": start_s,
                "expected": [fmt(u) for u in expected],
                "croniter_agrees": False,
                "note": "croniter %s rejects this expression (it has no %s)" % (
                    croniter_version(), missing_in_croniter(expr))}, len(expected)
    agrees = got == expected
    note = ""
    if not agrees:
        reasons = explain_disagreement(cron, tz, start, expected, got)
        if cron.extended or has_wrap(cron):
            if any(cron.rules[k] for k in cron.rules):
                # croniter's reading of L and # is not the plain-field one
                reasons = [r for r in reasons if not r.startswith("dom '")]
            reasons += explain_extension(cron, tz, start, expected, got)
        if not reasons:
            UNEXPLAINED.append((cat, expr, zone, start_s,
                                list(map(fmt, expected)), list(map(fmt, got))))
        note = "; ".join(reasons) + ". croniter gave: " + ", ".join(
            map(fmt, got))
    return {"category": cat, "expr": expr, "tz": zone, "start": start_s,
            "expected": [fmt(u) for u in expected],
            "croniter_agrees": agrees, "note": note}, len(expected)


def has_wrap(cron, stepped_only=False):
    """Whether some field holds a range whose start is after its end."""
    for kind, txt in cron.texts.items():
        for item in txt.split(","):
            if stepped_only and "/" not in item:
                continue
            base = item.split("/")[0]
            if "-" in base and not base.upper().startswith("L"):
                a, b = base.split("-")
                a, b = parse_value(a, kind), parse_value(b, kind)
                if kind == "dow" and a == 7 and b < 7:
                    a = 0
                if a > b:
                    return True
    return False


def croniter_version():
    version = getattr(croniter_pkg, "__version__", None)
    if version is None:
        from importlib.metadata import version as v
        version = v("croniter")
    return version


def missing_in_croniter(expr):
    """Which extension of `expr` croniter lacks, for the note."""
    up = expr.upper()
    for token, name in [("L-", "L-n"), ("LW", "LW"), ("W", "nW in this form"),
                        ("#", "n#k in this form"), ("L", "L in this form")]:
        if token in up:
            return name
    return "support for this form"


def main():
    rng = random.Random(SEED)
    specs = trap_cases() + dst_cases() + extension_cases()
    out = []
    for spec in specs:
        case, n = build_case(*spec)
        if n != N_RESULTS and case["category"] not in ("never-fires",
                                                       "ext-year-end"):
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
    # a stream of its own, so the plain random cases above stay as they were
    ext_rng = random.Random(SEED + 14)
    n_random = 0
    for spec in random_extended_cases(ext_rng, 400):
        if n_random >= 120:
            break
        case, n = build_case(*spec)
        if n != N_RESULTS:
            continue
        out.append(case)
        n_random += 1
    version = getattr(croniter_pkg, "__version__", None)
    if version is None:
        from importlib.metadata import version as v
        version = v("croniter")
    if UNEXPLAINED:
        for u in UNEXPLAINED:
            print("unexplained croniter disagreement: %r" % (u,), file=sys.stderr)
        raise SystemExit(1)
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
