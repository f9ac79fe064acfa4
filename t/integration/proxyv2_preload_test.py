#!/usr/bin/python3
# mxkit-test: alone (asserts an answer within 0.5 s)
"""libproxyv2-preload.so makes unmodified servers see the real client
(issue 6, acceptance 1), behind real haproxy send-proxy-v2 / send-proxy:

  - Python socketserver (blocking accept) and socat (fork per client,
    $SOCAT_PEERADDR) report the address swaks-like clients bound to
    127.0.0.2 / 127.0.0.3, not haproxy's 127.0.0.1;
  - behind a blocking listening socket (socketserver's select() loop, a
    plain accept() loop), stalled headers do not hold up the next client;
  - an asyncio server (non-blocking listener): a client that sends half
    a header and stalls does not delay the next client; when it finishes
    its header it is served too;
  - no header, and a source outside PROXYV2_TRUSTED: closed and logged;
    the server keeps serving;
  - a listening socket closed, replaced (dup2) or dup()ed while clients
    wait in the library: closed and reported, or served on the copy.
"""

import os
import socket
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from mxstack import Stack  # noqa: E402
from mxtest import build_path, tap, wait_for  # noqa: E402

LIB = build_path("proxyv2-shim", ".libs", "libproxyv2-preload.so")
BLOCKING = r"""
import socketserver, sys
class H(socketserver.BaseRequestHandler):
    def handle(self):
        self.request.sendall(("client=%s getpeername=%s\n" % (self.client_address[0],
                              self.request.getpeername()[0])).encode())
socketserver.TCPServer.allow_reuse_address = True
socketserver.TCPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""
# accept() in a plain loop on a blocking socket (no select), as naive as
# they come: any error from accept() would end it
ACCEPT_LOOP = r"""
import socket, sys
ls = socket.socket(); ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("127.0.0.1", int(sys.argv[1]))); ls.listen(64)
while True:
    c, a = ls.accept()
    c.sendall(("client=%s getpeername=%s\n" % (a[0], c.getpeername()[0])).encode()); c.close()
"""
ASYNC = r"""
import asyncio, sys
async def h(r, w):
    w.write(("client=%s\n" % w.get_extra_info("peername")[0]).encode())
    await w.drain(); w.close()
async def main():
    s = await asyncio.start_server(h, "127.0.0.1", int(sys.argv[1]))
    async with s: await s.serve_forever()
asyncio.run(main())
"""


def ask(port, payload=b"", source=None, wait=5):
    s = socket.create_connection(("127.0.0.1", port), timeout=wait, source_address=source)
    s.sendall(payload)
    try:
        return s.recv(200)
    except OSError as e:
        return repr(e).encode()
    finally:
        s.close()

# a select() server on one non-blocking listening socket shared by
# NPROC processes (a prefork server: gunicorn, uwsgi, a Dovecot login
# service without reuse_port), a listen queue of BACKLOG, DELAY seconds
# per client. argv: PORT NPROC BACKLOG DELAY
SELECT_SERVER = r"""
import os, select, socket, sys, time
port, nproc, backlog, delay = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
ls = socket.socket()
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("127.0.0.1", port))
ls.listen(backlog)
ls.setblocking(False)
for _ in range(nproc):
    if os.fork() == 0:
        while True:
            if not select.select([ls], [], [], 1.0)[0]:
                continue
            try:
                c, a = ls.accept()
            except BlockingIOError:
                continue
            time.sleep(delay)
            c.setblocking(True)
            c.sendall(("client=%s:%d pid=%d\n" % (a[0], a[1], os.getpid())).encode())
            c.close()
while True:
    time.sleep(100)
"""

# a select() server on one non-blocking listening socket that, once the
# file TRIGGER exists, closes it and listens on OTHER (an unlisted port;
# the new socket takes the same descriptor), dup2()s such a socket over
# it, dup()s it and closes the first descriptor (accepting on the copy),
# or exits. argv: PORT OTHER HOW TRIGGER
SWITCH_SERVER = r"""
import os, select, socket, sys
port, other, how, trigger = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
def listener(p):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", p)); s.listen(64); s.setblocking(False); return s
ls, switched = listener(port), False
while True:
    if not switched and os.path.exists(trigger):
        switched, fd = True, ls.fileno()
        if how == "close":
            ls.close(); ls = listener(other)
        elif how == "dup2":
            n = listener(other); os.dup2(n.fileno(), fd); n.close()
        elif how == "dup":
            copy = socket.socket(fileno=os.dup(fd)); ls.close(); ls = copy
        elif how == "exit":
            sys.stderr.write("switched: exit\n"); sys.stderr.flush(); sys.exit(0)
        sys.stderr.write("switched: %s, fd %d -> %d\n" % (how, fd, ls.fileno())); sys.stderr.flush()
    if not select.select([ls], [], [], 0.1)[0]:
        continue
    try:
        c, a = ls.accept()
    except BlockingIOError:
        continue
    c.setblocking(True)
    c.sendall(("client=%s port=%d\n" % (a[0], c.getsockname()[1])).encode()); c.close()
