#!/usr/bin/python3
"""milter-dkim attacked from outside (a hostile sender, an unlucky
operator), through real Postfix (submission with SASL, smtp-sink as the
receiver) and checked with dkimpy -- cases the hostile, faults and basic
tests do not cover:

  1. lines past RFC 5322's 998 octets in what the milter signs: Postfix's
     smtp client breaks them after the milter (smtp_line_length_limit,
     CRLF SPACE inserted), so the receiver got a signature that fails
     (00f9dfc..c2f08e2 signed them: dkimpy "body hash mismatch" / failed
     signature). Now refused 550 5.6.0 and logged: a 999-octet signed
     header (first line or a fold), body line (a CRLF line, a bare-CR line,
     a last line without CRLF, one across libmilter's 64 KB chunks); a
     998-octet line and a 2,200-octet header nobody signs are signed and
     verify; a header nobody signs whose name (with the colon) is past
     998 octets is refused too (Postfix breaks the name: the next reader
     sees no From: and every signature fails), one of 998 is signed;
     property (hypothesis): for body and Cc: lines of random lengths
     around the limit, the message is refused exactly when one is past
     998, and otherwise both signatures verify with dkimpy;
  2. odd but valid forms dkimpy and libopendkim could read apart: a body
     of only CRLFs, no body at all, empty and whitespace-only header
     values, no space or a tab after the colon, upper-case names,
     trailing whitespace and folds, 8-bit header and body, a duplicate
     Subject: -- all signed, all verify;
  3. state across transactions of one SMTP session: a message refused
     (foreign From:, long line), then RSET, then a good one on the same
     connection: the good one is signed for its own From: and verifies,
     and the refused ones reached nobody;
  4. inbound: a From: put on top of a partner's signed message (h= names
     From once): libopendkim verifies the bottom From: and the old code
     wrote dkim=pass header.d=partner.example, while the first From: (the
     one a reader sees) is the attacker's; dkimpy fails it. Now dkim=fail
     with the reason; property (hypothesis): over signed header sets and
     added/altered headers and body, our one A-R says pass exactly when
     dkimpy verifies (and no once-only header h= names was put on top:
     stricter than dkimpy);
  5. signed 8-bit mail (Content-Transfer-Encoding: 8bit) to a next hop
     that does not announce 8BITMIME (smtp-sink -8): Postfix's smtp client
     re-encoded it as quoted-printable after the milter, body hash
     mismatch at the receiver. The main.cf of doc/milter-dkim.md now sets
     disable_mime_output_conversion = yes (nothing the milter itself can
     do: Postfix changes the message after end of message), and with it
     the message arrives as signed and verifies;
  6. the unlucky operator: a key only root can read with user = nobody.
     -t said OK and the daemon started (as root), then every SIGHUP failed
     as nobody; now -t and the start refuse it, naming the key, and accept
     it once nobody can read it (a reload as nobody then works).
  7. a signed header that reaches Postfix's 60,000-byte cut for milters
     (helper-126): cleanup cuts a header there as mail arrives and again
     as it hands it to the milter, so one its rewriting lengthened in
     between (@$myorigin on unqualified addresses, canonical_maps) was
     signed as the milter saw it and delivered longer: every signature
     failed. Now 550 5.6.0 and a log line, nothing delivered; a Subject
     of 59,997 bytes (name, colon, value, LF between lines) is signed and
     verifies, 59,998 is refused (a margin of 2 below 60,000), and so is
     59,997 with more lines (Postfix adds one, to 60,000); 91 KB of
     qualified addresses, cut on arrival (the milter and the recipient
     see the same 59,933 bytes), and an unsigned header of 100 KB sign.
"""

import os
import pwd
import re
import shutil
import signal
import smtplib
import subprocess
import sys
import tempfile
import time
import uuid

import dkim
from hypothesis import given, settings, strategies as hs, HealthCheck

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from mxstack import Stack  # noqa: E402
from mxtest import src_path, tap, wait_for  # noqa: E402
import mxdkim  # noqa: E402
import mxpolicy as mp  # noqa: E402

CONF = """\
socket = inet:{port}@127.0.0.1
mode = sign, verify
key_table = {dir}/etc/key.table
signing_table = refile:{dir}/etc/signing.table
sender_binding = {dir}/etc/sender_binding
dns_test_file = {dir}/etc/dns.txt
authserv_id = mx.mxkit.test
"""
HEAD = (b"From: Alerts <alerts@planapulse.ai>\r\nTo: <cust@example.net>\r\n"
        b"Subject: token-TOKEN\r\nDate: Sun, 22 Nov 2026 10:00:00 +0000\r\n"
        b"Message-ID: <TOKEN@planapulse.ai>\r\n")
