#!/usr/bin/python3
"""milter-dkim's Authentication-Results for signed messages a hostile
sender shaped (real Postfix, a real DNS server (Knot), dkimpy signing with
vendor.test's published key, dmarc_reject = no so that the A-R is seen):

  1. a signed message whose From: libopendkim cannot read (an unclosed
     comment, "billing@" without a domain): never "dkim=none" (RFC 8601
     2.7.1: none means not signed), but dkim=permerror with the reason and
     header.d, for a good and for a tampered signature alike; DMARC stays
     permerror (From: address unreadable); an unsigned message with such
     a From: is still dkim=none;
  2. RFC 6008 header.b: a forged signature whose b= begins with the same
     12 characters as a good one's: the pass and the fail carry different
     header.b values, each a prefix of its own b= (at least 8 characters);
     a lone signature keeps 8.
  3. Counts past the A-R's bound (8 signatures of a kind named): 13
     invalid signatures, and 11 signatures of a message with an unreadable
     From:, are 8 named and "5 more ..." / "3 more ..." said, not dropped
     silently.
"""

import os
import re
import sys
import uuid

import dkim

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from mxstack import Stack  # noqa: E402
from mxtest import tap  # noqa: E402
from mxdns import Knot, txt  # noqa: E402
import mxdkim  # noqa: E402

RCPT = "bills@planapulse.test"
CONF = mxdkim.VERIFY_CONF.replace("{reject}", "no")
HDRS = mxdkim.SIGNED_HEADERS


def message(from_value, token):
    return (b"From: " + from_value + b"\r\nTo: <" + RCPT.encode() + b">\r\nSubject: invoice "
            + token.encode() + b"\r\nDate: Mon, 30 Nov 2026 10:00:00 +0000\r\nMessage-ID: <"
            + token.encode() + b"@vendor.test>\r\n\r\nPlease pay invoice " + token.encode()
            + b" to our usual account.\r\n")


def signature(raw, key):
    return dkim.sign(raw, b"sel", b"vendor.test", key, include_headers=HDRS)


def outcome(st, raw, token, client="127.0.0.9"):
    """'refused CODE text' or our A-R of the delivered message."""
    code, text, _ = mxdkim.send_as(st, client, "billing@vendor.test", RCPT, raw)
    if code != 250:
        return "refused %d %s" % (code, text)
    ar = mxdkim.our_results(mxdkim.sunk(st, token))
    return ar[0] if len(ar) == 1 else repr(ar)


def test_unreadable_from(st, key):
    """1. signed, with a From: libopendkim refuses"""
    for value in (b"billing@vendor.test (x", b"billing@"):
        for tampered in (False, True):
            token = uuid.uuid4().hex
            raw = message(value, token)
            raw = signature(raw, key) + raw
            if tampered:
                raw = raw.replace(b"Please pay", b"Please PAY")
            a = outcome(st, raw, token)
            name = "From: %r, %s signature" % (value.decode(), "tampered" if tampered
                                                else "good")
            tap.ok("dkim=none" not in a, "%s: not dkim=none" % name, diag=a)
            tap.ok(re.search(r"dkim=permerror \(From: header unreadable[^)]*\) "
                             r"header\.d=vendor\.test", a) is not None,
                   "%s: dkim=permerror (why) header.d=vendor.test" % name, diag=a)
            tap.ok("dkim=pass" not in a and "dmarc=permerror (From: address unreadable)" in a,
                   "%s: no pass, DMARC permerror" % name, diag=a)
    token = uuid.uuid4().hex
    a = outcome(st, message(b"billing@vendor.test (x", token), token)
    tap.ok(re.search(r"; dkim=none[;)]?", a) is not None and "permerror (From: header" not in a,
           "unsigned, From: unreadable: still dkim=none", diag=a)


def b_start(header):
    """Offset in header of the first character of the b= value."""
    return re.search(rb"[;\s]b=\s*", header).end()


