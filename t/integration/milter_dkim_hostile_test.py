#!/usr/bin/python3
"""milter-dkim from the attacker's side (issue 14, items 2, 3, 12), through
real Postfix, Dovecot and smtp-sink, checked with dkimpy and Python's email
package:

  1. forged Authentication-Results claiming our authserv-id, at counts
     across the old fixed limit (1, 31, 32, 33, 200, 1000), are all removed on
     verified mail: exactly one A-R of ours reaches the mailbox, every
     foreign one is kept, and the removal is logged with its count; over
     1000 (1001, 10,000) the message is refused at once (550);
  2. every RFC 8601 form of our id (comment before it, quoted, quoted-pair,
     upper case, trailing dot, version number, folded, WSP before the
     colon, lower-case name) and unreadable ids (encoded word, tspecial,
     unclosed comment, 8-bit) are removed; a look-alike foreign id is kept;
     a bill with all of them and 60 more, through Dovecot's lmtp-webhook:
     the event carries exactly our one A-R;
     property (hypothesis): an A-R reaches the mailbox exactly when an
     RFC 8601 reading finds a foreign authserv-id, and no careless reader
     (first word; encoded words decoded, comments dropped) finds ours;
  3. forged A-R on mail the milter signs, on internal mail it neither
     signs nor verifies, and on mail a bound user may not send unsigned,
     are removed too;
  4. sender_binding reads From: strictly: an addr-spec as display name,
     text after the angle address, a group, two From:, none, an RFC 2047
     encoded word in the address (Python decodes it) -- 550 for a
     bound user; the valid forms (comments, folding, quoted local part)
     are signed and verify;
     a display name that shows an address once unquoted or RFC 2047
     decoded ("ceo@x" <a@y>, "<ceo@x>" <a@y>, =?utf-8?q?ceo=40x?= <a@y>,
     a B-encoded "CEO <ceo@x>") -- 550 for a bound user;
  5. property (hypothesis): for any generated From: header, a bound user's
     message is either refused, or signed for exactly the one address
     Python's email.headerregistry reads (and the signature's d= is that
     address's domain, and it verifies with dkimpy), and the display name
     Python reads shows no address (an '@' between non-space characters,
     or '<' ... '>');
  6. siblings: a signature whose d=/s= carry spaces cannot inject a second
     result into our A-R; 12 keys for one address give 12 signatures (the
     old limit was 8); a signed header of 19,000 folds (76 KB to
     libopendkim) still verifies; 8.6 MB of headers get 552, not 452;
     40 signatures on one message: 8 verified (the good first one
     passes), 32 ignored and logged;
  7. SIGHUP applies verify_signatures_max and says that a changed
     socket_umask needs a restart;
  8. -t fails, naming file and line, on a socket_umask or socket the
     daemon would die on, and on an authserv_id that is not a token (its
     forged copies could not be told from ours); it passes a good one.
"""

import base64
import email.header
import json
import shutil
import email.parser
import email.policy
import os
import re
import smtplib
import subprocess
import sys
import time
import unicodedata
import urllib.request
import uuid

import dkim
from hypothesis import given, settings, strategies as hs, HealthCheck

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from mxstack import Stack  # noqa: E402
from mxtest import tap, wait_for  # noqa: E402
import mxdkim  # noqa: E402
import mxpolicy as mp  # noqa: E402
from mxtest import build_path  # noqa: E402
from mxwebhook import Receiver, make_secret  # noqa: E402

ID = "mx.mxkit.test"
CONF = """\
socket = inet:{port}@127.0.0.1
mode = sign, verify
key_table = {dir}/etc/key.table
signing_table = refile:{dir}/etc/signing.table
sender_binding = {dir}/etc/sender_binding
dns_test_file = {dir}/etc/dns.txt
authserv_id = mx.mxkit.test
"""


def write(st, name, text):
    with open(st.path("etc", name), "w") as f:
        f.write(text)


def header_fields(raw):
    """(name, value) of every header field, as written (unfolded lines kept)."""
    head = raw.replace(b"\r\n", b"\n").split(b"\n\n", 1)[0]
    fields = []
    for line in head.split(b"\n"):
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1][1] += b"\n" + line
        elif b":" in line:
            name, value = line.split(b":", 1)
            fields.append([name, value])
    return [(n, v) for n, v in fields]


def ar_values(raw):
    """Every A-R field, whatever spacing or case its name has."""
    return [v for n, v in header_fields(raw)
            if n.strip().lower() == b"authentication-results"]


def ours(values):
    return [v for v in values if re.match(rb"\s*mx\.mxkit\.test;", v)]


def inbound(st, raw, client="203.0.113.5"):
    """Raw bytes on port 25 from an outside address (XCLIENT); the copy in
    alice's mailbox, found by its token."""
    s = smtplib.SMTP("127.0.0.1", st.port("postfix-smtp"), timeout=60)
    s.ehlo("mail.example.org")
    if client:
        s.docmd("XCLIENT", "ADDR=%s NAME=mail.example.org" % client)
        s.ehlo("mail.example.org")
    token = re.search(rb"token-([0-9a-f]+)", raw).group(1)
    s.sendmail("sender@example.org", ["alice@mxkit.test"], raw)
    s.quit()
    found = wait_for(lambda: [m for m in st.maildir_messages("alice@mxkit.test")
                              if token in m], timeout=30)
    return found[0] if found else b""


def message(extra=b"", sender=b"news@partner.example"):
    token = uuid.uuid4().hex.encode()
    return (b"From: Partner <" + sender + b">\r\nTo: alice@mxkit.test\r\n"
            b"Subject: token-" + token + b"\r\nDate: Sun, 22 Nov 2026 10:00:00 +0000\r\n"
            b"Message-ID: <" + token + b"@partner.example>\r\n" + extra +
            b"\r\nHello.\r\n")


def removed_logged(st, count):
    return wait_for(lambda: re.search(r"removed %d forged Authentication-Results header" % count,
                                      st.read_log("milter")), timeout=5)


