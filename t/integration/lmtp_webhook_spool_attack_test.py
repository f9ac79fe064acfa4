#!/usr/bin/python3
# mxkit-test: long (started first)
"""lmtp-webhook-spool run from the side of a hostile receiver and an
unlucky operator: what the other lmtp_webhook tests do not cover. Real
Dovecot LMTP with the plugin -> lmtp-webhook-spool run -> real HTTP
receivers (t/lib/mxwebhook.py's, and raw-socket ones written here).
Events are counted exactly: ids in, ids posted, ids in dead/.

- Held events (named by the plugin before the mail is saved): not
  posted, flushed or listed as due until released or their hold ends,
  also across a restart; a retry releases one; each then posted once.
- Not-events dropped in active/ (a FIFO, a symbolic link to a good event
  file elsewhere, a directory): the runner neither hangs on nor posts
  them; they go to dead/ as they are, and list still answers.
- A broken copy of a dead letter moved back into active/: to dead/
  beside the dead letter, never over it.
- An event file whose name is not its id (an operator's cp or mv): not
  posted (it would be posted without end, and its delivery would remove
  the other event of that id); dead/, and the real event posted once.
- An event file the daemon cannot read (another user's): kept, said
  once a minute rather than at every scan, posted once chowned.
- The operator runs retry/flush as root while the daemon runs as the
  spool's user: what root writes into the spool stays readable by the
  daemon (runner.lock included), every event is posted.
- An event (written by the spool's user) names a root-only secret file:
  root's runner does not read it; the global secret is still root's.
- The spool full when an event's last attempt fails: it goes to dead/
  (as it is) and is not posted again at every scan; dead/ unwritable:
  it stays in active/, not posted again at every scan either.
- USR1, HUP and TERM during a flush pass: every id exactly once in all.
- retry while the attempt is in flight (answered 500): one more POST at
  once, exactly two in all.
- active/ read-only (a chmod, a remount after an error) when a delivered
  event is to be removed: not posted again at every scan; removed once
  it can be.
- Hostile receivers: reset mid-body, HTTP/0.9, garbage, redirects (to
  file:// and to another port), accept and never read, read and never
  answer, a 1 GB error body; Retry-After absurd and in every HTTP-date
  form. Each: one POST, the event kept, attempts 1, the documented wait.
- An 8 MB event (mapped) cut by hand during its POST: the runner lives
  (it died of SIGBUS), the receiver gets no whole body, dead/ gets it.
- kill -9 of the runner again and again while 120 events are posted:
  every id posted, bodies and signatures intact, nothing left behind.
- Two runners on one spool, also after runner.lock is removed (an
  operator's rm *.lock let a second runner post beside the first), and
  a run started at once after it was removed under a flush pass or a
  daemon posting; 1500 events waiting at start; EMFILE
  (prlimit --nofile=64) with slow receivers.
"""

import email.utils
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from mxstack import Stack  # noqa: E402
from mxtest import build_path, run, tap, wait_for  # noqa: E402
from mxwebhook import (RawServer, Receiver, Runner, bill, lmtp_send, make_secret,  # noqa: E402
                       requests_for, verify)
from mxwebhook import (spool_names as ls, write_spool_conf as write_conf,  # noqa: E402
                       spool_event_bytes as event_bytes, spool_body as body_for,
                       body_tag as tag_of, spool_header as header_of)

SPOOL_TOOL = build_path("lmtp-webhook", "lmtp-webhook-spool")
PLUGIN_DIR = build_path("lmtp-webhook", ".libs")
SECRET = make_secret()
BILLS = "bills@acme.planapulse.app"
NOBODY = 65534


def run_tool(st, *args, timeout=30):
    return run([SPOOL_TOOL, "-c", st.path("spool.conf")] + list(args), timeout=timeout)


def put_event(st, name, data, sub="active", owner=NOBODY, mtime=None, mode=None):
    """An event file as the plugin commits one: written in tmp/ (its
    mtime set there, as spool_hold() does), renamed."""
    tmp = st.path("spool", "tmp", "put." + name)
    with open(tmp, "wb") as f:
        f.write(data)
    os.chown(tmp, owner, owner)
    if mode is not None:
        os.chmod(tmp, mode)
    if mtime is not None:
        os.utime(tmp, (time.time(), mtime))
    os.rename(tmp, st.path("spool", sub, name))


def posts(rx, tag):
    with rx.lock:
        return [(p, h, b) for p, h, b in rx.requests if tag_of(b) == tag]


def restart(runner, **conf):
    if runner.proc:
        runner.stop()
    write_conf(runner.st, **conf)
    runner.start()


# ------------------------------------------------------ a hostile receiver
class Hostile(RawServer):
    """Raw sockets: the request path names how it misbehaves."""

    def __init__(self, admin_port):
        self.admin = admin_port
        self.hits = {}
        self.lock = threading.Lock()
        super().__init__(64)

    def url(self, mode):
        return "http://127.0.0.1:%d/%s" % (self.port, mode)

    def read_head(self, conn):
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return None, b""
            data += chunk
        return data.split(b"\r\n\r\n", 1)

    def session(self, conn):
        try:
            self.session_(conn)
        except OSError:
            pass
        finally:
            conn.close()

    def session_(self, conn):
        if self.peek_mode(conn) == "noread":      # accept, never read
            self.count("noread")
            time.sleep(6)
            return
        head, body = self.read_head(conn)
        if head is None:
            return
        mode = head.split(b" ")[1].decode().strip("/")
        self.count(mode)
        length = int([v for k, _, v in (l.partition(b":") for l in head.split(b"\r\n"))
                      if k.lower() == b"content-length"][0])
        if mode == "reset":                        # RST halfway through the body
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
            return
        if mode == "early200":                     # 200 unread (a proxy's), then RST
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
            return
        if mode == "slowread":                     # the body waits in the sender
            time.sleep(2)
        while len(body) < length:
            chunk = conn.recv(65536)
            if not chunk:
                return
            body += chunk
        self.count(mode + "-whole")
        if mode == "slowread":
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            return
        if mode == "noanswer":
            time.sleep(6)
            return
        reply = {
            "http09": b"<html>hello</html>\n",
            "garbage": b"\x00\xff\xfe GARBAGE \r\n\r\n",
            "redirect-file": b"HTTP/1.1 302 Found\r\nLocation: file:///etc/passwd\r\n"
                             b"Content-Length: 0\r\n\r\n",
            "redirect-admin": b"HTTP/1.1 307 Temporary Redirect\r\nLocation: "
                              b"http://127.0.0.1:%d/admin\r\nContent-Length: 0\r\n\r\n"
                              % self.admin,
            "big500": b"HTTP/1.1 500 Oops\r\nContent-Length: 1000000000\r\n\r\n",
        }.get(mode)
        if mode.startswith("ra-"):
            value = RETRY_AFTER[mode][0]
            reply = (b"HTTP/1.1 429 Too Many\r\nRetry-After: %s\r\nContent-Length: 0\r\n\r\n"
                     % value.encode())
        conn.sendall(reply)
        if mode == "big500":
            for _ in range(16384):                  # up to 1 GB, until the client goes
                conn.sendall(b"e" * 65536)

    def peek_mode(self, conn):
        conn.settimeout(5)
        data = conn.recv(64, socket.MSG_PEEK)
        conn.settimeout(None)
        return "noread" if b" /noread " in data else None

    def count(self, mode):
        with self.lock:
            self.hits[mode] = self.hits.get(mode, 0) + 1