REFUSED = "Line longer than 998 octets"


def write(st, name, text):
    with open(st.path("etc", name), "w") as f:
        f.write(text)


def make(head, body):
    token = uuid.uuid4().hex
    return token, head.replace(b"TOKEN", token.encode()) + b"\r\n" + body


def send(s, raw):
    """(code, text) of one transaction on an open, logged-in connection."""
    try:
        s.sendmail("alerts@planapulse.ai", ["cust@example.net"], raw)
        return 250, ""
    except smtplib.SMTPResponseException as e:
        s.rset()
        return e.smtp_code, e.smtp_error.decode(errors="replace")


def submit(st, raw):
    s = mp.login(st, "svc-alerts")
    try:
        return send(s, raw)
    finally:
        s.quit()


def sunk(st, token, timeout=30):
    found = wait_for(lambda: [m for m in st.sink_messages() if token in m], timeout=timeout)
    return mxdkim.crlf(mxdkim.strip_sink_headers(found[0])) if found else b""


def verify_all(msg, dns):
    """dkimpy's verdict on each DKIM-Signature (an exception counts as False)."""
    try:
        d = dkim.DKIM(msg)
    except Exception:                   # a header dkimpy cannot parse
        return [False]
    out = []
    for i in range(len(re.findall(rb"^DKIM-Signature:", msg, re.M | re.I))):
        try:
            out.append(d.verify(idx=i, dnsfunc=dns.dnsfunc))
        except Exception:
            out.append(False)
    return out


def signed_and_verifies(st, dns, head, body, name):
    token, raw = make(head, body)
    code, text = submit(st, raw)
    msg = sunk(st, token) if code == 250 else b""
    results = verify_all(msg, dns) if msg else None
    tap.ok(code == 250 and results == [True, True],
           "%s: signed, both signatures verify (dkimpy)" % name,
           diag="%s %s dkimpy: %r" % (code, text, results))
    return msg


def refused(st, dns, head, body, name, where):
    token, raw = make(head, body)
    code, text = submit(st, raw)
    if code == 250:                     # what the receiver got instead
        msg = sunk(st, token)
        text = "signed, dkimpy: %r" % (verify_all(msg, dns) if msg else None)
    tap.ok(code == 550 and text.startswith("5.6.0 " + REFUSED),
           "%s: 550 5.6.0, not a signature the receiver will find broken" % name,
           diag="%s %s" % (code, text))
    tap.ok(wait_for(lambda: re.search(r"a line of \d+ octets in the %s \(more than 998\) "
                                      r"would be broken in transit" % where,
                                      st.read_log("milter")), timeout=5),
           "%s: the refusal is logged with where the line is" % name)
    return token


def test_long_lines(st, dns):
    refused_tokens = []
    signed_and_verifies(st, dns, HEAD + b"Cc: " + b"b" * 994 + b"\r\n", b"x\r\n",
                        "a signed header line of 998 octets")
    signed_and_verifies(st, dns, HEAD, b"a" * 998 + b"\r\n", "a body line of 998 octets")
    signed_and_verifies(st, dns, HEAD + b"X-Long: " + b"aaaaaaaa@example.net, " * 100
                        + b"\r\n", b"x\r\n", "a 2,200-octet header that is not signed")
    signed_and_verifies(st, dns, HEAD + b"X-" + b"n" * 995 + b": " + b"v" * 500 + b"\r\n",
                        b"x\r\n", "an unsigned header whose name and colon are 998 octets")
    for name, head, body, where in (
            ("a signed Cc: line of 999 octets", HEAD + b"Cc: " + b"b" * 995 + b"\r\n",
             b"x\r\n", "Cc header"),
            ("a signed Cc: of 2,200 octets with spaces",
             HEAD + b"Cc: " + b"aaaaaaaa@example.net, " * 100 + b"\r\n", b"x\r\n",
             "Cc header"),
            ("a signed header's second fold of 999 octets",
             HEAD + b"Cc: x\r\n " + b"b" * 998 + b"\r\n", b"x\r\n", "Cc header"),
            ("an upper-case SUBJECT: of 999 octets",
             HEAD.replace(b"Subject: token-TOKEN", b"SUBJECT: token-TOKEN " + b"s" * 951),
             b"x\r\n", "SUBJECT header"),
            # helper-99: Postfix broke the name, the next reader saw a
            # line without a colon (no From: after it), every signature failed
            ("an unsigned header whose name is 1,202 octets",
             HEAD + b"X-" + b"n" * 1200 + b": v\r\n", b"x\r\n", "X-" + "n" * 1200 + " header"),
            ("an unsigned header whose name and colon are 999 octets",
             HEAD + b"X-" + b"n" * 996 + b":v\r\n", b"x\r\n", "X-" + "n" * 996 + " header"),
            ("a body line of 999 octets", HEAD, b"a" * 999 + b"\r\n", "body"),
            ("a body line of 999 octets with a bare CR", HEAD, b"a" * 997 + b"\rb\r\n",
             "body"),
            ("a last body line of 999 octets without CRLF", HEAD, b"ok\r\n" + b"a" * 999,
             "body"),
            ("a 5,000-octet body line across a 64 KB chunk boundary", HEAD,
             b"x" * 63000 + b"\r\n" + b"a" * 5000 + b"\r\nend\r\n", "body")):
        refused_tokens.append(refused(st, dns, head, body, name, where))
    # Nothing refused reached the receiver.
    sink = "".join(st.sink_messages())
    tap.is_([t for t in refused_tokens if t in sink], [],
            "no refused message reached the receiver")


