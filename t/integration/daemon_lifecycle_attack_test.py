#!/usr/bin/python3
# mxkit-test: alone (waits until user nobody runs no process at all)
"""An outside attacker and an unlucky operator against the life cycle the
four daemons share (common/daemon.c, daemon_notify.c, skeleton.c, msg.c):
start, detach, pid file, readiness, signals, stop.

What it attacks, and the outcome each check asserts exactly:

- stdin/stdout/stderr closed at start ("daemon 2>&-", "<&- >&- 2>&-"),
  detached, for each daemon: exit 0, the pid file names a process that
  serves (/readyz 200, its own protocol), holds the pid file against a
  second instance, and SIGTERM removes the pid file. (A closed stderr
  became policyd's epoll descriptor, then /dev/null at the detach: the
  daemon exited at once, with status 0 to its starter.)
- NOTIFY_SOCKET naming a datagram socket whose queue is full (a service
  manager that does not read): the daemon still serves, and SIGTERM still
  stops it with exit 0 (sendto() blocked the main loop for ever).
- NOTIFY_SOCKET bad values: empty, "@", a relative path, a stream
  socket, a missing path, a path longer than sun_path: the daemon serves,
  reloads and stops with exit 0, logs at most one warning about it (none
  for an empty value), and a too-long path is called too long.
- pid_file a symlink (root would truncate and write its target), a FIFO,
  a directory, in a directory that does not exist: exit 1 before the
  fork with the reason on stderr, the symlink's target intact, nothing
  left running.
- a stale pid file naming a longer pid than ours: it holds exactly our
  pid afterwards.
- an instance that stops (unlinks and unlocks its pid file) between the
  open() and the flock() of one that starts (strace delays the flock):
  the starter must lock the file that is at the path, so that a third
  instance is refused.
- four instances started at the same instant, three rounds: exactly one
  exits 0 and runs, the others exit 1 naming the cause.
- SIGTERM sent to the detaching parent while it forks (strace delays the
  fork): the daemon must stop, not run on (the held signal died with
  the parent).
- SIGHUP right after the pid file appears: a reload, never death;
  SIGTERM right after: exit, pid file removed.
- the open-files limit squeezed at start (prlimit): exit 1 naming the
  cause, or exit 0 and a daemon that runs; never exit 0 and no daemon.
- "user =" with pid_file in a directory only root can write: SIGTERM
  must remove the pid file, or at least leave no pid in it and say why.
- RLIMIT_NPROC with "user =": a detached proxyv2-shim whose worker
  threads cannot start after the fork: its starter must get exit 1 and
  the message, and no pid file may name the dead process (it got exit 0,
  and a pid file naming a dead pid); the message must name the cause.
- lmtp-webhook-spool: a second "run" exits 1 naming the first pid; flush
  right after "run" reaches the daemon (runner.lock names it).
"""

import fcntl
import os
import re
import signal
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from mxstack import Stack  # noqa: E402
from mxtest import tap, wait_for, run  # noqa: E402
from mxdaemons import (MinimalDaemon, SPOOL, alive, kill_all, read_pid,  # noqa: E402
                       readyz, running, write)
from mxwebhook import make_secret  # noqa: E402
import mxdkim  # noqa: E402


def log_of(st, name):
    st.logs[name] = st.path("log", name + ".log")
    return open(st.logs[name], "w")


def stop_detached(d, pid):
    if alive(pid):
        os.kill(pid, signal.SIGTERM)
    gone = wait_for(lambda: not alive(pid), timeout=15)
    kill_all(d.conf)
    return gone


# ------------------------------------------------------ closed stdio

