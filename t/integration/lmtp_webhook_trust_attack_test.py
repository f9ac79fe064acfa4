#!/usr/bin/python3
"""lmtp-webhook trust, attacked from outside (issue 16's promises): a
hostile sender through real Postfix + milter-dkim (verify, the host's
Authentication-Results) + Dovecot LMTP with the plugin, and an unlucky
operator of lmtp-webhook-spool.

- authentication: forged Authentication-Results sent over SMTP in forms
  Postfix, the milter and Dovecot might read differently (white space
  before the colon, 8-bit and NUL bytes, encoded words, thousands of
  them) never make the event say more than the milter's own header;
  DKIM signatures by a domain the sender controls never align with a
  From: of another domain (display names, comments, case, trailing dot,
  sub-domains of a public suffix).
- secrets: each event verifies with its route's secret only, whatever
  the recipient's case, detail or quoting.
- raw_message: byte for byte what Postfix delivered (bare LF, dot
  stuffing, 8-bit, long lines)."""

import base64
import hashlib
import os
import smtplib
import signal
import socket
import sys
import time

import dkim

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from mxstack import Stack  # noqa: E402
from mxtest import build_path, tap  # noqa: E402
from mxwebhook import (Receiver, Runner, events_for, lmtp_send, make_secret,  # noqa: E402
                       strip_dovecot, verify)
import mxdkim  # noqa: E402

PLUGIN_DIR = build_path("lmtp-webhook", ".libs")
TRUSTED = "mx.planapulse.test"
CRLF = b"\r\n"
ACME, GLOBEX = "bills@acme.planapulse.app", "bills@globex.planapulse.app"
SECRETS = {k: make_secret(os.urandom(32)) for k in ("global", "acme", "globex")}
MILTER_CONF = """\
socket = inet:{port}@127.0.0.1
mode = verify
dns_test_file = {dir}/etc/dns.txt
authserv_id = %s
""" % TRUSTED
SEQ = [0]


def message(subject, headers=(), body=b"Invoice attached.\r\n", frm="Vendor <billing@vendor.test>",
            rcpt=ACME):
    SEQ[0] += 1
    head = list(headers) + (["From: " + frm] if frm else []) + [
        "To: " + rcpt, "Subject: " + subject,
        "Message-ID: <%d.%f@vendor.test>" % (SEQ[0], time.time()),
        "Date: Mon, 30 Nov 2026 10:00:00 +0000", "MIME-Version: 1.0"]
    return CRLF.join(h.encode() if isinstance(h, str) else h for h in head) + CRLF * 2 + body


def smtp(st, rcpts, data, sender="billing@vendor.test"):
    """Through Postfix (and the milter); {} or what was refused."""
    try:
        with smtplib.SMTP("127.0.0.1", st.port("postfix-smtp"), timeout=60) as c:
            return c.sendmail(sender, rcpts, data)
    except smtplib.SMTPException as e:
        return {"error": repr(e)}


def auth_of(st, rx, subject, data, rcpt=ACME):
    refused = smtp(st, [rcpt], data)
    ev = events_for(rx, subject)
    if refused or not ev:
        return ("refused %r" % refused) if refused else "no event"
    return ev[-1][2]["data"]["authentication"]


# -- forged Authentication-Results through Postfix and the milter ------------

FORGED_LIE = "dkim=pass header.d=vendor.test header.s=s1; dmarc=pass header.from=vendor.test"


