#!/usr/bin/python3
# mxkit-test: alone (asserts LMTP did not wait: within 1.5 s)
"""lmtp-webhook through real Dovecot LMTP and real Postfix: a bill mail
becomes a signed webhook (verified with Python's hmac), committed to the
spool by the plugin and posted at once by lmtp-webhook-spool run; the
receiver's outages, errors, 410 and slowness are retried by it; an
unusable spool tempfails the recipient so Postfix keeps the mail; hostile
MIME still gives a webhook and no crash. (Hostile delivery cases:
lmtp_webhook_delivery_test.py.)"""

import base64
import json
import hashlib
import os
import shutil
import smtplib
import sys
import time
import uuid
from email.message import EmailMessage

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from mxstack import DOMAIN, Stack  # noqa: E402
from mxtest import build_path, run, tap, wait_for  # noqa: E402
from mxwebhook import (Receiver, lmtp_send, make_secret, port_refuses,  # noqa: E402
                       start_spool_dovecot, verify)

SPOOL_TOOL = build_path("lmtp-webhook", "lmtp-webhook-spool")
PLUGIN_DIR = build_path("lmtp-webhook", ".libs")
SECRET = make_secret()
PDF = b"%PDF-1.4\n" + os.urandom(40000) + b"\n%%EOF\n"


def bill(rcpt, subject, pdf=PDF):
    msg = EmailMessage()
    msg["From"] = "Acme Billing <billing@vendor.example>"
    msg["To"] = rcpt
    msg["Subject"] = subject
    msg["Message-ID"] = "<%s@vendor.example>" % hashlib.sha1(subject.encode()).hexdigest()
    msg["Date"] = "Sun, 22 Nov 2026 10:00:00 +0000"
    msg.set_content("Invoice attached. Total: 12,30 \u20ac")
    msg.add_alternative("<p>Invoice attached. Total: <b>12,30 &euro;</b></p>", subtype="html")
    msg.add_attachment(pdf, maintype="application", subtype="pdf", filename="invoice-42.pdf")
    return msg.as_bytes()


def spool(st, *args):
    return run([SPOOL_TOOL, "-c", st.path("spool.conf")] + list(args), timeout=60)


def spooled_ids(st):
    return sorted(os.listdir(st.path("spool", "active"))) \
        if os.path.isdir(st.path("spool", "active")) else []


RUNNER = {}


def start_runner(st):
    """lmtp-webhook-spool run, the only poster of events."""
    RUNNER["proc"] = st.start_daemon("spool", [SPOOL_TOOL, "-c", st.path("spool.conf"),
                                               "-f", "run"])
    if not wait_for(lambda: "delivering" in st.read_log("spool"), timeout=10):
        raise SystemExit("lmtp-webhook-spool run did not start:\n" + st.read_log("spool"))
    return RUNNER["proc"]


def stop_runner():
    proc = RUNNER.pop("proc")
    proc.terminate()
    proc.wait(timeout=20)


def check_event(rx_event, name):
    path, headers, event, raw = rx_event
    why = verify(SECRET, headers, raw)
    tap.ok(why is None, name + ": signature verifies with Python's hmac", diag=why)
    return event