def test_closed_stdio(st, daemons):
    for d, closes in daemons:
        d.write()
        res = subprocess.run(["sh", "-c", 'exec "$@" ' + closes, "sh"] + d.argv(),
                             cwd=st.dir, timeout=30, capture_output=True, text=True)
        pid = wait_for(lambda: read_pid(d.pid_file)[0], timeout=10)
        ready = readyz(d.mport) if pid else "no pid"
        serves = d.serves() if pid else False
        second = subprocess.run(d.argv(), capture_output=True, text=True, timeout=30,
                                stdin=subprocess.DEVNULL)
        tap.ok(res.returncode == 0 and pid and alive(pid) and " 200 " in ready and serves
               and second.returncode == 1,
               "%s started with %s: exit 0, pid %s runs, /readyz 200, serves, and a second "
               "instance exits 1" % (d.name, closes, pid),
               diag="exit %s, pid file %r, /readyz %r, serves %s, second: exit %s %s, "
               "running %s" % (res.returncode, read_pid(d.pid_file)[1], ready, serves,
                               second.returncode, second.stderr[-300:], running(d.conf)))
        gone = stop_detached(d, pid)
        tap.ok(gone and not os.path.exists(d.pid_file),
               "%s started with %s: SIGTERM stops it and removes the pid file"
               % (d.name, closes))


# ------------------------------------------------------ NOTIFY_SOCKET

def full_dgram_socket(path):
    """A bound datagram socket nobody reads, its queue filled."""
    recv = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    recv.bind(path)
    send = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    send.setblocking(False)
    n = 0
    try:
        while n < 100000:
            send.sendto(b"x" * 64, path)
            n += 1
    except (BlockingIOError, OSError):
        pass
    send.close()
    return recv, n


def run_notify(st, d, label, value, sighup=True):
    """d in the foreground with NOTIFY_SOCKET=value: (serves at 10 s,
    exit status after HUP + TERM, the log's warnings about it)."""
    name = "%s-notify-%s" % (d.name, label)
    log = log_of(st, name)
    env = dict(os.environ, NOTIFY_SOCKET=value)
    proc = subprocess.Popen(d.argv(foreground=True), env=env, stdout=log, stderr=log,
                            stdin=subprocess.DEVNULL, cwd=st.dir)
    ok = wait_for(lambda: proc.poll() is not None or (" 200 " in readyz(d.mport)
                                                        and d.serves()), timeout=15)
    serving = bool(ok) and proc.poll() is None
    if sighup and proc.poll() is None:
        proc.send_signal(signal.SIGHUP)
        time.sleep(0.3)
        proc.send_signal(signal.SIGHUP)
        time.sleep(0.3)
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        rc = proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        rc = "hung after SIGTERM"
        proc.kill()
        proc.wait()
    log.close()
    warnings = [line for line in st.read_log(name).splitlines() if "NOTIFY_SOCKET" in line]
    return serving, rc, warnings, name


def test_notify_full(st, daemons):
    for d in daemons:
        d.write(pid_file=False)
        path = st.path("run", "full-%s.notify" % d.name)
        recv, n = full_dgram_socket(path)
        serving, rc, warnings, name = run_notify(st, d, "full", path)
        recv.close()
        os.unlink(path)
        tap.ok(serving and rc == 0 and len(warnings) <= 1,
               "%s: NOTIFY_SOCKET's queue full (%d unread): it serves, SIGTERM exits 0, "
               "at most one warning" % (d.name, n),
               diag="serving %s, exit %s, warnings %r; log: %s"
               % (serving, rc, warnings, st.read_log(name)[-500:]))


def test_notify_bad(st, d):
    d.write(pid_file=False)
    stream_path = st.path("run", "stream.notify")
    stream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stream.bind(stream_path)
    stream.listen(1)
    long_path = "/" + "n" * 150
    cases = [("empty", "", 0, None), ("at", "@", 1, None), ("relative", "run/x.sock", 1, None),
             ("stream", stream_path, 1, None),
             ("missing", st.path("run", "missing.notify"), 1, None),
             ("long", long_path, 1, "longer")]
    for label, value, most, words in cases:
        serving, rc, warnings, name = run_notify(st, d, label, value)
        named = words is None or (len(warnings) == 1 and words in warnings[0])
        tap.ok(serving and rc == 0 and len(warnings) <= most and named,
               "%s: NOTIFY_SOCKET %s: serves, reloads, exits 0; %d warning(s) at most%s"
               % (d.name, label, most, ", naming the cause (%s)" % words if words else ""),
               diag="serving %s, exit %s, warnings %r" % (serving, rc, warnings))
    stream.close()
    os.unlink(stream_path)


