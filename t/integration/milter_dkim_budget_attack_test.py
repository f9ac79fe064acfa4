#!/usr/bin/python3
"""milter-dkim verify mode: a spoofer's silent DNS against the message's
DNS budget (auth_timeout). Real Postfix, a real DNS server (Knot) behind
a forwarder that never answers a query under slow.attacker.test (a
recursive resolver waiting on a silent name server), dmarc_reject = yes,
dns_timeout = 1s, auth_timeout = 3s; vendor.test publishes p=reject.

  1. a spoof of billing@vendor.test with 0, 3 and 8 DKIM-Signatures of
     d=slow.attacker.test on top: 550, never 451. Before, their key
     lookups spent the whole budget, the _dmarc.vendor.test lookup then
     failed at once and the spoof got 451 4.4.3 (retried for days); the
     same with an unsigned spoof whose MAIL FROM's SPF includes silent
     names. Each answer comes within the budget. An unreadable From:
     naming three silent domains before billing@vendor.test, under the
     8 signatures: 550 too (each name's DMARC lookups get a share).
  2. a mail dkimpy signed for vendor.test with the 8 slow signatures put
     on top of its own: 250, dkim=pass for vendor.test, dmarc=pass. Before,
     its signature was the 9th, past verify_signatures_max (8): 550.
"""

import os
import re
import socket
import struct
import sys
import threading
import time
import uuid

import dkim

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from mxstack import Stack  # noqa: E402
from mxtest import tap  # noqa: E402
from mxdns import Knot, txt  # noqa: E402
import mxdkim  # noqa: E402

RCPT = "bills@planapulse.test"
CONF = mxdkim.VERIFY_CONF.replace("{reject}", "yes")
REJECTED = mxdkim.REJECTED
SILENT = "slow.attacker.test"
SLOW_SPF = "v=spf1 " + " ".join("include:%s.%s" % (c, SILENT) for c in "abcd") + " -all"


def qname(pkt):
    i, labels = 12, []
    while i < len(pkt) and pkt[i]:
        n = pkt[i]
        labels.append(pkt[i + 1:i + 1 + n].decode("latin1"))
        i += 1 + n
    return ".".join(labels).lower()


def silent(pkt):
    name = qname(pkt)
    return name == SILENT or name.endswith("." + SILENT)


def forward_udp(sock, pkt, addr, upstream):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(2)
        try:
            s.sendto(pkt, upstream)
            sock.sendto(s.recv(65535), addr)
        except OSError:
            pass


def forward_tcp(conn, upstream):
    with conn:
        try:
            n = struct.unpack("!H", conn.recv(2))[0]
            pkt = b""
            while len(pkt) < n:
                pkt += conn.recv(n - len(pkt))
            if silent(pkt):
                return
            with socket.create_connection(upstream, 2) as s:
                s.sendall(struct.pack("!H", n) + pkt)
                conn.sendall(s.recv(65535))
        except (OSError, struct.error):
            pass


def forwarder(knot_port):
    """A UDP and TCP port that relays to Knot, except queries under SILENT."""
    upstream = ("127.0.0.1", knot_port)
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind(("127.0.0.1", 0))
    port = u.getsockname()[1]
    t = socket.socket()
    t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    t.bind(("127.0.0.1", port))
    t.listen(16)

    def udp():
        while True:
            pkt, addr = u.recvfrom(4096)
            if not silent(pkt):
                threading.Thread(target=forward_udp, args=(u, pkt, addr, upstream),
                                 daemon=True).start()

    def tcp():
        while True:
            conn, _ = t.accept()
            threading.Thread(target=forward_tcp, args=(conn, upstream), daemon=True).start()

    threading.Thread(target=udp, daemon=True).start()
    threading.Thread(target=tcp, daemon=True).start()
    return port


def message(token, from_value=b"Billing <billing@vendor.test>"):
    return (b"From: " + from_value + b"\r\nTo: <" + RCPT.encode()
            + b">\r\nSubject: invoice " + token.encode()
            + b"\r\nDate: Mon, 30 Nov 2026 10:00:00 +0000\r\nMessage-ID: <" + token.encode()
            + b"@vendor.test>\r\n\r\nPlease pay invoice " + token.encode() + b"\r\n")


