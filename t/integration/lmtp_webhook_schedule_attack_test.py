#!/usr/bin/python3
# mxkit-test: long (started first)
"""lmtp-webhook-spool run: its schedule, attacked from outside. No
Dovecot: a spool written by hand (as the plugin commits: written in
tmp/, its mtime set, renamed into active/), the runner, and a receiver
that records when each id arrived. Every check names the ids posted and
how many times.

- Due times: not before mtime/next_attempt (whichever is later), at most
  2 s late; mtime in 1970: at once; more than a day away (year 2100):
  at once, as runner_due() documents (a clock stepped back).
- Re-timed while queued: renamed over with a later time (not posted at
  the old one), with an earlier time (at once), touched later and back,
  touched later only; 40 events shuffled and shuffled again.
- No rename: a hard link, a slow cp (the runner may look at it half
  written), an in-place rewrite of the header (seen within 60 s).
- drop / rm before the time: never posted; retry: at once.
- 3,000 events due in the same second: each once, none early.
- 18,400 renames in a burst over 230 ids (inotify queue and the runner's
  4,096 pending names overflow): only each id's last version counts.
- Failed attempts: backoff respected; nothing twice; SIGTERM and
  kill -9 of the runner lose nothing and post nothing twice.
- Held events: not before their mtime, not while the test holds a
  flock() on the file past it, posted within ~5 s of the unlock.
- active/ replaced by a copy (the old one kept), and removed and made
  again, while events wait.
- An idle runner with 5,000 waiting: no spin (CPU ticks), few stat().

Failed on its first run, fixed since: 3,000 due at once went out at
"concurrency" (32) a second, a scan being made only once a second;
a slow cp into active/ was buried in dead/ half written; after active/
was replaced by a copy the watch stayed on the old directory, and a
touch or a rename over a waiting event went unseen. Found in review
after that: an event falling due while the secret file was gone was
dropped from the queue (and leaked), posted only at the next whole
listing a minute later (test_secret_gap).
"""

import fcntl
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from mxstack import Stack  # noqa: E402
from mxtest import build_path, run, tap, wait_for  # noqa: E402
from mxwebhook import Receiver, Runner, make_secret  # noqa: E402
from mxwebhook import (spool_names as ls, write_spool_conf as write_conf,  # noqa: E402
                       spool_body as body_for, body_tag as tag_of,
                       spool_header as header_of, spool_event_bytes)

SPOOL_TOOL = build_path("lmtp-webhook", "lmtp-webhook-spool")
SECRET = make_secret(os.urandom(32))
T_START = time.time()


# ----------------------------------------------------------------- helpers
def run_tool(st, *args, timeout=30):
    return run([SPOOL_TOOL, "-c", st.path("spool.conf")] + list(args), timeout=timeout)


def event_bytes(eid, url, body=None, **kw):
    """spool_event_bytes(), its body by default one that names eid."""
    return spool_event_bytes(eid, url, body_for(eid) if body is None else body, **kw)


def put_event(st, name, data, mtime=None, sub="active"):
    """Written in tmp/, its mtime set there, renamed into active/."""
    tmp = st.path("spool", "tmp", "put." + name)
    with open(tmp, "wb") as f:
        f.write(data)
    if mtime is not None:
        os.utime(tmp, (time.time(), mtime))
    os.rename(tmp, st.path("spool", sub, name))


def put_locked(st, name, data, mtime):
    """put_event() with an flock(LOCK_EX) taken in tmp/ and kept: the
    open file is returned."""
    tmp = st.path("spool", "tmp", "put." + name)
    with open(tmp, "wb") as f:
        f.write(data)
    fd = open(tmp, "rb")
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.utime(tmp, (time.time(), mtime))
    os.rename(tmp, st.path("spool", "active", name))
    return fd


def put(st, url, eid, due, **kw):
    """An event due at `due` (mtime and next_attempt both)."""
    put_event(st, eid, event_bytes(eid, url, next_attempt=int(due), **kw), mtime=due)