# ------------------------------------------------------ pid_file shapes

def test_pidfile_shapes(st, d):
    run_dir = st.path("run")
    target = st.path("run", "precious")
    with open(target, "w") as f:
        f.write("precious\n")
    link = os.path.join(run_dir, "link.pid")
    os.symlink(target, link)
    fifo = os.path.join(run_dir, "fifo.pid")
    os.mkfifo(fifo)
    cases = [("a symlink", link, ["link.pid", "symbolic link"]),
             ("a FIFO", fifo, ["fifo.pid", "not a regular file"]),
             ("in a missing directory", os.path.join(run_dir, "gone", "x.pid"),
              ["gone", "No such file or directory"])]
    for label, path, words in cases:
        with open(target, "w") as f:
            f.write("precious\n")
        d.write(pid_file=path)
        res = subprocess.run(d.argv(), capture_output=True, text=True, timeout=30,
                             stdin=subprocess.DEVNULL)
        time.sleep(0.3)
        left = running(d.conf)
        intact = open(target).read() == "precious\n"
        tap.ok(res.returncode == 1 and all(w in res.stderr for w in words) and not left
               and intact,
               "%s: pid_file %s: exit 1 before the fork, naming %s; nothing runs; the "
               "symlink's target intact" % (d.name, label, " / ".join(words)),
               diag="exit %s, stderr %r, running %s, target %r"
               % (res.returncode, res.stderr[-300:], left, open(target).read()))
        kill_all(d.conf)

    # a stale pid file, a longer pid than any
    d.write()
    with open(d.pid_file, "w") as f:
        f.write("4194303999999\n")
    res = subprocess.run(d.argv(), capture_output=True, text=True, timeout=30,
                         stdin=subprocess.DEVNULL)
    pid = wait_for(lambda: read_pid(d.pid_file)[0], timeout=10)
    text = read_pid(d.pid_file)[1]
    tap.ok(res.returncode == 0 and alive(pid) and text == "%d\n" % pid,
           "%s: a stale pid file with a longer pid holds exactly the new pid" % d.name,
           diag="exit %s, pid file %r" % (res.returncode, text))
    # its directory disappears while it runs: SIGTERM still stops it
    os.rename(d.pid_file, d.pid_file + ".moved")
    gone = stop_detached(d, pid)
    tap.ok(gone and os.path.exists(d.pid_file + ".moved") and not os.path.exists(d.pid_file),
           "%s: pid file moved away while it runs: SIGTERM stops it, and it removes no "
           "file that is not its own" % d.name)
    os.unlink(d.pid_file + ".moved")


# ------------------------------------------------------ races

def run_for(argv, timeout):
    """(exit status or None when it still ran after timeout, stderr)."""
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, text=True)
    try:
        out = proc.communicate(timeout=timeout)[1]
        return proc.returncode, out
    except subprocess.TimeoutExpired:
        proc.kill()
        return None, proc.communicate()[1]


def strace_argv(inject):
    return ["strace", "-qq", "-o", "/dev/null", "-e", "inject=%s" % inject]


def test_stop_start_race(st, d, d3):
    """An instance stops between the open() and the flock() of the next."""
    d.write(metrics=False)
    d3.write(pid_file=d.pid_file, metrics=False)
    # the stopping instance: exactly daemon_pidfile_remove()'s steps, by hand
    held = open(d.pid_file, "w")
    fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
    log = log_of(st, "race-b")
    proc = subprocess.Popen(strace_argv("flock:delay_enter=1500000") + d.argv(foreground=True),
                            stdout=log, stderr=log, stdin=subprocess.DEVNULL, cwd=st.dir)
    time.sleep(0.8)                 # B opened the file and waits to flock it
    os.unlink(d.pid_file)
    held.close()
    pid_b = wait_for(lambda: read_pid(d.pid_file)[0] if d.serves() else None, timeout=15)
    rc, err = run_for(d3.argv(foreground=True), 8)
    third = running(d3.conf)
    tap.ok(pid_b and alive(pid_b) and rc == 1 and "is locked" in err and not third,
           "%s: an instance stopping between the next one's open() and flock(): the next "
           "one locks the file at the path; a third instance exits 1 (locked)" % d.name,
           diag="pid file %r (exists %s), B serves %s; third: exit %s %r, running %s"
           % (read_pid(d.pid_file)[1], os.path.exists(d.pid_file), d.serves(),
              rc, err[-200:], third))
    kill_all(d3.conf)
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
    kill_all(d.conf)
    log.close()


