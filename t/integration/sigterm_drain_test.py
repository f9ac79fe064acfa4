#!/usr/bin/python3
"""SIGTERM (what podman stop and the kubelet send on a rolling update)
lets the work in flight finish (common/skeleton_drain.c, drain_timeout).

milter-dkim cut every session at SIGTERM: a real Postfix (milter_default_action
= tempfail) answered a message in the middle of DATA 451 4.7.1. Now:
  - that message is delivered (250), signed, and the milter exits 0 soon
    after, because a session idle between messages is closed at once;
  - new milter connections are refused during the drain;
  - a client that holds a session without a message keeps the daemon no
    longer than drain_timeout (2 s here), and exit status 0;
  - drain_timeout = 0 cuts at once, and so does a second SIGTERM;
  - -t refuses drain_timeout = abc and -1 (all three daemons).
policyd-ratelimit: a request received before SIGTERM and waiting for the
store (Redis paused) is answered, then the connection is closed.
proxyv2-shim: a relayed session in the middle of DATA reaches the backend
whole (exact bytes) and the shim exits 0 when it ends; an idle relayed
session is held for drain_timeout (1500ms, set by a reload), then cut.
Every check also asserts that the drain held: each fails against a build
without it (an unknown drain_timeout, or an exit within 0.5 s).
"""

import os
import signal
import socket
import struct
import sys
import threading
import time
import uuid

import dkim

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from mxstack import Stack  # noqa: E402
from mxtest import run, tap, wait_for  # noqa: E402
from mxdaemons import POLICYD, SHIM, write  # noqa: E402
import mxdkim  # noqa: E402
import mxproxy  # noqa: E402

pk, rp = mxdkim.milter_packet, mxdkim.read_milter_packet

MILTER_CONF = ("socket = inet:{port}@127.0.0.1\nkey_table = {dir}/etc/key.table\n"
               "signing_table = refile:{dir}/etc/signing.table\n"
               "internal_hosts = 127.0.0.0/8\nauthserv_id = mx.mxkit.test\n")


def exited_within(proc, seconds):
    """proc's exit status if it exits within seconds, else None."""
    try:
        return proc.wait(timeout=seconds)
    except Exception:
        return None


def refused(port):
    """Is a TCP connection to port refused (or reset at once)?"""
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=2)
    except OSError:
        return True
    try:
        s.settimeout(1)
        return s.recv(1) == b""
    except socket.timeout:
        return False
    except OSError:
        return True
    finally:
        s.close()


def smtp_cmd(s, f, line=None):
    if line is not None:
        s.sendall(line)
    out = b""
    while True:
        got = f.readline()
        out += got
        if len(got) < 4 or got[3:4] != b"-":
            return out


