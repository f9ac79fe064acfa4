#!/usr/bin/python3
"""milter-dkim verify mode against a spoofer's malformed input (helper-73's
findings): real Postfix, a real DNS server (Knot), dmarc_reject = yes;
vendor.test publishes p=reject and SPF for 127.0.0.2.

  1. a bogus DKIM-Signature with d=vendor.test and a selector no DNS
     query can carry (a 70-byte label, s=a..b, s=sel.): dkim=permerror
     ("invalid selector"), never temperror, so p=reject's 550 stays a 550
     and does not become 451 4.4.3; a From: domain of 250 bytes
     (_dmarc.DOMAIN is no name) falls back to the organizational domain's
     record, no temperror either.
  2. DKIM-Signature tag-lists RFC 6376 3.2 and 6.1.1 make invalid: a tag
     twice (d=attacker.test; d=vendor.test, s= twice, h= twice), no v=,
     an 8-bit s=, garbage, an empty value: dkim=permerror (header.d when
     d= was read for sure), never a pass, never "dkim=none" for a signed
     message, and named next to a valid signature.
     t= or x= not 1 to 12 digits, l= not 1 to 76 ("+99", "-1", empty,
     20 digits): permerror, never dropped (dkim=none), never a pass.
     t=0..299 (libopendkim's drift test wraps around): dkim=policy with a
     reason that says so, not "in the future" (helper-126); t=300 passes.
  3. an unreadable From: whose '@' is followed by no plain name (a domain
     literal, a leading dot, a backslash): the lenient reader cannot read
     it for sure, so dmarc_reject refuses it (550), never delivers it as a
     mere dmarc=permerror; an address literal [192.0.2.1] names no domain.
  4. a p=reject record with a malformed optional tag (pct=abc, pct=150,
     pct=100%, adkim=relaxed, ri=24h, fo=zz) or p= twice: RFC 7489 6.3,
     the malformed tag is dropped for its default (pct=100), p=reject
     applies (550); the first p= counts.
"""

import base64
import hashlib
import os
import re
import sys
import time
import uuid

import dkim
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

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

ATTACKER = rsa.generate_private_key(public_exponent=65537, key_size=2048)
ATTACKER_PEM = ATTACKER.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.TraditionalOpenSSL,
                                      serialization.NoEncryption())
ATTACKER_TXT = "v=DKIM1; k=rsa; p=" + base64.b64encode(ATTACKER.public_key().public_bytes(
    serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)).decode()


DMARC = {"pctabc": "v=DMARC1; p=reject; pct=abc", "pct150": "v=DMARC1; p=reject; pct=150",
         "pctpercent": "v=DMARC1; p=reject; pct=100%",
         "adkimword": "v=DMARC1; p=reject; adkim=relaxed", "ri24h": "v=DMARC1; p=reject; ri=24h",
         "fozz": "v=DMARC1; p=reject; fo=zz", "twop": "v=DMARC1; p=reject; p=none",
         "spbad": "v=DMARC1; p=reject; sp=maybe; pct=abc; pct=0"}


def zones(key):
    more = dict((k + ".test", [txt("@", "v=spf1 -all"), txt("_dmarc", v)])
                for k, v in DMARC.items())
    more["nonefirst.test"] = [txt("@", "v=spf1 -all"), txt("_dmarc", "v=DMARC1; p=none; p=reject")]
    more["pctzero.test"] = [txt("@", "v=spf1 -all"), txt("_dmarc", "v=DMARC1; p=reject; pct=0")]
    return dict(more, **{
        "vendor.test": [txt("@", "v=spf1 ip4:127.0.0.2 -all"), txt("sel._domainkey", key),
                        txt("_dmarc", "v=DMARC1; p=reject")],
        "attacker.test": [txt("@", "v=spf1 ip4:127.0.0.9 -all"),
                          txt("sel._domainkey", ATTACKER_TXT),
                          txt("a2._domainkey", ATTACKER_TXT)],
    })