def test_bill_through_postfix(st, rx):
    subject = "Invoice 42 via Postfix"
    with smtplib.SMTP("127.0.0.1", st.port("postfix-smtp"), timeout=30) as c:
        c.sendmail("billing@vendor.example", ["bills@acme.planapulse.app"],
                   bill("bills@acme.planapulse.app", subject))
    got = wait_for(lambda: rx.events(), timeout=30)
    tap.is_(len(got), 1, "a PDF bill to bills@acme.planapulse.app gives exactly one POST")
    if not got:
        return
    path, headers, event, raw = got[0]
    tap.is_(path, "/ws/acme/api/bills/inbound", "posted to the acme URL ({1} = acme)")
    check_event(got[0], "bill")
    data = event.get("data", {})
    tap.is_(event.get("type"), "message.received", "type is message.received")
    tap.is_(data.get("workspace"), "acme", "workspace is the first capture")
    tap.is_(data.get("id"), headers.get("webhook-id"), "data.id is the webhook-id")
    tap.is_(data.get("envelope"), {"mail_from": "billing@vendor.example",
                                   "rcpt_to": "bills@acme.planapulse.app"}, "envelope")
    tap.is_(data.get("headers", {}).get("subject"), subject, "headers.subject")
    tap.ok("Total: 12,30 \u20ac" in (data.get("text") or ""),
           "text part decoded to UTF-8 (quoted-printable/8bit, euro sign)",
           diag=repr(data.get("text")))
    tap.ok("<b>12,30 &euro;</b>" in (data.get("html") or ""), "html part kept")
    atts = data.get("attachments") or []
    tap.is_(len(atts), 1, "one attachment")
    if atts:
        a = atts[0]
        tap.is_(a.get("filename"), "invoice-42.pdf", "attachment filename")
        tap.is_(a.get("content_type"), "application/pdf", "attachment content type")
        tap.is_(a.get("sha256"), hashlib.sha256(PDF).hexdigest(),
                "attachment sha256 matches the original PDF")
        tap.ok(base64.b64decode(a.get("content_base64") or "") == PDF,
               "attachment bytes decode to the original PDF")
        tap.is_(a.get("size"), len(PDF), "attachment size")
    box = wait_for(lambda: [m for m in st.maildir_messages("bills@acme.planapulse.app")
                            if subject.encode() in m])
    tap.is_(len(box), 1, "the mail is also in the maildir")
    # the receiver has the POST before the runner has its answer: wait for it
    wait_for(lambda: spooled_ids(st) == [], timeout=10)
    tap.is_(spooled_ids(st), [], "nothing left in the spool after a 2xx")
    spooled = "lmtp_webhook: event %s for <bills@acme.planapulse.app> spooled" % data.get("id")
    tap.ok(wait_for(lambda: spooled in st.read_log("dovecot"), timeout=10),
           "Dovecot log records the commit", diag=st.read_log("dovecot")[-1500:])
    posted = "event %s delivered to" % data.get("id")
    tap.ok(wait_for(lambda: posted in st.read_log("spool"), timeout=10),
           "lmtp-webhook-spool's log records the POST", diag=st.read_log("spool")[-1500:])


def test_routing(st, rx):
    before = len(rx.events())
    refused, _ = lmtp_send(st, ["alice@mxkit.test"], bill("alice@mxkit.test", "not a bill"))
    tap.is_(refused, {}, "a non-matching recipient is delivered")
    time.sleep(1.5)
    tap.is_(len(rx.events()), before, "and gives no POST")
    rcpts = ["bills@acme.planapulse.app", "bills@globex.planapulse.app", "alice@mxkit.test"]
    refused, _ = lmtp_send(st, rcpts, bill("bills@acme.planapulse.app", "three rcpts"))
    tap.is_(refused, {}, "one LMTP transaction, three recipients: all accepted")
    got = wait_for(lambda: rx.events()[before:] if len(rx.events()) >= before + 2 else None)
    got = rx.events()[before:]
    tap.is_(sorted(p for p, _, _, _ in got),
            ["/ws/acme/api/bills/inbound", "/ws/globex/api/bills/inbound"],
            "two matching recipients give two events, one per workspace")
    ids = {e["data"]["id"] for _, _, e, _ in got}
    tap.is_(len(ids), 2, "the two events have different webhook-ids")
    for ev in got:
        check_event(ev, "multi-recipient event")