def test_counts(st):
    for n in (1, 31, 32, 33, 200, 1000):
        forged = b"".join(b"Authentication-Results: mx.mxkit.test; dkim=pass "
                          b"header.d=bank%d.example\r\n" % i for i in range(n))
        foreign = (b"Authentication-Results: other.example; spf=pass\r\n"
                   b"Authentication-Results: mx.mxkit.test.evil.example; dkim=pass\r\n")
        msg = inbound(st, message(foreign + forged + foreign))
        ar = ar_values(msg)
        tap.is_(len(ours(ar)), 1, "%d forged A-R: exactly one of ours reaches the mailbox" % n)
        tap.ok(not any(b"bank" in v for v in ar), "%d forged A-R: none survives" % n)
        tap.is_(len(ar), 5, "%d forged A-R: the 4 foreign ones are kept" % n)
        tap.ok(removed_logged(st, n), "the removal of %d is logged with its count" % n)
    for n in (1001, 10000):
        raw = message(b"Authentication-Results: mx.mxkit.test; dkim=pass\r\n" * n)
        s = smtplib.SMTP("127.0.0.1", st.port("postfix-smtp"), timeout=120)
        s.ehlo("mail.example.org")
        s.docmd("XCLIENT", "ADDR=203.0.113.5 NAME=mail.example.org")
        s.ehlo("mail.example.org")
        t0 = time.monotonic()
        try:
            s.sendmail("sender@example.org", ["alice@mxkit.test"], raw)
            code = 250
        except smtplib.SMTPResponseException as e:
            code = e.smtp_code
        took = time.monotonic() - t0
        s.quit()
        tap.is_(code, 550, "%d forged A-R (over 1000): 550, in %.1f s (deleting 16,000 one by "
                "one took Postfix 45 s)" % (n, took))
        tap.ok(took < 10, "refused at once, not after %d deletions" % n)
    tap.ok("10000 Authentication-Results headers claim mx.mxkit.test (more than 1000); "
           "message rejected" in st.read_log("milter"), "the refusal is logged with the count")


FORMS = [
    b"Authentication-Results: (comment) mx.mxkit.test; dkim=pass header.d=f1.example",
    b"Authentication-Results: \"mx.mxkit.test\"; dkim=pass header.d=f2.example",
    b"Authentication-Results: \"mx\\.mxkit.test\"; dkim=pass header.d=f3.example",
    b"Authentication-Results: MX.MXKIT.TEST; dkim=pass header.d=f4.example",
    b"Authentication-Results: mx.mxkit.test.; dkim=pass header.d=f5.example",
    b"Authentication-Results: mx.mxkit.test 1; dkim=pass header.d=f6.example",
    b"Authentication-Results:\r\n\t(c (nested))\r\n mx.mxkit.test\r\n\t; dkim=pass"
    b" header.d=f7.example",
    b"Authentication-Results : mx.mxkit.test; dkim=pass header.d=f8.example",
    b"authentication-results: mx.mxkit.test; dkim=pass header.d=f9.example",
    b"AUTHENTICATION-RESULTS:mx.mxkit.test;dkim=pass header.d=f10.example",
    b"Authentication-Results: =?utf-8?b?bXgubXhraXQudGVzdA==?=; dkim=pass header.d=f11.example",
    b"Authentication-Results: mx.mxkit.test/1; dkim=pass header.d=f12.example",
    b"Authentication-Results: (unclosed mx.mxkit.test; dkim=pass header.d=f13.example",
    b"Authentication-Results: mx.mxkit.test\xc2\xa0; dkim=pass header.d=f14.example",
    b"Authentication-Results: \"mx.mxkit.test \"; dkim=pass header.d=f15.example",
    b"Authentication-Results: mx.mxkit.test; none (f16.example)",
    b"Authentication-Results: mx.mxkit.test (c) 2 (d); dkim=pass header.d=f17.example",
]


def test_forms(st):
    keep = b"Authentication-Results: mx.mxkit.test.evil.example; dkim=pass header.d=k.example"
    msg = inbound(st, message(b"\r\n".join(FORMS + [keep]) + b"\r\n"))
    ar = ar_values(msg)
    left = [v for v in ar if re.search(rb"f\d+\.example", v)]
    tap.is_(left, [], "all %d RFC 8601 forms of our id (and unreadable ids) removed"
            % len(FORMS))
    tap.is_(len(ours(ar)), 1, "exactly one A-R of ours")
    tap.is_(len([v for v in ar if b"k.example" in v]), 1, "the look-alike foreign id is kept")
    tap.ok(removed_logged(st, len(FORMS)), "one log line with the count (%d)" % len(FORMS))
    big = b"Authentication-Results: mx.mxkit.test; dkim=pass header.d=big.example (" + \
        b"\r\n ".join([b"x" * 70] * 700) + b")"
    msg = inbound(st, message(big + b"\r\n"))
    tap.ok(msg and not any(b"big.example" in v for v in ar_values(msg)),
           "a 50 KB folded forged A-R is removed")


OUR_IDS = [b"mx.mxkit.test", b"MX.MXKIT.TEST", b"mx.mxkit.test.", b"\"mx.mxkit.test\"",
           b"\"mx\\.mxkit.test\"", b"=?utf-8?q?mx.mxkit.test?=",
           b"=?utf-8?b?bXgubXhraXQudGVzdA==?=", b"\"mx.mxkit.test \""]
OTHER_IDS = [b"other.example", b"mx.mxkit.test.evil", b"\"other.example\"", b"xmx.mxkit.test",
             b"mx-mxkit.test", b"mx.mxkit.tes", b""]
CFWS = [b"", b" ", b"(c)", b" (mx.mxkit.test) ", b"\r\n\t", b"(a (b) \\) c)", b"(", b")",
        b"\""]
VERSIONS = [b"", b" 1", b"1", b" (v) 2 ", b"x"]
TAILS = [b"; dkim=pass header.d=bank.example", b";none", b" dkim=pass", b"; spf=pass",
         b"", b";"]


def ar_value():
    part = hs.sampled_from
    wellformed = hs.builds(lambda *p: b"".join(p), part(CFWS[:6]), part(OUR_IDS + OTHER_IDS),
                           part(CFWS[:6]), part(VERSIONS[:4]), part(CFWS[:6]), part(TAILS[:2]))
    anything = hs.builds(lambda *p: b"".join(p), part(CFWS), part(OUR_IDS + OTHER_IDS),
                         part(CFWS), part(VERSIONS), part(CFWS), part(TAILS))
    return hs.one_of(wellformed, anything)


