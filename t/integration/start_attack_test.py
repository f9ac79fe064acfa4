#!/usr/bin/python3
# mxkit-test: long (started first)
"""An outside attacker and an unlucky operator against the detached start
of the four daemons (common/daemon.c daemon_detach(), skeleton.c) and its
start_timeout:

- start_timeout at and past its bounds, in every unit and spelling, for
  all four with -t, and a start (not -t) with a value past them: 1s..1d
  accepted, anything else refused naming start_timeout, nothing started.
- a daemon held (strace delays the child's setsid()) just under
  start_timeout, all four: the start returns exit 0 after the hold, and
  at that moment /readyz is 200 and the protocol port answers; held just
  over it (2.6 s for 2s): exit 1 saying so, nothing running; held after
  it recorded its pid (in initgroups(), user = nobody): the pid file
  goes too.
- held past start_timeout = 1s (shim, milter): the starter says so
  naming start_timeout, exits 1 within TERM + 5 s + slack, nothing runs,
  no pid file; then a plain start at once exits 0 and serves (the killed
  daemon left no lock, no port).
- the same with the starter's stdout and stderr closed, and with its
  stderr a pipe whose reader is gone: exit 1, nothing left running.
- SIGTERM, SIGINT, SIGHUP sent to the starting command while the daemon
  is held: TERM/INT stop the daemon (nothing left running, no pid file),
  HUP reloads it (it serves on); and TERM to a starter whose daemon is
  held past start_timeout: exit 1, nothing running.
- SIGTERM to the starter while it is held before its fork (bind()):
  the daemon stops all the same.
- the detached daemon SIGKILLed (the OOM killer, a crash) while held,
  before and after it recorded its pid: the starter exits 1 but leaves
  the pid file (empty, or naming the dead pid when it was recorded) and
  says nothing about the signal (daemon_detach() only calls failed() on
  a timeout). FAILS: promise 2.
- a second starter while the first's daemon is held: exit 1 at once
  naming the lock; the first then serves, alone. lmtp-webhook-spool
  without pid_file: a second run names the holder; a flush during the
  hold (it signals the starter, whose pid runner.lock holds) neither
  kills the daemon nor fails.
- start_timeout changed on a reload (SIGHUP): named as needing a
  restart, the daemon serves on; a bad value: the reload is refused
  naming it, the daemon serves on.
- lmtp-webhook-spool with 20000 files in active/ and in tmp/: /readyz is
  200 when the start returns.
- lmtp-webhook-spool with 3000 non-events in active/ (each moved to
  dead/ with an error line on the starter's stderr before it serves) and
  its stderr a pipe read only once the start ends: the runner blocks in
  write(2) once 64 KiB are unread and never serves; the starter's own
  "did not serve within start_timeout" then blocks on the same pipe
  before its TERM and KILL, so start_timeout never ends the start.
  FAILS: promises 1 and 3.
- runner.lock owned by root (or another uid), mode 0600, the spool run
  and flush as nobody: exit 1 naming the owner's uid and "chown".
"""

import os
import re
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from mxstack import Stack  # noqa: E402
from mxtest import tap, wait_for  # noqa: E402
from mxdaemons import (MinimalDaemon, SPOOL, alive, children, daemons_running, read_pid, readyz,  # noqa: E402
                       stop_detached, write)
from mxwebhook import make_secret  # noqa: E402
import mxdkim  # noqa: E402


