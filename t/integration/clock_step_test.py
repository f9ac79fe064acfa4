#!/usr/bin/python3
"""The wall clock stepped back an hour under running daemons (an
operator's `date -s`, NTP stepping a VM resumed from a snapshot), made
with libfaketime: each daemon's time() and CLOCK_REALTIME read an offset
from a file the test rewrites, its CLOCK_MONOTONIC stays true. Every
interval a daemon measures must go on as before:

  1. policyd-ratelimit: a quarantine's notify command that hangs is
     killed after notify_timeout (2 s) although the clock was stepped
     back while it ran -- it was left running for the hour;
  2. milter-dkim with every session slot taken: the "max_sessions"
     warning comes again 10 s later -- silent for the hour;
  3. lmtp-webhook-spool run, its clock an hour behind the files' times:
     an event spooled (its mtime, read as its next attempt, an hour
     ahead) is posted at once, signed -- none was posted for the hour;
     a file in active/ that is no event (changed "in the future") is
     moved to dead/ -- it was taken for a copy under way, and stayed;
  4. the same runner, an event's first attempt failed (retry ~5 s on),
     then its clock steps back an hour: the retry comes as planned --
     it waited for the clock to catch up.

The accept pause's warning (common/skeleton.c) measures its interval on
the same clock, but is not tested here: it is written only while the
daemon is out of descriptors, when libfaketime cannot open its file and
falls back to the true time.
"""

import os
import re
import socket
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from mxdaemons import write  # noqa: E402
from mxflood import Flood  # noqa: E402
from mxstack import Stack  # noqa: E402
from mxtest import tap, wait_for  # noqa: E402
import mxdkim  # noqa: E402
import mxpolicy as mp  # noqa: E402
from mxwebhook import (Receiver, Runner, make_secret, spool_event_bytes,  # noqa: E402
                       verify, write_spool_conf)

FAKETIME = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"
SECRET = make_secret()


def faked(st, name):
    """An environment whose wall clock is the offset in the file it names
    (libfaketime, read again at every call); the file starts at +0."""
    offset = st.path("etc", name + ".faketime")
    with open(offset, "w") as f:
        f.write("+0\n")
    env = dict(os.environ, LD_PRELOAD=FAKETIME, FAKETIME_TIMESTAMP_FILE=offset,
               FAKETIME_NO_CACHE="1", FAKETIME_DONT_FAKE_MONOTONIC="1",
               NO_FAKE_STAT="1")       # files' times as the kernel has them
    return env, offset


def step_back(offset):
    with open(offset, "w") as f:
        f.write("-3600\n")


def request(port, helo, stage="RCPT"):
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    f = sock.makefile("rwb")
    reply = mp.policy_request(f, {
        "request": "smtpd_access_policy", "protocol_state": stage, "instance": helo,
        "sasl_username": "", "sender": "a@example.com", "recipient": "r@example.net",
        "client_address": "192.0.2.7", "size": "100", "helo_name": helo})
    sock.close()
    reply = reply and reply[0]
    if stage == "RCPT" and reply == "action=DUNNO":     # a message is counted at its end
        return request(port, helo, "END-OF-MESSAGE")
    return reply


def test_notify_timeout(st):
    """The notify command steps the daemon's clock back, then hangs."""
    env, offset = faked(st, "pq")
    hang = write(st, "hang.sh", "#!/bin/sh\necho -3600 > %s\nexec sleep 600\n" % offset)
    os.chmod(hang, 0o755)
    port = st.port("pq")
    conf = write(st, "pq.conf", "listen = inet:127.0.0.1:%d\nnotify_timeout = 2s\n"
                 "limit per_bulk = helo_name rate=1/1h\n"
                 "quarantine hang = helo_name when=per_bulk exceeded=1/1m action=defer "
                 "notify=%s\n" % (port, hang))
    st.start_daemon("pq", [mp.POLICYD, "-f", "-c", conf], port=port, env=env)
    tap.is_(request(port, "bulk.example.org"), "action=DUNNO", "policyd: the first message fits")
    reply = request(port, "bulk.example.org")
    tap.ok(reply and reply.startswith("action=450"), "the second locks the quarantine",
           diag=reply)
    log = lambda: st.read_log("pq")  # noqa: E731
    started = wait_for(lambda: re.search(r"notify \S+ started \(pid (\d+)\)", log()), timeout=10)
    tap.ok(started, "its notify command started", diag=log()[-800:])
    killed = wait_for(lambda: re.search(r"quarantine hang: notify \(pid \d+\) killed after 2s",
                                        log()), timeout=10)
    tap.ok(killed, "policyd: the clock stepped back an hour by the hanging notify, it is "
           "still killed after notify_timeout (2 s), not an hour later", diag=log()[-800:])
    if started:
        pid = int(re.search(r"notify \S+ started \(pid (\d+)\)", log()).group(1))
        tap.ok(wait_for(lambda: not os.path.exists("/proc/%d" % pid), timeout=10),
               "and reaped")