def rfc8601_reading(v):
    """The authserv-id as RFC 8601 (and RFC 2045 token/quoted-string)
    defines it, or None when the value does not have one."""
    n, i = len(v), [0]

    def cfws():
        depth = 0
        while i[0] < n:
            c = v[i[0]:i[0] + 1]
            if c == b"(":
                depth += 1
            elif depth == 0 and c not in (b" ", b"\t", b"\r", b"\n"):
                break
            elif depth and c == b"\\" and i[0] + 1 < n:
                i[0] += 1
            elif depth and c == b")":
                depth -= 1
            i[0] += 1
        return depth == 0

    tspecials = b"()<>@,;:\\\"/[]?="
    token = lambda c: 32 < c < 127 and c not in tspecials  # noqa: E731
    if not cfws():
        return None
    if v[i[0]:i[0] + 1] == b"\"":
        i[0] += 1
        out = b""
        while i[0] < n and v[i[0]:i[0] + 1] != b"\"":
            if v[i[0]:i[0] + 1] == b"\\":
                i[0] += 1
            if i[0] < n and v[i[0]:i[0] + 1] not in (b"\r", b"\n"):
                out += v[i[0]:i[0] + 1]
            i[0] += 1
        if i[0] >= n or not out or not all(token(c) for c in out):
            return None
        i[0] += 1
    else:
        start = i[0]
        while i[0] < n and token(v[i[0]]):
            i[0] += 1
        out = v[start:i[0]]
        if not out:
            return None
    if not cfws():
        return None
    if v[i[0]:i[0] + 1].isdigit():
        while v[i[0]:i[0] + 1].isdigit():
            i[0] += 1
        if not cfws():
            return None
    return out if v[i[0]:i[0] + 1] == b";" else None


def lax_readings(v):
    """How careless consumers read an authserv-id: first word; or after
    decoding encoded words and dropping comments and quotes."""
    first = re.match(rb"\s*([^\s;]*)", v).group(1)
    try:
        decoded = str(email.header.make_header(email.header.decode_header(
            v.decode("utf-8", "replace")))).encode()
    except Exception:
        decoded = v
    no_comments = re.sub(rb"\([^()]*\)", b"", re.sub(rb"\([^()]*\)", b"", decoded))
    second = no_comments.split(b";")[0].strip().strip(b"\"").replace(b"\\", b"")
    return [x.lower().rstrip(b".").strip() for x in (first, second)]


