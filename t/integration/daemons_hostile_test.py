#!/usr/bin/python3
"""The daemon skeleton (common/daemon*.c, common/skeleton.c) from the
unlucky operator's and the attacker's side, against the real daemons:

- -t is start-up minus binding: for each daemon, almost-right generic
  settings (unknown user, root as user, missing pid_file directory, bad
  or UNIX metrics_listen, two listeners or metrics_listen on one address,
  max_connections that cannot fit the open-files limit, 0) are refused
  by -t with "file:line", and starting with the same file fails the same
  way before anything listens;
- out of descriptors (prlimit --nofile=64, and a running daemon squeezed
  with prlimit --pid), policyd-ratelimit, proxyv2-shim and milter-dkim
  (its own accept loop, mengine) flooded by more clients than
  descriptors: the daemon's CPU time stays low (from /proc/PID/stat), its
  log stays short, and once the flood closes a new client is served (a
  policy request answered; Postfix's greeting and EHLO through the shim's
  XCLIENT; a milter option negotiation answered);
- detached (no -f): a pid_file another instance holds, a metrics_listen
  or mail port in use fail before the fork, with exit status 1 and the
  reason on stderr (they used to fail in the detached child, after its
  parent had exited 0, into syslog alone), and leave no process; a good
  start writes the pid file last: once it names the detached pid, that
  process runs and its metrics endpoint answers; the parent returns
  although its caller reads stdout and stderr to their end (the child
  keeps neither open); SIGTERM removes it;
- signals: SIGUSR1 no longer kills policyd, the shim or the milter; a
  reload that changes a setting needing a restart names it (and never
  its value); a setting a reload can apply is applied (policyd's
  max_connections); SIGTERM removes the pid file and exits 0;
- property (hypothesis): for any series of reloads of policyd-ratelimit
  with any mix of settings changed, each reload names exactly the
  restart-only settings whose value differs from the one the daemon
  started with (the one still in effect) -- none silently, none twice
  over, never a value."""

import os
import re
import signal
import socket
import stat
import struct
import subprocess
import sys
import time

from hypothesis import given, settings, strategies as hs

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from mxdaemons import milter_negotiates, write  # noqa: E402
from mxflood import Flood, cpu_ticks, fd_count  # noqa: E402
from mxstack import Stack, port_open  # noqa: E402
from mxtest import build_path, run, tap, wait_for  # noqa: E402
import mxdkim  # noqa: E402
from mxwebhook import make_secret  # noqa: E402

POLICYD = build_path("policyd-ratelimit", "policyd-ratelimit")
SHIM = build_path("proxyv2-shim", "proxyv2-shim")
SPOOL = build_path("lmtp-webhook", "lmtp-webhook-spool")
HZ = os.sysconf("SC_CLK_TCK")
FLOOD = 300                     # clients, against 64 descriptors
REQUEST = (b"request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\n"
           b"client_address=192.0.2.1\nsender=a@example.com\nrecipient=b@example.net\n\n")


def policy_answer(port, timeout=10):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(REQUEST)
        data = b""
        while not data.endswith(b"\n\n"):
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        return data
    finally:
        s.close()


def proxy_v2(src="192.0.2.7", sport=40000, dst="127.0.0.1", dport=25):
    body = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!HH", sport, dport)
    return b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x21, 0x11]) + struct.pack("!H", len(body)) + body


def smtp_through_shim(port, timeout=15):
    """PROXY v2 header, then an SMTP greeting and EHLO from Postfix."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(proxy_v2())
        f = s.makefile("rb")
        greeting = f.readline()
        s.sendall(b"EHLO client.example\r\n")
        ehlo = [f.readline()]
        while ehlo[-1][:4] == b"250-":
            ehlo.append(f.readline())
        s.sendall(b"QUIT\r\n")
        return greeting, ehlo[-1]
    finally:
        s.close()


def settle(pid, baseline):
    """Wait until the sessions of the last flood are gone; the count then,
    once it held still for a second."""
    wait_for(lambda: fd_count(pid) <= baseline, timeout=40, interval=0.5)
    last = fd_count(pid)
    for _ in range(20):
        time.sleep(1)
        now = fd_count(pid)
        if now == last:
            break
        last = now
    return last


def log_since(st, name, offset, cap=1 << 20):
    """(lines written after byte offset, the first cap bytes of them): a
    daemon spinning in accept() writes gigabytes (59 million lines in a
    few minutes with the old code), so nothing reads the whole log."""
    count, head = 0, b""
    with open(st.logs[name], "rb") as f:
        f.seek(offset)
        while True:
            chunk = f.read(1 << 20)
            if not chunk:
                break
            count += chunk.count(b"\n")
            if len(head) < cap:
                head += chunk[:cap - len(head)]
    return count, head.decode(errors="replace").splitlines()


def flood_check(st, name, proc, port, label, serve, after=None):
    """Flood, measure CPU over 3 s and the log growth, close, serve.
    Returns the log lines written meanwhile, or None when the daemon
    spun (then it is killed, before its log fills the disk)."""
    offset = os.path.getsize(st.logs[name])
    flood = Flood(port, FLOOD)
    t0 = cpu_ticks(proc.pid)
    time.sleep(3)
    used = cpu_ticks(proc.pid) - t0
    grown, lines = log_since(st, name, offset)
    spun = not tap.ok(used <= 0.3 * HZ, "%s: %d clients: the daemon used %.2fs of CPU in 3s "
                      "(at most 0.3s)" % (label, len(flood.socks), used / HZ))
    if spun:
        proc.kill()
    tap.ok(grown <= 60, "%s: %d log lines during the flood (at most 60)" % (label, grown),
           diag="\n".join(lines[-5:]))
    tap.ok(proc.poll() is None, "%s: the daemon is alive" % label)
    flood.close()
    if spun:
        return None
    if after:
        after()
    def try_serve():
        try:
            return serve()
        except OSError:
            return False

    got = wait_for(try_serve, timeout=20, interval=0.5)
    tap.ok(got, "%s: once the flood closed, a new client is served" % label)
    return log_since(st, name, offset)[1]


# ---------------------------------------------------------------- -t

def run_in(st, argv, timeout):
    """In the stack's directory: a relative pid_file lands there."""
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=st.dir,
                          stdin=subprocess.DEVNULL)