def message(token, from_value=b"Billing <billing@vendor.test>"):
    return (b"From: " + from_value + b"\r\nTo: <" + RCPT.encode() + b">\r\nSubject: invoice "
            + token.encode() + b"\r\nDate: Mon, 30 Nov 2026 10:00:00 +0000\r\nMessage-ID: <"
            + token.encode() + b"@vendor.test>\r\n\r\nPlease pay invoice " + token.encode()
            + b"\r\n")


def outcome(st, client, mail_from, raw):
    """'refused CODE text' or our A-R of the delivered message."""
    token = re.search(rb"Message-ID: <([0-9a-f]+)@", raw).group(1).decode()
    code, text, _ = mxdkim.send_as(st, client, mail_from, RCPT, raw)
    if code != 250:
        return "refused %d %s" % (code, text)
    ar = mxdkim.our_results(mxdkim.sunk(st, token))
    return ar[0] if len(ar) == 1 else repr(ar)


def hand_sign(msg, key_pem, tags):
    """A relaxed/relaxed rsa-sha256 DKIM-Signature whose tag-list is ours
    (tags: its text with {bh} for the body hash, ending in "b="),
    over From, To, Subject, Date (RFC 6376 3.4.2, 3.7)."""
    head, body = msg.split(b"\r\n\r\n", 1)
    lines = [re.sub(rb"[ \t]+", b" ", x).rstrip(b" \t") for x in body.split(b"\r\n")]
    body = b"\r\n".join(lines).rstrip(b"\r\n")
    bh = base64.b64encode(hashlib.sha256(body + b"\r\n" if body else b"").digest())
    value = tags.replace(b"{bh}", bh)
    fields = dict((n.strip().lower(), v) for n, v in
                  (x.split(b":", 1) for x in head.split(b"\r\n")))
    data = b"".join(n + b":" + re.sub(rb"[ \t]+", b" ", fields[n]).strip() + b"\r\n"
                    for n in HDRS)
    data += b"dkim-signature:" + re.sub(rb"[ \t]+", b" ", value).strip()
    key = serialization.load_pem_private_key(key_pem, None)
    b = base64.b64encode(key.sign(data, padding.PKCS1v15(), hashes.SHA256()))
    return b"DKIM-Signature: " + value + b + b"\r\n" + msg


def vendor_signed(raw, key, selector=b"sel"):
    return dkim.sign(raw, selector, b"vendor.test", key, include_headers=HDRS) + raw


def test_selectors(st, key):
    """1. a selector no query can carry: permerror, the 550 stays."""
    for sel, name in [(b"x" * 70, "a 70-byte label"), (b"a..b", "an empty label"),
                      (b"sel.", "a trailing dot")]:
        token = uuid.uuid4().hex
        raw = vendor_signed(message(token), key).replace(b"s=sel;", b"s=" + sel + b";", 1)
        a = outcome(st, "127.0.0.9", "x@attacker.test", raw)
        tap.ok(a.startswith(REJECTED), "a spoof with s= of %s: 550, not 451" % name, diag=a)
        raw = vendor_signed(message(token), key).replace(b"s=sel;", b"s=" + sel + b";", 1)
        a = outcome(st, "127.0.0.2", "billing@vendor.test", raw)
        tap.ok("; dkim=permerror (invalid selector (s= is not a DNS name)) "
               "header.d=vendor.test; " + SPF_PASS in a,
               "s= of %s: dkim=permerror (invalid selector) header.d=vendor.test" % name,
               diag=a)
    domain = b".".join([b"a" * 63] * 3) + b"." + b"b" * 46 + b".vendor.test"
    a = outcome(st, "127.0.0.9", "x@attacker.test", message(uuid.uuid4().hex,
                                                            b"billing@" + domain))
    tap.ok(len(domain) == 250 and a.startswith(REJECTED),
           "a From: domain of 250 bytes (_dmarc.DOMAIN: 257, no name): vendor.test's "
           "p=reject, 550", diag=a)


DUPS = [
    (b"d=attacker.test; d=vendor.test; s=sel", ATTACKER_PEM, "d= twice (the attacker's key)",
     "tag d= given twice", ""),
    (b"d=vendor.test; d=attacker.test; s=sel", None, "d= twice (the vendor's key)",
     "tag d= given twice", ""),
    (b"d=vendor.test; s=sel; s=a2", ATTACKER_PEM, "s= twice", "tag s= given twice",
     " header.d=vendor.test"),
    (b"d=vendor.test; s=sel; h=to", None, "h= twice (h=to; h=from:to:subject:date)",
     "tag h= given twice", " header.d=vendor.test"),
]