def test_simultaneous(st, d):
    d.write()
    for rnd in range(3):
        procs = [subprocess.Popen(d.argv(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  stdin=subprocess.DEVNULL, text=True) for _ in range(4)]
        outs = [(p.wait(timeout=30), p.stderr.read()) for p in procs]
        for p in procs:
            p.stdout.close()
            p.stderr.close()
        pid = wait_for(lambda: read_pid(d.pid_file)[0], timeout=10)
        time.sleep(0.5)
        winners = [o for o in outs if o[0] == 0]
        losers = [o for o in outs if o[0] == 1 and re.search(
            r"is locked|Address already in use|being delivered by pid", o[1])]
        procs_now = running(d.conf)
        tap.ok(len(winners) == 1 and len(losers) == 3 and procs_now == [pid] and d.serves(),
               "%s: 4 started at once (round %d): one exits 0 and runs, 3 exit 1 naming "
               "the cause" % (d.name, rnd + 1),
               diag="exits %r, pid file %r, running %s"
               % (outs, read_pid(d.pid_file)[1], procs_now))
        stop_detached(d, pid)


def test_term_during_fork(st, daemons):
    """SIGTERM reaches the detaching parent as it enters fork(). strace
    queues the signal on the entry of the first clone(2) (glibc's fork();
    threads use clone3), so the moment is exact on a loaded machine too: a
    delay in the syscall and a poll of /proc to catch it missed the window
    once on CI. when=1: a handled signal restarts clone(), and injecting at
    every entry would never let it through."""
    for d in daemons:
        d.write()
        for inject, want in (("clone:signal=SIGTERM:when=1", "stops"), (None, "runs")):
            argv = (strace_argv(inject) if inject else []) + d.argv()
            proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                    stdin=subprocess.DEVNULL, cwd=st.dir, text=True)
            try:
                err = proc.communicate(timeout=30)[1]
                rc = proc.returncode
            except subprocess.TimeoutExpired:
                proc.kill()
                err, rc = proc.communicate()[1], None
            if want == "stops":
                ok = wait_for(lambda: not running(d.conf) and not os.path.exists(d.pid_file),
                              timeout=10)
                what = ("%s: SIGTERM to the detaching parent as it forks: exit 0, and the "
                        "daemon stops (pid file removed), not runs on" % d.name)
            else:
                # the control: the same start without the signal serves,
                # so the stop above is the signal's doing
                ok = wait_for(lambda: read_pid(d.pid_file)[0], timeout=10) and d.serves()
                what = "%s: the same start without the signal runs and serves" % d.name
            tap.ok(rc == 0 and ok, what,
                   diag="exit %s, running %s, pid file %r, stderr %r"
                   % (rc, running(d.conf), read_pid(d.pid_file)[1], err[-300:]))
            kill_all(d.conf)
            if os.path.exists(d.pid_file):
                os.unlink(d.pid_file)


def test_signal_at_pidfile(st, d):
    d.write()
    subprocess.run(d.argv(), capture_output=True, timeout=30, stdin=subprocess.DEVNULL)
    pid = wait_for(lambda: read_pid(d.pid_file)[0], timeout=10, interval=0.005)
    if pid:
        os.kill(pid, signal.SIGHUP)
    time.sleep(1.0)
    tap.ok(alive(pid) and d.serves() and " 200 " in readyz(d.mport),
           "%s: SIGHUP the moment the pid file names it: it reloads and serves on"
           % d.name)
    stop_detached(d, pid)
    subprocess.run(d.argv(), capture_output=True, timeout=30, stdin=subprocess.DEVNULL)
    pid = wait_for(lambda: read_pid(d.pid_file)[0], timeout=10, interval=0.005)
    if pid:
        os.kill(pid, signal.SIGTERM)
    tap.ok(pid and wait_for(lambda: not alive(pid) and not os.path.exists(d.pid_file),
                            timeout=15),
           "%s: SIGTERM the moment the pid file names it: it stops and removes it" % d.name)
    kill_all(d.conf)