class Log:
    """What the receiver got: id -> list of arrival times; ids listed in
    fail are answered 500."""

    def __init__(self, rx):
        self.lock = threading.Lock()
        self.times = {}
        self.fail = set()
        self.busy = set()
        self.bad = []
        rx.responder = self.respond

    def respond(self, path, headers, body):
        tag = tag_of(body)
        with self.lock:
            self.times.setdefault(tag, []).append(time.time())
            if headers.get("webhook-id") != tag:
                self.bad.append((tag, headers.get("webhook-id")))
            if tag in self.fail:
                return (500, 0, {})
            if tag in self.busy:
                return (503, 0, {"Retry-After": "30"})
        return (200, 0, {})

    def n(self, eid):
        with self.lock:
            return len(self.times.get(eid, []))

    def at(self, eid):
        with self.lock:
            return list(self.times.get(eid, []))

    def counts(self, prefix):
        with self.lock:
            return {k: len(v) for k, v in self.times.items() if k and k.startswith(prefix)}


def sleep_until(t):
    time.sleep(max(0, t - time.time()))


def cpu_ticks(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])       # utime + stime


def stat_calls(pid, seconds):
    res = run(["timeout", "-s", "INT", str(seconds), "strace", "-f", "-c", "-p", str(pid)],
              timeout=seconds + 30)
    calls = 0
    for line in res.stderr.splitlines():
        f = line.split()
        if len(f) >= 5 and f[-1] in ("newfstatat", "statx", "stat", "lstat") \
                and f[3].isdigit():
            calls += int(f[3])
    return calls, res.stderr


def log_about(runner, ids):
    lines = runner.log().splitlines()
    return "\n".join(l for l in lines if any(i in l for i in ids))[-2000:]


def early(log, eids, t):
    """Arrivals of eids before t: "not posted before t" read from the
    receiver's stamps, so it holds however late the test looks (a count
    taken just before t failed when a loaded machine woke the test after
    t); a receiver can only stamp late."""
    return ["%s at %+.2f" % (e, x - t) for e in eids for x in log.at(e) if x < t]


def late(log, eid, due):
    a = log.at(eid)
    return "%s: due %.1f, arrivals %s" % (eid, due, ["%+.2f" % (x - due) for x in a])


# ------------------------------------------------------------------- tests
def test_due_times(st, log, url, runner):
    """Each at its time: mtime and next_attempt the same; one with its
    mtime past and next_attempt ahead; one the other way round; 1970;
    year 2100 (runner_due(): more than a day away = a clock stepped
    back, due now)."""
    t0 = int(time.time()) + 1
    plan = {"due_a3": (t0 + 3, t0 + 3), "due_a5": (t0 + 5, t0 + 5),
            "due_mpast_n4": (t0 - 100, t0 + 4), "due_m4_npast": (t0 + 4, t0 - 100)}
    for eid, (m, n) in plan.items():
        put_event(st, eid, event_bytes(eid, url, next_attempt=n), mtime=m)
    put_event(st, "due_1970", event_bytes("due_1970", url, next_attempt=1), mtime=1)
    y2100 = 4102444800
    put_event(st, "due_2100", event_bytes("due_2100", url, next_attempt=0), mtime=y2100)
    tap.ok(wait_for(lambda: log.n("due_1970"), timeout=2.5), "mtime 1970: posted at once")
    wait_for(lambda: log.n("due_2100"), timeout=2.5)
    tap.is_(log.n("due_2100"), 1, "mtime 2100 (more than a day away): posted at once, "
            "as runner_due() documents")
    for due in sorted(set(max(v) for v in plan.values())):
        group = sorted(e for e in plan if max(plan[e]) == due)
        sleep_until(due - 0.5)
        tap.is_(early(log, group, due - 0.05), [],
                "%s: not posted before %+d s" % (", ".join(group), due - t0))
        for eid in group:
            wait_for(lambda: log.n(eid), timeout=max(0.1, due + 5.5 - time.time()),
                     interval=0.05)
            a = log.at(eid)
            tap.ok(len(a) == 1 and due - 0.05 <= a[0] <= due + 5.0,
                   "%s: posted once, at its time, at most 5 s late" % eid,
                   diag=late(log, eid, due))
    time.sleep(0.5)
    tap.is_(log.counts("due_"), {k: 1 for k in list(plan) + ["due_1970", "due_2100"]},
            "due_*: each posted exactly once")


