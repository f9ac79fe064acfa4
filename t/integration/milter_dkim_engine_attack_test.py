#!/usr/bin/python3
"""milter-dkim's milter protocol endpoint (mengine, msession, mproto)
attacked from outside by a hostile or buggy MTA, the daemon under an
open-files limit of 64 (prlimit). Not repeated here: what
milter_dkim_engine_test, _noreply_test, _hostile_test and _faults_test
already try.

  - negotiation: version 1 is refused (session closed, logged); version 2
    with empty masks (a version-1 MTA's offer) is answered byte for byte
    (version 2, actions and steps within the version-1 sets) and a whole
    message, every step answered, is signed and verifies; version 7 gets
    6; an action mask without "add header" is refused and logged;
  - order: a second OPTNEG, a second EOH, a body chunk and end of message
    after an abort, end of message without MAIL, body chunks before the
    headers: no reply at all to the stray command and never a
    DKIM-Signature for a message not seen whole; the session (or the next
    one) signs its next message, also one whose body comes inside the
    end-of-message packet; QUIT_NC after HELO or mid-message, then a
    client outside internal_hosts on the reused connection: not signed;
  - macros of every stage with odd contents (no NUL, empty names, a name
    without a value, an unknown stage, 4000 macros, a 65,000-byte value):
    the next message is signed; a macro packet of 1 MB ends the session
    (logged): each stage keeps a copy;
  - headers: no NUL, an empty name, no value: the session is closed with
    the reason logged;
  - 100,000 headers and 100,001 one-byte body chunks in one message: each
    answered in time, signed (or refused) and the daemon's RSS bounded;
  - QUIT_NC and a whole second connection on the same socket, and 30
    messages on one connection: each signed exactly once, with its own
    From and Message-ID; after QUIT_NC a header section past 8 MB is
    refused 552 at end of header (no-reply flags kept);
  - max_sessions = 24: 24 sessions open, the 25th waits unanswered
    (logged) and is served when one ends; 200 idle connections: at most
    24 session threads, back to the baseline when they go; 29 clients
    that never negotiate are closed after 10 s, not 7210; real Postfix
    meanwhile tempfails the message (milter_default_action), then signs
    once the slots are free; 300 connections reset
    (SO_LINGER 0) mid-packet and 2000 sessions opened and closed in a row:
    descriptors and threads back to the baseline;
  - a peer sending a byte every 50 ms: signed, no busy loop (CPU time);
    one that sends a message and half-closes: every reply, then closed;
  - SIGHUP while 6 sessions sign: every message signed and verifies;
    SIGTERM with every session slot taken and clients in the backlog: exit
    0 within 10 s (drain_timeout = 3s, then the rest are cut), every
    connection closed.
"""

