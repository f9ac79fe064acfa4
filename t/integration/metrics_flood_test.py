#!/usr/bin/python3
"""metrics_listen under attack, for the four daemons (policyd-ratelimit,
proxyv2-shim, milter-dkim, lmtp-webhook-spool run), each started under
prlimit --nofile=64:

- the endpoint holds at most 16 connections: with 16 idle ones open, a
  17th client's GET /healthz waits in the backlog only until the idle
  ones are 100 ms old, then they are cut and it is answered (within a
  kubelet probe's 1 s); 120 silent connections opened at once starve no
  probe (helper-101: they held the slots and the backlog ahead of every
  probe for a minute, and an orchestrator restarts a daemon whose probes
  time out);
- 300 idle connections opened at the metrics port as fast as the kernel
  takes them cost the daemon at most 16 descriptors (counted in
  /proc/PID/fd), little CPU and no log flood, and the mail port goes on
  serving meanwhile (a policy request answered; Postfix's greeting and
  EHLO through the shim; a milter option negotiation); once the flood
  closes, /healthz and /metrics answer again;
- 200 requests in a row, with heads of up to 8 KB, each get their own
  answer; a request head larger than 8 KB is refused, not buffered;
- a client that sends a byte every 2 s (each byte restarts evhttp's
  10 s timeout) is closed 30 s after it connected (the mechanism is
  common/metrics_http.c's, so policyd-ratelimit's endpoint stands for
  the four).

Before the limit, each idle connection to the endpoint took a descriptor
until evhttp's 10 s timeout, so a client of the metrics port could leave
none for the mail ports."""

import os
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from mxdaemons import (http_get, milter_negotiates, start_policyd,  # noqa: E402
                       start_shim, start_spool_runner, write)
from mxflood import Flood, cpu_ticks, fd_count  # noqa: E402
from mxstack import Stack  # noqa: E402
from mxtest import tap, wait_for  # noqa: E402
import mxdkim  # noqa: E402

NOFILE = ["prlimit", "--nofile=64"]
HZ = os.sysconf("SC_CLK_TCK")
CAP = 16
FLOOD = 300
REQUEST = (b"request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\n"
           b"client_address=192.0.2.1\nsender=a@example.com\nrecipient=b@example.net\n\n")


def policy_served(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        s.sendall(REQUEST)
        return s.recv(100) == b"action=DUNNO\n\n"
    finally:
        s.close()


def shim_served(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        body = socket.inet_aton("192.0.2.7") + socket.inet_aton("127.0.0.1") \
            + struct.pack("!HH", 40000, 25)
        s.sendall(b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x21, 0x11]) + struct.pack("!H", len(body))
                  + body)
        f = s.makefile("rb")
        greeting = f.readline()
        s.sendall(b"EHLO client.example\r\n")
        ehlo = f.readline()
        return greeting.startswith(b"220 ") and ehlo.startswith(b"250")
    finally:
        s.close()


def probe(mport, timeout=1.0):
    """A kubelet's probe: GET /healthz, answered within timeout (1 s)."""
    try:
        s = socket.create_connection(("127.0.0.1", mport), timeout=timeout)
    except OSError as e:
        return repr(e).encode()
    try:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        return s.recv(100)
    except OSError as e:
        return repr(e).encode()
    finally:
        s.close()