def test_ar_property(st):
    failures = []
    seen = {"kept": 0, "removed": 0, "messages": 0}

    @settings(max_examples=80, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(hs.lists(ar_value(), min_size=1, max_size=6))
    def check(values):
        tags = [uuid.uuid4().hex[:10].encode() for _ in values]
        headers = b"".join(b"Authentication-Results:" + v + b" (h" + t + b")\r\n"
                           for v, t in zip(values, tags))
        msg = inbound(st, message(headers))
        assert msg, "not delivered"
        left = ar_values(msg)
        for v, t in zip(values, tags):
            ref = rfc8601_reading(v + b" (h" + t + b")")
            foreign = ref is not None and ref.lower().rstrip(b".") != ID.encode()
            kept = [x for x in left if b"h" + t in x]
            assert len(kept) == (1 if foreign else 0), (v, ref, len(kept))
            seen["kept" if kept else "removed"] += 1
            for x in kept:
                assert ID.encode() not in lax_readings(x), ("a lax reader sees ours", x)
        assert len(ours(left)) == 1, ("not exactly one A-R of ours", left)
        seen["messages"] += 1

    try:
        check()
    except AssertionError as e:
        failures.append(str(e))
    tap.is_(failures, [], "property: an A-R reaches the mailbox exactly when RFC 8601 reads "
            "a foreign authserv-id in it, and no lax reader finds ours in what is kept "
            "(%(messages)d messages, %(kept)d kept, %(removed)d removed)" % seen)
    tap.ok(seen["kept"] >= 20 and seen["removed"] >= 20, "both outcomes were exercised")


def submit(st, user, raw, sender="alerts@planapulse.ai", conn=None):
    s = conn or mp.login(st, user)
    try:
        s.sendmail(sender, ["cust@example.net"], raw)
        result = (250, "")
    except smtplib.SMTPResponseException as e:
        result = (e.smtp_code, e.smtp_error.decode(errors="replace"))
        s.rset()
    if conn is None:
        s.quit()
    return result


def sunk(st, token, timeout=30):
    found = wait_for(lambda: [m for m in st.sink_messages() if token in m], timeout=timeout)
    return mxdkim.crlf(mxdkim.strip_sink_headers(found[0])) if found else b""


def signed_message(from_value, extra=b""):
    token = uuid.uuid4().hex
    raw = (b"From: " + from_value + b"\r\nTo: <cust@example.net>\r\nSubject: token-"
           + token.encode() + b"\r\nDate: Sun, 22 Nov 2026 10:00:00 +0000\r\n"
           b"Message-ID: <" + token.encode() + b"@planapulse.ai>\r\n" + extra +
           b"\r\nYour invoice.\r\n")
    return token, raw


def verify_all(msg, dns):
    d = dkim.DKIM(msg)
    n = len(re.findall(rb"^DKIM-Signature:", msg, re.M))
    return [d.verify(idx=i, dnsfunc=dns.dnsfunc) for i in range(n)]


def test_forged_on_signed_and_internal(st, dns):
    forged = b"".join(b"Authentication-Results: mx.mxkit.test; dkim=pass header.d=s%d.example"
                      b"\r\n" % i for i in range(40))
    token, raw = signed_message(b"Alerts <alerts@planapulse.ai>", forged)
    code, text = submit(st, "svc-alerts", raw)
    tap.is_(code, 250, "signed mail with 40 forged A-R accepted", diag=text)
    msg = sunk(st, token)
    tap.is_(len(ar_values(msg)), 0, "signed mail: no A-R reaches the receiver")
    tap.is_(verify_all(msg, dns), [True, True], "and both signatures verify (dkimpy)")

    token, raw = signed_message(b"<someone@unsigned.example>", forged)
    s = smtplib.SMTP("127.0.0.1", st.port("postfix-smtp"), timeout=60)  # internal: 127.0.0.1
    s.sendmail("someone@unsigned.example", ["cust@example.net"], raw)
    s.quit()
    msg = sunk(st, token)
    tap.ok(msg and b"DKIM-Signature" not in msg, "internal mail without SigningTable entry: "
           "unsigned")
    tap.is_(len(ar_values(msg)), 0, "internal unsigned mail: the 40 forged A-R are removed")

    for value, name in ((b"a@planapulse.ai\r\nFrom: b@planapulse.ai", "two From:"),
                        (b"staff: a@planapulse.ai;", "a group From:")):
        token, raw = signed_message(value, forged)
        s = smtplib.SMTP("127.0.0.1", st.port("postfix-smtp"), timeout=60)
        s.sendmail("a@planapulse.ai", ["cust@example.net"], raw)
        s.quit()
        msg = sunk(st, token)
        tap.ok(msg and b"DKIM-Signature" not in msg and not ar_values(msg),
               "internal mail with %s and forged A-R: unsigned, the A-R removed" % name)


BAD_FROM = [
    (b"ceo@planapulse.ai <alerts@planapulse.ai>", "addr-spec as display name"),
    (b"<alerts@planapulse.ai> ceo@other.example", "address after the angle address"),
    (b"Alerts <alerts@planapulse.ai>, ceo@other.example", "two addresses"),
    (b"undisclosed: alerts@planapulse.ai;", "group with our address"),
    (b"undisclosed:;", "empty group"),
    (b"<@other.example:alerts@planapulse.ai>", "source route"),
    (b"alerts@planapulse.ai.", "trailing dot"),
    (b"\"alerts@planapulse.ai\"@other.example", "quoted local part with @"),
    (b"John Q.<alerts@planapulse.ai>", "a dot right before '<' (Python reads no address)"),
    (b"=?utf-8?q?ceo?=@plana.solutions", "encoded word as local part (Python: ceo@)"),
    (b"Staff <=?utf-8?q?alerts=40planapulse.ai?=@plana.solutions>",
     "encoded '@' in the local part"),
    (b"\"=?utf-8?q?ceo?=\"@plana.solutions", "encoded word in a quoted local part"),
    (b"\"ceo@other.example\" <alerts@planapulse.ai>", "quoted address as display name"),
    (b"\"<ceo@other.example>\" <alerts@planapulse.ai>", "quoted <address> as display name"),
    (b"\"a\\\" <ceo@other.example>\" <alerts@planapulse.ai>",
     "quoted display name with an escaped quote and an <address>"),
    (b"=?utf-8?q?ceo=40other=2Eexample?= <alerts@planapulse.ai>",
     "Q-encoded address as display name"),
    (b"=?utf-8?b?Q0VPIDxjZW9Ab3RoZXIuZXhhbXBsZT4=?= <alerts@planapulse.ai>",
     "B-encoded 'CEO <ceo@other.example>' as display name"),
    (b"\"Alerts, <ceo@other.example>\"\r\n\t<alerts@planapulse.ai>",
     "folded quoted display name with an <address>"),
    (b"alerts@planapulse.ai (ceo@other.example)",
     "an address in the comment a reader shows as the name"),
    (b"(ops) alerts (x) @ (y) planapulse.ai (Alerts <ceo@other.example>)",
     "an <address> in a comment"),
    (b"Alerts <alerts@planapulse.ai> (x (=?utf-8?q?ceo=40other.example?=))",
     "a Q-encoded address in a nested comment"),
    (b"=?iso-2022-jp?b?GyRCOzNFRCF3GyhCb3RoZXIuZXhhbXBsZQ==?= <alerts@planapulse.ai>",
     "an ISO-2022-JP name with a full-width '@' (a reader shows an address)"),
    (b"=?utf-16be?b?AGMAZQBvAEAAbwB0AGgAZQByAC4AZQB4AGEAbQBwAGwAZQ==?= "
     b"<alerts@planapulse.ai>", "a UTF-16 name that decodes to an address"),
    (b"=?iso-2022-jp?b?GyRCfyEbKEI=?= <alerts@planapulse.ai>",
     "an ISO-2022-JP name that cannot be converted"),
    (b"=?hz?q?Alerts?= <alerts@planapulse.ai>",
     "a name in a charset Python reads and glibc lacks (cannot tell)"),
    # charsets glibc reads (as EBCDIC) and Python has no codec for: Python
    # shows their bytes as ASCII, an address (helper-124: signed)
    (b"=?IBM1047?q?ceo=40other=2Eexample?= <alerts@planapulse.ai>",
     "an IBM1047 name whose bytes Python shows as ceo@other.example"),
    (b"=?ibm285?b?Q0VPIDxjZW9Ab3RoZXIuZXhhbXBsZT4=?= <alerts@planapulse.ai>",
     "an ibm285 name Python shows as CEO <ceo@other.example>"),
    (b"=?IBM1141?Q?ceo=40other=2Eexample?= <alerts@planapulse.ai>", "an IBM1141 name"),
    (b"=?IBM930?Q?=3Cceo=40other=2Eexample=3E?= <alerts@planapulse.ai>", "an IBM930 name"),
    (b"\"=?ibm-1047?q?ceo=40other.example?=\" <alerts@planapulse.ai>",
     "a quoted ibm-1047 name"),
    (b"=?x-mxkit-unknown?q?ceo=40other.example?= <alerts@planapulse.ai>",
     "a name in a charset no one knows, its bytes an address"),
]


def test_from(st, dns):
    for value, name in BAD_FROM:
        token, raw = signed_message(value)
        code, text = submit(st, "svc-alerts", raw)
        tap.is_(code, 550, "bound user, From: %s: 550" % name, diag=text)
    token, raw = signed_message(b"Alerts <alerts@planapulse.ai>\r\nFrom: ceo@other.example")
    tap.is_(submit(st, "svc-alerts", raw)[0], 550, "bound user, two From: headers: 550")
    token, raw = signed_message(b"x")
    raw = raw.replace(b"From: x\r\n", b"")
    tap.is_(submit(st, "svc-alerts", raw)[0], 550, "bound user, no From: header: 550")
    tap.ok("sender_binding: svc-alerts may not send with 1 From: headers (group syntax)"
           in st.read_log("milter"), "the reason is logged")
    tap.ok("sender_binding: svc-alerts may not send with 1 From: headers (encoded word in "
           "address)" in st.read_log("milter"), "an encoded word: the reason is logged")
    tap.ok("sender_binding: svc-alerts may not send with 1 From: headers (an address in the "
           "display name or a comment)" in st.read_log("milter"), "an address in the display name: the "
           "reason is logged")
    good = [b"(ops) alerts (x) @ (y) planapulse.ai (Alerts)",
            b"alerts@planapulse.ai (Alerts team, ops @ planapulse)",
            b"\"Alerts, Ops @ Team\"\r\n\t<alerts@planapulse.ai>",
            b"=?utf-8?q?Ops_=40_Team?= <alerts@planapulse.ai>",
            b"\"alerts\"@PlanaPulse.AI",
            b"John Q. Public <alerts@planapulse.ai>",
            b"Caf\xc3\xa9 \xe2\x82\xac <alerts@planapulse.ai>",
            # Japanese and Korean mail as their MUAs write it (a bound
            # user's ISO-2022-JP name was refused: "cannot tell")
            b"=?ISO-2022-JP?B?GyRCOzNFREJATzobKEI=?= <alerts@planapulse.ai>",
            b"=?iso-2022-jp?b?GyRCOzNFRBsoQg==?=\r\n =?iso-2022-jp?b?GyRCQkBPOhsoQg==?= "
            b"<alerts@planapulse.ai>",
            b"=?ks_c_5601-1987?B?sejDtrz2?= <alerts@planapulse.ai>",
            b"=?utf-16be?b?AEEAbABlAHIAdABz?= <alerts@planapulse.ai>",
            # no charset for Python: its bytes, read as ASCII, say Alerts
            b"=?x-mxkit-unknown?q?Alerts?= <alerts@planapulse.ai>"]
    for value in good:
        token, raw = signed_message(value)
        code, text = submit(st, "svc-alerts", raw)
        msg = sunk(st, token) if code == 250 else b""
        tap.ok(code == 250 and verify_all(msg, dns) == [True, True],
               "valid From: %r signed and verifies" % value, diag=text)


ADDRS = [b"alerts@planapulse.ai", b"ceo@planapulse.ai", b"x@plana.solutions",
         b"ceo@other.example", b"ALERTS@PLANAPULSE.AI", b"\"alerts\"@planapulse.ai",
         b"\"al\\erts\"@planapulse.ai", b"\"ceo\"@planapulse.ai", b"a@x.plana.solutions",
         b"alerts@planapulse.ai.", b"alerts@[127.0.0.1]", b"@x.example:alerts@planapulse.ai",
         b"alerts (c) @ planapulse.ai", b"a.b@plana.solutions", b"a..b@plana.solutions",
         b"=?utf-8?q?ceo?=@plana.solutions", b"=?utf-8?q?ceo=40other.example?=@plana.solutions",
         b"alerts@=?utf-8?q?plana.solutions?="]
WORDS = [b"Alerts", b"\"Ops, Team\"", b"ceo@planapulse.ai", b"\"<ceo@other.example>\"",
         b"Q.", b"=?utf-8?q?Caf=C3=A9?=", b"x@other.example", b"\"a\\\"b\"", b":", b";",
         b",", b"<", b">", b"@", b".", b"(", b")", b"\"", b"\\"]
SEPS = [b" ", b"", b"\r\n\t", b" (c) ", b"(c (n) \\) x)", b"  ", b"(<ceo@other.example>)"]


def encoded_word(text, kind, cut, ws, charset):
    """An RFC 2047 encoded word of text, with white space (or a fold) put
    into it at cut (none when ws is empty): Python's email decodes it all
    the same (helper-99: =?utf-8?b?Q0VPIDxj ZW9A...?= <noreply@...> was
    signed for a bound user and shown as CEO <ceo@...>)."""
    if charset in (b"utf-16be", b"iso-2022-jp"):
        try:
            text = text.decode("utf-8").encode(charset.decode())
        except UnicodeEncodeError:
            charset = b"utf-8"
    if kind == b"b":
        enc = base64.b64encode(text)
    else:
        enc = b"".join(bytes([c]) if chr(c).isalnum() else b"=%02X" % c for c in text)
    cut = min(cut, len(enc))
    enc = enc[:cut] + ws + enc[cut:]
    return b"=?" + charset + b"?" + kind + b"?" + enc + b"?="


def encoded_words():
    text = hs.sampled_from([b"ceo@other.example", b"CEO <ceo@other.example>", b"Ops Team",
                            b"ceo\xef\xbc\xa0other.example", b"ceo\xef\xb9\xabx.example",
                            b"Caf\xc3\xa9"])
    return hs.builds(encoded_word, text, hs.sampled_from([b"b", b"q"]),
                     hs.integers(0, 40), hs.sampled_from([b"", b" ", b"\t", b"\r\n "]),
                     hs.sampled_from([b"utf-8", b"utf-8 ", b"x y", b"UTF-8*en", b"utf-16be",
                                      b"iso-2022-jp"]))


def from_values():
    addr = hs.sampled_from(ADDRS)
    word = hs.one_of(hs.sampled_from(WORDS), encoded_words(),
                     encoded_words().map(lambda w: b"(" + w + b")"))
    sep = hs.sampled_from(SEPS)
    angle = hs.builds(lambda a, s1, s2: b"<" + s1 + a + s2 + b">", addr, sep, sep)
    piece = hs.one_of(addr, word, angle)
    anything = hs.lists(hs.tuples(sep, piece), min_size=1, max_size=5).map(
        lambda items: b"".join(s + p for s, p in items))
    name = hs.lists(hs.tuples(sep, hs.one_of(hs.sampled_from(WORDS[:6] + [b"John", b"Q."]),
                                             encoded_words())),
                    max_size=3).map(lambda items: b"".join(s + w for s, w in items))
    mailbox = hs.one_of(hs.builds(lambda n, s, a: n + s + a, name, sep, angle),
                        hs.builds(lambda s1, a, s2: s1 + a + s2, sep, addr, sep))
    return hs.one_of(mailbox, anything)


def python_reads(value):
    """The addresses Python's email package reads from this From: value."""
    m = email.parser.BytesParser(policy=email.policy.default).parsebytes(
        b"From: " + value + b"\r\n\r\nx")
    try:
        return [a.addr_spec for a in m["From"].addresses]
    except Exception:
        return None


def python_display_names(value):
    """The display names Python's email package reads (unquoted, decoded)."""
    m = email.parser.BytesParser(policy=email.policy.default).parsebytes(
        b"From: " + value + b"\r\n\r\nx")
    try:
        return [a.display_name for a in m["From"].addresses]
    except Exception:
        return None


def address_shaped(text):
    """sender_binding's rule: an '@' between two non-space characters, or
    '<' and a '>' after it (lenient(3) lenient_display_address()), at sign
    look-alikes (NFKC '@') counted as '@'."""
    text = unicodedata.normalize("NFKC", text)
    return bool(re.search(r"\S@\S", text) or re.search(r"<.*>", text, re.S))


def allowed(addr):
    local, _, domain = addr.rpartition("@")
    return addr.lower() == "alerts@planapulse.ai" or domain.lower() == "plana.solutions"


def test_property(st, dns):
    conn = mp.login(st, "svc-alerts")
    log_at = [len(st.read_log("milter"))]
    accepted = []
    failures = []

    @settings(max_examples=400, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(from_values())
    def check(value):
        token, raw = signed_message(value)
        code, text = submit(st, "svc-alerts", raw, conn=conn)
        assert code in (250, 550), (value, code, text)
        if code == 550:
            return
        new = wait_for(lambda: re.findall(r"signed: (\S+)/\S+.*\(From (\S+), sasl_username",
                                          st.read_log("milter")[log_at[0]:]), timeout=5)
        log_at[0] = len(st.read_log("milter"))
        py = python_reads(value)
        assert new, ("accepted but not signed", value)
        domain, milter_addr = new[-1]
        assert py is not None and len(py) == 1, ("signed, Python reads", value, py)
        assert py[0].lower() == milter_addr.lower(), (value, py, milter_addr)
        assert allowed(py[0]), ("signed for an address outside the binding", value, py)
        assert domain == py[0].rpartition("@")[2].lower(), (value, domain, py)
        names = python_display_names(value) or [""]
        assert not address_shaped(names[0]), ("signed, the display name shows an address",
                                              value, names)
        accepted.append((token, py[0]))

    try:
        check()
    except AssertionError as e:
        failures.append(str(e))
    conn.quit()
    tap.is_(failures, [], "property: every From: is refused, or signed for the one address "
            "Python reads, inside the binding")
    tap.ok(len(accepted) >= 40, "the generator produced accepted examples too (%d)"
           % len(accepted))
    bad = []
    for token, addr in accepted:
        msg = sunk(st, token)
        delivered = python_reads(re.search(rb"^From:(.*?)\r\n(?=\S)", msg, re.M | re.S)
                                 .group(1).strip() if msg else b"")
        domain = addr.rpartition("@")[2].lower().encode()
        ds = re.findall(rb"\bd=([^;\s]+)", b"".join(re.findall(rb"^DKIM-Signature:.*?(?=^\S)",
                                                               msg, re.M | re.S)))
        if not msg or verify_all(msg, dns) != [True] * len(ds) or not ds \
                or any(d != domain for d in ds) or delivered != [addr]:
            bad.append((addr, ds))
    tap.is_(bad, [], "every accepted example reached the sink signed for Python's domain "
            "and verifies (%d messages)" % len(accepted))


def test_siblings(st, dns, ed_keys):
    for sig in (b"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=evil.example "
                b"dkim=pass; s=sel x dkim=pass; h=from:subject; bh=AAAA; b=BBBB\r\n",
                b"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=evil.example\r\n"
                b"\tdkim=pass; s=s\r\n Authentication-Results:; h=from:subject; bh=AAAA;"
                b" b=BBBB\r\n"):
        msg = inbound(st, message(sig))
        ar = ours(ar_values(msg))
        tap.is_(len(ar), 1, "a signature with spaces or folds in d=/s=: one A-R of ours")
        tap.diag("our A-R: %r" % ar)
        results = re.findall(rb"dkim=(\w+)", re.sub(rb'"[^"]*"', b"", ar[0] if ar else b""))
        tap.ok(len(results) == 1 and results[0] != b"pass",
               "exactly one dkim= result outside quotes, not pass: d=/s= cannot inject one",
               diag=repr(ar))

    token, raw = signed_message(b"<many@many.example>")
    s = smtplib.SMTP("127.0.0.1", st.port("postfix-smtp"), timeout=60)
    s.sendmail("many@many.example", ["cust@example.net"], raw)
    s.quit()
    msg = sunk(st, token)
    tap.is_(len(re.findall(rb"^DKIM-Signature:", msg, re.M)), len(ed_keys),
            "%d SigningTable keys for one address: %d signatures (00f9dfc: 8)"
            % (len(ed_keys), len(ed_keys)))
    tap.ok(verify_all(msg, dns) == [True] * len(ed_keys), "and all of them verify")

    # Postfix cuts a header at 60,000 bytes when milters run; with LF
    # folds turned to CRLF, this one is 76,000 bytes for libopendkim, past
    # the 64 KB buffer of its FIXCRLF mode (00f9dfc signed a cut copy).
    token, raw = signed_message(b"Alerts <alerts@planapulse.ai>",
                                b"References: x" + b"\r\n x" * 19000 + b"\r\n")
    code, text = submit(st, "svc-alerts", raw)
    msg = sunk(st, token) if code == 250 else b""
    results = verify_all(msg, dns) if msg else None
    tap.ok(code == 250 and len(msg) > 76000 and results == [True, True],
           "a 57 KB header of 19,000 folds (76 KB in CRLF): both signatures verify",
           diag="%s %s %d bytes, dkimpy: %r" % (code, text, len(msg), results))
    if os.environ.get("MXKIT_DEBUG"):
        open("/tmp/milter-70k.eml", "wb").write(msg)


def test_bare_cr(st, dns):
    """Bare CRs in a signed header and body (whatever Postfix makes of
    them): the signature still covers what the receiver gets, without
    libopendkim's FIXCRLF."""
    token, raw = signed_message(b"Alerts <alerts@planapulse.ai>", b"X-Note: a\rb\r\n")
    raw = raw.replace(b"Your invoice.\r\n", b"Your\rinvoice.\r\nline\r\r\n")
    code, text = submit(st, "svc-alerts", raw)
    msg = sunk(st, token) if code == 250 else b""
    tap.is_(verify_all(msg, dns) if msg else None, [True, True],
            "bare CRs in body: both signatures verify (dkimpy)", diag=text)


def test_header_bytes(st):
    """Past the 8 MB of headers the milter keeps: refused for good (552),
    not deferred for the sender to retry the same bytes for days."""
    chunk = b"X-Pad: " + b"\r\n ".join([b"p" * 70] * 600) + b"\r\n"     # 43 KB
    token, raw = signed_message(b"<someone@unsigned.example>", chunk * 200)  # 8.6 MB
    s = smtplib.SMTP("127.0.0.1", st.port("postfix-smtp"), timeout=120)
    try:
        s.sendmail("someone@unsigned.example", ["cust@example.net"], raw)
        code = 250
    except smtplib.SMTPResponseException as e:
        code = e.smtp_code
    s.quit()
    tap.is_(code, 552, "8.6 MB of headers: 552 (00f9dfc: 452 on every retry)")
    tap.ok("message header larger than 8 MB; message rejected" in st.read_log("milter"),
           "and logged")


def test_many_signatures(st, partner_key, want=8):
    """40 signatures on one inbound message: the first 8 are verified (the
    good one on top passes), the rest ignored and counted in the log, not
    40 DNS queries and 40 RSA operations per message."""
    raw = message()
    sigs = [dkim.sign(raw, b"p2026", b"partner.example", partner_key,
                      include_headers=[b"from", b"subject"])]
    for i in range(39):
        sigs.append(dkim.sign(raw, b"nokey%d" % i, b"bogus%d.example" % i, partner_key,
                              include_headers=[b"from", b"subject"]))
    msg = inbound(st, b"".join(sigs) + raw)
    ar = ours(ar_values(msg))
    results = re.findall(rb"dkim=(\w+) (?:\([^)]*\) )?header\.d=(\S+)", ar[0] if ar else b"")
    tap.is_(len(results), want, "40 signatures: %d results in our A-R "
            "(verify_signatures_max)" % want)
    tap.ok(results and results[0] == (b"pass", b"partner.example"),
           "the first, good one passes", diag=repr(results[:2]))
    tap.ok(wait_for(lambda: "%d more DKIM signatures not verified (verify_signatures_max = %d)"
                    % (40 - want, want) in st.read_log("milter"), timeout=5),
           "the %d ignored ones are logged" % (40 - want))


def test_reload(st, proc, conf, partner_key):
    """SIGHUP: verify_signatures_max is applied; a changed socket_umask
    (the socket is made once) is named as needing a restart."""
    with open(conf, "a") as f:
        f.write("verify_signatures_max = 3\nsocket_umask = 027\n")
    proc.send_signal(1)
    tap.ok(wait_for(lambda: "configuration reloaded" in st.read_log("milter")),
           "SIGHUP: reloaded")
    tap.ok("reload: socket_umask changed but cannot change while running"
           in st.read_log("milter"), "a changed socket_umask is said to need a restart")
    test_many_signatures(st, partner_key, want=3)


def start_webhook(st):
    """Dovecot's LMTP with lmtp-webhook for bills@*.planapulse.app, and the
    spool runner posting its events to a receiver: the bill consumer's
    view of what the milter let through."""
    rx = Receiver()
    os.makedirs(st.path("spool"))
    shutil.chown(st.path("spool"), "nobody", "nogroup")
    with open(st.path("secret"), "w") as f:
        f.write(make_secret() + "\n")
    os.chmod(st.path("secret"), 0o644)
    with open(st.path("spool.conf"), "w") as f:
        f.write("spool_dir = %s\nsecret_file = %s\ntimeout = 2s\n"
                % (st.path("spool"), st.path("secret")))
    st.start_dovecot(
        lmtp_plugins="lmtp_webhook",
        plugin_settings={
            "lmtp_webhook_route": "bills@*.planapulse.app "
                                  "http://127.0.0.1:%d/ws/{1}/api/bills/inbound" % rx.port,
            "lmtp_webhook_spool_dir": st.path("spool"),
        },
        extra="mail_plugin_dir = %s\n" % build_path("lmtp-webhook", ".libs"))
    st.start_daemon("spool", [build_path("lmtp-webhook", "lmtp-webhook-spool"), "-c",
                              st.path("spool.conf"), "-f", "run"])
    return rx


def test_bill_event(st, rx):
    """Forged A-R of every form on a bill: the event's
    authentication_results holds exactly our one header."""
    forged = b"\r\n".join(FORMS) + b"\r\n" + \
        b"Authentication-Results: mx.mxkit.test; dkim=pass header.d=bank.example\r\n" * 60
    raw = message(forged).replace(b"To: alice@mxkit.test", b"To: bills@acme.planapulse.app")
    token = re.search(rb"token-([0-9a-f]+)", raw).group(1).decode()
    s = smtplib.SMTP("127.0.0.1", st.port("postfix-smtp"), timeout=60)
    s.ehlo("mail.example.org")
    s.docmd("XCLIENT", "ADDR=203.0.113.5 NAME=mail.example.org")
    s.ehlo("mail.example.org")
    s.sendmail("billing@partner.example", ["bills@acme.planapulse.app"], raw)
    s.quit()
    events = wait_for(lambda: [e for e in rx.events()
                               if token in json.dumps(e[2].get("data", {}).get("headers"))],
                      timeout=30)
    ar = events[0][2]["data"].get("authentication_results") if events else None
    tap.ok(ar is not None and len(ar) == 1 and re.match(r"\s*mx\.mxkit\.test;", ar[0] or ""),
           "the bill event carries exactly one Authentication-Results, ours (77 forged sent)",
           diag="%d events; %r" % (len(events or []), ar))


def test_check_only(st):
    base = CONF.replace("{dir}", st.dir)
    cases = [("socket_umask = 999\n", "socket_umask must be octal"),
             ("socket_umask = 0x7\n", "socket_umask must be octal"),
             ("socket_umask = \n", "socket_umask must be octal"),
             ("socket = inet:99999@127.0.0.1\n", "port must be 1-65535"),
             ("socket = inet:@127.0.0.1\n", "port must be 1-65535"),
             # libmilter reads "+8891" as a service name, which is none
             ("socket = inet:+8891@127.0.0.1\n", "port must be 1-65535"),
             ("socket = inet:8891@no-such-host.invalid\n", "host is not an address"),
             ("socket = inet6:8891@127.0.0.1\n", "host is not an address"),
             ("socket = unix:/nonexistent-dir/milter.sock\n", "directory of the UNIX socket"),
             ("socket = unix:/tmp/" + "x" * 120 + "\n", "longer than 107 bytes"),
             ("socket = tcp:8891\n", "socket must be inet:"),
             ("socket = unix:%s\n" % st.path("etc", "key.table"), "exists and is not a socket"),
             ("socket = unix:/proc/mxkit-milter.sock\n", "its directory takes no socket"),
             ("authserv_id = mx.mxkit.test;\n", "authserv_id must be a token"),
             ("authserv_id = \"mx.mxkit.test\"\n", "authserv_id must be a token"),
             ("verify_signatures_max = 0\n", "verify_signatures_max must be 1 to 1000"),
             # 999ms became 0 s, which means no x= at all
             ("signature_ttl = 999ms\n", "signature_ttl is whole seconds"),
             # helper-72 F11: 1500ms was cut to 1s, 9999999999w gave a 16-digit x=
             ("signature_ttl = 1500ms\n", "signature_ttl is whole seconds"),
             ("signature_ttl = 9999999999w\n", "or 1s to 3650d (x= has at most 12 digits)"),
             ("signature_ttl = 3651d\n", "or 1s to 3650d (x= has at most 12 digits)")]
    for line, want in cases:
        path = st.path("etc", "check.conf")
        key = line.split(" =")[0]
        text = re.sub(r"^%s = .*\n" % key, "", base, flags=re.M)
        with open(path, "w") as f:
            f.write(text.replace("{port}", "8891") + line)
        lineno = (text.replace("{port}", "8891") + line).count("\n")
        res = subprocess.run([mxdkim.MILTER, "-t", "-c", path], capture_output=True, text=True)
        tap.ok(res.returncode == 1 and want in res.stderr and
               ("check.conf:%d:" % lineno) in res.stderr,
               "-t refuses %r with file:line" % line.strip(), diag=res.stderr + res.stdout)
    with open(path, "w") as f:
        f.write(base.replace("{port}", "8891") + "socket_umask = 027\nsignature_ttl = 3650d\n")
    res = subprocess.run([mxdkim.MILTER, "-t", "-c", path], capture_output=True, text=True)
    tap.is_(res.returncode, 0, "-t accepts a good configuration (signature_ttl = 3650d)",
            diag=res.stderr)
    with open(path, "w") as f:
        f.write(base.replace("{port}", str(st.port("ttl-start"))) + "signature_ttl = 1500ms\n")
    res = subprocess.run([mxdkim.MILTER, "-f", "-c", path], capture_output=True, text=True,
                         timeout=30)
    tap.ok(res.returncode != 0 and "signature_ttl is whole seconds" in res.stderr,
           "the start refuses signature_ttl = 1500ms too", diag=res.stderr)


def test_socket_owner(st):
    """Started as root with user = nobody and a UNIX socket: the socket was
    root's (0770 with socket_umask 007), so neither the user nor its
    group (where doc/milter-dkim.md puts postfix) could connect. A
    milter negotiation as nobody must be answered."""
    os.makedirs(st.path("msock"), exist_ok=True)
    os.chmod(st.path("msock"), 0o755)
    path = st.path("msock", "m.sock")
    conf = st.path("etc", "owner.conf")
    with open(conf, "w") as f:
        f.write("socket = unix:%s\nmode = verify\nuser = nobody\n" % path)
    proc = subprocess.Popen([mxdkim.MILTER, "-f", "-c", conf], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while not os.path.exists(path) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
        probe = ("import socket,struct,sys\ns=socket.socket(socket.AF_UNIX)\ns.settimeout(5)\n"
                 "s.connect(%r)\nb=b'O'+struct.pack('!III',6,0x1ff,0)\n"
                 "s.sendall(struct.pack('!I',len(b))+b)\nsys.exit(0 if s.recv(5)[4:5]==b'O' else 1)"
                 % path)
        res = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                              "/usr/bin/python3", "-c", probe], capture_output=True, text=True,
                             timeout=20)
        st_ = os.stat(path)
        tap.ok(res.returncode == 0, "user = nobody: nobody's milter negotiation is answered "
               "(socket uid %d gid %d mode %o)" % (st_.st_uid, st_.st_gid, st_.st_mode & 0o777),
               diag=res.stderr[-400:])
    finally:
        proc.terminate()
        proc.wait(timeout=20)


KEYTABLE = """\
rsa    planapulse.ai:rsa2026:{dir}/keys/rsa2026.private
ed     planapulse.ai:ed2026:{dir}/keys/ed2026.private
staff  %:staff2026:{dir}/keys/staff2026.private
"""

with Stack("milter-dkim-hostile") as st:
    tap.stack = st
    rx = start_webhook(st)
    st.start_sink()
    dns = mxdkim.Dns(st.path("etc", "dns.txt"))
    mxdkim.keygen(st, dns, "planapulse.ai", "rsa2026", "rsa", 1024)
    mxdkim.keygen(st, dns, "planapulse.ai", "ed2026", "ed25519")
    mxdkim.keygen(st, dns, "plana.solutions", "staff2026", "rsa", 1024)
    partner_path, _ = mxdkim.keygen(st, dns, "partner.example", "p2026", "rsa", 1024)
    keytable = KEYTABLE.replace("{dir}", st.dir)
    ed_keys = []
    for i in range(12):
        mxdkim.keygen(st, dns, "many.example", "m%02d" % i, "ed25519")
        keytable += "m%02d many.example:m%02d:%s/keys/m%02d.private\n" % (i, i, st.dir, i)
        ed_keys.append("m%02d" % i)
    write(st, "key.table", keytable)
    write(st, "signing.table", "*@planapulse.ai rsa,ed\n*@plana.solutions staff\n"
          "*@many.example %s\n" % ",".join(ed_keys[:6])
          + "many@many.example %s\n" % ",".join(ed_keys[6:]))
    write(st, "sender_binding", "svc-alerts  alerts@planapulse.ai, *@plana.solutions\n")
    mport = st.port("milter-metrics")
    proc, port, conf = mxdkim.start_milter(
        st, "milter", CONF + "metrics_listen = inet:127.0.0.1:%d\n" % mport)
    milter = {"smtpd_milters": "inet:127.0.0.1:%d" % port, "milter_default_action": "tempfail"}
    # The milter must see the attacker's bytes: no header rewriting by
    # Postfix (which would fix some From: forms first), and no penalty
    # sleep or disconnect after the many 550s of the property test.
    raw_headers = dict(milter, local_header_rewrite_clients="", smtpd_error_sleep_time="0",
                       smtpd_soft_error_limit="10000", smtpd_hard_error_limit="10000")
    st.start_postfix(main={"smtpd_authorized_xclient_hosts": "127.0.0.0/8",
                           "header_size_limit": "1024000"},
                     submission=raw_headers, smtpd=milter)
    test_socket_owner(st)
    test_counts(st)
    test_forms(st)
    test_bill_event(st, rx)
    test_ar_property(st)
    test_forged_on_signed_and_internal(st, dns)
    test_from(st, dns)
    test_property(st, dns)
    test_siblings(st, dns, ed_keys)
    test_header_bytes(st)
    test_bare_cr(st, dns)
    test_many_signatures(st, open(partner_path, "rb").read())
    test_reload(st, proc, conf, open(partner_path, "rb").read())
    test_check_only(st)
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % mport, timeout=10) as r:
        scrape = r.read().decode()
    logged = sum(int(n) for n in re.findall(r"removed (\d+) forged Authentication-Results",
                                            st.read_log("milter")))
    metric = re.search(r"^mxkit_dkim_forged_headers_removed_total (\S+)$", scrape, re.M)
    tap.ok(logged > 300 and metric and float(metric.group(1)) == logged,
           "mxkit_dkim_forged_headers_removed_total equals the removals logged (%d)" % logged,
           diag=metric and metric.group(0))
    tap.ok(proc.poll() is None, "milter-dkim is still running")
    rx.stop()

sys.exit(tap.done())
