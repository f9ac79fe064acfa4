#!/usr/bin/python3
"""metrics_listen attacked from outside, as a hostile client and an
unlucky operator would (the cases metrics_flood_test, probes_test and
metrics_test do not already cover). The mechanism is
common/metrics_http.c's, so one policyd-ratelimit whose mail port is a
UNIX socket and whose endpoint is on inet6:[::1] takes the whole
battery; proxyv2-shim takes the protocol cases again and must count none
of them as a mail connection; all four daemons are stopped with SIGTERM
while scrapes are in flight.

- request targets: the absolute form (RFC 9112 3.2.2: a server MUST
  accept it) answers like the origin form; //healthz, /healthz#x,
  %2Fhealthz, /x/../healthz are 404s; a NUL byte, HTTP/0.9, HTTP/2's
  preface and a 9 KB target are refused (400), a 7 KB query string is
  fine;
- HEAD answers without a body, so the next request on a kept-alive
  connection reads its own answer (evhttp sends whatever body it is
  given, HEAD or not);
- methods other than GET and HEAD are refused with 501 and the
  connection closed (CONNECT too: evhttp keeps a CONNECT connection
  open and its 501 has no length, so its client waited 10 s);
- bare LF line ends, an obs-fold continuation, 2,000 tiny headers, a
  Content-Length or chunked body on a GET, Expect: 100-continue, an
  absurd or negative Content-Length;
- pipelining: 1,000 requests in one write, each answered in order;
  HTTP/1.0 keep-alive; half-close after the request;
- TLS ClientHello bytes: closed after 10 s of no request; a client that
  sends requests until the kernel takes no more and reads nothing:
  closed once its answers have not moved for 10 s;
- clients that send requests and never read: the daemon's memory stays
  bounded, other clients are served meanwhile, every descriptor comes
  back;
- connections reset (SO_LINGER 0) in a loop for 3 s, 320 short
  connections in a row (none waits for the 100 ms sweep: every 16th
  did, 160 answers a second at most), and 20,000 kept-alive requests:
  descriptors back to the baseline, RSS bounded;
- nothing a client sent appears in the log;
- no path, query or header creates a series;
- SIGHUP reloads and SIGTERM while scrapes are in flight (and, for
  milter-dkim, 12 clients push requests they never read): exit 0, pid
  file removed; lmtp-webhook-spool run died of SIGSEGV there (its gauges
  read the configuration main() was freeing while a scrape ran)."""

import os
import signal
import socket
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from mxflood import fd_count  # noqa: E402
from mxstack import Stack, wait_port  # noqa: E402
from mxtest import build_path, tap, wait_for  # noqa: E402
import mxdkim  # noqa: E402
from mxdaemons import write  # noqa: E402
from mxwebhook import make_secret  # noqa: E402

POLICYD = build_path("policyd-ratelimit", "policyd-ratelimit")
SHIM = build_path("proxyv2-shim", "proxyv2-shim")
SPOOL = build_path("lmtp-webhook", "lmtp-webhook-spool")
TOKEN = b"ZqAttackToken"                # sent by the client, never to be logged
CLOSE = b"Host: x\r\nConnection: close\r\n\r\n"
TLS_HELLO = bytes.fromhex("160301002a0100002603035f") + b"\x00" * 40


def rss_kb(pid):
    for line in open("/proc/%d/status" % pid):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class Endpoint:
    def __init__(self, host, port):
        self.host, self.port = host, port

    def connect(self, timeout=5):
        return socket.create_connection((self.host, self.port), timeout=timeout)

    def raw(self, data, timeout=3, shut=False):
        """Everything the endpoint sent until it closed; None appended
        (as the second value False) when it did not close in time."""
        s = self.connect(timeout)
        out, closed = b"", False
        try:
            s.sendall(data)
            if shut:
                s.shutdown(socket.SHUT_WR)
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    closed = True
                    break
                out += chunk
        except socket.timeout:
            pass
        except OSError:
            closed = True
        finally:
            s.close()
        return out, closed

    def status(self, data, timeout=3):
        """(status line, body, closed) of the one answer to data."""
        out, closed = self.raw(data, timeout)
        head, _, body = out.partition(b"\r\n\r\n")
        return head.split(b"\r\n")[0].decode(errors="replace"), body, closed