"""


def v2_header(src, sport):
    """PROXY v2, PROXY over TCP/IPv4, src:sport -> 192.0.2.1:25"""
    body = socket.inet_aton(src) + socket.inet_aton("192.0.2.1") + struct.pack(">HH", sport, 25)
    return b"\r\n\r\n\x00\r\nQUIT\n\x21\x11" + struct.pack(">H", len(body)) + body


def test_blocking_stalls(st, name, what):
    """A blocking listening socket: four trusted connections that send half
    a header and stall do not hold up the next client (before, each held
    accept() for PROXYV2_TIMEOUT in turn: 12 s for four); each one that
    completes its header later is served with its own address, and one
    that never does is closed at PROXYV2_TIMEOUT (3 s) and logged."""
    port = st.port(name)
    mark = len(st.read_log(name))
    stalled = []
    for i in range(4):
        c = socket.create_connection(("127.0.0.1", port), timeout=10)
        c.sendall(b"PROXY TCP4 198.51.")
        stalled.append(c)
    time.sleep(0.3)
    t0 = time.monotonic()
    got = ask(port, b"PROXY TCP4 198.51.100.30 10.0.0.1 4010 25\r\n", wait=10)
    took = time.monotonic() - t0
    tap.ok(got == b"client=198.51.100.30 getpeername=198.51.100.30\n" and took < 1.0,
           "%s: four stalled headers do not delay the next client (%.2fs, %r)"
           % (what, took, got))
    answers = []
    for i, c in enumerate(stalled[:2]):
        c.sendall(b"100.%d 10.0.0.1 %d 25\r\n" % (31 + i, 4011 + i))
        try:
            answers.append(c.recv(100))
        except OSError as e:
            answers.append(repr(e).encode())
    tap.is_(answers, [b"client=198.51.100.%d getpeername=198.51.100.%d\n" % (31 + i, 31 + i)
                      for i in range(2)],
            "%s: two of them complete their headers later: each served with its own "
            "address" % what)
    t0 = time.monotonic()
    ends = []
    for c in stalled[2:]:
        try:
            ends.append(c.recv(100))
        except OSError as e:
            ends.append(b"" if "reset" in repr(e) else repr(e).encode())
    took = time.monotonic() - t0
    tap.ok(ends == [b"", b""] and took < 4.5,
           "%s: the two that never complete are closed by PROXYV2_TIMEOUT (%r, %.1fs)"
           % (what, ends, took))
    tap.ok(wait_for(lambda: st.read_log(name)[mark:].count("timeout waiting for the PROXY "
                                                          "header") == 2, timeout=5),
           "%s: and logged, once each" % what, diag=st.read_log(name)[mark:][-1000:])
    for c in stalled:
        c.close()
    # a connection with no header: refused inside accept(), which goes on
    # to the next (an error would end a loop that takes any as fatal)
    bad = ask(port, b"EHLO x\r\n")
    got = ask(port, b"PROXY TCP4 198.51.100.39 10.0.0.1 4019 25\r\n")
    tap.ok(bad in (b"", b"ConnectionResetError(104, 'Connection reset by peer')")
           and got == b"client=198.51.100.39 getpeername=198.51.100.39\n",
           "%s: a connection without a header is closed, and it keeps serving (%r, %r)"
           % (what, bad, got))


def test_forged_mark(st):
    """The library's wake-up mark sent by a client (not from this host's
    listener address): closed and logged like any refused connection, and
    the next client is served (an attacker's forged mark was closed in
    silence, and accept() returned EAGAIN with a client still queued)."""
    mark_bytes = (b"\r\n\r\n\x00\r\nQUIT\n\x20\x00\x00\x0f\x04\x00\x0cmxkitwak"
                  + struct.pack("!I", 1))
    before = st.read_log("async").count("libproxyv2-preload")
    c = socket.create_connection(("127.0.0.1", st.port("async")), source_address=("127.0.0.2", 0))
    c.sendall(mark_bytes)
    got = ask(st.port("async"), b"PROXY TCP4 198.51.100.41 10.0.0.1 4041 25\r\n")
    c.close()
    tap.is_(got, b"client=198.51.100.41\n", "a forged wake-up mark from another address: the "
            "next client is served")
    tap.ok(wait_for(lambda: st.read_log("async").count("libproxyv2-preload") > before,
                    timeout=5), "and the forged mark is logged as a closed connection",
           diag=st.read_log("async")[-600:])


EPOLLET_SERVER = r"""
import select, socket, sys, time
ls = socket.socket()
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("127.0.0.1", int(sys.argv[1])))
ls.listen(64)
ls.setblocking(False)
ep = select.epoll()
ep.register(ls.fileno(), select.EPOLLIN | select.EPOLLET)
while True:
    for fd, ev in ep.poll():
        while True:                     # until EAGAIN, as mio and tokio do
            try:
                c, a = ls.accept()
            except BlockingIOError:
                break
            c.setblocking(True)
            c.sendall(b"client=%s\n" % a[0].encode())
            c.close()
    time.sleep(0.7)                     # busy elsewhere between waits