def test_receiver_down(st, rx):
    """The runner is stopped and the receiver down: the event waits in
    the spool (attempts 0); the receiver back, `flush` (no daemon: one
    pass itself) posts it once."""
    stop_runner()
    rx.stop()
    tap.ok(port_refuses(rx.port), "receiver is down")
    tmp = st.path("spool", "tmp")
    for name in os.listdir(tmp):        # a cleanup job removes Dovecot's reservation file
        os.unlink(os.path.join(tmp, name))
    refused, secs = lmtp_send(st, ["bills@acme.planapulse.app"], bill("x", "during outage"))
    tap.is_(refused, {}, "receiver and runner down: LMTP still answers 250")
    ids = spooled_ids(st)
    tap.is_(len(ids), 1, "the event is in the spool", diag=str(ids))
    listing = spool(st, "list")
    tap.ok(ids and ids[0] in listing.stdout, "lmtp-webhook-spool list shows it",
           diag="rc=%s %s%s" % (listing.returncode, listing.stdout, listing.stderr))
    shown = spool(st, "show", ids[0] if ids else "x")
    tap.ok("during outage" in shown.stdout, "lmtp-webhook-spool show prints the event")
    res = spool(st, "flush")
    tap.ok("1 failed" in res.stdout, "flush with the receiver down: 1 failed, kept",
           diag=res.stdout + res.stderr)
    before = len(rx.requests)
    rx.start()
    res = spool(st, "flush")
    tap.ok("1 delivered" in res.stdout, "flush after the receiver is back delivers it",
           diag=res.stdout + res.stderr)
    new = rx.events()[before:]
    tap.is_(len(new), 1, "delivered exactly once")
    tap.is_(new[0][1].get("webhook-id") if new else None, ids[0] if ids else None,
            "with the webhook-id it was spooled under")
    if new:
        check_event(new[0], "caught-up event")
    res = spool(st, "flush")
    tap.is_(len(rx.events()[before:]), 1, "a second flush posts nothing")
    tap.is_(spooled_ids(st), [], "spool empty")
    start_runner(st)


def test_500_then_200(st, rx):
    before = len(rx.requests)
    rx.script = [500]
    refused, _ = lmtp_send(st, ["bills@acme.planapulse.app"], bill("x", "500 then 200"))
    tap.is_(refused, {}, "receiver answers 500: LMTP 250")
    tap.ok(wait_for(lambda: len(rx.requests) >= before + 1, timeout=5),
           "lmtp-webhook-spool run makes the first attempt at once")
    ids = wait_for(lambda: spooled_ids(st), timeout=5)
    tap.is_(len(ids), 1, "the event is kept after the 500")
    ok = wait_for(lambda: len(rx.requests) >= before + 2 and not spooled_ids(st), timeout=20)
    tap.ok(ok, "lmtp-webhook-spool run retries it (Standard Webhooks: after ~5s)")
    got = rx.events()[before:]
    tap.is_([h.get("webhook-id") for _, h, _, _ in got], [ids[0] if ids else None] * 2,
            "both attempts carry the same webhook-id")
    for ev in got:
        check_event(ev, "retried event")
    out = st.read_log("spool")
    tap.ok(ids and "event %s delivered to" % ids[0] in out and "attempt 2" in out,
           "the daemon logs the delivery", diag=out[-1500:])


