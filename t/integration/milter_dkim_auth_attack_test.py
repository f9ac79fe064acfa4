#!/usr/bin/python3
"""milter-dkim verify mode attacked as a hostile sender (issue 16's
promises): real Postfix, a real DNS server (Knot), dkimpy signing with
vendor.test's published key, dmarc_reject = yes.

  1. l= (body length): a vendor.test signature covering the original
     body, with the fraudster's text appended, must not make
     dkim=pass/dmarc=pass for the appended content.
     RFC 8301: rsa-sha1 and a 512-bit key are no DKIM pass; no From: at
     all is refused (Postfix fills it from MAIL FROM).
     A Subject:, From:, Date: or To: put on top of a signed message: no
     pass (RFC 5322 allows each once; readers show the top one).
  2. From: forms a reader shows as billing@vendor.test but the milter
     cannot read strictly (trailing dot, two addresses, unterminated
     comment): never dmarc=pass, and under dmarc_reject refused like a
     p=reject fail, never delivered as a mere permerror; also when a
     comment stands between the '@' and the domain, or the domain is an
     RFC 2047 encoded word, which Python's email package reads as
     vendor.test (helper-65 F1, F2);
     property (hypothesis): any From: in which Python's email package
     reads an address at vendor.test is refused (550).
  3. From: forms the milter reads: display names and encoded words that
     look like vendor.test, upper case: header.from is the real domain.
  4. SPF macros and exp= from the attacker's own zone: no pass for
     vendor.test, the daemon survives; record text made to read as results
     never reaches the A-R; the spoofer's own SPF failing temporarily
     (Knot REFUSED for a zone it does not serve) does not turn p=reject's
     550 into a 451.
  5. the signer (milter-dkim on the vendor's Postfix, OpenSSL core):
     messages built to trip canonicalization (trailing white space in
     headers, a white-space-only continuation line, 8-bit and bare CR in a
     signed header, a signed header 0, 1 or 3 times, empty and CRLF-only
     bodies) verify with dkimpy against the Knot zone (dnspython) and with
     our verifier (dkim=pass, dmarc=pass).
"""

import os
import re
import smtplib
import sys
import time
import uuid

import dkim
import dns.exception
import dns.resolver
import dns as dnspython
import email.parser
import email.policy
from hypothesis import given, settings, strategies as hs, HealthCheck

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from mxstack import Stack  # noqa: E402
from mxtest import tap  # noqa: E402
from mxdns import Knot, txt  # noqa: E402
import mxdkim  # noqa: E402

RCPT = "bills@planapulse.test"
CONF = mxdkim.VERIFY_CONF.replace("{reject}", "yes")
HDRS = mxdkim.SIGNED_HEADERS
VENDOR_CONF = """\
socket = inet:{port}@127.0.0.1
mode = sign
key_table = {dir}/etc/vendor.keys
signing_table = refile:{dir}/etc/vendor.signing
"""


IDN = "xn--bcher-kva.test"      # bücher.test


def zones(key, weak, idn_key):
    return {
        IDN: [
            txt("@", "v=spf1 ip4:127.0.0.2 -all"),
            txt("idn._domainkey", idn_key),
            txt("_dmarc", "v=DMARC1; p=reject"),
        ],
        "vendor.test": [
            txt("@", "v=spf1 ip4:127.0.0.2 -all"),
            txt("sel._domainkey", key),
            txt("_dmarc", "v=DMARC1; p=reject"),
            txt("weak._domainkey", weak),
        ],
        "spoof.test": [txt("@", "v=spf1 ip4:127.0.0.9 -all")],
        "macro.test": [
            txt("@", "v=spf1 exists:%{ir}.%{l1r-}.%{d2}.%{h}.x.macro.test "
                "include:%{d}.%{i}.y.macro.test -all exp=e.macro.test"),
            txt("e", "%{i} %{l} %{d} %{h} %{ir} %{c} %{r} %{t} " + "%{s}" * 40),
            txt("big", "v=spf1 " + " ".join("ip4:192.0.2.%d" % i for i in range(1, 250))
                + " -all"),
            txt("ptr", "v=spf1 ptr ptr:vendor.test -all"),
            txt("inj1", "v=spf1 ip4:127.0.0.9/40;dmarc=pass;header.from=vendor.test -all"),
            txt("inj2", "v=spf1 a:x;dmarc=pass)(header.from=vendor.test -all"),
            txt("inj3", "v=spf1 include:x;dmarc=pass;header.from=vendor.test -all"),
            txt("inj4", "v=spf1 %{z};dmarc=pass -all"),
            txt("tempfail", "v=spf1 include:unserved.example -all"),
        ],
    }


