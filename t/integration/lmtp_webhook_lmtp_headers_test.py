#!/usr/bin/python3
"""lmtp-webhook: the message the LMTP client sent, told apart from the
headers Dovecot's lmtp puts before it, with lmtp_add_received_header =
no (real Dovecot 2.3 LMTP, the plugin, the runner, a receiver).

lmtp writes Return-Path: and, for a transaction of one recipient, one
Delivered-To: naming it; its Received: (which carries the transaction's
id and told the plugin where lmtp's headers end) only with the setting
on. Without it the plugin took every Delivered-To: after the
Return-Path: for lmtp's (helper-74): a client's own leading
Delivered-To: lines (a forwarded mail) were left out of raw_message and
of the webhook-id, and two mails that differ only in them shared one id.

Each event's raw_message must be exactly the bytes sent, its id differ
for different bytes and stay the same for the same bytes sent again:
  - one recipient, the client's Delivered-To: naming another address,
    then two such lines;
  - one recipient, the client's Delivered-To: naming the recipient
    itself (lmtp's own comes before it);
  - two recipients in one transaction (lmtp writes no Delivered-To:),
    the client's naming another address.
With lmtp_hdr_delivery_address = original (lmtp writes the ORCPT, none
without one) and none (lmtp writes no Delivered-To:), the same holds:
the plugin reads lmtp's settings to know what lmtp wrote.
Known limit (doc/lmtp-webhook.md): with the setting off, a transaction
of several recipients whose message begins with a Delivered-To: naming
one of them is read, for that one, as if lmtp had written it.
"""

import base64
import os
import smtplib
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from mxstack import Stack  # noqa: E402
from mxtest import build_path, tap, wait_for  # noqa: E402
from mxwebhook import Receiver, Runner, lmtp_send, make_secret, start_spool_dovecot  # noqa: E402

PLUGIN_DIR = build_path("lmtp-webhook", ".libs")
SECRET = make_secret()
BILLS = "bills@acme.planapulse.app"
OTHER = "bills@globex.planapulse.app"


def bill(tag, leading):
    return leading + (b"From: billing@vendor.example\r\nTo: %s\r\nSubject: %s\r\n"
                      b"Message-ID: <%s@vendor.example>\r\n\r\nbill body\r\n"
                      % (BILLS.encode(), tag.encode(), tag.encode()))


def raw_of(event):
    return base64.b64decode(event["data"]["raw_message"]["content_base64"])


def deliver(st, rx, rcpts, data):
    """LMTP to Dovecot; the new events as {rcpt: (id, raw bytes)}."""
    before = len(rx.events())
    refused, _ = lmtp_send(st, rcpts, data)
    tap.is_(refused, {}, "LMTP 250 for %d recipient(s)" % len(rcpts))
    got = wait_for(lambda: rx.events()[before:] if len(rx.events()) >= before + len(rcpts)
                   else None, timeout=30) or []
    return {e["data"]["envelope"]["rcpt_to"]: (h.get("webhook-id"), raw_of(e))
            for _, h, e, _ in got}