import os
import re
import signal
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
max_sessions = {max}
"""
NOFILE = 64
MAX_SESSIONS = 24
FINAL = (b"a", b"c", b"r", b"t", b"y", b"d")


pk = mxdkim.milter_packet
read_packet = mxdkim.read_milter_packet


def connect(port, timeout=30):
    return socket.create_connection(("127.0.0.1", port), timeout=timeout)


def optneg(s, version=6, aflags=0x1ff, pflags=0x1fffff):
    s.sendall(pk(b"O", struct.pack(">III", version, aflags, pflags)))
    cmd, data = read_packet(s)
    if cmd != b"O":
        return None
    return struct.unpack(">III", data[:12])


def silent(s, wait=1.0):
    """True if nothing at all arrives within wait seconds."""
    s.settimeout(wait)
    try:
        got = s.recv(1)
        s.settimeout(30)
        return False if got else "closed"
    except socket.timeout:
        s.settimeout(30)
        return True


def drain(s, wait=1.0):
    """Every packet that arrives until wait seconds of silence."""
    got = []
    s.settimeout(wait)
    try:
        while True:
            c, d = read_packet(s)
            if c is None:
                break
            got.append((c, d))
    except socket.timeout:
        pass
    s.settimeout(30)
    return got


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


def envelope():
    return (pk(b"D", b"C" + b"j\0mx.test\0")
            + pk(b"C", b"client\0" + b"4" + struct.pack(">H", 25) + b"127.0.0.1\0")
            + pk(b"H", b"client.example\0"))


def outside_envelope():
    """A client outside internal_hosts (no AUTH): its mail is verified, not signed."""
    return (pk(b"C", b"mx.outside.example\0" + b"4" + struct.pack(">H", 25) + b"192.0.2.7\0")
            + pk(b"H", b"mx.outside.example\0"))


def headers(token, sender=b"alerts"):
    return [(b"From", b" " + sender + b" <" + sender + b"@planapulse.ai>"),
            (b"To", b" ops@example.net"), (b"Subject", b" attack " + token),
            (b"Date", b" Mon, 30 Nov 2026 10:00:00 +0000"),
            (b"Message-ID", b" <" + token + b"@planapulse.ai>")]


BODY = b"Hello from the engine attack test.\r\n"


def message(token, sender=b"alerts", head=None, body=BODY, chunks=None):
    head = head if head is not None else headers(token, sender)
    first = pk(b"D", b"M{mail_addr}\0" + sender + b"@planapulse.ai\0")
    first += pk(b"M", b"<" + sender + b"@planapulse.ai>\0")     # RCPT: negotiated away
    first += b"".join(pk(b"L", n + b"\0" + v + b"\0") for n, v in head)
    first += pk(b"D", b"Ni\0" + token[:10] + b"\0") + pk(b"N")
    rest = b"".join(pk(b"B", c) for c in (chunks if chunks is not None else [body]))
    return first, rest + pk(b"D", b"Ei\0" + token[:10] + b"\0") + pk(b"E")


def until_final(s):
    got = []
    while True:
        try:
            cmd, data = read_packet(s)
        except socket.timeout:
            return got + [(b"timeout", b"")]
        if cmd is None:
            return got
        got.append((cmd, data))
        if cmd in FINAL:
            return got


def verify(ins, head, body, dns):
    name, value = ins[4:].split(b"\0")[:2]
    raw = name + b":" + value.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n") + b"\r\n"
    raw += b"".join(n + b":" + v + b"\r\n" for n, v in head) + b"\r\n" + body
    return bool(dkim.DKIM(raw).verify(dnsfunc=dns.dnsfunc))


def sign_one(s, dns, token=None, sender=b"alerts", replies_per_step=0):
    """One message on s after the envelope; (signed and verified, diag).
    replies_per_step: the number of step replies to read before EOH's."""
    token = token or uuid.uuid4().hex.encode()
    first, rest = message(token, sender)
    s.sendall(first)
    pre = [read_packet(s)[0] for _ in range(replies_per_step)]
    eoh = until_final(s)
    if [c for c, _ in eoh] != [b"c"] or any(c != b"c" for c in pre):
        return False, "EOH: %r %r" % (pre, eoh)
    s.sendall(rest)
    eom = until_final(s)
    body_replies = 0
    while replies_per_step and eom and eom[-1][0] == b"c" and body_replies < 1:
        body_replies += 1                      # the body chunk's own reply
        eom = until_final(s)
    ins = [d for c, d in eom if c == b"i"]
    if not eom or eom[-1][0] != b"a" or len(ins) != 1:
        return False, "EOM: %r" % eom
    if b"d=planapulse.ai" not in ins[0]:
        return False, "signature: %r" % ins[0]
    return verify(ins[0], headers(token, sender), BODY, dns), ins[0][:200]


def proc_status(pid):
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = v.strip()
    return int(out["Threads"]), int(out["VmRSS"].split()[0]), len(os.listdir("/proc/%d/fd" % pid))


def log_has(st, text, timeout=10):
    return wait_for(lambda: text in st.read_log("milter"), timeout=timeout)


