#!/usr/bin/python3
# mxkit-test: alone (liveness thresholds of seconds, and 30,000 events dead-lettered against /healthz polls: another file's load moves them)
"""GET /healthz from the side of an attacker and an unlucky operator:
can it be made to lie, in either direction? (common/liveness.c,
doc/metrics.md "Health and readiness probes"). liveness_test.py already
stops one thread with ptrace and checks the answer; this file does not
repeat that, it attacks around it:

False "not alive" (a healthy daemon restarted = an outage):
- policyd-ratelimit (2 workers) kept busy 12 s by 16 connections of
  pipelined policy requests: /healthz polled every 0.5 s, never 503;
- proxyv2-shim (2 workers) kept busy 12 s by PROXY connections to a
  refusing backend plus 300 idle connections: never 503;
- lmtp-webhook-spool run with 32 attempts in flight to a receiver that
  accepts and never answers (timeout 25 s): never 503 for 12 s; then
  SIGTERM with those attempts draining: never 503 (readyz "stopping"),
  exit 0 once they time out;
- lmtp-webhook-spool run asked to flush (SIGUSR1, as `flush` does) a
  spool of 30,000 events past dead_letter_after (an outage's backlog):
  the runner works through them; /healthz must stay 200;
- a reload storm (SIGHUP every 100 ms for 20 s) on policyd, shim and
  the spool runner at once: never 503, everything still serves;
- the clock: liveness.c's stamps are CLOCK_MONOTONIC (read from the
  source; the host clock is not ours to step).

False "alive" (a stuck daemon left serving nothing):
- policyd's worker 1 stopped, SIGHUP while it is stopped (worker 0
  reloads and queues the new configuration to it), a second SIGHUP
  after the 503: 503 naming worker 1 within 9-14 s, the exact answer
  "not alive: worker 1 has not run for N s" with N within the stop's
  age, and it stays 503 over the reload; 200 again within 2.5 s of
  the release, the queued reload applied;
- proxyv2-shim's worker 1 stopped, SIGHUP (the main thread waits for
  every worker to take the configuration): the same; the reload is
  finished once worker 1 runs, SIGTERM then exits 0;
- lmtp-webhook-spool's runner held in one poll() for 16 s (strace
  delay_enter on that thread only), SIGHUP meanwhile: 503 naming the
  runner, 200 once the call returns;
- policyd's worker 1 thread ended (gdb makes it run exit(2) for itself, its
  listening socket stays open): 503 naming worker 1 within 14 s, and
  it stays 503;
- policyd `workers` changed on reload (2 -> 3 -> 1; the man page: a
  restart is needed): the threads do not change, no loop named for a
  worker that does not exist ("worker 2" never turns 503), and worker 1,
  still serving, is still watched (stopped: 503 naming it)."""

import ctypes
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from mxdaemons import (MinimalDaemon, http_get, kill_all, policy_answered,  # noqa: E402
                       POLICY_REQUEST, stop_status, write)
from mxstack import Stack  # noqa: E402
from mxtest import src_path, tap, wait_for  # noqa: E402
from mxwebhook import make_secret  # noqa: E402

PTRACE_DETACH, PTRACE_SEIZE, PTRACE_INTERRUPT = 17, 0x4206, 0x4207
WALL = 0x40000000
libc = ctypes.CDLL(None, use_errno=True)
libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
libc.ptrace.restype = ctypes.c_long

ANSWER = re.compile(r"not alive: (.+) has not run for ([0-9]+) s\n\Z")


class StoppedThread:
    """One thread of another process, stopped alone until release()."""

    def __init__(self, tid):
        self.tid = tid
        for request in (PTRACE_SEIZE, PTRACE_INTERRUPT):
            if libc.ptrace(request, tid, None, None) != 0:
                raise OSError(ctypes.get_errno(), "ptrace %#x %d" % (request, tid))
        os.waitpid(tid, WALL)

    def release(self):
        if libc.ptrace(PTRACE_DETACH, self.tid, None, None) != 0:
            raise OSError(ctypes.get_errno(), "ptrace detach %d" % self.tid)