def test_forged_names(st, rx):
    """Header names Postfix, libmilter and Dovecot might each read their
    own way; the milter's own header must be what the event says."""
    forms = [
        ("space before colon", b"Authentication-Results : %s; %s"),
        ("tab before colon", b"Authentication-Results\t: %s; %s"),
        ("lower case name", b"authentication-results: %s; %s"),
        ("no space after colon", b"Authentication-Results:%s; %s"),
        ("encoded-word id", b"Authentication-Results: =?us-ascii?q?%s?=; %s"),
        ("8-bit in comment", b"Authentication-Results: (\xc3\xa9) %s; %s"),
        ("folded before id", b"Authentication-Results:\r\n %s\r\n ; %s"),
        ("empty line-like fold", b"Authentication-Results: %s;\r\n \r\n %s"),
    ]
    # the milter's own header for the same message without a forgery
    # (its dkim=, spf= and dmarc= for vendor.test from 127.0.0.1)
    base = auth_of(st, rx, "forged baseline", message("forged baseline"))
    tap.ok(isinstance(base, dict) and base["authserv_id"] == TRUSTED
           and base["from_domain"] == "vendor.test" and base["dmarc"] != "pass"
           and [d["result"] for d in base["dkim"]] == ["none"],
           "baseline: an unsigned bill, the milter's header read (dkim none, no dmarc pass)",
           diag=base)
    for name, form in forms:
        subject = "forged name " + name
        forged = form % (TRUSTED.encode(), FORGED_LIE.encode())
        got = auth_of(st, rx, subject, message(subject, [forged]))
        tap.is_(got, base,
                "forged A-R (%s) through Postfix and the milter: the event says only what "
                "the milter's own header says" % name)
    many = [b"Authentication-Results: %s; %s" % (TRUSTED.encode(), FORGED_LIE.encode())] * 3000
    got = auth_of(st, rx, "forged 3000", message("forged 3000", many))
    tap.ok(got == base or str(got).startswith("refused"),
           "3000 forged headers: refused or no influence", diag=got)


# -- DKIM by a domain the sender controls -------------------------------------

def signed(st, subject, frm, domain="attacker.test", extra=()):
    data = message(subject, frm=frm)
    sig = dkim.sign(data, b"a1", domain.encode(), st.attacker_key,
                    include_headers=[b"from", b"to", b"subject", b"date", b"message-id"])
    sig = sig.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    return sig + b"".join(h.encode() + CRLF for h in extra) + data


def test_dkim_alignment(st, rx):
    """The sender signs with attacker.test (its own key, published): a
    pass, never aligned with a From: of vendor.test in any form."""
    forms = [
        ("plain", "billing@vendor.test", "vendor.test"),
        ("upper case", "billing@VENDOR.TEST", "vendor.test"),
        ("display name with attacker address", "\"billing@attacker.test\" <billing@vendor.test>",
         "vendor.test"),
        ("comment naming attacker", "billing@vendor.test (billing@attacker.test)", "vendor.test"),
        ("encoded-word display", "=?utf-8?q?billing=40attacker.test?= <billing@vendor.test>",
         "vendor.test"),
        ("group", "Billing: billing@vendor.test;", None),
        ("two mailboxes", "billing@vendor.test, x@attacker.test", None),
        ("sub-domain of attacker", "billing@vendor.test.attacker.test",
         "vendor.test.attacker.test"),
    ]
    for name, frm, from_domain in forms:
        subject = "dkim from " + name
        got = auth_of(st, rx, subject, signed(st, subject, frm))
        dk = got.get("dkim") if isinstance(got, dict) else None
        want_aligned = from_domain is not None and from_domain.endswith("attacker.test")
        tap.ok(isinstance(got, dict) and got["from_domain"] == from_domain and dk
               and dk[0]["domain"] == "attacker.test" and dk[0]["result"] == "pass"
               and dk[0]["aligned"] is want_aligned and got["dmarc"] == "none",
               "signed by attacker.test, From: %s: from_domain %s, dkim pass aligned=%s"
               % (name, from_domain, want_aligned), diag=got)
    # a second From: with white space before its colon: the milter (the
    # signature must cover every From:) and the event must agree on two
    for sp in (" ", "\t"):
        subject = "dkim two from %r" % sp
        data = signed(st, subject, "billing@attacker.test",
                      extra=["From%s: billing@vendor.test" % sp])
        got = auth_of(st, rx, subject, data)
        tap.ok(isinstance(got, dict) and not any(d["aligned"] and got["from_domain"] ==
                                                 "vendor.test" for d in got["dkim"]),
               "From%r: a second From: never makes attacker.test's signature aligned for "
               "vendor.test" % sp, diag=got)
        ev = events_for(rx, subject)
        hf = ev and ev[-1][2]["data"]["headers"]["from"]
        tap.ok(isinstance(got, dict) and (got["from_domain"] is None or
                                          (hf and got["from_domain"] in hf)),
               "From%r: from_domain null or the domain of the From: the event shows (%r)"
               % (sp, hf), diag=got)