# ------------------------------------------------------ limits

def test_nofile_sweep(st, d, limits):
    d.write()
    broken = []
    for n in limits:
        res = subprocess.run(["prlimit", "--nofile=%d:%d" % (n, n)] + d.argv(),
                             capture_output=True, text=True, timeout=30,
                             stdin=subprocess.DEVNULL)
        pid = wait_for(lambda: read_pid(d.pid_file)[0], timeout=3) if res.returncode == 0 \
            else None
        time.sleep(0.2)
        if res.returncode == 1:
            if not re.search(r"open-files limit|Too many open files", res.stderr) \
                    or running(d.conf):
                broken.append((n, "exit 1: %s" % res.stderr.strip()[-160:]))
        elif not (res.returncode == 0 and alive(pid) and d.serves()):
            broken.append((n, "exit %s, pid file %r, running %s"
                           % (res.returncode, read_pid(d.pid_file)[1], running(d.conf))))
        stop_detached(d, pid)
        if os.path.exists(d.pid_file):
            os.unlink(d.pid_file)
    tap.ok(not broken, "%s under open-files limits %s: exit 1 naming the limit, or exit 0 "
           "and a daemon that serves" % (d.name, limits), diag="%r" % broken)


def test_user_pidfile(st, d):
    rootdir = st.path("rootonly")
    os.makedirs(rootdir, mode=0o755, exist_ok=True)
    os.chmod(st.dir, 0o755)
    pid_file = os.path.join(rootdir, "u.pid")
    d.write(pid_file=pid_file, extra="user = nobody\n")
    log = log_of(st, "user-pid")
    proc = subprocess.Popen(d.argv(foreground=True), stdout=log, stderr=log,
                            stdin=subprocess.DEVNULL, cwd=st.dir)
    wait_for(lambda: d.serves() and read_pid(pid_file)[0], timeout=15)
    pid = read_pid(pid_file)[0]
    proc.send_signal(signal.SIGTERM)
    try:
        rc = proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        rc = None
        proc.kill()
    log.close()
    text = read_pid(pid_file)[1]
    said = [line for line in st.read_log("user-pid").splitlines() if "u.pid" in line]
    tap.ok(pid == proc.pid and rc == 0 and not text and said
           and "Permission denied" in said[0],
           "%s as user nobody, pid_file in a root-only directory: SIGTERM exits 0, leaves "
           "no pid to signal, and says why the file stays" % d.name,
           diag="pid %s, exit %s, pid file %r, log %r" % (pid, rc, text, said))
    # it cannot be removed by a process that is no longer root: said at
    # start, so that the operator gives the user the directory
    warned = [line for line in st.read_log("user-pid").splitlines()
              if "pid_file: user nobody cannot write to %s" % rootdir in line]
    tap.ok(warned and "emptied, not removed" in warned[0]
           and d.conf in warned[0],
           "%s as user nobody, pid_file in a root-only directory: the start says the "
           "file will stay (file:line, the user, the directory)" % d.name,
           diag="log %r" % st.read_log("user-pid")[-800:])
    argv = d.argv()
    res = run(argv[:1] + ["-t"] + argv[1:])
    tap.ok(res.returncode == 0 and "pid_file: user nobody cannot write to" in res.stderr,
           "%s: -t says so too, and passes (a warning: the daemon works)" % d.name,
           diag="exit %s: %s" % (res.returncode, res.stderr[-400:]))
    if os.path.exists(pid_file):
        os.unlink(pid_file)


