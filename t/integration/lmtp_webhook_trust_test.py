#!/usr/bin/python3
"""lmtp-webhook, bills you can trust (issue 16): real Dovecot LMTP with the
plugin -> the spool -> lmtp-webhook-spool run -> a real HTTP receiver.

- authentication: built only from the topmost Authentication-Results
  whose authserv-id is lmtp_webhook_trusted_authserv_id; 200 forged
  headers claiming that id in every RFC 8601 syntax (comments before the
  id, quoted id, folding, case, trailing dot), look-alike ids above it,
  and a hypothesis property over any mix of them never change it;
  absent results are "none".
- a secret per route: each event verifies with its route's secret only
  (Python's hmac); a route with two secret files sends two signatures,
  each verifying alone; a spooled event retried after its route's secret
  changed verifies with the new one (same id, same body); a route whose
  secret files are all missing posts nothing (event kept) until one
  exists; no secret in any log line or spool header.
- the message as it arrived: raw_message equals the maildir copy (minus
  Dovecot's Return-Path/Delivered-To/Received, LF -> CRLF) byte for
  byte; a PDF with charset=utf-8, an ISO-8859-1 CSV, a message/rfc822
  part and RFC 2231 names: bytes and sha256 equal the originals; past
  lmtp_webhook_max_raw_message_size only size and sha256.
- the Node consumer of doc/guides/webhook-consumers.md, with the npm
  reference library standardwebhooks, on these real events (two
  signatures included)."""

import base64
import hashlib
import json
import os
import smtplib
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from mxstack import Stack  # noqa: E402
from mxtest import build_path, tap, wait_for  # noqa: E402
from mxwebhook import (Receiver, Runner, events_for, guide_code, lmtp_send,  # noqa: E402
                       make_secret, run_consumer, strip_dovecot, verify)

from hypothesis import given, settings, strategies as s, HealthCheck, Phase  # noqa: E402

PLUGIN_DIR = build_path("lmtp-webhook", ".libs")
SPOOL_TOOL = build_path("lmtp-webhook", "lmtp-webhook-spool")
TRUSTED = "mx.planapulse.test"
CRLF = b"\r\n"
ACME, GLOBEX, INITECH, NOKEY = ("bills@%s.planapulse.app" % w for w in
                                ("acme", "globex", "initech", "nokey"))
SECRETS = {k: make_secret(os.urandom(32)) for k in ("global", "acme", "globex_old",
                                                       "globex_new", "acme2", "nokey")}
GENUINE = ("Authentication-Results: " + TRUSTED + ";\r\n"
           "\tdkim=pass header.d=vendor.test header.s=s1 header.a=rsa-sha256 header.b=Ab/+cd=;\r\n"
           "\tspf=pass smtp.mailfrom=billing@mail.vendor.test;\r\n"
           "\tdmarc=pass (p=reject dis=none) header.from=vendor.test policy.dmarc=reject")
# the signature GENUINE's header.b names (LMTP: no milter verifies it): its
# h= names MIME-Version, the one MIME header message() writes
SIGNATURE = ("DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=vendor.test; s=s1;\r\n"
             "\th=from:to:subject:message-id:date:mime-version;\r\n"
             "\tbh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=;\r\n\tb=Ab/+\r\n\t cd=xyz")
GENUINE_AUTH = {"authserv_id": TRUSTED, "from_domain": "vendor.test", "dmarc": "pass",
                "dmarc_policy": "reject", "content_signed": True,
                "dkim": [{"domain": "vendor.test", "selector": "s1", "result": "pass",
                          "aligned": True, "covers_content": True}],
                "spf": {"result": "pass", "domain": "mail.vendor.test", "aligned": True}}
NONE_AUTH = {"authserv_id": TRUSTED, "from_domain": "vendor.test", "dmarc": "none",
             "dmarc_policy": None, "content_signed": False, "dkim": [],
             "spf": {"result": "none", "domain": None, "aligned": False}}
SEQ = [0]