# --- negotiation -----------------------------------------------------------

def test_negotiation(st, port, dns):
    s = connect(port)
    s.sendall(pk(b"O", struct.pack(">III", 1, 0xf, 0x7f)))
    tap.ok(closed(s), "OPTNEG version 1: the session is closed")
    tap.ok(log_has(st, "malformed milter command"), "and the reason is logged")
    s.close()

    s = connect(port)
    v = optneg(s, 2, 0, 0)
    tap.ok(v and v[0] == 2 and v[1] & 0x1 and not v[1] & ~0xf and not v[2] & ~0x3f,
           "OPTNEG version 2, empty masks: version 2, actions within SMFIF v1, steps within "
           "the v1 set", diag=repr(v))
    good, diag = False, "not negotiated"
    if v:
        token = uuid.uuid4().hex.encode()
        first, rest = message(token)
        s.sendall(envelope() + first)
        got = drain(s)
        steps = [(0x1, 1), (0x2, 1), (0x4, 1), (0x20, len(headers(token))), (0x40, 1)]
        want = sum(n for bit, n in steps if not v[2] & bit)
        s.sendall(rest)
        eom = drain(s)
        ins = [d for c, d in eom if c == b"i"]
        cmds = [c for c, _ in eom]
        good = ([c for c, _ in got] == [b"c"] * want
                and cmds == [b"c"] * (0 if v[2] & 0x10 else 1) + [b"i", b"a"]
                and verify(ins[0], headers(token), BODY, dns))
        diag = "flags %r: %r %r" % (v, got, eom)
    tap.ok(good, "version 2: every step answered, the message signed and verifies", diag=diag)
    s.close()

    s = connect(port)
    v = optneg(s, 7, 0x1ff, 0x1fffff)
    tap.ok(v and v[0] == 6, "OPTNEG version 7: answered with version 6", diag=repr(v))
    s.close()

    s = connect(port)
    v = optneg(s, 6, 0x2, 0x1fffff)                    # no SMFIF_ADDHDRS offered
    s.sendall(envelope())
    first, rest = message(uuid.uuid4().hex.encode())
    s.sendall(first)
    until_final(s)
    s.sendall(rest)
    eom = until_final(s)
    tap.ok(v and not v[1] & 0x1 and [c for c, _ in eom] == [b"t"],
           "an MTA that offers no \"add header\": mail to sign is tempfailed, never passed "
           "unsigned", diag="%r %r" % (v, eom))
    s.close()

    s = connect(port)
    s.sendall(pk(b"O", struct.pack(">II", 6, 0x1ff)))            # 8 bytes
    tap.ok(closed(s), "OPTNEG of 8 bytes: the session is closed")
    s.close()


# --- order -----------------------------------------------------------------

def fresh(port):
    s = connect(port)
    optneg(s)
    s.sendall(envelope())
    return s