"""


def test_epollet(st):
    """An edge-triggered loop that accepts until EAGAIN (outside attacker of
    2026-12-03): the library's own wake-up, met after its parked client
    was handed over, returned EAGAIN with another client queued behind
    it, and that client waited for the next connection to arrive."""
    port = st.port("et")
    head_a = v2_header("198.51.100.61", 4061)
    a = socket.create_connection(("127.0.0.1", port), timeout=5)
    a.sendall(head_a[:5])               # parked
    time.sleep(0.2)
    a.sendall(head_a[5:])               # complete: the library's wake-up goes out
    time.sleep(0.05)
    b = socket.create_connection(("127.0.0.1", port), timeout=5)
    b.sendall(v2_header("198.51.100.62", 4062))     # queued behind the wake-up
    got = []
    for c in (a, b):
        try:
            got.append(c.recv(100))
        except OSError as e:
            got.append(repr(e).encode())
        c.close()
    tap.is_(got, [b"client=198.51.100.61\n", b"client=198.51.100.62\n"],
            "EPOLLET server: a client queued behind the library's wake-up is accepted "
            "without waiting for another connection")


def test_prefork(st):
    """A header in two segments is parked, and a wake-up connection makes
    the listening socket readable: in a prefork server a sibling took
    it (parked it, timed it out, logged it) and the client waited until
    its own process happened to accept again: 0 of 10 served in 4 s."""
    port = st.port("prefork")
    mark = len(st.read_log("prefork"))      # after the harness's readiness probe
    served, slowest = [], 0.0
    for i in range(10):
        c = socket.create_connection(("127.0.0.1", port), timeout=5)
        h = v2_header("198.51.100.%d" % (i + 1), 40000 + i)
        c.sendall(h[:10])
        time.sleep(0.2)
        t0 = time.monotonic()
        c.sendall(h[10:])
        try:
            got = c.recv(200)
        except OSError as e:
            got = repr(e).encode()
        slowest = max(slowest, time.monotonic() - t0)
        c.close()
        served.append(got.startswith(b"client=198.51.100.%d:%d " % (i + 1, 40000 + i)))
    tap.is_(sum(served), 10, "prefork server (4 processes, one listener): 10 of 10 clients "
            "whose header came in two segments are served as themselves (slowest %.2fs)"
            % slowest)
    tap.ok(slowest < 3.0, "each within 3 s of its header (%.2fs; when siblings take the "
           "wake-ups, twice as many go 10 ms on)" % slowest)
    tap.is_([line for line in st.read_log("prefork")[mark:].splitlines() if "libproxyv2" in line],
            [],
            "no process logged a wake-up connection as a client")


def test_full_queue(st):
    """The wake-up connect()ed blocking, holding the lock accept() takes:
    with the listen queue full its SYN was dropped and retried, and the
    daemon stopped accepting for minutes (4 of 5 clients timed out).
    A header comes in two pieces; while the daemon is busy with the
    first of four other clients, they fill its queue; then the header
    completes and its wake-up finds the queue full."""
    port = st.port("slow")
    results = {}

    def client(i, split):
        try:
            c = socket.create_connection(("127.0.0.1", port), timeout=30)
            h = v2_header("198.51.100.%d" % (60 + i), 41000 + i)
            if split:
                c.sendall(h[:10])
                time.sleep(0.5)
                h = h[10:]
            c.sendall(h)
            results[i] = c.recv(100)
            c.close()
        except OSError as e:
            results[i] = repr(e).encode()
    threads = [threading.Thread(target=client, args=(0, True))]
    t0 = time.monotonic()
    threads[0].start()
    time.sleep(0.2)
    for i in range(1, 5):
        threads.append(threading.Thread(target=client, args=(i, False)))
        threads[-1].start()
        time.sleep(0.02)
    for t in threads:
        t.join()
    took = time.monotonic() - t0
    served = [k for k, v in results.items() if v.startswith(b"client=198.51.100.")]
    tap.is_(len(served), 5, "a daemon with a full listen queue (backlog 1, a second per "
            "client) when a split header completes: all 5 clients served (%.1fs)" % took,
            diag=repr(results))
    tap.ok(took < 15, "in about one second each, not minutes (%.1fs)" % took)


def test_listener_switched(st, how, n):
    """N clients whose header is coming in pieces wait in the library
    when the daemon changes its listening socket. Closed (a new socket on
    an unlisted port under the same descriptor) or replaced by dup2():
    before, they waited unanswered until the daemon exited (30-75 s, no
    log line); now closed within a second and reported. dup() and the
    first descriptor closed: before, never handed over (and wake-ups sent
    forever); now served on the copy, as themselves. exit(): reported."""
    name = "sw-" + how
    port, trigger = st.port(name), st.path("trigger-" + how)
    st.start_daemon(name, ["/usr/bin/python3", "-c", SWITCH_SERVER, str(port),
                           str(st.port(name + "-other")), how, trigger],
                    port=port, env={"LD_PRELOAD": LIB, "PROXYV2_TIMEOUT": "10s",
                                    "PROXYV2_PORTS": str(port)})
    clients = []
    for i in range(n):
        c = socket.create_connection(("127.0.0.1", port), timeout=6)
        h = v2_header("198.51.100.%d" % (70 + i), 42000 + i)
        c.sendall(h[:10])
        clients.append((c, h))
    time.sleep(0.5)                         # each accepted and set aside
    open(trigger, "w").close()
    tap.ok(wait_for(lambda: "switched: " + how in st.read_log(name), timeout=5),
           "%s: the daemon switched" % how, diag=st.read_log(name)[-500:])
    t0 = time.monotonic()
    got = []
    for c, h in clients:
        try:
            c.sendall(h[10:])
            got.append(c.recv(200))
        except socket.timeout:
            got.append(b"no answer")
        except OSError as e:
            got.append(repr(e).encode())
        c.close()
    took = time.monotonic() - t0
    if how == "dup":
        tap.is_(got, [b"client=198.51.100.%d port=%d\n" % (70 + i, port) for i in range(n)],
                "dup() and the first descriptor closed: the %d waiting clients are served on "
                "the copy, as themselves" % n)
        return
    tap.ok(all(g in (b"", b"ConnectionResetError(104, 'Connection reset by peer')")
               for g in got) and took < 5,
           "%s: the %d waiting clients are closed (%.1fs), not left unanswered" % (how, n, took),
           diag=repr(got))
    want = ("listening socket 127.0.0.1:%d closed; %d connections waiting for it closed"
            % (port, n) if how != "exit" else
            "exiting; %d connections waiting in it for their PROXY header closed" % n)
    tap.ok(wait_for(lambda: want in st.read_log(name), timeout=5), "%s: reported (%s)"
           % (how, want), diag=st.read_log(name)[-600:])


HAPROXY = """
frontend fe_py
    bind 127.0.0.1:{port:hp-py}
    default_backend be_py
