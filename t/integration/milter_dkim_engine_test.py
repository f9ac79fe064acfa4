#!/usr/bin/python3
"""milter-dkim's own milter protocol engine (mengine, msession; issue 17:
libmilter's worker pool replaced), attacked on the wire and through real
Postfix. The daemon runs with an open-files limit of 48 (prlimit), so
that it runs out of descriptors:

  - a raw MTA signs a message: the DKIM-Signature it inserts verifies
    with dkimpy over the header and body it sent;
  - an abort after MAIL, after a header, after end of header and after a
    body chunk: each time the next message in the session is signed and
    verifies;
  - a packet length past the limit (2 GB), a length of 0 and an unknown
    command: the session is closed with the reason logged, the daemon
    serves on; a truncated packet and a close: nothing logged, serves on;
  - 300 raw sessions at once against 48 descriptors: every one is
    answered in full (the rest wait in the backlog), and the exhaustion
    is logged;
  - a peer that sends 600 messages and never reads (a 4 KB receive
    window): another session
    is served meanwhile, and the daemon lives on when it goes;
  - through Postfix, 20 SMTP sessions at once, 5 messages each (RSET
    between them, one session quitting mid-DATA): every message arrives
    signed and verifies.
"""

import os
import re
import smtplib
import socket
import struct
import sys
import threading
import time
import uuid

import dkim

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from mxstack import Stack  # noqa: E402
from mxtest import tap, wait_for  # noqa: E402
import mxdkim  # noqa: E402

CONF = """\
socket = inet:{port}@127.0.0.1
key_table = {dir}/etc/key.table
signing_table = refile:{dir}/etc/signing.table
dns_test_file = {dir}/etc/dns.txt
internal_hosts = 127.0.0.0/8
authserv_id = mx.mxkit.test
"""
NOFILE = 48


pk = mxdkim.milter_packet
read_packet = mxdkim.read_milter_packet