def test_order(st, port, dns):
    s = connect(port)
    optneg(s)
    s.sendall(pk(b"O", struct.pack(">III", 6, 0x1ff, 0x1fffff)))
    r = silent(s)
    tap.ok(r is True or r == "closed", "a second OPTNEG: no reply (ignored or closed)",
           diag=repr(r))
    s.close()

    s = fresh(port)
    token = uuid.uuid4().hex.encode()
    first, rest = message(token)
    s.sendall(first)
    until_final(s)
    s.sendall(pk(b"N"))
    r = silent(s)
    s.sendall(rest)
    r2 = silent(s)
    tap.ok(r is True and r2 is True, "a second EOH: no reply to it, and no reply (no "
           "signature) for the rest of that message", diag="%r %r" % (r, r2))
    good, diag = sign_one(s, dns)
    tap.ok(good, "then the next message in the session is signed and verifies", diag=diag)
    s.close()

    s = fresh(port)
    first, _ = message(uuid.uuid4().hex.encode())
    s.sendall(first)
    until_final(s)
    s.sendall(pk(b"A") + pk(b"B", BODY) + pk(b"E"))
    r = silent(s)
    tap.ok(r is True, "abort after end of header, then a body chunk and end of message: no "
           "reply, no signature", diag=repr(r))
    token = uuid.uuid4().hex.encode()
    first, rest = message(token, chunks=[])
    s.sendall(first)
    until_final(s)
    s.sendall(rest[:-5] + pk(b"E", BODY))              # the last chunk inside EOB
    eom = until_final(s)
    ins = [d for c, d in eom if c == b"i"]
    tap.ok(len(ins) == 1 and verify(ins[0], headers(token), BODY, dns),
           "then a message whose body comes inside the end-of-message packet: signed over it, "
           "verifies", diag=repr(eom)[:300])
    s.close()

    s = fresh(port)
    s.sendall(pk(b"B", BODY) + pk(b"E"))
    r = silent(s)
    tap.ok(r is True, "a body chunk and end of message without MAIL: no reply, no signature",
           diag=repr(r))
    good, diag = sign_one(s, dns)
    tap.ok(good, "then a whole message is signed and verifies", diag=diag)
    s.close()

    s = fresh(port)
    token = uuid.uuid4().hex.encode()
    s.sendall(pk(b"M", b"<alerts@planapulse.ai>\0")
              + pk(b"B", b"body first\r\n"))
    r = silent(s)
    s.sendall(b"".join(pk(b"L", n + b"\0" + v + b"\0") for n, v in headers(token))
              + pk(b"N") + pk(b"E"))
    got = drain(s, wait=2)
    tap.ok(not any(c == b"i" for c, _ in got),
           "body chunks before the headers: never a DKIM-Signature for that message",
           diag="%r %r" % (r, got))
    s.close()

    for name, before in [("right after HELO", b""),
                         ("mid-message", message(b"cutcutcutcut")[0])]:
        s = connect(port)
        optneg(s)
        s.sendall(envelope() + before)
        if before:
            until_final(s)
        s.sendall(pk(b"K") + outside_envelope())
        first, rest = message(uuid.uuid4().hex.encode())
        s.sendall(first)
        eoh = until_final(s)
        s.sendall(rest)
        eom = until_final(s)
        sigs = [d for c, d in eom if c == b"i" and b"DKIM-Signature" in d]
        tap.ok(eoh and eom and eom[-1][0] == b"a" and not sigs,
               "QUIT_NC %s, then a connection from an outside client on the same socket: "
               "its mail is not signed (the new client is not the internal one before)" % name,
               diag="%r %r" % (eoh, eom))
        s.sendall(pk(b"Q"))
        s.close()


# --- macros and headers ------------------------------------------------------

def test_macros(st, port, dns):
    odd = [b"C", b"Cj", b"C\0\0\0\0", b"Hname-without-value\0", b"Z{x}\0y\0",
           b"M" + b"".join(b"{m%d}\0v%d\0" % (i, i) for i in range(4000)),
           b"R{big}\0" + b"x" * 65000 + b"\0", b"T\0", b"E{i}\0", b"N" + b"\0" * 100]
    s = connect(port)
    optneg(s)
    s.sendall(b"".join(pk(b"D", d) for d in odd) + envelope())
    good, diag = sign_one(s, dns)
    tap.ok(good, "macro packets of every stage with odd contents: the message is signed",
           diag=diag)
    s.close()

    s = connect(port)
    optneg(s)
    s.sendall(envelope() + pk(b"D", b"M{auth_authen}\0" + b"x" * (1 << 20) + b"\0"))
    tap.ok(closed(s), "a macro packet of 1 MB: the session is closed (a dropped macro could "
           "be {auth_authen})")
    tap.ok(log_has(st, "milter macro packet longer than 64 KB"), "and the reason is logged")
    s.close()

    for name, data in [("a header without NUL", b"From: x"),
                       ("a header with an empty name", b"\0 x@y\0"),
                       ("a header without a value", b"From\0")]:
        s = fresh(port)
        s.sendall(pk(b"M", b"<alerts@planapulse.ai>\0")
                  + pk(b"L", data))
        r = closed(s, 5)
        tap.ok(r, "%s: the session is closed" % name)
        s.close()
    tap.ok(log_has(st, "malformed milter command"), "and logged as malformed")