backend be_py
    server py 127.0.0.1:{port:py} send-proxy-v2
frontend fe_socat
    bind 127.0.0.1:{port:hp-socat}
    default_backend be_socat
backend be_socat
    server socat 127.0.0.1:{port:socat} send-proxy
"""

with Stack("proxyv2-preload") as st:
    tap.stack = st
    for name in ("py", "socat", "async", "strict", "prefork", "slow", "hp-py", "hp-socat", "loop",
                 "et"):
        st.port(name)
    env = {"LD_PRELOAD": LIB, "PROXYV2_TIMEOUT": "3s"}
    st.start_daemon("py", ["/usr/bin/python3", "-c", BLOCKING, str(st.port("py"))],
                    port=None, env=dict(env, PROXYV2_PORTS=str(st.port("py"))))
    st.start_daemon("loop", ["/usr/bin/python3", "-c", ACCEPT_LOOP, str(st.port("loop"))],
                    port=None, env=dict(env, PROXYV2_PORTS=str(st.port("loop"))))
    st.start_daemon("socat", ["socat", "TCP-LISTEN:%d,bind=127.0.0.1,reuseaddr,fork"
                              % st.port("socat"), "SYSTEM:echo client=$SOCAT_PEERADDR"],
                    env=dict(env, PROXYV2_PORTS=str(st.port("socat"))))
    st.start_daemon("async", ["/usr/bin/python3", "-c", ASYNC, str(st.port("async"))],
                    env=dict(env, PROXYV2_PORTS=str(st.port("async"))))
    st.start_daemon("strict", ["/usr/bin/python3", "-c", ASYNC, str(st.port("strict"))],
                    env=dict(env, PROXYV2_PORTS=str(st.port("strict")),
                             PROXYV2_TRUSTED="10.0.20.0/24"))
    st.start_daemon("prefork", ["/usr/bin/python3", "-c", SELECT_SERVER, str(st.port("prefork")),
                                "4", "128", "0"],
                    env=dict(env, PROXYV2_PORTS=str(st.port("prefork"))))
    st.start_daemon("slow", ["/usr/bin/python3", "-c", SELECT_SERVER, str(st.port("slow")),
                             "1", "1", "1"],
                    env=dict(env, PROXYV2_PORTS=str(st.port("slow")), PROXYV2_TIMEOUT="30s"))
    st.start_daemon("et", ["/usr/bin/python3", "-c", EPOLLET_SERVER, str(st.port("et"))],
                    env=dict(env, PROXYV2_PORTS=str(st.port("et"))))
    st.start_haproxy(HAPROXY, wait_ports=[st.port("hp-py"), st.port("hp-socat")])
    for name in ("py", "socat", "async", "strict", "prefork", "slow", "loop", "et"):
        if not wait_for(lambda: socket.socket().connect_ex(("127.0.0.1", st.port(name))) == 0,
                        timeout=10):
            raise SystemExit("%s did not start:\n%s" % (name, st.read_log(name)))
    got = ask(st.port("hp-py"), source=("127.0.0.2", 0))
    tap.is_(got, b"client=127.0.0.2 getpeername=127.0.0.2\n",
            "Python socketserver behind send-proxy-v2: accept() and getpeername() give the "
            "client")
    got = ask(st.port("hp-socat"), source=("127.0.0.3", 0))
    tap.ok(got.startswith(b"client=127.0.0.3"), "socat behind send-proxy (v1): %r" % got)

    slow = socket.create_connection(("127.0.0.1", st.port("async")), timeout=5)
    slow.sendall(b"PROXY TCP4 198.51.")
    t0 = time.monotonic()
    got = ask(st.port("async"), b"PROXY TCP4 198.51.100.11 10.0.0.1 4002 25\r\n")
    took = time.monotonic() - t0
    tap.ok(got == b"client=198.51.100.11\n" and took < 0.5,
           "asyncio server: a stalled header does not delay the next client (%.3fs)" % took)
    slow.sendall(b"100.12 10.0.0.1 4003 25\r\n")
    got = slow.recv(100)
    slow.close()
    tap.is_(got, b"client=198.51.100.12\n", "the stalled client is served once its header "
            "completes")
    got = ask(st.port("async"), b"EHLO x\r\n")
    tap.ok(got in (b"", b"ConnectionResetError(104, 'Connection reset by peer')"),
           "no header: closed (%r)" % got)
    tap.ok(wait_for(lambda: "no PROXY header" in st.read_log("async"), timeout=5),
           "and logged")
    got = ask(st.port("strict"), b"PROXY TCP4 198.51.100.13 10.0.0.1 4004 25\r\n")
    tap.ok(got in (b"", b"ConnectionResetError(104, 'Connection reset by peer')"),
           "source outside PROXYV2_TRUSTED: closed (%r)" % got)
    tap.ok(wait_for(lambda: "source not in PROXYV2_TRUSTED" in st.read_log("strict"),
                    timeout=5), "and logged")
    got = ask(st.port("async"), b"PROXY TCP4 198.51.100.14 10.0.0.1 4005 25\r\n")
    tap.is_(got, b"client=198.51.100.14\n", "the server keeps serving")
    test_blocking_stalls(st, "py", "Python socketserver (select() loop, blocking socket)")
    test_blocking_stalls(st, "loop", "accept() loop on a blocking socket")
    test_forged_mark(st)
    test_epollet(st)
    test_prefork(st)
    test_full_queue(st)
    for how, n in (("close", 3), ("dup2", 3), ("dup", 3), ("exit", 2)):
        test_listener_switched(st, how, n)

sys.exit(tap.done())