def test_410_and_slow(st, rx):
    before = len(rx.requests)
    rx.script = [410]
    refused, _ = lmtp_send(st, ["bills@acme.planapulse.app"], bill("x", "gone"))
    tap.is_(refused, {}, "410 Gone: LMTP 250")
    tap.ok(wait_for(lambda: "answered 410 Gone" in st.read_log("spool"), timeout=5),
           "410: dropped with a log line")
    tap.ok(wait_for(lambda: not spooled_ids(st), timeout=5), "410: not kept in the spool")
    rx.script = [(200, 6, {})]
    refused, secs = lmtp_send(st, ["bills@acme.planapulse.app"], bill("x", "slow receiver"))
    tap.is_(refused, {}, "receiver slower than the runner's timeout (2s): LMTP 250")
    tap.ok(secs < 1.5, "LMTP did not wait for the receiver (%.1fs)" % secs)
    tap.ok(wait_for(lambda: "Operation timed out" in st.read_log("spool")
                    or "Timeout was reached" in st.read_log("spool"), timeout=10),
           "the runner's attempt timed out", diag=st.read_log("spool")[-800:])
    stop_runner()                       # before its retry, ~5s later
    tap.is_(len(spooled_ids(st)), 1, "the slow event is kept")
    time.sleep(5)                       # let the slow handler finish
    rx.script = [(503, 0, {"Retry-After": "1"})]
    res = spool(st, "flush")
    tap.ok("1 failed" in res.stdout, "503 on flush: kept", diag=res.stdout + res.stderr)
    listing = spool(st, "list").stdout
    tap.ok("HTTP status 503" in listing, "list shows the last error", diag=listing)
    ids = spooled_ids(st)
    with open(st.path("spool", "active", ids[0])) as f:
        ev = json.loads(f.readline())   # the event file's header line
    tap.ok(ev["next_attempt"] - time.time() <= 2, "Retry-After: 1 honoured for the next attempt",
           diag=str(ev["next_attempt"] - time.time()))
    res = spool(st, "flush")
    tap.ok("1 delivered" in res.stdout, "then delivered", diag=res.stdout + res.stderr)
    start_runner(st)
    del before


def test_commit_fails(st, rx):
    """active/ cannot take the event: the recipient is tempfailed BEFORE
    its mail is saved (no copy); the other recipient is delivered; once
    fixed, the retry gives one copy and one event."""
    active = st.path("spool", "active")
    subject = "active unwritable"
    before = len(rx.requests)
    data = bill("x", subject)           # a retry sends the same bytes (boundary included)
    os.chmod(active, 0o500)
    try:
        refused, _ = lmtp_send(st, ["bills@acme.planapulse.app", "alice@mxkit.test"], data)
    finally:
        os.chmod(active, 0o700)
    code = refused.get("bills@acme.planapulse.app", (0,))[0]
    tap.ok(400 <= code < 500, "active/ unwritable: LMTP 4xx for the routed recipient",
           diag=repr(refused))
    tap.ok("alice@mxkit.test" not in refused and
           [m for m in st.maildir_messages("alice@mxkit.test") if subject.encode() in m],
           "the other recipient of the transaction: 250, and its copy saved")
    box = [m for m in st.maildir_messages("bills@acme.planapulse.app") if subject.encode() in m]
    tap.is_(len(box), 0, "the tempfailed recipient's mail was not saved (no extra copy)")
    tap.ok(wait_for(lambda: "cannot write to" in st.read_log("dovecot"), timeout=10),
           "Dovecot log names the unwritable directory", diag=st.read_log("dovecot")[-800:])
    refused, _ = lmtp_send(st, ["bills@acme.planapulse.app"], data)
    tap.is_(refused, {}, "the retry: LMTP 250")
    got = wait_for(lambda: rx.events()[before:], timeout=10)
    tap.is_(len(got), 1, "one event")
    box = [m for m in st.maildir_messages("bills@acme.planapulse.app") if subject.encode() in m]
    tap.is_(len(box), 1, "and one copy in the mailbox")