def milter_session(port, mail=True):
    """A raw milter client: negotiated, connected, and inside a message
    (MAIL and RCPT answered) when mail, else only connected."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(pk(b"O", struct.pack(">III", 6, 0x1ff, 0)))   # every step answered
    rp(s)
    s.sendall(pk(b"C", b"client.example\0" + b"4" + struct.pack(">H", 25) + b"127.0.0.1\0"))
    rp(s)
    if mail:
        s.sendall(pk(b"M", b"<alerts@planapulse.ai>\0"))
        rp(s)
        s.sendall(pk(b"R", b"<x@planapulse.test>\0"))
        rp(s)
    return s


def closed_by_peer(s, timeout=3):
    s.settimeout(timeout)
    try:
        return rp(s)[0] is None
    except socket.timeout:
        return False
    except OSError:
        return True


def test_milter_in_data(st, dns):
    """Real Postfix, a client in the middle of DATA at SIGTERM."""
    proc, mport, _ = mxdkim.start_milter(st, "milter", MILTER_CONF)   # the default: 25s
    smtp = mxdkim.start_receiver(st, mport)
    # a second client: one message done, then idle between messages
    idle = socket.create_connection(("127.0.0.1", smtp), timeout=30)
    fi = idle.makefile("rb")
    smtp_cmd(idle, fi)
    smtp_cmd(idle, fi, b"EHLO idle.example\r\n")
    smtp_cmd(idle, fi, b"MAIL FROM:<alerts@planapulse.ai>\r\n")
    smtp_cmd(idle, fi, b"RCPT TO:<x@planapulse.test>\r\n")
    smtp_cmd(idle, fi, b"DATA\r\n")
    first = smtp_cmd(idle, fi, b"From: <alerts@planapulse.ai>\r\nSubject: before\r\n\r\nx\r\n.\r\n")
    tap.ok(first.startswith(b"250"), "a message before the stop is accepted", diag=first)
    token = uuid.uuid4().hex
    s = socket.create_connection(("127.0.0.1", smtp), timeout=30)
    f = s.makefile("rb")
    smtp_cmd(s, f)
    smtp_cmd(s, f, b"EHLO client.example\r\n")
    smtp_cmd(s, f, b"MAIL FROM:<alerts@planapulse.ai>\r\n")
    rcpt = smtp_cmd(s, f, b"RCPT TO:<x@planapulse.test>\r\n")
    data = smtp_cmd(s, f, b"DATA\r\n")
    tap.ok(rcpt.startswith(b"250") and data.startswith(b"354"), "in DATA", diag=rcpt + data)
    s.sendall(b"From: <alerts@planapulse.ai>\r\nTo: <x@planapulse.test>\r\n"
              b"Subject: in flight at SIGTERM " + token.encode() + b"\r\n\r\nline 1\r\n")
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    tap.ok(proc.poll() is None, "milter: still running 0.5 s after SIGTERM (draining)")
    tap.ok(refused(mport) and proc.poll() is None,
           "milter: a new connection is refused during the drain")
    draining = proc.poll() is None
    s.sendall(b"line 2\r\n.\r\n")
    t0 = time.monotonic()
    answer = smtp_cmd(s, f)
    tap.ok(answer.startswith(b"250"), "the message in DATA at SIGTERM is accepted (250)",
           diag=answer)
    status = exited_within(proc, 5)
    tap.ok(draining and status == 0, "milter: exit %s once the message is answered, %.1fs "
           "later (an idle session between messages does not hold it)"
           % (status, time.monotonic() - t0))
    msg = mxdkim.sunk(st, token)
    tap.ok(msg is not None and "DKIM-Signature:" in msg, "the message reached the sink signed",
           diag=(msg or "")[:400])
    if msg is not None:
        raw = msg.encode()
        tap.ok(dkim.verify(raw, dnsfunc=dns.dnsfunc), "its DKIM-Signature verifies (dkimpy)")
    for c in (s, idle):
        c.close()


def test_milter_idle_client(st):
    """A client holding a session without a message: drain_timeout bounds it."""
    proc, port, _ = mxdkim.start_milter(st, "milter-hold", MILTER_CONF + "drain_timeout = 2s\n")
    s = milter_session(port, mail=False)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    held = not closed_by_peer(s, 1)
    status = exited_within(proc, 12)
    took = time.monotonic() - t0
    # the lower bound is the check; the upper one tells 2 s from the 25 s
    # default, with room for a loaded machine
    tap.ok(status == 0 and 1.5 <= took <= 10.0, "milter: a session holding no message is kept "
           "for the drain and cut at drain_timeout = 2s: exit %s after %.1fs" % (status, took))
    tap.ok(held and closed_by_peer(s), "milter: the held session is kept 1 s, then closed at "
           "the limit")
    s.close()


def test_milter_cut(st, name, conf_extra, second):
    proc, port, _ = mxdkim.start_milter(st, name, MILTER_CONF + conf_extra)
    s = milter_session(port)
    proc.send_signal(signal.SIGTERM)
    draining = True
    if second:
        time.sleep(0.5)
        draining = proc.poll() is None and not closed_by_peer(s, 0.2)
        tap.ok(draining, "milter: draining 0.5 s after the first SIGTERM")
        proc.send_signal(signal.SIGTERM)
    t0 = time.monotonic()
    status = exited_within(proc, 12)
    took = time.monotonic() - t0
    what = "a second SIGTERM" if second else "drain_timeout = 0"
    # "at once" against the drain it would otherwise wait (25 s default,
    # the message held for ever): 10 s leaves a loaded machine out of it
    tap.ok(draining and status == 0 and took < 10, "milter: %s cuts a message in flight at once: exit %s "
           "after %.1fs" % (what, status, took))
    tap.ok(draining and closed_by_peer(s, 1), "milter: %s: the session is closed" % what)
    s.close()


def policy_request(stage):
    return ("request=smtpd_access_policy\nprotocol_state=%s\nsasl_username=svc\n"
            "client_address=192.0.2.1\nrecipient_count=1\ninstance=abc.1\nqueue_id=\n"
            "sender=a@b\nrecipient=c@d\n\n" % stage).encode()


def read_answer(s, timeout=10):
    """One answer; what came before end of file or a reset; None when
    nothing came within timeout and the connection is still open."""
    s.settimeout(timeout)
    data = b""
    try:
        while not data.endswith(b"\n\n"):
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    except socket.timeout:
        return data or None
    except OSError:
        pass
    return data


def test_policyd(st):
    """Requests received before SIGTERM are answered: one waiting for the
    store (Redis paused), and one behind it in the same connection."""
    redis = st.start_redis()
    port = st.port("policyd")
    conf = write(st, "policyd.conf", "listen = inet:127.0.0.1:%d\nstore = redis://127.0.0.1:%d/0\n"
                 "deadline = 10s\nlimit per_user = sasl_username rate=30/1m count=recipients\n"
                 % (port, redis))
    proc = st.start_daemon("policyd", [POLICYD, "-f", "-c", conf], port=port)
    wait_for(lambda: "started:" in st.read_log("policyd"), timeout=10)
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(policy_request("RCPT"))
    first = read_answer(s)
    tap.ok(first and first.startswith(b"action="), "policyd: a request is answered", diag=first)
    idle = socket.create_connection(("127.0.0.1", port), timeout=10)
    run(["redis-cli", "-p", str(redis), "CLIENT", "PAUSE", "800", "ALL"])
    s.sendall(policy_request("RCPT") + policy_request("RCPT"))
    time.sleep(0.3)				# one waits for Redis, one behind it
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    gone = read_answer(idle, 1)
    tap.ok(gone == b"" and proc.poll() is None, "policyd: an idle connection is closed at once, "
           "while a request waits (draining)")
    # both may come in one read: split them
    data = b""
    while data.count(b"\n\n") < 2:
        more = read_answer(s)
        if not more:
            break
        data += more
    answers = [a + b"\n\n" for a in data.split(b"\n\n")[:2] if a] + [b""] * 2
    answers = answers[:2]
    took = time.monotonic() - t0
    tap.ok(all(a and a.startswith(b"action=DUNNO") for a in answers),
           "policyd: both requests received before SIGTERM are answered (%.1fs later)" % took,
           diag=repr(answers))
    tap.ok(answers[1] and read_answer(s, 3) == b"", "policyd: then their connection is closed")
    status = exited_within(proc, 5)
    tap.ok(answers[1] and status == 0, "policyd: exit 0 after the drain (%s)" % status)
    s.close()
    idle.close()


def test_shim(st):
    """A relayed session in DATA at SIGTERM reaches the backend whole."""
    got, done = bytearray(), threading.Event()
    bsrv = socket.socket()
    bsrv.bind(("127.0.0.1", 0))
    bsrv.listen(5)

    def backend():
        c, _ = bsrv.accept()
        c.sendall(b"220 backend ESMTP\r\n")
        while True:
            d = c.recv(65536)
            if not d:
                break
            got.extend(d)
        c.close()
        done.set()
    threading.Thread(target=backend, daemon=True).start()
    port = st.port("shim")
    conf = write(st, "shim.conf", "listener = 127.0.0.1:%d backend=127.0.0.1:%d mode=proxy-v2 "
                 "trusted=127.0.0.0/8\n" % (port, bsrv.getsockname()[1]))
    proc = st.start_daemon("shim", [SHIM, "-f", "-c", conf], port=port)
    wait_for(lambda: "started:" in st.read_log("shim"), timeout=10)
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(mxproxy.with_crc(mxproxy.inet()))
    s.recv(100)
    head = b"EHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n"
    s.sendall(head)
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    alive = proc.poll() is None
    tap.ok(alive, "shim: still running 0.5 s after SIGTERM (a session is open)")
    tap.ok(refused(port) and proc.poll() is None, "shim: a new connection is refused during "
           "the drain")
    tail = b"Subject: x\r\n\r\n" + b"body line\r\n" * 2000 + b".\r\nQUIT\r\n"
    try:
        s.sendall(tail)
        s.shutdown(socket.SHUT_WR)
    except OSError as e:
        tap.diag("client send: %s" % e)
    done.wait(10)
    tap.ok(bytes(got).endswith(head + tail) and len(got) - len(head + tail) < 300,
           "shim: the backend received the session's bytes whole (%d of %d after the header)"
           % (len(got), len(head + tail)))
    s.close()
    status = exited_within(proc, 5)
    tap.ok(alive and status == 0, "shim: exit %s once the session ended" % status)


def test_shim_limit(st):
    """A reload applies drain_timeout; a session still open at the limit is cut."""
    bsrv = socket.socket()
    bsrv.bind(("127.0.0.1", 0))
    bsrv.listen(5)
    port = st.port("shim-limit")
    text = ("listener = 127.0.0.1:%d backend=127.0.0.1:%d mode=proxy-v2 trusted=127.0.0.0/8\n"
            % (port, bsrv.getsockname()[1]))
    conf = write(st, "shim-limit.conf", text)
    proc = st.start_daemon("shim-limit", [SHIM, "-f", "-c", conf], port=port)
    wait_for(lambda: "started:" in st.read_log("shim-limit"), timeout=10)
    write(st, "shim-limit.conf", text + "drain_timeout = 1500ms\n")
    proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "configuration reloaded" in st.read_log("shim-limit"), timeout=10)
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(mxproxy.with_crc(mxproxy.inet()) + b"EHLO x\r\n")
    b, _ = bsrv.accept()                       # the relay is up; then nobody says a word
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    held = exited_within(proc, 0.8) is None
    status = exited_within(proc, 12)
    took = time.monotonic() - t0
    tap.ok(held and status == 0 and took < 10, "shim: an idle relayed session is held for "
           "drain_timeout = 1500ms (set by a reload), then cut: exit %s after %.1fs"
           % (status, took))
    for c in (s, b, bsrv):
        c.close()


def check_refused(st, name, argv, conf):
    for value in ("abc", "-1"):
        path = write(st, "%s-drain-%s.conf" % (name, value), conf + "drain_timeout = %s\n" % value)
        res = run(argv + ["-t", "-c", path])
        out = res.stdout + res.stderr
        tap.ok(res.returncode == 1 and "drain_timeout" in out and "unknown" not in out,
               "%s -t refuses drain_timeout = %s" % (name, value), diag=out)
    path = write(st, "%s-drain-0.conf" % name, conf + "drain_timeout = 0\n")
    res = run(argv + ["-t", "-c", path])
    tap.is_(res.returncode, 0, "%s -t takes drain_timeout = 0" % name,
            diag=res.stdout + res.stderr)


def guarded(test, *args):
    """One part; a daemon that does not start (an unknown setting) or a
    client error fails that part, and the others still run."""
    try:
        test(*args)
    except Exception as e:
        tap.ok(False, "%s ran to its end" % test.__name__, diag="%s: %s" % (type(e).__name__, e))


def main():
    with Stack("sigterm-drain") as st:
        tap.stack = st
        dns = mxdkim.Dns(st.path("etc", "dns.txt"))
        mxdkim.one_rsa_key(st, dns)
        dns.write()
        st.start_sink()
        guarded(test_milter_in_data, st, dns)
        guarded(test_milter_idle_client, st)
        guarded(test_milter_cut, st, "milter-zero", "drain_timeout = 0\n", False)
        guarded(test_milter_cut, st, "milter-twice", "", True)   # default 25s
        guarded(test_policyd, st)
        guarded(test_shim, st)
        guarded(test_shim_limit, st)
        check_refused(st, "milter-dkim", [mxdkim.MILTER],
                      MILTER_CONF.replace("{port}", "1").replace("{dir}", st.dir))
        check_refused(st, "policyd-ratelimit", [POLICYD], "listen = inet:127.0.0.1:1\n")
        check_refused(st, "proxyv2-shim", [SHIM],
                      "listener = 127.0.0.1:1 backend=127.0.0.1:2 mode=proxy-v2 "
                      "trusted=127.0.0.0/8\n")
    return tap.done()


if __name__ == "__main__":
    sys.exit(main())
