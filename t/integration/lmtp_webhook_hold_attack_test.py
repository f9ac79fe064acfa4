#!/usr/bin/python3
# mxkit-test: long (started first)
"""lmtp_webhook's held events (spool_hold.c) from an outside attacker's
and an unlucky operator's side, on real Dovecot 2.3 LMTP with the
plugin, lmtp-webhook-spool run and a real HTTP receiver. Faults are
made with strace (-p on the one lmtp process that serves a given LMTP
connection, found with ss): errors, delays and SIGKILL injected at an
exact system call; a second client is let in while the first one is
stopped at a known system call (read from /proc/PID/syscall), not
after a sleep. Counted exactly: ids, POSTs per id, bytes, copies in
the mailbox, files in active/.

- kill -9 of the lmtp process during the save (at Dovecot's rename of
  the mail into new/): no 250, nothing saved, a held leftover in
  active/ that neither the scan nor a flush posts, that list/show call
  held, posted once (its bytes) when its hold ends; and Postfix's
  retry of the same bytes: 250, one POST for the id, nothing left.
- kill -9 at the release (after the save): the retry gets 250, two
  copies (documented), one POST.
- Mid-save (the save held back by strace): list/show say held; flush
  (the daemon's, and the tool's own pass) posts nothing; retry releases
  it (one POST); drop removes it (250, nothing posted).
- Two clients, same bytes, same recipient: the held one's save fails
  while the other one commits over it: the other one's event stays
  (also when the committer comes between the withdraw's stat() and its
  unlink()); the held one's save succeeds while the other is refused:
  its event is posted.
- always: the sync of active/ fails after the hold's rename while a
  same-id delivery commits: that delivery's 250 must keep its event.
- Faults per mail_fsync mode: renameat2 (hold) EIO: 4xx, nothing saved,
  nothing in active/; utimensat at the hold EIO: the same; utimensat
  at the release EIO: 4xx, saved, the event held in active/, the retry
  replaces it and it is posted once; sync_file_range EIO (optimized):
  250, posted; always, the file's fsync before the rename EIO: 4xx,
  nothing saved.
- Over quota: the retry of a killed delivery refused: the leftover
  stays held (not lost) and is posted when its hold ends; two routed
  recipients in one transaction, one over quota, in both orders.
- The spool on tmpfs and on an ext4 image (no mkfs.xfs here): a hold
  never replaces a same-id event already in active/, a kill leaves a
  held leftover, releases are posted within milliseconds.
- "held" that is not a JSON boolean (1, 0, null, "true", [], {}):
  not an event, moved to dead/ as it is.
"""

import json
import os
import random
import re
import shutil
import smtplib
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from mxstack import Stack  # noqa: E402
from mxtest import build_path, run, tap, wait_for  # noqa: E402
from mxwebhook import (Receiver, Runner, bill, lmtp_send, make_secret, read_event,  # noqa: E402
                       start_spool_dovecot, Strace, subject_of)

PLUGIN_DIR = build_path("lmtp-webhook", ".libs")
SPOOL_TOOL = build_path("lmtp-webhook", "lmtp-webhook-spool")
BILLS = "bills@acme.planapulse.app"
GLOBEX = "bills@globex.planapulse.app"
SECRET = make_secret()
HOLD = 900

NR_RENAME, NR_FSYNC, NR_UNLINK, NR_UNLINKAT = 82, 74, 87, 263   # x86_64


# -- helpers ---------------------------------------------------------------

def active(st):
    d = st.path("spool", "active")
    return sorted(os.listdir(d)) if os.path.isdir(d) else []


def state_of(st, eid):
    """("held"|"released", header held, mtime - now, body) of active/ID,
    or None when it is not there."""
    path = st.path("spool", "active", eid)
    try:
        mtime = os.stat(path).st_mtime
    except OSError:
        return None
    meta, body = read_event(path)
    if meta is None:
        return ("broken", None, mtime - time.time(), body)
    held = meta.get("held") is True and mtime > time.time()
    return ("held" if held else "released", meta.get("held"), mtime - time.time(), body)


def copies(st, subject, rcpt=BILLS):
    return len([m for m in st.maildir_messages(rcpt) if subject.encode() in m])


def code_of(refused, rcpt=BILLS):
    """lmtp_send()'s refused dict: rcpt's code (250 when not refused)."""
    return refused.get(rcpt, (250, b""))[0]


def posts(rx, eid):
    with rx.lock:
        return [b for _, h, b in rx.requests if h.get("webhook-id") == eid]


def run_tool(st, *args, timeout=30):
    return run([SPOOL_TOOL, "-c", st.path("spool.conf")] + list(args), timeout=timeout)


def held_check(st, eid, what):
    s = state_of(st, eid)
    return tap.ok(s is not None and s[0] == "held" and s[1] is True and s[2] > HOLD - 120,
                  "%s: a held leftover in active/ (\"held\":true, mtime %+.0f s)"
                  % (what, s[2] if s else 0), diag=repr(s and s[:3]) + " " + repr(active(st)))


class Client:
    """One LMTP transaction, opened up to RCPT in the foreground; pid is
    the lmtp process serving it (ss); send() in a thread, result a dict
    {rcpt: code} or the exception's repr when the connection was lost."""

    def __init__(self, st, rcpts):
        self.st = st
        self.c = smtplib.LMTP("127.0.0.1", st.port("lmtp"), timeout=60)
        self.c.ehlo_or_helo_if_needed()
        self.c.mail("billing@vendor.example")
        self.accepted = [r for r in rcpts if self.c.rcpt(r)[0] == 250]
        self.pid = lmtp_pid_of(st, self.c.sock.getsockname()[1])
        self.result = None
        self.thread = None

    def _send(self, data):
        try:
            code, _ = self.c.data(data)
            codes = [code] + [self.c.getreply()[0] for _ in self.accepted[1:]]
            self.result = dict(zip(self.accepted, codes))
        except Exception as e:          # the killed process's connection
            self.result = repr(e)
        try:
            self.c.close()
        except Exception:
            pass

    def start(self, data):
        self.thread = threading.Thread(target=self._send, args=(data,))
        self.thread.start()
        return self

    def wait(self, timeout=60):
        self.thread.join(timeout)
        return self.result

    def code(self, rcpt=BILLS):
        if isinstance(self.result, dict):
            return self.result.get(rcpt)
        return self.result


def lmtp_pid_of(st, client_port):
    def find():
        out = subprocess.run(["ss", "-Htnp", "state", "established", "(", "sport", "=",
                              ":%d" % st.port("lmtp"), "and", "dport", "=",
                              ":%d" % client_port, ")"],
                             capture_output=True, text=True).stdout
        m = re.search(r'"lmtp",pid=(\d+)', out)
        return int(m.group(1)) if m else None
    return wait_for(find, timeout=10, interval=0.02)


