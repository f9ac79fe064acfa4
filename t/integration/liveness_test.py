#!/usr/bin/python3
"""GET /healthz says whether the daemon's loops still turn, not only
that its HTTP thread answers (common/liveness.c):

- one thread of a running daemon is stopped on its own (ptrace: SEIZE
  then INTERRUPT stops that thread and no other) -- policyd-ratelimit's
  main loop (worker 0) and its worker 1, proxyv2-shim's worker 1,
  lmtp-webhook-spool run's loop. Once its last turn is more than 10 s
  old (9-14 s after the stop) /healthz turns 503
  "not alive: worker 1 has not run for N s" (naming that loop), while
  the endpoint itself keeps answering and the other loops keep serving
  (a policy request answered through worker 0 while worker 1 is stuck is
  not required: the kernel may hand the connection to either);
- once the thread is let go, /healthz is 200 "alive" again within 2 s;
- worker threads are named "worker N" (/proc/PID/task/TID/comm), the
  main thread keeps the program's name;
- after SIGTERM the loops end without /healthz calling the daemon stuck
  (it exits 0)."""

import ctypes
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from mxdaemons import (http_get, start_policyd, start_shim, start_spool_runner,  # noqa: E402
                       stop_status)
from mxstack import Stack  # noqa: E402
from mxtest import tap, wait_for  # noqa: E402

PTRACE_DETACH, PTRACE_SEIZE, PTRACE_INTERRUPT = 17, 0x4206, 0x4207
WALL = 0x40000000
libc = ctypes.CDLL(None, use_errno=True)
libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
libc.ptrace.restype = ctypes.c_long


class StoppedThread:
    """One thread of another process, stopped alone until release()."""

    def __init__(self, tid):
        self.tid = tid
        for request in (PTRACE_SEIZE, PTRACE_INTERRUPT):
            if libc.ptrace(request, tid, None, None) != 0:
                raise OSError(ctypes.get_errno(), "ptrace %#x %d" % (request, tid))
        os.waitpid(tid, WALL)           # in its ptrace-stop now

    def release(self):
        if libc.ptrace(PTRACE_DETACH, self.tid, None, None) != 0:
            raise OSError(ctypes.get_errno(), "ptrace detach %d" % self.tid)


def healthz(port):
    """(status, body) of GET /healthz; (None, error) if it fails."""
    got = http_get(port, "/healthz", timeout=3)
    if got is None or got[0] == "error":
        return None, str(got)
    return int(got[0].split(" ")[1]), got[1]


def threads(pid):
    """{name: [tid, ...]} of a process."""
    out = {}
    for tid in os.listdir("/proc/%d/task" % pid):
        with open("/proc/%d/task/%s/comm" % (pid, tid)) as f:
            out.setdefault(f.read().strip(), []).append(int(tid))
    return out


def check_stuck(name, proc, tid, loop, mport):
    """Stop tid alone; /healthz must name loop within 10-14 s, then recover."""
    tap.is_(healthz(mport), (200, "alive\n"), "%s: alive before" % name)
    t0 = time.monotonic()
    stopped = StoppedThread(tid)
    try:
        got = wait_for(lambda: healthz(mport)[0] == 503, timeout=20, interval=0.25)
        took = time.monotonic() - t0
        status, body = healthz(mport)
    finally:
        stopped.release()
    # its last turn was at most 1 s before the stop: 9-10 s after it at
    # the earliest (the check); the upper bound only says "seen", with
    # room for a loaded machine's late checker
    tap.ok(got and 9 <= took <= 19.5, "%s: %s stopped: /healthz 503 after %.1f s (9-19.5 s)"
           % (name, loop, took))
    tap.ok(status == 503 and body.startswith("not alive: %s has not run for " % loop)
           and body.endswith(" s\n"), "%s: the answer names the loop" % name, diag=body)
    tap.ok(wait_for(lambda: healthz(mport) == (200, "alive\n"), timeout=6, interval=0.1),
           "%s: %s let go: alive again within 6 s" % (name, loop))
    tap.ok(proc.poll() is None, "%s: still running" % name)


def check_stop(name, proc):
    tap.is_(stop_status(proc), 0, "%s: SIGTERM: exits 0" % name)


def test_policyd(st):
    proc, _, mport = start_policyd(st, "policyd", workers=2)
    names = threads(proc.pid)
    tap.ok(names.get("worker 1") and "worker 0" not in names
           and proc.pid in names.get("policyd-ratelim", []),
           "policyd: worker 1 is a named thread; the main thread (worker 0) keeps the "
           "program's name", diag=str(names))
    check_stuck("policyd", proc, proc.pid, "worker 0", mport)
    if names.get("worker 1"):
        check_stuck("policyd", proc, names["worker 1"][0], "worker 1", mport)
    check_stop("policyd", proc)


def test_shim(st):
    proc, _, mport = start_shim(st, "shim", st.port("nobody"), workers=2)
    names = threads(proc.pid)
    tap.ok(names.get("worker 0") and names.get("worker 1"),
           "shim: its workers are named threads", diag=str(names))
    if names.get("worker 1"):
        check_stuck("shim", proc, names["worker 1"][0], "worker 1", mport)
    check_stop("shim", proc)


def test_spool(st):
    proc, mport = start_spool_runner(st, "spool")
    check_stuck("spool", proc, proc.pid, "runner", mport)
    check_stop("spool", proc)


with Stack("liveness") as st:
    tap.stack = st
    test_policyd(st)
    test_shim(st)
    test_spool(st)

sys.exit(tap.done())