def test_retimed(st, log, url, runner):
    """Changes that come with a wake-up act at once."""
    t0 = int(time.time()) + 1
    put(st, url, "rt_later", t0 + 2)          # renamed over with a later time
    put(st, url, "rt_earlier", t0 + 3600)     # renamed over with an earlier time
    put(st, url, "rt_touch_back", t0 + 3)     # touched later, then back (to +5)
    put(st, url, "rt_touch_later", t0 + 2)    # touched later only
    put_event(st, "rt_touch_now", event_bytes("rt_touch_now", url, next_attempt=0),
              mtime=t0 + 3600)
    time.sleep(0.3)
    put(st, url, "rt_later", t0 + 40)
    put(st, url, "rt_earlier", t0 + 2)
    p = st.path("spool", "active", "rt_touch_back")
    os.utime(p, (t0, t0 + 40))
    os.utime(st.path("spool", "active", "rt_touch_later"), (t0, t0 + 40))
    time.sleep(0.3)
    # the header says t0+3 still: back to t0+5 for the mtime
    os.utime(p, (t0, t0 + 5))
    os.utime(st.path("spool", "active", "rt_touch_now"), None)
    tap.ok(wait_for(lambda: log.n("rt_touch_now"), timeout=2), "touched to now: posted at once")
    sleep_until(t0 + 1.5)
    tap.is_(early(log, ["rt_earlier"], t0 + 1.95), [],
            "renamed over with an earlier time: not before it")
    wait_for(lambda: log.n("rt_earlier"), timeout=max(0.1, t0 + 6.5 - time.time()),
             interval=0.05)
    a = log.at("rt_earlier")
    tap.ok(len(a) == 1 and a[0] <= t0 + 6.0, "renamed over with an earlier time: posted then",
           diag=late(log, "rt_earlier", t0 + 2))
    sleep_until(t0 + 4.6)
    tap.is_(early(log, ["rt_touch_back"], t0 + 4.95), [],
            "touched later and back to +5: not posted at +3")
    wait_for(lambda: log.n("rt_touch_back"), timeout=max(0.1, t0 + 10.5 - time.time()),
             interval=0.05)
    a = log.at("rt_touch_back")
    tap.ok(len(a) == 1 and t0 + 4.95 <= a[0] <= t0 + 10, "touched back: posted at +5",
           diag=late(log, "rt_touch_back", t0 + 5))
    sleep_until(t0 + 6)
    tap.is_((log.n("rt_later"), log.n("rt_touch_later")), (0, 0),
            "renamed over / touched with a later time: not posted at the old time")
    tap.is_(sorted(n for n in ls(st, "active") if n.startswith("rt_")),
            ["rt_later", "rt_touch_later"], "those two wait in active/")
    for n in ("rt_later", "rt_touch_later"):
        os.unlink(st.path("spool", "active", n))


def test_shuffled(st, log, url, runner):
    """40 events at +30, renamed over with shuffled times in +2..+7, then
    half of them renamed over again (again shuffled: some earlier, some
    later, some to +60): each posted once, at its last time."""
    t0 = int(time.time()) + 1
    ids = ["sh_%02d" % i for i in range(40)]
    for eid in ids:
        put(st, url, eid, t0 + 30)
    first = {eid: t0 + random.choice([3, 4, 5, 6, 7]) for eid in ids}
    for eid in random.sample(ids, len(ids)):
        put(st, url, eid, first[eid])
    final = dict(first)
    for eid in random.sample(ids, 20):
        final[eid] = t0 + random.choice([2, 3, 5, 8, 60])
    for eid in random.sample(ids, len(ids)):
        if final[eid] != first[eid]:
            put(st, url, eid, final[eid])
    sleep_until(t0 + 10.5)
    wrong = []
    for eid in ids:
        a = log.at(eid)
        due = final[eid]
        if due > t0 + 30:
            if a:
                wrong.append(late(log, eid, due))
        elif len(a) != 1 or not (due - 0.05 <= a[0] <= due + 2.0):
            wrong.append(late(log, eid, due))
    tap.is_(wrong, [], "40 shuffled twice: each posted once at its last time, those moved "
            "to +60 not at all", diag="first %s" % {k: v - t0 for k, v in first.items()})
    for eid in ids:
        if final[eid] > t0 + 30:
            os.unlink(st.path("spool", "active", eid))