class Held:
    """d started detached under strace, its child held hold_s seconds in
    setsid() (only the detached child calls it): the starter's exit
    status lands in a file (strace itself lives as long as the daemon)."""

    def __init__(self, st, d, hold_s, label, redir="", syscall="setsid", action=None):
        """action: strace's injection instead of the hold (signal=SIG...)."""
        self.d, self.hold = d, hold_s
        self.rcfile = st.path("run", "%s-%s.rc" % (d.name, label))
        self.errfile = st.path("log", "%s-%s.err" % (d.name, label))
        if os.path.exists(self.rcfile):
            os.unlink(self.rcfile)
        err = open(self.errfile, "w")
        script = '"$@" %s; echo $? > %s' % (redir, self.rcfile)
        self.began = time.monotonic()
        self.proc = subprocess.Popen(
            ["strace", "-f", "-qq", "-o", "/dev/null", "-e", "trace=%s" % syscall, "-e",
             "inject=%s:%s" % (syscall, action or "delay_enter=%d" % int(hold_s * 1000000)),
             "sh", "-c", script, "sh"] + d.argv(),
            stdout=subprocess.DEVNULL, stderr=err, stdin=subprocess.DEVNULL, cwd=st.dir)
        err.close()
        self.took = None

    def starter(self):
        """the starting command's pid (sh's child), once it runs."""
        for sh in children(self.proc.pid):
            kids = children(sh)
            if kids:
                return kids[0]
        return None

    def daemon(self):
        """the detached daemon's pid (the starter's child)."""
        starter = self.starter()
        kids = children(starter) if starter else []
        return kids[0] if kids else None

    def rc(self, timeout):
        def got():
            try:
                with open(self.rcfile) as f:
                    text = f.read()
            except OSError:
                return None
            return text if text.endswith("\n") else None
        text = wait_for(got, timeout=timeout, interval=0.05)
        if text is None:
            return None
        self.took = time.monotonic() - self.began
        return int(text)

    def stderr(self):
        with open(self.errfile, errors="replace") as f:
            return f.read()

    def finish(self):
        self.d.clean()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# ------------------------------------------------------ the bounds

def test_bounds(st, daemons):
    good = ["1s", "1000ms", "1", "86400", "86400s", "86400000ms", "1440m", "24h", "1d",
            "01s"]
    bad = ["999ms", "0", "0s", "86401s", "86400001ms", "1441m", "25h", "2d", "1w", "-1s",
           "-86400s", "1.5s", "1S", "1 s", "+1s", "", "soon", "0x10s", "1e3ms",
           "99999999999999999999s", "9223372036854775807ms", "18446744073709551616s",
           "9223372036854776s", "213503982335d", "106751991167301d"]
    for d in daemons:
        wrong = []
        for v in good + bad:
            d.write(extra="start_timeout = %s\n" % v)
            res = subprocess.run(d.argv(check=True), capture_output=True, text=True,
                                 timeout=30, stdin=subprocess.DEVNULL)
            if v in good and res.returncode != 0:
                wrong.append((v, "refused", res.stderr.strip()[-160:]))
            if v in bad and not (res.returncode == 1 and "start_timeout" in res.stderr):
                wrong.append((v, "exit %d" % res.returncode, res.stderr.strip()[-160:]))
        tap.ok(not wrong, "%s -t: start_timeout %s accepted; %d values past the bounds or "
               "malformed refused naming start_timeout" % (d.name, "/".join(good), len(bad)),
               diag="%r" % wrong)
        # a real start with a value past the bound: before the fork
        d.write(extra="start_timeout = 86401s\n")
        res = subprocess.run(d.argv(), capture_output=True, text=True, timeout=30,
                             stdin=subprocess.DEVNULL)
        time.sleep(0.3)
        left = daemons_running(d.conf)
        tap.ok(res.returncode == 1 and "start_timeout" in res.stderr and not left
               and not os.path.exists(d.pid_file),
               "%s: a start with start_timeout = 86401s exits 1 naming it, nothing runs"
               % d.name, diag="exit %s %r, running %s" % (res.returncode, res.stderr[-200:],
                                                         left))
        d.clean()


# ------------------------------------------------------ held under / over

def test_held_under(st, daemons):
    for d in daemons:
        d.write(extra="start_timeout = 4s\n")
        h = Held(st, d, 1.5, "under")
        rc = h.rc(20)
        ready = readyz(d.mport)
        serves = d.serves()
        pid = read_pid(d.pid_file)[0]
        tap.ok(rc == 0 and h.took >= 1.4 and h.took < 4 and " 200 " in ready and serves
               and alive(pid),
               "%s held 1.5 s under start_timeout = 4s: exit 0 after %s s, /readyz 200 and "
               "serving at that moment" % (d.name, "%.1f" % h.took if h.took else "-"),
               diag="exit %s, /readyz %r, serves %s, pid file %r, stderr %r"
               % (rc, ready, serves, read_pid(d.pid_file)[1], h.stderr()[-300:]))
        stop_detached(d, pid)
        h.finish()