def test_hostile_signature_tags(st, rx):
    """DKIM-Signature headers whose d= and s= carry result syntax: the
    milter writes them into our own header; the event must read one
    dkim entry per signature and never a pass."""
    tags = [("d", "vendor.test; dmarc=pass header.from=vendor.test"),
            ("d", "vendor.test(x) dkim=pass header.d=vendor.test"),
            ("s", "a1; dkim=pass header.d=vendor.test"),
            ("s", "a1\" dkim=pass header.d=\"vendor.test"),
            ("d", "vendor.test\\"),
            ("s", "(a1"),
            ("d", "=?utf-8?q?vendor.test?=")]
    for i, (tag, value) in enumerate(tags):
        subject = "hostile tag %d" % i
        vals = {"d": "attacker.test", "s": "a1"}
        vals[tag] = value
        sig = ("DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=%s; s=%s;\r\n"
               "\th=from:subject; bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=;\r\n"
               "\tb=AAAA" % (vals["d"], vals["s"]))
        got = auth_of(st, rx, subject, message(subject, [sig]))
        tap.ok(isinstance(got, dict) and len(got["dkim"]) == 1
               and got["dkim"][0]["result"] != "pass" and not got["dkim"][0]["aligned"]
               and got["dmarc"] != "pass",
               "DKIM-Signature %s=%r: one dkim entry, no pass, no dmarc pass" % (tag, value),
               diag=got)


# -- secrets per route, by recipient form ------------------------------------

def lmtp(st, rcpts, data):
    """One LMTP transaction; {rcpt: (code, text)} of those not given 250."""
    return lmtp_send(st, rcpts, data, sender="billing@vendor.test")[0]


def which_secret(ev):
    path, headers, _, body = ev
    return sorted(k for k, v in SECRETS.items() if verify(v, headers, body) is None)


def test_route_secret_forms(st, rx):
    """Recipient forms of acme's address: an event for workspace acme is
    signed with acme's secret only (never the catch-all's global one,
    never globex's)."""
    forms = ["BILLS@ACME.PLANAPULSE.APP", "Bills@Acme.planapulse.app",
             "bills+x@acme.planapulse.app", "BILLS+Y@acme.planapulse.app",
             "\"bills\"@acme.planapulse.app", "\"bills+z\"@acme.planapulse.app", "bills@ACME.planapulse.app"]
    for rcpt in forms:
        subject = "secret form " + rcpt
        refused = lmtp(st, [rcpt], message(subject, rcpt=rcpt))
        ev = events_for(rx, subject, timeout=15)
        if refused:
            tap.ok(not ev, "%s refused (%r) and no event" % (rcpt, refused))
            continue
        ws = ev and ev[-1][2]["data"].get("workspace")
        tap.ok(ev and which_secret(ev[-1]) == ["acme"] and ev[-1][0].endswith("/acme"),
               "%s: posted to acme's URL, verifies with acme's secret only" % rcpt,
               diag=(ev and (ev[-1][0], which_secret(ev[-1]), ws)))


# -- raw_message: what Postfix delivered ---------------------------------------