def test_no_rename(st, log, url, runner):
    """A hard link, a slow cp (half written for 1.5 s) and a fast cp of
    a 2 MB event: found within about a second, each posted once, whole."""
    hand = st.path("spool", "tmp", "hand")
    with open(hand, "wb") as f:
        f.write(event_bytes("nr_link", url))
    os.link(hand, st.path("spool", "active", "nr_link"))
    os.unlink(hand)
    tap.ok(wait_for(lambda: log.n("nr_link"), timeout=2.5), "hard link: posted within ~1 s")
    big = body_for("nr_cpbig", 2 * 1024 * 1024)
    src = st.path("cp-src")
    with open(src, "wb") as f:
        f.write(event_bytes("nr_cpbig", url, body=big))
    subprocess.run(["cp", src, st.path("spool", "active", "nr_cpbig")], check=True)
    tap.ok(wait_for(lambda: log.n("nr_cpbig"), timeout=3), "cp of a 2 MB event: posted")
    data = event_bytes("nr_slowcp", url, body=body_for("nr_slowcp", 5000))
    with open(st.path("spool", "active", "nr_slowcp"), "wb") as f:
        f.write(data[:3000])
        f.flush()
        time.sleep(1.5)
        f.write(data[3000:])
    wait_for(lambda: log.n("nr_slowcp"), timeout=4)
    time.sleep(1)
    tap.is_((log.n("nr_link"), log.n("nr_cpbig"), log.n("nr_slowcp")), (1, 1, 1),
            "link, cp, slow cp: each posted once", diag=log_about(runner, ["nr_"]))
    tap.is_([n for n in ls(st, "dead") if n.startswith("nr_")], [],
            "none of them in dead/ (a cp caught half written is not a broken event)",
            diag="\n".join(l for l in runner.log().splitlines() if "nr_" in l))
    for n in ls(st, "dead"):
        if n.startswith("nr_"):
            os.unlink(st.path("spool", "dead", n))


def setup_inplace(st, url):
    """An event whose header says an hour away (mtime past), rewritten
    in place to due, no rename, no touch: checked at the end (60 s)."""
    eid = "ip_rewrite"
    later = int(time.time()) + 3600
    put_event(st, eid, event_bytes(eid, url, next_attempt=later), mtime=time.time() - 10)
    time.sleep(1.5)
    p = st.path("spool", "active", eid)
    with open(p, "r+b") as f:
        data = f.read()
        f.seek(0)
        f.write(data.replace(b'"next_attempt":%d' % later, b'"next_attempt":%d' % 1000000000))
    return time.time()


def test_drop_retry(st, log, url, runner):
    t0 = int(time.time()) + 1
    for eid in ("dr_drop", "dr_rm", "dr_retry", "dr_retry_far"):
        put(st, url, eid, t0 + 3 if eid != "dr_retry_far" else t0 + 3600)
    time.sleep(0.3)
    res = run_tool(st, "drop", "dr_drop")
    tap.is_(res.returncode, 0, "drop answers 0", diag=res.stdout + res.stderr)
    os.unlink(st.path("spool", "active", "dr_rm"))
    res = run_tool(st, "retry", "dr_retry_far")
    tap.ok(res.returncode == 0 and wait_for(lambda: log.n("dr_retry_far"), timeout=2.5),
           "retry of one an hour away: posted at once", diag=res.stdout + res.stderr)
    sleep_until(t0 + 5.5)
    tap.is_({k: log.n(k) for k in ("dr_drop", "dr_rm", "dr_retry", "dr_retry_far")},
            {"dr_drop": 0, "dr_rm": 0, "dr_retry": 1, "dr_retry_far": 1},
            "dropped / removed: never posted; the others once")


def test_same_second(st, log, url, runner):
    """3,000 events due in the same second: none early, each once."""
    t0 = int(time.time()) + 1
    due = t0 + 4
    ids = ["ss_%04d" % i for i in range(3000)]
    for eid in ids:
        put(st, url, eid, due)
    sleep_until(due - 0.4)
    tap.is_(sum(log.counts("ss_").values()), 0, "3,000 due at +4: none before")
    wait_for(lambda: len(log.counts("ss_")) == 3000, timeout=30, interval=0.2)
    time.sleep(1)
    c = log.counts("ss_")
    early = [k for k in ids if any(x < due - 0.05 for x in log.at(k))]
    missing = [k for k in ids if k not in c]
    tap.is_((len(c), sorted(k for k, v in c.items() if v != 1), early), (3000, [], []),
            "3,000 due in one second: every one posted within 30 s, exactly once, none early",
            diag="%d missing, e.g. %s\n%s" % (len(missing), missing[:8], log_about(
                runner, missing[:3])))
    left = [n for n in ls(st, "active") if n.startswith("ss_")]
    tap.is_(len(left), 0, "and removed", diag=str(left[:10]))
    arr = sorted(x for k in ids for x in log.at(k))
    per = {}
    for x in arr:
        per[int(x - due)] = per.get(int(x - due), 0) + 1
    tap.diag("posts per second after the due time: %s" % sorted(per.items()))
    for k in left:          # what is still waiting would load the next tests
        try:
            os.unlink(st.path("spool", "active", k))
        except FileNotFoundError:
            pass