def message(subject, headers=(), body=b"Invoice attached.\r\n", sender="billing@vendor.test",
            rcpt=ACME):
    SEQ[0] += 1
    head = list(headers) + [SIGNATURE, "From: Vendor Billing <%s>" % sender, "To: " + rcpt,
                            "Subject: " + subject,
                            "Message-ID: <%d.%f@vendor.test>" % (SEQ[0], time.time()),
                            "Date: Mon, 30 Nov 2026 10:00:00 +0000", "MIME-Version: 1.0"]
    return CRLF.join(h.encode() if isinstance(h, str) else h for h in head) + CRLF * 2 + body


def lmtp(st, rcpts, data):
    """One LMTP transaction; {rcpt: (code, text)} of those not given 250."""
    return lmtp_send(st, rcpts, data, sender="billing@vendor.test")[0]


def auth_of(st, rx, subject, headers, rcpt=ACME):
    refused = lmtp(st, [rcpt], message(subject, headers, rcpt=rcpt))
    ev = events_for(rx, subject)
    if refused or not ev:
        return ("refused %r" % refused) if refused else "no event"
    return ev[-1][2]["data"]["authentication"]


# -- forged Authentication-Results ------------------------------------------

def forged_claims(i):
    """A forged header claiming the trusted id, in syntax variant i."""
    lie = ["dkim=pass header.d=evil.test", "dmarc=fail header.from=vendor.test",
           "spf=fail smtp.mailfrom=vendor.test", "dmarc=pass header.from=evil.test",
           "dkim=fail header.d=vendor.test"][i % 5]
    forms = ["%s; %s", "(comment) %s; %s", "\"%s\"; %s", "%s 1; %s", "%s\r\n\t; %s",
             "(a (nested) comment)\r\n %s (x) ;\r\n\t%s", "%s.; %s", "(c)\"%s\"(c); %s"]
    form = forms[i % len(forms)]
    tid = TRUSTED.upper() if i % 3 == 0 else TRUSTED
    return "Authentication-Results: " + form % (tid, lie)


def lookalikes(i):
    """Headers whose id only looks like the trusted one (never trusted)."""
    forms = [TRUSTED + ".evil.test; dmarc=fail header.from=vendor.test",
             "evil.test (" + TRUSTED + "); dkim=pass header.d=evil.test",
             "(" + TRUSTED + "; dmarc=fail header.from=vendor.test",
             "\"" + TRUSTED + " \"; dmarc=fail header.from=vendor.test",
             "x" + TRUSTED + "; spf=fail smtp.mailfrom=vendor.test",
             TRUSTED + "evil; dmarc=fail header.from=vendor.test",
             "\"" + TRUSTED + "; dmarc=fail header.from=vendor.test"]
    return "Authentication-Results: " + forms[i % len(forms)]