def test_big_message(st, pid, port, dns):
    threads0, rss0, fds0 = proc_status(pid)
    s = fresh(port)
    token = uuid.uuid4().hex.encode()
    head = headers(token) + [(b"X-H%d" % i, b" v") for i in range(100000)]
    first, rest = message(token, head=head)
    t0 = time.time()
    s.sendall(first)
    eoh = until_final(s)
    s.sendall(rest)
    eom = until_final(s)
    dt = time.time() - t0
    ins = [d for c, d in eom if c == b"i"]
    tap.ok(eoh and eom and eom[-1][0] in (b"a", b"r", b"y", b"t") and dt < 30,
           "100,000 headers: answered in %.1f s (EOH %r, EOM %r)"
           % (dt, eoh[-1][0] if eoh else None, eom[-1][0] if eom else None))
    if ins:
        tap.ok(verify(ins[0], head, BODY, dns), "and the signature verifies")
    else:
        tap.ok(eom and eom[-1][0] != b"a", "and not accepted unsigned", diag=repr(eom))
    s.close()

    s = fresh(port)
    token = uuid.uuid4().hex.encode()
    body = (b"x" * 50 + b"\r\n") * 2000                # 104,000 bytes
    chunks = [body[i:i + 1] for i in range(100000)] + [body[100000:]]
    first, rest = message(token, chunks=chunks)
    t0 = time.time()
    s.sendall(first)
    until_final(s)
    s.sendall(rest)
    eom = until_final(s)
    dt = time.time() - t0
    ins = [d for c, d in eom if c == b"i"]
    tap.ok(len(ins) == 1 and verify(ins[0], headers(token), body, dns) and dt < 30,
           "100,001 body chunks of one byte: signed, verifies, in %.1f s" % dt, diag=repr(eom))
    s.close()
    time.sleep(0.5)
    threads1, rss1, fds1 = proc_status(pid)
    tap.ok(rss1 - rss0 < 64 * 1024, "RSS after both: %d KB -> %d KB (under 64 MB more)"
           % (rss0, rss1))


# --- sessions ----------------------------------------------------------------