def test_burst(st, log, url, runner):
    """18,400 renames in a burst over 230 ids: A's last version (100 ids)
    due long ago, B's (30: no more than the concurrency) at +24, C's
    (100) in an hour; every earlier version due at +20..+22. The inotify
    queue (16,384) or the runner's pending names (4,096) overflow: only
    each id's last version counts. Header next_attempt 0: the mtime
    rules. (The earlier versions were due at +8..+10: on a loaded
    machine the burst took 11 s, they fell due before it ended, and
    were rightly posted.)"""
    A = ["bu_a%03d" % i for i in range(100)]
    B = ["bu_b%03d" % i for i in range(30)]
    C = ["bu_c%03d" % i for i in range(100)]
    ids = A + B + C
    rounds = 80
    tmp = st.path("spool", "tmp")
    names = []
    for r in range(rounds):
        for eid in ids:
            p = os.path.join(tmp, "burst.%d.%s" % (r, eid))
            with open(p, "wb") as f:
                f.write(event_bytes(eid, url, next_attempt=0))
            names.append((p, eid, r == rounds - 1))
    tb = int(time.time()) + 1
    final = {eid: (tb - 100 if eid in A else tb + 24 if eid in B else tb + 3600) for eid in ids}
    for i, (p, eid, last) in enumerate(names):
        due = final[eid] if last else tb + 20 + (i % 3)
        os.utime(p, (due, due))
    start = time.time()
    active = st.path("spool", "active")
    for p, eid, last in names:
        os.rename(p, os.path.join(active, eid))
    took = time.time() - start
    tap.diag("burst of %d renames took %.2f s (started at %+.1f s)" % (len(names), took,
                                                                     start - tb))
    tap.ok(time.time() < tb + 19, "the burst ended before its earlier versions fell due",
           diag="it took %.1f s" % took)
    sleep_until(tb + 23.5)
    tap.is_(early(log, B, tb + 23.95) + sorted(log.counts("bu_c").items()), [],
            "no earlier version (+20..+22) posted; B (+24) not before its time")
    sleep_until(tb + 27)
    wait_for(lambda: len(log.counts("bu_b")) == len(B), timeout=6)
    got = {**log.counts("bu_a"), **log.counts("bu_b"), **log.counts("bu_c")}
    want = {k: 1 for k in A + B}
    tap.is_(sorted((k, got.get(k), want.get(k)) for k in set(got) | set(want)
                   if got.get(k) != want.get(k))[:20], [],
            "after the burst: A and B each posted exactly once, C not (id, got, want)")
    late_b = [late(log, k, tb + 24) for k in B if log.at(k) and log.at(k)[0] > tb + 29]
    tap.is_(late_b[:10], [], "B at +24, at most 5 s late (%d late)" % len(late_b))
    tap.is_(sorted(n for n in ls(st, "active") if n.startswith("bu_")), C, "C waits in active/")
    for eid in C:
        os.unlink(os.path.join(active, eid))
    tap.is_([n for n in ls(st, "tmp") if n.startswith("burst.")], [], "tmp/ empty of the burst")


def test_backoff(st, log, url, runner):
    """500 at the first attempt: rewritten with attempts 1 and a later
    mtime; not posted again before it; posted again at it (200)."""
    eid = "bo_fail"
    log.fail.add(eid)
    put(st, url, eid, time.time() - 1)
    tap.ok(wait_for(lambda: log.n(eid), timeout=3), "first attempt")
    h = wait_for(lambda: (header_of(st, eid) or {}).get("attempts") == 1 and header_of(st, eid),
                 timeout=3)
    mt = os.stat(st.path("spool", "active", eid)).st_mtime if h else 0
    tap.ok(h and h.get("last_error") and mt >= log.at(eid)[0] + 2
           and abs(h["next_attempt"] - mt) <= 1,
           "rewritten: attempts 1, last_error, mtime = next_attempt ahead",
           diag="%r mtime %+.1f" % (h, mt - (log.at(eid) or [0])[0]))
    log.fail.discard(eid)
    sleep_until(mt - 0.5)
    tap.is_(log.n(eid), 1, "not posted again before its backoff (%.1f s)" % (mt - log.at(eid)[0]))
    wait_for(lambda: log.n(eid) >= 2, timeout=3)
    time.sleep(1)
    a = log.at(eid)
    tap.ok(len(a) == 2 and a[1] <= mt + 2.0, "posted again at its backoff, once",
           diag=late(log, eid, mt))
    tap.ok(not os.path.exists(st.path("spool", "active", eid)), "and removed")