def test_authentication(st, rx):
    tap.is_(auth_of(st, rx, "genuine only", [GENUINE]), GENUINE_AUTH,
            "the trusted header alone: authentication as it says (relaxed alignment of "
            "mail.vendor.test)")
    tap.is_(auth_of(st, rx, "no header", []), NONE_AUTH,
            "no Authentication-Results: every result \"none\", from_domain still read")
    forged = [forged_claims(i) for i in range(200)]
    tap.is_(auth_of(st, rx, "200 forged below", [GENUINE] + forged), GENUINE_AUTH,
            "200 forged headers claiming the trusted id (comments, quoted, folded, case, "
            "trailing dot) below the genuine one: no influence")
    above = [lookalikes(i) for i in range(70)]
    tap.is_(auth_of(st, rx, "look-alikes above", above + [GENUINE] + forged), GENUINE_AUTH,
            "70 look-alike ids above it and 200 forged below: no influence")
    tap.is_(auth_of(st, rx, "look-alikes only", above), NONE_AUTH,
            "look-alike ids only: nothing trusted, all \"none\"")
    fail = GENUINE.replace("dmarc=pass", "dmarc=fail").replace("dkim=pass", "dkim=fail")
    got = auth_of(st, rx, "genuine fail, forged pass", [fail] + [
        "Authentication-Results: %s; dkim=pass header.d=vendor.test; "
        "dmarc=pass header.from=vendor.test" % TRUSTED] * 20)
    tap.ok(isinstance(got, dict) and got["dmarc"] == "fail" and not got["dkim"][0]["aligned"],
           "genuine dmarc=fail stays fail under 20 forged passes", diag=got)
    got = auth_of(st, rx, "other domain", [GENUINE.replace("header.from=vendor.test",
                                                            "header.from=evil.test")])
    tap.ok(isinstance(got, dict) and got["dmarc"] == "none",
           "a dmarc pass for another domain than the From: is \"none\"", diag=got)
    inner = message("inner", [GENUINE])
    nested = message("trusted header only inside", [
        "Content-Type: multipart/mixed; boundary=zz"],
        b"--zz\r\n" + GENUINE.encode() + b"\r\nContent-Type: text/plain\r\n\r\nhi\r\n"
        b"--zz\r\nContent-Type: message/rfc822\r\n\r\n" + inner + b"\r\n--zz--\r\n")
    lmtp(st, [ACME], nested)
    ev = events_for(rx, "trusted header only inside")
    tap.ok(ev and ev[0][2]["data"]["authentication"] == NONE_AUTH,
           "a trusted header in a MIME part's header or an attached message counts for nothing",
           diag=ev and ev[0][2]["data"]["authentication"])
    two_from = message("two from", [GENUINE, "From: other@vendor.test"])
    lmtp(st, [ACME], two_from)
    ev = events_for(rx, "two from")
    tap.ok(ev and ev[0][2]["data"]["authentication"]["from_domain"] is None
           and ev[0][2]["data"]["authentication"]["dmarc"] == "none",
           "two From: headers: no from_domain, dmarc \"none\"",
           diag=ev and ev[0][2]["data"]["authentication"])


HEADER = s.one_of(s.integers(0, 10 ** 6).map(lambda i: ("forged", i)),
                  s.integers(0, 10 ** 6).map(lambda i: ("lookalike", i)))


def property_forged(st, rx, examples):
    """Any mix of forged headers (claiming the id: anywhere below the
    genuine one; look-alikes: anywhere) never changes authentication."""
    n = [0]
    failures = []

    @settings(max_examples=examples, deadline=None, derandomize=True,
              suppress_health_check=list(HealthCheck), phases=[Phase.generate])
    @given(s.lists(HEADER, max_size=30), s.lists(HEADER, max_size=30),
           s.sampled_from(["pass", "fail", "temperror"]))
    def prop(above, below, result):
        n[0] += 1
        genuine = GENUINE.replace("dmarc=pass", "dmarc=" + result)
        want = dict(GENUINE_AUTH, dmarc=result)
        top = [lookalikes(i) for kind, i in above]      # nothing trusted above it
        rest = [forged_claims(i) if kind == "forged" else lookalikes(i) for kind, i in below]
        got = auth_of(st, rx, "property %d" % n[0], top + [genuine] + rest)
        if got != want and len(failures) < 3:
            failures.append((top, rest, got))
    prop()
    tap.ok(not failures, "property: %d mixes of forged and look-alike headers never change "
           "authentication" % n[0], diag=failures)


# -- secrets per route ---------------------------------------------------------

def sigs(h):
    return [x for x in h.get("webhook-signature", "").split() if x.startswith("v1,")]


