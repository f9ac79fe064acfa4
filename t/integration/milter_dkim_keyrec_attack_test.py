#!/usr/bin/python3
"""milter-dkim verify mode against DKIM key records libopendkim read
laxly (helper-95's F1, F2, F6): real Postfix, a real DNS server (Knot)
publishing each record form, messages signed with dkimpy; vendor.test
publishes p=reject and SPF for 127.0.0.2 (so the A-R of a message from
there is seen whatever its DKIM result), dmarc_reject = yes.

  1. RFC 6376 3.2: a key record with a tag twice (p= twice with the
     same key, p= of another key then the right one, k= twice, v=
     twice, h= twice, t=s then t=y) or a malformed tag name (1x=y) is
     invalid as a whole; RFC 6376 3.6.1: v= not first too. Each is
     "dkim=permerror (key record: why)", never a pass (libopendkim read
     the last tag and passed); a spoof from elsewhere is refused (550).
  2. RFC 8301 3.2: RSA keys of 1017 and 1023 bits are "dkim=policy
     (RSA key of N bits; RFC 8301 requires 1024)" as the 512-bit one
     (libopendkim counted whole bytes and passed them); 1024 bits pass.
  3. a k=rsa p= that is a bare RSAPublicKey (PKCS#1): dkim=pass, as
     dkimpy says (libopendkim: permerror, unable to apply public key).
  4. unchanged: a valid record passes, a revoked key (empty p=), two
     records at one name, no record; a signature beside an invalid
     one's; nothing remembered from one message for the next.
"""

import base64
import os
import re
import subprocess
import sys
import uuid

import dkim
from cryptography.hazmat.primitives import serialization

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from mxstack import Stack  # noqa: E402
from mxtest import tap  # noqa: E402
from mxdns import Knot, txt  # noqa: E402
import mxdkim  # noqa: E402

RCPT = "bills@planapulse.test"
CONF = mxdkim.VERIFY_CONF.replace("{reject}", "yes")
HDRS = mxdkim.SIGNED_HEADERS
REJECTED = mxdkim.REJECTED
SPF_PASS = mxdkim.SPF_PASS
DUP = "key record: a duplicate tag (RFC 6376 3.2)"


def rsa_key(bits):
    """An RSA key of exactly bits bits (openssl genrsa: any size)."""
    pem = subprocess.run(["openssl", "genrsa", str(bits)], check=True,
                         capture_output=True).stdout
    key = serialization.load_pem_private_key(pem, None)
    assert key.key_size == bits
    return key, pem


def pub(key, fmt=serialization.PublicFormat.SubjectPublicKeyInfo):
    return base64.b64encode(key.public_key().public_bytes(serialization.Encoding.DER,
                                                          fmt)).decode()


KEY, KEY_PEM = rsa_key(2048)
OTHER, _ = rsa_key(2048)
P, PO = pub(KEY), pub(OTHER)
P_PKCS1 = pub(KEY, serialization.PublicFormat.PKCS1)
SMALL = dict((bits, rsa_key(bits)) for bits in (512, 1017, 1023, 1024))

# selector: (record(s), the key that signs, the dkim= resinfo expected, what it is)
INVALID = [
    ("dupp", "v=DKIM1; k=rsa; p=%s; p=%s" % (P, P), DUP, "p= twice, the same key"),
    ("duppo", "v=DKIM1; k=rsa; p=%s; p=%s" % (PO, P), DUP, "p= of another key, then the key"),
    ("dupk", "v=DKIM1; k=ed25519; k=rsa; p=" + P, DUP, "k=ed25519; k=rsa"),
    ("dupv", "v=DKIM1; v=DKIM1; p=" + P, DUP, "v=DKIM1 twice"),
    ("duph", "v=DKIM1; h=sha1; h=sha256; p=" + P, DUP, "h=sha1; h=sha256"),
    ("dupt", "v=DKIM1; t=s; t=y; p=" + P, DUP, "t=s; t=y (t=s lifted)"),
    ("badname", "v=DKIM1; 1x=y; p=" + P, "key record: a malformed tag name",
     "a tag name 1x"),
    ("vnotfirst", "k=rsa; v=DKIM1; p=" + P,
     "key record: v= must come first and be DKIM1 (RFC 6376 3.6.1)", "v= not first"),
]