def test_length_property(st, dns):
    conn = [mp.login(st, "svc-alerts")]
    failures = []
    seen = {"refused": 0, "signed": 0}

    @settings(max_examples=30, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(hs.lists(hs.integers(0, 1010), min_size=1, max_size=4),
           hs.integers(980, 1010), hs.booleans())
    def check(body_lines, cc_len, cc_folded):
        cc = (b"Cc: x\r\n " + b"c" * (cc_len - 1)) if cc_folded else (b"Cc: " + b"c" * (cc_len - 4))
        body = b"".join(b"q" * n + b"\r\n" for n in body_lines)
        token, raw = make(HEAD + cc + b"\r\n", body)
        try:
            code, text = send(conn[0], raw)
        except smtplib.SMTPServerDisconnected:
            conn[0] = mp.login(st, "svc-alerts")
            code, text = send(conn[0], raw)
        too_long = max(body_lines) > 998 or cc_len > 998
        if too_long:
            seen["refused"] += 1
            if code != 550:
                failures.append((body_lines, cc_len, cc_folded, code, text))
            return
        seen["signed"] += 1
        msg = sunk(st, token) if code == 250 else b""
        results = verify_all(msg, dns) if msg else None
        if results != [True, True]:
            failures.append((body_lines, cc_len, cc_folded, code, text, results))

    check()
    conn[0].quit()
    tap.is_(failures, [], "property: refused exactly when a signed line is past 998 octets, "
            "otherwise both signatures verify (%d refused, %d signed)"
            % (seen["refused"], seen["signed"]))
    tap.ok(seen["refused"] >= 5 and seen["signed"] >= 5, "both outcomes were exercised",
           diag=repr(seen))


def test_odd_forms(st, dns):
    for name, head, body in (
            ("a body of only CRLFs", HEAD, b"\r\n\r\n\r\n"),
            ("no body at all", HEAD, b""),
            ("empty and whitespace-only header values", HEAD + b"Cc:\r\nReply-To:   \r\n"
             b"X-G:\t\r\n", b"x\r\n"),
            ("no space after the colon", HEAD.replace(b"To: ", b"To:"), b"x\r\n"),
            ("a tab after the colon", HEAD.replace(b"To: ", b"To:\t"), b"x\r\n"),
            ("upper-case header names", HEAD.replace(b"From:", b"FROM:")
             .replace(b"Subject:", b"SUBJECT:"), b"x\r\n"),
            ("trailing whitespace and an empty first line of a fold",
             HEAD.replace(b"Date: Sun", b"Date:   Sun") + b"Cc:\r\n b@example.net   \r\n"
             b"  c@example.net  \r\n", b"x  \r\n\t\r\n"),
            ("8-bit header and body", HEAD + b"Reply-To: Caf\xc3\xa9 <r@planapulse.ai>\r\n",
             b"Caf\xc3\xa9 \xe2\x82\xac\r\n"),
            ("a second Subject", HEAD + b"Subject: second\r\n", b"x\r\n")):
        signed_and_verifies(st, dns, head, body, name)


def test_session_state(st, dns):
    s = mp.login(st, "svc-alerts")
    bad_from = HEAD.replace(b"<alerts@planapulse.ai>", b"<ceo@planapulse.ai>")
    t1, raw1 = make(bad_from, b"x\r\n")
    t2, raw2 = make(HEAD, b"a" * 1200 + b"\r\n")
    t3, raw3 = make(HEAD.replace(b"From: Alerts", b"From: Second"), b"fine\r\n")
    c1, c2 = send(s, raw1), send(s, raw2)
    s.rset()
    c3 = send(s, raw3)
    s.quit()
    tap.is_((c1[0], c2[0], c3[0]), (550, 550, 250),
            "one session: foreign From: 550, long line 550, RSET, then a good message 250")
    msg = sunk(st, t3)
    tap.is_(verify_all(msg, dns) if msg else None, [True, True],
            "the good message after two refusals is signed and verifies")
    tap.ok(b"From: Second <alerts@planapulse.ai>" in msg, "with its own From:")
    sink = "".join(st.sink_messages())
    tap.ok(t1 not in sink and t2 not in sink,
           "neither refused message reached the receiver")


def inbound(st, raw, token):
    """Raw bytes on port 25 from an outside address (XCLIENT); the copy in
    alice's mailbox."""
    s = smtplib.SMTP("127.0.0.1", st.port("postfix-smtp"), timeout=60)
    s.ehlo("mail.example.org")
    s.docmd("XCLIENT", "ADDR=203.0.113.5 NAME=mail.example.org")
    s.ehlo("mail.example.org")
    s.sendmail("sender@example.org", ["alice@mxkit.test"], raw)
    s.quit()
    found = wait_for(lambda: [m for m in st.maildir_messages("alice@mxkit.test")
                              if token.encode() in m], timeout=30)
    return found[0] if found else b""


def our_results(msg):
    """The dkim= results of our one A-R (None unless exactly one)."""
    ars = re.findall(rb"^Authentication-Results:[ \t]*mx\.mxkit\.test;(.*\n(?:[ \t].*\n)*)",
                     msg.replace(b"\r\n", b"\n"), re.M)
    return re.findall(rb"dkim=(\w+)", ars[0]) if len(ars) == 1 else None


def partner_message(token):
    return (b"From: Partner <news@partner.example>\r\nTo: alice@mxkit.test\r\n"
            b"Subject: token-" + token.encode() + b"\r\nDate: Sun, 22 Nov 2026 10:00:00 "
            b"+0000\r\n\r\nPay invoice 4711.\r\n")


EXTRA_FROM = b"From: CEO <ceo@partner.example>\r\n"
MUTATIONS = {
    "From: on top": lambda r: EXTRA_FROM + r,
    "From: at the bottom": lambda r: r.replace(b"\r\n\r\n", b"\r\n" + EXTRA_FROM + b"\r\n", 1),
    "Subject: on top": lambda r: b"Subject: pay now\r\n" + r,
    "To: on top": lambda r: b"To: bob@mxkit.test\r\n" + r,
    "a body line appended": lambda r: r + b"Account: 666\r\n",
    "Subject: refolded": lambda r: r.replace(b"Subject: token", b"Subject:\r\n  token", 1),
}


def test_inbound_from(st, dns, pkey):
    """A From: put on top of a partner's validly signed message (h=from,
    not oversigned): libopendkim hashes the bottom From: and said
    dkim=pass, header.d=partner.example, over a message whose first From:
    is the attacker's; dkimpy fails it. Our result now agrees with dkimpy."""
    token = uuid.uuid4().hex
    raw = partner_message(token)
    raw = dkim.sign(raw, b"p2026", b"partner.example", pkey,
                    include_headers=[b"from", b"subject"]) + raw
    msg = inbound(st, EXTRA_FROM + raw, token)
    tap.is_(our_results(msg), [b"fail"], "a From: on top of a signed message: dkim=fail "
            "(the old code: pass)", diag=repr(msg[:1500]))
    tap.ok(b"(a From: header the signature does not cover)" in msg, "with the reason")
    tap.is_(dkim.DKIM(msg).verify(dnsfunc=dns.dnsfunc), False, "dkimpy fails it too")

    results = []

    @settings(max_examples=25, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(hs.sampled_from([[b"from", b"subject"], [b"from", b"from", b"subject"],
                            [b"from", b"to", b"subject"], [b"subject", b"from", b"date"]]),
           hs.lists(hs.sampled_from(sorted(MUTATIONS)), max_size=2, unique=True))
    def check(signed, mutations):
        token = uuid.uuid4().hex
        raw = partner_message(token)
        raw = dkim.sign(raw, b"p2026", b"partner.example", pkey, include_headers=signed) + raw
        for m in mutations:
            raw = MUTATIONS[m](raw)
        msg = inbound(st, raw, token)
        ours = our_results(msg)
        try:
            theirs = dkim.DKIM(msg).verify(dnsfunc=dns.dnsfunc)
        except Exception:
            theirs = False
        results.append((signed, mutations, ours, theirs))

    check()
    # stricter than dkimpy: a header RFC 5322 allows once, named in h= and
    # put on top again, fails (milter_dkim_auth_attack_test)
    on_top = {"Subject: on top": b"subject", "To: on top": b"to"}
    bad = [r for r in results if r[2] != ([b"pass"] if r[3] and not any(
        on_top.get(m) in r[0] for m in r[1]) else [b"fail"])]
    tap.is_(bad, [], "property: our one A-R says pass exactly when dkimpy verifies and no "
            "once-only header h= names was put on top, fail otherwise (%d messages)"
            % len(results))
    tap.ok(sum(r[3] for r in results) >= 3 and sum(not r[3] for r in results) >= 3,
           "both outcomes were exercised")


def mime_bill(token):
    """A partner's multipart bill whose signed text quotes a part
    delimited by EVIL (text its sender could influence: a quoted reply)."""
    return (b"From: Partner <news@partner.example>\r\nTo: alice@mxkit.test\r\n"
            b"Subject: token-" + token.encode() + b"\r\nDate: Sun, 22 Nov 2026 10:00:00 "
            b"+0000\r\nMIME-Version: 1.0\r\nContent-Transfer-Encoding: 7bit\r\n"
            b"Content-Type: multipart/mixed; boundary=REAL\r\n\r\n--REAL\r\nContent-Type: text/plain\r\n\r\nYou wrote:\r\n"
            b"--EVIL\r\nContent-Type: application/pdf; name=invoice.pdf\r\n\r\n"
            b"%PDF-1.4 pay IBAN XX00EVIL\r\n--EVIL--\r\n--REAL\r\nContent-Type: "
            b"application/pdf; name=real.pdf\r\nContent-Disposition: attachment; "
            b"filename=real.pdf\r\n\r\n%PDF-1.4 real\r\n--REAL--\r\n")


MIME_ON_TOP = {
    "Content-Type": b"Content-Type: multipart/mixed; boundary=EVIL\r\n",
    "MIME-Version": b"MIME-Version: 1.0\r\n",
    "Content-Transfer-Encoding": b"Content-Transfer-Encoding: base64\r\n",
    "Content-Disposition": b"Content-Disposition: attachment; filename=invoice.pdf\r\n",
}


def test_inbound_mime(st, dns, pkey):
    """A MIME header put on top of a partner's signed bill (h= names it
    once): libopendkim hashes the bottom one and said dkim=pass, while
    readers, Dovecot and the webhook's attachment list read the top one
    (a Content-Type with boundary EVIL made the quoted part the bill's
    attachment). Now dkim=fail with the reason, for each MIME header."""
    names = [b"from", b"subject", b"date", b"to", b"mime-version", b"content-type",
             b"content-disposition", b"content-transfer-encoding"]
    token = uuid.uuid4().hex
    raw = mime_bill(token)
    raw = dkim.sign(raw, b"p2026", b"partner.example", pkey, include_headers=names) + raw
    tap.is_(our_results(inbound(st, raw, token)), [b"pass"], "the signed MIME bill as sent: "
            "dkim=pass")
    for name, extra in sorted(MIME_ON_TOP.items()):
        token = uuid.uuid4().hex
        raw = mime_bill(token)
        if name == "Content-Disposition":       # a part of one: the PDF is the message
            raw = raw.replace(b"Content-Type: multipart/mixed; boundary=REAL",
                              b"Content-Type: application/pdf; name=real.pdf\r\n"
                              b"Content-Disposition: attachment; filename=real.pdf", 1)
        raw = dkim.sign(raw, b"p2026", b"partner.example", pkey, include_headers=names) + raw
        tap.ok(re.search(rb"h=[^;]*" + name.lower().encode(), re.sub(rb"\s", b"", raw)),
               "%s: the partner's signature names it" % name)
        msg = inbound(st, extra + raw, token)
        tap.is_(our_results(msg), [b"fail"], "%s on top of a signed bill: dkim=fail (the "
                "old code: pass)" % name, diag=repr(msg[:1200]))
        tap.ok(("(a %s: header the signature does not cover)" % name).encode()
               in re.sub(rb"\s+", b" ", msg), "%s: with the reason" % name,
               diag=repr(msg[:1200]))


def test_header_a(st, dns, pkey):
    """An rsa-sha256 signature libopendkim refuses before reading it (t=
    in the future) was reported header.a=rsa-sha1 (its unset algorithm):
    our A-R now names the signature's own a=."""
    token = uuid.uuid4().hex
    raw = partner_message(token)
    sig = dkim.sign(raw, b"p2026", b"partner.example", pkey, include_headers=[b"from"])
    sig = re.sub(rb"t=\d+", b"t=9999999999", sig, count=1)
    msg = inbound(st, sig + raw, token)
    ar = re.sub(rb"\s+", b" ", re.search(rb"^Authentication-Results: mx\.mxkit\.test;"
                                       rb".*\n(?:[ \t].*\n)*", msg.replace(b"\r\n", b"\n"),
                                       re.M).group(0))
    tap.ok(b"header.a=rsa-sha256" in ar and re.search(rb"dkim=(policy|permerror|fail)", ar),
           "a signature with t= in the future: not a pass, header.a=rsa-sha256 as it says "
           "(the old code: rsa-sha1)", diag=repr(ar))


def test_oversigned_mime(st, dns):
    """Our own signatures oversign MIME-Version, Content-Type,
    Content-Transfer-Encoding and Content-Disposition (default
    oversign_headers): such a header put on top later breaks them at any
    receiver (dkimpy), with or without the header in the message."""
    mime = (b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=REAL\r\n")
    body = (b"--REAL\r\nContent-Type: text/plain\r\n\r\nquoted:\r\n--EVIL\r\n"
            b"Content-Type: application/pdf\r\n\r\n%PDF-1.4 evil\r\n--EVIL--\r\n--REAL--\r\n")
    for label, head, text in (("a MIME message", HEAD + mime, body),
                              ("a message without MIME headers", HEAD, b"plain\r\n")):
        msg = signed_and_verifies(st, dns, head, text, label)
        sigs = [re.sub(rb"\s", b"", h) for h in re.findall(
            rb"^DKIM-Signature:(.*\r\n(?:[ \t].*\r\n)*)", msg, re.M)]
        for name in (b"mime-version", b"content-type", b"content-transfer-encoding",
                     b"content-disposition"):
            want = (b"\n" + msg.split(b"\r\n\r\n", 1)[0].lower()).count(
                b"\n" + name + b":") + 1
            got = [len(re.findall(rb"[=:]" + name + rb"(?=[:;])",
                                  re.search(rb"h=[^;]*;", sig).group(0)))
                   for sig in sigs]
            tap.is_(got, [want, want], "%s: both signatures name %s once more than it "
                    "occurs" % (label, name.decode()))
        for name, extra in sorted(MIME_ON_TOP.items()):
            tap.is_(verify_all(extra + msg, dns), [False, False],
                    "%s with a %s: on top: both signatures fail (dkimpy)" % (label, name))


def documented_main_cf():
    """The Postfix main.cf block of doc/milter-dkim.md's quick start."""
    with open(src_path("doc", "milter-dkim.md")) as f:
        doc = f.read()
    block = re.search(r"Postfix \(`main\.cf`\).*?```\n(.*?)```", doc, re.S).group(1)
    params = {}
    for line in block.splitlines():
        line = line.split("#", 1)[0].strip()
        if "=" in line:
            key, value = line.split("=", 1)
            params[key.strip()] = value.strip()
    return params


def test_mime_conversion(st, dns, milter_port):
    """Signed 8-bit mail to a next hop without 8BITMIME (smtp-sink -8):
    Postfix's smtp client re-encoded it as quoted-printable after the
    milter (body hash mismatch). The main.cf the docs give keeps it as
    signed."""
    port = st.port("sink7")
    d = st.path("sink7")
    os.makedirs(d, exist_ok=True)
    shutil.chown(d, "postfix", "postfix")
    proc = st._spawn("sink7", ["smtp-sink", "-8", "-u", "postfix", "-d", d + "/%M.", "-c",
                               "127.0.0.1:%d" % port, "16"], st.path("log", "sink7.log"))
    st._ready("sink7", port, proc)
    params = documented_main_cf()
    tap.ok(params.get("disable_mime_output_conversion") == "yes",
           "doc/milter-dkim.md's main.cf sets disable_mime_output_conversion = yes",
           diag=repr(params))
    params.update({"smtpd_milters": "inet:127.0.0.1:%d" % milter_port,
                   "non_smtpd_milters": "$smtpd_milters",
                   "transport_maps": "inline:{seven.example=smtp:[127.0.0.1]:%d}" % port})
    st.start_postfix("pf7", main=params)
    token = uuid.uuid4().hex
    raw = (b"From: Alerts <alerts@planapulse.ai>\r\nTo: cust@seven.example\r\nSubject: "
           + token.encode() + b"\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; "
           b"charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nCaf\xc3\xa9 "
           b"\xe2\x82\xac 100\r\n")
    s = smtplib.SMTP("127.0.0.1", st.port("pf7-smtp"), timeout=60)   # internal: signed
    s.sendmail("alerts@planapulse.ai", ["cust@seven.example"], raw)
    s.quit()

    def arrived():
        for name in os.listdir(d):
            with open(os.path.join(d, name), "rb") as f:
                data = f.read()
            if token.encode() in data:
                return data
    got = wait_for(arrived, timeout=30) or b""
    msg = mxdkim.crlf(mxdkim.strip_sink_headers(got.decode("latin-1")).encode("latin-1"))
    tap.ok(b"Caf\xc3\xa9 \xe2\x82\xac 100" in msg and b"DKIM-Signature" in msg,
           "the next hop without 8BITMIME got the 8-bit body as signed", diag=repr(msg[-300:]))
    tap.is_(verify_all(msg, dns) if msg else None, [True, True],
            "and both signatures verify (dkimpy)")


CUT = "Header too long to be signed and delivered intact"


def test_header_cut(st, dns, milter_port):
    """7. Postfix with its header rewriting on (every client, as for
    local submissions) and a canonical_maps that lengthens addresses."""
    cmap = st.path("etc", "canonical.regexp")
    write(st, "canonical.regexp", "/^(r+)@lists\\.example$/ ${1}@mailing-lists.subsidiary.example\n")
    st.start_postfix("pf8", main={"smtpd_milters": "inet:127.0.0.1:%d" % milter_port,
                                  "milter_default_action": "tempfail",
                                  "local_header_rewrite_clients": "static:all",
                                  "canonical_maps": "regexp:" + cmap,
                                  "canonical_classes": "header_sender, header_recipient"})

    def submit8(head, body=b"x\r\n"):
        token, raw = make(head, body)
        s = smtplib.SMTP("127.0.0.1", st.port("pf8-smtp"), timeout=120)  # internal: signed
        try:
            s.sendmail("alerts@planapulse.ai", ["cust@example.net"], raw)
            code, text = 250, ""
        except smtplib.SMTPResponseException as e:
            code, text = e.smtp_code, e.smtp_error.decode(errors="replace")
        s.quit()
        return token, code, text

    def subject(size, more=b""):
        first = b"Subject: token-TOKEN"        # TOKEN: 32 hex digits once sent
        k = (size - len(first) - 27 - 500) // 3
        pad = size - (len(first) + 27) - 3 * k - 2
        return HEAD.replace(first, first + b"\r\n s" * k + b"\r\n " + b"p" * pad + more)

    def reply_to(addr, n):
        return b"Reply-To: " + b",\r\n ".join([addr] * n) + b"\r\n"

    refused_tokens = []
    for name, head, signs in (
            ("a Reply-To of 700 unqualified addresses (51 KB, 59 KB rewritten)",
             HEAD + reply_to(b"r" * 70, 700), True),
            ("a Reply-To of 760 unqualified addresses (56 KB, past 60,000 rewritten)",
             HEAD + reply_to(b"r" * 70, 760), False),
            ("a Reply-To of 760 addresses canonical_maps lengthens (50 KB sent)",
             HEAD + reply_to(b"r" * 50 + b"@lists.example", 760), False),
            # cut on arrival to 59,933 bytes: what the milter and the
            # recipient get alike (Postfix's doing, as without a milter)
            ("a Reply-To of 1,200 qualified addresses (91 KB, cut on arrival)",
             HEAD + reply_to(b"r" * 60 + b"@example.net", 1200), True),
            # "Subject:" and its value, LF between lines: Postfix cuts once
            # its count (this + 2) is 60,000 before it appends a line
            ("a Subject of 59,997 bytes", subject(59997), True),
            ("a Subject of 59,998 bytes", subject(59998), False),
            ("a Subject of 59,997 bytes and 5 more lines: Postfix cuts it after one",
             subject(59997, b"\r\n s" * 5), False),
            ("an unsigned X-Big of 100 KB", HEAD + b"X-Big: "
             + b"\r\n ".join([b"y" * 70] * 1400) + b"\r\n", True)):
        token, code, text = submit8(head)
        if signs:
            msg = sunk(st, token) if code == 250 else b""
            tap.is_((code, verify_all(msg, dns) if msg else None), (250, [True, True]),
                    "%s: signed, both signatures verify (dkimpy)" % name, diag=text)
            continue
        refused_tokens.append(token)
        if code == 250:
            msg = sunk(st, token)
            text = "signed, dkimpy: %r" % (verify_all(msg, dns) if msg else None)
        tap.ok(code == 550 and text.startswith("5.6.0 " + CUT),
               "%s: 550 5.6.0, not a signature every receiver fails" % name,
               diag="%s %s" % (code, text))
    tap.ok(wait_for(lambda: re.search(r"a Reply-To header of \d+ bytes reaches the size at "
                                      r"which Postfix cuts headers for milters \(60,000\)",
                                      st.read_log("milter")), timeout=5),
           "the refusal is logged, naming the header and its size")
    sink = "".join(st.sink_messages())
    tap.is_([t for t in refused_tokens if t in sink], [],
            "no refused message reached the receiver")


def test_check_user(st):
    """Keys only root can read, user = nobody: the daemon started (as
    root) and -t said OK, then every SIGHUP failed as nobody ("cannot open
    the key file"), so a rotated key never took effect. -t and the start
    now load it all a second time as the user and refuse."""
    box = tempfile.mkdtemp(prefix="mxkit-attack-user.")
    try:
        os.chmod(box, 0o755)
        dns = mxdkim.Dns(os.path.join(box, "dns.txt"))
        res = subprocess.run([mxdkim.KEYGEN, "-d", "planapulse.ai", "-s", "u1", "-t", "rsa",
                              "-b", "1024", "-D", box], capture_output=True, text=True)
        dns.add_bind(res.stdout)
        key = os.path.join(box, "u1.private")
        for name, text in (("key.table", "u1 planapulse.ai:u1:%s\n" % key),
                           ("signing.table", "*@planapulse.ai u1\n")):
            with open(os.path.join(box, name), "w") as f:
                f.write(text)
        conf = os.path.join(box, "m.conf")
        with open(conf, "w") as f:
            f.write("socket = inet:%d@127.0.0.1\nkey_table = %s/key.table\n"
                    "signing_table = %s/signing.table\nuser = nobody\n"
                    "authserv_id = mx.mxkit.test\n" % (st.port("milter-user"), box, box))
        tap.is_(oct(os.stat(key).st_mode & 0o777), "0o600", "the key is root's, mode 0600")
        want = "as user nobody, which every reload (SIGHUP) runs as, the configuration " \
               "does not load"
        res = subprocess.run([mxdkim.MILTER, "-t", "-c", conf], capture_output=True, text=True)
        tap.ok(res.returncode == 1 and want in res.stderr
               and "u1.private: cannot open the key file" in res.stderr,
               "-t refuses a key the user cannot read, naming it", diag=res.stdout + res.stderr)
        try:
            res = subprocess.run([mxdkim.MILTER, "-f", "-c", conf], capture_output=True,
                                 text=True, timeout=10)
            started = (res.returncode, res.stderr)
        except subprocess.TimeoutExpired as e:
            started = ("still running after 10 s", e.stderr)
        tap.ok(started[0] == 1 and want in (started[1] or ""),
               "the daemon refuses to start with it too", diag=repr(started))
        os.chown(key, pwd.getpwnam("nobody").pw_uid, -1)
        res = subprocess.run([mxdkim.MILTER, "-t", "-c", conf], capture_output=True, text=True)
        tap.is_(res.returncode, 0, "-t accepts it once nobody can read it",
                diag=res.stdout + res.stderr)
        proc = subprocess.Popen([mxdkim.MILTER, "-f", "-c", conf], stderr=subprocess.PIPE,
                                text=True)
        time.sleep(1)
        proc.send_signal(signal.SIGHUP)
        time.sleep(1)
        proc.terminate()
        err = proc.communicate(timeout=10)[1]
        tap.ok("configuration reloaded: 1 keys" in err, "and a reload as nobody works",
               diag=err)
    finally:
        shutil.rmtree(box, ignore_errors=True)


with Stack("milter-dkim-attack") as st:
    tap.stack = st
    st.start_dovecot()
    st.start_sink()
    dns = mxdkim.Dns(st.path("etc", "dns.txt"))
    mxdkim.keygen(st, dns, "planapulse.ai", "rsa2026", "rsa", 1024)
    mxdkim.keygen(st, dns, "planapulse.ai", "ed2026", "ed25519")
    partner_path, _ = mxdkim.keygen(st, dns, "partner.example", "p2026", "rsa", 1024)
    write(st, "key.table", "rsa planapulse.ai:rsa2026:%s/keys/rsa2026.private\n"
          "ed planapulse.ai:ed2026:%s/keys/ed2026.private\n" % (st.dir, st.dir))
    write(st, "signing.table", "*@planapulse.ai rsa,ed\n")
    write(st, "sender_binding", "svc-alerts  alerts@planapulse.ai\n")
    proc, port, conf = mxdkim.start_milter(st, "milter", CONF)
    milter = {"smtpd_milters": "inet:127.0.0.1:%d" % port, "milter_default_action": "tempfail",
              "local_header_rewrite_clients": "", "smtpd_error_sleep_time": "0",
              "smtpd_soft_error_limit": "1000", "smtpd_hard_error_limit": "1000"}
    st.start_postfix(main={"smtpd_authorized_xclient_hosts": "127.0.0.0/8"},
                     submission=milter, smtpd=milter)
    test_long_lines(st, dns)
    test_length_property(st, dns)
    test_odd_forms(st, dns)
    test_session_state(st, dns)
    test_inbound_from(st, dns, open(partner_path, "rb").read())
    test_inbound_mime(st, dns, open(partner_path, "rb").read())
    test_oversigned_mime(st, dns)
    test_header_a(st, dns, open(partner_path, "rb").read())
    test_mime_conversion(st, dns, port)
    test_header_cut(st, dns, port)
    test_check_user(st)
    tap.ok(proc.poll() is None, "milter-dkim is still running")

sys.exit(tap.done())