def check_refused(st, argv_t, argv_run, conf, words, label):
    """-t exits 1 naming words; starting fails the same way, binding nothing."""
    res = run_in(st, argv_t, 60)
    out = res.stdout + res.stderr
    tap.ok(res.returncode == 1 and all(w in out for w in words),
           "%s: -t refuses it: %s" % (label, " / ".join(words)), diag=out)
    try:
        res = run_in(st, argv_run, 15)
        out = res.stdout + res.stderr
    except subprocess.TimeoutExpired as e:
        res = subprocess.CompletedProcess(argv_run, 0)
        out = "still running after 15s: %s" % (e.stderr or b"").decode(errors="replace")
    tap.ok(res.returncode != 0 and all(w in out for w in words) and "started" not in out,
           "%s: starting refuses it the same way, before listening" % label, diag=out)


def test_check_generic(st):
    base_policyd = "listen = inet:127.0.0.1:%d\n" % st.port("t-policyd")
    base_shim = ("listener = 127.0.0.1:%d backend=127.0.0.1:9 mode=proxy-v2 trusted=127.0.0.0/8\n"
                 % st.port("t-shim"))
    cases = [
        ("user = no-such-user-mxkit\n", ["unknown user \"no-such-user-mxkit\""]),
        ("user = root\n", ["uid 0"]),
        ("pid_file = /nonexistent-mxkit/run/d.pid\n",
         ["pid_file: directory /nonexistent-mxkit/run: No such file or directory"]),
        ("pid_file = d.pid\n", ["not an absolute path"]),
        # a directory that takes no file: every stat() passed, -t said OK
        ("pid_file = /proc/mxkit-d.pid\n",
         ["pid_file: cannot create /proc/mxkit-d.pid: No such file or directory"]),
        # a symbolic link planted where the pid file goes
        ("pid_file = %s\n" % st.path("run", "planted.pid"),
         ["pid_file: %s is a symbolic link" % st.path("run", "planted.pid")]),
        ("metrics_listen = 127.0.0.1:notaport\n", ["metrics_listen:"]),
        ("metrics_listen = unix:/tmp/mxkit-metrics.sock\n", ["Prometheus scrapes TCP"]),
        # TEST-NET-1: no interface here has it (-t said OK, start-up died)
        ("metrics_listen = inet:192.0.2.1:9101\n",
         ["metrics_listen inet:192.0.2.1:9101: no interface of this host has that address"]),
    ]
    dkim = st.path("etc", "milter-base.conf")
    spool = st.path("etc", "spool-base.conf")
    os.makedirs(st.path("run"), exist_ok=True)
    if not os.path.islink(st.path("run", "planted.pid")):
        os.symlink(st.path("etc", "victim"), st.path("run", "planted.pid"))
    daemons = [
        ("policyd-ratelimit", POLICYD, base_policyd, []),
        ("proxyv2-shim", SHIM, base_shim, []),
        ("milter-dkim", mxdkim.MILTER, open(dkim).read(), []),
        ("lmtp-webhook-spool", SPOOL, open(spool).read(), ["run"]),
    ]
    for dname, binary, base, tail in daemons:
        for i, (extra, words) in enumerate(cases):
            lines = base.count("\n")
            conf = write(st, "%s-%d.conf" % (dname, i), base + extra)
            where = "%s:%d:" % (conf, lines + 1)
            check_refused(st, [binary, "-t", "-c", conf] + tail,
                          [binary, "-f", "-c", conf] + tail, conf, [where] + words,
                          "%s %s" % (dname, extra.strip()))
        # a pid_file naming a file that is not a pid file (a key, a table,
        # the configuration itself): -t said OK, and the daemon emptied
        # it, wrote its pid there and removed it at the stop
        victim = st.path("etc", "%s-victim.key" % dname)
        secret = b"-----BEGIN PRIVATE KEY-----\nMIIEvQIBADAN\n-----END PRIVATE KEY-----\n"
        with open(victim, "wb") as f:
            f.write(secret)
        conf = write(st, "%s-victim.conf" % dname, base + "pid_file = %s\n" % victim)
        check_refused(st, [binary, "-t", "-c", conf] + tail, [binary, "-f", "-c", conf] + tail,
                      conf, ["%s:%d: pid_file: %s holds something other than a process id"
                             % (conf, base.count("\n") + 1, victim)],
                      "%s pid_file naming a key file" % dname)
        with open(victim, "rb") as f:
            tap.is_(f.read(), secret, "%s: the file pid_file named is left as it was" % dname)
    # pid_file the path of another setting: a UNIX socket not made yet
    # (-t said OK; the daemon died at start), the KeyTable
    sock = st.path("run", "same.sock")
    for dname, binary, text, words in (
            ("policyd-ratelimit", POLICYD, "listen = unix:%s\npid_file = %s\n" % (sock, sock),
             "pid_file: %s is also the path of listen (line 1)" % sock),
            ("milter-dkim", mxdkim.MILTER,
             re.sub(r"(?m)^socket = .*$", "socket = unix:%s" % sock, open(dkim).read())
             + "pid_file = %s\n" % sock, "pid_file: %s is also the path of socket" % sock),
            ("milter-dkim", mxdkim.MILTER, open(dkim).read() + "pid_file = %s\n"
             % re.search(r"(?m)^key_table = (.*)$", open(dkim).read()).group(1),
             "is also the path of key_table")):
        conf = write(st, "%s-clash.conf" % dname, text)
        check_refused(st, [binary, "-t", "-c", conf], [binary, "-f", "-c", conf], conf,
                      [words], "%s: pid_file the path of another setting" % dname)
        tap.ok(not os.path.exists(sock) or stat.S_ISSOCK(os.lstat(sock).st_mode),
               "%s: nothing left at that path but a socket" % dname)

    # two listeners, or metrics_listen, on one address
    port = st.port("t-policyd")
    conf = write(st, "policyd-dup.conf", "listen = inet:127.0.0.1:%d, inet:0.0.0.0:%d\n"
                 "metrics_listen = inet:127.0.0.1:%d\n" % (port, port, port))
    check_refused(st, [POLICYD, "-t", "-c", conf], [POLICYD, "-f", "-c", conf], conf,
                  ["listen inet:0.0.0.0:%d: the same address as listen" % port,
                   "%s:2: metrics_listen inet:127.0.0.1:%d: the same address" % (conf, port)],
                  "policyd-ratelimit: two listeners and metrics_listen on one address")
    # a listen value that does not parse: -t said "configuration OK", and
    # the daemon bound the addresses before it and then died
    bad_listen = [
        ("inet:127.0.0.1:99999", "bad port number"),
        # strtol() took these as the port: a "+25" meant something else
        ("inet:127.0.0.1:+%d" % port, "bad port number (decimal digits only, 0-65535)"),
        ("inet:127.0.0.1:0x10", "bad port number (decimal digits only, 0-65535)"),
        ("[::1]:+%d" % port, "bad port number (decimal digits only, 0-65535)"),
        # was "IPv6 addresses must be written as [ADDRESS]:PORT"
        ('"inet:127.0.0.1:%d"' % port, "the value is in quotes: write it without them"),
        ("inet:127.0.0.1", "expected HOST:PORT"),
        ("unix:relative.sock", "unix socket path must be absolute"),
        ("inet:127.0.0.1:%d junk" % port, "listen junk: expected HOST:PORT"),
        ("inet:127.0.0.1:%d, tcp:127.0.0.1:%d" % (port, port + 1), "listen tcp:127.0.0.1"),
        # a regular file there: the start removed it and bound in its place
        ("unix:%s" % st.path("etc", "keep.cf"), "exists and is not a socket (not removing it)"),
        ("unix:/proc/mxkit-policyd.sock", "its directory takes no socket"),
        ("unix:/nonexistent-mxkit/p.sock", "the directory of the UNIX socket does not exist"),
        ("", "listen: no address given"),
        ("unix:%s\ncontrol_socket = %s" % (st.path("p.sock"), st.path("p.sock")),
         "the same path as control_socket"),
    ]
    with open(st.path("etc", "keep.cf"), "w") as f:
        f.write("keep\n")
    for i, (value, words) in enumerate(bad_listen):
        conf = write(st, "policyd-listen-%d.conf" % i, "listen = %s\n" % value)
        check_refused(st, [POLICYD, "-t", "-c", conf], [POLICYD, "-f", "-c", conf], conf,
                      ["%s:1: listen" % conf, words],
                      "policyd-ratelimit: listen = %s" % value)
    tap.is_(open(st.path("etc", "keep.cf")).read(), "keep\n",
            "policyd-ratelimit: the file a unix listen named is kept")
    # a store that is the daemon itself: it connected to itself and logged
    # "malformed attribute" for each of its Redis commands
    mport = st.port("t-policyd-metrics")
    psock, csock = st.path("pl.sock"), st.path("pc.sock")
    own = "listen = inet:0.0.0.0:%d, unix:%s\nmetrics_listen = inet:127.0.0.1:%d\n" \
        "control_socket = %s\nuser = nobody\n" % (port, psock, mport, csock)
    loops = [
        ("redis://:S3cr3t-loop@127.0.0.1:%d/0" % port, "listen inet:0.0.0.0:%d" % port),
        ("redis://localhost:%d" % port, "listen inet:0.0.0.0:%d" % port),
        ("redis+unix://%s" % psock, "listen unix:%s" % psock),
        ("redis://127.0.0.1:%d/1" % mport, "metrics_listen inet:127.0.0.1:%d" % mport),
        ("redis+unix://%s?db=2" % csock, "control_socket %s" % csock),
        ("redis-sentinel://127.0.0.1:%d/mymaster" % port,
         "the Sentinel 127.0.0.1 is this daemon's own listen"),
    ]
    for i, (store, words) in enumerate(loops):
        conf = write(st, "policyd-loop-%d.conf" % i, "store = %s\n%s" % (store, own))
        check_refused(st, [POLICYD, "-t", "-c", conf], [POLICYD, "-f", "-c", conf], conf,
                      ["%s:1: store: " % conf, words, "it would connect to itself"],
                      "policyd-ratelimit: store = %s" % store.replace("S3cr3t-loop", "***"))
        res = run_in(st, [POLICYD, "-t", "-c", conf], 60)
        tap.ok("S3cr3t" not in res.stdout + res.stderr,
               "policyd-ratelimit: the loop error quotes no password")
    conf = write(st, "policyd-noloop.conf", "store = redis://127.0.0.1:%d/0\n%s"
                 % (st.port("t-policyd-redis"), own))
    res = run_in(st, [POLICYD, "-t", "-c", conf], 60)
    tap.is_(res.returncode, 0, "policyd-ratelimit: a store on another port is no loop",
            diag=res.stdout + res.stderr)
    # lmtp-webhook-spool: -t said OK, and run died or could post nothing
    write(st, "plainfile", "x\n")
    os.makedirs(st.path("rootspool"), exist_ok=True)
    os.chmod(st.path("rootspool"), 0o700)
    secret = "secret_file = %s\n" % st.path("etc", "secret")
    bad_spool = [
        ("spool_dir = %s\n" % st.path("etc", "plainfile"), "is not a directory"),
        ("spool_dir = %s\n" % st.path("missing", "a", "b"),
         "neither it nor its parent directory exists"),
        ("spool_dir = spool\n", "is not an absolute path"),
        ("spool_dir = %s\nuser = nobody\n" % st.path("rootspool"),
         "user nobody cannot write it (owner uid 0, mode 0700)"),
        ("spool_dir = %s\ntimeout = 0\n" % st.path("spool"), "timeout must be from 1s to 1h"),
        ("spool_dir = %s\ntimeout = 2h\n" % st.path("spool"), "timeout must be from 1s to 1h"),
        ("spool_dir = %s\nmetrics_listen = inet:127.0.0.1:0\n" % st.path("spool"),
         "port 0 (the kernel would pick a port no client knows)"),
        # "3" for the default "3d": 3 seconds, the first failure dead-lettered
        ("spool_dir = %s\ndead_letter_after = 3\n" % st.path("spool"),
         "dead_letter_after needs a unit (3d, 72h)"),
        # with a unit, under the first retry: dead at the first failure too
        ("spool_dir = %s\ndead_letter_after = 500ms\n" % st.path("spool"),
         "dead_letter_after must be 0 (never) or at least 10s"),
        ("spool_dir = %s\ndead_letter_after = 9s\n" % st.path("spool"),
         "dead_letter_after must be 0 (never) or at least 10s"),
    ]
    for i, (text, words) in enumerate(bad_spool):
        conf = write(st, "spool-bad-%d.conf" % i, secret + text)
        check_refused(st, [SPOOL, "-t", "-c", conf], [SPOOL, "-f", "-c", conf, "run"], conf,
                      [words], "lmtp-webhook-spool: %s" % text.strip().replace("\n", "; "))
    conf = write(st, "spool-nosecret.conf", "spool_dir = %s\nsecret_file = %s\n"
                 % (st.path("spool"), st.path("etc", "no-such-secret")))
    res = run_in(st, [SPOOL, "-t", "-c", conf], 15)
    tap.ok(res.returncode == 0 and "secret_file: " in res.stderr and "nothing is posted until"
           in res.stderr, "lmtp-webhook-spool: a secret_file that cannot be read is said by -t "
           "(a warning: a Secret mounted later is read when it comes)",
           diag=res.stdout + res.stderr)
    for value in ("0", "3d", "10s"):     # 0: never give up, as documented
        conf = write(st, "spool-dla-%s.conf" % value, secret + "spool_dir = %s\n"
                     "dead_letter_after = %s\n" % (st.path("spool"), value))
        res = run_in(st, [SPOOL, "-t", "-c", conf], 15)
        tap.ok(res.returncode == 0, "lmtp-webhook-spool: dead_letter_after = %s accepted"
               % value, diag=res.stdout + res.stderr)
    # the secret itself where its path goes: refused, and never echoed
    # (it was accepted, and every attempt logged it as a missing file)
    inline = "whsec_bXhraXQtaW5saW5lLXNlY3JldC0zMi1ieXRlcyEhIQ=="
    for i, value in enumerate((inline, '"%s"' % inline, "relative/secret")):
        conf = write(st, "spool-relsecret-%d.conf" % i, "spool_dir = %s\nsecret_file = %s\n"
                     % (st.path("spool"), value))
        res = run_in(st, [SPOOL, "-t", "-c", conf], 15)
        tap.ok(res.returncode == 1 and "secret_file must be an absolute path" in res.stderr
               and inline not in res.stdout + res.stderr
               and "bXhraXQtaW5saW5l" not in res.stdout + res.stderr,
               "lmtp-webhook-spool: secret_file = %s refused, the value not echoed"
               % value.replace(inline, "<the secret>"), diag=res.stdout + res.stderr)
    # a listening address no interface of this host has
    conf = write(st, "policyd-foreign.conf", "listen = inet:192.0.2.1:%d\n" % port)
    check_refused(st, [POLICYD, "-t", "-c", conf], [POLICYD, "-f", "-c", conf], conf,
                  ["%s:1: listen inet:192.0.2.1:%d: no interface of this host" % (conf, port)],
                  "policyd-ratelimit: listen on an address this host does not have")
    conf = write(st, "shim-foreign.conf", base_shim.replace("127.0.0.1:%d" % st.port("t-shim"),
                                                            "192.0.2.1:%d" % st.port("t-shim")))
    check_refused(st, [SHIM, "-t", "-c", conf], [SHIM, "-f", "-c", conf], conf,
                  ["%s:1: listener 192.0.2.1:%d" % (conf, st.port("t-shim")),
                   "no interface of this host"],
                  "proxyv2-shim: a listener on an address this host does not have")
    conf = write(st, "milter-foreign.conf", re.sub(r"(?m)^socket\s*=.*$",
                                                   "socket = inet:%d@192.0.2.1" % st.port("t-milter"),
                                                   open(dkim).read()))
    check_refused(st, [mxdkim.MILTER, "-t", "-c", conf], [mxdkim.MILTER, "-f", "-c", conf], conf,
                  ["socket inet:192.0.2.1:%d: no interface of this host" % st.port("t-milter")],
                  "milter-dkim: socket on an address this host does not have")
    conf = write(st, "shim-tp-user.conf", base_shim.replace("mode=proxy-v2", "mode=transparent")
                 + "user = nobody\n")
    check_refused(st, [SHIM, "-t", "-c", conf], [SHIM, "-f", "-c", conf], conf,
                  ["%s:1: mode=transparent needs CAP_NET_ADMIN in every session, which "
                   "user = nobody gives up" % conf],
                  "proxyv2-shim: mode=transparent with user = (every session failed)")
    conf = write(st, "shim-dup.conf", base_shim + base_shim.replace("9 mode", "10 mode"))
    check_refused(st, [SHIM, "-t", "-c", conf], [SHIM, "-f", "-c", conf], conf,
                  ["%s:2: listener" % conf, "overlaps the listener at line 1"],
                  "proxyv2-shim: two listeners on one address")
    conf = write(st, "shim-metrics.conf", base_shim + "metrics_listen = inet:127.0.0.1:%d\n"
                 % st.port("t-shim"))
    check_refused(st, [SHIM, "-t", "-c", conf], [SHIM, "-f", "-c", conf], conf,
                  ["%s:2: metrics_listen" % conf, "only one can listen"],
                  "proxyv2-shim: metrics_listen on a listener's address")

    mport = st.port("t-milter")
    conf = write(st, "milter-metrics.conf", open(dkim).read()
                 + "metrics_listen = inet:127.0.0.1:%d\n" % mport)
    check_refused(st, [mxdkim.MILTER, "-t", "-c", conf], [mxdkim.MILTER, "-f", "-c", conf], conf,
                  ["metrics_listen inet:127.0.0.1:%d: the same address as socket "
                   "inet:127.0.0.1:%d" % (mport, mport), "only one can listen"],
                  "milter-dkim: metrics_listen on the milter's socket")

    # max_connections against the open-files limit
    nofile = ["prlimit", "--nofile=64"]
    # workers = 1: the descriptor figures are for one worker (16 more per worker)
    conf = write(st, "policyd-max.conf", base_policyd + "max_connections = 1000\nworkers = 1\n")
    check_refused(st, nofile + [POLICYD, "-t", "-c", conf], nofile + [POLICYD, "-f", "-c", conf],
                  conf, ["%s:2: max_connections = 1000 needs 1032 open files" % conf,
                         "the limit is 64: lower it to 32"],
                  "policyd-ratelimit: max_connections = 1000 under 64 descriptors")
    conf = write(st, "shim-max.conf", base_shim + "workers = 1\nmax_connections = 100\n")
    check_refused(st, nofile + [SHIM, "-t", "-c", conf], nofile + [SHIM, "-f", "-c", conf],
                  conf, ["%s:3: max_connections = 100 needs 637 open files (6 per connection"
                         % conf, "lower it to 4"],
                  "proxyv2-shim: max_connections = 100 under 64 descriptors")
    for dname, binary, base in (("policyd-ratelimit", POLICYD, base_policyd),
                                ("proxyv2-shim", SHIM, base_shim)):
        conf = write(st, dname + "-zero.conf", base + "max_connections = 0\n")
        check_refused(st, [binary, "-t", "-c", conf], [binary, "-f", "-c", conf], conf,
                      ["%s:2: max_connections must be" % conf],
                      "%s: max_connections = 0" % dname)
    # the default is lowered to fit, and said so; -t passes
    res = run(nofile + [POLICYD, "-t", "-c", write(st, "policyd-def.conf",
                                                    base_policyd + "workers = 1\n")])
    tap.ok(res.returncode == 0 and "the default 10000 needs 10032 open files but the limit is "
           "64: serving at most 32 connections" in res.stderr,
           "policyd-ratelimit: the default max_connections is lowered to fit 64, with a warning",
           diag=res.stdout + res.stderr)


