#!/usr/bin/python3
# mxkit-test: long (started first)
"""lmtp-webhook-spool run: can one turn of its loop be made long enough
that the runner stops answering (liveness, new events, SIGTERM) without
a real hang, and does it stay exact (each id once, exact bytes)?
Not covered by lmtp_webhook_spool_attack_test.py / liveness_attack_test.py:

- A slow disk (strace delays every fsync/fdatasync of the runner's loop
  thread by 500 ms) while 32 attempts answered 500 finish together:
  /healthz stays 200, an event committed meanwhile is posted within 3 s,
  SIGTERM is acted on within timeout (5 s) + 3 s, nothing lost.
- A huge active/ (200,000 tiny events not due): /healthz stays 200, a
  new event is posted within 3 s, SIGTERM exits 0 within 3 s (and the
  CPU the idle runner burns is shown).
- One 200 MB event: posted with its exact bytes and a good signature,
  while small events to the same receiver keep flowing (each within 3 s)
  and /healthz stays 200.
- A SIGHUP every 20 ms during a flush of 10,000 events, then SIGTERM
  mid-flush, a restart and a second flush: every id posted exactly once
  in all, the ones not posted still in active/, /healthz never 503.
"""

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from mxdaemons import MinimalDaemon, http_get, kill_all, write  # noqa: E402
from mxstack import Stack  # noqa: E402
from mxtest import tap, wait_for  # noqa: E402
from mxwebhook import Receiver, make_secret, verify  # noqa: E402

SECRET = make_secret()


# ------------------------------------------------------------- helpers
def event_bytes(eid, url, body, attempts=0, created=None, next_attempt=0):
    head = {"id": eid, "url": url, "created": int(created or time.time()),
            "attempts": attempts, "next_attempt": next_attempt, "last_error": None,
            "body_length": len(body)}
    return json.dumps(head, separators=(",", ":")).encode() + b"\n" + body


def put_event(spool, eid, data, mtime=None):
    """Committed as the plugin does: written in tmp/, renamed into active/."""
    tmp = os.path.join(spool, "tmp", "put." + eid)
    with open(tmp, "wb") as f:
        f.write(data)
    if mtime:
        os.utime(tmp, (mtime, mtime))
    os.rename(tmp, os.path.join(spool, "active", eid))


def put_many(spool, prefix, count, url, not_due=True, body_of=None):
    """count events straight into active/ (the runner not started yet),
    next attempt in an hour when not_due. Their ids."""
    ids = []
    act = os.path.join(spool, "active")
    future = int(time.time()) + 3600
    for i in range(count):
        eid = "%s%06d" % (prefix, i)
        body = body_of(eid) if body_of else b'{"n":%d}' % i
        data = event_bytes(eid, url, body, attempts=1 if not_due else 0,
                           next_attempt=future if not_due else 0)
        path = os.path.join(act, eid)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, data)
        os.close(fd)
        if not_due:
            os.utime(path, (future, future))
        ids.append(eid)
    return ids


def healthz(port, timeout=3):
    try:
        got = http_get(port, "/healthz", timeout=timeout)
    except OSError as e:
        return None, str(e)
    if got is None or got[0] == "error":
        return None, repr(got)
    return int(got[0].split(" ")[1]), got[1]


def readyz(port):
    try:
        got = http_get(port, "/readyz", timeout=3)
    except OSError as e:
        return None, str(e)
    if got is None or got[0] == "error":
        return None, repr(got)
    return int(got[0].split(" ")[1]), got[1]


