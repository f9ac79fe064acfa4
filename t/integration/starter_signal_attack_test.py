#!/usr/bin/python3
# mxkit-test: long (started first)
"""An outside attacker and an unlucky operator against the signals a
detached start's starter hands to its daemon (common/daemon.c
daemon_detach(): the signals held while it waits, the 5 s grace after a TERM or INT),
beyond what start_attack_test and daemon_lifecycle_attack_test check:

- the terminal's Ctrl-C (SIGINT to the starter's whole process group,
  which the daemon shares until its setsid()) on a start that hangs:
  exit 1 naming SIGINT within the grace, nothing left, no pid file.
- Ctrl-C twice, INT then TERM, INT then HUP: the grace counts from the
  first stop signal, which the message names; nothing left.
- USR1 to the starter while its daemon is held: exit 0, it serves on.
- a SIGINT or SIGHUP queued on the starter at the exact moment its wait
  ends because the daemon served (strace: the entry of the read() of the
  byte that says so, counted from a first start of the same config):
  exit 0; INT: the daemon stops, pid file removed; HUP: it serves on.
- SIGQUIT, SIGUSR2, SIGALRM, SIGRTMIN+5 to the starter while its daemon
  hangs: a stop request (the daemon gets TERM; 5 s later the start fails
  naming the signal; nothing left); SIGPIPE is ignored (exit 0, serves).
- the starter SIGSTOPped while its daemon is held and serves, SIGCONTed
  after start_timeout passed: the daemon served in time; exit 0, it runs;
  the same with the starter held 3 s at the top of its wait (strace).
- the starter under the lowest RLIMIT_NOFILE a start fits in, Ctrl-C on
  a start that hangs: exit 1 naming SIGINT, nothing left.
- the starter's stderr a pipe already full that nobody reads, or closed,
  then Ctrl-C on a start that hangs: exit 1 within the grace (+1 s for
  the bounded message), nothing left, no pid file.
"""

import os
import fcntl
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from mxstack import Stack  # noqa: E402
from mxtest import tap, wait_for  # noqa: E402
from mxdaemons import (MinimalDaemon, alive, children, daemons_running, read_pid, readyz,  # noqa: E402
                       stop_detached, write)
from mxwebhook import make_secret  # noqa: E402
import mxdkim  # noqa: E402

PGRP_EXEC = "import os, sys; os.setpgid(0, 0); os.execvp(sys.argv[1], sys.argv[1:])"