with Stack("lmtp-webhook-lmtp-headers") as st:
    tap.stack = st
    st.users[OTHER] = "x"
    rx = Receiver()
    start_spool_dovecot(st, "http://127.0.0.1:%d/ws/{1}/in raw_message=yes" % rx.port, SECRET,
                        PLUGIN_DIR, dovecot_conf="lmtp_add_received_header = no\n")
    runner = Runner(st)
    runner.start()

    one = bill("one", b"Delivered-To: first-hop@old.example\r\n")
    two = bill("one", b"Delivered-To: other@elsewhere.example\r\nDelivered-To: x@y.example\r\n")
    ids = []
    for label, data in (("a Delivered-To: of the client's", one),
                        ("two Delivered-To: of the client's", two)):
        got = deliver(st, rx, [BILLS], data)
        eid, raw = got.get(BILLS, (None, b""))
        tap.is_(raw, data, "%s: raw_message is the bytes sent" % label)
        ids.append(eid)
    tap.ok(None not in ids and ids[0] != ids[1],
           "mails that differ only in them: two webhook-ids", diag=repr(ids))
    time.sleep(1.1)
    again = deliver(st, rx, [BILLS], one).get(BILLS, (None, b""))[0]
    tap.is_(again, ids[0], "the same bytes sent again: the same webhook-id")

    same = bill("same", b"Delivered-To: %s\r\n" % BILLS.encode())
    eid, raw = deliver(st, rx, [BILLS], same).get(BILLS, (None, b""))
    tap.is_(raw, same, "the client's Delivered-To: naming the recipient (lmtp's own before "
            "it): raw_message is the bytes sent")

    multi = bill("multi", b"Delivered-To: forwarder@old.example\r\n")
    got = deliver(st, rx, [BILLS, OTHER], multi)
    tap.is_(sorted(got), sorted([BILLS, OTHER]), "two recipients in one transaction: an event each")
    tap.ok(all(raw == multi for _, raw in got.values()),
           "lmtp wrote no Delivered-To: of its own: each raw_message is the bytes sent, the "
           "client's Delivered-To: kept", diag=repr({r: raw[:60] for r, (_, raw) in got.items()}))
    runner.stop()


def lmtp_orcpt(st, rcpt, orcpt, data):
    """One LMTP transaction with an ORCPT (Postfix sends one after
    virtual alias expansion); the reply to DATA."""
    with smtplib.LMTP("127.0.0.1", st.port("lmtp"), timeout=60) as c:
        c.ehlo()
        c.mail("billing@vendor.example")
        c.rcpt(rcpt, ["ORCPT=rfc822;" + orcpt] if orcpt else [])
        return c.data(data)[0]


def events_after(rx, before, n=1):
    got = wait_for(lambda: rx.events()[before:] if len(rx.events()) >= before + n else None,
                   timeout=30) or []
    return [(h.get("webhook-id"), raw_of(e)) for _, h, e, _ in got]


# lmtp_hdr_delivery_address (helper-97): "original" writes the ORCPT,
# "none" writes nothing; the plugin took a Delivered-To: naming the
# recipient for lmtp's in both, so Dovecot's line stayed in raw_message
# (original) or the client's own was cut from it and from the id (none)
for mode in ("original", "none"):
    with Stack("lmtp-webhook-hdr-" + mode) as st:
        tap.stack = st
        rx = Receiver()
        start_spool_dovecot(st, "http://127.0.0.1:%d/ws/{1}/in raw_message=yes" % rx.port,
                            SECRET, PLUGIN_DIR, dovecot_conf="lmtp_add_received_header = no\n"
                            "lmtp_hdr_delivery_address = %s\n" % mode)
        runner = Runner(st)
        runner.start()
        plain = bill(mode + "-plain", b"")
        own = bill(mode + "-plain", b"Delivered-To: %s\r\n" % BILLS.encode())
        cases = [("no ORCPT", None, plain), ("an ORCPT", "billing-alias@acme.example", plain),
                 ("no ORCPT, the client's own Delivered-To: naming the recipient", None, own)]
        ids = []
        for label, orcpt, data in cases:
            before = len(rx.events())
            code = lmtp_orcpt(st, BILLS, orcpt, data)
            got = events_after(rx, before)
            raw = got[0][1] if got else b""
            tap.ok(code == 250 and raw == data, "%s, %s: raw_message is the bytes sent"
                   % (mode, label), diag="%r %r" % (code, raw[:80]))
            ids.append(got[0][0] if got else None)
        tap.ok(None not in ids and ids[0] != ids[2],
               "%s: mails that differ only in the client's Delivered-To: have two webhook-ids"
               % mode, diag=repr(ids))
        runner.stop()

sys.exit(tap.done())