def test_nproc_after_fork(st, d):
    d.write(extra="user = nobody\nworkers = 2\n")
    if not wait_for(lambda: not run(["pgrep", "-u", "nobody"]).stdout.strip(), timeout=10):
        tap.skip("%s: RLIMIT_NPROC after the fork" % d.name, "nobody runs processes")
        return
    res = subprocess.run(["prlimit", "--nproc=1:1"] + d.argv(), capture_output=True,
                         text=True, timeout=30, stdin=subprocess.DEVNULL)
    pid = wait_for(lambda: read_pid(d.pid_file)[0], timeout=5)
    time.sleep(1.0)
    runs = alive(pid) and d.serves()
    tap.ok((res.returncode == 1 and not running(d.conf)) or (res.returncode == 0 and runs),
           "%s: RLIMIT_NPROC 1 as user nobody: exit 1 with the reason, or exit 0 and a "
           "daemon that serves" % d.name,
           diag="exit %s, stderr %r, pid file %r, alive %s: the worker threads fail after "
           "the fork, after the pid file was written" % (res.returncode, res.stderr[-200:],
                                                         read_pid(d.pid_file)[1], alive(pid)))
    text = read_pid(d.pid_file)[1]
    tap.ok(not running(d.conf) and (text is None or text == "")
           and "cannot start worker thread" in res.stderr,
           "%s: RLIMIT_NPROC 1 as user nobody: no pid file names the dead process, and "
           "its starter's stderr says what failed" % d.name,
           diag="pid file %r, running %s, stderr %r" % (text, running(d.conf),
                                                        res.stderr[-200:]))
    tap.ok("Resource temporarily unavailable" in res.stderr,
           "%s: RLIMIT_NPROC: the failure names its cause (promise 5)" % d.name,
           diag="stderr %r: proxyv2-shim/main.c says \"cannot start worker thread\" "
           "without pthread_create()'s error" % res.stderr[-200:])
    kill_all(d.conf)
    if os.path.exists(d.pid_file):
        os.unlink(d.pid_file)


# ------------------------------------------------------ the spool runner

def test_spool_runner(st, d):
    d.write()
    res = subprocess.run(d.argv(), capture_output=True, text=True, timeout=30,
                         stdin=subprocess.DEVNULL)
    # flush at once: runner.lock names the parent, then the detached pid
    flush = subprocess.run([SPOOL, "-c", d.conf, "flush"], capture_output=True, text=True,
                           timeout=30, stdin=subprocess.DEVNULL)
    pid = wait_for(lambda: read_pid(d.pid_file)[0], timeout=10)
    with open(os.path.join(d.spool, "runner.lock")) as f:
        lock_text = f.read()
    second = subprocess.run(d.argv(), capture_output=True, text=True, timeout=30,
                            stdin=subprocess.DEVNULL)
    tap.ok(res.returncode == 0 and pid and str(pid) in lock_text and second.returncode == 1
           and str(pid) in second.stderr,
           "spool run detached: runner.lock names pid %s; a second run exits 1 naming it"
           % pid, diag="exit %s, lock %r, second: exit %s %r"
           % (res.returncode, lock_text, second.returncode, second.stderr[-200:]))
    m = re.search(r"pid (\d+)", flush.stdout)
    tap.ok(flush.returncode == 0 and m and (int(m.group(1)) == pid or alive(pid)),
           "spool flush right after run: exit 0, a daemon signalled",
           diag="flush: exit %s %r %r" % (flush.returncode, flush.stdout, flush.stderr))
    stop_detached(d, pid)
    tap.ok(not os.path.exists(d.pid_file) and not running(d.conf),
           "spool run: SIGTERM stops it and removes the pid file")


def test_ready_at_return(st, daemons):
    """The starter returns once the daemon serves: /readyz is 200 at that
    moment, not a moment later (the spool's runner said READY=1 and then
    swept tmp/ and read its secret before its /readyz turned true)."""
    for d in daemons:
        d.write()
        if d.kind == "spool":   # a long first sweep: files a writer may still own
            for i in range(40000):
                open(os.path.join(d.spool, "tmp", "w%05d" % i), "w").close()
        res = subprocess.run(d.argv(), capture_output=True, text=True, timeout=60,
                             stdin=subprocess.DEVNULL)
        ready = readyz(d.mport)
        pid = read_pid(d.pid_file)[0]
        tap.ok(res.returncode == 0 and " 200 " in ready and alive(pid),
               "%s: when the detached start returns, /readyz is already 200" % d.name,
               diag="exit %s %r, /readyz %r" % (res.returncode, res.stderr[-200:], ready))
        stop_detached(d, pid)