def answers(out):
    """[(status line, headers dict, body)] of responses with a Content-Length."""
    res = []
    while out.startswith(b"HTTP/"):
        head, sep, rest = out.partition(b"\r\n\r\n")
        if not sep:
            break
        lines = head.split(b"\r\n")
        hdrs = dict(ln.split(b": ", 1) for ln in lines[1:] if b": " in ln)
        n = int(hdrs.get(b"Content-Length", b"-1"))
        if n < 0:
            res.append((lines[0], hdrs, rest))
            break
        res.append((lines[0], hdrs, rest[:n]))
        out = rest[n:]
    return res


def check_targets(name, ep):
    for target in (b"http://x/healthz", b"http://127.0.0.1/healthz?probe=1",
                   b"HTTP://X:1/healthz"):
        got = ep.status(b"GET " + target + b" HTTP/1.1\r\n" + CLOSE)
        tap.is_(got[:2], ("HTTP/1.1 200 OK", b"alive\n"),
                "%s: GET %s (absolute form) is 200 alive" % (name, target.decode()))
    got = ep.status(b"GET http://x/readyz HTTP/1.1\r\n" + CLOSE)
    tap.is_(got[:2], ("HTTP/1.1 200 OK", b"ready\n"), "%s: absolute-form /readyz" % name)
    for target in (b"//healthz", b"/healthz#x", b"%2Fhealthz", b"/x/../healthz", b"*",
                   b"http://x", b"http://x?/healthz", b"http:/healthz", b"/Healthz",
                   b"/healthz/", b"/healthz;x", b"http://x//healthz"):
        got = ep.status(b"GET " + target + b" HTTP/1.1\r\n" + CLOSE)
        tap.is_((got[0][:12], got[2]), ("HTTP/1.1 404", True),
                "%s: GET %s is a 404, the connection closed" % (name, target.decode()))
    for what, req in (("a NUL byte in the target", b"GET /healthz\x00x HTTP/1.1\r\n" + CLOSE),
                      ("HTTP/0.9", b"GET /healthz\r\n\r\n"),
                      ("HTTP/2's preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
                      ("HTTP/9.9", b"GET /healthz HTTP/9.9\r\n" + CLOSE),
                      ("a 9 KB target",
                       b"GET /healthz?" + TOKEN + b"a" * 9000 + b" HTTP/1.1\r\n" + CLOSE),
                      ("obs-fold as the first header", b"GET /healthz HTTP/1.1\r\n b\r\n\r\n"),
                      ("empty lines before the request", b"\r\n\r\nGET /healthz HTTP/1.1\r\n"
                       + CLOSE),
                      ("a negative Content-Length", b"GET /healthz HTTP/1.1\r\n"
                       b"Content-Length: -1\r\n" + CLOSE)):
        got = ep.status(req)
        tap.is_((got[0], got[2]), ("HTTP/1.1 400 Bad Request", True),
                "%s: %s is a 400, the connection closed" % (name, what))
    got = ep.status(b"GET /healthz?" + b"a" * 7000 + b" HTTP/1.1\r\n" + CLOSE)
    tap.is_(got[:2], ("HTTP/1.1 200 OK", b"alive\n"), "%s: a 7 KB query string" % name)


def check_head(name, ep):
    out, closed = ep.raw(b"HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
                         b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n"
                         b"HEAD /nowhere HTTP/1.1\r\nHost: x\r\n\r\n"
                         b"GET /readyz HTTP/1.1\r\n" + CLOSE)
    heads = []
    for want in (b"200 OK", b"200 OK", b"404 "):
        head, sep, rest = out.partition(b"\r\n\r\n")
        heads.append(head)
        tap.ok(head.startswith(b"HTTP/1.1 " + want) and sep,
               "%s: kept alive, HEAD answers %s" % (name, want.decode()), diag=repr(out[:300]))
        out = rest
    tap.is_(out.split(b"\r\n\r\n", 1)[-1] if out.startswith(b"HTTP/1.1 200 OK\r\n") else out,
            b"ready\n", "%s: no body after HEAD: the next request reads its own answer" % name)
    tap.ok(closed, "%s: closed after Connection: close" % name)
    tap.ok(b"\r\nContent-Length: 6" in heads[0],
           "%s: HEAD /healthz says the Content-Length GET has" % name, diag=repr(heads[0]))


def check_methods(name, ep):
    for method in (b"POST", b"PUT", b"DELETE", b"OPTIONS", b"TRACE", b"PATCH", b"get",
                   b"FOO", b"CONNECT"):
        target = b"x:443" if method == b"CONNECT" else b"/healthz"
        t0 = time.monotonic()
        got = ep.status(method + b" " + target + b" HTTP/1.1\r\nHost: x\r\n\r\n", timeout=5)
        took = time.monotonic() - t0
        tap.ok(got[0] == "HTTP/1.1 501 Not Implemented" and got[2] and took < 2,
               "%s: %s is refused (501) and the connection closed at once" % (
                   name, method.decode()), diag="%r in %.1f s" % (got, took))


def check_syntax(name, ep):
    for what, req in (
            ("bare LF line ends", b"GET /healthz HTTP/1.1\nHost: x\nConnection: close\n\n"),
            ("an obs-fold continuation line", b"GET /healthz HTTP/1.1\r\nX-A: a\r\n b\r\n"
             + CLOSE),
            ("2,000 tiny headers", b"GET /healthz HTTP/1.1\r\n" + b"a:\r\n" * 2000 + CLOSE),
            ("a NUL byte in a header value", b"GET /healthz HTTP/1.1\r\nX: a\x00b\r\n" + CLOSE),
            ("no Host header", b"GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n"),
            ("Expect: something else", b"GET /healthz HTTP/1.1\r\nExpect: x\r\n" + CLOSE)):
        got = ep.status(req)
        tap.is_(got, ("HTTP/1.1 200 OK", b"alive\n", True), "%s: %s" % (name, what))
    for what, body in (("a Content-Length body", b"Content-Length: 5\r\n\r\nhello"),
                       ("a chunked body", b"Transfer-Encoding: chunked\r\n\r\n"
                        b"5\r\nhello\r\n0\r\n\r\n")):
        out, closed = ep.raw(b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + body
                             + b"GET /readyz HTTP/1.1\r\n" + CLOSE)
        got = [(a[0], a[2]) for a in answers(out)]
        tap.is_(got, [(b"HTTP/1.1 200 OK", b"alive\n"), (b"HTTP/1.1 200 OK", b"ready\n")],
                "%s: a GET with %s, then a GET: two answers, the body skipped" % (name, what))
    for what, head in (("an absurd Content-Length", b"Content-Length: 99999999999999999999"),
                       ("a 100 KB Content-Length", b"Content-Length: 100000"),
                       ("a huge chunk", b"Transfer-Encoding: chunked\r\n\r\nfffffffffff")):
        got = ep.status(b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + head + b"\r\n\r\n")
        tap.is_((got[0], got[2]), ("HTTP/1.1 413 Request Entity Too Large", True),
                "%s: %s is refused (413), nothing buffered" % (name, what))
    s = ep.connect()
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
              b"Content-Length: 4\r\nConnection: close\r\n\r\n")
    first = s.recv(100)
    s.sendall(b"body")
    rest = b""
    while True:
        chunk = s.recv(1000)
        if not chunk:
            break
        rest += chunk
    s.close()
    tap.ok(first == b"HTTP/1.1 100 Continue\r\n\r\n" and rest.startswith(b"HTTP/1.1 200 OK")
           and rest.endswith(b"\r\n\r\nalive\n"),
           "%s: Expect: 100-continue: 100, then the body, then 200 alive" % name,
           diag=repr((first, rest)))