def healthz(port, timeout=3):
    """(status, body) of GET /healthz; (None, why) if it fails."""
    try:
        got = http_get(port, "/healthz", timeout=timeout)
    except OSError as e:
        return None, str(e)
    if got is None or got[0] == "error":
        return None, str(got)
    return int(got[0].split(" ")[1]), got[1]


def readyz(port):
    try:
        got = http_get(port, "/readyz", timeout=3)
    except OSError as e:
        return None, str(e)
    if got is None or got[0] == "error":
        return None, str(got)
    return int(got[0].split(" ")[1]), got[1]


def threads(pid):
    """{name: [tid, ...]} of a process."""
    out = {}
    try:
        for tid in os.listdir("/proc/%d/task" % pid):
            try:
                with open("/proc/%d/task/%s/comm" % (pid, tid)) as f:
                    out.setdefault(f.read().strip(), []).append(int(tid))
            except OSError:
                pass
    except OSError:
        pass
    return out


class Poller:
    """GET /healthz of each {name: port} every 0.5 s in a thread:
    records (seconds since start, name, status, body)."""

    def __init__(self, ports, interval=0.5):
        self.ports, self.interval = ports, interval
        self.t0 = time.monotonic()
        self.rows = []
        self.stop_ev = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop_ev.is_set():
            for name, port in self.ports.items():
                status, body = healthz(port)
                self.rows.append((time.monotonic() - self.t0, name, status, body))
            self.stop_ev.wait(self.interval)

    def stop(self):
        self.stop_ev.set()
        self.thread.join(10)
        return self.rows

    def bad(self, name=None):
        return [r for r in self.rows if (name is None or r[1] == name) and r[2] != 200]

    def count(self, name=None):
        return len([r for r in self.rows if name is None or r[1] == name])


def show(rows, limit=12):
    return "\n".join("%6.1fs %s %s %r" % r for r in rows[:limit])


def started(st, name, proc, timeout=20):
    ok = wait_for(lambda: "started:" in st.read_log(name) or proc.poll() is not None,
                  timeout=timeout)
    return ok and proc.poll() is None


def start(st, d, extra="", wait_ready=True):
    d.write(extra=extra)
    proc = st.start_daemon(d.name, d.argv(foreground=True))
    if d.kind in ("policyd", "shim"):
        if not started(st, d.name, proc):
            raise RuntimeError("%s did not start: %s" % (d.name, st.read_log(d.name)))
    if wait_ready and not wait_for(lambda: readyz(d.mport)[0] == 200, timeout=20):
        raise RuntimeError("%s not ready: %s %s" % (d.name, readyz(d.mport),
                                                    st.read_log(d.name)))
    return proc


