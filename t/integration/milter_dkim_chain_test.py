#!/usr/bin/python3
"""milter-dkim among other milters in real Postfix's smtpd_milters.
Postfix hands each milter the message as the milters before it left it
(src/milter/milter.c: "Each milter sees the result of any changes made by
a preceding milter"), so the signer's place in the list decides what it
signs:

  1. a milter before the signer that rewrites a signed header (Subject,
     as a tagging or disclaimer milter does) and adds one (X-Tag): the
     signature covers the rewritten message and dkimpy verifies it at the
     receiver; the delivered Subject is the rewritten one, once.
  2. the same milter after the signer: the receiver sees the rewritten
     Subject under a signature of the original one, and dkimpy fails it
     (what doc/milter-dkim.md tells operators: list milter-dkim last).
  3. milter-dkim verifying after milter-dkim signing (two instances): the
     verifier is given the signer's DKIM-Signature and says dkim=pass.

The rewriting milter is a small fixture speaking the milter protocol
(version 6) itself; the signer, the verifier, Postfix and dkimpy are the
real ones.
"""

import os
import re
import smtplib
import struct
import sys
import uuid

import dkim

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from mxstack import Stack  # noqa: E402
from mxtest import tap  # noqa: E402
import mxdkim  # noqa: E402
from mxwebhook import RawServer  # noqa: E402

SIGN_CONF = """\
socket = inet:{port}@127.0.0.1
mode = sign
key_table = {dir}/etc/key.table
signing_table = refile:{dir}/etc/signing.table
dns_test_file = {dir}/etc/dns.txt
"""
VERIFY_CONF = """\
socket = inet:{port}@127.0.0.1
mode = verify
authserv_id = mx.mxkit.test
dns_test_file = {dir}/etc/dns.txt
"""
SMFIF_ADDHDRS, SMFIF_CHGHDRS = 0x01, 0x10


class Rewriter(RawServer):
    """A milter that, at end of message, replaces Subject: with
    "[ext] " + the old one and adds X-Tag: rewritten."""

    def __init__(self):
        self.seen = 0
        super().__init__()

    def session(self, conn):
        subject = b""
        send = lambda cmd, data=b"": conn.sendall(mxdkim.milter_packet(cmd, data))  # noqa: E731
        try:
            while True:
                cmd, data = mxdkim.read_milter_packet(conn)
                if cmd is None or cmd == b"Q":
                    return
                if cmd == b"O":
                    send(b"O", struct.pack(">III", 6, SMFIF_ADDHDRS | SMFIF_CHGHDRS, 0))
                elif cmd in (b"D", b"A"):
                    continue                    # macros, abort: no reply
                elif cmd == b"L":
                    name, _, value = data.partition(b"\0")
                    if name.lower() == b"subject":
                        subject = value.rstrip(b"\0")
                    send(b"c")
                elif cmd == b"E":
                    self.seen += 1
                    # Postfix gives values without the space after the colon, and
                    # writes one before those it is given
                    send(b"m", struct.pack(">I", 1) + b"Subject\0[ext] " + subject + b"\0")
                    send(b"h", b"X-Tag\0rewritten\0")
                    send(b"a")
                else:
                    send(b"c")
        except OSError:
            return
        finally:
            conn.close()

    def close(self):
        self.sock.close()


def send(port, token):
    raw = ("From: Billing <billing@planapulse.ai>\r\nTo: <cust@example.net>\r\n"
           "Subject: invoice %s\r\nDate: Sat, 05 Dec 2026 10:00:00 +0000\r\n"
           "Message-ID: <%s@planapulse.ai>\r\n\r\nPlease pay.\r\n" % (token, token)).encode()
    s = smtplib.SMTP("127.0.0.1", port, timeout=60)
    try:
        s.sendmail("billing@planapulse.ai", ["cust@example.net"], raw)
        return 250
    except smtplib.SMTPResponseException as e:
        return e.smtp_code
    finally:
        s.quit()


def received(st, token):
    msg = mxdkim.sunk(st, token, timeout=30)
    return mxdkim.crlf(msg) if msg else b""


def verifies(dns, msg):
    try:
        return dkim.DKIM(msg).verify(dnsfunc=dns.dnsfunc) is True
    except dkim.DKIMException:
        return False


def subjects(msg):
    head = msg.split(b"\r\n\r\n", 1)[0]
    return re.findall(rb"^Subject:([^\r]*)", head, re.M | re.I)


with Stack("milter-chain") as st:
    tap.stack = st
    st.start_sink()
    dns = mxdkim.Dns(st.path("etc", "dns.txt"))
    mxdkim.one_rsa_key(st, dns)
    _, sport, _ = mxdkim.start_milter(st, "signer", SIGN_CONF)
    _, vport, _ = mxdkim.start_milter(st, "verifier", VERIFY_CONF)
    rewriter = Rewriter()
    milter = "inet:127.0.0.1:%d"
    before = st.start_postfix(name="before", main={"local_header_rewrite_clients": ""},
                              smtpd={"smtpd_milters": "%s,%s" % (milter % rewriter.port,
                                                                 milter % sport),
                                     "milter_default_action": "tempfail"})
    after = st.start_postfix(name="after", main={"local_header_rewrite_clients": ""},
                             smtpd={"smtpd_milters": "%s,%s" % (milter % sport,
                                                                milter % rewriter.port),
                                    "milter_default_action": "tempfail"})
    chain = st.start_postfix(name="chain", main={"local_header_rewrite_clients": ""},
                             smtpd={"smtpd_milters": "%s,%s" % (milter % sport, milter % vport),
                                    "milter_default_action": "tempfail"})

    token = uuid.uuid4().hex
    code = send(before, token)
    msg = received(st, token) if code == 250 else b""
    tap.ok(msg and verifies(dns, msg),
           "1. a rewriting milter before the signer: the signature covers its changes, "
           "dkimpy verifies", diag="SMTP %s" % code)
    tap.is_(subjects(msg), [(" [ext] invoice %s" % token).encode()],
            "the rewritten Subject arrives, once")
    tap.ok(b"\r\nX-Tag: rewritten\r\n" in msg, "and the added header")

    token = uuid.uuid4().hex
    code = send(after, token)
    msg = received(st, token) if code == 250 else b""
    tap.ok(msg and subjects(msg) == [(" [ext] invoice %s" % token).encode()]
           and not verifies(dns, msg),
           "2. the same milter after the signer: the rewritten Subject under a signature of "
           "the old one, dkimpy fails it (list milter-dkim last)", diag="SMTP %s" % code)

    token = uuid.uuid4().hex
    code = send(chain, token)
    msg = received(st, token) if code == 250 else b""
    ar = mxdkim.our_results(msg.decode(errors="replace"))
    tap.ok(len(ar) == 1 and re.search(r"dkim=pass header\.d=planapulse\.ai ", ar[0])
           and verifies(dns, msg),
           "3. a verifying milter-dkim after the signing one is given its DKIM-Signature: "
           "dkim=pass", diag=repr(ar))
    tap.is_(rewriter.seen, 2, "the rewriting milter saw both of its messages")
    rewriter.close()

tap.done()