class Poller:
    """GET /healthz every 0.5 s: rows of (seconds, status, body)."""

    def __init__(self, port):
        self.port, self.t0, self.rows = port, time.monotonic(), []
        self.ev = threading.Event()
        self.th = threading.Thread(target=self._run, daemon=True)
        self.th.start()

    def _run(self):
        while not self.ev.is_set():
            s, b = healthz(self.port)
            self.rows.append((round(time.monotonic() - self.t0, 1), s, (b or "").strip()))
            self.ev.wait(0.5)

    def stop(self):
        self.ev.set()
        self.th.join(10)
        return self.rows

    def bad(self):
        return [r for r in self.rows if r[1] != 200]


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(") ", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def traced(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            return any(l.startswith("TracerPid:") and l.split()[1] != "0" for l in f)
    except OSError:
        return False


class Rx(Receiver):
    """A receiver answering by path: /gate waits for self.gate (then 500),
    everything else 200. Records (time, path, id, body) of each POST."""

    def __init__(self):
        self.gate = threading.Event()
        self.log = []
        self.log_lock = threading.Lock()
        super().__init__()
        self.responder = self._respond

    def start(self):
        super().start()
        self.server.handle_error = lambda *a: None     # resets by the runner: no noise

    def _respond(self, path, headers, body):
        with self.log_lock:
            self.log.append((time.time(), path, headers.get("webhook-id"), body, headers))
        if path == "/gate":
            self.gate.wait(40)
            return 500, 0, {}
        return 200, 0, {}

    def posts(self, path=None):
        with self.log_lock:
            return [e for e in self.log if path is None or e[1] == path]

    def url(self, path):
        return "http://127.0.0.1:%d%s" % (self.port, path)


def start_runner(st, d, extra):
    d.write(extra=extra)
    mark = len(st.read_log(d.name)) if d.name in st.logs else 0
    proc = st.start_daemon(d.name, d.argv(foreground=True))
    ok = wait_for(lambda: readyz(d.mport)[0] == 200 or proc.poll() is not None, timeout=90)
    if not ok or proc.poll() is not None:
        raise RuntimeError("%s not ready: %s %s" % (d.name, readyz(d.mport),
                                                    st.read_log(d.name)[mark:]))
    return proc


def term_and_time(proc, timeout=60):
    t = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        rc = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        rc = None
    return rc, time.monotonic() - t


def fresh_latency(rx, spool, eid, timeout=30):
    """Commit one due event to /good; seconds until it is posted (None)."""
    t = time.time()
    put_event(spool, eid, event_bytes(eid, rx.url("/good"), b'{"fresh":"%s"}' % eid.encode()))
    got = wait_for(lambda: [e for e in rx.posts("/good") if e[2] == eid], timeout=timeout,
                   interval=0.05)
    return (got[0][0] - t) if got else None


def show(rows, n=15):
    return "\n".join("%5.1fs %s %r" % r for r in rows[:n])


# ---------------------------------------------------------------- tests
def test_slow_disk(st, rx):
    d = MinimalDaemon(st, "spool", "slowdisk")
    proc = start_runner(st, d, "timeout = 5s\nconcurrency = 32\n")
    ids = ["burst%02d" % i for i in range(32)]
    for eid in ids:
        put_event(d.spool, eid, event_bytes(eid, rx.url("/gate"), b'{"b":"%s"}' % eid.encode()))
    tap.ok(wait_for(lambda: len(rx.posts("/gate")) == 32, timeout=10),
           "slow disk: 32 attempts in flight to a receiver holding its answer",
           diag="%d arrived" % len(rx.posts("/gate")))
    tracer = subprocess.Popen(["strace", "-qq", "-o", "/dev/null", "-p", str(proc.pid),
                               "-e", "trace=fsync,fdatasync",
                               "-e", "inject=fsync,fdatasync:delay_enter=500000"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: traced(proc.pid), timeout=5)
        time.sleep(0.5)
        poll = Poller(d.mport)
        mark = len(st.read_log(d.name))
        t0 = time.monotonic()
        rx.gate.set()                      # all 32 answer 500 at once
        time.sleep(1)
        lat = fresh_latency(rx, d.spool, "freshslow01", timeout=60)
        tap.ok(lat is not None and lat <= 6,
               "slow disk (fsync 500 ms): an event committed 1 s after 32 failures "
               "finished is posted within 6 s, not behind their 16 s of fsync (took %s s)"
               % ("%.1f" % lat if lat is not None else "never"))
        done = wait_for(lambda: st.read_log(d.name)[mark:].count("attempt 1 to") >= 32,
                        timeout=60)
        took = time.monotonic() - t0
        time.sleep(1)
        rows = poll.stop()
        tap.ok(done and not poll.bad(),
               "slow disk: /healthz 200 at every poll while 32 failed attempts are "
               "recorded (%.1f s, %d polls, %d not 200)" % (took, len(rows), len(poll.bad())),
               diag=show(poll.bad()))
        active = sorted(os.listdir(os.path.join(d.spool, "active")))
        tap.is_([a for a in active if a != "freshslow01"], ids,
                "slow disk: the 32 events are all kept in active/")
        tap.ok(wait_for(lambda: "freshslow01" not in os.listdir(os.path.join(d.spool, "active")),
                        timeout=15),
               "slow disk: the fresh event, delivered, is removed")
        fails = [l for l in st.read_log(d.name).splitlines()
                 if "freshslow01 attempt" in l and "failed" in l]
        tap.is_((len([e for e in rx.posts("/good") if e[2] == "freshslow01"]), fails[:3]),
                (1, []), "slow disk: the fresh event, answered 200 at once, is posted once and "
                "no attempt of it is logged as failed")
        # SIGTERM during such a turn: a flush posts the 32 again, held
        rx.gate.clear()
        before = len(rx.posts("/gate"))
        proc.send_signal(signal.SIGUSR1)
        wait_for(lambda: len(rx.posts("/gate")) - before == 32, timeout=15)
        rx.gate.set()
        time.sleep(0.5)
        # "SIGTERM and SIGINT stop it after the attempts in flight": an
        # attempt ends with its outcome recorded (two fsyncs of 500 ms
        # each here, one outcome a turn): the stop is seen at once
        # (/readyz stopping), nothing new starts, and it exits once the
        # 32 outcomes are durable, each event kept with its 2 attempts
        t = time.monotonic()
        posts_before = len(rx.posts())
        proc.send_signal(signal.SIGTERM)
        seen = wait_for(lambda: readyz(d.mport)[0] == 503
                        and "stopping" in str(readyz(d.mport)[1]), timeout=3, interval=0.1)
        seen_at = time.monotonic() - t
        try:
            rc = proc.wait(timeout=32 * 1.0 + 5 + 15)
        except subprocess.TimeoutExpired:
            rc = None
        t_term = time.monotonic() - t
        # each event's recorded attempts = the POSTs the receiver got for it
        wrong = []
        for i in ids:
            with open(os.path.join(d.spool, "active", i), "rb") as f:
                recorded = json.loads(f.readline())["attempts"]
            posted = len([e for e in rx.posts("/gate") if e[2] == i])
            if recorded != posted:
                wrong.append((i, recorded, posted))
        tap.ok(seen and rc == 0 and not wrong and len(rx.posts()) == posts_before,
               "slow disk: SIGTERM while 32 outcomes are recorded: seen at once (/readyz "
               "stopping after %.1f s), nothing new posted, exit %s after %.1f s with every "
               "attempt's outcome recorded (attempts = POSTs received, per id)"
               % (seen_at, rc, t_term), diag="id, recorded, posted: %r" % wrong[:5])
    finally:
        tracer.terminate()
        tracer.wait(10)
        rx.gate.set()
    kill_all(d.conf)
    shutil.rmtree(d.spool, ignore_errors=True)


def test_huge_spool(st, rx):
    d = MinimalDaemon(st, "spool", "huge")
    d.write()                                   # makes the spool's subdirectories
    t = time.monotonic()
    put_many(d.spool, "idle", 200000, rx.url("/never"))
    tap.diag("huge spool: 200,000 events written in %.1f s"
             % (time.monotonic() - t))
    t = time.monotonic()
    proc = start_runner(st, d, "timeout = 5s\n")
    tap.diag("huge spool: ready after %.1f s" % (time.monotonic() - t))
    poll = Poller(d.mport)
    c0, w0 = cpu_seconds(proc.pid), time.monotonic()
    time.sleep(3)
    lat = fresh_latency(rx, d.spool, "freshhuge01", timeout=30)
    tap.ok(lat is not None and lat <= 6,
           "huge spool (200,000 not due): a new event is posted within 6 s (took %s s)"
           % ("%.1f" % lat if lat is not None else "never"))
    time.sleep(max(0, 12 - (time.monotonic() - w0)))
    cpu = (cpu_seconds(proc.pid) - c0) / (time.monotonic() - w0)
    rows = poll.stop()
    tap.ok(len(rows) >= 15 and not poll.bad(),
           "huge spool: /healthz 200 at every poll for 12 s (%d polls)" % len(rows),
           diag=show(poll.bad()))
    tap.diag("huge spool: the idle runner used %.0f%% of a CPU over 12 s" % (cpu * 100))
    tap.is_(len([e for e in rx.posts("/never")]), 0, "huge spool: nothing not due was posted")
    rc, took = term_and_time(proc, timeout=60)
    tap.ok(rc == 0 and took <= 8, "huge spool: SIGTERM: exit %s after %.1f s (within 8 s)"
           % (rc, took))
    kill_all(d.conf)
    shutil.rmtree(d.spool, ignore_errors=True)
    return cpu


def test_giant_event(st, rx):
    d = MinimalDaemon(st, "spool", "giant")
    proc = start_runner(st, d, "timeout = 60s\n")
    body = b'{"type":"giant","pad":"' + (b"0123456789abcdef" * (200 * 1024 * 1024 // 16)) + b'"}'
    digest = hashlib.sha256(body).hexdigest()
    poll = Poller(d.mport)
    put_event(d.spool, "giant01", event_bytes("giant01", rx.url("/giant"), body))
    del body
    lats = []
    for i in range(12):
        time.sleep(0.5)
        lat = fresh_latency(rx, d.spool, "small%02d" % i, timeout=15)
        lats.append(None if lat is None else round(lat, 1))
    got = wait_for(lambda: rx.posts("/giant"), timeout=60)
    wait_for(lambda: "giant01" not in os.listdir(os.path.join(d.spool, "active")), timeout=10)
    rows = poll.stop()
    tap.ok(all(x is not None and x <= 6 for x in lats),
           "giant event (200 MB): 12 small events committed meanwhile each posted within 6 s",
           diag=repr(lats))
    tap.ok(not poll.bad(), "giant event: /healthz 200 at every poll (%d)" % len(rows),
           diag=show(poll.bad()))
    if got:
        _, _, wid, b, h = got[0]
        tap.ok(len(got) == 1 and wid == "giant01" and hashlib.sha256(b).hexdigest() == digest
               and verify(SECRET, h, b) is None,
               "giant event: posted once, its exact 200 MB, a good signature",
               diag="posts %d len %d sig %s" % (len(got), len(b), verify(SECRET, h, b)))
    else:
        tap.ok(False, "giant event: posted once, its exact 200 MB, a good signature")
    tap.ok("giant01" not in os.listdir(os.path.join(d.spool, "active")),
           "giant event: removed once delivered")
    rc, took = term_and_time(proc)
    tap.ok(rc == 0 and took <= 8, "giant event: SIGTERM: exit %s after %.1f s" % (rc, took))
    kill_all(d.conf)
    shutil.rmtree(d.spool, ignore_errors=True)


def test_hup_storm_flush(st, rx):
    d = MinimalDaemon(st, "spool", "storm")
    d.write()
    n = 10000
    ids = put_many(d.spool, "storm", n, rx.url("/storm"),
                   body_of=lambda eid: b'{"id":"%s"}' % eid.encode())
    proc = start_runner(st, d, "timeout = 5s\nconcurrency = 32\n")
    time.sleep(1.5)
    tap.is_(len(rx.posts("/storm")), 0, "hup storm: 10,000 not due: none posted")
    poll = Poller(d.mport)
    stop = threading.Event()
    sent = [0]

    def storm():
        while not stop.is_set() and proc.poll() is None:
            proc.send_signal(signal.SIGHUP)
            sent[0] += 1
            stop.wait(0.02)
    th = threading.Thread(target=storm, daemon=True)
    proc.send_signal(signal.SIGUSR1)
    th.start()
    half = wait_for(lambda: len(rx.posts("/storm")) >= n // 2, timeout=60, interval=0.05)
    rc, took = term_and_time(proc, timeout=30)
    stop.set()
    th.join(5)
    rows = poll.stop()
    bad = poll.bad()
    time.sleep(0.5)
    first = [e[2] for e in rx.posts("/storm")]
    tap.ok(half and rc == 0 and took <= 5 + 3,
           "hup storm: SIGTERM mid-flush (%d SIGHUPs, %d posted): exit %s after %.1f s"
           % (sent[0], len(first), rc, took))
    dup = sorted(i for i in set(first) if first.count(i) > 1) if len(first) < 20000 else ["?"]
    tap.is_(dup[:10], [], "hup storm: no id posted twice in the first run")
    left = set(os.listdir(os.path.join(d.spool, "active")))
    tap.is_((len(left & set(first)), len(left | set(first))), (0, n),
            "hup storm: each id either posted (and removed) or still in active/, none lost")
    proc = start_runner(st, d, "timeout = 5s\nconcurrency = 32\n")
    poll = Poller(d.mport)
    proc.send_signal(signal.SIGUSR1)
    drained = wait_for(lambda: not os.listdir(os.path.join(d.spool, "active")), timeout=60,
                       interval=0.2)
    time.sleep(1)
    rows += poll.stop()
    bad += poll.bad()
    got = [e[2] for e in rx.posts("/storm")]
    counts = {}
    for i in got:
        counts[i] = counts.get(i, 0) + 1
    tap.ok(drained and sorted(counts) == ids and set(counts.values()) == {1},
           "hup storm: after a restart and a flush every one of the 10,000 ids posted "
           "exactly once (%d POSTs, %d ids, max %d)"
           % (len(got), len(counts), max(counts.values()) if counts else 0))
    bad = [e[2] for e in rx.posts("/storm")
           if e[3] != b'{"id":"%s"}' % e[2].encode() or verify(SECRET, e[4], e[3]) is not None]
    tap.is_(bad[:5], [], "hup storm: every POST carries its own body and a good signature")
    tap.ok(not bad, "hup storm: /healthz 200 at every poll of both runners (%d)" % len(rows),
           diag=show(bad))
    tap.is_(os.listdir(os.path.join(d.spool, "dead")), [], "hup storm: nothing in dead/")
    rc, _ = term_and_time(proc)
    tap.is_(rc, 0, "hup storm: the second runner exits 0")
    kill_all(d.conf)
    shutil.rmtree(d.spool, ignore_errors=True)


def main(st):
    os.makedirs(st.path("run"), exist_ok=True)
    write(st, "secret", SECRET + "\n")
    rx = Rx()
    only = os.environ.get("ATTACK_ONLY")
    for test in (test_slow_disk, test_huge_spool, test_giant_event, test_hup_storm_flush):
        if only and test.__name__ not in only.split(","):
            continue
        t = time.monotonic()
        try:
            test(st, rx)
        except Exception as e:          # one broken test must not hide the others
            tap.ok(False, "%s: ran to its end" % test.__name__,
                   diag="%s: %s" % (type(e).__name__, e))
        tap.diag("%s: %.1f s" % (test.__name__, time.monotonic() - t))
    rx.stop()


with Stack("runloop") as st:
    tap.stack = st
    main(st)

sys.exit(tap.done())