def check_pipelining(name, ep):
    out, closed = ep.raw(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
                         + b"GET /readyz?n=1 HTTP/1.1\r\nHost: x\r\n\r\n" * 500
                         + b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n" * 499
                         + b"GET /healthz HTTP/1.1\r\n" + CLOSE, timeout=20)
    got = answers(out)
    bodies = [a[2] for a in got]
    tap.ok(len(got) == 1001 and bodies[0] == b"alive\n" and bodies[1:501] == [b"ready\n"] * 500
           and all(b.startswith(b"# HELP ") for b in bodies[501:1000])
           and bodies[1000] == b"alive\n" and closed,
           "%s: 1,001 requests in one write: 1,001 answers, in order, then closed" % name,
           diag="%d answers, closed %s" % (len(got), closed))
    out, closed = ep.raw(b"GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
                         b"GET /readyz HTTP/1.0\r\n\r\n")
    got = answers(out)
    tap.ok(len(got) == 2 and got[0][0] == b"HTTP/1.0 200 OK" and got[0][2] == b"alive\n"
           and got[1][2] == b"ready\n" and closed,
           "%s: HTTP/1.0 keep-alive, then a plain 1.0 request: both answered, then closed"
           % name, diag=repr(out))
    for version in (b"1.1", b"1.0"):
        out, closed = ep.raw(b"GET /healthz HTTP/" + version + b"\r\nHost: x\r\n\r\n", shut=True)
        tap.ok(out.startswith(b"HTTP/" + version + b" 200 OK") and out.endswith(b"alive\n")
               and closed, "%s: HTTP/%s, half-closed after the request: answered, then closed"
               % (name, version.decode()), diag=repr(out))