def raw_smtp(st, rcpt, data):
    """DATA sent as given (no smtplib line-ending fixes), dot-stuffed."""
    s = socket.create_connection(("127.0.0.1", st.port("postfix-smtp")), timeout=60)
    f = s.makefile("rb")

    def cmd(line):
        if line is not None:
            s.sendall(line + CRLF)
        reply = b""
        while True:
            ln = f.readline()
            reply += ln
            if ln[3:4] != b"-":
                return reply
    cmd(None)
    cmd(b"EHLO attacker.test")
    cmd(b"MAIL FROM:<billing@vendor.test> BODY=8BITMIME")
    cmd(b"RCPT TO:<%s>" % rcpt.encode())
    cmd(b"DATA")
    stuffed = b"\n".join(b"." + ln if ln.startswith(b".") else ln for ln in data.split(b"\n"))
    reply = cmd(stuffed + b"\r\n.")
    cmd(b"QUIT")
    s.close()
    return reply


def test_raw_message(st, rx):
    cases = [
        ("bare LF", b"line one\nline two\r\nline three\n"),
        ("dot lines", b".\r\n..\r\n.hidden\r\n. \r\nend\r\n"),
        ("8-bit", b"Gr\xfc\xdfe \xe2\x82\xac \xff\xfe\r\n"),
        ("long line", b"L" * 5000 + b"\r\nshort\r\n"),
        ("CR alone", b"a\rb\r\n"),
        ("no final newline", b"last line without end"),
        ("NUL bytes", b"before\x00after\r\n\x00\r\n"),
        ("900 KB of long lines", (b"x" * 3000 + b"\r\n") * 300),
        ("trailing white space", b"tab\t\r\nspace \r\n \r\n\t\r\n"),
    ]
    for name, body in cases:
        subject = "raw " + name
        data = message(subject, body=body)
        reply = raw_smtp(st, ACME, data)
        ev = events_for(rx, subject)
        copy = [c for c in st.maildir_messages(ACME) if subject.encode() in c]
        rm = ev and ev[-1][2]["data"].get("raw_message")
        if not tap.ok(ev and rm and rm.get("content_base64") and len(copy) == 1,
                      "%s: delivered, an event with raw_message" % name,
                      diag=(reply, len(copy), rm)):
            continue
        raw = base64.b64decode(rm["content_base64"])
        want = strip_dovecot(copy[0])
        tap.ok(raw == want and rm["size"] == len(raw)
               and rm["sha256"] == hashlib.sha256(raw).hexdigest(),
               "%s: raw_message is the maildir copy byte for byte, size and sha256" % name,
               diag="first difference at %s: %r vs %r" % next(
                   ((i, raw[i:i + 40], want[i:i + 40]) for i in range(min(len(raw), len(want)))
                    if raw[i] != want[i]), (min(len(raw), len(want)), raw[-40:], want[-40:])))


def test_header_differential(st, rx):
    """A line with no colon among the headers: Postfix (and the milter)
    end the headers there; whatever Dovecot reads after it must not
    make the event claim more."""
    for name, mid in [("no colon", b"NOT A HEADER LINE"), ("8-bit name", b"X-\xe9: v"),
                      ("space in name", b"X Bad: v"), ("NUL in name", b"X-\x00: v")]:
        subject = "differential " + name
        data = (b"From: billing@attacker.test\r\nTo: " + ACME.encode() + b"\r\nSubject: "
                + subject.encode() + b"\r\nMessage-ID: <d%d@attacker.test>\r\n" % SEQ[0]
                + mid + b"\r\nFrom: billing@vendor.test\r\nAuthentication-Results: "
                + TRUSTED.encode() + b"; dmarc=pass header.from=vendor.test\r\n\r\nbody\r\n")
        SEQ[0] += 1
        reply = raw_smtp(st, ACME, data)
        ev = events_for(rx, subject, timeout=15)
        copy = [c for c in st.maildir_messages(ACME) if subject.encode() in c]
        d = ev and ev[-1][2]["data"]
        tap.ok(d and d["authentication"]["dmarc"] != "pass"
               and d["authentication"]["from_domain"] == "attacker.test"
               and d["headers"]["from"] == "billing@attacker.test",
               "%s: the event reads the From: the milter read (attacker.test), no pass"
               % name,
               diag=(reply, d and d["authentication"], d and d["headers"], copy[:1]))