def test_duplicates(st, key):
    """2. RFC 6376 3.2: a tag twice makes the tag-list invalid."""
    for tags, pem, name, why, hd in DUPS:
        tmpl = (b"v=1; a=rsa-sha256; c=relaxed/relaxed; " + tags +
                b"; h=from:to:subject:date; bh={bh}; b=")
        for client, mf in [("127.0.0.9", "x@attacker.test"), ("127.0.0.2",
                                                             "billing@vendor.test")]:
            raw = hand_sign(message(uuid.uuid4().hex), pem or key, tmpl)
            tap.ok(not dkim.verify(raw, dnsfunc=st.dkimdns) if pem is None else True,
                   "(dkimpy fails %s)" % name)
            a = outcome(st, client, mf, raw)
            if client == "127.0.0.9":
                tap.ok(a.startswith(REJECTED), "%s: no pass, 550" % name, diag=a)
            else:
                tap.ok("; dkim=permerror (invalid tag-list (%s))%s; %s" % (why, hd, SPF_PASS)
                       in a, "%s: dkim=permerror (invalid tag-list)" % name, diag=a)


MALFORMED = [
    (b"DKIM-Signature: a=rsa-sha256; d=vendor.test; s=sel; h=from; bh=AA==; b=AA==\r\n",
     "no v=", "signature lacks the required tag v=", " header.d=vendor.test"),
    ("DKIM-Signature: v=1; a=rsa-sha256; d=vendor.test; s=s\u00e9l; h=from; bh=AA==; "
     "b=AA==\r\n".encode(), "an 8-bit s=", "invalid selector (s= is not a DNS name)",
     " header.d=vendor.test"),
    (b"DKIM-Signature: garbage\r\n", "garbage", "invalid tag-list (no '=' after garbage)", ""),
    (b"DKIM-Signature:\r\n", "an empty value", "empty tag-list", ""),
    (b"DKIM-Signature: v=1; d=vendor.test\r\n", "d= only",
     "signature lacks the required tag a=", " header.d=vendor.test"),
]


def test_malformed(st, key):
    """2b. a signature lacking a required tag: permerror, never "none",
    and named next to a valid signature."""
    for sig, name, why, hd in MALFORMED:
        raw = sig + message(uuid.uuid4().hex)
        a = outcome(st, "127.0.0.2", "billing@vendor.test", raw)
        tap.ok(a == "mx.mxkit.test; dkim=permerror (%s)%s; %s" % (why, hd, SPF_PASS)
               + " header.from=vendor.test policy.dmarc=reject",
               "only a signature with %s: dkim=permerror, not none" % name, diag=a)
        for pos in ("above", "below"):
            good = vendor_signed(message(uuid.uuid4().hex), key)
            raw = sig + good if pos == "above" else good.replace(b"\r\nFrom:",
                                                                   b"\r\n" + sig[:-2] +
                                                                   b"\r\nFrom:", 1)
            a = outcome(st, "127.0.0.9", "x@attacker.test", raw)
            tap.ok(re.match(r"mx\.mxkit\.test; dkim=permerror \(%s\)%s; dkim=pass "
                            r"header\.d=vendor\.test .*dmarc=pass" % (re.escape(why),
                                                                     re.escape(hd)), a),
                   "a signature with %s %s a valid one: both in the A-R" % (name, pos),
                   diag=a)


NUMBERS = [(b"t=abc", "t", 12), (b"t=-1", "t", 12), (b"t=", "t", 12), (b"x=", "x", 12),
           (b"x=-5", "x", 12), (b"x=12abc", "x", 12), (b"x=+99999999999", "x", 12),
           (b"x=12 34", "x", 12), (b"x=18446744073709551615", "x", 12),
           (b"t=18446744073709551616", "t", 12), (b"l=+5", "l", 76)]