def timed_out(st, d, h, label, timeout_s=1, say=True, words=None):
    """h's daemon held past start_timeout: the starter says so at about
    timeout_s (the kill, 5 s later, takes effect here only when strace
    lets the held syscall go: its exit status comes after the hold)."""
    words = words or "did not serve within start_timeout (%ds)" % timeout_s
    said_at = None
    if say:
        if wait_for(lambda: words in h.stderr(), timeout=timeout_s + 10, interval=0.05):
            said_at = time.monotonic() - h.began
    rc = h.rc(25)
    gone = wait_for(lambda: not daemons_running(d.conf), timeout=10)
    tap.ok(rc == 1 and (not say or (said_at is not None and said_at < timeout_s + 2))
           and h.took is not None and h.took < h.hold + 2.5
           and gone and not os.path.exists(d.pid_file),
           "%s held past %s%s: %sexit 1, nothing left running, no pid file"
           % (d.name, "start_timeout = %ds" % timeout_s if "start_timeout" in words
              else "a stop signal's grace (%d s)" % timeout_s, label,
              "said so after %.1f s, " % said_at if said_at else ""),
           diag="exit %s after %s s, said at %s, stderr %r, running %s, pid file %r"
           % (rc, h.took, said_at, h.stderr()[-300:], daemons_running(d.conf),
              read_pid(d.pid_file)[1]))
    h.finish()


def test_held_over(st, daemons):
    for d in daemons:
        d.write(extra="start_timeout = 1s\n")
        timed_out(st, d, Held(st, d, 7, "over"), "")
        # the killed daemon holds nothing: a plain start serves at once
        res = subprocess.run(d.argv(), capture_output=True, text=True, timeout=30,
                             stdin=subprocess.DEVNULL)
        pid = read_pid(d.pid_file)[0]
        tap.ok(res.returncode == 0 and alive(pid) and d.serves()
               and " 200 " in readyz(d.mport),
               "%s: started again right after the timed-out start: exit 0, serves" % d.name,
               diag="exit %s %r" % (res.returncode, res.stderr[-300:]))
        stop_detached(d, pid)


def test_held_just_over(st, daemons):
    """Held 2.6 s with start_timeout = 2s: the TERM comes while it is held
    and acts once it runs; a start that did not serve in time fails."""
    for d in daemons:
        d.write(extra="start_timeout = 2s\n")
        timed_out(st, d, Held(st, d, 2.6, "justover"), " (held 2.6 s)", timeout_s=2)


def test_held_over_recorded(st, d):
    """Held after it recorded its pid (user = nobody: in initgroups()):
    the timed-out start removes the pid file that names the daemon."""
    d.write(extra="start_timeout = 1s\nuser = nobody\n")
    timed_out(st, d, Held(st, d, 7, "recorded", syscall="setgroups"),
              " after recording its pid (user = nobody, held in setgroups)")


def test_held_over_stdio(st, d):
    d.write(extra="start_timeout = 1s\n")
    timed_out(st, d, Held(st, d, 7, "closed", redir="<&- >&- 2>&-"),
              " (stdin, stdout, stderr closed)", say=False)


def test_held_over_broken_pipe(st, d):
    """stderr: a pipe with no reader at all."""
    d.write(extra="start_timeout = 1s\n")
    rfd, wfd = os.pipe()
    os.close(rfd)
    rcfile = st.path("run", "%s-pipe.rc" % d.name)
    proc = subprocess.Popen(
        ["strace", "-f", "-qq", "-o", "/dev/null", "-e", "trace=setsid", "-e",
         "inject=setsid:delay_enter=7000000", "sh", "-c",
         '"$@" 2>&%d %d>&-; echo $? > %s' % (wfd, wfd, rcfile), "sh"] + d.argv(),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
        pass_fds=(wfd,), cwd=st.dir)
    os.close(wfd)
    began = time.monotonic()
    text = wait_for(lambda: os.path.exists(rcfile) and open(rcfile).read().endswith("\n")
                    and open(rcfile).read(), timeout=25, interval=0.05)
    took = time.monotonic() - began
    gone = wait_for(lambda: not daemons_running(d.conf), timeout=10)
    tap.ok(text == "1\n" and took < 9.5 and gone and not os.path.exists(d.pid_file),
           "%s held past start_timeout = 1s, stderr a pipe nobody can read: exit 1 after "
           "%.1f s, nothing left running, no pid file" % (d.name, took),
           diag="exit %r, running %s, pid file %r"
           % (text, daemons_running(d.conf), read_pid(d.pid_file)[1]))
    d.clean()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# ------------------------------------------------------ signals to the starter