def test_route_secrets(st, rx):
    data = message("three routes", [GENUINE], rcpt=", ".join([ACME, GLOBEX, INITECH]))
    tap.is_(lmtp(st, [ACME, GLOBEX, INITECH], data), {}, "three routed recipients: 250")
    evs = events_for(rx, "three routes", 3)
    by = {e[2]["data"]["envelope"]["rcpt_to"]: e for e in evs}
    if not tap.is_(sorted(by), sorted([ACME, GLOBEX, INITECH]), "three events"):
        return
    for rcpt, own, others in ((ACME, ["acme"], ["global", "globex_old", "globex_new"]),
                              (GLOBEX, ["globex_old", "globex_new"], ["global", "acme"]),
                              (INITECH, ["global"], ["acme", "globex_old", "globex_new"])):
        _, h, _, raw = by[rcpt]
        tap.is_(len(sigs(h)), len(own), "%s: %d v1 signature(s)" % (rcpt, len(own)))
        for k in own:
            tap.is_(verify(SECRETS[k], h, raw), None, "%s verifies with its route's secret %s "
                    "(Python hmac)" % (rcpt, k))
        tap.ok(all(verify(SECRETS[k], h, raw) is not None for k in others),
               "%s does not verify with any other secret" % rcpt)


def spool_file(st, msg_id):
    for sub in ("active", "dead"):
        p = st.path("spool", sub, msg_id)
        if os.path.exists(p):
            with open(p, "rb") as f:
                return f.read()
    return None


def test_rotation_on_retry(st, rx):
    """acme's receiver fails; the secret in acme's file changes; the retry
    is signed with the new one."""
    state = {"n": 0}

    def responder(path, headers, body):
        if path == "/ws/acme" and b"rotated while spooled" in body:
            state["n"] += 1
            return 500 if state["n"] == 1 else 200
        return 200
    rx.responder = responder
    lmtp(st, [ACME], message("rotated while spooled", [GENUINE]))
    first = events_for(rx, "rotated while spooled", 1)
    if not tap.ok(first, "first attempt posted (answered 500)"):
        return
    msg_id = first[0][1]["webhook-id"]
    raw = wait_for(lambda: (lambda b: b if b and b'"attempts":1' in b.split(b"\n")[0] else None)(
        spool_file(st, msg_id)), timeout=10)
    head = json.loads(raw.split(b"\n")[0]) if raw else {}
    tap.is_(head.get("secret_files"), [st.path("acme.secret")],
            "the spool keeps which secret file signs the event (the path)")
    tap.ok(raw is not None and all(v.split("_", 1)[1].encode() not in raw.split(b"\n")[0]
                                   for v in SECRETS.values()),
           "no secret in the spool's header line")
    with open(st.path("acme.secret"), "w") as f:
        f.write(SECRETS["acme2"] + "\n")
    evs = events_for(rx, "rotated while spooled", 2, timeout=20)
    if not tap.is_(len(evs), 2, "retried after the backoff"):
        return
    _, h1, _, raw1 = evs[0]
    _, h2, _, raw2 = evs[1]
    tap.is_((h2["webhook-id"], raw2), (h1["webhook-id"], raw1), "same id and body on the retry")
    tap.is_(verify(SECRETS["acme2"], h2, raw2), None, "the retry verifies with the new secret")
    tap.ok(verify(SECRETS["acme"], h2, raw2) is not None, "and not with the old one")
    rx.responder = None


def test_missing_secret(st, rx, runner):
    """A route whose secret files all miss: nothing posted, event kept,
    an error naming the path (not a secret); posted once the file is there."""
    mark = len(runner.log())
    lmtp(st, [NOKEY], message("no secret yet", [GENUINE], rcpt=NOKEY))
    tap.ok(wait_for(lambda: "none of the route's secret files exists"
                    in runner.log()[mark:], timeout=10),
           "missing secret file: an error in the runner's log")
    time.sleep(1.5)
    tap.is_(len(events_for(rx, "no secret yet", 1, timeout=0.5)), 0, "nothing posted")
    waiting = [n for n in os.listdir(st.path("spool", "active"))
               if b"no secret yet" in (spool_file(st, n) or b"")]
    tap.is_(len(waiting), 1, "the event waits in active/")
    shown = subprocess.run([SPOOL_TOOL, "-c", st.path("spool.conf"), "show",
                            waiting[0] if waiting else "x"], capture_output=True, text=True,
                           timeout=30)
    tap.ok("secret_files: %s %s\n" % (st.path("nokey.secret"), st.path("nokey.next.secret"))
           in shown.stdout, "lmtp-webhook-spool show names the route's secret files",
           diag=shown.stdout[:400] + shown.stderr)
    with open(st.path("nokey.secret"), "w") as f:
        f.write(SECRETS["nokey"] + "\n")
    subprocess.run([SPOOL_TOOL, "-c", st.path("spool.conf"), "flush"], capture_output=True,
                   timeout=30)
    ev = events_for(rx, "no secret yet", 1)
    tap.ok(ev and verify(SECRETS["nokey"], ev[0][1], ev[0][3]) is None,
           "once the file exists: posted, signed with it")


