#!/usr/bin/python3
# mxkit-test: alone (asserts a signal handled and a client served within a second)
"""libproxyv2-preload.so in corners a daemon can put it in (outside tester
helper-84, 2026-12-03):

  - a signal while accept() waits for a header: accept() fails with EINTR
    as it would without the library, and the connection is not lost;
  - a wake-up mark forged by a local process (from the listener's own
    address, no key or a wrong one) is a client's, closed and logged: an
    edge-triggered daemon does not stall on it;
  - getpeername() on a dup() of a connection reports its client after
    the descriptor it was accepted on is closed and its number reused,
    by one connection or by 150;
  - reports never go to a client whose connection got descriptor 2 (the
    daemon closed 0-2); a socket that was standard error from the start
    (journald's stream) still gets them.
"""

import os
import signal
import socket
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from mxtest import build_path, tap, wait_for  # noqa: E402

LIB = build_path("proxyv2-shim", ".libs", "libproxyv2-preload.so")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Daemon:
    """A Python server under the library; its output read as it comes."""

    def __init__(self, code, port, **env):
        self.port = port
        self.out = ""
        e = dict(os.environ, LD_PRELOAD=LIB, PROXYV2_PORTS=str(port), PROXYV2_TIMEOUT="3s")
        e.update(env)
        self.proc = subprocess.Popen([sys.executable, "-u", "-c", code, str(port)], env=e,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        os.set_blocking(self.proc.stdout.fileno(), False)
        if not wait_for(lambda: "ready\n" in self.read(), timeout=10):
            raise SystemExit("server did not start: %r" % self.out)

    def read(self):
        try:
            chunk = self.proc.stdout.read()
        except (OSError, ValueError):
            chunk = None
        if chunk:
            self.out += chunk.decode(errors="replace")
        return self.out

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.read()


def v2_header(src, sport):
    """PROXY v2, PROXY over TCP/IPv4, src:sport -> 192.0.2.1:25"""
    body = socket.inet_aton(src) + socket.inet_aton("192.0.2.1") + struct.pack(">HH", sport, 25)
    return b"\r\n\r\n\x00\r\nQUIT\n\x21\x11" + struct.pack(">H", len(body)) + body


def recv(c, wait=5):
    c.settimeout(wait)
    try:
        return c.recv(200)
    except OSError as e:
        return repr(e).encode()


# a plain accept() loop on a blocking socket; SIGTERM ends it, SIGUSR1
# only says so (Python retries accept() after a handler that returns)
SIGNAL_LOOP = r"""
import signal, socket, sys
def term(*a):
    print("SIGTERM", flush=True); sys.exit(0)
signal.signal(signal.SIGTERM, term)
signal.signal(signal.SIGUSR1, lambda *a: print("SIGUSR1", flush=True))
ls = socket.socket(); ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("127.0.0.1", int(sys.argv[1]))); ls.listen(8); print("ready", flush=True)
while True:
    c, a = ls.accept()
    c.sendall(("client=%s getpeername=%s\n" % (a[0], c.getpeername()[0])).encode()); c.close()
"""


def test_eintr():
    """A blocking accept() waiting for a trusted peer's header: a signal
    whose handler has no SA_RESTART interrupts it (before, the library
    waited on, then blocked in a new accept(): SIGTERM went unhandled
    until another connection came), and the connection it waited for is
    served by a later accept() when its header completes."""
    d = Daemon(SIGNAL_LOOP, free_port())
    head = v2_header("198.51.100.71", 4071)
    c = socket.create_connection(("127.0.0.1", d.port), timeout=5)
    c.sendall(head[:7])
    time.sleep(0.05)                    # inside accept(), waiting for the rest
    d.proc.send_signal(signal.SIGUSR1)
    tap.ok(wait_for(lambda: "SIGUSR1\n" in d.read(), timeout=5),
           "blocking accept() waiting for a header: SIGUSR1's handler runs at once "
           "(accept() fails with EINTR)", diag=d.out)
    c.sendall(head[7:])
    tap.is_(recv(c), b"client=198.51.100.71 getpeername=198.51.100.71\n",
            "the connection it waited for is not lost: served when its header completes")
    c.close()
    c = socket.create_connection(("127.0.0.1", d.port), timeout=5)
    c.sendall(head[:7])
    time.sleep(0.05)
    t0 = time.monotonic()
    d.proc.send_signal(signal.SIGTERM)
    try:
        rc = d.proc.wait(10)
    except subprocess.TimeoutExpired:
        rc = None
    took = time.monotonic() - t0
    d.stop()
    c.close()
    # against a daemon held in accept() for ever: 5 s is "at once" on a
    # loaded machine
    tap.ok(rc == 0 and "SIGTERM\n" in d.out and took < 5,
           "SIGTERM while accept() waits for a header: the daemon exits (%r, %.2fs)"
           % (rc, took), diag=d.out)


# accepts until EAGAIN on an edge-triggered epoll set, as mio and tokio
# do; busy at first, so that connections queue before its first wait
EPOLLET_SERVER = r"""
import select, socket, sys, time
ls = socket.socket(); ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("127.0.0.1", int(sys.argv[1]))); ls.listen(64); ls.setblocking(False)
ep = select.epoll(); ep.register(ls.fileno(), select.EPOLLIN | select.EPOLLET)
print("ready", flush=True)
time.sleep(1)
while True:
    ep.poll()
    while True:
        try:
            c, a = ls.accept()
        except BlockingIOError:
            break
        c.setblocking(True); c.sendall(("client=%s\n" % a[0]).encode()); c.close()
"""


def forged_mark(pid, key=b""):
    tlv = b"mxkitwak" + key + struct.pack("!I", pid)
    return (b"\r\n\r\n\x00\r\nQUIT\n\x20\x00" + struct.pack("!H", 3 + len(tlv))
            + b"\x04" + struct.pack("!H", len(tlv)) + tlv)


def test_forged_mark():
    """Another local process sends the library's sibling wake-up mark from
    the listener's own address (127.0.0.1), as the mark was before it had a
    key, and with a wrong key: each is a client's LOCAL header, closed and
    logged, and the client queued behind them is served (before, accept()
    closed the first in silence and returned EAGAIN: an edge-triggered
    daemon left the client waiting until another connection came)."""
    d = Daemon(EPOLLET_SERVER, free_port())
    forged = []
    for mark in (forged_mark(d.proc.pid + 1), forged_mark(d.proc.pid + 1, b"\0" * 16)):
        a = socket.create_connection(("127.0.0.1", d.port), timeout=5)
        a.sendall(mark)
        forged.append(a)
    time.sleep(0.1)
    c = socket.create_connection(("127.0.0.1", d.port), timeout=5)
    c.sendall(v2_header("198.51.100.72", 4072))
    tap.is_(recv(c, wait=4), b"client=198.51.100.72\n",
            "edge-triggered daemon: a client queued behind two forged wake-up marks is served")
    tap.ok(wait_for(lambda: d.read().count("no client address in the PROXY header (LOCAL") == 2,
                    timeout=3), "and the forged marks are closed and logged, once each",
           diag=d.out)
    for a in forged + [c]:
        a.close()
    d.stop()


# accepts one connection, dup()s it and closes the first descriptor
# without asking for its peer; accepts N more on the same number, each
# closed; then asks on the copy
DUP_SERVER = r"""
import os, socket, sys
ls = socket.socket(); ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("127.0.0.1", int(sys.argv[1]))); ls.listen(64); print("ready", flush=True)
c, a = ls.accept()
d = os.dup(c.fileno()); first = c.fileno(); c.close()
reused = 0
for i in range(int(os.environ["N"])):
    c, a = ls.accept(); reused += c.fileno() == first
    last = c.getpeername()[0]; c.close()
try:
    peer = socket.socket(fileno=d).getpeername()[0]
except OSError as e:
    peer = repr(e)
print("reused=%d last=%s dup=%s" % (reused, last, peer), flush=True)
"""


def test_dup_reuse():
    """getpeername() on a dup() whose first descriptor was closed and its
    number reused by a later accept() (before: ENOTCONN, the entry was the
    descriptor number's); with 150 more, the entries of closed connections
    are pruned and the copy's is kept."""
    for n in (1, 150):
        d = Daemon(DUP_SERVER, free_port(), N=str(n))
        c = socket.create_connection(("127.0.0.1", d.port), timeout=5)
        c.sendall(v2_header("198.51.100.73", 4073))
        for i in range(n):
            o = socket.create_connection(("127.0.0.1", d.port), timeout=5)
            o.sendall(v2_header("198.51.100.%d" % (100 + i % 100), 5000 + i))
            o.recv(10)              # closed by the server
            o.close()
        c.close()
        ok = wait_for(lambda: "dup=" in d.read(), timeout=5)
        d.stop()
        line = [x for x in d.out.splitlines() if x.startswith("reused=")]
        tap.is_(line, ["reused=%d last=198.51.100.%d dup=198.51.100.73" % (n, 100 + (n - 1) % 100)],
                "getpeername() on a dup(), its first descriptor's number reused %d times: "
                "the client" % n, diag=None if ok else d.out)


# closes 0-2 (daemonized without /dev/null), then holds every connection
CLOSED_STDERR = r"""
import os, socket, sys
ls = socket.socket(); ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("127.0.0.1", int(sys.argv[1]))); ls.listen(8)
os.write(1, b"ready\n")
if os.environ.get("CLOSE"):
    for fd in (0, 1, 2): os.close(fd)
conns = []
while True:
    c, a = ls.accept(); conns.append(c)
"""


def test_stderr_socket():
    """A daemon that closed descriptors 0-2: its first three clients get
    them, and a refused connection's report must not be sent to the one
    on descriptor 2 (before, it was: another peer's address and error).
    A socket that was standard error when the daemon started is written
    to as before."""
    d = Daemon(CLOSED_STDERR, free_port(), CLOSE="1")
    held = []
    for i in range(3):
        c = socket.create_connection(("127.0.0.1", d.port), timeout=5)
        c.sendall(v2_header("198.51.100.%d" % (81 + i), 4081 + i))
        held.append(c)
        time.sleep(0.2)
    bad = socket.create_connection(("127.0.0.1", d.port), timeout=5)
    bad.sendall(b"GET / HTTP/1.0\r\n\r\n")
    time.sleep(0.5)
    got = [recv(c, wait=0.5) for c in held]
    tap.is_(got, [b"TimeoutError('timed out')"] * 3, "stderr closed, a client on descriptor 2: "
            "a refused connection's report is not sent to any client")
    for c in held + [bad]:
        c.close()
    d.stop()
    mine, theirs = socket.socketpair()
    port = free_port()
    e = dict(os.environ, LD_PRELOAD=LIB, PROXYV2_PORTS=str(port))
    proc = subprocess.Popen([sys.executable, "-u", "-c", CLOSED_STDERR, str(port)], env=e,
                            stdout=subprocess.PIPE, stderr=theirs)
    theirs.close()
    proc.stdout.readline()
    bad = socket.create_connection(("127.0.0.1", port), timeout=5)
    bad.sendall(b"GET / HTTP/1.0\r\n\r\n")
    got = recv(mine, wait=3)
    bad.close()
    proc.kill()
    proc.wait()
    mine.close()
    tap.ok(got.startswith(b"libproxyv2-preload: connection from 127.0.0.1:")
           and b"no PROXY header" in got,
           "standard error a socket from the start (journald): reports still go there (%r)"
           % got)


def test_link_local_trusted():
    """PROXYV2_TRUSTED with a link-local entry (helper-101): fe80::1 is on
    every link at once and the list holds no interface, so the library
    says so and trusts nobody: a header from the (otherwise trusted)
    loopback is refused, not read."""
    d = Daemon(SIGNAL_LOOP, free_port(), PROXYV2_TRUSTED="127.0.0.0/8, fe80::1")
    c = socket.create_connection(("127.0.0.1", d.port), timeout=5)
    c.sendall(v2_header("198.51.100.7", 4007))
    got = recv(c)
    c.close()
    time.sleep(0.3)
    log = d.read()
    d.stop()
    tap.ok(b"198.51.100.7" not in got and "PROXYV2_TRUSTED: a link-local network (fe80::/10) "
           "is on every link at once; trusting nobody" in log,
           "PROXYV2_TRUSTED naming fe80::1: said, and nobody trusted (%r)" % got, diag=log)


WAKE_SERVER = r'''
import selectors, socket, sys
fam, host = (socket.AF_INET6, "::") if sys.argv[1] == "6" else (socket.AF_INET, "0.0.0.0")
ls = socket.socket(fam, socket.SOCK_STREAM)
if fam == socket.AF_INET6:
    ls.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind((host, 8025)); ls.listen(64); ls.setblocking(False)
sel = selectors.DefaultSelector(); sel.register(ls, selectors.EVENT_READ)
print("ready", flush=True)
while True:
    for key, _ in sel.select():
        while True:
            try:
                c, a = ls.accept()
            except BlockingIOError:
                break
            c.setblocking(True)
            c.sendall(("client=%s\n" % a[0]).encode()); c.close()
'''
WAKE_CLIENT = r'''
import socket, struct, sys, time
SIG = b"\r\n\r\n\x00\r\nQUIT\n"
body = socket.inet_aton("198.51.100.5") + socket.inet_aton("10.0.20.5") + struct.pack("!HH", 4000, 8025)
h = SIG + b"\x21\x11" + struct.pack("!H", len(body)) + body
c = socket.socket(); c.settimeout(10); c.bind((sys.argv[1], 0)); c.connect(("10.0.20.5", 8025))
c.sendall(h[:8]); time.sleep(0.3); c.sendall(h[8:])
t0 = time.monotonic()
try:
    d = c.recv(100)
except OSError as e:
    d = repr(e).encode()
print(repr((d, round(time.monotonic() - t0, 2))))
'''


def wake_case(ipv6_off, firewall):
    """A split header to a non-blocking server in a namespace of its own,
    wake-ups made hard: (reply, seconds after the header, server stderr)."""
    ns = "mxwake%d" % os.getpid()
    sh = lambda *a: subprocess.run(a, capture_output=True, text=True)
    sh("ip", "netns", "add", ns)
    srv = None
    try:
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "-n", ns, "addr", "add", "10.0.20.5/32", "dev", "lo")
        sh("ip", "-n", ns, "addr", "add", "10.0.20.3/32", "dev", "lo")
        if ipv6_off:
            for knob in ("all", "lo"):
                sh("ip", "netns", "exec", ns, "sysctl", "-q", "-w",
                   "net.ipv6.conf.%s.disable_ipv6=1" % knob)
        if firewall:
            fw = sh("ip", "netns", "exec", ns, "iptables", "-A", "INPUT", "-p", "tcp", "--dport",
                    "8025", "!", "-s", "10.0.20.0/24", "-j", "DROP")
            if fw.returncode != 0:
                return None, 0, "iptables failed: " + fw.stderr
        env = dict(os.environ, LD_PRELOAD=LIB, PROXYV2_PORTS="8025", PROXYV2_TIMEOUT="3s",
                   PROXYV2_TRUSTED="10.0.20.0/24")
        err = open("/tmp/mxwake-%d.err" % os.getpid(), "w+")
        srv = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-u", "-c",
                                WAKE_SERVER, "6" if ipv6_off else "4"], env=env,
                               stdout=subprocess.PIPE, stderr=err, text=True)
        if srv.stdout.readline().strip() != "ready":
            return None, 0, "server did not start"
        r = sh("ip", "netns", "exec", ns, sys.executable, "-c", WAKE_CLIENT, "10.0.20.3")
        got = eval(r.stdout.strip()) if r.stdout.strip() else (r.stderr, 0)
        time.sleep(0.2)
        err.seek(0)
        return got[0], got[1], err.read()
    finally:
        if srv:
            srv.kill()
            srv.wait()
        sh("ip", "netns", "del", ns)