def read_str(pid, addr):
    for size in (512, 128):
        try:
            with open("/proc/%d/mem" % pid, "rb", buffering=0) as f:
                f.seek(addr)
                return f.read(size).split(b"\0", 1)[0].decode(errors="replace")
        except (OSError, ValueError, OverflowError):
            continue
    return ""


def stopped_at(pid, nrs, want):
    """True when pid is stopped at the entry of one of the system calls
    nrs whose path (or fd's path) contains want."""
    try:
        with open("/proc/%d/syscall" % pid) as f:
            fields = f.read().split()
    except OSError:
        return False
    if not fields or not fields[0].isdigit() or int(fields[0]) not in nrs:
        return False
    nr, args = int(fields[0]), [int(x, 16) for x in fields[1:7]]
    if nr == NR_FSYNC:
        try:
            path = os.readlink("/proc/%d/fd/%d" % (pid, args[0]))
        except OSError:
            return False
    else:
        path = read_str(pid, args[1] if nr in (NR_UNLINKAT,) else args[0])
    return want in path


def no_free(st):
    """tmp/free.* removed: the next reservation creates its file instead of
    claiming one with a rename(), so that an lmtp process's first rename
    is Dovecot's of the mail (the one strace's when=1 must hit)."""
    tmp = st.path("spool", "tmp")
    for n in os.listdir(tmp):
        if n.startswith("free."):
            os.unlink(os.path.join(tmp, n))


def stopped_failing(st, pid):
    """pid stopped at a system call whose number strace set to -1 to fail
    it (error= injection), with an event held in active/."""
    try:
        with open("/proc/%d/syscall" % pid) as f:
            nr = f.read().split()[0]
    except (OSError, IndexError):
        return False
    return nr == "-1" and any((state_of(st, n) or ("",))[0] == "held" for n in active(st))


def traced(st, what, opts, pids=None):
    t = Strace(st, opts, pids, quiet="-q")
    if not tap.ok(t.ok, "%s: strace attaches" % what,
                  diag=t.proc.stderr.read() if t.proc.poll() is not None else ""):
        t.stop()
        return None
    return t


def send_injected(st, what, opts, data):
    """data sent to BILLS with strace injecting as opts say, "injected"
    checked: LMTP's refusals, or None when strace did not attach."""
    t = traced(st, what, opts)
    if t is None:
        return None
    try:
        refused, _ = lmtp_send(st, [BILLS], data)
    finally:
        log = t.stop()
    tap.ok("(INJECTED)" in log, "%s: injected" % what, diag=log[-600:])
    return refused


def learn(st, rx, data, runner_on=True, rcpt=BILLS):
    """The webhook-id of data for rcpt: delivered once (250), and its event
    gone from active/ again (posted when the runner runs, else removed)."""
    subject = subject_of_data(data)
    refused, _ = lmtp_send(st, [rcpt], data)
    names = active(st)
    if runner_on:
        wait_for(lambda: [b for _, _, b in list(rx.requests) if subject_of(b) == subject],
                 timeout=10)
        with rx.lock:
            ids = [h.get("webhook-id") for _, h, b in rx.requests if subject_of(b) == subject]
        wait_for(lambda: active(st) == [], timeout=10)
        eid = ids[-1] if ids else None
    else:
        eid = names[0] if len(names) == 1 else None
        for n in names:
            os.unlink(st.path("spool", "active", n))
    tap.ok(refused == {} and eid, "%s: the id learnt (250)" % subject,
           diag=repr((refused, names)))
    return eid or "none"


def subject_of_data(data):
    m = re.search(rb"^Subject: (.*)$", data, re.M)
    return m.group(1).decode().strip() if m else None


# -- kill -9 between hold and release ---------------------------------------

def kill_during_save(st, data, what):
    """A delivery of data whose lmtp process is SIGKILLed at the entry of
    Dovecot's rename of the mail into new/ (its first rename): the event
    is held in active/ then. Returns the client's result."""
    cl = Client(st, [BILLS])
    t = traced(st, what, ["-e", "trace=rename", "-e", "inject=rename:signal=SIGKILL:when=1"],
               [cl.pid])
    if t is None:
        return None
    no_free(st)
    cl.start(data).wait()
    log = t.stop()
    tap.ok("Maildir/tmp/" in log and "+++ killed by SIGKILL" in log,
           "%s: killed at the rename of the mail out of Maildir/tmp/" % what, diag=log[-800:])
    return cl.result


def test_kill_during_save(st, rx, runner):
    subject = "killed during the save"
    data = bill(BILLS, subject)
    eid = learn(st, rx, data)
    base = len(posts(rx, eid))
    saved = copies(st, subject)
    res = kill_during_save(st, data, "kill during save")
    tap.ok(res is not None and not isinstance(res, dict),
           "kill during save: no LMTP answer (connection lost)", diag=repr(res))
    tap.is_(copies(st, subject), saved, "kill during save: nothing saved")
    if not held_check(st, eid, "kill during save"):
        return
    body = state_of(st, eid)[3]
    time.sleep(2.5)                                   # two scans
    tap.is_(len(posts(rx, eid)), base, "the held leftover: not posted by the scans")
    res = run_tool(st, "flush")
    time.sleep(1.5)
    tap.ok(res.returncode == 0 and len(posts(rx, eid)) == base,
           "nor by a flush (the daemon's pass)", diag=res.stdout + res.stderr)
    res = run_tool(st, "list")
    line = [ln.split()[:2] for ln in res.stdout.splitlines() if ln.startswith(eid)]
    tap.is_(line, [[eid, "held"]], "list says held", diag=res.stdout + res.stderr)
    res = run_tool(st, "show", eid)
    tap.ok("state: held" in res.stdout, "show says state: held", diag=res.stdout + res.stderr)
    past = time.time() - 5
    os.utime(st.path("spool", "active", eid), (past, past))       # its hold ends
    tap.ok(wait_for(lambda: len(posts(rx, eid)) > base, timeout=5),
           "its hold ended: posted")
    time.sleep(1.5)
    got = posts(rx, eid)[base:]
    tap.ok(len(got) == 1 and got[0] == body, "posted once, the leftover's bytes",
           diag="%d posts" % len(got))
    tap.ok(wait_for(lambda: active(st) == [], timeout=5), "active/ empty afterwards")

    # Postfix retries the same bytes after the kill
    subject = "killed during the save, then retried"
    data = bill(BILLS, subject)
    eid = learn(st, rx, data)
    base = len(posts(rx, eid))
    kill_during_save(st, data, "kill, retry")
    held_check(st, eid, "kill, retry")
    refused, _ = lmtp_send(st, [BILLS], data)
    tap.is_(refused, {}, "kill, retry: Postfix's retry of the same bytes gets 250")
    tap.ok(wait_for(lambda: len(posts(rx, eid)) > base, timeout=3),
           "the retry's event posted at once (it replaced the held leftover)")
    time.sleep(2.5)
    tap.is_(len(posts(rx, eid)) - base, 1, "exactly one POST for the id")
    tap.is_(active(st), [], "nothing left in active/ to be posted again when the hold ends")
    tap.is_(copies(st, subject) - 1, 1, "one copy saved by the retry (besides the learning one)")