# -- the unlucky operator's secret files ----------------------------------------

INITECH = "bills@initech.planapulse.app"


def test_secret_files(st, rx, runner):
    """What an operator may put in a route's secret file: the event is
    signed with the secret iff the file holds exactly one; otherwise it
    waits (nothing posted, nothing lost, the file named in the log,
    never its content) and goes once the file is fixed."""
    raw = os.urandom(32)
    b64 = base64.b64encode(raw).decode()
    good = "whsec_" + b64
    path = st.path("initech.secret")
    variants = [
        ("CRLF ending", good + "\r\n", True),
        ("no whsec_ prefix", b64 + "\n", True),
        ("white space around", "\n\t " + good + " \n\n", True),
        ("empty (truncated mid-rewrite)", "", False),
        ("two secrets on two lines", good + "\n" + make_secret(os.urandom(32)) + "\n", False),
        ("a UTF-8 BOM before it", "\ufeff" + good + "\n", False),
        ("junk past the first KB", good + " " * 2000 + "junk\n", False),
        ("url-safe base64", "whsec_" + base64.urlsafe_b64encode(b"\xfb\xff" * 16).decode(), False),
        ("a key=value line", "secret=" + good + "\n", False),
        ("a NUL byte and junk after it", good + "\x00junk\n", False),
        ("a second secret past the first KB", good + "\n" * 1100 + good[:-4] + "AAA=\n",
         False),
    ]
    for name, content, valid in variants:
        with open(path, "w") as f:
            f.write(content)
        subject = "secret file " + name
        mark = len(runner.log())
        refused = lmtp(st, [INITECH], message(subject, rcpt=INITECH))
        ev = events_for(rx, subject, timeout=10 if valid else 4)
        if valid:
            tap.ok(not refused and ev and verify(good, ev[-1][1], ev[-1][3]) is None
                   and which_secret(ev[-1]) == [],
                   "secret file with %s: signed with that secret" % name,
                   diag=(refused, ev and ev[-1][1]))
            continue
        log = runner.log()[mark:]
        tap.ok(not refused and not ev and path in log,
               "secret file with %s: nothing posted, the file named in the log" % name,
               diag=(refused, len(ev), log[-500:]))
        tap.ok(b64 not in log and content.strip() not in log or not content.strip(),
               "secret file with %s: its content not in the log" % name)
        with open(path, "w") as f:
            f.write(good + "\n")
        runner.proc.send_signal(signal.SIGUSR1)
        ev = events_for(rx, subject, timeout=15)
        tap.ok(ev and len(ev) == 1 and verify(good, ev[-1][1], ev[-1][3]) is None,
               "secret file with %s: fixed, the waiting event goes, signed with it" % name)


def test_secret_fifo(st, rx, runner):
    """A route's secret file that is a named pipe (a secrets agent's, or
    a typo for one): that route waits, the runner does not hang on it,
    every other route's events still go."""
    path = st.path("initech.secret")
    os.unlink(path)
    os.mkfifo(path)
    mark = len(runner.log())
    lmtp(st, [INITECH], message("secret fifo", rcpt=INITECH))
    time.sleep(1)
    lmtp(st, [ACME], message("while a fifo", rcpt=ACME))
    ev = events_for(rx, "while a fifo", timeout=15)
    tap.ok(ev and which_secret(ev[-1]) == ["acme"],
           "a route's secret file is a FIFO: the runner still posts another route's event")
    tap.ok(not events_for(rx, "secret fifo", timeout=1) and path in runner.log()[mark:],
           "and the FIFO route's event waits, the file named in the log",
           diag=runner.log()[mark:][-400:])
    os.unlink(path)
    with open(path, "w") as f:
        f.write(SECRETS["global"] + "\n")
    runner.proc.send_signal(signal.SIGUSR1)
    ev = events_for(rx, "secret fifo", timeout=15)
    tap.ok(ev and which_secret(ev[-1]) == ["global"],
           "a regular file again: the waiting event goes, signed with it")