def wait_503(mport, timeout=20):
    """First 503 of /healthz within timeout: (seconds, body) or None."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        status, body = healthz(mport)
        if status == 503:
            return time.monotonic() - t0, body
        time.sleep(0.2)
    return None


def check_answer(name, body, loop, age):
    """body is exactly the documented answer naming loop, N within age."""
    m = ANSWER.match(body or "")
    tap.ok(m and m.group(1) == loop and 10 <= int(m.group(2)) <= age + 1,
           "%s: the answer is \"not alive: %s has not run for N s\" with 10 <= N <= %.0f"
           % (name, loop, age + 1), diag=repr(body))


# ------------------------------------------------------ false "not alive"

def test_policyd_flood(st):
    d = MinimalDaemon(st, "policyd", "flood")
    # a limit nobody reaches: every request takes the full path
    proc = start(st, d, "workers = 2\nlimit per_client = client_address rate=100000000/1m "
                 "count=messages\n")
    stop = threading.Event()
    answered = [0]
    errors = []
    lock = threading.Lock()
    batch = 200

    def client():
        try:
            with socket.create_connection(("127.0.0.1", d.port), timeout=10) as c:
                buf = b""
                while not stop.is_set():
                    c.sendall(POLICY_REQUEST * batch)
                    got = 0
                    while got < batch:
                        chunk = c.recv(65536)
                        if not chunk:
                            raise OSError("closed")
                        buf += chunk
                        n = buf.count(b"\n\n")
                        got += n
                        buf = buf[buf.rfind(b"\n\n") + 2:] if n else buf
                    with lock:
                        answered[0] += got
        except OSError as e:
            errors.append(str(e))

    workers = [threading.Thread(target=client, daemon=True) for _ in range(16)]
    poll = Poller({"policyd": d.mport})
    for w in workers:
        w.start()
    time.sleep(12)
    stop.set()
    for w in workers:
        w.join(15)
    rows = poll.stop()
    tap.ok(answered[0] > 20000 and not errors,
           "policyd flood: 16 connections of pipelined requests for 12 s answered "
           "(%d answers)" % answered[0], diag="; ".join(errors[:3]))
    tap.ok(len(rows) >= 15 and not poll.bad(),
           "policyd flood: /healthz 200 at every poll while both workers are busy for 12 s "
           "(%d polls)" % len(rows), diag=show(poll.bad() or rows))
    tap.ok(policy_answered(d.port) and healthz(d.mport) == (200, "alive\n"),
           "policyd flood: serves and alive after it")
    tap.is_(stop_status(proc), 0, "policyd flood: SIGTERM: exits 0")
    kill_all(d.conf)


def test_shim_flood(st):
    d = MinimalDaemon(st, "shim", "flood")
    proc = start(st, d, "workers = 2\n")
    stop = threading.Event()
    done = [0]
    lock = threading.Lock()
    header = b"PROXY TCP4 192.0.2.1 127.0.0.1 4242 25\r\n"

    def client():
        while not stop.is_set():
            try:
                with socket.create_connection(("127.0.0.1", d.port), timeout=10) as c:
                    c.sendall(header)
                    while c.recv(4096):
                        pass
                with lock:
                    done[0] += 1
            except OSError:
                time.sleep(0.01)

    idle = []
    for _ in range(300):
        try:
            idle.append(socket.create_connection(("127.0.0.1", d.port), timeout=5))
        except OSError:
            break
    workers = [threading.Thread(target=client, daemon=True) for _ in range(8)]
    poll = Poller({"shim": d.mport})
    for w in workers:
        w.start()
    time.sleep(12)
    stop.set()
    for w in workers:
        w.join(15)
    rows = poll.stop()
    for s in idle:
        s.close()
    tap.ok(done[0] > 1000, "shim flood: PROXY connections handled for 12 s (%d, %d idle "
           "beside)" % (done[0], len(idle)))
    tap.ok(len(rows) >= 15 and not poll.bad(),
           "shim flood: /healthz 200 at every poll while both workers are busy for 12 s "
           "(%d polls)" % len(rows), diag=show(poll.bad() or rows))
    tap.is_(stop_status(proc), 0, "shim flood: SIGTERM: exits 0")
    kill_all(d.conf)


class Silent:
    """A receiver that accepts, reads, and never answers."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(256)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(c)
            threading.Thread(target=self._drain, args=(c,), daemon=True).start()

    def _drain(self, c):
        try:
            while c.recv(65536):
                pass
        except OSError:
            pass

    def close(self):
        self.sock.close()
        for c in self.conns:
            try:
                c.close()
            except OSError:
                pass


def event_bytes(eid, url, body, attempts=0, created=None):
    head = {"id": eid, "url": url, "created": int(created or time.time()),
            "attempts": attempts, "next_attempt": 0, "last_error": None,
            "body_length": len(body)}
    return json.dumps(head, separators=(",", ":")).encode() + b"\n" + body