def connect(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    return s


def negotiate(s):
    """Offer what Postfix 3.7 offers; the no-reply steps milter.c asks for."""
    s.sendall(pk(b"O", struct.pack(">III", 6, 0x1ff, 0x1fffff)))
    cmd, data = read_packet(s)
    return cmd == b"O" and struct.unpack(">III", data[:12])[2]


HEAD = [(b"From", b" Alerts <alerts@planapulse.ai>"), (b"To", b" ops@example.net"),
        (b"Subject", b" engine test"), (b"Date", b" Mon, 30 Nov 2026 10:00:00 +0000")]
BODY = b"Hello from the engine test.\r\n"


def envelope():
    return (pk(b"D", b"C" + b"j\0mx.test\0") + pk(b"C", b"client\0" + b"4" + struct.pack(">H", 25)
                                                  + b"127.0.0.1\0")
            + pk(b"H", b"client.example\0"))


def message(token):
    out = pk(b"D", b"M" + b"{mail_addr}\0alerts@planapulse.ai\0")
    out += pk(b"M", b"<alerts@planapulse.ai>\0")
    for name, value in HEAD + [(b"Message-ID", b" <" + token + b"@planapulse.ai>")]:
        out += pk(b"L", name + b"\0" + value + b"\0")
    out += pk(b"D", b"N" + b"i\0" + token[:10] + b"\0") + pk(b"N")
    return out, pk(b"B", BODY) + pk(b"D", b"E" + b"i\0" + token[:10] + b"\0") + pk(b"E")


def replies_until_final(s):
    """Replies up to the final one: [(cmd, data)], the final last."""
    got = []
    while True:
        cmd, data = read_packet(s)
        if cmd is None:
            return got
        got.append((cmd, data))
        if cmd in (b"a", b"c", b"r", b"t", b"y", b"d"):
            return got


def sign_one(s, token, dns):
    """One message after the envelope; True if signed and dkimpy verifies."""
    head, rest = message(token)
    s.sendall(head)
    eoh = replies_until_final(s)
    if [c for c, _ in eoh] != [b"c"]:
        return False, "EOH: %r" % eoh
    s.sendall(rest)
    eom = replies_until_final(s)
    ins = [d for c, d in eom if c == b"i"]
    if not eom or eom[-1][0] != b"a" or len(ins) != 1:
        return False, "EOM: %r" % eom
    name, value = ins[0][4:].split(b"\0")[:2]
    raw = name + b":" + value.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n") + b"\r\n"
    for n, v in HEAD + [(b"Message-ID", b" <" + token + b"@planapulse.ai>")]:
        raw += n + b":" + v + b"\r\n"
    raw += b"\r\n" + BODY
    return bool(dkim.DKIM(raw).verify(dnsfunc=dns.dnsfunc)), raw[:300]


def test_sign_and_aborts(port, dns):
    s = connect(port)
    flags = negotiate(s)
    tap.ok(flags and flags & 0x80 and not flags & 0x40000, "raw: negotiated (NR_HDR, EOH answers)")
    s.sendall(envelope())
    good, diag = sign_one(s, uuid.uuid4().hex.encode(), dns)
    tap.ok(good, "raw: the inserted DKIM-Signature verifies with dkimpy", diag=diag)
    stages = [("MAIL", pk(b"M", b"<alerts@planapulse.ai>\0")),
              ("a header", pk(b"M", b"<alerts@planapulse.ai>\0") + pk(b"L", b"From\0 x@y\0")),
              ("end of header", message(b"abortedeoh0")[0]),
              ("a body chunk", None)]
    for name, data in stages:
        if data is None:                        # EOH answers, then a chunk
            head, _ = message(b"abortedbody")
            s.sendall(head)
            replies_until_final(s)
            data = pk(b"B", b"partial body\r\n")
        s.sendall(data + pk(b"A"))
        if name == "end of header":
            replies_until_final(s)
        good, diag = sign_one(s, uuid.uuid4().hex.encode(), dns)
        tap.ok(good, "raw: abort after %s, then the next message is signed and verifies"
               % name, diag=diag)
    s.sendall(pk(b"Q"))
    s.close()


def closed(s, timeout=10):
    s.settimeout(timeout)
    try:
        while s.recv(65536):
            pass
        return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False


def test_bad_packets(st, port, dns):
    cases = [("a length of 2 GB", struct.pack(">I", 0x80000000) + b"M", "longer than the limit"),
             ("a length of 0", struct.pack(">I", 0), "length 0"),
             ("an unknown command", pk(b"Z", b"x"), "unknown milter command")]
    for name, data, logged in cases:
        s = connect(port)
        negotiate(s)
        s.sendall(data)
        tap.ok(closed(s), "%s: the session is closed" % name)
        peer = "%s:%d" % s.getsockname()
        s.close()
        tap.ok(wait_for(lambda: re.search(r"milter session from %s closed: .*%s"
                                          % (re.escape(peer), re.escape(logged)),
                                          st.read_log("milter")), timeout=10),
               "%s: logged with the peer's address (%s, %s)" % (name, peer, logged),
               diag=st.read_log("milter")[-600:])
    s = connect(port)
    negotiate(s)
    s.sendall(pk(b"M", b"<alerts@planapulse.ai>\0")[:-6])
    s.close()
    s = connect(port)
    tap.ok(negotiate(s), "a truncated packet and a close: the daemon serves on")
    s.sendall(envelope())
    good, diag = sign_one(s, uuid.uuid4().hex.encode(), dns)
    tap.ok(good, "and signs", diag=diag)
    s.close()


def test_many(st, port, dns, count=300):
    done = []
    lock = threading.Lock()
    barrier = threading.Barrier(count)

    def one(i):
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=120)
            s.settimeout(120)
            barrier.wait(timeout=60)            # all connected (the backlog holds them)
            ok = negotiate(s)
            s.sendall(envelope())
            good, _ = sign_one(s, ("many%04d" % i).encode() + uuid.uuid4().hex[:8].encode(), dns)
            s.sendall(pk(b"Q"))
            s.close()
            with lock:
                done.append(bool(ok and good))
        except (OSError, threading.BrokenBarrierError) as e:
            with lock:
                done.append(False)
            sys.stderr.write("# session %d: %s\n" % (i, e))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    tap.is_((len(done), done.count(True)), (count, count),
            "%d raw sessions at once, %d descriptors: every one signed and verified"
            % (count, NOFILE))
    tap.ok(re.search(r"accept on .*open-files limit %d" % NOFILE, st.read_log("milter")),
           "running out of descriptors was logged",
           diag=st.read_log("milter")[-600:])