def test_spool_unusable(st, rx):
    spool_dir = st.path("spool")
    # 1. unwritable
    os.chmod(spool_dir, 0)
    before = len(rx.requests)
    refused, _ = lmtp_send(st, ["bills@acme.planapulse.app", "alice@mxkit.test"],
                           bill("x", "spool unwritable"))
    code = refused.get("bills@acme.planapulse.app", (0,))[0]
    tap.ok(400 <= code < 500, "spool unwritable: LMTP 4xx for the routed recipient",
           diag=repr(refused))
    tap.ok("alice@mxkit.test" not in refused, "other recipients of the transaction: 250")
    tap.ok(not [m for m in st.maildir_messages("bills@acme.planapulse.app")
                if b"spool unwritable" in m], "the tempfailed recipient's mail was not saved")
    # through Postfix: the mail stays queued
    subject = "spool full via postfix"
    with smtplib.SMTP("127.0.0.1", st.port("postfix-smtp"), timeout=30) as c:
        c.sendmail("billing@vendor.example", ["bills@acme.planapulse.app"],
                   bill("bills@acme.planapulse.app", subject))
    tap.ok(wait_for(lambda: "status=deferred" in st.read_log("postfix"), timeout=20),
           "Postfix got a temporary failure and deferred the mail")
    tap.is_(st.postfix_queue_count(), 1, "the mail stays in Postfix's queue")
    os.chmod(spool_dir, 0o700)
    # 2. full: a tiny tmpfs
    mounted = run(["mount", "-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs", spool_dir])
    if not tap.ok(mounted.returncode == 0, "a 64 KB tmpfs mounted on the spool",
                  diag=mounted.stderr):
        return
    try:
        shutil.chown(spool_dir, "nobody", "nogroup")
        with open(os.path.join(spool_dir, "filler"), "wb") as f:
            try:
                f.write(b"x" * 200000)
            except OSError:
                pass
        refused, _ = lmtp_send(st, ["bills@acme.planapulse.app"], bill("x", "spool full"))
        code = refused.get("bills@acme.planapulse.app", (0,))[0]
        tap.ok(400 <= code < 500, "spool full (ENOSPC): LMTP 4xx", diag=repr(refused))
        # Dovecot's log process may write the line after LMTP answered
        named = wait_for(lambda: "No space left on device" in st.read_log("dovecot"), timeout=10)
        tap.ok(named, "Dovecot log names ENOSPC", diag=st.read_log("dovecot")[-800:])
        os.unlink(os.path.join(spool_dir, "filler"))
        st.postfix_flush()
        got = wait_for(lambda: [e for e in rx.events()[before:]
                                if e[2]["data"]["headers"]["subject"] == subject], timeout=30)
        tap.is_(len(got), 1, "once fixed, Postfix's retry delivers and the webhook is sent once")
        box = [m for m in st.maildir_messages("bills@acme.planapulse.app")
               if subject.encode() in m]
        tap.is_(len(box), 1, "and the mail is in the maildir exactly once")
        tap.is_(st.postfix_queue_count(), 0, "Postfix's queue is empty")
    finally:
        run(["umount", "-l", spool_dir])   # lazily: Dovecot may hold a file there


