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
import signal
import socket
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from mxstack import Stack  # noqa: E402
from mxtest import build_path, tap, wait_for  # noqa: E402
from mxwebhook import make_secret  # noqa: E402

POLICYD = build_path("policyd-ratelimit", "policyd-ratelimit")
SHIM = build_path("proxyv2-shim", "proxyv2-shim")
SPOOL = build_path("lmtp-webhook", "lmtp-webhook-spool")
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
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=3)
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        s.close()
    except OSError as e:
        return None, str(e)
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body.decode()


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
    # the earliest; 14.5 s leaves room for a loaded machine
    tap.ok(got and 9 <= took <= 14.5, "%s: %s stopped: /healthz 503 after %.1f s (9-14 s)"
           % (name, loop, took))
    tap.ok(status == 503 and body.startswith("not alive: %s has not run for " % loop)
           and body.endswith(" s\n"), "%s: the answer names the loop" % name, diag=body)
    tap.ok(wait_for(lambda: healthz(mport) == (200, "alive\n"), timeout=2.5, interval=0.1),
           "%s: %s let go: alive again within 2 s" % (name, loop))
    tap.ok(proc.poll() is None, "%s: still running" % name)


def check_stop(name, proc):
    proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(timeout=15)
    except Exception:
        code = None
    tap.is_(code, 0, "%s: SIGTERM: exits 0" % name)


def write(st, name, text):
    path = st.path("etc", name)
    with open(path, "w") as f:
        f.write(text)
    return path


def test_policyd(st):
    port, mport = st.port("policyd"), st.port("policyd-metrics")
    conf = write(st, "policyd.conf", "listen = inet:127.0.0.1:%d\nworkers = 2\n"
                 "metrics_listen = inet:127.0.0.1:%d\n"
                 "limit per_sender = sender rate=100000/1m count=messages\n" % (port, mport))
    proc = st.start_daemon("policyd", [POLICYD, "-f", "-c", conf], port=port)
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
    port, mport = st.port("shim"), st.port("shim-metrics")
    conf = write(st, "shim.conf", "workers = 2\nxclient_name_lookup = no\n"
                 "listener = 127.0.0.1:%d backend=127.0.0.1:%d mode=xclient "
                 "trusted=127.0.0.0/8\nmetrics_listen = inet:127.0.0.1:%d\n"
                 % (port, st.port("nobody"), mport))
    proc = st.start_daemon("shim", [SHIM, "-f", "-c", conf], port=mport)
    names = threads(proc.pid)
    tap.ok(names.get("worker 0") and names.get("worker 1"),
           "shim: its workers are named threads", diag=str(names))
    if names.get("worker 1"):
        check_stuck("shim", proc, names["worker 1"][0], "worker 1", mport)
    check_stop("shim", proc)


def test_spool(st):
    spool = st.path("spool")
    for sub in ("active", "dead", "tmp"):
        os.makedirs(os.path.join(spool, sub))
    secret = write(st, "secret", make_secret() + "\n")
    mport = st.port("spool-metrics")
    conf = write(st, "spool.conf", "spool_dir = %s\nsecret_file = %s\n"
                 "metrics_listen = inet:127.0.0.1:%d\n" % (spool, secret, mport))
    proc = st.start_daemon("spool", [SPOOL, "-c", conf, "-f", "run"], port=mport)
    check_stuck("spool", proc, proc.pid, "runner", mport)
    check_stop("spool", proc)


with Stack("liveness") as st:
    tap.stack = st
    test_policyd(st)
    test_shim(st)
    test_spool(st)

sys.exit(tap.done())