class Held:
    """d started detached under strace -f, its child held hold_s seconds in
    setsid() (only the detached child calls it); the starter's exit status
    lands in a file. prefix: argv the starter runs under (it execs the
    daemon: the same pid). inject: more strace -e inject= specs (their
    syscalls are traced too). stderr: a file object or descriptor for
    the starter's stderr instead of a log file."""

    def __init__(self, st, d, hold_s, label, redir="", prefix=(), inject=(), stderr=None,
                 pass_fds=(), new_session=False):
        self.d, self.hold = d, hold_s
        self.rcfile = st.path("run", "%s-%s.rc" % (d.name, label))
        self.errfile = st.path("log", "%s-%s.err" % (d.name, label))
        if os.path.exists(self.rcfile):
            os.unlink(self.rcfile)
        syscalls = ["setsid"] + [spec.split(":")[0] for spec in inject]
        argv = ["strace", "-f", "-qq", "-o", "/dev/null", "-e", "trace=%s" % ",".join(syscalls),
                "-e", "inject=setsid:delay_enter=%d" % int(hold_s * 1000000)]
        for spec in inject:
            argv += ["-e", "inject=" + spec]
        script = '"$@" %s; echo $? > %s' % (redir, self.rcfile)
        err = open(self.errfile, "w") if stderr is None else stderr
        self.began = time.monotonic()
        self.began_wall = time.time()
        self.proc = subprocess.Popen(argv + ["sh", "-c", script, "sh"] + list(prefix)
                                     + d.argv(), stdout=subprocess.DEVNULL, stderr=err,
                                     stdin=subprocess.DEVNULL, cwd=st.dir, pass_fds=pass_fds,
                                     start_new_session=new_session)
        if stderr is None:
            err.close()
        self.took = None
        self.first_at = None

    def starter(self):
        for sh in children(self.proc.pid):
            kids = children(sh)
            if kids:
                return kids[0]
        return None

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
        # when the status was written, not when it was read
        self.took = os.stat(self.rcfile).st_mtime - self.began_wall
        return int(text)

    def stderr(self):
        try:
            with open(self.errfile, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def finish(self):
        self.d.clean()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def starter_of(h):
    """the starter's pid once it waits (its daemon forked, held in
    setsid()); h.first_at: when (since the start) that was, about the
    moment the test's first signal goes."""
    # generous: under strace -f every system call of the start stops
    # for the tracer, which a loaded machine makes seconds
    starter = wait_for(h.starter, timeout=20, interval=0.02)
    if starter:
        wait_for(lambda: children(starter), timeout=20, interval=0.02)
    time.sleep(0.3)
    h.first_at = time.monotonic() - h.began
    return starter


def send(pid, sig):
    try:
        os.kill(pid, sig)
        return True
    except (ProcessLookupError, TypeError):
        return False


def expect_grace_stop(st, d, h, what, sig_name="SIGINT", said=True, extra_s=0.0):
    """h's daemon held past the grace after a stop signal sent at first_at:
    the starter says so about 5 s after it (+extra_s), exits 1 once the
    held daemon takes the TERM (after the hold), nothing running, no pid
    file."""
    words = "had not served 5 s after %s reached its starter" % sig_name
    first_at = h.first_at
    said_at = None
    if said:
        if wait_for(lambda: words in h.stderr(), timeout=first_at + 5 + 10, interval=0.05):
            said_at = time.monotonic() - h.began
    rc = h.rc(30)
    gone = wait_for(lambda: not daemons_running(d.conf), timeout=10)
    pidtext = read_pid(d.pid_file)[1]
    deadline = first_at + 5 + 2 + extra_s
    tap.ok(rc == 1 and (not said or (said_at is not None and said_at < deadline))
           and h.took is not None and h.took < max(h.hold, first_at + 10) + 2.5
           and gone and pidtext is None,
           "%s: %s: %sexit 1 (got %s after %s s), nothing left running, no pid file"
           % (d.name, what, "said \"%s\" after %.1f s, " % (words, said_at) if said_at else "",
              rc, "%.1f" % h.took if h.took else "-"),
           diag="exit %s after %s s, said at %s (by %.1f s wanted), stderr %r, running %s, "
           "pid file %r" % (rc, h.took, said_at, deadline, h.stderr()[-400:],
                            daemons_running(d.conf), pidtext))
    h.finish()


# ------------------------------------------------------ Ctrl-C, the terminal's way

def test_terminal_ctrl_c(st, d):
    """A terminal's Ctrl-C goes to the foreground process group: the
    starter and its child, which has not called setsid() yet (held
    there). The starter runs in its own group (a python setpgid wrapper
    that execs it), so that strace and sh stay out of it."""
    d.write(extra="start_timeout = 90s\n")
    h = Held(st, d, 9, "pgint", prefix=["python3", "-c", PGRP_EXEC], new_session=True)
    starter = starter_of(h)
    wait_for(lambda: starter and alive(starter) and os.getpgid(starter) == starter,
             timeout=20, interval=0.02)
    group = os.getpgid(starter) if starter and alive(starter) else None
    daemon = wait_for(lambda: starter and (children(starter) or [None])[0],
                      timeout=20, interval=0.02)
    same = group == starter and daemon and os.getpgid(daemon) == group
    if same and group != os.getpgrp():
        # the grace counts from here, not from when the starter was found:
        # on a loaded machine the waits above took 2.8 s of a CI run's
        h.first_at = time.monotonic() - h.began
        os.killpg(group, signal.SIGINT)
    tap.ok(same, "%s: the starter leads its own process group and its held daemon is in "
           "it (so the group's SIGINT reaches both)" % d.name,
           diag="starter %s, group %s, daemon %s, its group %s, cmdline %r"
           % (starter, group, daemon, daemon and os.getpgid(daemon),
              starter and open("/proc/%d/cmdline" % starter).read()[:60]))
    expect_grace_stop(st, d, h, "Ctrl-C to the starter's process group (the daemon in it, "
                      "held 9 s, start_timeout 90 s)")


# ------------------------------------------------------ two signals

def test_two_signals(st, cases):
    """A second signal during the grace does not move it, and the message
    names the first stop signal."""
    for d, second, label in cases:
        d.write(extra="start_timeout = 90s\n")
        h = Held(st, d, 9, "two%d" % second)
        starter = starter_of(h)
        send(starter, signal.SIGINT)
        time.sleep(3.0)
        send(starter, second)
        expect_grace_stop(st, d, h, "SIGINT, then %s 3 s later (held 9 s, start_timeout "
                          "90 s)%s" % (signal.Signals(second).name, label))


# ------------------------------------------------------ USR1

def test_usr1(st, daemons):
    for d in daemons:
        d.write(extra="start_timeout = 20s\n")
        h = Held(st, d, 2.5, "usr1")
        starter = starter_of(h)
        sent = send(starter, signal.SIGUSR1)
        rc = h.rc(20)
        time.sleep(1.0)
        pid = read_pid(d.pid_file)[0]
        ready = readyz(d.mport)
        serves = d.serves()
        tap.ok(sent and rc == 0 and alive(pid) and serves and " 200 " in ready
               and daemons_running(d.conf) == [pid],
               "%s: SIGUSR1 to the starter while its daemon is held: exit 0, the daemon "
               "flushes (or says so) and serves on, alone" % d.name,
               diag="sent %s, exit %s, pid file %r, alive %s, serves %s, /readyz %r, "
               "running %s, stderr %r" % (sent, rc, read_pid(d.pid_file)[1], alive(pid),
                                          serves, ready, daemons_running(d.conf),
                                          h.stderr()[-300:]))
        stop_detached(d, pid)
        h.finish()


# ------------------------------------------------------ the moment it serves

def reads_before_fork(st, d):
    """How many read()s the starter makes before its fork (the same on
    every start of one configuration): the next one reads the byte that
    says its daemon serves."""
    trace = st.path("log", "%s-reads.trace" % d.name)
    subprocess.run(["strace", "-qq", "-o", trace, "-e", "trace=read,clone"] + d.argv(),
                   capture_output=True, stdin=subprocess.DEVNULL, timeout=30)
    with open(trace) as f:
        calls = [line.split("(")[0] for line in f]
    pid = wait_for(lambda: read_pid(d.pid_file)[0], timeout=5)
    stop_detached(d, pid)
    return calls.index("clone") if "clone" in calls else None


def test_signal_as_served(st, daemons):
    """strace (the starter only) queues the signal on the entry of the
    starter's read() of the byte that says its daemon serves: its wait
    ends there; the signal is held and must still be handed on."""
    for d in daemons:
        for sig in (signal.SIGINT, signal.SIGHUP):
            name = signal.Signals(sig).name
            d.write(extra="start_timeout = 20s\n")
            n = reads_before_fork(st, d)
            tap.ok(n is not None, "%s: the starter's read()s before its fork counted (%s)"
                   % (d.name, n))
            proc = subprocess.Popen(["strace", "-qq", "-o", "/dev/null", "-e",
                                     "trace=read", "-e",
                                     "inject=read:signal=%s:when=%d" % (name, (n or 0) + 1)]
                                    + d.argv(), stdout=subprocess.DEVNULL,
                                    stderr=subprocess.PIPE, text=True,
                                    stdin=subprocess.DEVNULL, cwd=st.dir)
            try:
                err = proc.communicate(timeout=30)[1]
                rc = proc.returncode
            except subprocess.TimeoutExpired:
                proc.kill()
                err, rc = proc.communicate()[1], None
            if sig == signal.SIGINT:
                ok = wait_for(lambda: not daemons_running(d.conf)
                              and not os.path.exists(d.pid_file), timeout=10)
                what = "the daemon, which served, stops cleanly: pid file removed, nothing runs"
            else:
                time.sleep(1.0)
                pid = read_pid(d.pid_file)[0]
                ok = alive(pid) and d.serves() and " 200 " in readyz(d.mport) \
                    and daemons_running(d.conf) == [pid]
                what = "the daemon reloads and serves on"
            tap.ok(rc == 0 and ok,
                   "%s: %s to the starter the moment its wait ends (the daemon served): "
                   "exit 0, %s" % (d.name, name, what),
                   diag="exit %s, running %s, pid file %r, stderr %r"
                   % (rc, daemons_running(d.conf), read_pid(d.pid_file)[1], err[-300:]))
            d.clean()


# ------------------------------------------------------ other signals

def test_other_signals(st, d):
    """Signals that would end the starter by default (Ctrl-\\ is SIGQUIT,
    timeout(1) -s ALRM, a supervisor's USR2, a real-time signal) arrive
    while its daemon starts and hangs (held 9 s): the starter takes them
    as a stop request (the daemon gets a TERM at once), and 5 s later,
    not served, the start fails naming the signal; nothing is left
    running, nor named by a pid file. (Before: the starter died of it,
    exit 128+N, and the daemon it was starting served on.)"""
    for sig in (signal.SIGQUIT, signal.SIGUSR2, signal.SIGALRM, signal.SIGRTMIN + 5):
        name = ("SIGRTMIN+5" if sig == signal.SIGRTMIN + 5 else signal.Signals(sig).name)
        said = "signal %d" % sig if sig == signal.SIGRTMIN + 5 else name
        d.write(extra="start_timeout = 30s\n")
        h = Held(st, d, 9, "other%d" % sig)
        send(starter_of(h), sig)
        expect_grace_stop(st, d, h, "%s to the starter while its daemon hangs (held 9 s)"
                          % name, sig_name=said)
    # SIGPIPE: ignored by the starter (a closed pipe is no stop request)
    d.write(extra="start_timeout = 20s\n")
    h = Held(st, d, 3, "pipe")
    sent = send(starter_of(h), signal.SIGPIPE)
    rc = h.rc(20)
    time.sleep(0.5)
    pid, text = read_pid(d.pid_file)
    left = daemons_running(d.conf)
    tap.ok(sent and rc == 0 and left == [pid] and d.serves(),
           "%s: SIGPIPE to the starter while its daemon is held: ignored, exit 0, it serves"
           % d.name, diag="sent %s, exit %s, running %s, pid file %r, stderr %r"
           % (sent, rc, left, text, h.stderr()[-300:]))
    stop_detached(d, pid)
    h.finish()


# ------------------------------------------------------ a stopped starter

def test_stopped_starter(st, d):
    """Ctrl-Z: the starter stopped 0.5 s in, the daemon served at 1.5 s
    (within start_timeout = 3s), the starter continued at 5 s: the start
    served in time."""
    d.write(extra="start_timeout = 3s\n")
    h = Held(st, d, 1.5, "stopped")
    starter = starter_of(h)
    sent = send(starter, signal.SIGSTOP)
    served = wait_for(lambda: " 200 " in readyz(d.mport), timeout=4)
    time.sleep(max(0, 5 - (time.monotonic() - h.began)))
    send(starter, signal.SIGCONT)
    rc = h.rc(20)
    time.sleep(0.5)
    pid = read_pid(d.pid_file)[0]
    serves = alive(pid) and d.serves() and " 200 " in readyz(d.mport)
    tap.ok(sent and served and rc == 0 and serves,
           "%s: the starter stopped (SIGSTOP) while its daemon starts and serves at 1.5 s "
           "(start_timeout = 3s), continued at 5 s: exit 0, the daemon serves on" % d.name,
           diag="sent %s, /readyz 200 while stopped %s, exit %s after %s s, pid file %r, "
           "running %s, stderr %r" % (sent, bool(served), rc, h.took, read_pid(d.pid_file)[1],
                                      daemons_running(d.conf), h.stderr()[-300:]))
    tap.ok(rc != 1 or "did not serve within start_timeout" not in h.stderr(),
           "%s: a daemon that served while its starter was stopped is not called one that "
           "did not serve within start_timeout" % d.name, diag="stderr %r" % h.stderr()[-300:])
    stop_detached(d, pid)
    h.finish()


def test_starter_late(st, daemons):
    """The starter itself held 3 s (strace: its first rt_sigtimedwait(),
    at the top of its wait; as a SIGSTOP or a suspended VM would hold it)
    past start_timeout = 1s, while its daemon (not traced) served at
    once: the start served in time, so exit 0 and the daemon serves on;
    it is not called one that did not serve, nor killed."""
    for d in daemons:
        d.write(extra="start_timeout = 1s\n")
        proc = subprocess.Popen(["strace", "-qq", "-o", "/dev/null", "-e",
                                 "inject=rt_sigtimedwait:delay_enter=3000000:when=1"]
                                + d.argv(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                text=True, stdin=subprocess.DEVNULL, cwd=st.dir)
        try:
            err = proc.communicate(timeout=30)[1]
            rc = proc.returncode
        except subprocess.TimeoutExpired:
            proc.kill()
            err, rc = proc.communicate()[1], None
        time.sleep(0.5)
        pid = read_pid(d.pid_file)[0]
        serves = alive(pid) and d.serves() and daemons_running(d.conf) == [pid]
        tap.ok(rc == 0 and serves and "did not serve" not in err,
               "%s: the starter held 3 s past start_timeout = 1s while its daemon served at "
               "once: exit 0, the daemon serves on, not called one that did not serve"
               % d.name, diag="exit %s, pid file %r, running %s, stderr %r"
               % (rc, read_pid(d.pid_file)[1], daemons_running(d.conf), err[-300:]))
        stop_detached(d, pid)


# ------------------------------------------------------ few descriptors

def test_nofile_ctrl_c(st, d):
    d.write(extra="start_timeout = 90s\n")
    lowest = None
    for n in range(4, 80):
        res = subprocess.run(["prlimit", "--nofile=%d:%d" % (n, n)] + d.argv(),
                             capture_output=True, text=True, timeout=30,
                             stdin=subprocess.DEVNULL)
        if res.returncode == 0:
            lowest = n
            pid = wait_for(lambda: read_pid(d.pid_file)[0], timeout=5)
            stop_detached(d, pid)
            break
        d.clean()
    tap.ok(lowest is not None, "%s: a start fits in some open-files limit under 80 (%s)"
           % (d.name, lowest))
    if lowest is None:
        return
    h = Held(st, d, 9, "nofile", prefix=["prlimit", "--nofile=%d:%d" % (lowest, lowest)])
    send(starter_of(h), signal.SIGINT)
    expect_grace_stop(st, d, h, "Ctrl-C to a starter under the lowest open-files limit a "
                      "start fits in (%d), its daemon held 9 s" % lowest)


# ------------------------------------------------------ stderr

def test_full_stderr_ctrl_c(st, d):
    """stderr a pipe that a caller filled already and reads only later."""
    d.write(extra="start_timeout = 90s\n")
    rfd, wfd = os.pipe()
    flags = fcntl.fcntl(wfd, fcntl.F_GETFL)
    fcntl.fcntl(wfd, fcntl.F_SETFL, flags | os.O_NONBLOCK)
    filled = 0
    try:
        while True:
            filled += os.write(wfd, b"x" * 4096)
    except BlockingIOError:
        pass
    fcntl.fcntl(wfd, fcntl.F_SETFL, flags)
    h = Held(st, d, 9, "fullpipe", stderr=wfd, pass_fds=(wfd,))
    os.close(wfd)
    send(starter_of(h), signal.SIGINT)
    expect_grace_stop(st, d, h, "Ctrl-C, the starter's stderr a pipe already full "
                      "(%d bytes) that nobody reads" % filled, said=False)
    os.close(rfd)


def test_closed_stderr_ctrl_c(st, d):
    d.write(extra="start_timeout = 90s\n")
    h = Held(st, d, 9, "closed", redir="2>&-")
    send(starter_of(h), signal.SIGINT)
    expect_grace_stop(st, d, h, "Ctrl-C, the starter's stderr closed (2>&-)", said=False)


def main(st):
    os.makedirs(st.path("run"), exist_ok=True)
    dns = mxdkim.Dns(st.path("etc", "dns.txt"))
    mxdkim.one_rsa_key(st, dns)
    write(st, "secret", make_secret() + "\n")

    def make(kind, tag):
        return MinimalDaemon(st, kind, tag)

    test_signal_as_served(st, [make("policyd", "served"), make("spool", "served")])
    test_usr1(st, [make("policyd", "usr1"), make("milter", "usr1")])
    test_stopped_starter(st, make("shim", "stopped"))
    test_starter_late(st, [make("policyd", "late"), make("spool", "late")])
    test_other_signals(st, make("policyd", "other"))
    test_terminal_ctrl_c(st, make("shim", "pgint"))
    test_two_signals(st, [(make("milter", "twice"), signal.SIGINT, " (Ctrl-C twice)"),
                          (make("policyd", "intterm"), signal.SIGTERM, ""),
                          (make("spool", "inthup"), signal.SIGHUP, "")])
    test_nofile_ctrl_c(st, make("policyd", "nofile"))
    test_full_stderr_ctrl_c(st, make("spool", "fullpipe"))
    test_closed_stderr_ctrl_c(st, make("milter", "closed"))


with Stack("startersig") as st:
    tap.stack = st
    main(st)

sys.exit(tap.done())