def in_syscall(pid):
    try:
        with open("/proc/%d/syscall" % pid) as f:
            return f.read().split()[0]
    except (OSError, IndexError):
        return None


def signal_starter(h, sig):
    starter = wait_for(h.starter, timeout=10, interval=0.02)
    time.sleep(0.5)         # the starter waits in poll(), its child in setsid()
    if starter:
        try:
            os.kill(starter, sig)
        except ProcessLookupError:
            starter = None
    return starter


def test_signal_starter(st, daemons):
    for d in daemons:
        for sig in (signal.SIGTERM, signal.SIGINT):
            d.write(extra="start_timeout = 10s\n")
            h = Held(st, d, 2, "sig%d" % sig)
            starter = signal_starter(h, sig)
            rc = h.rc(20)
            stopped = wait_for(lambda: not daemons_running(d.conf)
                               and not os.path.exists(d.pid_file), timeout=10)
            tap.ok(starter and rc in (0, 1) and h.took < 9 and stopped,
                   "%s: %s to the starter while its daemon is held: handed on, the daemon "
                   "stops (exit %s after %s s), nothing left running, no pid file"
                   % (d.name, signal.Signals(sig).name, rc,
                      "%.1f" % h.took if h.took else "-"),
                   diag="starter %s, exit %s, running %s, pid file %r, stderr %r"
                   % (starter, rc, daemons_running(d.conf), read_pid(d.pid_file)[1],
                      h.stderr()[-300:]))
            h.finish()
        d.write(extra="start_timeout = 10s\n")
        h = Held(st, d, 2, "hup")
        starter = signal_starter(h, signal.SIGHUP)
        rc = h.rc(20)
        time.sleep(1.0)
        pid = read_pid(d.pid_file)[0]
        ok = alive(pid) and d.serves() and " 200 " in readyz(d.mport)
        tap.ok(starter and rc == 0 and ok,
               "%s: SIGHUP to the starter while its daemon is held: exit 0, the daemon "
               "reloads and serves on" % d.name,
               diag="starter %s, exit %s, pid file %r, alive %s, stderr %r"
               % (starter, rc, read_pid(d.pid_file)[1], alive(pid), h.stderr()[-300:]))
        stop_detached(d, pid)
        h.finish()


def test_signal_before_fork(st, daemons):
    """A SIGTERM to the starter as it binds, before its fork (pending in
    the parent; fork() does not pass pending signals on) must still reach
    the daemon, which stops. strace (the starter only, no -f) queues the
    signal on the entry of the starter's first bind(): the moment is
    exact, where polling /proc for a held bind() can miss it on a loaded
    machine."""
    for d in daemons:
        d.write(extra="start_timeout = 30s\n")
        began = time.monotonic()
        proc = subprocess.Popen(["strace", "-qq", "-o", "/dev/null", "-e",
                                 "inject=bind:signal=SIGTERM:when=1"] + d.argv(),
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                stdin=subprocess.DEVNULL, cwd=st.dir)
        try:
            err = proc.communicate(timeout=40)[1]
            rc = proc.returncode
        except subprocess.TimeoutExpired:
            proc.kill()
            err, rc = proc.communicate()[1], None
        took = time.monotonic() - began
        stopped = wait_for(lambda: not daemons_running(d.conf)
                           and not os.path.exists(d.pid_file), timeout=10)
        tap.ok(rc in (0, 1) and stopped,
               "%s: SIGTERM to the starter as it binds, before its fork: the daemon "
               "stops (exit %s after %.1f s), nothing left running, no pid file"
               % (d.name, rc, took),
               diag="exit %s, running %s, pid file %r, stderr %r"
               % (rc, daemons_running(d.conf), read_pid(d.pid_file)[1], err[-300:]))
        d.clean()


def test_term_starter_past_timeout(st, d):
    d.write(extra="start_timeout = 2s\n")
    h = Held(st, d, 7, "termover")
    signal_starter(h, signal.SIGTERM)
    timed_out(st, d, h, " (SIGTERM to the starter at 0.5 s)", timeout_s=2)


def test_interrupted_start(st, cases):
    """Ctrl-C (SIGINT) or a SIGTERM to the starter of a start that hangs
    (held 8 s, start_timeout 90 s): the daemon gets it at once, and 5 s
    later, not served, it is stopped and the start fails naming the
    signal; it did not wait for start_timeout."""
    for d, sig in cases:
        d.write(extra="start_timeout = 90s\n")
        h = Held(st, d, 8, "int%d" % sig)
        signal_starter(h, sig)
        name = signal.Signals(sig).name
        timed_out(st, d, h, " (%s to the starter at 0.5 s, start_timeout 90 s)" % name,
                  timeout_s=6, words="had not served 5 s after %s reached its starter"
                  % name)