def test_numbers(st, key):
    """2c. RFC 6376 3.5: t= and x= are 1*12DIGIT, l= 1*76DIGIT. Signed
    with the vendor's own key, such a signature was dropped by
    libopendkim (dkim=none for a signed message, left out next to a
    valid one) or read as a number ("x=+99999999999": dkim=pass)."""
    for tag, name, digits in NUMBERS:
        tmpl = (b"v=1; a=rsa-sha256; c=relaxed/relaxed; d=vendor.test; s=sel; " + tag +
                b"; h=from:to:subject:date; bh={bh}; b=")
        raw = hand_sign(message(uuid.uuid4().hex), key, tmpl)
        a = outcome(st, "127.0.0.2", "billing@vendor.test", raw)
        why = "invalid tag-list (%s= is not 1 to %d digits)" % (name, digits)
        tap.ok("; dkim=permerror (%s) header.d=vendor.test; %s" % (why, SPF_PASS) in a,
               "%s: dkim=permerror, not none, not pass" % tag.decode(), diag=a)
    good = vendor_signed(message(uuid.uuid4().hex), key)
    bad = hand_sign(message(uuid.uuid4().hex), key, b"v=1; a=rsa-sha256; c=relaxed/relaxed; "
                    b"d=vendor.test; s=sel; x=18446744073709551615; "
                    b"h=from:to:subject:date; bh={bh}; b=")
    raw = bad.split(b"\r\nFrom:")[0] + b"\r\n" + good
    a = outcome(st, "127.0.0.9", "x@attacker.test", raw)
    tap.ok(re.match(r"mx\.mxkit\.test; dkim=permerror \(invalid tag-list \(x= is not 1 to 12 "
                    r"digits\)\) header\.d=vendor\.test; dkim=pass header\.d=vendor\.test ", a),
           "an x= of 20 digits above a valid signature: both in the A-R", diag=a)
    raw = hand_sign(message(uuid.uuid4().hex), key, b"v=1; a=rsa-sha256; c=relaxed/relaxed; "
                    b"d=vendor.test; s=sel; t=1700000000; x=999999999999; "
                    b"h=from:to:subject:date; bh={bh}; b=")
    a = outcome(st, "127.0.0.9", "x@attacker.test", raw)
    tap.ok("dkim=pass header.d=vendor.test" in a, "t= and x= of 12 digits at most: pass",
           diag=a)
    # helper-126: libopendkim subtracts its 300 s of drift from t= unsigned,
    # so t=0..299 read as "in the future"; policy stays, the reason is true
    for t in (b"0", b"1", b"299"):
        raw = hand_sign(message(uuid.uuid4().hex), key, b"v=1; a=rsa-sha256; "
                        b"c=relaxed/relaxed; d=vendor.test; s=sel; t=" + t +
                        b"; h=from:to:subject:date; bh={bh}; b=")
        a = outcome(st, "127.0.0.2", "billing@vendor.test", raw)
        tap.ok("dkim=policy (signature timestamp within 300 s after 1970: libopendkim "
               "cannot check it) header.d=vendor.test" in a and "future" not in a,
               "t=%s: dkim=policy with a true reason, not \"in the future\"" % t.decode(),
               diag=a)
    raw = hand_sign(message(uuid.uuid4().hex), key, b"v=1; a=rsa-sha256; c=relaxed/relaxed; "
                    b"d=vendor.test; s=sel; t=300; h=from:to:subject:date; bh={bh}; b=")
    a = outcome(st, "127.0.0.2", "billing@vendor.test", raw)
    tap.ok("dkim=pass header.d=vendor.test" in a, "t=300: pass", diag=a)
    raw = hand_sign(message(uuid.uuid4().hex), key, b"v=1; a=rsa-sha256; c=relaxed/relaxed; "
                    b"d=vendor.test; s=sel; t=%d; h=from:to:subject:date; bh={bh}; b="
                    % (int(time.time()) + 3600))
    a = outcome(st, "127.0.0.2", "billing@vendor.test", raw)
    tap.ok("dkim=policy (signature timestamp in the future) header.d=vendor.test" in a,
           "t= an hour ahead: still \"in the future\"", diag=a)