def test_milter_full(st):
    env, offset = faked(st, "mf")
    dns = mxdkim.Dns(st.path("etc", "dns.txt"))
    mxdkim.keygen(st, dns, "planapulse.ai", "ed2026", "ed25519")
    write(st, "key.table", "ed planapulse.ai:ed2026:%s/keys/ed2026.private\n" % st.dir)
    write(st, "signing.table", "*@planapulse.ai ed\n")
    port = st.port("mf")
    conf = write(st, "mf.conf", "socket = inet:%d@127.0.0.1\nmax_sessions = 2\n"
                 "key_table = %s\nsigning_table = refile:%s\ndns_test_file = %s\n"
                 % (port, st.path("etc", "key.table"), st.path("etc", "signing.table"),
                    st.path("etc", "dns.txt")))
    st.start_daemon("mf", [mxdkim.MILTER, "-f", "-c", conf], port=port, env=env)
    full = lambda: st.read_log("mf").count("max_sessions")  # noqa: E731
    first = Flood(port, 4)
    tap.ok(wait_for(lambda: full() >= 1, timeout=10),
           "milter-dkim with every session slot taken says so", diag=st.read_log("mf")[-800:])
    step_back(offset)
    time.sleep(11)
    second = Flood(port, 2)
    tap.ok(wait_for(lambda: full() >= 2, timeout=10),
           "the clock stepped back an hour: said again 10 s later (not an hour later)",
           diag=st.read_log("mf")[-800:])
    first.close()
    second.close()


def test_runner_behind(st):
    env, offset = faked(st, "spool")
    with open(offset, "w") as f:
        f.write("-3600\n")              # an hour behind every file's time
    rx = Receiver()
    rx.responder = lambda path, headers, body: (200, 0, {})
    os.makedirs(st.path("spool", "active"))
    with open(st.path("secret"), "w") as f:
        f.write(SECRET + "\n")
    write_spool_conf(st)
    url = "http://127.0.0.1:%d/ws/acme/in" % rx.port
    body = b'{"type":"test","tag":"behind"}'
    with open(st.path("spool", "active", "bill.eml"), "wb") as f:
        f.write(b"not an event\n")
    with open(st.path("spool", "active", "msg_behind01"), "wb") as f:
        f.write(spool_event_bytes("msg_behind01", url, body))
    runner = Runner(st)
    runner.start(env=env)
    dead = lambda: sorted(os.listdir(st.path("spool", "dead")))  # noqa: E731
    tap.ok(wait_for(lambda: os.path.isdir(st.path("spool", "dead"))
                    and dead() == ["notevent-bill_eml"], timeout=20),
           "runner an hour behind: a file that is no event, changed 'in the future', "
           "moves to dead/ (it stayed in active/ for the hour)",
           diag="active %r" % os.listdir(st.path("spool", "active")))
    tap.ok("active/bill.eml: not an event's name" in runner.log(), "with its error",
           diag=runner.log()[-800:])
    tap.ok(wait_for(lambda: len(rx.events()) >= 1, timeout=20), "the event is posted")
    time.sleep(1)
    got = rx.events()
    tap.is_(len(got), 1, "once")
    tap.ok(got and got[0][3] == body and verify(SECRET, got[0][1], got[0][3], tolerance=7200)
           is None, "its body as spooled, signed")
    rx.stop()
    runner.stop()


def test_retry_after_step(st):
    """An event's first attempt fails (its retry some 5 s on, the
    Standard Webhooks schedule), then the runner's clock steps back an
    hour: the retry comes as planned, not an hour later (helper-80)."""
    env, offset = faked(st, "spool")
    rx = Receiver()
    rx.script = [500]                   # then 200
    for name in os.listdir(st.path("spool", "active")):
        os.unlink(st.path("spool", "active", name))
    url = "http://127.0.0.1:%d/ws/acme/in" % rx.port
    runner = Runner(st)
    runner.start(env=env)
    with open(st.path("spool", "tmp", "step01"), "wb") as f:
        f.write(spool_event_bytes("msg_step01", url, b'{"type":"test","tag":"step"}'))
    os.rename(st.path("spool", "tmp", "step01"), st.path("spool", "active", "msg_step01"))
    tap.ok(wait_for(lambda: len(rx.events()) >= 1, timeout=20), "retry: the first attempt (500)")
    time.sleep(0.5)
    step_back(offset)
    tap.ok(wait_for(lambda: len(rx.events()) >= 2, timeout=30),
           "the clock stepped back an hour after it: the retry is posted within 30 s, not "
           "an hour later", diag=runner.log()[-800:])
    tap.ok(wait_for(lambda: os.listdir(st.path("spool", "active")) == [], timeout=10),
           "and the event is delivered")
    rx.stop()
    runner.stop()


if not os.path.exists(FAKETIME):
    tap.ok(False, "libfaketime is installed (contrib/install-deps installs it)")
    sys.exit(tap.done())

with Stack("clock-step") as st:
    tap.stack = st
    test_notify_timeout(st)
    test_milter_full(st)
    test_runner_behind(st)
    test_retry_after_step(st)

sys.exit(tap.done())