def test_sessions(port, dns):
    s = fresh(port)
    signed = []
    for i in range(30):
        sender = b"user%02d" % i
        token = uuid.uuid4().hex.encode()
        first, rest = message(token, sender)
        s.sendall(first)
        until_final(s)
        s.sendall(rest)
        eom = until_final(s)
        ins = [d for c, d in eom if c == b"i"]
        signed.append(len(ins) == 1 and eom[-1][0] == b"a"
                      and verify(ins[0], headers(token, sender), BODY, dns))
    tap.is_(signed.count(True), 30, "30 messages on one connection, 30 senders: each signed "
            "exactly once and verifies with its own From")
    s.sendall(pk(b"K") + envelope())
    good, diag = sign_one(s, dns)
    tap.ok(good, "QUIT_NC after a message, a whole second connection: signed", diag=diag)
    good, diag = sign_one(s, dns)
    tap.ok(good, "and a second message on it", diag=diag)
    s.sendall(pk(b"K") + envelope())
    token = uuid.uuid4().hex.encode()
    big = headers(token) + [(b"X-Big%d" % i, b" " + b"y" * (1 << 20)) for i in range(9)]
    first, rest = message(token, head=big)
    s.sendall(first)
    eoh = until_final(s)
    tap.ok(eoh and eoh[-1][0] == b"y" and eoh[-1][1].startswith(b"552 5.3.4"),
           "after QUIT_NC, a header section past 8 MB: refused 552 at end of header (headers "
           "still get no reply)", diag=repr(eoh)[:300])
    s.sendall(pk(b"Q"))
    tap.ok(closed(s), "QUIT: the milter closes")
    s.close()


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_slow_and_half_closed(pid, port, dns):
    s = fresh(port)
    token = uuid.uuid4().hex.encode()
    first, rest = message(token)
    s.sendall(first)
    until_final(s)
    cpu0, t0 = cpu_seconds(pid), time.time()
    for i in range(len(rest)):                  # one byte every 50 ms, ~4 s
        s.sendall(rest[i:i + 1])
        if i < 80:
            time.sleep(0.05)
    eom = until_final(s)
    cpu = cpu_seconds(pid) - cpu0
    ins = [d for c, d in eom if c == b"i"]
    tap.ok(len(ins) == 1 and verify(ins[0], headers(token), BODY, dns),
           "a peer sending one byte every 50 ms: signed, verifies", diag=repr(eom)[:200])
    tap.ok(cpu < 0.5, "and the daemon used %.2f s of CPU over %.1f s (no busy loop)"
           % (cpu, time.time() - t0))
    s.close()

    s = fresh(port)
    token = uuid.uuid4().hex.encode()
    first, rest = message(token)
    s.sendall(first + rest)
    s.shutdown(socket.SHUT_WR)
    got = drain(s, 5)
    ins = [d for c, d in got if c == b"i"]
    tap.ok([c for c, _ in got] == [b"c", b"i", b"a"]
           and verify(ins[0], headers(token), BODY, dns),
           "a peer that sends a whole message and half-closes: every reply written, signed",
           diag=repr(got)[:200])
    tap.ok(closed(s, 5), "then the milter closes")
    s.close()


def settle(pid, want, timeout=15):
    return wait_for(lambda: proc_status(pid)[0] <= want[0] and proc_status(pid)[2] <= want[2],
                    timeout=timeout)


def test_max_sessions(st, pid, port, dns):
    base = proc_status(pid)
    held = []
    for i in range(MAX_SESSIONS):
        s = connect(port)
        held.append((s, optneg(s)))
    tap.ok(all(v for _, v in held), "max_sessions = %d: %d sessions open and answered"
           % (MAX_SESSIONS, MAX_SESSIONS))
    extra = connect(port)
    extra.sendall(pk(b"O", struct.pack(">III", 6, 0x1ff, 0x1fffff)))
    r = silent(extra, 1.5)
    tap.ok(r is True, "one more: it waits (accepted by the kernel, not answered)", diag=repr(r))
    tap.ok(log_has(st, "milter sessions open (max_sessions)"), "and that is logged")
    held[0][0].close()
    extra.settimeout(10)
    cmd, _ = read_packet(extra)
    extra.settimeout(30)
    tap.is_(cmd, b"O", "a session ends: the waiting one is answered")
    extra.sendall(envelope())
    good, diag = sign_one(extra, dns)
    tap.ok(good, "and signs", diag=diag)
    extra.close()
    for s, _ in held[1:]:
        s.close()
    tap.ok(settle(pid, (base[0] + 8, 0, base[2])), "all closed: threads and descriptors back "
           "to the baseline (%r -> %r)" % (base, proc_status(pid)))

    t0 = time.time()
    mute = [connect(port) for _ in range(MAX_SESSIONS + 5)]    # never negotiate
    gone = [closed(mute[0], 20)]
    first = time.time() - t0
    gone += [closed(s, 20) for s in mute[1:]]
    dt = time.time() - t0
    tap.ok(all(gone) and 9 < first < 14 and dt < 25, "%d clients that never negotiate: "
           "closed by the milter 10 s after accept (first %.1f s, the 5 from the backlog "
           "after %.1f s), not held for mengine's 7210 s" % (len(mute), first, dt))
    tap.ok(log_has(st, "no negotiation within 10 s"), "and logged")
    for s in mute:
        s.close()
    s = fresh(port)
    good, diag = sign_one(s, dns)
    tap.ok(good, "then a session is served and signs", diag=diag)
    s.close()