def message(from_value, token, body=None, extra=b""):
    body = body or (b"Please pay invoice " + token.encode() + b" to our usual account.\r\n")
    return (b"From: " + from_value.encode() + b"\r\nTo: <" + RCPT.encode() +
            b">\r\nSubject: invoice " + token.encode() + b"\r\n"
            b"Date: Mon, 30 Nov 2026 10:00:00 +0000\r\nMessage-ID: <" + token.encode() +
            b"@vendor.test>\r\n" + extra + b"\r\n" + body)


def send(st, client, mail_from, raw, helo="mail.example.org", timeout=30):
    return mxdkim.send_as(st, client, mail_from, RCPT, raw, helo=helo, timeout=timeout)


def outcome(st, client, mail_from, raw, helo="mail.example.org"):
    """'refused CODE text' or our A-R of the delivered message."""
    token = re.search(rb"Message-ID: <([0-9a-f]+)@", raw).group(1).decode()
    code, text, took = send(st, client, mail_from, raw, helo)
    if code != 250:
        return "refused %d %s" % (code, text)
    ar = mxdkim.our_results(mxdkim.sunk(st, token))
    return ar[0] if len(ar) == 1 else repr(ar)


def signed(raw, key, **kw):
    return dkim.sign(raw, b"sel", b"vendor.test", key, include_headers=HDRS, **kw) + raw


def test_body_length(st, key):
    """1. l= with content appended after the signed part."""
    token = uuid.uuid4().hex
    raw = signed(message("Billing <billing@vendor.test>", token), key, length=True)
    a = outcome(st, "127.0.0.9", "x@spoof.test", raw)
    tap.ok("dkim=pass" in a and "dmarc=pass" in a,
           "l= covering the whole body: dkim=pass, dmarc=pass", diag=a)
    token = uuid.uuid4().hex
    raw = signed(message("Billing <billing@vendor.test>", token), key, length=True)
    fraud = raw + b"\r\nCORRECTION: our bank changed, pay to IBAN XX00 FRAUD 0000.\r\n"
    tap.ok(dkim.verify(fraud, dnsfunc=st.dkimdns), "(dkimpy itself passes the l= signature)")
    a = outcome(st, "127.0.0.9", "x@spoof.test", fraud)
    tap.ok(a.startswith("refused 550 5.7.1 Rejected by the DMARC policy"),
           "text appended past l=: not a DKIM pass, refused under dmarc_reject (p=reject)",
           diag=a)
    tap.ok(re.search(r"dkim=policy \(l= leaves part of the body unsigned\) "
                     r"header\.d=vendor\.test .*dmarc=fail", st.read_log("milter")),
           "logged: dkim=policy (l= leaves part of the body unsigned), dmarc=fail")


def weak_key():
    """A 512-bit RSA key (RFC 8301: below 1024 bits, never valid) and its
    DKIM TXT value."""
    import base64
    import subprocess
    pem = subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt",
                          "rsa_keygen_bits:512"], capture_output=True, check=True).stdout
    der = subprocess.run(["openssl", "pkey", "-pubout", "-outform", "DER"], input=pem,
                         capture_output=True, check=True).stdout
    return pem, "v=DKIM1; k=rsa; p=" + base64.b64encode(der).decode()


def test_prepended(st, key):
    """1c. a header RFC 5322 allows once, put on top of a signed message:
    the signature does not vouch for what readers show."""
    for name, value in [(b"Subject", b"URGENT: new bank details"),
                        (b"From", b"<billing@vendor.test>"), (b"Date", b"Tue, 1 Dec 2026"),
                        (b"To", b"<ap@planapulse.test>")]:
        token = uuid.uuid4().hex
        raw = signed(message("Billing <billing@vendor.test>", token), key)
        raw = name + b": " + value + b"\r\n" + raw
        a = outcome(st, "127.0.0.9", "x@spoof.test", raw)
        tap.ok("dkim=pass" not in a and "dmarc=pass" not in a,
               "a second %s: on top of a signed message: no pass" % name.decode(), diag=a)
    token = uuid.uuid4().hex
    raw = signed(message("Billing <billing@vendor.test>", token,
                         extra=b"Comments: one\r\nComments: two\r\n"), key)
    raw = b"Comments: three\r\nX-Unsigned: yes\r\n" + raw
    a = outcome(st, "127.0.0.9", "x@spoof.test", raw)
    tap.ok("dkim=pass" in a and "dmarc=pass" in a,
           "headers allowed many times (Comments:) or unsigned: still a pass", diag=a)