def test_kill_at_release(st, rx, runner):
    subject = "killed at the release"
    data = bill(BILLS, subject)
    eid = learn(st, rx, data)
    base = len(posts(rx, eid))
    saved = copies(st, subject)
    cl = Client(st, [BILLS])
    t = traced(st, "kill at release", ["-e", "trace=utimensat", "-e",
                                       "inject=utimensat:signal=SIGKILL", "-P",
                                       st.path("spool", "active", eid)], [cl.pid])
    if t is None:
        return
    cl.start(data).wait()
    log = t.stop()
    tap.ok("killed by SIGKILL" in log and not isinstance(cl.result, dict),
           "kill at release: killed at the release's utimensat, no LMTP answer",
           diag=repr(cl.result) + log[-600:])
    tap.is_(copies(st, subject), saved + 1, "kill at release: the mail was saved")
    held_check(st, eid, "kill at release")
    time.sleep(2.2)
    tap.is_(len(posts(rx, eid)), base, "kill at release: not posted while held")
    refused, _ = lmtp_send(st, [BILLS], data)
    tap.is_(refused, {}, "kill at release: the retry gets 250")
    tap.ok(wait_for(lambda: len(posts(rx, eid)) > base, timeout=3), "and it is posted")
    time.sleep(2.5)
    tap.is_(len(posts(rx, eid)) - base, 1, "kill at release: exactly one POST for the id")
    tap.is_(copies(st, subject), saved + 2, "two copies (the killed one's and the retry's)")
    tap.is_(active(st), [], "nothing left in active/")


# -- operators mid-save ----------------------------------------------------

def slow_save(st, data, what, delay=3.0, fail=False):
    """A client whose lmtp process holds its event while Dovecot's rename
    of the mail is held back delay seconds (then failing with EIO if
    fail); returns (client, trace) once it is stopped there."""
    cl = Client(st, [BILLS])
    inject = "inject=rename:delay_enter=%d:when=1" % int(delay * 1e6)
    if fail:
        inject += ":error=EIO"
    t = traced(st, what, ["-e", "trace=rename", "-e", inject], [cl.pid])
    if t is None:
        return None, None
    no_free(st)
    cl.start(data)
    if not tap.ok(wait_for(lambda: stopped_at(cl.pid, (NR_RENAME,), "Maildir/tmp/")
                           or (fail and stopped_failing(st, cl.pid)),
                           timeout=10, interval=0.01),
                  "%s: the lmtp process is at the mail's rename" % what):
        cl.wait()
        t.stop()
        return None, None
    return cl, t


def test_ops_mid_save(st, rx, runner):
    # list, show, the daemon's flush
    subject = "held mid-save: list, show, flush"
    data = bill(BILLS, subject)
    eid = learn(st, rx, data)
    base = len(posts(rx, eid))
    cl, t = slow_save(st, data, "flush mid-save")
    if cl:
        s = state_of(st, eid)
        tap.ok(s and s[0] == "held", "mid-save: the event is in active/, held", diag=repr(s and s[:3]))
        res = run_tool(st, "list")
        line = [ln.split()[:2] for ln in res.stdout.splitlines() if ln.startswith(eid)]
        tap.is_(line, [[eid, "held"]], "mid-save: list says held")
        res = run_tool(st, "show", eid)
        tap.ok("state: held" in res.stdout, "mid-save: show says held", diag=res.stdout)
        res = run_tool(st, "flush")
        time.sleep(0.8)
        tap.ok(cl.thread.is_alive() and len(posts(rx, eid)) == base,
               "mid-save: the daemon's flush posts nothing", diag=res.stdout + res.stderr)
        cl.wait()
        t.stop()
        tap.is_(cl.code(), 250, "flush mid-save: then 250")
        tap.ok(wait_for(lambda: len(posts(rx, eid)) > base, timeout=3), "and posted")
        time.sleep(1.5)
        tap.is_(len(posts(rx, eid)) - base, 1, "flush mid-save: posted once")

    # retry mid-save: refused (its delivery releases it), posted once
    subject = "held mid-save: retry"
    data = bill(BILLS, subject)
    eid = learn(st, rx, data)
    base = len(posts(rx, eid))
    cl, t = slow_save(st, data, "retry mid-save")
    if cl:
        res = run_tool(st, "retry", eid)
        tap.ok(res.returncode != 0 and "being saved" in res.stderr
               and len(posts(rx, eid)) == base and cl.thread.is_alive(),
               "retry mid-save: refused (the delivery at work holds it), nothing posted",
               diag=res.stdout + res.stderr)
        cl.wait()
        t.stop()
        tap.is_(cl.code(), 250, "retry mid-save: the delivery then gets 250")
        time.sleep(2)
        tap.is_(len(posts(rx, eid)) - base, 1, "retry mid-save: posted once in all")
        tap.is_(active(st), [], "retry mid-save: nothing left in active/")

    # a save that outlives its hold (Postfix allows 600 s per transaction,
    # a stuck storage more): past the hold's end the runner still must not
    # post a bill whose mail may not be saved after all
    subject = "held mid-save: the hold outlived"
    data = bill(BILLS, subject)
    eid = learn(st, rx, data)
    base = len(posts(rx, eid))
    cl, t = slow_save(st, data, "hold outlived mid-save", delay=9.0)
    if cl:
        past = time.time() - 5
        os.utime(st.path("spool", "active", eid), (past, past))     # its hold is over
        time.sleep(2.5)                                             # two scans
        tap.ok(cl.thread.is_alive() and len(posts(rx, eid)) == base,
               "hold outlived: not posted by the scans while its delivery saves")
        res = run_tool(st, "flush")
        time.sleep(0.8)
        tap.ok(cl.thread.is_alive() and len(posts(rx, eid)) == base,
               "hold outlived: nor by the daemon's flush", diag=res.stdout + res.stderr)
        res = run_tool(st, "list")
        line = [ln.split()[:2] for ln in res.stdout.splitlines() if ln.startswith(eid)]
        tap.is_(line, [[eid, "held"]], "hold outlived: list still says held")
        res = run_tool(st, "show", eid)
        tap.ok("state: held" in res.stdout, "hold outlived: show says held", diag=res.stdout)
        res = run_tool(st, "retry", eid)
        tap.ok(res.returncode != 0 and "being saved" in res.stderr
               and len(posts(rx, eid)) == base,
               "hold outlived: retry refused", diag=res.stdout + res.stderr)
        tap.ok(cl.thread.is_alive(), "hold outlived: the delivery was at work all along")
        cl.wait()
        t.stop()
        tap.is_(cl.code(), 250, "hold outlived: then 250")
        tap.ok(wait_for(lambda: len(posts(rx, eid)) > base, timeout=8),
               "hold outlived: posted once released")
        time.sleep(1.5)
        tap.is_(len(posts(rx, eid)) - base, 1, "hold outlived: posted once")
        tap.is_(active(st), [], "hold outlived: nothing left in active/")

    # drop mid-save
    subject = "held mid-save: drop"
    data = bill(BILLS, subject)
    eid = learn(st, rx, data)
    base = len(posts(rx, eid))
    cl, t = slow_save(st, data, "drop mid-save")
    if cl:
        res = run_tool(st, "drop", eid)
        tap.ok(res.returncode == 0 and active(st) == [], "drop mid-save: dropped",
               diag=res.stdout + res.stderr)
        cl.wait()
        t.stop()
        tap.is_(cl.code(), 250, "drop mid-save: the delivery gets 250 (its release finds "
                "no file, and makes none)")
        time.sleep(2)
        tap.ok(len(posts(rx, eid)) == base and active(st) == [],
               "drop mid-save: nothing posted, active/ empty")