def hostile_messages():
    many = ["--b\r\nContent-Type: text/plain\r\n\r\npart %d\r\n" % i for i in range(10000)]
    yield "10,000 parts", ("From: a@b\r\nSubject: many parts\r\nMIME-Version: 1.0\r\n"
                           "Content-Type: multipart/mixed; boundary=b\r\n\r\n"
                           + "".join(many) + "--b--\r\n").encode()
    yield "broken boundaries", (
        "From: a@b\r\nSubject: broken boundaries\r\nMIME-Version: 1.0\r\n"
        "Content-Type: multipart/mixed; boundary=\"outer\"\r\n\r\n--outer\r\n"
        "Content-Type: multipart/alternative; boundary=inner\r\n\r\n--inner\r\n"
        "Content-Type: text/plain\r\n\r\nnever closed\r\n--outer\r\n"
        "Content-Type: application/pdf; name=x.pdf\r\nContent-Transfer-Encoding: base64\r\n"
        "\r\nJVBERi0x\r\n--nonexistent--\r\n").encode()
    # parameters by the hundred thousand: each one read left its scratch
    # memory until the header's end (~1 KB a ';', the lmtp process killed
    # by Dovecot's 256M vsz_limit on every retry; outside attacker,
    # 2026-12-03)
    yield "parameter flood", (b"From: a@b\r\nSubject: parameter flood\r\nMIME-Version: 1.0\r\n"
                              b"Content-Type: text/plain" + b";" * 1000000
                              + b"; charset=utf-8\r\n\r\nTotal 12.00\r\n")
    yield "parameter flood in a multipart", (
        b"From: a@b\r\nSubject: parameter flood 2\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: multipart/mixed" + b"; x=1" * 300000 + b"; boundary=b1\r\n\r\n"
        b"--b1\r\nContent-Type: text/plain; x" + b"; y" * 300000 + b"; charset=utf-8\r\n\r\n"
        b"Total 12.00\r\n--b1--\r\n")
    yield "1 MB header", ("From: a@b\r\nSubject: big header\r\nX-Big: "
                          + "A" * (1 << 20) + "\r\n\r\nbody\r\n").encode()
    yield "bad base64", ("From: a@b\r\nSubject: bad base64\r\nMIME-Version: 1.0\r\n"
                         "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
                         "Content-Type: application/octet-stream; name=bad.bin\r\n"
                         "Content-Transfer-Encoding: base64\r\n\r\nQUJD!!!!****\x01\x02==QUJD\r\n"
                         "--b--\r\n").encode("latin-1")
    yield "unknown charset", ("From: a@b\r\nSubject: =?x-klingon?Q?qapla=FF?=\r\n"
                              "MIME-Version: 1.0\r\n"
                              "Content-Type: text/plain; charset=x-klingon\r\n"
                              "Content-Transfer-Encoding: 8bit\r\n\r\n").encode() \
        + b"caf\xe9 \xff\xfe bytes\r\n"


def test_hostile(st, rx):
    ids = {}
    for n, (name, data) in enumerate(hostile_messages()):
        # its own Message-ID finds its event: one of an earlier test (a
        # retry) may arrive meanwhile (a CI run took it for this one's)
        mid = "<hostile-%d-%s@test>" % (n, uuid.uuid4().hex)
        data = ("Message-ID: %s\r\n" % mid).encode() + data
        before = len(rx.requests)
        try:
            refused, secs = lmtp_send(st, ["bills@acme.planapulse.app"], data, sender="a@b")
        except (smtplib.SMTPException, OSError) as e:   # lmtp killed: the rest still runs
            refused, secs = {"lmtp": repr(e)}, 0
        tap.is_(refused, {}, "hostile MIME (%s): delivered (%.1fs)" % (name, secs))
        got = wait_for(lambda: [e for e in rx.events()[before:]
                                if e[2]["data"]["headers"]["message_id"] == mid], timeout=20)
        tap.is_(len(got), 1, "hostile MIME (%s): a webhook is sent" % name)
        if got:
            check_event(got[0], "hostile MIME (%s)" % name)
            data_ = got[0][2]["data"]
            ids[name] = data_["id"]
            if name == "10,000 parts":
                tap.ok(len(data_["attachments"]) > 1000,
                       "10,000 parts: the parts Dovecot parsed are listed (%d)"
                       % len(data_["attachments"]))
                last = data_["attachments"][-1]["content_base64"] or ""
                tap.ok(b"part 9999\r\n" in base64.b64decode(last),
                       "10,000 parts: the last attachment holds the rest (part 9999 in it)")
            if name.startswith("parameter flood"):
                tap.is_(data_["text"], "Total 12.00\r\n" if name == "parameter flood"
                        else "Total 12.00", "%s: the text after them" % name)
            if name == "unknown charset":
                tap.ok("caf" in (data_["text"] or ""), "unknown charset: text kept as valid "
                       "UTF-8 (%r)" % (data_["text"] or "")[:40])
    log = st.read_log("dovecot")
    bad = [line for line in log.splitlines()
           if "Panic" in line or "Fatal" in line or "killed with signal" in line]
    tap.is_(bad, [], "no crash, panic or fatal error in the Dovecot log")
    def limit_lines():
        return [line for line in st.read_log("dovecot").splitlines()
                if "more MIME parts than Dovecot's parser" in line]
    wait_for(limit_lines, timeout=10)       # the log process may write it after LMTP answered
    limits = limit_lines()
    tap.ok(len(limits) == 1 and ids.get("10,000 parts", "?") in limits[0]
           and "the last attachment holds the rest" in limits[0],
           "the parser's limit is logged once, naming the 10,000-part event and not the "
           "others", diag=repr(limits))