def test_start_timeout(st, daemons):
    """A detached start whose daemon never serves (here: held 10 s in
    setsid(), as a resolver or a store that never answers would hold it)
    ends after start_timeout with exit 1 and the reason, and leaves
    nothing running and no pid file; `-t` takes 1s to 1d only."""
    for d, timeout, said_as in daemons:
        for bad in ("0", "500ms", "2d", "soon"):
            d.write(extra="start_timeout = %s\n" % bad)
            res = subprocess.run(d.argv(check=True), capture_output=True,
                                 text=True, timeout=30, stdin=subprocess.DEVNULL)
            tap.ok(res.returncode == 1 and "start_timeout" in res.stderr,
                   "%s -t: start_timeout = %s refused, named" % (d.name, bad),
                   diag="exit %s %r" % (res.returncode, res.stderr[-300:]))
        d.write(extra="start_timeout = %s\n" % timeout)
        began = time.monotonic()
        proc = subprocess.Popen(["strace", "-f", "-qq", "-o", "/dev/null", "-e",
                                 "inject=setsid:delay_enter=10000000"] + d.argv(),
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                stdin=subprocess.DEVNULL)
        said, err = None, ""
        for line in proc.stderr:            # when the starter says it, not when it exits
            err += line
            if "did not serve within start_timeout (%s)" % said_as in line and said is None:
                said = time.monotonic() - began
        rc = proc.wait(timeout=60)
        left = wait_for(lambda: not running(d.conf), timeout=15)
        tap.ok(rc == 1 and said is not None and said < 6 and left
               and not os.path.exists(d.pid_file),
               "%s: a start held past start_timeout = %s: said so after %s s, exit 1, nothing "
               "left running, no pid file" % (d.name, timeout, "%.1f" % said if said else "-"),
               diag="exit %s %r, running %s, pid file %r" % (
                   rc, err[-300:], running(d.conf), read_pid(d.pid_file)[1]))
        kill_all(d.conf)


def main(st):
    os.makedirs(st.path("run"), exist_ok=True)
    dns = mxdkim.Dns(st.path("etc", "dns.txt"))
    mxdkim.one_rsa_key(st, dns)
    write(st, "secret", make_secret() + "\n")

    def make(kind, tag):
        return MinimalDaemon(st, kind, tag, name=kind)

    test_closed_stdio(st, [(make("policyd", "io1"), "2>&-"),
                           (make("policyd", "io2"), "<&- >&- 2>&-"),
                           (make("shim", "io"), "<&- >&- 2>&-"),
                           (make("milter", "io"), "<&- >&- 2>&-"),
                           (make("spool", "io"), "<&- >&- 2>&-")])
    test_notify_full(st, [make(k, "full") for k in ("policyd", "shim", "milter", "spool")])
    test_notify_bad(st, make("policyd", "bad"))
    test_pidfile_shapes(st, make("policyd", "shape"))
    test_stop_start_race(st, make("policyd", "raceb"), make("policyd", "racec"))
    test_simultaneous(st, make("policyd", "sim"))
    test_simultaneous(st, make("spool", "sim"))
    test_term_during_fork(st, [make(k, "fork") for k in ("policyd", "shim", "milter", "spool")])
    test_signal_at_pidfile(st, make("milter", "sig"))
    test_signal_at_pidfile(st, make("shim", "sig"))
    test_nofile_sweep(st, make("policyd", "nofile"), [8, 30, 49, 50, 51, 64])
    test_nofile_sweep(st, make("shim", "nofile"), [8, 12, 20, 40, 64])
    test_user_pidfile(st, make("policyd", "user"))
    test_nproc_after_fork(st, make("shim", "nproc"))
    test_spool_runner(st, make("spool", "run"))
    test_ready_at_return(st, [make(k, "ready") for k in ("policyd", "shim", "milter", "spool")])
    test_start_timeout(st, [(make("policyd", "slow"), "2s", "2s"),
                            (make("spool", "slow"), "1500ms", "1500ms")])


with Stack("lifecycle") as st:
    tap.stack = st
    main(st)

sys.exit(tap.done())