NOW = time.time()
# mode: (the header value, the delay wanted after attempt 1: (lo, hi) seconds)
SCHED = (4, 6.5)        # the schedule's first wait, 5 s +-20%
DAY = (86400 - 5, 86400 + 1)
RETRY_AFTER = {
    "ra-negative": ("-5", SCHED),
    "ra-zero": ("0", SCHED),
    "ra-2e63": ("9223372036854775808", DAY),
    "ra-huge": ("99999999999999999999999999", DAY),
    "ra-int63": ("9223372036854775807", DAY),
    "ra-secs": ("120", (119, 121)),
    "ra-imf": (email.utils.formatdate(NOW + 600, usegmt=True), (590, 601)),
    "ra-rfc850": (time.strftime("%A, %d-%b-%y %H:%M:%S GMT", time.gmtime(NOW + 900)),
                  (890, 901)),
    "ra-asctime": (time.strftime("%a %b %e %H:%M:%S %Y", time.gmtime(NOW + 1200)),
                   (1190, 1201)),
    "ra-past": ("Sun, 06 Nov 1994 08:49:37 GMT", SCHED),
    "ra-year9999": ("Fri, 31 Dec 9999 23:59:59 GMT", DAY),
    "ra-junk": ("soon, please", SCHED),
    # RFC 9110's delay-seconds is 1*DIGIT, white space around it the
    # field's; libcurl's reading obeyed the number each of these starts
    # with (120 s, 3600 s) instead of the schedule
    "ra-ows": (" 120\t", (119, 121)),
    "ra-zeros": ("000120", (119, 121)),
    "ra-suffix": ("120abc", SCHED),
    "ra-fraction": ("120.5", SCHED),
    "ra-plus": ("+120", SCHED),
    "ra-list": ("120, 60", SCHED),
    "ra-two": ("120 130", SCHED),
    "ra-exp": ("1e3", SCHED),
    "ra-hex": ("0x100", SCHED),
    "ra-param": ("3600;x", SCHED),
    "ra-hugejunk": ("99999999999999999999x", SCHED),
    "ra-imf-junk": (email.utils.formatdate(NOW + 600, usegmt=True) + "x", SCHED),
}
# early200: a 200 before the 3 MB event was read (it was counted
# delivered and the event removed unread: an attacker of 2026-12-03)
RETRYABLE = ["reset", "http09", "garbage", "redirect-file", "redirect-admin", "noread",
             "noanswer", "big500", "early200"]


# ---------------------------------------------------------------- the tests
def test_held(st, rx, runner):
    """spool_hold.c: an event its lmtp process named before saving the
    mail ("held", its mtime SPOOL_HOLD away) is neither posted, flushed
    nor listed as due before it is released (mtime set to now: the
    plugin, once the mail is saved) or its hold ends; then it is posted
    once, byte for byte. A runner restarted meanwhile holds it too. An
    operator's retry releases it. "held" not a boolean: not an event."""
    url = "http://127.0.0.1:%d/ws/acme/held" % rx.port
    now = time.time()
    ids = ["msg_held%d" % i for i in range(4)]
    for i, eid in enumerate(ids):
        put_event(st, eid, event_bytes(eid, url, body_for(eid), created=now, next_attempt=int(now),
                                       held=True), mtime=now + 900)
    put_event(st, "msg_heldfalse", event_bytes("msg_heldfalse", url, body_for("msg_heldfalse"),
                                               held=False))
    put_event(st, "msg_heldbad", event_bytes("msg_heldbad", url, body_for("msg_heldbad"),
                                             held="yes"))
    tap.ok(wait_for(lambda: len(posts(rx, "msg_heldfalse")) == 1, timeout=10),
           "held: false: an event like any, posted")
    tap.ok(wait_for(lambda: "msg_heldbad" in ls(st, "dead"), timeout=10),
           "held: \"yes\" (not a boolean): not an event, to dead/ as it is")
    time.sleep(2.5)                     # two scans of active/
    tap.is_([e for e in ids if posts(rx, e)], [], "held events: not posted over two scans")
    res = run_tool(st, "flush")
    time.sleep(2)
    tap.ok(res.returncode == 0 and not [e for e in ids if posts(rx, e)],
           "nor by a flush (\"every event, due or not\")", diag=res.stdout + res.stderr)
    res = run_tool(st, "list")
    listed = [ln.split()[:2] for ln in res.stdout.splitlines() if ln.startswith("msg_held")]
    tap.is_(sorted(listed), sorted([e, "held"] for e in ids), "list says held")
    res = run_tool(st, "show", ids[0])
    tap.ok("state: held" in res.stdout, "show says held", diag=res.stdout + res.stderr)
    os.utime(st.path("spool", "active", ids[0]), None)      # released
    tap.ok(wait_for(lambda: posts(rx, ids[0]), timeout=10), "released: posted")
    res = run_tool(st, "retry", ids[1])
    tap.ok(res.returncode == 0 and wait_for(lambda: posts(rx, ids[1]), timeout=10),
           "an operator's retry: posted", diag=res.stdout + res.stderr)
    restart(runner)
    time.sleep(2.5)
    tap.ok(not posts(rx, ids[2]) and not posts(rx, ids[3]),
           "a runner restarted: the others still held")
    os.utime(st.path("spool", "active", ids[2]), (now - 5, now - 5))   # the hold ended
    tap.ok(wait_for(lambda: posts(rx, ids[2]), timeout=10), "its hold ended: posted")
    os.utime(st.path("spool", "active", ids[3]), None)
    tap.ok(wait_for(lambda: ls(st, "active") == [], timeout=10), "the last released: active/ empty")
    tap.is_([(len(posts(rx, e)), [b for p, h, b in posts(rx, e)]) for e in ids],
            [(1, [body_for(e)]) for e in ids], "each posted once, byte for byte")
    os.unlink(st.path("spool", "dead", "msg_heldbad"))


def stat_calls(pid, seconds):
    """The stat-family system calls pid makes in seconds (strace -c)."""
    res = run(["timeout", "-s", "INT", str(seconds), "strace", "-f", "-c", "-p", str(pid)],
              timeout=seconds + 30)
    calls = 0
    for line in res.stderr.splitlines():
        f = line.split()        # % time, seconds, usecs/call, calls, [errors,] syscall
        if len(f) >= 5 and f[-1] in ("newfstatat", "statx", "stat", "lstat") and f[3].isdigit():
            calls += int(f[3])
    return calls, res.stderr


def test_idle_backlog(st, rx, runner):
    """20,000 events not due for an hour (a receiver down all morning):
    the idle runner stat()ed every one of them every second (50,000 took
    19% of a core). It now looks at what falls due: events due in 3, 5
    and 8 s are posted then (not before, at most 2 s late) while it makes
    almost no stat() calls; an event linked into active/ by hand (no
    rename: no wake-up), a touched one and one renamed over with an
    earlier time are each posted at once; a dropped one never is."""
    url = "http://127.0.0.1:%d/ws/acme/backlog" % rx.port
    later = int(time.time()) + 3600
    runner.stop()
    for i in range(20000):
        eid = "msg_backlog%05d" % i
        p = st.path("spool", "active", eid)
        with open(p, "wb") as f:
            f.write(event_bytes(eid, url, body_for(eid), next_attempt=later))
        os.chown(p, NOBODY, NOBODY)
        os.utime(p, (later, later))
    runner.start()
    t0 = int(time.time()) + 1
    timed = {"msg_timed3": t0 + 3, "msg_timed5": t0 + 5, "msg_timed8": t0 + 8,
             "msg_dropped": t0 + 6}
    for eid, due in timed.items():
        put_event(st, eid, event_bytes(eid, url, body_for(eid), next_attempt=due), mtime=due)
    put_event(st, "msg_touched", event_bytes("msg_touched", url, body_for("msg_touched")),
              mtime=later)
    run_tool(st, "drop", "msg_dropped")
    for eid in ("msg_timed3", "msg_timed5", "msg_timed8"):
        due = timed[eid]
        time.sleep(max(0, due - 0.6 - time.time()))
        tap.is_(len(posts(rx, eid)), 0, "%s: not posted before its time" % eid)
        tap.ok(wait_for(lambda: posts(rx, eid), timeout=2.6, interval=0.05),
               "%s: posted at its time, at most 2 s late" % eid,
               diag="%.1f s after" % (time.time() - due))
    calls, log = stat_calls(runner.proc.pid, 4)
    tap.ok(calls < 400, "idle with 20,000 waiting: %d stat() calls in 4 s (was 80,000)" % calls,
           diag=log[-1500:])
    # no wake-up at all: a hard link made in active/ (the directory changed)
    hand = st.path("spool", "tmp", "hand")
    with open(hand, "wb") as f:
        f.write(event_bytes("msg_linked", url, body_for("msg_linked")))
    os.chown(hand, NOBODY, NOBODY)
    os.link(hand, st.path("spool", "active", "msg_linked"))
    os.unlink(hand)
    tap.ok(wait_for(lambda: posts(rx, "msg_linked"), timeout=3), "linked by hand: posted")
    os.utime(st.path("spool", "active", "msg_touched"), None)
    tap.ok(wait_for(lambda: posts(rx, "msg_touched"), timeout=3), "touched: posted")
    soon = int(time.time()) + 2
    put_event(st, "msg_backlog00007", event_bytes("msg_backlog00007", url,
                                                  body_for("msg_backlog00007"),
                                                  next_attempt=soon), mtime=soon)
    tap.ok(wait_for(lambda: posts(rx, "msg_backlog00007"), timeout=4.5),
           "renamed over with an earlier time: posted then")
    time.sleep(max(0, timed["msg_dropped"] + 1.5 - time.time()))
    tap.is_(len(posts(rx, "msg_dropped")), 0, "dropped before its time: never posted")
    with rx.lock:
        tags = sorted(tag_of(b) for p, h, b in rx.requests if p.endswith("/ws/acme/backlog"))
    tap.is_(tags,
            sorted(["msg_timed3", "msg_timed5", "msg_timed8", "msg_linked", "msg_touched",
                    "msg_backlog00007"]),
            "posted: exactly those, once each; the backlog waits")
    for name in ls(st, "active"):
        if name.startswith("msg_backlog"):
            os.unlink(st.path("spool", "active", name))
    tap.is_(ls(st, "active"), [], "active/ empty again")