def test_flush_pass_mid_save(st, rx, runner):
    """runner stopped: the tool's own flush pass."""
    subject = "held mid-save: the tool's own flush pass"
    data = bill(BILLS, subject)
    eid = learn(st, rx, data, runner_on=False)
    cl, t = slow_save(st, data, "flush pass mid-save")
    if not cl:
        return
    res = run_tool(st, "flush")
    tap.ok(res.returncode == 0 and "0 delivered" in res.stdout and posts(rx, eid) == []
           and cl.thread.is_alive(),
           "the tool's flush pass mid-save: nothing posted", diag=res.stdout + res.stderr)
    cl.wait()
    t.stop()
    tap.is_(cl.code(), 250, "then 250")
    s = state_of(st, eid)
    tap.ok(s and s[0] == "released", "released in active/", diag=repr(s and s[:3]))
    os.unlink(st.path("spool", "active", eid))


# -- two deliveries of the same bytes --------------------------------------

def test_same_bytes_held_fails(st, rx):
    """runner stopped. A holds active/ID, its save fails (EIO at the mail's
    rename, after 2 s); B, the same bytes, commits over it meanwhile (250):
    B's event must stay."""
    subject = "same bytes: the held one fails, the other commits"
    data = bill(BILLS, subject)
    eid = learn(st, rx, data, runner_on=False)
    saved = copies(st, subject)
    a, t = slow_save(st, data, "held fails", delay=2.0, fail=True)
    if not a:
        return
    refused, _ = lmtp_send(st, [BILLS], data)
    tap.is_(refused, {}, "B (same bytes, during A's save): 250")
    a.wait()
    t.stop()
    tap.ok(isinstance(a.code(), int) and 400 <= a.code() < 500, "A (its save failed): 4xx",
           diag=repr(a.result))
    tap.is_(copies(st, subject), saved + 1, "one copy more: B's")
    s = state_of(st, eid)
    tap.ok(s and s[0] == "released", "B's event in active/, released (A's withdraw left it)",
           diag=repr(s and s[:3]))
    for n in active(st):
        os.unlink(st.path("spool", "active", n))


def test_withdraw_race(st, rx):
    """runner stopped. As test_same_bytes_held_fails, but B is sent while A
    is between the withdraw's stat() (its own inode there) and unlink():
    B waits for A's hold to end (its flock), then holds its own."""
    subject = "same bytes: B commits inside A's withdraw"
    data = bill(BILLS, subject)
    eid = learn(st, rx, data, runner_on=False)
    a = Client(st, [BILLS])
    t = traced(st, "withdraw race", [
        "-e", "trace=rename,unlink,unlinkat", "-e", "inject=rename:error=EIO:when=1",
        "-e", "inject=unlink,unlinkat:delay_enter=2500000"], [a.pid])
    if t is None:
        return
    no_free(st)
    a.start(data)
    at = wait_for(lambda: stopped_at(a.pid, (NR_UNLINK, NR_UNLINKAT), "/active/" + eid),
                  timeout=20, interval=0.01)
    tap.ok(at, "A (save failed) is at the unlink of active/%s" % eid)
    refused, _ = lmtp_send(st, [BILLS], data)
    tap.is_(refused, {}, "B (same bytes, sent meanwhile): 250")
    b_state = state_of(st, eid)
    a.wait()
    log = t.stop()
    tap.ok(isinstance(a.code(), int) and 400 <= a.code() < 500, "A: 4xx",
           diag=repr(a.result) + log[-600:])
    tap.ok(b_state and b_state[0] == "released", "B's event was in active/ after its 250",
           diag=repr(b_state and b_state[:3]))
    s = state_of(st, eid)
    tap.ok(s is not None, "B's event (250) still in active/ after A's withdraw "
           "(withdraw removes only its own inode)", diag="active/: %r" % active(st))
    for n in active(st):
        os.unlink(st.path("spool", "active", n))


def test_same_bytes_other_refused(st, rx, runner):
    """runner running. A holds active/ID with a slow save that succeeds; B,
    the same bytes, sent meanwhile, has its save fail (EIO at its mail's
    rename; it waits for A's maildir lock first): A's event must be
    posted, once, and B must leave nothing."""
    subject = "same bytes: the other one refused"
    data = bill(BILLS, subject)
    eid = learn(st, rx, data)
    base = len(posts(rx, eid))
    a, ta = slow_save(st, data, "other refused", delay=2.0)
    if not a:
        return
    s = state_of(st, eid)
    tap.ok(s and s[0] == "held" and len(posts(rx, eid)) == base,
           "A's event held in active/ during its save, not posted", diag=repr(s and s[:3]))
    b = Client(st, [BILLS])
    tb = traced(st, "other refused (B)", ["-e", "trace=rename", "-e",
                                          "inject=rename:error=EIO:when=1"], [b.pid])
    if tb is None:
        a.wait()
        ta.stop()
        return
    no_free(st)
    b.start(data).wait()
    tb.stop()
    a.wait()
    ta.stop()
    tap.ok(isinstance(b.code(), int) and 400 <= b.code() < 500, "B (save failed): 4xx",
           diag=repr(b.result))
    tap.is_(a.code(), 250, "A: 250")
    tap.ok(wait_for(lambda: len(posts(rx, eid)) > base, timeout=3), "A's event posted")
    time.sleep(1.5)
    tap.is_(len(posts(rx, eid)) - base, 1, "once")
    tap.is_(active(st), [], "nothing left in active/")