def put_events(spool, count, url, prefix, attempts=0, created=None, mtime=None):
    """count events written in tmp/, then renamed into active/."""
    names = []
    for i in range(count):
        eid = "%s%06d" % (prefix, i)
        tmp = os.path.join(spool, "tmp", "put." + eid)
        with open(tmp, "wb") as f:
            f.write(event_bytes(eid, url, b'{"type":"t","n":%d}' % i, attempts, created))
        if mtime:
            os.utime(tmp, (mtime, mtime))
        names.append((tmp, eid))
    for tmp, eid in names:
        os.rename(tmp, os.path.join(spool, "active", eid))


def count_dir(path):
    try:
        return len(os.listdir(path))
    except OSError:
        return -1


def test_spool_silent_then_drain(st):
    rx = Silent()
    d = MinimalDaemon(st, "spool", "silent")
    proc = start(st, d, "timeout = 25s\nconcurrency = 32\n")
    put_events(d.spool, 3000, "http://127.0.0.1:%d/hook" % rx.port, "silent")
    got32 = wait_for(lambda: len(rx.conns) >= 32, timeout=10)
    poll = Poller({"runner": d.mport})
    time.sleep(12)
    rows = list(poll.rows)
    tap.ok(got32 and len(rows) >= 15 and not poll.bad(),
           "spool, 32 attempts to a receiver that never answers: /healthz 200 at every poll "
           "for 12 s (%d connections, %d polls)" % (len(rx.conns), len(rows)),
           diag=show(poll.bad() or rows))
    t_term = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    stopping = wait_for(lambda: readyz(d.mport)[0] == 503, timeout=5)
    rd = readyz(d.mport)
    n0 = len(poll.rows)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        pass
    took = time.monotonic() - t_term
    drain_rows = poll.stop()[n0:]
    tap.ok(stopping and rd[1].strip() == "not ready: stopping",
           "spool: after SIGTERM /readyz says stopping", diag=repr(rd))
    tap.ok(drain_rows and not [r for r in drain_rows if r[2] == 503],
           "spool: while the attempts drain after SIGTERM (%.1f s) /healthz never 503 "
           "(%d polls answered)" % (took, len([r for r in drain_rows if r[2]])),
           diag=show([r for r in drain_rows if r[2] == 503]))
    tap.is_(proc.poll(), 0, "spool: exits 0 once the attempts time out (%.1f s after TERM)"
            % took)
    kill_all(d.conf)
    rx.close()


def test_spool_dead_letter_flush(st):
    rx = Silent()
    d = MinimalDaemon(st, "spool", "deadflush")
    proc = start(st, d, "timeout = 5s\n")
    n = 30000
    future = time.time() + 3600          # mtime: next attempt in an hour
    put_events(d.spool, n, "http://127.0.0.1:%d/hook" % rx.port, "old", attempts=5,
               created=time.time() - 5 * 86400, mtime=future)
    time.sleep(2)                        # the runner saw them (not due)
    tap.ok(healthz(d.mport) == (200, "alive\n") and count_dir(os.path.join(d.spool, "dead")) == 0,
           "spool: 30,000 events past dead_letter_after waiting, not due: alive, none dead yet")
    poll = Poller({"runner": d.mport})
    t0 = time.monotonic()
    proc.send_signal(signal.SIGUSR1)     # what `lmtp-webhook-spool flush` does
    # the promise is /healthz while it works, not its speed (about 45 s
    # here; 90 s was once not enough on a loaded machine)
    done = wait_for(lambda: count_dir(os.path.join(d.spool, "dead")) >= n, timeout=240,
                    interval=0.5)
    took = time.monotonic() - t0
    time.sleep(1)
    rows = poll.stop()
    tap.ok(done, "spool: the flush moved all 30,000 to dead/ (%.1f s)" % took,
           diag="dead/ holds %d" % count_dir(os.path.join(d.spool, "dead")))
    tap.ok(not poll.bad(),
           "spool: /healthz 200 at every poll while the runner dead-letters 30,000 events "
           "(%.1f s, %d polls)" % (took, len(rows)), diag=show(poll.bad()))
    kill_all(d.conf)
    rx.close()