def test_sweep_steps(st, rx, runner):
    """30,000 names in tmp/ (an lmtp crash loop's leftovers, or a copy
    gone wrong): the start-up sweep of tmp/ looked at every one before
    the runner's first scan, and every ten minutes stalled its loop as
    long. It now takes SPOOL_SWEEP_STEP (2,000) names per turn: an event
    due at start is posted after at most two steps of the sweep, and the
    sweep still reaches every name. Counted in the runner's own syscalls
    (strace from its exec): the lstat() of tmp/ names before the POST."""
    url = "http://127.0.0.1:%d/ws/acme/sweep" % rx.port
    runner.stop()
    fillers = 30000
    for i in range(fillers):
        with open(st.path("spool", "tmp", "filler.1.%d" % i), "wb"):
            pass
    put_event(st, "msg_sweepdue", event_bytes("msg_sweepdue", url, body_for("msg_sweepdue")))
    out = st.path("log", "sweep-strace.txt")
    proc = subprocess.Popen(["strace", "-f", "-qq", "-o", out,
                             "-e", "trace=newfstatat,lstat,sendto,send,write,writev",
                             SPOOL_TOOL, "-c", st.path("spool.conf"), "-f", "run"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def trace():
        try:
            with open(out, errors="replace") as f:
                return f.read().splitlines()
        except OSError:
            return []

    def visited(lines):
        return sum(1 for ln in lines if "/spool/tmp/filler.1." in ln and "newfstatat" in ln)

    try:
        posted = wait_for(lambda: posts(rx, "msg_sweepdue"), timeout=30)
        tap.ok(posted, "30,000 names in tmp/: the event due at start is posted")
        whole = wait_for(lambda: visited(trace()) >= fillers, timeout=60)
        lines = trace()
        first = next((i for i, ln in enumerate(lines) if "POST /ws/acme/sweep" in ln), None)
        before = visited(lines[:first]) if first is not None else -1
        # the start-up step, then the loop's first turn steps again before
        # curl sends what the first scan started: two steps at most
        tap.ok(0 <= before <= 2 * 2000, "%d tmp/ names looked at before the POST (at most "
               "two steps of 2,000; was all 30,000)" % before, diag="POST line %r" % first)
        tap.ok(whole, "the sweep still reached every name (%d of %d)" % (visited(lines), fillers))
        tap.is_(len([n for n in ls(st, "tmp") if n.startswith("filler.")]), fillers,
                "and removed none of them (fresh, their writer alive)")
    finally:
        children = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True,
                                  text=True).stdout.split()
        for c in children:
            os.kill(int(c), signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        for n in ls(st, "tmp"):
            if n.startswith("filler."):
                os.unlink(st.path("spool", "tmp", n))
    tap.is_(len(posts(rx, "msg_sweepdue")), 1, "posted once")
    runner.start()


def test_not_events(st, rx, runner):
    """A FIFO, a symbolic link to a good event elsewhere and a directory
    dropped into active/: the runner must not hang on the FIFO, post what
    the link points to, or keep them; bills keep flowing."""
    url = "http://127.0.0.1:%d/ws/acme/linked" % rx.port
    outside = st.path("outside-event")
    with open(outside, "wb") as f:
        f.write(event_bytes("linkedevent01", url, body_for("linked")))
    os.symlink(outside, st.path("spool", "active", "linkedevent01"))
    os.mkfifo(st.path("spool", "active", "fifoevent01"))
    os.mkdir(st.path("spool", "active", "direvent01"))
    # the spool's user's (a directory root made there, the runner, acting
    # as that user, may not move: it needs to write the directory's "..")
    os.chown(st.path("spool", "active", "direvent01"), NOBODY, NOBODY)
    for s in ("after a fifo", "after a fifo 2"):
        tap.is_(lmtp_send(st, [BILLS], bill(BILLS, s))[0], {}, "LMTP 250 (%s)" % s)
    got = wait_for(lambda: all(requests_for(rx, s) for s in ("after a fifo", "after a fifo 2")),
                   timeout=8)
    tap.ok(got, "the runner still posts bills with a FIFO in active/",
           diag=runner.log()[-1000:])
    tap.ok(wait_for(lambda: ls(st, "active") == [], timeout=20),
           "active/ empty: FIFO, link and directory moved out", diag=str(ls(st, "active")))
    tap.is_(ls(st, "dead"), ["direvent01", "fifoevent01", "linkedevent01"],
            "all three in dead/ as they are")
    tap.ok(os.path.islink(st.path("spool", "dead", "linkedevent01")),
           "the link moved, not what it points to")
    tap.is_(posts(rx, "linked"), [], "what the link points to was not posted")
    res = run_tool(st, "list", timeout=10)
    tap.is_(res.returncode, 0, "list answers with them in dead/", diag=res.stderr)
    for name in ("direvent01", "fifoevent01", "linkedevent01"):
        p = st.path("spool", "dead", name)
        (shutil.rmtree if os.path.isdir(p) and not os.path.islink(p) else os.unlink)(p)


def test_zero_blocks(st, rx, runner):
    """A crash between the commit's rename and its sync (mail_fsync =
    optimized) can leave an event at its full length with a valid header
    and a page of zeros where a block was not written: the runner must
    not post it (the receiver would get altered bytes, signed), but move
    it to dead/ as it is; the event of the same id then (Postfix's retry)
    is posted whole."""
    url = "http://127.0.0.1:%d/ws/acme/holes" % rx.port
    body = body_for("holes", 20000)
    holed = body[:8192] + b"\0" * 4096 + body[12288:]
    assert len(holed) == len(body)
    put_event(st, "holes01", event_bytes("holes01", url, holed))
    tap.ok(wait_for(lambda: ls(st, "dead") == ["holes01"] and "holes01" not in ls(st, "active"),
                    timeout=20),
           "an event with a page of zeros goes to dead/", diag=runner.log()[-800:])
    with open(st.path("spool", "dead", "holes01"), "rb") as f:
        kept = f.read()
    head, _, rest = kept.partition(b"\n")
    tap.ok(rest == holed and json.loads(head)["id"] == "holes01",
           "kept in dead/ with its bytes as they were")
    tap.is_(posts(rx, "holes"), [], "not posted")
    tap.ok("holds NUL bytes" in runner.log(), "the log says why")
    put_event(st, "holes01", event_bytes("holes01", url, body))
    tap.ok(wait_for(lambda: len(posts(rx, "holes")) == 1, timeout=20)
           and posts(rx, "holes")[0][2] == body,
           "the same id written whole is posted, byte for byte")
    os.unlink(st.path("spool", "dead", "holes01"))


def test_not_event_over_dead(st, rx, runner):
    """A dead letter, dead/ID, and then a broken copy of that event moved
    back into active/ID (a backup cut short): the broken file must not
    replace the dead letter when it goes to dead/."""
    url = "http://127.0.0.1:%d/ws/acme/buried" % rx.port
    letter = event_bytes("buried01", url, body_for("buried"), attempts=8,
                         last_error="HTTP status 500")
    put_event(st, "buried01", letter, sub="dead")
    put_event(st, "buried01", letter[:150])
    tap.ok(wait_for(lambda: ls(st, "active") == [], timeout=20), "the broken file leaves active/")
    names = ls(st, "dead")
    with open(st.path("spool", "dead", "buried01"), "rb") as f:
        tap.ok(f.read() == letter, "dead/buried01 is still the dead letter, byte for byte")
    other = [n for n in names if n.startswith("buried01-notevent-")]
    tap.is_(len(other), 1, "the broken file is beside it", diag=str(names))
    with open(st.path("spool", "dead", other[0]) if other else "/dev/null", "rb") as f:
        tap.ok(f.read() == letter[:150], "as it was")
    tap.is_(posts(rx, "buried"), [], "nothing posted")
    for n in ["buried01"] + other:
        os.unlink(st.path("spool", "dead", n))


def test_foreign_owner(st, rx, runner):
    """An event file the daemon (run as nobody) cannot read: root's 0600
    copy. Kept (it is an event; chowned, it is posted), said once a
    minute, not at every one-second scan; posted once after a chown and
    a flush."""
    restart(runner, user="nobody")
    url = "http://127.0.0.1:%d/ws/acme/foreign" % rx.port
    mark = len(runner.log())
    put_event(st, "foreign01", event_bytes("foreign01", url, body_for("foreign")), owner=0,
              mode=0o600)
    time.sleep(3.5)
    lines = [l for l in runner.log()[mark:].splitlines() if "foreign01" in l]
    tap.is_(len(lines), 1, "one warning in 3.5 s, not one a second", diag="\n".join(lines))
    tap.ok(lines and "Permission denied" in lines[0] and "tried again in 60s" in lines[0],
           "it names the reason and the wait")
    tap.is_((ls(st, "active"), posts(rx, "foreign")), (["foreign01"], []),
            "kept in active/, not posted")
    os.chown(st.path("spool", "active", "foreign01"), NOBODY, NOBODY)
    res = run_tool(st, "flush")
    tap.ok(wait_for(lambda: ls(st, "active") == [], timeout=20) and res.returncode == 0,
           "chowned and flushed: delivered", diag=res.stdout + res.stderr)
    tap.is_(len(posts(rx, "foreign")), 1, "posted once")
    restart(runner)


def test_dead_unwritable(st, rx, runner):
    """dead/ read-only for the daemon (run as nobody) when an event's
    last attempt fails: it cannot go to dead/ at all. It must stay in
    active/ (not lost) and not be posted again at every scan."""
    restart(runner, user="nobody", dead_letter_after="60s")
    dead = st.path("spool", "dead")
    rx.responder_saved = rx.responder
    rx.responder = lambda p, h, b: (500, 0, {})
    try:
        os.chmod(dead, 0o500)
        url = "http://127.0.0.1:%d/ws/acme/nodead" % rx.port
        put_event(st, "nodead01", event_bytes("nodead01", url, body_for("nodead"), attempts=4,
                                              created=time.time() - 50))
        tap.ok(wait_for(lambda: posts(rx, "nodead"), timeout=20), "its last attempt")
        time.sleep(3.5)
        tap.is_(len(posts(rx, "nodead")), 1, "posted once, not at every scan",
                diag=runner.log()[-1000:])
        tap.is_((ls(st, "active"), ls(st, "dead")), (["nodead01"], []),
                "kept in active/, nothing lost")
        tap.ok("nodead01: cannot move to dead/" in runner.log(), "the log says why")
    finally:
        os.chmod(dead, 0o700)
        rx.responder = rx.responder_saved
        restart(runner)
        run_tool(st, "drop", "nodead01")


def test_retry_in_flight(st, rx, runner):
    """retry of an event whose attempt hangs in the receiver, which then
    answers 500: the retry still happens (one more POST at once, 200),
    and no more: exactly two POSTs, one id, the same bytes. The 500's
    outcome is not written over the retried file. And a retry is not a
    flush: an event waiting an hour beside it is not posted (a retry
    used to flush every event, undoing every backoff)."""
    rx.responder_saved = rx.responder
    plan = [(500, 1.5, {}), (200, 0, {})]
    rx.responder = lambda p, h, b: plan.pop(0) if tag_of(b) == "racing" and plan \
        else (200, 0, {})
    try:
        url = "http://127.0.0.1:%d/ws/acme/racing" % rx.port
        body = body_for("racing")
        waiting = int(time.time()) + 3600
        put_event(st, "waiting01", event_bytes("waiting01", url, body_for("waiting"),
                                               attempts=2, next_attempt=waiting),
                  mtime=waiting)
        mark = len(runner.log())
        put_event(st, "racing01", event_bytes("racing01", url, body))
        tap.ok(wait_for(lambda: posts(rx, "racing"), timeout=20), "the attempt is under way")
        res = run_tool(st, "retry", "racing01")
        tap.is_(res.returncode, 0, "retry while it is in flight", diag=res.stderr)
        tap.ok(wait_for(lambda: ls(st, "active") == ["waiting01"], timeout=6),
               "the retry is made after the 500, and delivered", diag=runner.log()[-800:])
        time.sleep(1)
        got = posts(rx, "racing")
        tap.is_([(h["webhook-id"], b) for _, h, b in got], [("racing01", body)] * 2,
                "exactly two POSTs, one id, the same bytes")
        tap.ok("replaced meanwhile" in runner.log()[mark:],
               "the 500's outcome kept off the retried file", diag=runner.log()[mark:][-800:])
        tap.is_((posts(rx, "waiting"), ls(st, "active")), ([], ["waiting01"]),
                "the retry is no flush: the event waiting an hour still waits")
        os.unlink(st.path("spool", "active", "waiting01"))
    finally:
        rx.responder = rx.responder_saved


def test_signals_during_flush(st, rx, runner):
    """30 events not due for an hour; USR1 starts a flush pass, a HUP
    (concurrency 4 -> 2) and then a TERM land in the middle of it. The
    TERM ends the pass after the POSTs in flight; a restart and a flush
    post the rest: every id exactly once in all, none left."""
    restart(runner, concurrency="4")
    rx.responder_saved = rx.responder
    rx.responder = lambda p, h, b: (200, 0.25 if tag_of(b) == "sig" else 0, {})
    url = "http://127.0.0.1:%d/ws/acme/sig" % rx.port
    ids = ["sigflush%02d" % i for i in range(30)]
    later = int(time.time()) + 3600
    for i in ids:
        put_event(st, i, event_bytes(i, url, body_for("sig"), attempts=1, next_attempt=later,
                                     last_error="HTTP status 500"))
        os.utime(st.path("spool", "active", i), (later, later))
    time.sleep(1.5)
    tap.is_(len(posts(rx, "sig")), 0, "not due: nothing posted")
    os.kill(runner.proc.pid, signal.SIGUSR1)
    time.sleep(0.6)
    write_conf(st, concurrency="2")
    os.kill(runner.proc.pid, signal.SIGHUP)
    time.sleep(0.6)
    runner.stop()
    first = len(posts(rx, "sig"))
    tap.ok(0 < first < 30 and len(ls(st, "active")) == 30 - first,
           "TERM mid-flush: %d posted, the other %d wait" % (first, 30 - first))
    runner.start()
    os.kill(runner.proc.pid, signal.SIGUSR1)
    tap.ok(wait_for(lambda: ls(st, "active") == [], timeout=15), "a new flush posts the rest")
    got = sorted(h["webhook-id"] for _, h, _ in posts(rx, "sig"))
    tap.is_(got, ids, "every id exactly once in all")
    rx.responder = rx.responder_saved
    restart(runner)


def test_name_not_id(st, rx, runner):
    """An event copied under another name (cp active/A active/B, or a mv
    of a backup): the copy's header names A. Posting it would remove
    active/A on success and leave B to be posted again at every scan."""
    runner.stop()
    url = "http://127.0.0.1:%d/ws/acme/copied" % rx.port
    data = event_bytes("copiedevent-a", url, body_for("copied"))
    put_event(st, "copiedevent-a", data)
    put_event(st, "copiedevent-b", data)
    runner.start()
    tap.ok(wait_for(lambda: "copiedevent-a" not in ls(st, "active"), timeout=20),
           "the real event is delivered")
    time.sleep(3)
    tap.is_(len(posts(rx, "copied")), 1, "posted exactly once in 3 s (not at every scan)",
            diag=runner.log()[-1200:])
    # a file that is no event waits until unchanged for 5 s (a cp may be
    # under way), then goes to dead/
    wait_for(lambda: ls(st, "dead") == ["copiedevent-b"], timeout=20)
    tap.is_(ls(st, "active"), [], "nothing left in active/")
    tap.is_(ls(st, "dead"), ["copiedevent-b"], "the misnamed copy is in dead/, as it is")
    tap.ok("copiedevent-b" in runner.log() and "copiedevent-a" in runner.log(),
           "and the log names both")
    for sub in ("active", "dead"):
        if os.path.exists(st.path("spool", sub, "copiedevent-b")):
            os.unlink(st.path("spool", sub, "copiedevent-b"))


def test_misnamed(st, rx, runner):
    """Files in active/ under names no event has (an operator's backup of
    an event, a .eml dropped in, 129 characters, a dot file): never
    posted, listed or moved, nothing said. Each must reach dead/ as it
    is, under a name made from its own, with one error naming it."""
    url = "http://127.0.0.1:%d/ws/acme/misnamed" % rx.port
    names = ["msg_abc.bak", "bill.eml", "m" * 129, ".hidden"]
    data = {n: event_bytes("misnamedev%02d" % i, url, body_for("misnamed"))
            for i, n in enumerate(names)}
    for n in names:
        put_event(st, n, data[n])
    want = ["notevent-bill_eml", "notevent-" + "m" * 80, "notevent-msg_abc_bak",
            "notevent-_hidden"]
    tap.ok(wait_for(lambda: sorted(ls(st, "dead")) == sorted(want), timeout=20),
           "every misnamed file moved to dead/ under a name made from its own",
           diag="active %r dead %r" % (os.listdir(st.path("spool", "active")), ls(st, "dead")))
    same = all(open(st.path("spool", "dead", w), "rb").read() == data[n]
               for n, w in zip(["bill.eml", "m" * 129, "msg_abc.bak", ".hidden"], want)
               if os.path.exists(st.path("spool", "dead", w)))
    tap.ok(same, "each as it was, byte for byte")
    tap.is_(os.listdir(st.path("spool", "active")), [], "none left in active/")
    tap.ok(all(("active/%s: not an event's name" % n) in runner.log() for n in names),
           "the log names each", diag=runner.log()[-1500:])
    tap.is_(posts(rx, "misnamed"), [], "none posted")
    for w in want:
        if os.path.exists(st.path("spool", "dead", w)):
            os.unlink(st.path("spool", "dead", w))


def test_root_operator(st, rx, runner):
    """The daemon runs as the spool's user (nobody here, vmail in the
    systemd unit); the operator types retry and flush as root with no
    daemon running. What root writes into the spool must stay readable by
    the daemon: runner.lock, and events flush rewrote after a failure."""
    runner.stop()
    lock = st.path("spool", "runner.lock")
    if os.path.exists(lock):
        os.unlink(lock)
    url = "http://127.0.0.1:%d/ws/acme/rooted" % rx.port
    put_event(st, "rootretry01", event_bytes("rootretry01", url, body_for("rootretry"),
                                             attempts=3, last_error="HTTP status 500"),
              sub="dead")
    res = run_tool(st, "retry", "rootretry01")
    tap.is_(res.returncode, 0, "retry as root, no daemon running", diag=res.stderr)
    rx.responder_saved, rx.responder = rx.responder, None
    rx.default = 500
    put_event(st, "rootflush01", event_bytes("rootflush01", url, body_for("rootflush")))
    before = len(posts(rx, "rootflush"))
    res = run_tool(st, "flush")
    tap.ok(res.returncode == 0 and "failed" in res.stdout, "flush as root makes the pass",
           diag=res.stdout + res.stderr)
    rx.responder = rx.responder_saved
    rx.default = 200
    tap.is_((len(posts(rx, "rootretry")), len(posts(rx, "rootflush")) - before), (1, 1),
            "flush posted each once (answer 500)")
    owners = {n: os.stat(st.path("spool", "active", n)).st_uid for n in ls(st, "active")}
    owners["runner.lock"] = os.stat(lock).st_uid
    tap.is_(owners, {"rootflush01": NOBODY, "rootretry01": NOBODY, "runner.lock": NOBODY},
            "every file root wrote is the spool's user's")
    restart(runner, user="nobody")
    os.kill(runner.proc.pid, signal.SIGUSR1)
    tap.ok(wait_for(lambda: ls(st, "active") == [], timeout=8),
           "the daemon as nobody delivers both", diag=runner.log()[-1000:])
    tap.is_((len(posts(rx, "rootretry")), len(posts(rx, "rootflush")) - before), (2, 2),
            "each posted once more")
    test_root_lock_left(st, runner, lock)
    restart(runner)


def as_spool_user(*argv):
    """What the spool's user (nobody here, vmail in production) can do
    in its own directory, and does, if it is hostile."""
    subprocess.run(["setpriv", "--reuid", str(NOBODY), "--regid", str(NOBODY),
                    "--clear-groups"] + list(argv), check=True)


def test_root_through_links(st, rx, runner):
    """The spool's user plants symbolic links where root's tool writes:
    runner.lock to a root-only file (it stands for /etc/shadow), then
    dead/ to a root-only directory (for /etc) with a file that is no
    event in active/ (flush moves those to dead/). Root's flush and run
    act in the spool as its owner: the file keeps owner, mode and
    bytes; nothing lands in the directory."""
    runner.stop()
    victim = st.path("victim")
    secret = b"root:$6$precious-hash:19000:0:99999:7:::\n"
    lock = st.path("spool", "runner.lock")
    for how in ("flush", "run"):
        with open(victim, "wb") as f:
            f.write(secret)
        os.chown(victim, 0, 0)
        os.chmod(victim, 0o600)
        if os.path.lexists(lock):
            os.unlink(lock)
        as_spool_user("ln", "-s", victim, lock)
        if how == "flush":
            res = run_tool(st, "flush")
        else:
            write_conf(st, user="nobody")
            try:
                res = run([SPOOL_TOOL, "-c", st.path("spool.conf"), "-f", "run"], timeout=5)
            except subprocess.TimeoutExpired as e:
                res = subprocess.CompletedProcess(e.cmd, 0, b"", e.stderr or b"")
            write_conf(st)
        vs = os.stat(victim)
        tap.ok((vs.st_uid, vs.st_mode & 0o777, open(victim, "rb").read()) == (0, 0o600, secret),
               "%s as root, runner.lock a link to a root-only file: the file untouched" % how,
               diag="uid %d mode %o %r; %r" % (vs.st_uid, vs.st_mode & 0o777,
                                              open(victim, "rb").read()[:60], res.stderr[-300:]))
        tap.ok(res.returncode == 1 and "runner.lock" in str(res.stderr),
               "%s refuses, naming runner.lock" % how, diag=str(res.stderr)[-300:])
    os.unlink(lock)
    target = st.path("rootonly")
    os.makedirs(target, exist_ok=True)
    os.chmod(target, 0o700)
    dead = st.path("spool", "dead")
    os.rename(dead, dead + ".real")
    try:
        as_spool_user("ln", "-s", target, dead)
        as_spool_user("sh", "-c", "printf 'LD_PRELOAD=/tmp/evil.so\\n' > %s"
                      % st.path("spool", "active", "environment"))
        old = time.time() - 60                  # past the 5 s a copy may take
        os.utime(st.path("spool", "active", "environment"), (old, old))
        res = run_tool(st, "flush")
        tap.is_(os.listdir(target), [], "flush as root, dead/ a link to a root-only directory: "
                "nothing written there", diag=res.stdout + res.stderr)
        tap.ok(os.path.exists(st.path("spool", "active", "environment")),
               "the file stays in active/ (its owner could not move it either)")
    finally:
        os.unlink(dead)
        os.rename(dead + ".real", dead)
        for junk in (st.path("spool", "active", "environment"), lock):
            if os.path.lexists(junk):
                os.unlink(junk)
    runner.start()


def test_root_route_secret(st, rx, runner):
    """The spool's user writes the events, and an event names its route's
    secret files: root's runner must not open a path it names as root. A
    root-only file holding a valid secret (another workspace's) is not
    read: nothing is posted, the error names the file. The same file
    readable by the spool's group: the event is posted, signed with it,
    once. The global secret (named by the runner's own configuration)
    is still read as root: a root-only copy signs the next event."""
    other = make_secret(b"another-workspace-secret-32bytes")
    os.chmod(st.path(), 0o755)              # the spool's user may look in
    path = st.path("other.secret")
    with open(path, "w") as f:
        f.write(other + "\n")
    os.chown(path, 0, 0)
    os.chmod(path, 0o600)
    tag = "route-secret-%d" % random.randrange(1 << 30)
    eid = "msg_" + "%032x" % random.randrange(1 << 120)
    url = "http://127.0.0.1:%d/ws/acme/api/bills/inbound" % rx.port
    head = json.loads(event_bytes(eid, url, b"").split(b"\n", 1)[0])
    head["secret_files"] = [path]
    body = body_for(tag)
    head["body_length"] = len(body)
    mark = len(runner.log())
    put_event(st, eid, json.dumps(head, separators=(",", ":")).encode() + b"\n" + body)
    wait_for(lambda: "other.secret" in runner.log()[mark:], timeout=10)
    time.sleep(1)
    tap.is_(len(posts(rx, tag)), 0, "a root runner, an event naming a root-only secret file: "
            "not posted", diag=runner.log()[mark:][-600:])
    tap.ok("other.secret: Permission denied" in runner.log()[mark:],
           "the error names the file and the reason", diag=runner.log()[mark:][-600:])
    tap.ok(other not in runner.log() and other.split("_", 1)[1] not in runner.log(),
           "no secret in the log")
    os.chown(path, 0, NOBODY)
    os.chmod(path, 0o640)
    run_tool(st, "flush")
    wait_for(lambda: posts(rx, tag), timeout=10)
    got = posts(rx, tag)
    tap.is_(len(got), 1, "readable by the spool's group: posted once")
    tap.is_(got and verify(other, got[0][1], got[0][2]), None,
            "signed with that route's secret (Python hmac)")
    gsecret = st.path("secret")
    os.chmod(gsecret, 0o600)
    os.chown(gsecret, 0, 0)
    try:
        tag2 = tag + "-global"
        eid2 = "msg_" + "%032x" % random.randrange(1 << 120)
        put_event(st, eid2, event_bytes(eid2, url, body_for(tag2)))
        wait_for(lambda: posts(rx, tag2), timeout=10)
        got = posts(rx, tag2)
        tap.is_(len(got), 1, "the global secret root-only: the event of a route without "
                "its own is posted once", diag=runner.log()[-600:])
        tap.is_(got and verify(SECRET, got[0][1], got[0][2]), None, "signed with the global secret")
    finally:
        os.chmod(gsecret, 0o644)


def test_root_lock_left(st, runner, lock):
    """A runner.lock root made before spool_own() existed (0600, uid 0)
    and a flush typed as the spool's user: a clear refusal that names the
    owner and the fix, exit 1, the lock untouched."""
    runner.stop()
    os.chown(lock, 0, 0)
    os.chmod(lock, 0o600)
    for path in (st.path("spool.conf"), st.path("secret")):
        os.chmod(path, 0o644)
    os.chmod(st.path(), 0o755)
    res = run(["setpriv", "--reuid", str(NOBODY), "--regid", str(NOBODY), "--clear-groups",
               SPOOL_TOOL, "-c", st.path("spool.conf"), "flush"], timeout=30)
    tap.ok(res.returncode == 1 and "owned by uid 0" in res.stderr and "chown" in res.stderr
           and os.stat(lock).st_uid == 0,
           "a root-owned 0600 runner.lock and a flush as the spool's user: exit 1 naming the "
           "owner and the fix", diag="exit %s %r" % (res.returncode, res.stderr[-400:]))
    os.chown(lock, NOBODY, NOBODY)
    res = run(["setpriv", "--reuid", str(NOBODY), "--regid", str(NOBODY), "--clear-groups",
               SPOOL_TOOL, "-c", st.path("spool.conf"), "flush"], timeout=30)
    tap.is_(res.returncode, 0, "chowned as the message says: the flush runs",
            diag=res.stdout + res.stderr)


def tmpfs_spool(st, options, name):
    """A tmpfs mounted on the spool, its subdirectories the spool user's."""
    spool = st.path("spool")
    mounted = run(["mount", "-t", "tmpfs", "-o", options + ",mode=0700", "tmpfs", spool])
    if not tap.ok(mounted.returncode == 0, name, diag=mounted.stderr):
        return False
    shutil.chown(spool, "nobody", "nogroup")
    for d in ("tmp", "active", "dead"):
        os.mkdir(os.path.join(spool, d), 0o700)
        shutil.chown(os.path.join(spool, d), "nobody", "nogroup")
    return True


def test_dead_letter_spool_full(st, rx, runner):
    """An event's last attempt within dead_letter_after fails while the
    spool is full: writing it into dead/ fails. It must not stay due in
    active/ and be posted again at every one-second scan."""
    spool = st.path("spool")
    runner.stop()
    if not tmpfs_spool(st, "size=512k", "a 512 KB tmpfs on the spool"):
        return
    try:
        write_conf(st, dead_letter_after="60s")
        rx.responder_saved, rx.responder = rx.responder, None
        rx.script = [(500, 1, {})]
        rx.default = 500
        url = "http://127.0.0.1:%d/ws/acme/lastgasp" % rx.port
        put_event(st, "lastgasp01", event_bytes("lastgasp01", url, body_for("lastgasp"),
                                                attempts=4, created=time.time() - 50,
                                                last_error="HTTP status 502"))
        runner.start()
        tap.ok(wait_for(lambda: posts(rx, "lastgasp"), timeout=20), "its last attempt")
        filler = os.path.join(spool, "filler")
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            while os.write(fd, b"x" * 4096) > 0:
                pass
        except OSError:
            pass
        os.close(fd)
        time.sleep(4)
        tap.is_(len(posts(rx, "lastgasp")), 1, "posted once, not at every scan",
                diag=runner.log()[-1200:])
        tap.is_((ls(st, "active"), ls(st, "dead")), ([], ["lastgasp01"]),
                "in dead/ all the same")
        tap.ok("lastgasp01" in runner.log() and "HTTP status 500" in runner.log(),
               "the log says why")
        os.unlink(filler)
    finally:
        rx.responder = rx.responder_saved
        rx.default = 200
        runner.stop()
        run(["umount", "-l", spool])
        write_conf(st)
        runner.start()


def test_out_of_inodes(st, rx, runner):
    """helper-127: a spool whose file system has no inode left (events
    spooled while no runner ran). run and flush died at once ("open
    runner.lock: No space left on device"): nothing was ever posted and
    every routed mail stayed deferred. Now both start under the spool
    directory's lock alone, say so once, and drain it."""
    spool = st.path("spool")
    runner.stop()
    # the root, tmp/, active/, dead/ and 5 events: not one inode more
    if not tmpfs_spool(st, "size=8m,nr_inodes=9", "a tmpfs of 9 inodes on the spool"):
        return
    try:
        url = "http://127.0.0.1:%d/ws/acme/inode" % rx.port
        tags = ["inode%d" % i for i in range(5)]
        for t in tags:
            put_event(st, t + "0000", event_bytes(t + "0000", url, body_for(t)))
        full = run(["touch", os.path.join(spool, "one-more")])
        tap.ok(full.returncode != 0 and "No space left" in full.stderr,
               "no inode left on the spool", diag=full.stderr)
        out = run_tool(st, "flush")
        text = out.stdout + out.stderr
        tap.is_((out.returncode, [len(posts(rx, t)) for t in tags], ls(st, "active")),
                (0, [1] * 5, []), "flush drains it: each event posted once", diag=text[-800:])
        tap.ok("cannot make %s/runner.lock: No space left on device; posting under the "
               "spool directory's lock alone" % spool in text, "and says why, once",
               diag=text[-800:])
        runner.start()
        tap.ok(runner.proc.poll() is None, "run starts on it too", diag=runner.log()[-800:])
        before = len(rx.requests)
        refused, _ = lmtp_send(st, [BILLS], bill(BILLS, "inode bill"))
        tap.ok(not refused and wait_for(lambda: len(rx.requests) > before, timeout=10),
               "a bill delivered meanwhile (the plugin reuses a posted event's file) "
               "is posted by it", diag="%r %s" % (refused, runner.log()[-800:]))
        tap.is_(runner.log().count("runner.lock: No space left on device"), 1,
                "the runner says it once, not at every pass", diag=runner.log()[-800:])
        out = run_tool(st, "flush", timeout=20)
        tap.ok(out.returncode != 0 and "no inode left" in out.stderr,
               "flush, unable to signal it, says why at once (not \"removed\" after 65 s)",
               diag=out.stdout + out.stderr)
        free = [n for n in os.listdir(os.path.join(spool, "tmp")) if n.startswith("free.")]
        os.unlink(os.path.join(spool, "tmp", free[0]))      # an inode back
        tap.ok(wait_for(lambda: os.path.exists(os.path.join(spool, "runner.lock")), timeout=5)
               and "runner.lock made and locked" in runner.log(),
               "an inode free: the idle runner makes runner.lock within seconds",
               diag=runner.log()[-600:])
        out = run_tool(st, "flush", timeout=20)
        tap.ok(out.returncode == 0 and "flush requested from lmtp-webhook-spool run" in out.stdout,
               "and flush signals it again", diag=out.stdout + out.stderr)
    finally:
        if runner.proc:
            runner.stop()
        run(["umount", "-l", spool])
        runner.start()


def test_readonly_spool(st, rx, runner):
    """active/ turns read-only for the daemon (run as the spool's user)
    while an attempt is under way (a chmod; a file system that remounts
    itself read-only after an error does the same); the receiver answers
    200. The delivered event cannot be removed: it must not be posted
    again at every scan. Writable again: removed, still posted once."""
    active = st.path("spool", "active")
    restart(runner, user="nobody")
    rx.responder_saved = rx.responder
    rx.responder = lambda p, h, b: (200, 1.5 if tag_of(b) == "readonly" else 0, {})
    try:
        url = "http://127.0.0.1:%d/ws/acme/readonly" % rx.port
        put_event(st, "readonly01", event_bytes("readonly01", url, body_for("readonly")))
        tap.ok(wait_for(lambda: posts(rx, "readonly"), timeout=20), "the attempt is under way")
        os.chmod(active, 0o500)
        time.sleep(5)
        tap.is_(len(posts(rx, "readonly")), 1, "delivered once, not again at every scan",
                diag=runner.log()[-1200:])
        tap.ok("readonly01 answered, but unlink" in runner.log(), "the log says it is stuck")
        os.chmod(active, 0o700)
        tap.ok(wait_for(lambda: ls(st, "active") == [], timeout=20),
               "writable again: its file removed", diag=runner.log()[-600:])
        time.sleep(1.5)
        tap.is_(len(posts(rx, "readonly")), 1, "and still posted only once")
        # stuck again, and this time the operator removes the file by hand:
        # the runner forgets the id (it kept it for good), so an event of
        # that id put back later (re-injected from a backup) is posted
        os.chmod(active, 0o500)
        put_event(st, "readonly02", event_bytes("readonly02", url, body_for("readonly-a")))
        tap.ok(wait_for(lambda: "readonly02 answered, but unlink" in runner.log(), timeout=20),
               "a second event delivered and stuck", diag=runner.log()[-600:])
        os.unlink(os.path.join(active, "readonly02"))
        time.sleep(2.5)                     # a listing or two
        os.chmod(active, 0o700)
        put_event(st, "readonly02", event_bytes("readonly02", url, body_for("readonly-b")))
        tap.ok(wait_for(lambda: posts(rx, "readonly-b"), timeout=20)
               and wait_for(lambda: ls(st, "active") == [], timeout=20),
               "removed by hand, its id is forgotten: the same id put back is posted",
               diag=runner.log()[-600:])
        tap.is_((len(posts(rx, "readonly-a")), len(posts(rx, "readonly-b"))), (1, 1),
                "each posted once")
    finally:
        os.chmod(active, 0o700)
        rx.responder = rx.responder_saved
        restart(runner)


def test_truncated_in_flight(st, rx, runner, hostile):
    """An event file of 8 MB (mapped, not read into memory) is truncated
    by hand while its POST is under way: the runner must not die of it
    (SIGBUS), post what is not the event, or keep the file as an event."""
    restart(runner, timeout="10s")
    body = body_for("truncated", 8000000)
    put_event(st, "truncated01", event_bytes("truncated01", hostile.url("slowread"), body))
    tap.ok(wait_for(lambda: hostile.hits.get("slowread"), timeout=20), "the POST is under way")
    os.truncate(st.path("spool", "active", "truncated01"), 100)
    time.sleep(4)
    tap.ok(runner.proc.poll() is None, "the runner lives on (exit %s)" % runner.proc.poll(),
           diag=runner.log()[-800:])
    tap.ok(wait_for(lambda: ls(st, "dead") == ["truncated01"] and ls(st, "active") == [],
                    timeout=10),
           "the truncated file moves to dead/ as it is", diag=str((ls(st, "active"),
                                                                  ls(st, "dead"))))
    tap.is_(hostile.hits.get("slowread-whole", 0), 0, "no whole body reached the receiver")
    tap.ok("truncated01: " in runner.log() and "was truncated during attempt 1"
           in runner.log() and "truncated01 delivered" not in runner.log(),
           "the log says so; nothing counted delivered")
    tap.is_(os.path.getsize(st.path("spool", "dead", "truncated01")), 100, "100 bytes, as cut")
    if runner.proc.poll() is not None:
        runner.proc = None
    restart(runner)
    os.unlink(st.path("spool", "dead", "truncated01"))


def test_hostile_receivers(st, rx, runner, hostile):
    """Every misbehaviour costs one attempt, keeps the event and its id,
    and sets the documented wait; a redirect is never followed."""
    admin_before = len([r for r in rx.requests if r[0] == "/admin"])
    runner.stop()
    modes = RETRYABLE + sorted(RETRY_AFTER)
    pad = {"reset": 400000, "noread": 3000000, "early200": 3000000}
    for m in modes:
        put_event(st, "hostile-" + m, event_bytes("hostile-" + m, hostile.url(m),
                                                  body_for(m, pad.get(m, 0))))
    put_event(st, "hostile-good", event_bytes("hostile-good", "http://127.0.0.1:%d/ok"
                                              % rx.port, body_for("hostile-good")))
    started = time.time()
    runner.start()
    tap.ok(wait_for(lambda: posts(rx, "hostile-good"), timeout=4),
           "a good receiver's event is not held up by the hostile ones")
    done = wait_for(lambda: all((header_of(st, "hostile-" + m) or {}).get("attempts") == 1
                                for m in modes), timeout=15)
    tap.ok(done, "every hostile answer counted one attempt",
           diag=str({m: header_of(st, "hostile-" + m) for m in modes}))
    time.sleep(1)
    tap.is_({m: hostile.hits.get(m, 0) for m in modes}, {m: 1 for m in modes},
            "each hostile receiver got exactly one connection")
    tap.is_(sorted(ls(st, "active")), sorted("hostile-" + m for m in modes),
            "every event kept in active/ (none lost, none delivered)")
    tap.is_(len([r for r in rx.requests if r[0] == "/admin"]) - admin_before, 0,
            "the redirect to another port was not followed")
    for m in RETRYABLE:
        h = header_of(st, "hostile-" + m) or {}
        wait = h.get("next_attempt", 0) - started
        tap.ok(h.get("last_error") and SCHED[0] - 1 <= wait <= SCHED[1] + 10,
               "%s: last_error %r, next in %.0fs" % (m, h.get("last_error"), wait))
    for m, (value, (lo, hi)) in sorted(RETRY_AFTER.items()):
        h = header_of(st, "hostile-" + m) or {}
        # a date: a wait from when it was written (NOW), not from now
        since = NOW if m in ("ra-imf", "ra-rfc850", "ra-asctime") else h.get("created", 0)
        wait = h.get("next_attempt", 0) - since
        tap.ok(lo - 1 <= wait <= hi + 2, "429 Retry-After: %s -> next in %.0fs (want %d..%d)"
               % (value, wait, lo, hi))
    fds = len(os.listdir("/proc/%d/fd" % runner.proc.pid))
    tap.ok(fds < 40, "the runner holds %d descriptors afterwards" % fds)
    for m in modes:
        run_tool(st, "drop", "hostile-" + m)


class Flaky:
    """A receiver whose answers are 200 after a random short delay, or 500."""

    def __call__(self, path, headers, body):
        r = random.random()
        return (500 if r < 0.2 else 200, random.random() * 0.3, {})


def test_kill9_storm(st, rx, runner):
    """120 events; the receiver answers 200 or 500 after random delays;
    the runner is killed with SIGKILL 6 times at random instants and
    started again. Every id is posted, with its own body and a good
    signature; active/ ends empty; tmp/ holds nothing but free files."""
    runner.stop()
    rx.responder_saved, rx.responder = rx.responder, Flaky()
    url = "http://127.0.0.1:%d/ws/acme/storm" % rx.port
    ids = ["storm%03d" % i for i in range(120)]
    bodies = {}
    for i in ids:
        bodies[i] = body_for("storm-" + i, random.randrange(0, 3000))
        put_event(st, i, event_bytes(i, url, bodies[i]))
    write_conf(st, concurrency="8")
    killed = set()
    for _ in range(6):
        runner.start()
        time.sleep(random.uniform(0.2, 0.8))
        killed.add(str(runner.proc.pid))
        runner.proc.kill()
        runner.proc.wait()
        runner.proc = None
    rx.responder = lambda p, h, b: (200, 0, {})
    runner.start()
    os.kill(runner.proc.pid, signal.SIGUSR1)     # the 500s' backoff: now
    tap.ok(wait_for(lambda: ls(st, "active") == [], timeout=20), "active/ drained",
           diag=str(ls(st, "active")[:10]))
    with rx.lock:
        got = [(h, b) for p, h, b in rx.requests if p == "/ws/acme/storm"]
    seen = {h["webhook-id"] for h, _ in got}
    tap.is_(sorted(seen), ids, "every one of the 120 ids posted (%d POSTs)" % len(got))
    bad = [h["webhook-id"] for h, b in got if b != bodies[h["webhook-id"]]
           or verify(SECRET, h, b) is not None]
    tap.is_(bad, [], "every POST: the id's own body bytes, a good signature")
    tap.is_(ls(st, "dead"), [], "nothing in dead/")
    # a runner killed while it wrote an attempt's outcome leaves its
    # tmp/ID.PID.N: the sweep takes it an hour later (the pid may be
    # another container's, so a dead pid alone is not enough)
    tap.is_([n for n in ls(st, "tmp") if not n.startswith("free.")
             and not (n.count(".") == 2 and n.split(".")[1] in killed)], [],
            "tmp/ holds only free files, and what the SIGKILLed runners were writing")
    rx.responder = rx.responder_saved
    restart(runner)


def test_two_runners(st, rx, runner):
    """A second run on the same spool refuses and names the first."""
    res = run([SPOOL_TOOL, "-c", st.path("spool.conf"), "-f", "run"], timeout=10)
    tap.ok(res.returncode == 1 and ("pid %d" % runner.proc.pid) in res.stderr,
           "a second runner exits 1 naming pid %d" % runner.proc.pid, diag=res.stderr)
    tap.is_(lmtp_send(st, [BILLS], bill(BILLS, "two runners"))[0], {}, "LMTP 250")
    tap.ok(wait_for(lambda: len(requests_for(rx, "two runners")) == 1, timeout=20),
           "the first one still delivers")
    # an operator's "rm *.lock": a second runner must not lock a new file
    os.unlink(st.path("spool", "runner.lock"))
    tap.ok(wait_for(lambda: os.path.exists(st.path("spool", "runner.lock")), timeout=3),
           "runner.lock removed: the daemon makes it again", diag=runner.log()[-600:])
    second = subprocess.Popen([SPOOL_TOOL, "-c", st.path("spool.conf"), "-f", "run"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = second.communicate(timeout=5)
    except subprocess.TimeoutExpired:       # it runs: two posters on one spool
        second.kill()
        out, err = second.communicate()
    tap.ok(second.returncode == 1 and ("pid %d" % runner.proc.pid) in err,
           "a second runner still refuses, naming pid %d" % runner.proc.pid,
           diag="exit %s: %s" % (second.returncode, err))
    res = run_tool(st, "flush")
    tap.ok(("(pid %d)" % runner.proc.pid) in res.stdout, "and flush signals the daemon",
           diag=res.stdout + res.stderr)
    tap.ok(runner.proc.poll() is None, "which runs on")


def test_lock_removed_while_posting(st, rx, runner):
    """runner.lock removed while a pass posts 10 slow events (the
    answers take 4 s), a second run started at once (an operator's "rm
    *.lock" and a restart): the second run refuses while the first
    posts, whether that is a flush pass (no daemon) or the daemon. Each
    event is posted exactly once: the flush pass locked only runner.lock
    and never looked at it again, so the second run took a new one and
    posted all 10 beside it. The pass makes runner.lock again, with its
    own pid, within a second."""
    runner.stop()
    write_conf(st, timeout="10s")
    rx.responder_saved = rx.responder
    rx.responder = lambda p, h, b: (200, 4 if tag_of(b).startswith("rmlock") else 0, {})
    lock = st.path("spool", "runner.lock")
    for mode in ("flush", "run"):
        tag = "rmlock-" + mode
        url = "http://127.0.0.1:%d/ws/acme/%s" % (rx.port, tag)
        ids = ["%s%02d" % (tag, i) for i in range(10)]
        for i in ids:
            put_event(st, i, event_bytes(i, url, body_for(tag)))
        if mode == "flush":
            first = subprocess.Popen([SPOOL_TOOL, "-c", st.path("spool.conf"), "flush"],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            pid = first.pid
        else:
            pid = runner.start().pid
        tap.ok(wait_for(lambda: len(posts(rx, tag)) == 10, timeout=3),
               "%s: 10 POSTs under way" % mode, diag=str(len(posts(rx, tag))))
        os.unlink(lock)
        second = subprocess.Popen([SPOOL_TOOL, "-c", st.path("spool.conf"), "-f", "run"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            _, err = second.communicate(timeout=6)
        except subprocess.TimeoutExpired:       # it runs: two posters on one spool
            err = "(still running)"
        time.sleep(1.2)
        with open(lock) as f:
            named = f.read().strip()
        tap.is_(named, str(pid), "%s: runner.lock made again, naming pid %d" % (mode, pid))
        tap.ok(second.returncode == 1 and ("being delivered by pid %d" % pid) in err,
               "%s: a run started at once exits 1 naming the process (it waits for the "
               "runner.lock made again)" % mode, diag="exit %s: %s" % (second.returncode, err))
        if second.poll() is None:
            second.kill()
            second.wait()
        if mode == "flush":
            out = first.communicate(timeout=30)[0]
            tap.ok(first.returncode == 0 and "10 delivered" in out, "flush: 10 delivered",
                   diag=out[-600:])
        else:
            tap.ok(wait_for(lambda: not [n for n in ls(st, "active") if n.startswith(tag)],
                            timeout=10), "run: all 10 delivered")
            runner.stop()
        got = sorted(h["webhook-id"] for _, h, _ in posts(rx, tag))
        tap.is_(got, ids, "%s: every id posted exactly once" % mode)
    rx.responder = rx.responder_saved
    restart(runner)


def test_thousands_emfile(st, rx, runner):
    """1500 events waiting when the runner starts under prlimit
    --nofile=64 with concurrency 32 and a receiver that takes 0.2 s:
    each posted exactly once, none left, the runner alive."""
    runner.stop()
    url = "http://127.0.0.1:%d/ws/acme/many" % rx.port
    ids = ["many%05d" % i for i in range(1500)]
    for i in ids:
        put_event(st, i, event_bytes(i, url, body_for("many")))
    rx.responder_saved = rx.responder
    rx.responder = lambda p, h, b: (200, 0.2 if random.random() < 0.1 else 0, {})
    write_conf(st, concurrency="32")
    mark = len(runner.log())
    runner.proc = st.start_daemon("spool", ["prlimit", "--nofile=64", SPOOL_TOOL, "-c",
                                            st.path("spool.conf"), "-f", "run"])
    drained = wait_for(lambda: ls(st, "active") == [], timeout=90)
    tap.ok(drained, "1500 events drained under a 64-descriptor limit",
           diag=runner.log()[mark:][-1500:])
    with rx.lock:
        got = [h["webhook-id"] for p, h, b in rx.requests if p == "/ws/acme/many"]
    tap.is_((len(got), sorted(set(got))), (1500, ids), "each posted exactly once")
    tap.ok(runner.proc.poll() is None, "the runner is alive")
    rx.responder = rx.responder_saved
    restart(runner)


with Stack("lmtp-webhook-spool-attack") as st:
    tap.stack = st
    rx = Receiver()
    rx.responder = lambda path, headers, body: (200, 0, {})
    hostile = Hostile(rx.port)
    os.makedirs(st.path("spool"))
    shutil.chown(st.path("spool"), "nobody", "nogroup")
    with open(st.path("secret"), "w") as f:
        f.write(SECRET + "\n")
    os.chmod(st.path("secret"), 0o644)
    write_conf(st)
    st.start_dovecot(
        lmtp_plugins="lmtp_webhook",
        plugin_settings={
            "lmtp_webhook_route": "bills@*.planapulse.app "
                                  "http://127.0.0.1:%d/ws/{1}/api/bills/inbound" % rx.port,
            "lmtp_webhook_spool_dir": st.path("spool"),
        },
        extra="mail_plugin_dir = %s\n" % PLUGIN_DIR)
    runner = Runner(st)
    runner.start()
    TESTS = [test_held, test_idle_backlog, test_sweep_steps, test_not_events, test_zero_blocks, test_not_event_over_dead, test_name_not_id, test_misnamed, test_root_operator,
             test_root_through_links, test_root_route_secret,
             test_foreign_owner, test_dead_unwritable, test_retry_in_flight,
             test_signals_during_flush, test_dead_letter_spool_full, test_out_of_inodes,
             test_readonly_spool, test_kill9_storm, test_two_runners,
             test_lock_removed_while_posting,
             test_thousands_emfile]
    only = os.environ.get("ATTACK_ONLY")
    for t in TESTS:
        if not only or t.__name__ in only.split(","):
            t(st, rx, runner)
    if not only or "test_truncated_in_flight" in only.split(","):
        test_truncated_in_flight(st, rx, runner, hostile)
    if not only or "test_hostile_receivers" in only.split(","):
        test_hostile_receivers(st, rx, runner, hostile)
    runner.stop()
    rx.stop()

sys.exit(tap.done())