# -- faults injected -------------------------------------------------------

def fault_before_save(st, rx, what, opts, subject, marker, runner_on=True):
    """A fault before the save: 4xx, nothing saved, nothing in active/;
    the retry: 250, one copy, one event (posted once when the runner
    runs)."""
    data = bill(BILLS, subject)
    eid = learn(st, rx, data, runner_on=runner_on)
    base = len(posts(rx, eid))
    saved = copies(st, subject)
    t = traced(st, what, opts)
    if t is None:
        return
    try:
        refused, _ = lmtp_send(st, [BILLS], data)
    finally:
        log = t.stop()
    inj = [ln for ln in log.splitlines() if "(INJECTED)" in ln]
    tap.ok(inj and marker in inj[0], "%s: injected where meant (%s)" % (what, marker),
           diag="\n".join(inj[:3]) or log[-600:])
    tap.ok(400 <= code_of(refused) < 500, "%s: LMTP 4xx" % what, diag=repr(refused))
    tap.is_(copies(st, subject), saved, "%s: nothing saved" % what)
    tap.is_(active(st), [], "%s: nothing left in active/" % what)
    time.sleep(1.2)
    tap.is_(len(posts(rx, eid)), base, "%s: nothing posted" % what)
    refused, _ = lmtp_send(st, [BILLS], data)
    tap.is_(refused, {}, "%s: the retry: 250" % what)
    tap.is_(copies(st, subject), saved + 1, "%s: one copy more" % what)
    if runner_on:
        tap.ok(wait_for(lambda: len(posts(rx, eid)) > base, timeout=3), "%s: posted" % what)
        time.sleep(1.2)
        tap.is_(len(posts(rx, eid)) - base, 1, "%s: once" % what)
    else:
        s = state_of(st, eid)
        tap.ok(s and s[0] == "released", "%s: its event released in active/" % what,
               diag=repr(s and s[:3]))
        for n in active(st):
            os.unlink(st.path("spool", "active", n))


def fault_noreplace_unsupported(st, rx):
    """renameat2() EINVAL, as a file system without RENAME_NOREPLACE says:
    no hold, the event committed after the save: 250, posted once."""
    subject = "renameat2 EINVAL"
    data = bill(BILLS, subject)
    eid = learn(st, rx, data)
    base = len(posts(rx, eid))
    refused = send_injected(st, "renameat2 EINVAL", ["-e", "trace=renameat2",
                                                     "-e", "inject=renameat2:error=EINVAL"], data)
    if refused is None:
        return
    tap.is_(refused, {}, "renameat2 EINVAL (no RENAME_NOREPLACE): 250, committed after the save")
    tap.ok(wait_for(lambda: len(posts(rx, eid)) > base, timeout=3), "renameat2 EINVAL: posted")
    time.sleep(1.2)
    tap.is_(len(posts(rx, eid)) - base, 1, "renameat2 EINVAL: once")


def test_release_utimensat_eio(st, rx):
    subject = "release utimensat EIO"
    what = "utimensat EIO at the release"
    data = bill(BILLS, subject)
    eid = learn(st, rx, data)
    base = len(posts(rx, eid))
    saved = copies(st, subject)
    refused = send_injected(st, what, ["-e", "trace=utimensat", "-e", "inject=utimensat:error=EIO",
                                       "-P", st.path("spool", "active", eid)], data)
    if refused is None:
        return
    tap.ok(400 <= code_of(refused) < 500, "%s: LMTP 4xx" % what, diag=repr(refused))
    tap.is_(copies(st, subject), saved + 1, "%s: the mail was saved" % what)
    held_check(st, eid, what)
    time.sleep(2.2)
    tap.is_(len(posts(rx, eid)), base, "%s: the held event not posted" % what)
    refused, _ = lmtp_send(st, [BILLS], data)
    tap.is_(refused, {}, "%s: the retry: 250" % what)
    tap.ok(wait_for(lambda: len(posts(rx, eid)) > base, timeout=3),
           "%s: the retry's event (same id) posted at once" % what)
    time.sleep(2.2)
    tap.is_(len(posts(rx, eid)) - base, 1, "%s: once" % what)
    tap.is_(active(st), [], "%s: nothing left" % what)


def test_sync_file_range_eio(st, rx):
    subject = "sync_file_range EIO"
    data = bill(BILLS, subject)
    eid = learn(st, rx, data)
    base = len(posts(rx, eid))
    refused = send_injected(st, "sync_file_range EIO", ["-e", "trace=sync_file_range",
                                                        "-e", "inject=sync_file_range:error=EIO"],
                            data)
    if refused is None:
        return
    tap.is_(refused, {}, "sync_file_range EIO (its result is a hint): 250")
    tap.ok(wait_for(lambda: len(posts(rx, eid)) > base, timeout=3), "and posted")