def zones():
    recs = [txt("@", "v=spf1 ip4:127.0.0.2 -all"), txt("_dmarc", "v=DMARC1; p=reject"),
            txt("ok._domainkey", "v=DKIM1; k=rsa; p=" + P),
            txt("upper._domainkey", "v=DKIM1; k=RSA; p=" + P),
            txt("pkcs1._domainkey", "v=DKIM1; k=rsa; p=" + P_PKCS1),
            txt("revoked._domainkey", "v=DKIM1; k=rsa; p="),
            txt("two._domainkey", "v=DKIM1; k=rsa; p=" + P),
            txt("two._domainkey", "v=DKIM1; k=rsa; p=" + PO)]
    recs += [txt(sel + "._domainkey", rec) for sel, rec, _, _ in INVALID]
    recs += [txt("r%d._domainkey" % bits, "v=DKIM1; k=rsa; p=" + pub(key))
             for bits, (key, _) in SMALL.items()]
    return {"vendor.test": recs}


def message(token):
    return (b"From: Billing <billing@vendor.test>\r\nTo: <" + RCPT.encode() +
            b">\r\nSubject: invoice " + token.encode() +
            b"\r\nDate: Mon, 30 Nov 2026 10:00:00 +0000\r\nMessage-ID: <" + token.encode() +
            b"@vendor.test>\r\n\r\nPlease pay invoice " + token.encode() + b"\r\n")


def signed(raw, selector, pem=KEY_PEM):
    d = dkim.DKIM(raw, minkey=512)              # dkimpy signs with small keys only so
    return d.sign(selector.encode(), b"vendor.test", pem, include_headers=HDRS) + raw


def outcome(st, client, mail_from, raw):
    """'refused CODE text' or our A-R of the delivered message."""
    token = re.search(rb"Message-ID: <([0-9a-f]+)@", raw).group(1).decode()
    code, text, _ = mxdkim.send_as(st, client, mail_from, RCPT, raw)
    if code != 250:
        return "refused %d %s" % (code, text)
    ar = mxdkim.our_results(mxdkim.sunk(st, token))
    return ar[0] if len(ar) == 1 else repr(ar)


def dkim_resinfo(a, selector):
    """The dkim= resinfo of the signature with s=selector in A-R a."""
    m = re.search(r"dkim=(\S+)(?: \((.*?)\))? header\.d=vendor\.test header\.s=%s " % selector, a)
    return (m.group(1), m.group(2)) if m else None


def from_vendor(st, selector, pem=KEY_PEM):
    return outcome(st, "127.0.0.2", "billing@vendor.test",
                   signed(message(uuid.uuid4().hex), selector, pem))


def test_invalid(st):
    """1. a tag twice, a malformed tag name, v= not first: permerror."""
    for sel, record, why, name in INVALID:
        a = from_vendor(st, sel)
        tap.ok(dkim_resinfo(a, sel) == ("permerror", why) and SPF_PASS in a,
               "%s: dkim=permerror (%s), not pass" % (name, why), diag=a)
        a = outcome(st, "127.0.0.9", "x@attacker.test",
                    signed(message(uuid.uuid4().hex), sel))
        tap.ok(a.startswith(REJECTED), "%s: no DKIM pass for DMARC, p=reject's 550" % name,
               diag=a)


def test_sizes(st):
    """2. RSA keys under 1024 bits, counted exactly: policy."""
    for bits, (key, pem) in sorted(SMALL.items()):
        a = from_vendor(st, "r%d" % bits, pem)
        if bits < 1024:
            want = ("policy", "RSA key of %d bits; RFC 8301 requires 1024" % bits)
            tap.ok(dkim_resinfo(a, "r%d" % bits) == want,
                   "a %d-bit RSA key: dkim=policy (%s)" % (bits, want[1]), diag=a)
        else:
            tap.ok(dkim_resinfo(a, "r1024") == ("pass", None),
                   "a 1024-bit RSA key: dkim=pass", diag=a)