def smtp_code(st, token):
    raw = ("From: Alerts <alerts@planapulse.ai>\r\nTo: ops@example.net\r\n"
           "Subject: full %s\r\n\r\nmax_sessions through Postfix\r\n" % token).encode()
    try:
        s = smtplib.SMTP("127.0.0.1", st.port("postfix-smtp"), timeout=60)
        s.sendmail("alerts@planapulse.ai", ["ops@example.net"], raw)
        s.quit()
        return 250
    except smtplib.SMTPRecipientsRefused as e:
        return list(e.recipients.values())[0][0]
    except smtplib.SMTPResponseException as e:
        return e.smtp_code
    except (OSError, smtplib.SMTPException) as e:
        return repr(e)


def test_postfix_full(st, pid, port, dns):
    """Real Postfix while every session slot is taken: what does it do?"""
    held = []
    for i in range(MAX_SESSIONS):
        s = connect(port)
        held.append(s)
        optneg(s)
    code = smtp_code(st, uuid.uuid4().hex)
    tap.ok(isinstance(code, int) and 400 <= code < 500,
           "through Postfix with all %d session slots taken: the message is tempfailed "
           "(milter_default_action), code %r" % (MAX_SESSIONS, code))
    for s in held:
        s.close()
    token = uuid.uuid4().hex
    code = smtp_code(st, token)

    def arrived():
        return [m for m in st.sink_messages() if token in m]
    found = wait_for(arrived, timeout=30) or []
    tap.ok(code == 250 and len(found) == 1 and dkim.DKIM(mxdkim.crlf(
        mxdkim.strip_sink_headers(found[0]))).verify(dnsfunc=dns.dnsfunc),
        "the slots free again: the next message is accepted, arrives signed and verifies",
        diag="code %r, %d found" % (code, len(found)))


def test_threads(st, pid, port, dns):
    base = proc_status(pid)
    socks = []
    for i in range(200):
        try:
            socks.append(connect(port, timeout=5))
        except OSError:
            break
    time.sleep(2)
    t, rss, fds = proc_status(pid)
    tap.ok(t <= MAX_SESSIONS + 3, "200 idle connections: %d threads (max_sessions %d, and "
           "main's 2), %d descriptors" % (t, MAX_SESSIONS, fds))
    for s in socks:
        s.close()
    tap.ok(settle(pid, (base[0] + 8, 0, base[2])),
           "they went: threads and descriptors back to the baseline (%r -> %r)"
           % (base, proc_status(pid)))

    for i in range(300):
        s = socket.socket()
        s.connect(("127.0.0.1", port))
        s.sendall(pk(b"O", struct.pack(">III", 6, 0x1ff, 0x1fffff))[:7])
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
    tap.ok(settle(pid, (base[0] + 8, 0, base[2])),
           "300 connections reset mid-packet: threads and descriptors back to the baseline "
           "(%r -> %r)" % (base, proc_status(pid)))
    t0, answered = time.time(), 0
    for i in range(2000):
        s = connect(port)
        answered += bool(optneg(s))
        s.close()
    tap.is_(answered, 2000, "2000 sessions negotiated and closed in a row (%.1f s): each "
            "answered" % (time.time() - t0))
    tap.ok(settle(pid, (base[0] + 8, 0, base[2])),
           "threads and descriptors back to the baseline (%r -> %r)" % (base, proc_status(pid)))
    s = fresh(port)
    good, diag = sign_one(s, dns)
    tap.ok(good, "and the next session signs", diag=diag)
    s.close()