def test_release_latency(st, rx, what, n=8):
    """Each release is posted within milliseconds (inotify), not by the
    once-a-second scan: n deliveries at random phases of the second."""
    lat = []
    for i in range(n):
        time.sleep(random.uniform(0, 1))
        subject = "latency %s %d" % (what, i)
        refused, _ = lmtp_send(st, [BILLS], bill(BILLS, subject, size=500))
        done = time.time()
        if refused:
            lat.append(("refused", refused))
            continue
        if not wait_for(lambda: [1 for _, _, b in list(rx.requests) if subject_of(b) == subject],
                        timeout=5, interval=0.005):
            lat.append(("not posted", subject))
            continue
        lat.append(round(time.time() - done, 3))
    # The median, not each one: by the scan 8 releases at random phases
    # of the second have a median under 0.15 s about 3 times in 1,000;
    # one loaded moment (the file shares the machine) is not a failure
    times = sorted(x for x in lat if isinstance(x, float))
    median = times[len(times) // 2] if times else None
    tap.ok(len(times) == n and median < 0.15 and times[-1] < 1.5,
           "%s: %d releases posted by inotify, not the once-a-second scan: median %s s "
           "after LMTP's 250 (max %s)" % (what, n, median, times[-1] if times else None),
           diag=repr(lat))


def test_two_rcpts_hold_fails(st, rx):
    """Two routed recipients in one transaction; the first one's hold
    (renameat2) fails: it is tempfailed with nothing saved and nothing
    in active/, the second one delivered and posted once."""
    subject = "two recipients, the first hold fails"
    data = bill(BILLS, subject)
    t = traced(st, "two rcpts", ["-e", "trace=renameat2", "-e",
                                 "inject=renameat2:error=EIO:when=1"])
    if t is None:
        return
    try:
        refused, _ = lmtp_send(st, [BILLS, GLOBEX], data)
    finally:
        log = t.stop()
    tap.ok(400 <= code_of(refused, BILLS) < 500 and GLOBEX not in refused,
           "two rcpts: the first 4xx (its hold failed), the second 250",
           diag=repr(refused) + log[-400:])
    tap.is_((copies(st, subject), copies(st, subject, GLOBEX)), (0, 1),
            "two rcpts: no copy for the first, one for the second")
    wait_for(lambda: [1 for _, _, b in list(rx.requests) if subject_of(b) == subject], timeout=3)
    time.sleep(1.2)
    with rx.lock:
        rcpts = [json.loads(b)["data"]["envelope"]["rcpt_to"] for _, _, b in rx.requests
                 if subject_of(b) == subject]
    tap.is_(rcpts, [GLOBEX], "two rcpts: one event posted, the second recipient's")
    tap.is_(active(st), [], "two rcpts: nothing left in active/")


def test_active_removed(st, rx):
    """active/ removed under a running runner (rm -rf of an empty
    directory): made again, and releases are posted within
    milliseconds again once the runner watches the new one."""
    shutil.rmtree(st.path("spool", "active"))
    subject = "active/ removed: the first delivery"
    refused, _ = lmtp_send(st, [BILLS], bill(BILLS, subject, size=500))
    tap.is_(refused, {}, "active/ removed: the next delivery gets 250 (active/ made again)")
    tap.ok(wait_for(lambda: [1 for _, _, b in list(rx.requests) if subject_of(b) == subject],
                    timeout=3), "and is posted")
    time.sleep(1.5)
    test_release_latency(st, rx, "after active/ was removed", n=5)


def test_retry_then_save_fails(st, rx):
    """An operator's retry of a held event mid-save, and then the save
    fails: the retry is refused (the delivery at work holds the event's
    flock), and no event is posted for the mail that was never saved."""
    subject = "held mid-save: retry, then the save fails"
    data = bill(BILLS, subject)
    eid = learn(st, rx, data)
    base = len(posts(rx, eid))
    saved = copies(st, subject)
    cl, t = slow_save(st, data, "retry then fail", delay=2.0, fail=True)
    if not cl:
        return
    res = run_tool(st, "retry", eid)
    tap.ok(res.returncode != 0 and "being saved" in res.stderr,
           "retry then fail: the retry refused mid-save", diag=res.stdout + res.stderr)
    cl.wait()
    t.stop()
    time.sleep(1.5)
    tap.ok(isinstance(cl.code(), int) and 400 <= cl.code() < 500
           and copies(st, subject) == saved, "retry then fail: 4xx, nothing saved",
           diag=repr(cl.result) + res.stdout + res.stderr)
    tap.is_(len(posts(rx, eid)) - base, 0, "retry mid-save, then the save fails: no event "
            "posted for the mail that was not saved")
    for n in active(st):
        os.unlink(st.path("spool", "active", n))


def test_id_with_other_rcpt(st, rx):
    """The id is the recipient's and the bytes': with a non-routed
    recipient first (whose saved copy Dovecot hands to the next
    recipients) it is the id of the bill sent to BILLS alone."""
    subject = "id with a non-routed recipient first"
    data = bill(BILLS, subject)
    eid = learn(st, rx, data)
    refused, _ = lmtp_send(st, ["alice@mxkit.test", BILLS], data)
    tap.is_(refused, {}, "alice and BILLS: 250 each")
    wait_for(lambda: len(posts(rx, eid)) >= 2, timeout=3)
    with rx.lock:
        ids = [h.get("webhook-id") for _, h, b in rx.requests if subject_of(b) == subject]
    tap.is_(ids, [eid, eid], "alice's copy first: the same webhook-id as BILLS alone")


def test_not_boolean(st, rx):
    url = "http://127.0.0.1:%d/ws/acme/held" % rx.port
    cases = {"hb_one": 1, "hb_zero": 0, "hb_null": None, "hb_str": "true", "hb_list": [],
             "hb_obj": {}}
    files = {}
    for eid, held in cases.items():
        body = json.dumps({"type": "test", "tag": eid}).encode()
        head = {"id": eid, "url": url, "created": int(time.time()), "attempts": 0,
                "next_attempt": 0, "last_error": None, "body_length": len(body), "held": held}
        files[eid] = json.dumps(head).encode() + b"\n" + body
        tmp = st.path("spool", "tmp", "put." + eid)
        with open(tmp, "wb") as f:
            f.write(files[eid])
        os.chown(tmp, 65534, 65534)
        os.rename(tmp, st.path("spool", "active", eid))

    def dead():
        d = st.path("spool", "dead")
        return {n: open(os.path.join(d, n), "rb").read() for n in os.listdir(d)
                if n in files}
    # the runner buries a file that is no event only once it has been
    # unchanged for 5 s (RUNNER_SETTLE: a cp into active/ may be under
    # way), counted from its ctime's whole second, then at its next scan:
    # up to 6 s on a quiet machine, more beside another test file's load
    wait_for(lambda: len(dead()) == len(files), timeout=20)
    got = dead()
    tap.is_(sorted(n for n in files if got.get(n) != files[n]), [],
            "\"held\" not a boolean (1, 0, null, \"true\", [], {}): each moved to dead/ as it is")
    tap.is_([e for e in files if posts(rx, e)], [], "none of them posted")
    for n in got:
        os.unlink(st.path("spool", "dead", n))


# -- always: the sync of active/ fails while a same-id delivery commits ---

def test_always_dirsync_race(st, rx):
    """runner stopped. A: the fsync of active/ after its hold's rename is
    held back 2.5 s and fails (EIO): spool_hold() then unlinks active/ID.
    B (same bytes), sent meanwhile, waits for A's hold to end and gets
    250."""
    subject = "always: dir fsync fails while B commits"
    data = bill(BILLS, subject)
    eid = learn(st, rx, data, runner_on=False)
    saved = copies(st, subject)
    a = Client(st, [BILLS])
    t = traced(st, "dir fsync race", [
        "-e", "trace=fsync", "-e", "inject=fsync:error=EIO:delay_enter=2500000",
        "-P", st.path("spool", "active")], [a.pid])
    if t is None:
        return
    a.start(data)
    at = wait_for(lambda: stopped_at(a.pid, (NR_FSYNC,), "/spool/active")
                  or stopped_failing(st, a.pid), timeout=10, interval=0.01)
    tap.ok(at, "A is at the fsync of active/ (its event held there)")
    refused, _ = lmtp_send(st, [BILLS], data)
    tap.is_(refused, {}, "B (same bytes) meanwhile: 250")
    a.wait()
    log = t.stop()
    tap.ok(isinstance(a.code(), int) and 400 <= a.code() < 500 and "(INJECTED)" in log,
           "A: 4xx (the sync of active/ failed)", diag=repr(a.result) + log[-400:])
    tap.is_(copies(st, subject), saved + 1, "one copy more: B's")
    s = state_of(st, eid)
    tap.ok(s is not None and s[0] == "released",
           "B's event (250) still in active/ after A's failed hold removed its own",
           diag="active/: %r %r" % (active(st), s and s[:3]))
    for n in active(st):
        os.unlink(st.path("spool", "active", n))


# -- quota ----------------------------------------------------------------

def test_quota(st, rx, runner):
    """quota 100K for BILLS (GLOBEX 10M). K (~55 KB) killed during its
    save; its retry refused (Dovecot's save fails: EIO at the mail's
    rename): the leftover stays, held, and is posted when its hold ends.
    Then two routed recipients in one transaction, a bill over BILLS's
    quota, in both orders."""
    subject = "quota: killed, retry refused"
    data = bill(BILLS, subject, size=40000)
    res = kill_during_save(st, data, "quota kill")
    tap.ok(res is not None and not isinstance(res, dict), "quota kill: no LMTP answer")
    names = active(st)
    eid = names[0] if len(names) == 1 else "none"
    if not held_check(st, eid, "quota kill"):
        return
    body = state_of(st, eid)[3]
    ino = os.stat(st.path("spool", "active", eid)).st_ino
    cl = Client(st, [BILLS])
    t = traced(st, "retry refused", ["-e", "trace=rename", "-e",
                                     "inject=rename:error=EIO:when=1"], [cl.pid])
    if t is None:
        return
    no_free(st)
    cl.start(data).wait()
    t.stop()
    tap.ok(isinstance(cl.code(), int) and cl.code() >= 400, "K's retry: refused (its save failed)",
           diag=repr(cl.result))
    tap.is_(copies(st, subject), 0, "K: no copy")
    s = state_of(st, eid)
    there = os.path.exists(st.path("spool", "active", eid))
    tap.ok(s and s[0] == "held" and there and os.stat(st.path("spool", "active", eid)).st_ino == ino
           and s[3] == body, "the leftover still held in active/, untouched (not lost)",
           diag=repr(s and s[:3]))
    time.sleep(1.5)
    tap.is_(posts(rx, eid), [], "and not posted")
    if os.path.exists(st.path("spool", "active", eid)):
        past = time.time() - 5
        os.utime(st.path("spool", "active", eid), (past, past))
    tap.ok(wait_for(lambda: posts(rx, eid), timeout=5), "its hold ended: posted")
    time.sleep(1.5)
    tap.is_(posts(rx, eid), [body], "once, its bytes")

    for order in ([BILLS, GLOBEX], [GLOBEX, BILLS]):
        subject = "quota: two recipients %s first" % order[0].split("@")[1].split(".")[0]
        before = {r: copies(st, subject, r) for r in order}
        res, _ = lmtp_send(st, order, bill(BILLS, subject, size=100000))
        tap.ok(code_of(res, BILLS) >= 400 and GLOBEX not in res,
               "%s: BILLS refused (quota), GLOBEX 250" % subject, diag=repr(res))
        wait_for(lambda: [1 for _, _, b in list(rx.requests) if subject_of(b) == subject],
                 timeout=5)
        time.sleep(1.5)
        with rx.lock:
            rcpts = [json.loads(b)["data"]["envelope"]["rcpt_to"] for _, _, b in rx.requests
                     if subject_of(b) == subject]
        tap.is_(rcpts, [GLOBEX], "%s: one event posted, GLOBEX's" % subject)
        tap.is_({r: copies(st, subject, r) - before[r] for r in order}, {BILLS: 0, GLOBEX: 1},
                "%s: copies" % subject)
        tap.is_(active(st), [], "%s: nothing left in active/" % subject)


# -- another file system for the spool -------------------------------------

def test_noreplace(st, rx, what):
    """runner stopped: D1 released in active/ID; D2, the same bytes, with
    its save held back: active/ID still D1's file (a hold never replaces
    it); after D2's save, D2's event, released."""
    subject = "noreplace %s" % what
    data = bill(BILLS, subject)
    refused, _ = lmtp_send(st, [BILLS], data)
    names = active(st)
    tap.ok(refused == {} and len(names) == 1, "%s: D1 250, one event" % what)
    if len(names) != 1:
        return
    eid = names[0]
    path = st.path("spool", "active", eid)
    ino1, meta1 = os.stat(path).st_ino, read_event(path)[0]
    time.sleep(1.1)
    cl, t = slow_save(st, data, "%s: D2" % what, delay=1.5)
    if not cl:
        return
    s = state_of(st, eid)
    tap.ok(os.stat(path).st_ino == ino1 and s and s[0] == "released",
           "%s: during D2's save active/ID is still D1's released event" % what,
           diag=repr(s and s[:3]))
    cl.wait()
    t.stop()
    tap.is_(cl.code(), 250, "%s: D2: 250" % what)
    meta2 = read_event(path)[0] or {}
    s = state_of(st, eid)
    tap.ok(s and s[0] == "released" and meta2.get("created", 0) > meta1.get("created", 0),
           "%s: then D2's event there, released" % what, diag=repr(s and s[:3]))


def fs_stack(kind):
    with Stack("lmtp-webhook-hold-%s" % kind) as st:
        tap.stack = st
        spool = st.path("spool")
        os.makedirs(spool)
        if kind == "tmpfs":
            m = run(["mount", "-t", "tmpfs", "-o", "size=64m,mode=0755", "tmpfs", spool])
        else:
            img = st.path("spool.img")
            made = run(["truncate", "-s", "64M", img]).returncode == 0 \
                and run(["mkfs.ext4", "-q", "-F", img]).returncode == 0
            m = run(["mount", "-o", "loop", img, spool]) if made else None
        if not tap.ok(m is not None and m.returncode == 0, "%s mounted on the spool" % kind,
                      diag=m.stderr if m else "mkfs.ext4 failed"):
            return
        try:
            rx = Receiver()
            start(st, rx)
            runner = Runner(st)
            test_noreplace(st, rx, kind)
            runner.start()
            tap.ok(wait_for(lambda: active(st) == [], timeout=5), "%s: posted" % kind)
            subject = "%s: killed" % kind
            data = bill(BILLS, subject)
            eid = learn(st, rx, data)
            kill_during_save(st, data, "%s kill" % kind)
            held_check(st, eid, "%s kill" % kind)
            time.sleep(2.2)
            tap.is_(len(posts(rx, eid)), 1, "%s kill: the leftover not posted" % kind)
            os.utime(st.path("spool", "active", eid), (time.time() - 5,) * 2)
            tap.ok(wait_for(lambda: len(posts(rx, eid)) == 2 and active(st) == [], timeout=5),
                   "%s kill: its hold ended: posted" % kind)
            test_release_latency(st, rx, kind)
            runner.stop()
            rx.stop()
        finally:
            try:
                st.stop()               # nothing keeps the mount busy
            except Exception as e:
                tap.diag("stop: %s" % e)
            run(["umount", "-l", spool])


# -- stacks ------------------------------------------------------------------

def start(st, rx, fsync=None, quota=None):
    st.users[GLOBEX] = "x"
    start_spool_dovecot(st, "http://127.0.0.1:%d/ws/{1}/in" % rx.port, SECRET, PLUGIN_DIR,
                        fsync=fsync, quota=quota)
    # both mailboxes made (indexes, uidlist) before any attack
    for rcpt in (BILLS, GLOBEX):
        refused, _ = lmtp_send(st, [rcpt], bill(rcpt, "warm-up %s" % rcpt, size=100))
        if refused:
            raise SystemExit("warm-up delivery to %s refused: %r\n%s"
                             % (rcpt, refused, st.read_log("dovecot")[-2000:]))
    for n in active(st):
        os.unlink(st.path("spool", "active", n))


for tool in ("strace", "ss"):
    if shutil.which(tool) is None:
        tap.ok(False, "%s is installed" % tool)
        sys.exit(tap.done())

ONLY = os.environ.get("HOLD_ONLY", "")


def want(name):
    return not ONLY or name in ONLY.split(",")


if want("optimized"):
    with Stack("lmtp-webhook-hold-optimized") as st:
        tap.stack = st
        rx = Receiver()
        start(st, rx)
        runner = Runner(st)
        test_flush_pass_mid_save(st, rx, runner)
        test_same_bytes_held_fails(st, rx)
        test_withdraw_race(st, rx)
        runner.start()
        test_kill_during_save(st, rx, runner)
        test_kill_at_release(st, rx, runner)
        test_ops_mid_save(st, rx, runner)
        test_same_bytes_other_refused(st, rx, runner)
        fault_before_save(st, rx, "optimized, renameat2 (hold) EIO",
                          ["-e", "trace=renameat2", "-e", "inject=renameat2:error=EIO"],
                          "optimized hold rename EIO", "/active/")
        fault_before_save(st, rx, "optimized, utimensat (hold) EIO",
                          ["-e", "trace=utimensat", "-e", "inject=utimensat:error=EIO:when=1"],
                          "optimized hold utimensat EIO", "/tmp/reserve.")
        fault_noreplace_unsupported(st, rx)
        test_release_utimensat_eio(st, rx)
        test_id_with_other_rcpt(st, rx)
        test_sync_file_range_eio(st, rx)
        test_release_latency(st, rx, "optimized")
        test_two_rcpts_hold_fails(st, rx)
        test_active_removed(st, rx)
        test_not_boolean(st, rx)
        test_retry_then_save_fails(st, rx)
        runner.stop()
        rx.stop()

if want("always"):
    with Stack("lmtp-webhook-hold-always") as st:
        tap.stack = st
        rx = Receiver()
        start(st, rx, fsync="always")
        test_always_dirsync_race(st, rx)
        kdata = bill(BILLS, "always: killed during the save")
        res = kill_during_save(st, kdata, "always kill")
        knames = active(st)
        kid = knames[0] if len(knames) == 1 else "none"
        held_check(st, kid, "always kill")
        kbody = (state_of(st, kid) or (0, 0, 0, b""))[3]
        if kid in knames:
            os.rename(st.path("spool", "active", kid), st.path("kept-" + kid))
        fault_before_save(st, rx, "always, renameat2 (hold) EIO",
                          ["-e", "trace=renameat2", "-e", "inject=renameat2:error=EIO"],
                          "always hold rename EIO", "/active/", runner_on=False)
        fault_before_save(st, rx, "always, the file's fsync before the rename EIO",
                          ["-e", "trace=fsync", "-e", "inject=fsync:error=EIO:when=1"],
                          "always file fsync EIO", "/tmp/reserve.", runner_on=False)
        if os.path.exists(st.path("kept-" + kid)):
            os.rename(st.path("kept-" + kid), st.path("spool", "active", kid))
        runner = Runner(st)
        runner.start()
        time.sleep(1.5)
        tap.is_(posts(rx, kid), [], "always kill: the leftover not posted by the runner")
        os.utime(st.path("spool", "active", kid), (time.time() - 5,) * 2)
        tap.ok(wait_for(lambda: posts(rx, kid), timeout=5), "always kill: its hold ended: posted")
        time.sleep(1.2)
        tap.is_(posts(rx, kid), [kbody], "always kill: once, its bytes")
        test_release_latency(st, rx, "always")
        runner.stop()
        rx.stop()

if want("never"):
    with Stack("lmtp-webhook-hold-never") as st:
        tap.stack = st
        rx = Receiver()
        start(st, rx, fsync="never")
        runner = Runner(st)
        runner.start()
        fault_before_save(st, rx, "never, renameat2 (hold) EIO",
                          ["-e", "trace=renameat2", "-e", "inject=renameat2:error=EIO"],
                          "never hold rename EIO", "/active/")
        test_release_latency(st, rx, "never")
        runner.stop()
        rx.stop()

if want("quota"):
    with Stack("lmtp-webhook-hold-quota") as st:
        tap.stack = st
        rx = Receiver()
        start(st, rx, quota="100K")
        with open(st.path("dovecot", "users")) as f:     # GLOBEX: 10M
            users = f.read()
        with open(st.path("dovecot", "users"), "w") as f:
            f.write(users.replace("%s:{PLAIN}x::::::" % GLOBEX,
                                  "%s:{PLAIN}x::::::userdb_quota_rule=*:storage=10M" % GLOBEX))
        runner = Runner(st)
        runner.start()
        test_quota(st, rx, runner)
        runner.stop()
        rx.stop()

for kind in ("tmpfs", "ext4"):
    if want(kind):
        fs_stack(kind)

sys.exit(tap.done())