def test_weak(st, key, weak):
    """1b. RFC 8301: rsa-sha1 and RSA keys under 1024 bits are not valid
    signatures, so never an aligned DKIM pass."""
    token = uuid.uuid4().hex
    raw = message("Billing <billing@vendor.test>", token)
    raw = dkim.sign(raw, b"sel", b"vendor.test", key, include_headers=HDRS,
                    signature_algorithm=b"rsa-sha1") + raw
    a = outcome(st, "127.0.0.9", "x@spoof.test", raw)
    tap.ok(a.startswith("refused 550 5.7.1 Rejected by the DMARC policy"),
           "an rsa-sha1 signature by vendor.test's key: no DKIM pass, refused", diag=a)
    tap.ok(re.search(r"dkim=policy \(rsa-sha1 is not accepted \(RFC 8301\)\) "
                     r"header\.d=vendor\.test", st.read_log("milter")),
           "logged: dkim=policy (rsa-sha1 is not accepted (RFC 8301))")
    token = uuid.uuid4().hex
    raw = message("Billing <billing@vendor.test>", token)
    raw = dkim.sign(raw, b"weak", b"vendor.test", weak, include_headers=HDRS) + raw
    a = outcome(st, "127.0.0.9", "x@spoof.test", raw)
    tap.ok(a.startswith("refused 550 5.7.1 Rejected by the DMARC policy"),
           "a signature with a published 512-bit key: no DKIM pass, refused", diag=a)
    token = uuid.uuid4().hex
    raw = message("Billing <billing@vendor.test>", token).replace(
        b"From: Billing <billing@vendor.test>\r\n", b"")
    a = outcome(st, "127.0.0.9", "billing@vendor.test", raw)
    tap.ok(a.startswith("refused 550 5.7.1 Rejected by the DMARC policy"),
           "no From: header (Postfix adds one from MAIL FROM, outside SPF): refused",
           diag=a)


UNREADABLE = [
    ("billing@vendor.test.", "a trailing dot"),
    ("Billing <billing@vendor.test.>", "a trailing dot in angle brackets"),
    ("<billing@vendor.test>, <x@spoof.test>", "two addresses, vendor.test first"),
    ("<x@spoof.test>, <billing@vendor.test>", "two addresses, vendor.test second"),
    ("billing@vendor.test (Billing", "an unterminated comment"),
    ("Billing <billing@vendor.test", "an unclosed angle address"),
    ("billing@VENDOR.test.", "upper case and a trailing dot"),
]


# F1, F2: what a lenient reader finds past a comment or in an encoded word
LENIENT = [
    ("<billing@(vendor)vendor.test>, <x@spoof.test>", "a comment after the '@'"),
    ("billing@(x)vendor.test (unclosed", "a comment after the '@', an unclosed one after"),
    ("billing@ (a (b) c)\r\n vendor (c) . test (x", "nested comment, folding, CFWS at the dot"),
    ("Billing <billing@=?utf-8?q?vendor.test?=>", "the domain as a Q encoded word"),
    ("billing@=?us-ascii?q?vendor=2Etest?=", "the domain as a Q encoded word with =2E"),
    ("Billing <billing@=?utf-8?b?dmVuZG9yLnRlc3Q=?=>", "the domain as a B encoded word"),
    ("billing@=?utf-8?q?vendor?=.test", "the first label as an encoded word"),
]