# ------------------------------------------------------ the daemon killed

def test_killed_while_held(st, daemons):
    """The detached daemon dies of a signal (SIGKILL: the OOM killer, a
    crash) before it serves: the starter must exit non-zero and leave no
    pid file (promise 2), before and after the daemon recorded its pid.
    strace -f kills it on the entry of setsid() (only the detached child
    calls it) or setgroups() (user = nobody: after the pid is recorded),
    at that exact moment; a SIGKILL sent by polling /proc for a held
    syscall can miss its window on a loaded machine."""
    for d in daemons:
        for syscall, extra, when in (("setsid", "", "before it records its pid"),
                                     ("setgroups", "user = nobody\n",
                                      "after it recorded its pid (user = nobody)")):
            d.write(extra="start_timeout = 20s\n" + extra)
            h = Held(st, d, 0, "kill-" + syscall, syscall=syscall,
                     action="signal=SIGKILL:when=1")
            rc = h.rc(30)
            time.sleep(0.3)
            text = read_pid(d.pid_file)[1]
            tap.ok(rc not in (None, 0) and text is None and not daemons_running(d.conf),
                   "%s: the daemon SIGKILLed %s: the starter exits %s, no pid file left"
                   % (d.name, when, rc),
                   diag="starter exit %s, pid file %r, running %s, stderr %r"
                   % (rc, text, daemons_running(d.conf), h.stderr()[-300:]))
            if syscall == "setsid":
                err = h.stderr()
                tap.ok(re.search(r"signal|killed", err),
                       "%s: the daemon SIGKILLed while it starts: the starter's stderr says "
                       "it died of a signal" % d.name,
                       diag="stderr %r (the starter exits 1 without a word: "
                       "daemon_detach() turns a signal death into exit 1 silently)"
                       % err[-300:])
            h.finish()


# ------------------------------------------------------ racing starters

def test_two_starters(st, d):
    d.write(extra="start_timeout = 10s\n")
    h = Held(st, d, 3, "race")
    wait_for(h.starter, timeout=10, interval=0.02)
    time.sleep(0.5)
    began = time.monotonic()
    second = subprocess.run(d.argv(), capture_output=True, text=True, timeout=30,
                            stdin=subprocess.DEVNULL)
    took = time.monotonic() - began
    rc = h.rc(20)
    pid = read_pid(d.pid_file)[0]
    tap.ok(second.returncode == 1 and "is locked" in second.stderr and took < 2
           and rc == 0 and alive(pid) and d.serves() and daemons_running(d.conf) == [pid],
           "%s: a second start while the first's daemon is held: exit 1 at once naming "
           "the lock; the first exits 0 and its daemon serves, alone" % d.name,
           diag="second: exit %s after %.1f s %r; first: exit %s, pid %s, running %s"
           % (second.returncode, took, second.stderr[-200:], rc, pid,
              daemons_running(d.conf)))
    stop_detached(d, pid)
    h.finish()


def test_spool_held(st, d):
    """No pid_file: runner.lock is all a second run and flush have."""
    d.write(pid_file=False, extra="start_timeout = 10s\n")
    h = Held(st, d, 3, "held")
    starter = wait_for(h.starter, timeout=10, interval=0.02)
    time.sleep(0.5)
    second = subprocess.run(d.argv(), capture_output=True, text=True, timeout=30,
                            stdin=subprocess.DEVNULL)
    flush = subprocess.run([SPOOL, "-c", d.conf, "flush"], capture_output=True, text=True,
                           timeout=30, stdin=subprocess.DEVNULL)
    rc = h.rc(20)
    time.sleep(1.0)
    daemons = daemons_running(d.conf)
    with open(os.path.join(d.spool, "runner.lock")) as f:
        lock = f.read().strip()
    m = re.search(r"pid (\d+)", second.stderr)
    tap.ok(second.returncode == 1 and m and int(m.group(1)) in (starter,) + tuple(daemons),
           "spool: a second run while the first is held: exit 1 naming the holder's pid",
           diag="second: exit %s %r; starter %s, daemons %s"
           % (second.returncode, second.stderr[-200:], starter, daemons))
    tap.ok(flush.returncode == 0 and rc == 0 and len(daemons) == 1
           and lock == str(daemons[0]) and " 200 " in readyz(d.mport),
           "spool: a flush while the run is held (it signals the starter): exit 0; the "
           "start exits 0, its daemon runs and serves, runner.lock names it",
           diag="flush: exit %s %r %r; start exit %s, daemons %s, runner.lock %r"
           % (flush.returncode, flush.stdout, flush.stderr, rc, daemons, lock))
    for pid in daemons:
        os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not daemons_running(d.conf), timeout=15)
    h.finish()