def main():
    rx = Receiver()
    with Stack("webhook-trust-attack") as st:
        tap.stack = st
        for user in (ACME, GLOBEX, INITECH):
            st.users[user] = "pw"
        os.makedirs(st.path("spool"))
        os.makedirs(st.path("etc"), exist_ok=True)
        import shutil
        shutil.chown(st.path("spool"), "nobody", "nogroup")
        for k in SECRETS:
            with open(st.path(k + ".secret"), "w") as f:
                f.write(SECRETS[k] + "\n")
            os.chmod(st.path(k + ".secret"), 0o644)
        with open(st.path("spool.conf"), "w") as f:
            f.write("spool_dir = %s\nsecret_file = %s\ntimeout = 5s\n"
                    % (st.path("spool"), st.path("global.secret")))
        dns = mxdkim.Dns(st.path("etc", "dns.txt"))
        key_path, _ = mxdkim.keygen(st, dns, "attacker.test", "a1", "rsa", 1024)
        with open(key_path, "rb") as f:
            st.attacker_key = f.read()
        _, mport, _ = mxdkim.start_milter(st, "milter", MILTER_CONF)
        url = "http://127.0.0.1:%d/ws/" % rx.port
        st.start_dovecot(
            lmtp_plugins="lmtp_webhook",
            plugin_settings={
                "lmtp_webhook_route": "%s %sacme secret_file=%s raw_message=yes"
                                      % (ACME, url, st.path("acme.secret")),
                "lmtp_webhook_route2": "%s %sglobex secret_file=%s"
                                       % (GLOBEX, url, st.path("globex.secret")),
                "lmtp_webhook_route3": "%s %sinitech secret_file=%s"
                                       % (INITECH, url, st.path("initech.secret")),
                "lmtp_webhook_route4": "bills@*.planapulse.app %s{1}" % url,
                "lmtp_webhook_spool_dir": st.path("spool"),
                "lmtp_webhook_trusted_authserv_id": TRUSTED,
                "lmtp_webhook_max_raw_message_size": "1M",
            },
            extra="mail_plugin_dir = %s\nrecipient_delimiter = +\n" % PLUGIN_DIR)
        st.start_postfix(main={"virtual_mailbox_domains": "acme.planapulse.app, "
                               "globex.planapulse.app",
                               "smtpd_milters": "inet:127.0.0.1:%d" % mport,
                               "milter_default_action": "tempfail",
                               "local_header_rewrite_clients": "",
                               "recipient_delimiter": "+"})
        runner = Runner(st)
        runner.start()
        test_forged_names(st, rx)
        test_dkim_alignment(st, rx)
        test_hostile_signature_tags(st, rx)
        test_route_secret_forms(st, rx)
        test_raw_message(st, rx)
        test_header_differential(st, rx)
        test_secret_files(st, rx, runner)
        test_secret_fifo(st, rx, runner)
        logs = st.read_log("dovecot") + runner.log() + st.read_log("milter")
        leaked = [k for k, v in SECRETS.items() if v.split("_", 1)[1] in logs]
        tap.is_(leaked, [], "no secret in the Dovecot, milter or runner log")
        bad = [line for line in st.read_log("dovecot").splitlines()
               if "Panic" in line or "Fatal" in line or "killed with signal" in line]
        tap.is_(bad, [], "no crash, panic or fatal error in the Dovecot log")
    rx.stop()
    return tap.done()


sys.exit(main())