def test_reload_storm(st):
    p = MinimalDaemon(st, "policyd", "storm")
    s = MinimalDaemon(st, "shim", "storm")
    r = MinimalDaemon(st, "spool", "storm")
    procs = {"policyd": start(st, p, "workers = 2\n"), "shim": start(st, s, "workers = 2\n"),
             "spool": start(st, r)}
    ports = {"policyd": p.mport, "shim": s.mport, "spool": r.mport}
    poll = Poller(ports)
    t0 = time.monotonic()
    sent = 0
    while time.monotonic() - t0 < 20:
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGHUP)
        sent += 1
        time.sleep(0.1)
    time.sleep(3)
    poll.stop()
    for name, d in (("policyd", p), ("shim", s), ("spool", r)):
        n = poll.count(name)
        tap.ok(procs[name].poll() is None and n >= 30 and not poll.bad(name),
               "reload storm (%d SIGHUP in 20 s): %s /healthz 200 at each of %d polls"
               % (sent, name, n), diag=show(poll.bad(name)) + "\n"
               + st.read_log(d.name)[-600:])
    tap.ok(policy_answered(p.port) and s.serves(),
           "reload storm: policyd answers, the shim accepts after it")
    for name, d in (("policyd", p), ("shim", s), ("spool", r)):
        tap.is_(stop_status(procs[name]), 0, "reload storm: %s SIGTERM: exits 0" % name)
        kill_all(d.conf)


def test_clock():
    """liveness reads the daemons' one monotonic clock (daemon_mono_ms(),
    common/daemon.c; clock_step_test steps the wall clock under running
    daemons)"""
    with open(src_path("common", "liveness.c")) as f:
        text = f.read()
    with open(src_path("common", "daemon.c")) as f:
        daemon = f.read()
    mono = re.search(r"daemon_mono_ms\(void\)\s*\{(.*?)\n\}", daemon, re.S)
    tap.ok(mono and "CLOCK_MONOTONIC" in mono.group(1) and "daemon_mono_ms()" in text
           and not re.search(r"\btime\(", text) and "CLOCK_REALTIME" not in text,
           "liveness stamps and ages are CLOCK_MONOTONIC (a wall-clock step changes nothing)")


# ------------------------------------------------------ false "alive"

def stuck_across_reload(st, d, proc, tid, loop, reloaded_line):
    """tid stopped, SIGHUP 2 s later; 503 naming loop; SIGHUP again;
    release: 200 again and the reload applied."""
    name = d.name
    before = st.read_log(name).count(reloaded_line)
    tap.is_(healthz(d.mport), (200, "alive\n"), "%s: alive before" % name)
    t0 = time.monotonic()
    stopped = StoppedThread(tid)
    try:
        time.sleep(2)
        proc.send_signal(signal.SIGHUP)
        got = wait_503(d.mport, timeout=20)
        age = time.monotonic() - t0
        tap.ok(got and 9 <= got[0] + 2 <= 14.5,
               "%s: %s stopped, SIGHUP: 503 after %.1f s (9-14 s)"
               % (name, loop, got[0] + 2 if got else -1), diag=repr(got))
        if got:
            check_answer(name, got[1], loop, age)
        proc.send_signal(signal.SIGHUP)
        time.sleep(2)
        after = [healthz(d.mport) for _ in range(3)]
        tap.ok(all(a[0] == 503 and ANSWER.match(a[1]) and ANSWER.match(a[1]).group(1) == loop
                   for a in after),
               "%s: a second SIGHUP while %s is stopped: still 503 naming it" % (name, loop),
               diag=repr(after))
    finally:
        stopped.release()
    tap.ok(wait_for(lambda: healthz(d.mport) == (200, "alive\n"), timeout=2.5, interval=0.1),
           "%s: %s let go: alive again within 2.5 s" % (name, loop), diag=repr(healthz(d.mport)))
    tap.ok(wait_for(lambda: st.read_log(name).count(reloaded_line) > before, timeout=5),
           "%s: the reload finished once %s ran" % (name, loop),
           diag=st.read_log(name)[-800:])