# second round (helper-70): what the lenient reader could not read, and
# a domain no DNS name can be: refused too (each read by Python as an
# address at vendor.test, whose policy is p=reject)
UNSURE = [
    # charsets that do not write ASCII as ASCII: converted as Python
    # converts them, so the domain is read (vendor.test, p=reject)
    ("billing@=?utf-16be?b?AHYAZQBuAGQAbwByAC4AdABlAHMAdA==?=", "a UTF-16 encoded word",
     "Rejected by the DMARC policy of a domain in the unreadable"),
    ("billing@=?cp500?b?pYWVhJaZS6OFoqM=?=", "an EBCDIC encoded word",
     "Rejected by the DMARC policy of a domain in the unreadable"),
    ("billing@=?utf-7?q?+AHY-endor.test?=", "a UTF-7 encoded word",
     "Rejected by the DMARC policy of a domain in the unreadable"),
    ("billing@=?hz?q?vendor.test?=", "a word in a charset Python reads and glibc lacks",
     "whose domains cannot all be read"),
    # glibc reads these as EBCDIC, Python (no codec) as ASCII: vendor.test
    # (helper-124: delivered as dmarc=permerror)
    ("billing@=?x-mxkit-unknown?q?vendor.test?=", "a word in a charset no one knows",
     "Rejected by the DMARC policy"),
    ("Billing <billing@=?IBM1047?q?vendor.test?=>", "an IBM1047 word",
     "Rejected by the DMARC policy"),
    ("billing@=?ibm285?b?dmVuZG9yLnRlc3Q=?=", "an ibm285 B word", "Rejected by the DMARC policy"),
    ("Billing <billing@=?IBM1141?Q?vendor=2Etest?=>", "an IBM1141 word",
     "Rejected by the DMARC policy"),
    ("<billing@=?ibm-1047?q?vendor?=.test>", "an ibm-1047 first label",
     "Rejected by the DMARC policy"),
    ("billing@=?utf-8?q?vendor.test?=x", "text right after the encoded word",
     "Rejected by the DMARC policy of a domain in the unreadable"),
    ("billing@" + "a" * 64 + ".vendor.test", "a 64-byte label under vendor.test",
     "From: domain is not a valid name"),
]


def test_unsure_from(st):
    for value, name, reply in UNSURE:
        tap.ok(any(a.rpartition("@")[2].lower().endswith("vendor.test")
                   for a in python_reads(value) or []),
               "(Python reads From: with %s as an address at or under vendor.test)" % name,
               diag=repr(python_reads(value)))
        a = outcome(st, "127.0.0.9", "x@spoof.test", message(value, uuid.uuid4().hex))
        tap.ok(a.startswith("refused 550 5.7.1 ") and reply in a,
               "From: with %s: refused under dmarc_reject" % name, diag=a)


def python_reads(value):
    """The addresses Python's email package reads in this From: value, or
    None."""
    m = email.parser.BytesParser(policy=email.policy.default).parsebytes(
        b"From: " + value.encode() + b"\r\n\r\nx")
    try:
        return [a.addr_spec for a in m["From"].addresses]
    except Exception:
        return None


def python_vendor(value):
    return any(a.rpartition("@")[2].lower() == "vendor.test" for a in python_reads(value) or [])


def test_lenient_from(st):
    """2c. a comment after the '@' or an encoded word in the address:
    Python reads billing@vendor.test, so p=reject applies."""
    for value, name in LENIENT:
        token = uuid.uuid4().hex
        tap.ok(python_vendor(value), "(Python reads From: with %s as vendor.test)" % name,
               diag=repr(python_reads(value)))
        a = outcome(st, "127.0.0.9", "x@spoof.test", message(value, token))
        tap.ok(a.startswith("refused 550 5.7.1 Rejected by the DMARC policy of a domain in "
                            "the unreadable"),
               "From: with %s: refused under dmarc_reject" % name, diag=a)
    a = outcome(st, "127.0.0.9", "x@spoof.test",
                message("x@spoof.test (=?utf-8?q?a?=", uuid.uuid4().hex))
    tap.ok("dmarc=permerror (From: address unreadable)" in a,
           "an unreadable From: with an encoded word naming no domain: permerror", diag=a)


SEPS = ["", " ", "(c)", " (a (b \\) c) ", "\r\n\t", "(x@spoof.test)"]
LOCALS = ["billing", "\"billing\"", "=?utf-8?q?billing?=", "b.illing"]
DOMAINS = ["vendor.test", "VENDOR.Test", "vendor (c) . test", "vendor.test.",
           "=?utf-8?q?vendor.test?=", "=?utf-8?b?dmVuZG9yLnRlc3Q=?=", "=?utf-8?q?vendor?=.test",
           "=?us-ascii?Q?vendor=2Etest?=", "spoof.test"]
NAMES = ["", "Billing ", "\"Billing, Inc\" ", "=?utf-8?q?Billing?= ", "x@spoof.test "]
TAILS = ["", " (unclosed", ", <x@spoof.test>", " (c)", ">"]


def lenient_values():
    sep = hs.sampled_from(SEPS)
    addr = hs.builds(lambda lp, s1, s2, d: lp + s1 + "@" + s2 + d, hs.sampled_from(LOCALS),
                     sep, sep, hs.sampled_from(DOMAINS))
    closed = hs.sampled_from([">", "", "> "])
    mailbox = hs.one_of(
        hs.builds(lambda n, a, c: n + "<" + a + c, hs.sampled_from(NAMES), addr, closed),
        addr)
    return hs.builds(lambda lead, m, tail: lead + m + tail,
                     hs.sampled_from(["", "<x@spoof.test>, ", "(c) "]), mailbox,
                     hs.sampled_from(TAILS))