def test_restart(st, log, url, runner):
    """Events due around a SIGTERM and a kill -9: each once."""
    t0 = int(time.time()) + 1
    ids = ["rs_%02d" % i for i in range(30)]
    for i, eid in enumerate(ids):
        put(st, url, eid, t0 + 1 + i % 6)
    log.busy.add("rs_fail")
    put(st, url, "rs_fail", t0)
    wait_for(lambda: log.n("rs_fail"), timeout=3)
    wait_for(lambda: (header_of(st, "rs_fail") or {}).get("attempts") == 1, timeout=3)
    sleep_until(t0 + 2.2)
    runner.stop()
    time.sleep(0.5)
    runner.start()
    sleep_until(t0 + 4.2)
    killed = time.time()
    runner.proc.send_signal(signal.SIGKILL)
    runner.proc.wait()
    runner.proc = None
    time.sleep(1)
    runner.start()
    sleep_until(t0 + 9)
    # kill -9 lands among the POSTs of the events due at +4: one the
    # receiver got but whose success the runner had not yet recorded is
    # posted again, as at-least-once delivery must (the receiver drops it
    # by its webhook-id); a second post of any other is a defect. (CI, two
    # files at a time: rs_21 arrived twice, its first POST in flight.)
    counts = log.counts("rs_0") | log.counts("rs_1") | log.counts("rs_2")
    in_flight = {k for k in ids if log.at(k) and killed - 1.0 <= log.at(k)[0] <= killed}
    tap.is_({k: n for k, n in counts.items() if not (n == 1 or (n == 2 and k in in_flight))},
            {}, "across SIGTERM and kill -9: each of 30 posted once (twice only if its "
            "first POST was in flight at the kill: %s)" % sorted(in_flight))
    tap.is_(sorted(counts), sorted(ids), "and none of them lost")
    tap.is_(log.n("rs_fail"), 1, "the failed one (503, Retry-After: 30): not retried "
            "across SIGTERM and kill -9", diag=late(log, "rs_fail", t0) + " header %r"
            % header_of(st, "rs_fail"))
    log.busy.discard("rs_fail")
    run_tool(st, "drop", "rs_fail")
    early = [late(log, k, t0 + 1 + i % 6) for i, k in enumerate(ids)
             if log.at(k) and log.at(k)[0] < t0 + 1 + i % 6 - 0.05]
    tap.is_(early, [], "none of them early")


def test_held(st, log, url, runner):
    """Held events: (a) hold ends at +3, no lock; (b) hold ended (mtime
    past), the test holds flock(LOCK_EX) on it for 3 s; (c) hold ends at
    +2, locked until +5."""
    t0 = int(time.time()) + 1
    put_event(st, "hd_a", event_bytes("hd_a", url, held=True), mtime=t0 + 3)
    # locked before the rename, as a delivery does (flock follows the inode)
    fb = put_locked(st, "hd_b", event_bytes("hd_b", url, held=True), t0 - 30)
    fc = put_locked(st, "hd_c", event_bytes("hd_c", url, held=True), t0 + 2)
    sleep_until(t0 + 2.5)
    tap.is_(early(log, ["hd_a"], t0 + 2.95), [], "held until +3: not before")
    sleep_until(t0 + 3.5)
    tap.is_((log.n("hd_b"), log.n("hd_c")), (0, 0),
            "hold over but flock()ed: not posted")
    unlock_b = time.time()
    fcntl.flock(fb, fcntl.LOCK_UN)
    fb.close()
    wait_for(lambda: log.n("hd_a"), timeout=2)
    a = log.at("hd_a")
    tap.ok(len(a) == 1 and t0 + 2.95 <= a[0] <= t0 + 5, "held until +3: posted then",
           diag=late(log, "hd_a", t0 + 3))
    sleep_until(t0 + 5)
    tap.is_(log.n("hd_c"), 0, "hd_c flock()ed past its hold: not posted")
    unlock_c = time.time()
    fcntl.flock(fc, fcntl.LOCK_UN)
    fc.close()
    wait_for(lambda: log.n("hd_b") and log.n("hd_c"), timeout=7.5)
    b, c = log.at("hd_b"), log.at("hd_c")
    tap.ok(len(b) == 1 and b[0] <= unlock_b + 6.5,
           "hd_b: posted within ~5 s of the unlock",
           diag="%s after unlock" % ["%.1f" % (x - unlock_b) for x in b])
    tap.ok(len(c) == 1 and c[0] <= unlock_c + 6.5,
           "hd_c: posted within ~5 s of the unlock",
           diag="%s after unlock" % ["%.1f" % (x - unlock_c) for x in c])