# ------------------------------------------------------ reload

def test_reload(st, d):
    d.write(extra="start_timeout = 90s\n")
    name = "%s-reload" % d.name
    proc = st.start_daemon(name, d.argv(foreground=True))
    wait_for(lambda: proc.poll() is not None or " 200 " in readyz(d.mport), timeout=20)
    d.write(extra="start_timeout = 5s\n")
    proc.send_signal(signal.SIGHUP)
    said = wait_for(lambda: [line for line in st.read_log(name).splitlines()
                             if "start_timeout" in line and "restart" in line], timeout=5)
    tap.ok(said and proc.poll() is None and d.serves() and " 200 " in readyz(d.mport),
           "%s: start_timeout changed on a reload: named as needing a restart, it serves on"
           % d.name, diag="exit %s, log %r" % (proc.poll(), st.read_log(name)[-600:]))
    for bad in ("0", "2d"):
        d.write(extra="start_timeout = %s\n" % bad)
        mark = len(st.read_log(name))
        proc.send_signal(signal.SIGHUP)
        said = wait_for(lambda: [line for line in st.read_log(name)[mark:].splitlines()
                                 if "start_timeout" in line], timeout=5)
        time.sleep(0.3)
        tap.ok(said and proc.poll() is None and d.serves() and " 200 " in readyz(d.mport),
               "%s: start_timeout = %s on a reload: refused naming it, it serves on"
               % (d.name, bad),
               diag="exit %s, log %r" % (proc.poll(), st.read_log(name)[mark:][-600:]))
    proc.send_signal(signal.SIGTERM)
    try:
        rc = proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        rc = None
    tap.ok(rc == 0, "%s: SIGTERM after the reloads: exit 0" % d.name, diag="exit %s" % rc)
    d.clean()


# ------------------------------------------------------ spool: many files, runner.lock

def test_spool_many(st, d):
    d.write(extra="start_timeout = 60s\n")
    for sub in ("active", "tmp"):
        for i in range(20000):
            open(os.path.join(d.spool, sub, "x%05d" % i), "w").close()
    res = subprocess.run(d.argv(), capture_output=True, text=True, timeout=90,
                         stdin=subprocess.DEVNULL)
    ready = readyz(d.mport)
    pid = read_pid(d.pid_file)[0]
    tap.ok(res.returncode == 0 and " 200 " in ready and alive(pid),
           "spool with 20000 files in active/ and tmp/: when the start returns, /readyz is "
           "200", diag="exit %s %r, /readyz %r" % (res.returncode, res.stderr[-300:], ready))
    stop_detached(d, pid)