def test_pkcs1(st, knot):
    """3. a bare RSAPublicKey: pass, as dkimpy says."""
    raw = signed(message(uuid.uuid4().hex), "pkcs1")
    record = "v=DKIM1; k=rsa; p=" + P_PKCS1
    tap.ok(dkim.verify(raw, dnsfunc=lambda name, timeout=5: record.encode()),
           "(dkimpy passes a bare RSAPublicKey p=)")
    a = outcome(st, "127.0.0.2", "billing@vendor.test", raw)
    tap.ok(dkim_resinfo(a, "pkcs1") == ("pass", None),
           "k=rsa with a bare RSAPublicKey p=: dkim=pass", diag=a)
    a = outcome(st, "127.0.0.9", "x@attacker.test", signed(message(uuid.uuid4().hex), "pkcs1"))
    tap.ok(re.search(r"dkim=pass header\.d=vendor\.test header\.s=pkcs1 .*dmarc=pass \(p=reject "
                     r"sp=reject pct=100 adkim=r aspf=r, dkim aligned, spf not aligned\)", a),
           "... and it aligns for DMARC: delivered from elsewhere", diag=a)


def test_unchanged(st, knot):
    """4. the paths the judge leaves alone, and no memory across messages."""
    for sel, want, name in [("ok", ("pass", None), "a valid record: pass"),
                            ("upper", ("pass", None), "k=RSA (an ABNF literal: any case): "
                             "pass, as libopendkim reads it"),
                            ("revoked", ("permerror", "key revoked"),
                             "p= empty: permerror (key revoked), as before"),
                            ("two", ("permerror", "multiple keys found"),
                             "two records at one name: permerror, as before"),
                            ("nosuch", ("permerror", "key not found in DNS"),
                             "no record: permerror (no key), as before")]:
        a = from_vendor(st, sel)
        tap.ok(dkim_resinfo(a, sel) == want, name, diag=a)
    raw = message(uuid.uuid4().hex)
    good = dkim.sign(raw, b"ok", b"vendor.test", KEY_PEM, include_headers=HDRS)
    bad = dkim.sign(raw, b"duppo", b"vendor.test", KEY_PEM, include_headers=HDRS)
    a = outcome(st, "127.0.0.9", "x@attacker.test", bad + good + raw)
    tap.ok(dkim_resinfo(a, "duppo") == ("permerror", DUP) and dkim_resinfo(a, "ok")
           == ("pass", None) and "dmarc=pass" in a,
           "an invalid record's signature beside a valid one: permerror and pass", diag=a)
    # what one message's record was judged is not carried into the next:
    # dupp's record withdrawn, its signature is "no key" again
    a = from_vendor(st, "dupp")
    tap.ok(dkim_resinfo(a, "dupp") == ("permerror", DUP), "s=dupp: permerror (%s)" % DUP,
           diag=a)
    knot.set_zone("vendor.test", [r for r in zones()["vendor.test"]
                                  if not r.startswith("dupp._domainkey ")])
    a = from_vendor(st, "dupp")
    tap.ok(dkim_resinfo(a, "dupp") == ("permerror", "key not found in DNS"),
           "its record withdrawn, the next message's s=dupp: permerror (key not found in "
           "DNS), nothing remembered", diag=a)

with Stack("milter-keyrec-attack") as st:
    tap.stack = st
    st.start_sink()
    knot = Knot(st, zones())
    knot.start()
    proc, port, conf = mxdkim.start_milter(st, "milter", CONF.format(port="{port}",
                                                                     dns=knot.servers))
    mxdkim.start_receiver(st, port)
    test_invalid(st)
    test_sizes(st)
    test_pkcs1(st, knot)
    test_unchanged(st, knot)
    log = st.read_log("milter")
    tap.ok(P[40:80] not in log and P_PKCS1[40:80] not in log, "no key material in the log")
    tap.ok(proc.poll() is None, "milter-dkim is still running")

sys.exit(tap.done())