def check_cap(name, mport):
    """16 idle connections hold every slot; a 17th client waits in the
    backlog only until the idle ones are past their grace (100 ms): then
    they are cut, oldest first, and the probe is answered."""
    idle = Flood(mport, CAP)
    tap.is_(idle.refused, 0, "%s: %d idle connections to the endpoint" % (name, CAP))
    time.sleep(0.5)                     # accepted, counted, the listener off
    # a kubelet restarts after 3 failed probes in a row (failureThreshold):
    # one late probe of a loaded machine is retried, as the kubelet would
    tries = []
    for _ in range(2):
        t0 = time.monotonic()
        got = probe(mport)
        tries.append((got[:15], round(time.monotonic() - t0, 2)))
        if got.startswith(b"HTTP/1.1 200") and tries[-1][1] < 1.0:
            break
    tap.ok(tries[-1][0].startswith(b"HTTP/1.1 200") and tries[-1][1] < 1.0,
           "%s: with %d idle connections open, a 17th client's GET /healthz is answered "
           "within a probe's 1 s (%s)" % (name, CAP, tries), diag=repr(got))
    cut = sum(1 for s in idle.socks if closed_by_peer(s))
    tap.ok(cut >= 1, "%s: idle connections past their grace were cut for it (%d of %d)"
           % (name, cut, CAP))
    idle.close()


def closed_by_peer(s):
    s.settimeout(2)
    try:
        return s.recv(1) == b""
    except socket.timeout:
        return False
    except OSError:
        return True


def check_starve(name, mport):
    """helper-101: 120 silent connections held the 16 slots and queued in
    the backlog ahead of every kubelet probe (1 s timeout) for a minute,
    and an orchestrator restarts a daemon whose probes fail. Now the
    silent ones are cut past their grace while clients wait: each probe
    is answered within 1 s while the flood is open."""
    flood = Flood(mport, 120, wait=False)
    time.sleep(0.5)
    answers = []
    for _ in range(10):
        t0 = time.monotonic()
        got = probe(mport)
        answers.append((got[:15], round(time.monotonic() - t0, 2)))
        time.sleep(0.3)
    cut = sum(1 for s in flood.socks if closed_by_peer(s))
    flood.close()
    late = [a for a in answers if not a[0].startswith(b"HTTP/1.1 200") or a[1] >= 1.0]
    # the kubelet's view: a restart needs 3 failed probes in a row; one
    # late answer of a loaded machine is allowed, none later than 3 s
    # (the flood held them for a minute)
    tap.ok(len(late) <= 1 and all(a[0].startswith(b"HTTP/1.1 200") and a[1] < 3.0
                                  for a in answers),
           "%s: with 120 silent connections opened at once, 10 probes answered, at most "
           "one of them after 1 s and none after 3 s (%d connections cut)" % (name, cut),
           diag=repr(answers))


def check_flood(st, name, proc, mport, served):
    check_cap(name, mport)
    check_starve(name, mport)
    tap.ok(wait_for(lambda: http_get(mport) == ("HTTP/1.1 200 OK", "alive\n"), timeout=10),
           "%s: /healthz answers once the idle ones closed" % name)
    baseline = fd_count(proc.pid)
    log_before = os.path.getsize(st.logs[name])
    t0 = cpu_ticks(proc.pid)
    flood = Flood(mport, FLOOD, wait=False)
    time.sleep(3)
    used = cpu_ticks(proc.pid) - t0
    held = fd_count(proc.pid) - baseline
    tap.ok(held <= CAP, "%s: %d connections opened at the metrics port hold %d descriptors "
           "(at most %d)" % (name, len(flood.socks), held, CAP))
    tap.ok(used <= 0.3 * HZ, "%s: the daemon used %.2fs of CPU in 3s of flood (at most 0.3s)"
           % (name, used / HZ))
    if served:
        tap.ok(served(), "%s: the mail port serves during the flood" % name)
    grown = os.path.getsize(st.logs[name]) - log_before
    tap.ok(grown <= 4096, "%s: %d bytes of log during the flood" % (name, grown))
    flood.close()
    tap.ok(wait_for(lambda: http_get(mport, "/metrics", timeout=3)
                    and http_get(mport, "/metrics", timeout=3)[0] == "HTTP/1.1 200 OK",
                    timeout=30, interval=0.5),
           "%s: /metrics answers once the flood closed" % name)
    tap.ok(wait_for(lambda: fd_count(proc.pid) <= baseline, timeout=10),
           "%s: every descriptor of the flood is given back (%d, baseline %d)"
           % (name, fd_count(proc.pid), baseline))
    # one after another, as a scraper and probes do: each answered, its
    # own answer (a descriptor number reused while an old connection's
    # reader still watched it once took bytes of the next request)
    wrong = []
    for i in range(200):
        path, want = [("/healthz", "alive\n"), ("/readyz", "ready\n")][i % 2]
        got = http_get(mport, path, head_extra=b"X-Pad: " + b"b" * (i * 40) + b"\r\n")
        if got != ("HTTP/1.1 200 OK", want):
            wrong.append((i, got))
    tap.is_(wrong, [], "%s: 200 requests in a row (heads up to 8 KB), each answered exactly"
            % name)
    big = http_get(mport, head_extra=b"X-Pad: " + b"a" * 9000 + b"\r\n")
    tap.ok(big is not None and big[0] != "HTTP/1.1 200 OK",
           "%s: a 9 KB request head is refused" % name, diag=str(big))
    tap.ok(proc.poll() is None, "%s: alive" % name)


