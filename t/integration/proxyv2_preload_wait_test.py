#!/usr/bin/python3
"""libproxyv2-preload where a connection set aside has no one to serve it
(outside tester helper-118, 2026-12-04):

  - a process that may start no thread (Dovecot's login processes run
    under RLIMIT_NPROC = 1; here an asyncio server as nobody under
    prlimit --nproc=1): a header that comes in two pieces is waited for
    in accept() and the client served (before: set aside, never watched,
    never served nor closed); one report; a header that never completes
    is closed at PROXYV2_TIMEOUT with a report;
  - PROXYV2_WAIT = inline under real Postfix smtpd (one client per
    process): a client whose header came in two pieces is greeted at
    once while another client holds a session in the process that
    accepted it (before, it waited out that whole session, 16-24 s), and
    with max_use = 1 it is greeted instead of closed;
  - PROXYV2_WAIT with another value is reported and means park.
"""

import os
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from mxproxy import inet, v2  # noqa: E402
from mxstack import Stack, free_port  # noqa: E402
from mxtest import build_path, tap  # noqa: E402

LIB = build_path("proxyv2-shim", ".libs", "libproxyv2-preload.so")
ASYNC_SERVER = r"""
import asyncio, sys
async def h(r, w):
    w.write(("client=%s\n" % (w.get_extra_info("peername")[0],)).encode())
    await w.drain(); w.close()
async def main():
    s = await asyncio.start_server(h, "127.0.0.1", int(sys.argv[1]))
    print("ready", flush=True)
    async with s: await s.serve_forever()
asyncio.run(main())
"""


def split_send(port, header, pause=0.3, timeout=10):
    """The header in two pieces; (first line answered, seconds after the
    second piece)."""
    c = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    c.sendall(header[:8])
    time.sleep(pause)
    c.sendall(header[8:])
    t0 = time.monotonic()
    try:
        got = c.recv(200)
    except OSError as e:
        got = repr(e).encode()
    c.close()
    return got, time.monotonic() - t0