def http_get(port, path, timeout=5):
    """The status line of GET path on 127.0.0.1:port, or the error."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as c:
            c.sendall(b"GET %s HTTP/1.0\r\n\r\n" % path.encode())
            return c.recv(100).split(b"\r\n")[0].decode(errors="replace")
    except OSError as e:
        return str(e)


def left_running(conf):
    """Processes whose command line names conf."""
    res = run(["pgrep", "-f", "-a", "--", conf])
    return res.stdout.strip()


def test_detached_start(st):
    base_policyd = "listen = inet:127.0.0.1:%d\n" % st.port("d-policyd")
    base_shim = ("listener = 127.0.0.1:%d backend=127.0.0.1:9 mode=proxy-v2 trusted=127.0.0.0/8\n"
                 % st.port("d-shim"))
    daemons = [
        ("policyd-ratelimit", POLICYD, base_policyd, [], st.port("d-policyd")),
        ("proxyv2-shim", SHIM, base_shim, [], st.port("d-shim")),
        ("milter-dkim", mxdkim.MILTER, open(st.path("etc", "milter-base.conf")).read(), [],
         st.port("t-milter")),
        ("lmtp-webhook-spool", SPOOL, open(st.path("etc", "spool-base.conf")).read(), ["run"],
         None),
    ]
    import fcntl
    for dname, binary, base, tail, mail_port in daemons:
        mport = st.port("d-metrics-" + dname)
        pid_file = st.path("run", "d-%s.pid" % dname)
        os.makedirs(st.path("run"), exist_ok=True)
        conf = write(st, "d-%s.conf" % dname, base + "pid_file = %s\nmetrics_listen = "
                     "inet:127.0.0.1:%d\n" % (pid_file, mport))
        argv = [binary, "-c", conf] + tail

        # another instance holds the pid file
        with open(pid_file, "w") as held:
            fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
            res = run_in(st, argv, 30)
        tap.ok(res.returncode == 1 and "%s is locked: another instance is running" % pid_file
               in res.stderr and not left_running(conf),
               "%s detached: a held pid_file fails with exit 1, said on stderr" % dname,
               diag="exit %s: %s %s" % (res.returncode, res.stderr, left_running(conf)))
        # metrics_listen, then the mail port, in use
        holders = [("metrics_listen", mport,
                    "metrics_listen inet:127.0.0.1:%d: Address already in use" % mport)]
        if mail_port:
            holders.append(("its mail port", mail_port, "Address already in use"))
        for what, port, words in holders:
            hold = socket.socket()
            hold.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            hold.bind(("127.0.0.1", port))
            hold.listen(1)
            try:
                res = run_in(st, argv, 30)
            finally:
                hold.close()
            tap.ok(res.returncode == 1 and words in res.stderr and not left_running(conf),
                   "%s detached: %s in use fails with exit 1, said on stderr" % (dname, what),
                   diag="exit %s: %s %s" % (res.returncode, res.stderr, left_running(conf)))
        # a good start: the pid file is written last
        res = run_in(st, argv, 30)
        pid = wait_for(lambda: open(pid_file).read().strip() if os.path.exists(pid_file)
                       else "", timeout=20)
        status = http_get(mport, "/healthz") if pid else "no pid"
        tap.ok(res.returncode == 0 and pid and os.path.exists("/proc/%s" % pid)
               and status.startswith("HTTP/1.") and " 200 " in status,
               "%s detached: exit 0; once the pid file names it, pid %s runs and /healthz "
               "answers" % (dname, pid), diag="exit %s, %s: %s" % (res.returncode, status,
                                                                  res.stderr))
        if pid:
            os.kill(int(pid), signal.SIGTERM)
        tap.ok(wait_for(lambda: not os.path.exists("/proc/%s" % pid), timeout=15)
               and not os.path.exists(pid_file),
               "%s detached: SIGTERM stops it and removes the pid file" % dname)


# ---------------------------------------------------------------- EMFILE

def test_policyd_nofile(st):
    name = "policyd-nofile"
    port = st.port(name)
    conf = write(st, name + ".conf", "listen = inet:127.0.0.1:%d\nworkers = 1\n"
                 "limit per_sender = sender rate=100000/1m count=messages\n" % port)
    proc = st.start_daemon(name, ["prlimit", "--nofile=64", POLICYD, "-f", "-c", conf], port=port)
    tap.ok(wait_for(lambda: "serving at most 32 connections" in st.read_log(name), timeout=5),
           "policyd under 64 descriptors: the log says max_connections was lowered to 32")
    tap.ok(policy_answer(port) == b"action=DUNNO\n\n", "policyd under 64 descriptors answers")
    baseline = fd_count(proc.pid)
    if flood_check(st, name, proc, port, "policyd (nofile 64)",
                   lambda: policy_answer(port) == b"action=DUNNO\n\n") is None:
        return

    # squeezed while running: accept() itself fails with EMFILE
    limit = settle(proc.pid, baseline) + 6
    subprocess.run(["prlimit", "--pid", str(proc.pid), "--nofile=%d:64" % limit], check=True)
    lines = flood_check(st, name, proc, port, "policyd (squeezed to %d)" % limit,
                        lambda: policy_answer(port) == b"action=DUNNO\n\n") or []
    warnings = [x for x in lines if "Too many open files" in x]
    tap.ok(1 <= len(warnings) <= 3, "policyd: %d rate-limited EMFILE warning(s) over the flood"
           % len(warnings), diag="\n".join(lines[-5:]))
    tap.ok(warnings and re.search(r"accept on 127\.0\.0\.1:%d: Too many open files \(open-files "
                                  r"limit %d\): .*\d+ pause\(s\) of 100ms" % (port, limit),
                                  warnings[0]),
           "policyd: the warning names the listener, the limit and a count",
           diag=warnings[0] if warnings else "")
    return proc, conf


def test_shim_nofile(st):
    name = "shim-nofile"
    port = st.port(name)
    conf = write(st, name + ".conf",
                 "workers = 1\nheader_timeout = 30s\nxclient_name_lookup = no\n"
                 "listener = 127.0.0.1:%d backend=127.0.0.1:%d mode=xclient trusted=127.0.0.0/8\n"
                 % (port, st.port("postfix-smtp")))
    proc = st.start_daemon(name, ["prlimit", "--nofile=64", SHIM, "-f", "-c", conf], port=port)
    tap.ok(wait_for(lambda: "serving at most 4 connections" in st.read_log(name), timeout=5),
           "shim under 64 descriptors: max_connections lowered to 4 (6 descriptors a session)",
           diag=st.read_log(name))

    def served():
        greeting, ehlo = smtp_through_shim(port)
        return greeting.startswith(b"220 ") and ehlo.startswith(b"250 ")

    tap.ok(served(), "shim under 64 descriptors: a client reaches Postfix")
    baseline = fd_count(proc.pid)        # with the worker's loop running
    if flood_check(st, name, proc, port, "shim (nofile 64)", served) is None:
        return
    # squeezed while running: room for two of the four sessions
    # max_connections allows, waiting for their PROXY header; a session
    # to serve needs six, so the limit goes back to 64 after the flood
    limit = settle(proc.pid, baseline) + 2

    def squeeze(n):
        # the soft limit: raising a hard limit again would need CAP_SYS_RESOURCE
        subprocess.run(["prlimit", "--pid", str(proc.pid), "--nofile=%d:64" % n], check=True)

    squeeze(limit)
    lines = flood_check(st, name, proc, port, "shim (squeezed to %d)" % limit, served,
                        after=lambda: squeeze(64)) or []
    tap.ok(any("Too many open files" in x for x in lines),
           "shim: accept() ran out of descriptors and said so",
           diag="\n".join(lines[-5:]))


def test_milter_nofile(st):
    name = "milter-nofile"
    port = st.port(name)
    text = open(st.path("etc", "milter-base.conf")).read()
    conf = write(st, name + ".conf", re.sub(r"socket = .*", "socket = inet:%d@127.0.0.1" % port,
                                            text))
    proc = st.start_daemon(name, ["prlimit", "--nofile=64", mxdkim.MILTER, "-f", "-c", conf],
                           port=port)
    tap.ok(milter_negotiates(port), "milter under 64 descriptors negotiates")
    lines = flood_check(st, name, proc, port, "milter (nofile 64)",
                        lambda: milter_negotiates(port)) or []
    warnings = [x for x in lines if "Too many open files" in x]
    tap.ok(1 <= len(warnings) <= 3, "milter: %d rate-limited EMFILE warning(s) over the flood"
           % len(warnings), diag="\n".join(lines[-5:]))
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)


# ---------------------------------------------------------------- signals

def signal_checks(st, name, proc, reload_conf, changed, logname=None):
    logname = logname or name
    proc.send_signal(signal.SIGUSR1)
    tap.ok(wait_for(lambda: "nothing to flush" in st.read_log(logname), timeout=5)
           and proc.poll() is None, "%s: SIGUSR1 is logged, and the daemon lives" % name,
           diag=st.read_log(logname)[-500:])
    reload_conf()
    proc.send_signal(signal.SIGHUP)
    want = "reload: %s changed but cannot change while running" % changed
    tap.ok(wait_for(lambda: want in st.read_log(logname), timeout=10),
           "%s: a reload changing %s says it needs a restart" % (name, changed),
           diag=st.read_log(logname)[-800:])


def test_policyd_signals(st):
    name = "policyd-sig"
    port = st.port(name)
    pid_file = st.path("run", name + ".pid")
    os.makedirs(st.path("run"), exist_ok=True)
    conf = st.path("etc", name + ".conf")
    text = ("listen = inet:127.0.0.1:%d\npid_file = %s\nstore = memory\nmax_connections = 50\n"
            "limit per_sender = sender rate=100000/1m count=messages\n" % (port, pid_file))
    write(st, name + ".conf", text)
    proc = st.start_daemon(name, [POLICYD, "-f", "-c", conf], port=port)
    tap.ok(wait_for(lambda: os.path.exists(pid_file)), "policyd: pid file written")

    # max_connections = 2 by reload: applied (the third client is refused)
    def lower():
        write(st, name + ".conf", text.replace("store = memory",
                                               "store = redis://:s3cret@127.0.0.1:1/0")
              .replace("max_connections = 50", "max_connections = 2"))
    signal_checks(st, name, proc, lower, "store")
    tap.ok("s3cret" not in st.read_log(name), "policyd: the store URL's password is not logged")
    held = [socket.create_connection(("127.0.0.1", port)) for _ in range(2)]
    for s in held:
        s.sendall(REQUEST)
        s.recv(100)
    third = socket.create_connection(("127.0.0.1", port), timeout=5)
    third.sendall(REQUEST)
    try:
        data = third.recv(100)
    except OSError:
        data = b""
    tap.is_(data, b"", "policyd: max_connections lowered by SIGHUP refuses the third client")
    tap.ok(policy_answer_on(held[0]) == b"action=DUNNO\n\n",
           "policyd: the connections it holds still answer")
    for s in held + [third]:
        s.close()
    proc.send_signal(signal.SIGTERM)
    tap.is_(proc.wait(timeout=10), 0, "policyd: SIGTERM exits 0")
    tap.ok(not os.path.exists(pid_file), "policyd: SIGTERM removed the pid file")


def policy_answer_on(s):
    s.settimeout(5)
    s.sendall(REQUEST)
    data = b""
    while not data.endswith(b"\n\n"):
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def test_policyd_unix_user(st):
    """listen = unix:... and user = nobody, started as root: the socket was
    root's, and no other user (Postfix) could connect. A policy request
    made as nobody must be answered."""
    os.makedirs(st.path("psock"), exist_ok=True)
    os.chmod(st.path("psock"), 0o755)
    path = st.path("psock", "p.sock")
    name = "policyd-unix-user"
    write(st, name + ".conf", "listen = unix:%s\nuser = nobody\nstore = memory\n" % path)
    proc = st.start_daemon(name, [POLICYD, "-f", "-c", st.path("etc", name + ".conf")])
    try:
        wait_for(lambda: os.path.exists(path), timeout=10)
        time.sleep(0.3)
        probe = ("import socket,sys\ns=socket.socket(socket.AF_UNIX)\ns.settimeout(5)\n"
                 "s.connect(%r)\ns.sendall(%r)\nd=b''\n"
                 "while not d.endswith(b'\\n\\n'):\n    c=s.recv(4096)\n    if not c: break\n"
                 "    d+=c\nsys.exit(0 if d.startswith(b'action=') else 1)" % (path, REQUEST))
        res = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                              "/usr/bin/python3", "-c", probe], capture_output=True, text=True,
                             timeout=20)
        st_ = os.stat(path)
        tap.ok(res.returncode == 0, "policyd user = nobody: nobody's policy request over the "
               "UNIX socket is answered (uid %d mode %o)" % (st_.st_uid, st_.st_mode & 0o777),
               diag=res.stderr[-400:] + st.read_log(name)[-400:])
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_policyd_unix_no_user(st):
    """listen = unix:... started as root with no user: the socket is
    root's and Postfix's smtpd could not connect, yet -t said OK and the
    start said nothing. Now both warn, naming the listener and the fix;
    with user = nobody neither does."""
    path = st.path("psock", "n.sock")
    os.makedirs(st.path("psock"), exist_ok=True)
    os.chmod(st.path("psock"), 0o755)       # the socket refuses, not its directory
    bare = write(st, "policyd-nouser.conf", "listen = unix:%s\nstore = memory\n" % path)
    owned = write(st, "policyd-owned.conf", "listen = unix:%s\nstore = memory\nuser = nobody\n"
                  % path)
    warn = "listen unix:%s: no user is set" % path
    res = subprocess.run([POLICYD, "-t", "-c", bare], capture_output=True, text=True, timeout=20)
    tap.ok(res.returncode == 0 and warn in res.stderr and "set user" in res.stderr,
           "policyd -t, UNIX listener, root, no user: OK, with a warning naming the "
           "listener and the fix", diag=res.stdout + res.stderr)
    res = subprocess.run([POLICYD, "-t", "-c", owned], capture_output=True, text=True, timeout=20)
    tap.ok(res.returncode == 0 and "no user is set" not in res.stderr,
           "policyd -t with user = nobody: no such warning", diag=res.stdout + res.stderr)
    proc = st.start_daemon("policyd-nouser", [POLICYD, "-f", "-c", bare])
    try:
        wait_for(lambda: os.path.exists(path), timeout=10)
        time.sleep(0.3)
        res = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                              "/usr/bin/python3", "-c",
                              "import socket\ns=socket.socket(socket.AF_UNIX)\ns.connect(%r)"
                              % path], capture_output=True, text=True, timeout=20)
        tap.ok(res.returncode != 0 and "Permission denied" in res.stderr
               and warn in st.read_log("policyd-nouser"),
               "and as the warning says: nobody cannot connect; the start logs the warning",
               diag=res.stderr[-300:] + st.read_log("policyd-nouser")[-400:])
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_shim_signals(st):
    name = "shim-sig"
    port = st.port(name)
    text = ("workers = 2\nxclient_name_lookup = no\nlistener = 127.0.0.1:%d backend=127.0.0.1:%d mode=xclient "
            "trusted=127.0.0.0/8\n" % (port, st.port("postfix-smtp")))
    conf = write(st, name + ".conf", text)
    proc = st.start_daemon(name, [SHIM, "-f", "-c", conf], port=port)
    signal_checks(st, name, proc,
                  lambda: write(st, name + ".conf", text.replace("workers = 2", "workers = 3")
                                + "dns_timeout = 1s\n"),
                  "dns_timeout, workers")
    tap.ok(smtp_through_shim(port)[0].startswith(b"220 "),
           "shim: after the reload, sessions still reach Postfix")
    proc.send_signal(signal.SIGTERM)
    tap.is_(proc.wait(timeout=10), 0, "shim: SIGTERM exits 0")


def test_milter_signals(st):
    name = "milter-sig"
    text = open(st.path("etc", "milter-base.conf")).read()
    port = st.port(name)
    text = re.sub(r"socket = .*", "socket = inet:%d@127.0.0.1" % port, text)
    conf = write(st, name + ".conf", text)
    proc = st.start_daemon(name, [mxdkim.MILTER, "-f", "-c", conf], port=port)
    signal_checks(st, name, proc,
                  lambda: write(st, name + ".conf", text + "socket_umask = 077\n"),
                  "socket_umask")
    tap.ok(port_open(port), "milter: still listening after the reload")
    proc.send_signal(signal.SIGTERM)
    tap.is_(proc.wait(timeout=10), 0, "milter: SIGTERM exits 0")


# restart-only settings of policyd-ratelimit: file values to choose from
# (None: unset), and what config_get_str() gives for unset
RESTART_CHOICES = {
    "listen": ["inet:127.0.0.1:{port}", "inet:127.0.0.1:{port}, inet:127.0.0.1:{port2}"],
    "store": [None, "memory", "redis://127.0.0.1:1/0", "redis://:pw-{n}@127.0.0.1:1/3"],
    "pid_file": [None, "{dir}/run/a.pid", "{dir}/run/b.pid"],
    "user": [None, "nobody", "daemon"],
    "syslog": [None, "no", "yes"],
    "metrics_listen": [None, "inet:127.0.0.1:{mport}"],
}
RESTART_DEFAULTS = {"store": "memory", "syslog": "no"}
APPLIED_CHOICES = {"deadline": [None, "100ms", "250ms"], "max_connections": [None, "100", "200"]}


def policyd_text(choice, fill):
    lines = ["%s = %s" % (k, v.format(**fill)) for k, v in sorted(choice.items()) if v]
    return "\n".join(lines + ["limit per_sender = sender rate=100000/1m count=messages", ""])


def effective(choice, fill):
    return {k: (choice.get(k) or RESTART_DEFAULTS.get(k) or "").format(**fill)
            for k in RESTART_CHOICES}


def test_reload_property(st):
    name = "policyd-prop"
    port = st.port(name)
    os.makedirs(st.path("run"), exist_ok=True)
    fill = {"port": port, "port2": st.port(name + "-2"), "mport": st.port(name + "-m"),
            "dir": st.dir, "n": 0}
    start = {"listen": RESTART_CHOICES["listen"][0]}
    conf = write(st, name + ".conf", policyd_text(start, fill))
    proc = st.start_daemon(name, [POLICYD, "-f", "-c", conf], port=port)
    running = effective(start, fill)
    state = {"reloads": 0, "bad": []}
    keys = sorted(RESTART_CHOICES) + sorted(APPLIED_CHOICES)
    pools = dict(RESTART_CHOICES, **APPLIED_CHOICES)

    @settings(max_examples=25, deadline=None, database=None)
    @given(hs.fixed_dictionaries({k: hs.sampled_from(pools[k]) for k in keys}),
           hs.integers(0, 9))
    def one_reload(choice, n):
        fill["n"] = n
        offset = os.path.getsize(st.logs[name])
        write(st, name + ".conf", policyd_text(choice, fill))
        state["reloads"] += 1
        proc.send_signal(signal.SIGHUP)
        done = wait_for(lambda: any("configuration reloaded" in x
                                    for x in log_since(st, name, offset)[1]), timeout=10)
        lines = log_since(st, name, offset)[1]
        now = effective(choice, fill)
        want = [k for k in sorted(RESTART_CHOICES, key=list(RESTART_CHOICES).index)
                if now[k] != running[k]]
        said = [re.search(r"reload: (.*) changed but cannot change while running", x)
                for x in lines]
        said = [m.group(1).split(", ") for m in said if m]
        got = said[0] if said else []
        if not done or len(said) > 1 or sorted(got) != sorted(want) or "pw-" in "".join(lines):
            state["bad"].append((choice, want, said, lines[-3:]))
        assert done and sorted(got) == sorted(want)

    try:
        one_reload()
    except AssertionError:
        pass                    # reported below, with the first counterexample
    tap.ok(not state["bad"] and proc.poll() is None,
           "property: %d reloads of policyd, each naming exactly the restart-only settings "
           "that differ from those in effect" % state["reloads"],
           diag=repr(state["bad"][:1]))
    tap.ok(policy_answer(port) == b"action=DUNNO\n\n",
           "policyd still answers on the port it started with")
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=10)


with Stack("daemons-hostile") as st:
    tap.stack = st
    st.start_sink()
    st.start_postfix(main={"smtpd_authorized_xclient_hosts": "127.0.0.0/8",
                           "mynetworks": "127.0.0.0/8"})
    dns = mxdkim.Dns(st.path("etc", "dns.txt"))
    mxdkim.keygen(st, dns, "planapulse.ai", "ed2026", "ed25519")
    write(st, "key.table", "ed planapulse.ai:ed2026:%s/keys/ed2026.private\n" % st.dir)
    write(st, "signing.table", "*@planapulse.ai ed\n")
    write(st, "milter-base.conf",
          "socket = inet:%d@127.0.0.1\nkey_table = %s\nsigning_table = refile:%s\n"
          "dns_test_file = %s\nauthserv_id = mx.mxkit.test\n"
          % (st.port("t-milter"), st.path("etc", "key.table"), st.path("etc", "signing.table"),
             st.path("etc", "dns.txt")))
    write(st, "secret", make_secret() + "\n")
    write(st, "spool-base.conf", "spool_dir = %s\nsecret_file = %s\n"
          % (st.path("spool"), st.path("etc", "secret")))

    test_check_generic(st)
    test_detached_start(st)
    test_policyd_nofile(st)
    test_shim_nofile(st)
    test_milter_nofile(st)
    test_policyd_signals(st)
    test_policyd_unix_user(st)
    test_policyd_unix_no_user(st)
    test_shim_signals(st)
    test_milter_signals(st)
    test_reload_property(st)

sys.exit(tap.done())