def check_slow_client(name, mport):
    """A byte every 2 s resets evhttp's 10 s timeout; the connection's
    30 s lifetime ends it all the same."""
    s = socket.create_connection(("127.0.0.1", mport), timeout=5)
    t0 = time.monotonic()
    s.sendall(b"GET /healthz HTTP/1.1\r\n")
    closed = None
    while time.monotonic() - t0 < 45:
        try:
            s.sendall(b"X")
            s.settimeout(2)
            if s.recv(100) == b"":
                closed = time.monotonic() - t0
                break
        except socket.timeout:
            continue
        except OSError:
            closed = time.monotonic() - t0
            break
    s.close()
    tap.ok(closed is not None and 28 <= closed <= 34,
           "%s: a client sending a byte every 2 s is closed 30 s after it connected, not "
           "held for hours (%s s)" % (name, "%.1f" % closed if closed else "never"))


def test_policyd(st):
    proc, port, mport = start_policyd(st, "policyd", prefix=NOFILE)
    tap.ok(policy_served(port), "policyd under 64 descriptors answers")
    check_flood(st, "policyd", proc, mport, lambda: policy_served(port))
    check_slow_client("policyd", mport)


def test_shim(st):
    st.start_postfix(main={"smtpd_authorized_xclient_hosts": "127.0.0.0/8"})
    proc, port, mport = start_shim(st, "shim", st.port("postfix-smtp"), prefix=NOFILE)
    tap.ok(shim_served(port), "shim under 64 descriptors: a client reaches Postfix")
    check_flood(st, "shim", proc, mport, lambda: shim_served(port))


def test_milter(st):
    dns = mxdkim.Dns(st.path("etc", "dns.txt"))
    mxdkim.one_rsa_key(st, dns)
    port, mport = st.port("milter"), st.port("milter-metrics")
    conf = write(st, "milter.conf", "socket = inet:%d@127.0.0.1\n"
                 "key_table = {dir}/etc/key.table\nsigning_table = refile:{dir}/etc/signing.table\n"
                 "dns_test_file = {dir}/etc/dns.txt\nmetrics_listen = inet:127.0.0.1:%d\n"
                 .replace("{dir}", st.dir) % (port, mport))
    proc = st.start_daemon("milter", ["prlimit", "--nofile=64", mxdkim.MILTER, "-f", "-c", conf],
                           port=port)
    tap.ok(milter_negotiates(port), "milter under 64 descriptors negotiates")
    check_flood(st, "milter", proc, mport, lambda: milter_negotiates(port))


def test_spool(st):
    proc, mport = start_spool_runner(st, "spool", prefix=NOFILE)
    check_flood(st, "spool", proc, mport, None)


with Stack("metrics-flood") as st:
    tap.stack = st
    test_policyd(st)
    test_shim(st)
    test_milter(st)
    test_spool(st)

sys.exit(tap.done())