def test_config_errors(st):
    res = run([SPOOL_TOOL, "-c", st.path("nonexistent.conf"), "-t"])
    tap.ok(res.returncode == 1 and "nonexistent.conf" in (res.stdout + res.stderr),
           "lmtp-webhook-spool -t: a missing config is an error naming the file")
    with open(st.path("bad.conf"), "w") as f:
        f.write("spool_dir = /tmp/x\nconcurrency = many\n")
    res = run([SPOOL_TOOL, "-c", st.path("bad.conf"), "-t"])
    tap.ok(res.returncode == 1 and "bad.conf:2" in (res.stdout + res.stderr),
           "lmtp-webhook-spool -t: a bad value is reported as file:line",
           diag=res.stdout + res.stderr)


def test_broken_route():
    """A route that does not parse (here a URL that is not http) made the
    plugin tempfail every recipient it reached, alice@ and postmaster@
    included: one typo stopped all the host's mail. Now the recipients
    its pattern matches are tempfailed (they may be its bills), and the
    others are delivered, with a warning naming the setting."""
    with Stack("lmtp-webhook-broken-route") as st:
        tap.stack = st
        rx = Receiver()
        st.users["pay@acme.planapulse.app"] = "x"
        start_spool_dovecot(st, "http://127.0.0.1:%d/ws/{1}" % rx.port, SECRET, PLUGIN_DIR,
                            more={"lmtp_webhook_route2": "pay@*.planapulse.app "
                                                         "ftp://127.0.0.1/{1}"})
        data = b"From: a@vendor.example\r\nSubject: broken route\r\n\r\nx\r\n"
        alice = "alice@" + DOMAIN
        refused, _ = lmtp_send(st, [alice, "pay@acme.planapulse.app",
                                    "bills@acme.planapulse.app"], data)
        tap.is_(sorted(refused), ["pay@acme.planapulse.app"],
                "broken lmtp_webhook_route2: only the recipient its pattern matches is "
                "refused", diag=repr(refused))
        tap.ok(refused.get("pay@acme.planapulse.app", (0,))[0] // 100 == 4,
               "and it is tempfailed (Postfix keeps it): %r" % (refused,))
        log = st.read_log("dovecot")
        tap.ok("lmtp_webhook_route2: URL must start with http:// or https:// (not %s's route: "
               "delivered)" % alice in log, "the other recipients' deliveries say why in a "
               "warning naming the setting")
        spooled = os.listdir(st.path("spool", "active"))
        tap.is_(len(spooled), 1, "bills@, matched by the first route, gets its event")
        rx.stop()


with Stack("lmtp-webhook") as st:
    tap.stack = st
    rx = Receiver()
    st.users["bills@globex.planapulse.app"] = "x"
    os.makedirs(st.path("spool"))
    shutil.chown(st.path("spool"), "nobody", "nogroup")
    with open(st.path("secret"), "w") as f:
        f.write(SECRET + "\n")
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
        extra="mail_plugin_dir = %s\n" % PLUGIN_DIR)
    st.start_postfix()
    start_runner(st)
    test_bill_through_postfix(st, rx)
    test_routing(st, rx)
    test_receiver_down(st, rx)
    test_500_then_200(st, rx)
    test_410_and_slow(st, rx)
    test_commit_fails(st, rx)
    test_spool_unusable(st, rx)
    test_hostile(st, rx)
    test_config_errors(st)
    rx.stop()
test_broken_route()

sys.exit(tap.done())