def test_no_thread():
    port = free_port()
    env = dict(os.environ, LD_PRELOAD=LIB, PROXYV2_PORTS=str(port), PROXYV2_TIMEOUT="1s")
    proc = subprocess.Popen(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                             "prlimit", "--nproc=1", sys.executable, "-u", "-c", ASYNC_SERVER,
                             str(port)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    if proc.stdout.readline().strip() != "ready":
        proc.kill()
        raise SystemExit("server did not start: %s" % proc.communicate()[1])
    got, took = split_send(port, v2(inet("192.0.2.6")))
    tap.ok(got == b"client=192.0.2.6\n" and took < 2, "no helper thread (RLIMIT_NPROC = 1): "
           "a header in two pieces is served", diag="%r after %.1f s" % (got, took))
    c = socket.create_connection(("127.0.0.1", port), timeout=10)
    c.sendall(v2(inet("192.0.2.7"))[:8])            # and never the rest
    t0 = time.monotonic()
    c.settimeout(10)
    try:
        rest = c.recv(200)
    except OSError as e:
        rest = repr(e).encode()
    took = time.monotonic() - t0
    c.close()
    got, _ = split_send(port, v2(inet("192.0.2.8")), pause=0.05)
    proc.kill()
    err = proc.communicate()[1]
    tap.ok(rest == b"" and 0.5 < took < 3, "a header that never completes is closed at "
           "PROXYV2_TIMEOUT (1 s)", diag="%r after %.1f s" % (rest, took))
    tap.is_(got, b"client=192.0.2.8\n", "and the next client is served")
    tap.is_((err.count("cannot start the helper thread"),
             err.count("no whole PROXY header within PROXYV2_TIMEOUT")), (1, 1),
            "reported: no helper thread once, the incomplete header once", diag=err[-600:])


def postfix_split_while_held(st, port, trials):
    """helper-118's sequence: Y sends half a header, Z a whole one and holds
    its session for 6 s; Y completes: (Y's greeting, seconds until it,
    Z's greeting), each trial."""
    waits = []
    for trial in range(trials):
        y = socket.create_connection(("127.0.0.1", port), timeout=30)
        hy = v2(inet("192.0.2.%d" % (100 + trial)))
        y.sendall(hy[:8])
        time.sleep(0.05)
        z = socket.create_connection(("127.0.0.1", port), timeout=10)
        z.sendall(v2(inet("198.51.100.%d" % (100 + trial))))
        time.sleep(0.05)
        t0 = time.monotonic()
        y.sendall(hy[8:])
        held = threading.Timer(6, lambda z=z: (z.sendall(b"QUIT\r\n"), z.close()))
        held.start()
        try:
            got = y.recv(100)
        except OSError as e:
            got = repr(e).encode()
        waits.append((got[:3], round(time.monotonic() - t0, 1), z.recv(100)[:3]))
        held.join()
        y.close()
    return waits


def test_postfix_inline():
    for max_use in ("100", "1"):
        with Stack("preload-wait-%s" % max_use) as st:
            tap.stack = st
            port = st.port("postfix-smtp")
            imp = ("MAIL_CONFIG MAIL_DEBUG MAIL_LOGTAG TZ LANG=C POSTLOG_SERVICE "
                   "POSTLOG_HOSTNAME LD_PRELOAD=%s PROXYV2_PORTS=%d PROXYV2_TRUSTED=127.0.0.1 "
                   "PROXYV2_WAIT=inline PROXYV2_WAKE_KEY" % (LIB, port))
            st.start_postfix(main={"import_environment": imp, "max_use": max_use})
            warm = []
            for i in range(4):                  # several idle smtpd processes
                s = socket.create_connection(("127.0.0.1", port), timeout=10)
                s.sendall(v2(inet("203.0.113.%d" % (i + 1))))
                s.recv(100)
                warm.append(s)
            for s in warm:
                s.sendall(b"QUIT\r\n")
                s.close()
            time.sleep(1)
            waits = postfix_split_while_held(st, port, 3)
            tap.ok(all(g == b"220" and w < 3 and gz == b"220" for g, w, gz in waits),
                   "PROXYV2_WAIT = inline, max_use = %s: a header in two pieces is greeted "
                   "while another client holds a session" % max_use, diag=str(waits))


def test_bad_wait():
    port = free_port()
    env = dict(os.environ, LD_PRELOAD=LIB, PROXYV2_PORTS=str(port), PROXYV2_WAIT="sometimes")
    proc = subprocess.Popen([sys.executable, "-u", "-c", ASYNC_SERVER, str(port)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ready = proc.stdout.readline().strip() == "ready"
    got, _ = split_send(port, v2(inet("192.0.2.9"))) if ready else (b"", 0)
    proc.kill()
    err = proc.communicate()[1]
    tap.ok(got == b"client=192.0.2.9\n" and "PROXYV2_WAIT: \"sometimes\" is neither" in err,
           "PROXYV2_WAIT = sometimes: reported, and a header in two pieces still served",
           diag="%r %s" % (got, err[-300:]))


def test_wide_trusted():
    """The warning for a PROXYV2_TRUSTED that matches a whole address family
    names the families it matches (helper-118: ::/0, which holds the
    IPv4-mapped addresses too, was said to match every IPv4 address)."""
    said = []
    for net in ("0.0.0.0/0", "::/0", "2000::/3,::ffff:0:0/96", "::/1,8000::/1"):
        port = free_port()
        env = dict(os.environ, LD_PRELOAD=LIB, PROXYV2_PORTS=str(port), PROXYV2_TRUSTED=net)
        proc = subprocess.Popen([sys.executable, "-u", "-c", ASYNC_SERVER, str(port)], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        proc.stdout.readline()
        got, _ = split_send(port, v2(inet("192.0.2.10")), pause=0.01)  # accept() loads it
        proc.kill()
        err = proc.communicate()[1]
        found = [f for f in ("IPv4 and IPv6", "IPv4", "IPv6")
                 if "matches every %s address" % f in err]
        said.append(found[0] if found else err[-200:])
    tap.is_(said, ["IPv4", "IPv4 and IPv6", "IPv4", "IPv4 and IPv6"],
            "PROXYV2_TRUSTED covering a family: the warning names what it covers")


test_no_thread()
test_bad_wait()
test_wide_trusted()
test_postfix_inline()
sys.exit(tap.done())