def test_policyd_stuck_reload(st):
    d = MinimalDaemon(st, "policyd", "stuckhup")
    proc = start(st, d, "workers = 2\n")
    w1 = threads(proc.pid).get("worker 1")
    if not w1:
        tap.ok(False, "policyd: a thread named worker 1", diag=repr(threads(proc.pid)))
        return
    stuck_across_reload(st, d, proc, w1[0], "worker 1", "configuration reloaded")
    tap.is_(stop_status(proc), 0, "policyd stuck across reload: SIGTERM: exits 0")
    kill_all(d.conf)


def test_shim_stuck_reload(st):
    d = MinimalDaemon(st, "shim", "stuckhup")
    proc = start(st, d, "workers = 2\n")
    w1 = threads(proc.pid).get("worker 1")
    if not w1:
        tap.ok(False, "shim: a thread named worker 1", diag=repr(threads(proc.pid)))
        return
    stuck_across_reload(st, d, proc, w1[0], "worker 1", "configuration reloaded")
    tap.is_(stop_status(proc), 0, "shim stuck across reload: SIGTERM: exits 0")
    kill_all(d.conf)


def test_runner_in_syscall(st):
    d = MinimalDaemon(st, "spool", "syscall")
    proc = start(st, d)
    tap.is_(healthz(d.mport), (200, "alive\n"), "spool: alive before")
    # the runner is the main thread: strace -p traces that thread only
    tracer = subprocess.Popen(["strace", "-qq", "-o", "/dev/null", "-p", str(proc.pid),
                               "-e", "trace=poll,ppoll",
                               "-e", "inject=poll,ppoll:delay_enter=16000000:when=3"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        t0 = time.monotonic()
        time.sleep(2)
        proc.send_signal(signal.SIGHUP)
        got = wait_503(d.mport, timeout=20)
        age = time.monotonic() - t0
        tap.ok(got and 8.5 <= got[0] + 2 <= 14.5,
               "spool: runner held 16 s in poll(), SIGHUP meanwhile: 503 after %.1f s"
               % (got[0] + 2 if got else -1), diag=repr(got))
        if got:
            check_answer("spool", got[1], "runner", age + 1)
        back = wait_for(lambda: healthz(d.mport) == (200, "alive\n"), timeout=15, interval=0.2)
        took = time.monotonic() - t0
        tap.ok(back and took <= 16 + 3.5,
               "spool: alive again once the call returns (%.1f s after the hold began)" % took)
    finally:
        tracer.terminate()
        tracer.wait(10)
    tap.is_(stop_status(proc), 0, "spool held in a call: SIGTERM: exits 0")
    kill_all(d.conf)


def test_worker_thread_gone(st):
    d = MinimalDaemon(st, "policyd", "gone")
    proc = start(st, d, "workers = 2\n")
    w1 = threads(proc.pid).get("worker 1")
    if not w1:
        tap.ok(False, "policyd: a thread named worker 1", diag=repr(threads(proc.pid)))
        return
    tid = w1[0]
    # the thread, stopped in its epoll_wait(), made to run exit(2) (this
    # thread only) at that syscall instruction once gdb detaches: its
    # listening socket stays open, its loop is gone
    script = ("python\nimport gdb\n"
              "th = [t for t in gdb.selected_inferior().threads() if t.ptid[1] == %d][0]\n"
              "th.switch()\n"
              "pc = int(gdb.parse_and_eval('$pc'))\n"
              "if bytes(gdb.selected_inferior().read_memory(pc - 2, 2)) == b'\\x0f\\x05':\n"
              "    gdb.execute('set $rax = 60')\n"
              "    gdb.execute('set $rdi = 0')\n"
              "    gdb.execute('set $pc = %%d' %% (pc - 2))\n"
              "    print('EXIT-SET')\n"
              "end\n" % tid)
    path = write(st, "gone.gdb", script)
    t0 = time.monotonic()
    res = subprocess.run(["gdb", "-p", str(proc.pid), "-batch", "-nx", "-x", path],
                         capture_output=True, text=True, timeout=30)
    gone = wait_for(lambda: not os.path.exists("/proc/%d/task/%d" % (proc.pid, tid)), timeout=5)
    tap.ok(gone and proc.poll() is None, "policyd: worker 1's thread ended, the process runs",
           diag=(res.stdout + res.stderr)[-1500:])
    if not gone:
        kill_all(d.conf)
        return
    got = wait_503(d.mport, timeout=20)
    age = time.monotonic() - t0
    tap.ok(got and got[0] <= 14.5, "policyd: worker 1 gone: 503 within 14 s (%.1f s)"
           % (got[0] if got else -1), diag=repr(got))
    if got:
        check_answer("policyd worker gone", got[1], "worker 1", age)
    time.sleep(3)
    tap.ok(healthz(d.mport)[0] == 503, "policyd: worker 1 gone: still 503 3 s later")
    kill_all(d.conf)


def test_workers_reload(st):
    d = MinimalDaemon(st, "policyd", "nworkers")
    proc = start(st, d, "workers = 2\n")
    before = sorted(threads(proc.pid))
    d.write(extra="workers = 3\n")
    proc.send_signal(signal.SIGHUP)
    time.sleep(1)
    d.write(extra="workers = 1\n")
    proc.send_signal(signal.SIGHUP)
    time.sleep(1)
    after = sorted(threads(proc.pid))
    log = st.read_log(d.name)
    tap.ok(after == before and "worker 1" in after and "worker 2" not in after,
           "policyd workers 2 -> 3 -> 1 on reload: the threads do not change (a restart is "
           "needed)", diag="before %r after %r\n%s" % (before, after, log[-600:]))
    tap.ok("restart" in log, "policyd: the log says the workers change needs a restart",
           diag=log[-600:])
    w1 = threads(proc.pid).get("worker 1")
    if not w1:
        kill_all(d.conf)
        return
    # 11 s since the first reload passes in this window: a phantom
    # "worker 2" registered by it and never turning would be named
    t0 = time.monotonic()
    stopped = StoppedThread(w1[0])
    try:
        got = wait_503(d.mport, timeout=20)
        age = time.monotonic() - t0
    finally:
        stopped.release()
    tap.ok(got and 9 <= got[0] <= 14.5,
           "policyd after the reloads: worker 1 (still serving) stopped: 503 after %.1f s"
           % (got[0] if got else -1), diag=repr(got))
    if got:
        check_answer("policyd after workers reload", got[1], "worker 1", age)
    tap.ok(wait_for(lambda: healthz(d.mport) == (200, "alive\n"), timeout=2.5, interval=0.1),
           "policyd after the reloads: worker 1 let go: alive again (no stale loop)",
           diag=repr(healthz(d.mport)))
    tap.is_(stop_status(proc), 0, "policyd after the reloads: SIGTERM: exits 0")
    kill_all(d.conf)


def main(st):
    os.makedirs(st.path("run"), exist_ok=True)
    os.makedirs(st.path("etc"), exist_ok=True)
    write(st, "secret", make_secret() + "\n")
    test_clock()
    for test in (test_policyd_flood, test_shim_flood, test_spool_silent_then_drain,
                 test_spool_dead_letter_flush, test_reload_storm, test_policyd_stuck_reload,
                 test_shim_stuck_reload, test_runner_in_syscall, test_worker_thread_gone,
                 test_workers_reload):
        t = time.monotonic()
        try:
            test(st)
        except Exception as e:          # one broken test must not hide the others
            tap.ok(False, "%s: ran to its end" % test.__name__, diag="%s: %s" % (type(e).__name__, e))
        tap.diag("%s: %.1f s" % (test.__name__, time.monotonic() - t))


with Stack("liveattack") as st:
    tap.stack = st
    main(st)

sys.exit(tap.done())