def test_active_replaced(st, log, url, runner):
    """active/ replaced by a copy (cp -a; mv; the old one kept aside, as
    an operator's restore does), events waiting: afterwards a new event,
    a touch to now, a rename over with an earlier time must still act
    within about a second or two (the runner's watch is on the old
    directory: no wake-up; the listing must make up for it)."""
    t0 = int(time.time()) + 1
    put(st, url, "ar_over", t0 + 3600)
    put(st, url, "ar_wait3", t0 + 4)
    # its header due: only its mtime (a touch) holds it
    put_event(st, "ar_touch", event_bytes("ar_touch", url, next_attempt=0), mtime=t0 + 3600)
    time.sleep(1.2)
    active = st.path("spool", "active")
    subprocess.run(["cp", "-a", active, active + ".new"], check=True)
    os.rename(active, active + ".old")
    os.rename(active + ".new", active)
    time.sleep(1.5)
    mark = time.time()
    put(st, url, "ar_new", 0)
    os.utime(os.path.join(active, "ar_touch"), None)
    put(st, url, "ar_over", time.time() - 1)
    wait_for(lambda: log.n("ar_new") and log.n("ar_touch") and log.n("ar_over"), timeout=4)
    got = {k: ["%.1f" % (x - mark) for x in log.at(k)] for k in ("ar_new", "ar_touch", "ar_over")}
    tap.ok(log.n("ar_new") == 1 and log.at("ar_new")[0] <= mark + 2.5,
           "active/ replaced: a new event posted within ~2 s", diag=str(got))
    tap.ok(log.n("ar_over") == 1 and log.at("ar_over")[0] <= mark + 2.5,
           "active/ replaced: renamed over with an earlier time, posted within ~2 s",
           diag=str(got))
    tap.ok(log.n("ar_touch") == 1 and log.at("ar_touch")[0] <= mark + 2.5,
           "active/ replaced: touched to now, posted within ~2 s", diag=str(got))
    sleep_until(t0 + 6.5)
    tap.is_(log.n("ar_wait3"), 1, "the one waiting for +4 (copied): posted once")
    gone = time.time()
    shutil.rmtree(active + ".old")
    wait_for(lambda: log.n("ar_touch") and log.n("ar_over"), timeout=3)
    tap.diag("the old active/ removed (its watch gone) at %+.1f s: ar_over and ar_touch posted "
             "at %s" % (gone - mark, {k: ["%+.1f" % (x - mark) for x in log.at(k)]
                                      for k in ("ar_touch", "ar_over")}))
    # removed and made again: the waiting files moved out and back
    t1 = int(time.time()) + 1
    put(st, url, "ar_back3", t1 + 3)
    put_event(st, "ar_backtouch", event_bytes("ar_backtouch", url, next_attempt=0),
              mtime=t1 + 3600)
    time.sleep(0.5)
    aside = st.path("aside")
    os.makedirs(aside, exist_ok=True)
    for n in os.listdir(active):
        os.rename(os.path.join(active, n), os.path.join(aside, n))
    os.rmdir(active)
    time.sleep(1.5)
    if not os.path.isdir(active):
        os.mkdir(active)
    for n in os.listdir(aside):
        os.rename(os.path.join(aside, n), os.path.join(active, n))
    time.sleep(1.5)
    mark = time.time()
    os.utime(os.path.join(active, "ar_backtouch"), None)
    wait_for(lambda: log.n("ar_backtouch"), timeout=3)
    tap.ok(log.n("ar_backtouch") == 1 and log.at("ar_backtouch")[0] <= mark + 2.5,
           "active/ removed and made again: a touch to now posted within ~2 s",
           diag="%s\n%s" % (["%+.1f" % (x - mark) for x in log.at("ar_backtouch")],
                            log_about(runner, ["ar_", "active", "spool"])))
    sleep_until(t1 + 5.5)
    tap.is_(log.n("ar_back3"), 1, "active/ removed and made again: the waiting one posted once")
    a = log.at("ar_back3")
    tap.ok(a and a[0] >= t1 + 2.95, "not before its time", diag=late(log, "ar_back3", t1 + 3))