def test_signals(st, proc, port, dns, conf):
    with open(conf) as f:
        text = f.read()
    with open(conf, "w") as f:
        # drain_timeout applies on reload: the stop below holds the
        # sessions that are not between messages that long, then cuts them
        f.write(text.replace("max_sessions = %d" % MAX_SESSIONS, "max_sessions = 5")
                + "drain_timeout = 3s\n")
    results = []
    lock = threading.Lock()
    stop = threading.Event()

    def worker():
        try:
            s = fresh(port)
            while not stop.is_set():
                good, diag = sign_one(s, dns)
                with lock:
                    results.append(good)
            s.close()
        except OSError as e:
            with lock:
                results.append(False)
            sys.stderr.write("# %s\n" % e)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for _ in range(3):
        time.sleep(0.7)
        proc.send_signal(signal.SIGHUP)
    time.sleep(0.7)
    stop.set()
    for t in threads:
        t.join(timeout=60)
    tap.ok(len(results) >= 6 and all(results), "3 SIGHUPs while 6 sessions sign: all %d "
           "messages signed and verify" % len(results))
    tap.ok(len(re.findall("configuration reloaded", st.read_log("milter"))) >= 3,
           "and each reload logged")
    tap.ok(re.search(r"warning: .*max_sessions", st.read_log("milter")),
           "a changed max_sessions: the reload says it needs a restart",
           diag=st.read_log("milter")[-400:])

    socks = [fresh(port) for _ in range(MAX_SESSIONS)]
    for _ in range(3):                          # waiting in the backlog
        x = connect(port)
        x.sendall(pk(b"O", struct.pack(">III", 6, 0x1ff, 0x1fffff)))
        socks.append(x)
    s = socks[0]
    first, _ = message(uuid.uuid4().hex.encode())
    s.sendall(first)
    until_final(s)
    socks[1].sendall(b"\0\0")                    # a partial packet
    t0 = time.time()
    proc.send_signal(signal.SIGTERM)
    try:
        rc = proc.wait(timeout=15)
    except Exception:
        rc = None
    dt = time.time() - t0
    tap.ok(rc == 0 and dt < 10.5, "SIGTERM with every session slot taken (one mid-message, "
           "one mid-packet) and 3 clients in the backlog: exit %r in %.1f s (drain_timeout = "
           "3s, then cut)" % (rc, dt))
    tap.ok(all(closed(x, 2) for x in socks), "and their connections are closed")
    for x in socks:
        x.close()


with Stack("milter-dkim-engine-attack") as st:
    tap.stack = st
    st.start_sink()
    dns = mxdkim.Dns(st.path("etc", "dns.txt"))
    mxdkim.one_rsa_key(st, dns)
    port = st.port("milter")
    conf = st.path("etc", "milter.conf")
    with open(conf, "w") as f:
        f.write(CONF.replace("{port}", str(port)).replace("{dir}", st.dir)
                .replace("{max}", str(MAX_SESSIONS)))
    proc = st.start_daemon("milter", ["prlimit", "--nofile=%d:%d" % (NOFILE, NOFILE), "--",
                                      mxdkim.MILTER, "-f", "-c", conf], port=port)
    pid = proc.pid
    st.start_postfix(main={"local_header_rewrite_clients": "",
                           "milter_connect_timeout": "3s", "milter_command_timeout": "3s"},
                     smtpd={"smtpd_milters": "inet:127.0.0.1:%d" % port,
                            "milter_default_action": "tempfail"})
    wait_for(lambda: os.path.exists("/proc/%d/exe" % pid)
             and os.readlink("/proc/%d/exe" % pid).endswith("milter-dkim"), timeout=5)
    test_negotiation(st, port, dns)
    test_order(st, port, dns)
    test_macros(st, port, dns)
    test_big_message(st, pid, port, dns)
    test_sessions(port, dns)
    test_slow_and_half_closed(pid, port, dns)
    test_max_sessions(st, pid, port, dns)
    test_postfix_full(st, pid, port, dns)
    test_threads(st, pid, port, dns)
    tap.ok(proc.poll() is None, "milter-dkim is still running")
    test_signals(st, proc, port, dns, conf)

sys.exit(tap.done())