# -- the message as it arrived -------------------------------------------------

def b64lines(data):
    enc = base64.b64encode(data)
    return CRLF.join(enc[i:i + 76] for i in range(0, len(enc), 76))


def qp(data):
    out, line = [], b""
    for c in data:
        tok = bytes([c]) if 33 <= c <= 126 and c != 61 else b"=%02X" % c
        if c in (13, 10):
            tok = bytes([c])
        if len(line) + len(tok) > 72 and c not in (13, 10):
            out.append(line + b"=\r\n")
            line = b""
        line += tok
    return b"".join(out) + line


def part(headers, body):
    return CRLF.join(h.encode() for h in headers) + CRLF * 2 + body


def test_raw_and_attachments(st, rx):
    pdf = b"%PDF-1.7\n" + os.urandom(30000) + b"\n%%EOF\n"
    csv = ("Datum;Beschreibung;Betrag\r\n01.11.2026;Büromaterial für März;12,50 €\r\n"
           .replace("€", "EUR").encode("iso-8859-1") + bytes(range(160, 256)) + b"\r\n")
    inner = message("the forwarded bill", [], b"inner body \xe9\r\n")
    boundary = "b-" + hashlib.sha1(os.urandom(8)).hexdigest()
    parts = [
        part(["Content-Type: text/plain; charset=utf-8"], b"Bills attached."),
        part(["Content-Type: application/pdf; charset=utf-8; name=\"bill.pdf\"",
              "Content-Disposition: attachment;\r\n filename*0*=utf-8''Rechnung%20M%C3%A4rz;"
              "\r\n filename*1=\" 2026.pdf\"",
              "Content-Transfer-Encoding: base64"], b64lines(pdf)),
        part(["Content-Type: text/csv; charset=iso-8859-1",
              "Content-Disposition: attachment; filename*=iso-8859-1''%DCbersicht.csv",
              "Content-Transfer-Encoding: quoted-printable"], qp(csv)),
        part(["Content-Type: message/rfc822",
              "Content-Disposition: attachment; filename=\"forwarded.eml\""], inner),
    ]
    body = b"preamble\r\n" + b"".join(b"--" + boundary.encode() + CRLF + p + CRLF
                                     for p in parts) + b"--" + boundary.encode() + b"--\r\n"
    data = message("raw and attachments",
                   ["Content-Type: multipart/mixed; boundary=\"%s\"" % boundary])
    data = data[:-len(b"Invoice attached.\r\n")] + body
    with smtplib.SMTP("127.0.0.1", st.port("postfix-smtp"), timeout=60) as c:
        c.sendmail("billing@vendor.test", [ACME, INITECH], data)
    evs = events_for(rx, "raw and attachments", 2, timeout=30)
    by = {e[2]["data"]["envelope"]["rcpt_to"]: e[2]["data"] for e in evs}
    if not tap.is_(sorted(by), [ACME, INITECH], "through Postfix: an event per route"):
        return
    ev = by[ACME]
    atts = ev["attachments"]
    # the embedded message's own part is listed too, the message/rfc822
    # part itself last (its bytes are read once the parse is done)
    want = [("Rechnung März 2026.pdf", "application/pdf", pdf),
            ("Übersicht.csv", "text/csv", csv),
            (None, "text/plain", b"inner body \xe9\r\n"),
            ("forwarded.eml", "message/rfc822", inner)]
    tap.is_([(a["filename"], a["content_type"]) for a in atts],
            [(n, t) for n, t, _ in want], "RFC 2231 names decoded (continuations, "
            "percent-encoded UTF-8 and ISO-8859-1); types")
    for a, (name, _, raw) in zip(atts, want):
        got = base64.b64decode(a["content_base64"] or "")
        tap.ok(got == raw and a["size"] == len(raw)
               and a["sha256"] == hashlib.sha256(raw).hexdigest(),
               "%s: bytes, size and sha256 of the original, byte for byte (%d bytes)"
               % (name, len(raw)), diag=(a["size"], a["content_base64"][:80]))
    copies = st.maildir_messages(ACME)
    copy = [c for c in copies if b"raw and attachments" in c]
    rm = ev["raw_message"]
    if not tap.ok(len(copy) == 1 and rm and rm["content_base64"], "a maildir copy and a "
                  "raw_message"):
        return
    raw = base64.b64decode(rm["content_base64"])
    tap.ok(raw == strip_dovecot(copy[0]),
           "raw_message equals the maildir copy without Dovecot's Return-Path, Delivered-To "
           "and Received (LF -> CRLF), byte for byte (%d bytes)" % len(raw),
           diag="first difference at %s" % next((i for i, (x, y) in enumerate(
               zip(raw, strip_dovecot(copy[0]))) if x != y), "the end"))
    tap.ok(raw.endswith(data) and raw.startswith(b"Received: from "),
           "it is the message sent, after the Received: header Postfix added")
    tap.is_((rm["size"], rm["sha256"]), (len(raw), hashlib.sha256(raw).hexdigest()),
            "raw_message size and sha256")
    tap.is_(by[INITECH]["raw_message"], None, "a route without raw_message=yes: null")
    # past lmtp_webhook_max_raw_message_size (1M here): size and sha256 only
    # exactly at the limit (1M = 1048576 bytes) the content is there; one
    # byte more and it is not
    at = message("raw at the limit", [], b"")
    at += (b"y" * 998 + CRLF) * ((1048576 - len(at)) // 1000)
    at += b"z" * (1048576 - len(at) - 2) + CRLF
    lmtp(st, [ACME], at)
    ev = events_for(rx, "raw at the limit")
    rm = ev[0][2]["data"]["raw_message"] if ev else None
    tap.ok(len(at) == 1048576 and rm is not None and rm["content_base64"] is not None
           and base64.b64decode(rm["content_base64"]) == at,
           "a message of exactly lmtp_webhook_max_raw_message_size: its content, byte for byte",
           diag=rm and dict(rm, content_base64=None))
    big = message("raw too big", [], b"")
    big += (b"y" * 998 + CRLF) * ((1048577 - len(big)) // 1000)
    big += b"z" * (1048577 - len(big) - 2) + CRLF
    lmtp(st, [ACME], big)
    ev = events_for(rx, "raw too big")
    rm = ev[0][2]["data"]["raw_message"] if ev else None
    tap.ok(rm is not None and rm["content_base64"] is None and rm["size"] == len(big)
           and rm["sha256"] == hashlib.sha256(big).hexdigest(),
           "past lmtp_webhook_max_raw_message_size: no content, size and sha256 of the bytes "
           "sent (%d)" % len(big), diag=rm and dict(rm, content_base64=None))


# -- the Node consumer with the reference library, on real events ------------

def test_node_consumer(st, rx, tmp):
    """The guide's consumers (Node with the reference library, Python, Go)
    on real events. Their list of known vendor domains is the guide's
    example, vendor.example; these bills come from vendor.test."""
    evs = {e[2]["data"]["envelope"]["rcpt_to"]: e for e in events_for(rx, "three routes", 3)}
    lmtp(st, [GLOBEX], message("globex fails dmarc", [GENUINE.replace("dmarc=pass",
                                                                       "dmarc=fail")],
                               rcpt=GLOBEX))
    failing = events_for(rx, "globex fails dmarc")
    # a genuine bill the vendor signed for acme, sent on to globex
    lmtp(st, [GLOBEX], message("sent on to globex", [GENUINE], rcpt=ACME))
    sent_on = events_for(rx, "sent on to globex")
    if not tap.ok(len(evs) == 3 and failing and sent_on, "real events to check"):
        return

    def case(e, secrets, body=None):
        _, h, _, raw = e
        return {"secrets": [SECRETS[k] for k in secrets],
                "headers": {k: v for k, v in h.items() if k.startswith("webhook-")},
                "body": body if body is not None else raw.decode()}
    cases = [
        ("acme, its secret", case(evs[ACME], ["acme"]), "accept"),
        ("acme, globex's secrets", case(evs[ACME], ["globex_old", "globex_new"]), "reject"),
        ("globex (two signatures), only the old secret", case(evs[GLOBEX], ["globex_old"]),
         "accept"),
        ("globex (two signatures), only the new secret", case(evs[GLOBEX], ["globex_new"]),
         "accept"),
        ("globex, dmarc=fail, new secret", case(failing[0], ["globex_new"]), "quarantine"),
        ("globex, the global secret", case(evs[GLOBEX], ["global"]), "reject"),
        ("initech, global secret", case(evs[INITECH], ["global"]), "accept"),
        ("initech, body changed", case(evs[INITECH], ["global"],
                                       evs[INITECH][3].decode().replace("vendor", "vendoR")),
         "reject"),
        ("globex, acme's bill sent on (To: acme)", case(sent_on[0], ["globex_new"]),
         "quarantine"),
    ]
    # each workspace's consumer has its own bills address (the event's rcpt_to)
    bills = [json.loads(c["body"])["data"]["envelope"]["rcpt_to"] for _, c, _ in cases]

    def run_each(lang, code):
        got = [None] * len(cases)
        for address in sorted(set(bills)):
            idx = [i for i, b in enumerate(bills) if b == address]
            out = run_consumer(lang, code.replace('"bills@acme.example"', '"%s"' % address),
                               [cases[i][1] for i in idx], tmp)
            if not isinstance(out, list):
                return out
            for i, r in zip(idx, out):
                got[i] = r
        return got
    for lang, what in (("javascript", "Node consumer (npm standardwebhooks)"),
                       ("python", "Python consumer"), ("go", "Go consumer")):
        code = guide_code(lang).replace('"vendor.example"', '"vendor.test"')
        got = run_each(lang, code)
        tap.is_(got, [w for _, _, w in cases], "the guide's %s on real events: %s"
                % (what, ", ".join(n for n, _, _ in cases)))
        # the same events, with vendor.test not among the workspace's vendors
        # (a lookalike domain with DMARC): nothing is accepted
        got = run_each(lang, guide_code(lang))
        tap.is_(got, [w.replace("accept", "quarantine") for _, _, w in cases],
                "the guide's %s: DMARC pass from a domain not among the workspace's "
                "vendors is quarantined" % what)


def test_bad_trusted_id(st, rx):
    """A trusted id that can never match (not a token): a configuration
    error that tempfails routed recipients, not a silent "none"."""
    conf = st.path("dovecot", "dovecot.conf")
    with open(conf) as f:
        good = f.read()
    with open(conf, "w") as f:
        f.write(good.replace("lmtp_webhook_trusted_authserv_id = " + TRUSTED,
                             "lmtp_webhook_trusted_authserv_id = mx planapulse.test"))
    subprocess.run(["doveadm", "-c", conf, "reload"], capture_output=True, timeout=30)
    time.sleep(1)
    refused = lmtp(st, [ACME], message("bad trusted id", [GENUINE]))
    tap.ok(ACME in refused and refused[ACME][0] == 451,
           "trusted id with a space: routed recipient tempfailed (451)", diag=refused)
    # Dovecot's log process writes the line after LMTP has answered
    tap.ok(wait_for(lambda: "lmtp_webhook_trusted_authserv_id must be a token"
                    in st.read_log("dovecot"), timeout=10),
           "and the error is in Dovecot's log")
    with open(conf, "w") as f:
        f.write(good)
    subprocess.run(["doveadm", "-c", conf, "reload"], capture_output=True, timeout=30)
    time.sleep(1)
    tap.is_(lmtp(st, [ACME], message("trusted id fixed", [GENUINE])), {},
            "fixed and reloaded: delivered")
    ev = events_for(rx, "trusted id fixed")
    tap.ok(ev and ev[0][2]["data"]["authentication"] == GENUINE_AUTH,
           "and the event's authentication is back")


def main():
    rx = Receiver()
    tmp = tempfile.mkdtemp(prefix="mxkit-trust-")
    with Stack("webhook-trust") as st:
        tap.stack = st
        for user in (ACME, GLOBEX, INITECH, NOKEY):
            st.users[user] = "pw"
        os.makedirs(st.path("spool"))
        shutil_chown(st.path("spool"))
        for k in ("global", "acme", "globex_old", "globex_new"):
            with open(st.path(k.replace("_", ".") + ".secret"), "w") as f:
                f.write(SECRETS[k] + "\n")
            os.chmod(st.path(k.replace("_", ".") + ".secret"), 0o644)
        with open(st.path("spool.conf"), "w") as f:
            f.write("spool_dir = %s\nsecret_file = %s\ntimeout = 5s\n"
                    % (st.path("spool"), st.path("global.secret")))
        url = "http://127.0.0.1:%d/ws/" % rx.port
        st.start_dovecot(
            lmtp_plugins="lmtp_webhook",
            plugin_settings={
                "lmtp_webhook_route": "%s %sacme secret_file=%s raw_message=yes"
                                      % (ACME, url, st.path("acme.secret")),
                "lmtp_webhook_route2": "%s %sglobex secret_file=%s secret_file=%s"
                                       % (GLOBEX, url, st.path("globex.old.secret"),
                                          st.path("globex.new.secret")),
                "lmtp_webhook_route3": "%s %snokey secret_file=%s secret_file=%s"
                                       % (NOKEY, url, st.path("nokey.secret"),
                                          st.path("nokey.next.secret")),
                "lmtp_webhook_route4": "bills@*.planapulse.app %s{1}" % url,
                "lmtp_webhook_spool_dir": st.path("spool"),
                "lmtp_webhook_trusted_authserv_id": TRUSTED,
                "lmtp_webhook_max_raw_message_size": "1M",
            },
            extra="mail_plugin_dir = %s\n" % PLUGIN_DIR)
        st.start_postfix(main={"virtual_mailbox_domains": "acme.planapulse.app, "
                               "globex.planapulse.app, initech.planapulse.app"})
        runner = Runner(st)
        runner.start()
        test_authentication(st, rx)
        property_forged(st, rx, int(os.environ.get("MXKIT_PROPERTY_EXAMPLES", "25")))
        test_route_secrets(st, rx)
        test_rotation_on_retry(st, rx)
        test_missing_secret(st, rx, runner)
        test_raw_and_attachments(st, rx)
        test_node_consumer(st, rx, tmp)
        test_bad_trusted_id(st, rx)
        logs = st.read_log("dovecot") + runner.log()
        leaked = [k for k, v in SECRETS.items() if v.split("_", 1)[1] in logs or v in logs]
        tap.is_(leaked, [], "no secret in the Dovecot or runner log")
        bad = [line for line in st.read_log("dovecot").splitlines()
               if "Panic" in line or "Fatal" in line or "killed with signal" in line]
        tap.is_(bad, [], "no crash, panic or fatal error in the Dovecot log")
    rx.stop()
    return tap.done()


def shutil_chown(path):
    import shutil
    shutil.chown(path, "nobody", "nogroup")


sys.exit(main())