def test_lenient_property(st):
    """2d. property: whatever the form, a From: in which Python reads an
    address at vendor.test (p=reject) is refused, never delivered."""
    failures, vendor = [], []

    @settings(max_examples=150, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(lenient_values())
    def check(value):
        if not python_vendor(value):
            return
        vendor.append(value)
        a = outcome(st, "127.0.0.9", "x@spoof.test", message(value, uuid.uuid4().hex))
        if not a.startswith("refused 550 5.7.1 Rejected by the DMARC policy"):
            failures.append((value, a))

    check()
    tap.is_(failures[:3], [], "property: every From: Python reads as an address at "
            "vendor.test is refused (%d of them, %d delivered)" % (len(vendor), len(failures)))
    tap.ok(len(vendor) >= 40, "the generator made such From: values (%d)" % len(vendor))


def test_unreadable_from(st):
    """2. From: values a mail reader shows as vendor.test, refused by our
    strict parser: under dmarc_reject, refused as vendor.test's p=reject
    would (the unreadable form must not be the way around it)."""
    for value, name in UNREADABLE:
        token = uuid.uuid4().hex
        a = outcome(st, "127.0.0.9", "x@spoof.test", message(value, token))
        tap.ok(a.startswith("refused 550 5.7.1 Rejected by the DMARC policy"),
               "From: with %s: refused under dmarc_reject" % name, diag=a)
    token = uuid.uuid4().hex
    a = outcome(st, "127.0.0.9", "x@spoof.test", message("x@spoof.test (x", token))
    tap.ok("dmarc=permerror (From: address unreadable)" in a,
           "an unreadable From: of a domain without p=reject: permerror, delivered", diag=a)
    token = uuid.uuid4().hex
    a = outcome(st, "127.0.0.2", "billing@vendor.test",
                message("<billing@vendor.test>, <x@spoof.test>", token))
    tap.ok("dmarc=pass" not in a, "two addresses from vendor.test's own IP: no dmarc=pass",
           diag=a)
    many = ", ".join("<x@d%d.spoof.test>" % i for i in range(9))
    a = outcome(st, "127.0.0.9", "x@spoof.test", message(many, uuid.uuid4().hex))
    tap.ok(a.startswith("refused 550 5.7.1 Unreadable From: header whose domains cannot all be read"),
           "an unreadable From: naming 9 domains: refused without 9 lookups", diag=a)
    many = ", ".join("<x@d%d.spoof.test>" % i for i in range(8))
    a = outcome(st, "127.0.0.9", "x@spoof.test", message(many, uuid.uuid4().hex))
    tap.ok("dmarc=permerror (From: address unreadable)" in a,
           "8 domains, none with a policy: permerror, delivered", diag=a)
    a = outcome(st, "127.0.0.2", "billing@vendor.test",
                message("Billing\r\n <billing@vendor.test>", uuid.uuid4().hex))
    tap.ok("dmarc=pass" in a and "header.from=vendor.test" in a,
           "a folded From: is read (pass from vendor.test's IP)", diag=a)


def test_idn_from(st, idn_key):
    """2e. RFC 6532 mail: a From: whose domain is UTF-8 (bücher.test) is
    judged by the DMARC policy of its A-labels (xn--bcher-kva.test,
    p=reject): signed by that domain it is delivered (it was refused as
    unreadable); unsigned from another IP it is refused as the From:
    domain's (the strict reader reads RFC 6532 addresses); bytes that are
    no valid IDN cannot be read for sure and are refused."""
    def raw(from_value, token, body=b"Rechnung anbei.\r\n"):
        return (b"From: " + from_value + b"\r\nTo: <" + RCPT.encode() + b">\r\n"
                b"Subject: Rechnung " + token.encode() + b"\r\n"
                b"Date: Mon, 30 Nov 2026 10:00:00 +0000\r\nMessage-ID: <" + token.encode() +
                b"@xn--bcher-kva.test>\r\nMIME-Version: 1.0\r\n"
                b"Content-Type: text/plain; charset=utf-8\r\n\r\n" + body)
    utf8 = "Bücher <rechnung@bücher.test>".encode()
    token = uuid.uuid4().hex
    m = raw(utf8, token)
    m = dkim.sign(m, b"idn", IDN.encode(), idn_key, include_headers=HDRS) + m
    a = outcome(st, "127.0.0.9", "x@spoof.test", m)
    tap.ok(a.startswith("dkim=pass") or ("dkim=pass header.d=%s" % IDN) in a,
           "UTF-8 From: domain, signed by its A-label domain: delivered, dkim=pass", diag=a)
    # a mailbox the strict reader reads (RFC 6532): judged as the From:
    # domain, in A-labels, not as an unreadable header's names
    a = outcome(st, "127.0.0.9", "x@spoof.test", raw(utf8, uuid.uuid4().hex))
    tap.ok(a.startswith("refused 550 5.7.1 Rejected by the DMARC policy of the From: domain"),
           "UTF-8 From: domain, unsigned from another IP: refused by xn--bcher-kva.test's "
           "p=reject", diag=a)
    decomposed = "rechnung@bu\u0308cher.test".encode()
    a = outcome(st, "127.0.0.9", "x@spoof.test", raw(decomposed, uuid.uuid4().hex))
    tap.ok(a.startswith("refused 550 5.7.1 Rejected by the DMARC policy of the From: domain"),
           "decomposed u-umlaut (NFC is the same name): refused by its p=reject", diag=a)
    a = outcome(st, "127.0.0.9", "x@spoof.test",
                raw(b"rechnung@=?utf-8?q?b=C3=BCcher.test?=", uuid.uuid4().hex))
    tap.ok(a.startswith("refused 550 5.7.1 Rejected by the DMARC policy of a domain in the "
                        "unreadable"),
           "the UTF-8 domain in an encoded word: refused by its p=reject", diag=a)
    a = outcome(st, "127.0.0.9", "x@spoof.test",
                raw(b"rechnung@b\xfccher.test", uuid.uuid4().hex))
    tap.ok(a.startswith("refused 550 5.7.1 Unreadable From: header whose domains cannot "
                        "all be read"), "a Latin-1 byte in the domain: cannot be read, refused",
           diag=a)
    for tail, name in [("\u3000", "U+3000"), ("\u00a0", "U+00A0"),
                       ("\uff20spoof.test", "U+FF20 and another name")]:
        a = outcome(st, "127.0.0.9", "x@spoof.test",
                    raw(("CEO <ceo@vendor.test%s>" % tail).encode(), uuid.uuid4().hex))
        tap.ok(a.startswith("refused 550 5.7.1 Unreadable From: header whose domains cannot "
                            "all be read"), "ceo@vendor.test and %s (IDNA maps it to ASCII no "
               "name holds; readers show vendor.test): refused" % name, diag=a)
    a = outcome(st, "127.0.0.9", "x@spoof.test",
                raw("rechnung@caf\u00e9.spoof.test".encode(), uuid.uuid4().hex))
    tap.ok(re.search(r"dmarc=none .*header\.from=xn--caf-dma\.spoof\.test", a),
           "a UTF-8 domain without a policy: delivered, dmarc=none for its A-labels", diag=a)
    a = outcome(st, "127.0.0.9", "x@spoof.test",
                raw("Billing <rechnung\u200b@b\u00fccher.test>".encode(), uuid.uuid4().hex))
    tap.ok(a.startswith("refused 550 5.7.1 Rejected by the DMARC policy of a domain in the "
                        "unreadable"), "a zero-width space in the local part: unreadable to "
           "the strict reader, refused by the p=reject of the name after its '@'", diag=a)


def test_unreadable_dns_down(st, knot):
    """2b. an unreadable From: naming vendor.test with the DNS frozen:
    451 (the policy may be reject), bounded by auth_timeout."""
    knot.pause()
    try:
        t0 = time.monotonic()
        a = outcome(st, "127.0.0.9", "x@spoof.test",
                    message("<billing@vendor.test>, <x@spoof.test>", uuid.uuid4().hex))
        took = time.monotonic() - t0
    finally:
        knot.resume()
    # 451 while vendor.test's policy cannot be read; 550 when it is in the
    # resolver's cache from the tests before (p=reject read for sure: the
    # strictest outcome, as the doc says). Never delivered either way.
    tap.ok(a.startswith("refused 451 4.4.3")
           or a.startswith("refused 550 5.7.1 Rejected by the DMARC policy of a domain"),
           "DNS frozen, unreadable From: naming vendor.test: 451 4.4.3 (or 550 from the "
           "cached p=reject), never delivered", diag=a)
    tap.ok(took < 3 + 5, "bounded: %.1f s (auth_timeout 3 s)" % took)


READABLE = [
    ('"billing@vendor.test" <x@spoof.test>', "spoof.test", "a quoted display name"),
    ("=?utf-8?q?billing=40vendor=2Etest?= <x@spoof.test>", "spoof.test",
     "an encoded-word display name"),
    ("=?utf-8?b?YmlsbGluZ0B2ZW5kb3IudGVzdA==?= <x@spoof.test>", "spoof.test",
     "a base64 encoded word"),
    ("x@spoof.test (billing@vendor.test)", "spoof.test", "a comment"),
    ("(billing@vendor.test) <x@spoof.test>", "spoof.test", "a comment before"),
    ("X@SPOOF.TEST", "spoof.test", "upper case"),
]


def test_readable_from(st):
    """3. From: forms that look like vendor.test but are spoof.test."""
    for value, domain, name in READABLE:
        token = uuid.uuid4().hex
        a = outcome(st, "127.0.0.9", "x@spoof.test", message(value, token))
        tap.ok("header.from=%s" % domain in a and "vendor.test" not in a,
               "From: with %s: header.from=%s" % (name, domain), diag=a)
    token = uuid.uuid4().hex
    a = outcome(st, "127.0.0.2", "billing@vendor.test",
                message("BILLING <BILLING@VENDOR.TEST>", token))
    tap.ok("dmarc=pass" in a and "header.from=vendor.test" in a,
           "upper-case From: from vendor.test's IP: pass, header.from lower case", diag=a)
    token = uuid.uuid4().hex
    raw = message("Billing <billing@vendor.test>", token, extra=b"From : <x@spoof.test>\r\n")
    a = outcome(st, "127.0.0.2", "billing@vendor.test", raw)
    tap.ok(a.startswith("refused 550 5.7.1 DMARC needs exactly one From"),
           "a second From with a space before the colon (RFC 5322 obs-optional) counts: "
           "two From: headers, refused", diag=a + "\n" + (mxdkim.sunk(st, token, 2) or "")[:800])
    token = uuid.uuid4().hex
    a = outcome(st, "127.0.0.9", "x@spoof.test", message(
        "<x@spoof.test>", token, extra=b"Authentication-Results : mx.mxkit.test; "
        b"dmarc=pass header.from=vendor.test\r\nAuthentication-Results\t: other.test; "
        b"spf=pass\r\n"))
    msg = mxdkim.sunk(st, token) or ""
    tap.ok("dmarc=none" in a and "header.from=vendor.test" not in msg
           and "other.test; spf=pass" in msg,
           "a forged A-R with a space before the colon is removed, a foreign one kept",
           diag=msg[:1500])


def test_spf_macros(st, proc):
    """4. the attacker's SPF with macros, exp=, a 249-term record, ptr."""
    for mail_from, name in [("a-b.c@macro.test", "macros and exp="),
                            ("x@big.macro.test", "249 ip4 terms"),
                            ("x@ptr.macro.test", "ptr")]:
        token = uuid.uuid4().hex
        a = outcome(st, "127.0.0.9", mail_from, message("<billing@vendor.test>", token))
        tap.ok("dmarc=pass" not in a and "spf=pass" not in a,
               "SPF with %s: no pass for vendor.test" % name, diag=a)
    for i in range(1, 5):
        token = uuid.uuid4().hex
        a = outcome(st, "127.0.0.9", "x@inj%d.macro.test" % i, message("<x@spoof.test>", token))
        tap.ok(a.count("header.from=") == 1 and "vendor.test" not in a
               and "dmarc=none" in a and "spf=pass" not in a,
               "an SPF record carrying 'dmarc=pass;header.from=...' (%d): none of it in "
               "the A-R" % i, diag=a)
    token = uuid.uuid4().hex
    a = outcome(st, "127.0.0.9", "x@tempfail.macro.test",
                message("<billing@vendor.test>", token))
    tap.ok(a.startswith("refused 550 5.7.1 Rejected by the DMARC policy"),
           "the spoofer's own SPF domain failing temporarily (not aligned): still 550, "
           "not a 451 to retry", diag=a)
    tap.ok(re.search(r"spf=temperror .*smtp\.mailfrom=x@tempfail\.macro\.test;\s+dmarc=fail",
                     st.read_log("milter")), "logged: spf=temperror, dmarc=fail")
    a = outcome(st, "IPV6:2001:db8::1", "x@macro.test",
                message("<x@macro.test>", uuid.uuid4().hex))
    tap.ok("spf=fail" in a or "spf=permerror" in a or "spf=neutral" in a,
           "macros with an IPv6 client: a result, no crash", diag=a)
    tap.ok(proc.poll() is None, "milter-dkim still running after the macro records")


def knot_dnsfunc(knot):
    """dkimpy's key lookups, asked of the test's Knot server."""
    res = dnspython.resolver.Resolver(configure=False)
    res.nameservers, res.port, res.lifetime = ["127.0.0.1"], knot.port, 5

    def lookup(name, timeout=5):
        name = name.decode() if isinstance(name, bytes) else name
        try:
            ans = res.resolve(name, "TXT")
        except dnspython.exception.DNSException:
            return None
        return b"".join(ans[0].strings)
    return lookup


SIGNER_CASES = [
    (b"Subject: trailing white space \t \r\n", b"ok\r\n", "a header with trailing white space"),
    (b"Subject: folded\r\n \r\n\tafter a blank continuation\r\n", b"ok\r\n",
     "a continuation line of white space only"),
    (b"Subject: caf\xc3\xa9 8-bit\r\n", b"ok\r\n", "8-bit in a signed header"),
    (b"Subject: bare\rcr\r\n", b"ok\r\n", "a bare CR in a signed header"),
    (b"", b"ok\r\n", "no Subject (a signed name absent)"),
    (b"Subject: one\r\nSubject: two\r\nSubject: three\r\n", b"ok\r\n",
     "a signed header three times"),
    (b"Subject: empty body\r\n", b"", "an empty body"),
    (b"Subject: crlf body\r\n", b"\r\n\r\n", "a body of empty lines"),
    (b"Subject: no final newline\r\n", b"last line", "a body without a final CRLF"),
    (b"Subject:\r\n", b"ok\r\n", "an empty signed header"),
    (b"SUBJECT:   upper   case\r\n", b"ok\r\n", "an upper-case header name"),
]


def test_signer(st, vport, knot):
    """5. the vendor's milter signs hostile shapes; dkimpy and our verifier
    check them."""
    lookup = knot_dnsfunc(knot)
    for hdr, body, name in SIGNER_CASES:
        token = uuid.uuid4().hex
        raw = (b"From: Billing <billing@vendor.test>\r\nTo: <" + RCPT.encode() + b">\r\n"
               + hdr + b"Date: Mon, 30 Nov 2026 10:00:00 +0000\r\nMessage-ID: <" +
               token.encode() + b"@vendor.test>\r\n\r\n" + body)
        s = smtplib.SMTP("127.0.0.1", vport, timeout=30)
        try:
            s.sendmail("billing@vendor.test", [RCPT], raw)
            code = 250
        except smtplib.SMTPException as e:
            code = str(e)
        s.quit()
        msg = mxdkim.sunk(st, token, timeout=30)
        ar = mxdkim.our_results(msg)
        a = ar[0] if len(ar) == 1 else repr((code, ar))
        ok = bool(msg) and dkim.verify(msg.encode("utf-8", "surrogateescape")
                                       if isinstance(msg, str) else msg, dnsfunc=lookup)
        tap.ok(ok and "dkim=pass header.d=vendor.test" in a and "dmarc=pass" in a,
               "signer: %s: dkimpy and our verifier pass it" % name,
               diag=a + "\n" + (msg or "not delivered")[:1200])


with Stack("milter-auth-attack") as st:
    tap.stack = st
    st.start_sink()
    keys = mxdkim.Dns(st.path("etc", "keys.txt"))
    key_path, _ = mxdkim.keygen(st, keys, "vendor.test", "sel", "rsa", 2048)
    key = open(key_path, "rb").read()
    weak_pem, weak_txt = weak_key()
    idn_path, _ = mxdkim.keygen(st, keys, IDN, "idn", "rsa", 2048)
    idn_key = open(idn_path, "rb").read()
    knot = Knot(st, zones(keys.records["sel._domainkey.vendor.test"], weak_txt,
                          keys.records["idn._domainkey." + IDN]))
    knot.start()
    st.dkimdns = keys.dnsfunc
    proc, port, conf = mxdkim.start_milter(st, "milter", CONF.format(port="{port}",
                                                                     dns=knot.servers))
    mxdkim.start_receiver(st, port)
    test_body_length(st, key)
    test_weak(st, key, weak_pem)
    test_prepended(st, key)
    test_unreadable_from(st)
    test_lenient_from(st)
    test_unsure_from(st)
    test_lenient_property(st)
    test_idn_from(st, idn_key)
    test_readable_from(st)
    test_spf_macros(st, proc)
    vendor = mxdkim.start_vendor(st, key_path, VENDOR_CONF, st.port("postfix-smtp"))
    test_signer(st, vendor, knot)
    test_unreadable_dns_down(st, knot)
    tap.ok(proc.poll() is None, "milter-dkim is still running")

sys.exit(tap.done())