def nonreaders(ep, count):
    """count connections that push GET /metrics until the kernel stops
    taking them and never read."""
    socks = []
    for _ in range(count):
        s = socket.socket(socket.AF_INET6 if ":" in ep.host else socket.AF_INET)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect((ep.host, ep.port))
        s.setblocking(False)
        try:
            for _ in range(20000):
                s.send(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        except BlockingIOError:
            pass
        socks.append(s)
    return socks


def series(ep):
    """the series (names and labels) /metrics shows"""
    _, body, _ = ep.status(b"GET /metrics HTTP/1.1\r\n" + CLOSE)
    return sorted(ln.rsplit(" ", 1)[0] for ln in body.decode().splitlines()
                  if ln and not ln.startswith("#"))


def check_load(name, ep, proc, log):
    pid = proc.pid
    baseline, rss0 = fd_count(pid), rss_kb(pid)
    socks = nonreaders(ep, 12)
    time.sleep(2)
    tap.is_(ep.status(b"GET /healthz HTTP/1.1\r\n" + CLOSE),
            ("HTTP/1.1 200 OK", b"alive\n", True),
            "%s: 12 clients sending GET /metrics and never reading: another is served" % name)
    grown = rss_kb(pid) - rss0
    tap.ok(grown < 4096, "%s: the non-readers grew the daemon's RSS by %d KB (< 4 MB)"
           % (name, grown))
    for s in socks:
        s.close()
    tap.ok(wait_for(lambda: fd_count(pid) <= baseline, timeout=5),
           "%s: their descriptors given back (%d, baseline %d)" % (name, fd_count(pid), baseline))
    # resets at the highest rate one client manages, a request in flight
    t0, n = time.monotonic(), 0
    while time.monotonic() - t0 < 3:
        s = socket.socket(socket.AF_INET6 if ":" in ep.host else socket.AF_INET)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.settimeout(2)
        try:
            s.connect((ep.host, ep.port))
            s.send(b"GET /metrics?" + TOKEN + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        except OSError:
            pass
        s.close()
        n += 1
    tap.ok(wait_for(lambda: fd_count(pid) <= baseline, timeout=5),
           "%s: %d connections reset (RST) in 3 s: descriptors back to %d (now %d)"
           % (name, n, baseline, fd_count(pid)))
    # one short connection after another, as probes and scrapers open
    # them: none waits for the 100 ms sweep to free a slot
    stalls, t0 = 0, time.monotonic()
    for _ in range(320):
        t1 = time.monotonic()
        got = ep.status(b"GET /healthz HTTP/1.1\r\n" + CLOSE)
        if got != ("HTTP/1.1 200 OK", b"alive\n", True) or time.monotonic() - t1 > 0.09:
            stalls += 1
    tap.ok(stalls <= 3, "%s: 320 short connections in a row, %d slower than 90 ms (at most 3; "
           "every 16th waited 100 ms) in %.2f s" % (name, stalls, time.monotonic() - t0))
    # 20,000 kept-alive requests from 4 clients
    wrong = []

    def scrape(k):
        s = ep.connect(20)
        s.sendall((b"GET /healthz?" + TOKEN + b" HTTP/1.1\r\nHost: x\r\n\r\n") * 4999
                  + b"GET /healthz HTTP/1.1\r\n" + CLOSE)
        out = b""
        while True:
            chunk = s.recv(1 << 16)
            if not chunk:
                break
            out += chunk
        s.close()
        got = answers(out)
        if len(got) != 5000 or any(a[2] != b"alive\n" for a in got):
            wrong.append((k, len(got)))
    t0 = time.monotonic()
    threads = [threading.Thread(target=scrape, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.monotonic() - t0
    tap.is_(wrong, [], "%s: 20,000 kept-alive requests from 4 clients, each answered (%.0f/s)"
            % (name, 20000 / took))
    tap.ok(wait_for(lambda: fd_count(pid) <= baseline, timeout=5),
           "%s: descriptors back to the baseline %d" % (name, baseline))
    grown = rss_kb(pid) - rss0
    tap.ok(grown < 4096, "%s: RSS after all that grew by %d KB (< 4 MB)" % (name, grown))
    with open(log, "rb") as f:
        text = f.read()
    tap.ok(TOKEN not in text, "%s: nothing a client sent is in the log" % name)
    tap.ok(proc.poll() is None, "%s: alive" % name)


def check_tls(name, ep):
    """a TLS ClientHello is no request line: closed after 10 s of none"""
    s = ep.connect(15)
    t0 = time.monotonic()
    s.sendall(TLS_HELLO)
    try:
        got = s.recv(100)
    except OSError as e:
        got = repr(e).encode()
    took = time.monotonic() - t0
    s.close()
    tap.ok(got == b"" and 9 <= took <= 12, "%s: TLS ClientHello bytes: closed after %.1f s, "
           "nothing sent" % (name, took), diag=repr(got))


def check_nonreader_closed(name, ep):
    """a client that sends requests until the kernel takes no more and
    reads nothing holds its slot until its answers have not moved for
    10 s"""
    s = nonreaders(ep, 1)[0]
    time.sleep(12)
    s.setblocking(True)
    s.settimeout(3)
    answered, closed = 0, False
    try:
        while True:
            chunk = s.recv(1 << 16)
            if not chunk:
                closed = True
                break
            answered += chunk.count(b"HTTP/1.1 200 OK")
    except socket.timeout:
        pass
    except OSError:
        closed = True
    s.close()
    tap.ok(closed and answered < 100, "%s: a client that sends GET /metrics until the kernel "
           "takes no more and reads nothing is closed after 10 s (%d answers were on their "
           "way)" % (name, answered))


def battery(name, ep):
    tls = threading.Thread(target=check_tls, args=(name, ep))
    tls.start()                        # its 10 s run beside the rest
    slow = threading.Thread(target=check_nonreader_closed, args=(name, ep))
    slow.start()
    check_targets(name, ep)
    check_head(name, ep)
    check_methods(name, ep)
    check_syntax(name, ep)
    check_pipelining(name, ep)
    tls.join()
    slow.join()


def scrapers(ep, stop):
    def run():
        while not stop.is_set():
            try:
                s = ep.connect(2)
                s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n" * 20)
                s.recv(100)
                s.close()
            except OSError:
                pass
    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    return threads


def stop_in_flight(st, name, proc, ep, pid_file, hup, idle=0):
    """SIGHUP reloads, then SIGTERM, while 4 clients scrape (and idle
    clients push requests they never read)"""
    stop = threading.Event()
    held = nonreaders(ep, idle)
    threads = scrapers(ep, stop)
    time.sleep(0.3)
    for _ in range(hup):
        proc.send_signal(signal.SIGHUP)
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    try:
        rc = proc.wait(10)
    except Exception:
        rc = "still running"
    stop.set()
    for t in threads:
        t.join()
    for s in held:
        s.close()
    tap.is_(rc, 0, "%s: %sSIGTERM while 4 clients scrape%s: exit 0" % (
        name, "%d SIGHUP reloads, then " % hup if hup else "",
        " and %d never read" % idle if idle else ""), diag=st.read_log(name)[-2000:])
    tap.ok(not os.path.exists(pid_file), "%s: its pid file removed" % name)


def test_policyd(st):
    mport = st.port("policyd-metrics")
    pid_file = st.path("policyd.pid")
    conf = write(st, "policyd.conf", "listen = unix:%s\nworkers = 2\npid_file = %s\n"
                 "metrics_listen = inet6:[::1]:%d\n"
                 "limit per_sender = sender rate=100000/1m count=messages\n"
                 % (st.path("policyd.sock"), pid_file, mport))
    proc = st.start_daemon("policyd", ["prlimit", "--nofile=64", POLICYD, "-f", "-c", conf])
    ep = Endpoint("::1", mport)
    tap.ok(wait_port(mport, host="::1", proc=proc)
           and wait_for(lambda: ep.status(b"GET /readyz HTTP/1.1\r\n" + CLOSE)[1] == b"ready\n",
                        timeout=10),
           "policyd: UNIX mail socket, metrics_listen = inet6:[::1]: ready",
           diag=st.read_log("policyd"))
    before = series(ep)
    battery("policyd", ep)
    check_load("policyd", ep, proc, st.logs["policyd"])
    after = series(ep)
    tap.ok(len(before) > 10 and after == before, "policyd: the same %d series after all that: "
           "no path, query or header made one" % len(before),
           diag=str(set(after) ^ set(before)))
    stop_in_flight(st, "policyd", proc, ep, pid_file, 10)


def test_shim(st):
    mport = st.port("shim-metrics")
    pid_file = st.path("shim.pid")
    conf = write(st, "shim.conf", "listener = 127.0.0.1:%d backend=127.0.0.1:%d mode=xclient "
                 "trusted=127.0.0.1\nmetrics_listen = inet:127.0.0.1:%d\npid_file = %s\n"
                 % (st.port("shim"), st.port("nobody"), mport, pid_file))
    proc = st.start_daemon("shim", ["prlimit", "--nofile=64", SHIM, "-f", "-c", conf],
                           port=mport)
    ep = Endpoint("127.0.0.1", mport)
    battery("shim", ep)
    _, body, _ = ep.status(b"GET /metrics HTTP/1.1\r\n" + CLOSE)
    counts = [ln for ln in body.decode().splitlines()
              if ln.startswith("mxkit_proxy_connections_total{")]
    tap.ok(len(counts) >= 7 and all(ln.endswith(" 0") for ln in counts),
           "shim: after the whole battery every mxkit_proxy_connections_total series is 0",
           diag="\n".join(counts))
    stop_in_flight(st, "shim", proc, ep, pid_file, 5)


def test_milter(st):
    dns = mxdkim.Dns(st.path("etc", "dns.txt"))
    mxdkim.one_rsa_key(st, dns)
    port, mport = st.port("milter"), st.port("milter-metrics")
    pid_file = st.path("milter.pid")
    conf = write(st, "milter.conf", "socket = inet:%d@127.0.0.1\n"
                 "key_table = {dir}/etc/key.table\nsigning_table = refile:{dir}/etc/signing.table\n"
                 "dns_test_file = {dir}/etc/dns.txt\nmetrics_listen = inet:127.0.0.1:%d\n"
                 "pid_file = %s\n".replace("{dir}", st.dir) % (port, mport, pid_file))
    proc = st.start_daemon("milter", ["prlimit", "--nofile=64", mxdkim.MILTER, "-f", "-c", conf],
                           port=mport)
    stop_in_flight(st, "milter", proc, Endpoint("127.0.0.1", mport), pid_file, 5, idle=12)


def test_spool(st):
    spool = st.path("spool")
    for sub in ("active", "dead", "tmp"):
        os.makedirs(os.path.join(spool, sub))
    secret = write(st, "secret", make_secret() + "\n")
    mport = st.port("spool-metrics")
    pid_file = st.path("spool.pid")
    conf = write(st, "spool.conf", "spool_dir = %s\nsecret_file = %s\npid_file = %s\n"
                 "metrics_listen = inet:127.0.0.1:%d\n" % (spool, secret, pid_file, mport))
    proc = st.start_daemon("spool", ["prlimit", "--nofile=64", SPOOL, "-c", conf, "-f", "run"],
                           port=mport)
    stop_in_flight(st, "spool", proc, Endpoint("127.0.0.1", mport), pid_file, 0)


with Stack("metrics-attack") as st:
    tap.stack = st
    test_policyd(st)
    test_shim(st)
    test_milter(st)
    test_spool(st)

sys.exit(tap.done())