def test_spool_unread_stderr(st, d):
    """3000 files in active/ that are not events: the runner moves each to
    dead/ and says so, before it serves, on its starter's stderr. The
    starter's stderr a pipe its caller reads only once it exits (as
    subprocess' wait() before communicate(), a shell's 2>&1 | later):
    the start must serve and return exit 0 - or at least end within
    start_timeout (+ 5 s to the KILL) with nothing left running."""
    d.write(extra="start_timeout = 3s\n")
    for i in range(3000):
        open(os.path.join(d.spool, "active", "bad%05d" % i), "w").close()
    began = time.monotonic()
    proc = subprocess.Popen(d.argv(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL)
    try:
        rc = proc.wait(timeout=12)
    except subprocess.TimeoutExpired:
        rc = None
    took = time.monotonic() - began
    ready = readyz(d.mport)
    pid = read_pid(d.pid_file)[0]
    where = dict((p, in_syscall(p)) for p in daemons_running(d.conf))
    left = len(os.listdir(os.path.join(d.spool, "active")))
    tap.ok(rc == 0 and " 200 " in ready and alive(pid),
           "spool with 3000 non-events in active/, stderr a pipe read only at the end: "
           "the start serves and returns exit 0",
           diag="exit %s after %.1f s, /readyz %r, %d left in active/, processes and their "
           "syscalls %r (1 = write: the runner's start-up messages fill the pipe and it "
           "never serves)" % (rc, took, ready, left, where))
    tap.ok(rc is not None and (rc == 0 or not daemons_running(d.conf)),
           "spool, stderr a pipe read only at the end: start_timeout = 3s ends the start "
           "within 3 + 5 s + slack, nothing left running",
           diag="still running after %.1f s: %r (1 = write: the starter's \"did not serve "
           "within start_timeout\" blocks on the full pipe before its TERM and KILL: the "
           "start never ends)" % (took, where))
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    proc.stderr.close()
    stop_detached(d, pid)


def test_runner_lock_owner(st, d):
    d.write(pid_file=False)
    os.chmod(st.dir, 0o755)
    os.chmod(st.path("etc"), 0o755)
    os.chmod(st.path("etc", "secret"), 0o644)
    os.chmod(d.conf, 0o644)
    nobody = 65534
    for root, dirs, files in os.walk(d.spool):
        os.chown(root, nobody, nobody)
    lock = os.path.join(d.spool, "runner.lock")
    for owner in (0, 4242):
        with open(lock, "w") as f:
            f.write("1\n")
        os.chown(lock, owner, owner)
        os.chmod(lock, 0o600)
        for cmd in (["run"], ["flush"]):
            argv = ["setpriv", "--reuid=%d" % nobody, "--regid=%d" % nobody,
                    "--clear-groups", SPOOL, "-c", d.conf] + cmd
            res = subprocess.run(argv, capture_output=True, text=True, timeout=30,
                                 stdin=subprocess.DEVNULL, cwd="/")
            time.sleep(0.2)
            left = daemons_running(d.conf)
            tap.ok(res.returncode == 1 and "uid %d" % owner in res.stderr
                   and "chown" in res.stderr and not left,
                   "spool %s as nobody, runner.lock uid %d mode 0600: exit 1 naming uid %d "
                   "and chown" % (cmd[0], owner, owner),
                   diag="exit %s %r, running %s" % (res.returncode, res.stderr[-300:], left))
            d.clean()
    os.unlink(lock)


def main(st):
    os.makedirs(st.path("run"), exist_ok=True)
    dns = mxdkim.Dns(st.path("etc", "dns.txt"))
    mxdkim.one_rsa_key(st, dns)
    write(st, "secret", make_secret() + "\n")

    def make(kind, tag):
        return MinimalDaemon(st, kind, tag)

    test_bounds(st, [make(k, "bounds") for k in ("policyd", "shim", "milter", "spool")])
    test_held_under(st, [make(k, "under") for k in ("policyd", "shim", "milter", "spool")])
    test_held_over(st, [make("shim", "over"), make("milter", "over")])
    test_held_just_over(st, [make("policyd", "justover"), make("shim", "justover")])
    test_held_over_recorded(st, make("shim", "recorded"))
    test_held_over_stdio(st, make("policyd", "stdio"))
    test_held_over_broken_pipe(st, make("spool", "pipe"))
    test_signal_starter(st, [make("policyd", "sig"), make("shim", "sig"),
                             make("spool", "sig")])
    test_signal_before_fork(st, [make(k, "prefork")
                                 for k in ("policyd", "shim", "milter", "spool")])
    test_term_starter_past_timeout(st, make("milter", "termover"))
    test_interrupted_start(st, [(make("policyd", "int"), signal.SIGINT),
                                (make("shim", "int"), signal.SIGTERM),
                                (make("milter", "int"), signal.SIGINT),
                                (make("spool", "int"), signal.SIGINT)])
    test_killed_while_held(st, [make(k, "killed") for k in ("policyd", "shim", "spool")])
    test_two_starters(st, make("policyd", "race"))
    test_spool_held(st, make("spool", "held"))
    test_reload(st, make("policyd", "reload"))
    test_reload(st, make("spool", "reload"))
    test_spool_many(st, make("spool", "many"))
    test_spool_unread_stderr(st, make("spool", "unread"))
    test_runner_lock_owner(st, make("spool", "owner"))


with Stack("startattack") as st:
    tap.stack = st
    main(st)

sys.exit(tap.done())