def test_wake_unreachable():
    """helper-130: the wake-up that hands a set-aside connection to a
    non-blocking server is a loopback connection to its port. A [::]
    dual-stack listener on a host with IPv6 off has no ::1: the client
    hung, unreported; now the wake-up goes to ::ffff:127.0.0.1 and it is
    served at once. A firewall dropping loopback connections to the port
    leaves no way: the client is closed at PROXYV2_TIMEOUT (it hung until
    some other client came) and the cause is reported once."""
    reply, took, log = wake_case(ipv6_off=True, firewall=False)
    tap.ok(reply == b"client=::ffff:198.51.100.5\n" and took < 2.5,
           "IPv6 off, a [::] listener: the split header is served at once (%r, %.2fs)"
           % (reply, took), diag=log)
    reply, took, log = wake_case(ipv6_off=False, firewall=True)
    tap.ok(reply == b"" and took < 8, "a firewall dropping the wake-ups: closed at "
           "PROXYV2_TIMEOUT 3s (%r after %.2fs), not held until another client comes"
           % (reply, took), diag=log)
    tap.ok("wake-up connections to 127.0.0.1:8025 do not reach it" in log
           and "closed: the server did not accept it within PROXYV2_TIMEOUT" in log,
           "the cause and the close are reported", diag=log)


test_wake_unreachable()
test_eintr()
test_link_local_trusted()
test_forged_mark()
test_dup_reuse()
test_stderr_socket()
sys.exit(tap.done())