UNSURE = [
    (b"billing@[vendor.test]", "a domain literal"),
    (b"Billing <billing@[vendor.test]>", "a domain literal in angle brackets"),
    (b"billing@[ vendor.test ]", "a domain literal with spaces"),
    (b"billing@[vendor.test", "an unclosed domain literal"),
    (b"billing@.vendor.test", "a leading dot"),
    (b"billing@\\vendor.test", "a backslash"),
    (b"billing@vendor..test", "a double dot"),
    (b"billing@vendor\x0b.test", "a VT after a label (Python reads vendor.test)"),
    (b"Billing <billing@vendor\x0c.test>", "an FF after a label"),
    (b"billing@vendor\x7f.test", "a DEL after a label"),
    (b"billing@vendor\x1f.test", "a US after a label"),
]


def test_unsure_from(st):
    """3. after the '@' no plain name: cannot be read for sure, refused."""
    for value, name in UNSURE:
        a = outcome(st, "127.0.0.9", "x@attacker.test", message(uuid.uuid4().hex, value))
        tap.ok(a == "refused 550 5.7.1 Unreadable From: header whose domains cannot all be "
               "read", "From: with %s after the '@': 550 under dmarc_reject" % name, diag=a)
    a = outcome(st, "127.0.0.9", "x@attacker.test",
                message(uuid.uuid4().hex, b"<x@attacker.test>, <y@[192.0.2.1]>"))
    tap.ok(a.endswith("dmarc=permerror (From: address unreadable)"),
           "an address literal names no domain: delivered, dmarc=permerror", diag=a)


def test_dmarc_tags(st):
    """4. malformed optional DMARC tags: ignored, p=reject applies."""
    for k, record in DMARC.items():
        a = outcome(st, "127.0.0.9", "x@attacker.test",
                    message(uuid.uuid4().hex, ("ceo@%s.test" % k).encode()))
        tap.ok(a.startswith(REJECTED), "%r: p=reject applies, 550" % record, diag=a)
        tap.ok(re.search(r"dmarc=fail \(p=reject sp=reject pct=100 adkim=r aspf=r, dkim not "
                         r"aligned, spf not aligned\) header\.from=%s\.test " % k,
                         st.read_log("milter")),
               "%r: logged as p=reject pct=100" % record)
    a = outcome(st, "127.0.0.9", "x@attacker.test",
                message(uuid.uuid4().hex, b"ceo@nonefirst.test"))
    tap.ok("; dmarc=fail (p=none sp=none pct=100 adkim=r aspf=r, dkim not aligned, spf not "
           "aligned) header.from=nonefirst.test policy.dmarc=none" in a,
           "p=none; p=reject: the first p= counts, delivered", diag=a)
    a = outcome(st, "127.0.0.9", "x@attacker.test", message(uuid.uuid4().hex, b"ceo@pctzero.test"))
    tap.ok("; dmarc=fail (p=reject sp=reject pct=0 adkim=r aspf=r, dkim not aligned, spf not "
           "aligned) header.from=pctzero.test policy.dmarc=reject" in a,
           "a valid pct=0 still samples: delivered with dmarc=fail", diag=a)


with Stack("milter-tags-attack") as st:
    tap.stack = st
    st.start_sink()
    keys = mxdkim.Dns(st.path("etc", "keys.txt"))
    key_path, _ = mxdkim.keygen(st, keys, "vendor.test", "sel", "rsa", 2048)
    key = open(key_path, "rb").read()
    st.dkimdns = keys.dnsfunc
    knot = Knot(st, zones(keys.records["sel._domainkey.vendor.test"]))
    knot.start()
    proc, port, conf = mxdkim.start_milter(st, "milter", CONF.format(port="{port}",
                                                                     dns=knot.servers))
    mxdkim.start_receiver(st, port)
    test_selectors(st, key)
    test_duplicates(st, key)
    test_malformed(st, key)
    test_numbers(st, key)
    test_unsure_from(st)
    test_dmarc_tags(st)
    tap.ok(proc.poll() is None, "milter-dkim is still running")

sys.exit(tap.done())