def test_idle(st, log, url, runner):
    """5,000 waiting an hour: no spin, few stat() calls."""
    later = int(time.time()) + 3600
    for i in range(5000):
        put(st, url, "id_%04d" % i, later)
    time.sleep(2)
    pid = runner.proc.pid
    c0, w0 = cpu_ticks(pid), time.time()
    time.sleep(4)
    used = (cpu_ticks(pid) - c0) / os.sysconf("SC_CLK_TCK")
    tap.ok(used < 0.4, "idle with 5,000 waiting: %.2f s CPU in %.1f s" % (used, time.time() - w0))
    calls, out = stat_calls(pid, 3)
    if calls >= 5000:
        # the listing every RUNNER_RELIST (60 s) looks at each event
        # again (it forgets what it knew): 1 in 20 such windows holds
        # it (CI of 7e2743d); the next cannot be within 3 s
        tap.diag("%d stat() calls: the minute's relisting fell in the window; "
                 "measured again" % calls)
        calls, out = stat_calls(pid, 3)
    tap.ok(calls < 300, "idle with 5,000 waiting: %d stat() calls in 3 s" % calls,
           diag=out[-1200:])
    tap.is_(log.counts("id_"), {}, "none of them posted")
    for i in range(5000):
        os.unlink(st.path("spool", "active", "id_%04d" % i))


def test_secret_gap(st, log, url, runner):
    """The secret file gone for a few seconds (a rotation done as rm +
    write) while an event falls due: nothing can be posted then; once the
    secret is back the event is posted, within a second or two, not at
    the next whole listing a minute later (the due entry was taken off
    the queue and dropped while no key was loaded)."""
    t0 = int(time.time()) + 1
    # gone first: a loaded machine's pause between the two steps must not
    # let the event fall due while the secret is still there
    os.rename(st.path("secret"), st.path("secret.away"))
    put(st, url, "sg_gap", t0 + 2)
    sleep_until(t0 + 4.5)
    tap.is_(log.n("sg_gap"), 0, "secret gone: not posted")
    os.rename(st.path("secret.away"), st.path("secret"))
    back = time.time()
    tap.ok(wait_for(lambda: log.n("sg_gap"), timeout=10),
           "secret back: posted within 10 s, not at the next listing a minute later", diag="%s" % ["%.1f" % (x - back)
                                                         for x in log.at("sg_gap")])
    time.sleep(1)
    tap.is_(log.n("sg_gap"), 1, "secret gap: posted once")


def check_inplace(st, log, rewritten):
    eid = "ip_rewrite"
    wait_for(lambda: log.n(eid), timeout=max(0.5, rewritten + 62 - time.time()))
    a = log.at(eid)
    tap.ok(len(a) == 1 and a[0] <= rewritten + 62,
           "rewritten in place (no rename, no touch): posted once within 60 s",
           diag="%s s after the rewrite" % ["%.1f" % (x - rewritten) for x in a])


# -------------------------------------------------------------------- main
with Stack("lmtp-webhook-schedule-attack") as st:
    tap.stack = st
    rx = Receiver()
    log = Log(rx)
    for sub in ("active", "tmp", "dead"):
        os.makedirs(st.path("spool", sub))
    with open(st.path("secret"), "w") as f:
        f.write(SECRET + "\n")
    os.chmod(st.path("secret"), 0o600)
    write_conf(st, concurrency=32)
    runner = Runner(st)
    runner.start()
    url = "http://127.0.0.1:%d/hook" % rx.port
    only = os.environ.get("ATTACK_ONLY", "")
    rewritten = setup_inplace(st, url) if not only or "inplace" in only else None
    for t in (test_due_times, test_retimed, test_shuffled, test_no_rename, test_drop_retry,
              test_held, test_backoff, test_restart, test_active_replaced, test_same_second,
              test_burst, test_idle, test_secret_gap):
        if not only or t.__name__ in only.split(","):
            t0 = time.time()
            t(st, log, url, runner)
            tap.diag("%s: %.1f s" % (t.__name__, time.time() - t0))
    if rewritten is not None:
        check_inplace(st, log, rewritten)
    tap.is_(log.bad, [], "every POST's webhook-id is its event's id")
    tap.ok(runner.proc is not None and runner.proc.poll() is None, "the runner lives")
    runner.stop()
    rx.stop()
    tap.diag("total %.1f s" % (time.time() - T_START))

sys.exit(tap.done())