def forge_b(header, at):
    """header with the at-th base64 character of b= changed (folding kept)."""
    out, i, n = bytearray(header), b_start(header), 0
    while True:
        if out[i:i + 1] in (b" ", b"\t", b"\r", b"\n"):
            i += 1
            continue
        if n == at:
            out[i] = ord("A") if out[i] != ord("A") else ord("B")
            return bytes(out)
        n += 1
        i += 1


def b_value(header):
    return re.sub(rb"\s", b"", header[b_start(header):].split(b";")[0]).decode()


def test_header_b(st, key):
    """2. header.b tells a pass from a fail whose b= shares 12 characters"""
    token = uuid.uuid4().hex
    raw = message(b"Billing <billing@vendor.test>", token)
    good = signature(raw, key)
    fake = forge_b(good, 12)
    a = outcome(st, fake + good + raw, token)
    bs = re.findall(r"dkim=(\w+) [^;]*?header\.b=([A-Za-z0-9+/=]+)", a)
    results = sorted(r for r, _ in bs)
    tap.is_(results, ["fail", "pass"], "a forged and a good signature: one fail, one pass",
            diag=a)
    values = dict((r, b) for r, b in bs)
    tap.ok(len(values) == 2 and values["pass"] != values["fail"],
           "the pass and the fail carry different header.b", diag=a)
    tap.ok(len(values) == 2 and b_value(good).startswith(values["pass"])
           and b_value(fake).startswith(values["fail"]) and len(values["pass"]) >= 13,
           "each header.b is a prefix of its own b=, long enough to differ", diag=a)
    token = uuid.uuid4().hex
    raw = message(b"Billing <billing@vendor.test>", token)
    good = signature(raw, key)
    a = outcome(st, good + raw, token)
    tap.ok(("header.b=%s;" % b_value(good)[:8]) in a + ";",
           "a lone signature: header.b is 8 characters", diag=a)


def test_unlisted(st, key):
    """3. more signatures than the A-R names"""
    token = uuid.uuid4().hex
    raw = message(b"Billing <billing@vendor.test>", token)
    # no b=, no bh=: refused before libopendkim sees them (not counted
    # against verify_signatures_max)
    bad = b"".join(b"DKIM-Signature: v=1; a=rsa-sha256; d=bad%d.test; s=s; h=from\r\n"
                   % i for i in range(13))
    ar = outcome(st, bad + signature(raw, key) + raw, token)
    tap.ok(ar.count("dkim=permerror") == 9 and "5 more invalid signatures, not listed" in ar
           and "dkim=pass" in ar, "13 invalid signatures and a good one: 8 named, \"5 more "
           "invalid signatures, not listed\", the good one passes", diag=ar)
    token = uuid.uuid4().hex
    raw = message(b"billing@vendor.test (x", token)
    sigs = b"".join(signature(raw, key) for _ in range(11))
    ar = outcome(st, sigs + raw, token)
    tap.ok(ar.count("dkim=permerror") == 9 and "3 more unverified signatures, not listed" in ar,
           "11 signatures of a message whose From: is unreadable: 8 named, \"3 more "
           "unverified signatures, not listed\"", diag=ar)


with Stack("milter-ar-attack") as st:
    tap.stack = st
    st.start_sink()
    keys = mxdkim.Dns(st.path("etc", "keys.txt"))
    key_path, _ = mxdkim.keygen(st, keys, "vendor.test", "sel", "rsa", 2048)
    key = open(key_path, "rb").read()
    knot = Knot(st, {"vendor.test": [txt("@", "v=spf1 ip4:127.0.0.2 -all"),
                                     txt("sel._domainkey",
                                         keys.records["sel._domainkey.vendor.test"]),
                                     txt("_dmarc", "v=DMARC1; p=none")]})
    knot.start()
    proc, port, conf = mxdkim.start_milter(st, "milter", CONF.format(port="{port}",
                                                                     dns=knot.servers))
    mxdkim.start_receiver(st, port)
    test_unreadable_from(st, key)
    test_header_b(st, key)
    test_unlisted(st, key)
    tap.ok(proc.poll() is None, "milter-dkim is still running")

sys.exit(tap.done())