def test_never_reads(st, port, dns):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)    # a small window
    s.connect(("127.0.0.1", port))
    negotiate(s)
    s.sendall(envelope())
    head, rest = message(b"flood00000")
    flood = (head + rest) * 600
    s.setblocking(False)
    sent = 0
    deadline = time.time() + 5
    while sent < len(flood) and time.time() < deadline:
        try:
            sent += s.send(flood[sent:sent + 65536])
        except BlockingIOError:
            time.sleep(0.05)
    other = connect(port)
    tap.ok(negotiate(other), "a peer that never reads (%d KB sent, no reply read): another "
           "session is served" % (sent // 1024))
    other.sendall(envelope())
    good, diag = sign_one(other, uuid.uuid4().hex.encode(), dns)
    tap.ok(good, "and signs", diag=diag)
    other.close()
    s.close()
    time.sleep(1)
    other = connect(port)
    tap.ok(negotiate(other), "after the flooder went, the daemon serves on")
    other.close()


def test_postfix(st, dns, sessions=20, per=5):
    tokens = []
    results = []
    lock = threading.Lock()

    def one(i):
        try:
            s = smtplib.SMTP("127.0.0.1", st.port("postfix-smtp"), timeout=120)
            for k in range(per):
                token = uuid.uuid4().hex
                raw = ("From: Alerts <alerts@planapulse.ai>\r\nTo: ops@example.net\r\n"
                       "Subject: pf %s\r\n\r\nsession %d message %d\r\n" % (token, i, k)).encode()
                s.sendmail("alerts@planapulse.ai", ["ops@example.net"], raw)
                s.rset()
                with lock:
                    tokens.append(token)
            if i == 0:                          # one quits mid-DATA
                s.putcmd("MAIL", "FROM:<alerts@planapulse.ai>")
                s.getreply()
                s.putcmd("RCPT", "TO:<ops@example.net>")
                s.getreply()
                s.putcmd("DATA")
                s.getreply()
                s.send(b"From: alerts@planapulse.ai\r\nSubject: cut\r\n\r\npartial")
                s.close()
            else:
                s.quit()
            with lock:
                results.append(True)
        except (OSError, smtplib.SMTPException) as e:
            with lock:
                results.append(False)
            sys.stderr.write("# postfix session %d: %s\n" % (i, e))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(sessions)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    tap.is_(results.count(True), sessions, "through Postfix: %d SMTP sessions at once, "
            "%d messages each, all accepted" % (sessions, per))
    want = set(tokens)

    def arrived():
        found = {}
        for m in st.sink_messages():
            for t in want:
                if t in m:
                    found[t] = m
        return found if len(found) == len(want) else None

    found = wait_for(arrived, timeout=60) or {}
    verified = sum(1 for m in found.values()
                   if dkim.DKIM(mxdkim.crlf(mxdkim.strip_sink_headers(m))).verify(
                       dnsfunc=dns.dnsfunc))
    tap.is_((len(found), verified), (len(want), len(want)),
            "every one of the %d messages arrived signed and verifies" % len(want))


with Stack("milter-dkim-engine") as st:
    tap.stack = st
    st.start_sink()
    dns = mxdkim.Dns(st.path("etc", "dns.txt"))
    mxdkim.one_rsa_key(st, dns)
    port = st.port("milter")
    conf = st.path("etc", "milter.conf")
    with open(conf, "w") as f:
        f.write(CONF.replace("{port}", str(port)).replace("{dir}", st.dir))
    proc = st.start_daemon("milter", ["prlimit", "--nofile=%d:%d" % (NOFILE, NOFILE), "--",
                                      mxdkim.MILTER, "-f", "-c", conf], port=port)
    st.start_postfix(main={"local_header_rewrite_clients": ""},
                     smtpd={"smtpd_milters": "inet:127.0.0.1:%d" % port,
                            "milter_default_action": "tempfail"})
    test_sign_and_aborts(port, dns)
    test_bad_packets(st, port, dns)
    test_never_reads(st, port, dns)
    test_many(st, port, dns)
    test_postfix(st, dns)
    tap.ok(proc.poll() is None, "milter-dkim is still running")

sys.exit(tap.done())