def slow_signatures(n):
    return b"".join(b"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=" + SILENT.encode()
                    + b"; s=s%d; h=from:to:subject:date; bh=AAAA; b=AAAA\r\n" % i
                    for i in range(n))


def outcome(st, mail_from, raw):
    """('refused CODE text' or our A-R of the delivered message, seconds)."""
    token = re.search(rb"Message-ID: <([0-9a-f]+)@", raw).group(1).decode()
    start = time.monotonic()
    code, text, _ = mxdkim.send_as(st, "127.0.0.9", mail_from, RCPT, raw)
    took = time.monotonic() - start
    if code != 250:
        return "refused %d %s" % (code, text), took
    ar = mxdkim.our_results(mxdkim.sunk(st, token))
    return (ar[0] if len(ar) == 1 else repr(ar)), took


def test_spoofs(st):
    """1. the spoof gets 550 however many silent signatures it carries."""
    for n in (0, 3, 8):
        got, took = outcome(st, "x@attacker.test", slow_signatures(n) + message(uuid.uuid4().hex))
        tap.is_(got, REJECTED, "spoof with %d silent d=%s signatures: 550, not 451"
                % (n, SILENT))
        # auth_timeout (3 s) bounds the lookups; the rest is Postfix
        tap.ok(took < 12, "answered in %.1f s (auth_timeout = 3s)" % took)
    got, _ = outcome(st, "x@spfslow.attacker.test", message(uuid.uuid4().hex))
    tap.is_(got, REJECTED, "unsigned spoof whose MAIL FROM's SPF includes silent names: 550")
    names = b", ".join(b"<x@s%d.%s>" % (i, SILENT.encode()) for i in range(3))
    got, took = outcome(st, "x@attacker.test", slow_signatures(8) + message(
        uuid.uuid4().hex, names + b", <billing@vendor.test>"))
    tap.is_(got, "refused 550 5.7.1 Rejected by the DMARC policy of a domain in the unreadable "
            "From: header", "unreadable From: with 3 silent domains before vendor.test: 550")
    tap.ok(took < 12, "answered in %.1f s (auth_timeout = 3s)" % took)


def test_signed(st, key):
    """2. vendor.test's own signature below 8 silent ones still passes."""
    raw = message(uuid.uuid4().hex)
    signed = dkim.sign(raw, b"sel", b"vendor.test", key, include_headers=mxdkim.SIGNED_HEADERS)
    got, _ = outcome(st, "x@attacker.test", slow_signatures(8) + signed + raw)
    tap.ok(got.startswith("mx.mxkit.test"), "signed vendor.test mail with 8 silent "
           "signatures on top is delivered (%s)" % got[:80])
    tap.ok(re.search(r"dkim=pass[^;]* header\.d=vendor\.test", got), "its own signature: "
           "dkim=pass", got)
    tap.ok(re.search(r"dmarc=pass \(p=reject[^)]*dkim aligned", got), "dmarc=pass by the "
           "aligned DKIM pass", got)


with Stack("milter-budget-attack") as st:
    tap.stack = st
    st.start_sink()
    keys = mxdkim.Dns(st.path("etc", "keys.txt"))
    key_path, _ = mxdkim.keygen(st, keys, "vendor.test", "sel", "rsa", 2048)
    key = open(key_path, "rb").read()
    knot = Knot(st, {"vendor.test": [txt("@", "v=spf1 ip4:127.0.0.2 -all"),
                                     txt("sel._domainkey", keys.records["sel._domainkey.vendor.test"]),
                                     txt("_dmarc", "v=DMARC1; p=reject")],
                     "attacker.test": [txt("@", "v=spf1 ip4:127.0.0.9 -all"),
                                       txt("spfslow", SLOW_SPF)]})
    knot.start()
    dns_port = forwarder(knot.port)
    proc, port, conf = mxdkim.start_milter(st, "milter", CONF.format(
        port="{port}", dns="127.0.0.1:%d" % dns_port))
    mxdkim.start_receiver(st, port)
    test_spoofs(st)
    test_signed(st, key)
    tap.ok(proc.poll() is None, "milter-dkim is still running")

sys.exit(tap.done())
