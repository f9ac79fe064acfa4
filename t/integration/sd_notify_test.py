#!/usr/bin/python3
"""systemd's readiness protocol (common/daemon_notify.c, skeleton_ready()):
the units are Type=notify, so "systemctl start" returns once the daemon
serves, and what starts after it (Postfix's reload, a health check) never
finds a port that is not there yet.

For each of the four daemons, run in the foreground with NOTIFY_SOCKET
naming a datagram socket of this test (a path for two of them, the
abstract namespace for the others, as systemd may use either):

- the first datagram is exactly READY=1, and when it arrives the daemon
  serves: /readyz answers 200, and its own protocol is answered (a policy
  request, a milter negotiation) or its port accepts (the shim);
- a SIGHUP (a reload) sends nothing that would look like a second start;
- SIGTERM sends STOPPING=1 and the daemon exits 0: the datagrams are
  exactly [READY=1, STOPPING=1];
- a daemon that cannot start (its port taken) exits 1 and never says
  READY=1, so systemd marks the start failed.
"""

import os
import select
import signal
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from mxstack import Stack  # noqa: E402
from mxtest import tap  # noqa: E402
from mxdaemons import POLICYD, SHIM, SPOOL, milter_negotiates, policy_answered, port_accepts, write  # noqa: E402
from mxwebhook import make_secret  # noqa: E402
import mxdkim  # noqa: E402



class Notify:
    """A datagram socket as systemd's NOTIFY_SOCKET: a path or @abstract."""

    def __init__(self, name):
        self.name = name
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + name[1:] if name.startswith("@") else name)

    def next(self, timeout):
        if not select.select([self.sock], [], [], timeout)[0]:
            return None
        return self.sock.recv(4096).decode(errors="replace")

    def close(self):
        self.sock.close()
        if not self.name.startswith("@"):
            os.unlink(self.name)


def http_status(port, path):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
            c.sendall(b"GET %s HTTP/1.0\r\n\r\n" % path.encode())
            return c.recv(200).split(b"\r\n")[0].decode(errors="replace")
    except OSError as e:
        return str(e)



def check(st, name, argv, mport, serves, notify_name):
    notify = Notify(notify_name)
    env = dict(os.environ, NOTIFY_SOCKET=notify_name)
    st.logs[name] = st.path("log", name + ".log")
    log = open(st.logs[name], "w")
    proc = subprocess.Popen(argv, env=env, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    got = []
    first = notify.next(30)
    got.append(first)
    status = http_status(mport, "/readyz")
    serving = serves()
    tap.ok(first == "READY=1" and " 200 " in status and serving,
           "%s: READY=1 once it serves (/readyz %r, its protocol answered: %s)"
           % (name, status, serving), diag="first datagram %r; log: %s"
           % (first, st.read_log(name)[-600:]))
    proc.send_signal(signal.SIGHUP)
    more = notify.next(1.5)
    tap.is_(more, None, "%s: a reload says nothing more" % name)
    if more:
        got.append(more)
    proc.send_signal(signal.SIGTERM)
    got.append(notify.next(20))
    try:
        rc = proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        rc = proc.wait()
    while True:
        extra = notify.next(0.2)
        if extra is None:
            break
        got.append(extra)
    tap.ok(rc == 0 and got == ["READY=1", "STOPPING=1"],
           "%s: SIGTERM: STOPPING=1, exit 0; exactly READY=1, STOPPING=1 were said" % name,
           diag="exit %s, datagrams %r" % (rc, got))
    notify.close()
    log.close()


def test_failed_start(st):
    port = st.port("taken")
    conf = write(st, "policyd-taken.conf", "listen = inet:127.0.0.1:%d\n" % port)
    hold = socket.socket()
    hold.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    hold.bind(("127.0.0.1", port))
    hold.listen(1)
    notify = Notify(st.path("run", "taken.notify"))
    res = subprocess.run([POLICYD, "-f", "-c", conf], capture_output=True, text=True,
                         timeout=30, env=dict(os.environ, NOTIFY_SOCKET=notify.name))
    said = notify.next(0.5)
    tap.ok(res.returncode == 1 and said is None,
           "a daemon that cannot bind exits 1 and never says READY=1",
           diag="exit %s, said %r: %s" % (res.returncode, said, res.stderr[-400:]))
    hold.close()
    notify.close()


def main(st):
    run = st.path("run")
    os.makedirs(run, exist_ok=True)
    tag = "mxkit-notify-%d-%d" % (os.getpid(), int(time.time()))

    mport = st.port("policyd-metrics")
    port = st.port("policyd")
    conf = write(st, "policyd.conf", "listen = inet:127.0.0.1:%d\nmetrics_listen = "
                 "inet:127.0.0.1:%d\nlimit per_sender = sender rate=100/1m count=messages\n"
                 % (port, mport))
    check(st, "policyd", [POLICYD, "-f", "-c", conf], mport, lambda: policy_answered(port),
          os.path.join(run, "policyd.notify"))

    mport = st.port("shim-metrics")
    port = st.port("shim")
    conf = write(st, "shim.conf", "xclient_name_lookup = no\nmetrics_listen = inet:127.0.0.1:%d\n"
                 "listener = 127.0.0.1:%d backend=127.0.0.1:%d mode=xclient "
                 "trusted=127.0.0.0/8\n" % (mport, port, st.port("nobody")))
    check(st, "shim", [SHIM, "-f", "-c", conf], mport, lambda: port_accepts(port),
          "@%s-shim" % tag)

    spool = st.path("spool")
    for sub in ("active", "dead", "tmp"):
        os.makedirs(os.path.join(spool, sub))
    secret = write(st, "spool.secret", make_secret() + "\n")
    mport = st.port("spool-metrics")
    conf = write(st, "spool.conf", "spool_dir = %s\nsecret_file = %s\n"
                 "metrics_listen = inet:127.0.0.1:%d\n" % (spool, secret, mport))
    check(st, "spool", [SPOOL, "-c", conf, "-f", "run"], mport, lambda: True,
          os.path.join(run, "spool.notify"))

    dns = mxdkim.Dns(st.path("etc", "dns.txt"))
    mxdkim.one_rsa_key(st, dns)
    port = st.port("milter")
    mport = st.port("milter-metrics")
    conf = write(st, "milter.conf", "socket = inet:%d@127.0.0.1\nmetrics_listen = "
                 "inet:127.0.0.1:%d\nkey_table = %s/etc/key.table\nsigning_table = "
                 "refile:%s/etc/signing.table\ndns_test_file = %s/etc/dns.txt\n"
                 "internal_hosts = 127.0.0.0/8\n" % (port, mport, st.dir, st.dir, st.dir))
    check(st, "milter", [mxdkim.MILTER, "-f", "-c", conf], mport,
          lambda: milter_negotiates(port), "@%s-milter" % tag)

    test_failed_start(st)


with Stack("sdnotify") as st:
    tap.stack = st
    os.makedirs(st.path("etc"), exist_ok=True)
    os.makedirs(st.path("log"), exist_ok=True)
    main(st)

sys.exit(tap.done())
