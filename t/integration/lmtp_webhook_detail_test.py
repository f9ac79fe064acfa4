#!/usr/bin/python3
"""lmtp-webhook: bills+DETAIL@ with Dovecot's lmtp_save_to_detail_mailbox
(real Dovecot 2.3 LMTP, real Postfix; an outside attacker's finding of
2026-12-04, helper-94):

Dovecot saves bills+march@ to the mailbox "march". When that save fails
for good (no such mailbox and lda_mailbox_autocreate = no, or a detail
that is no mailbox name: "~x", "a/b", ".x", "a..b", 300 bytes), Dovecot's
mail_do_deliver() saves to INBOX once more, after the plugin's hook had
returned and withdrawn the event: LMTP 250, the mail in INBOX, no event,
no log line. The detail is the sender's choice, so anyone could make a
bill vanish from the webhook. Now every 250 has exactly one event (the
plugin saves to INBOX itself, the event committed with that save), and
a recipient whose every save fails for good (over quota) gets a 5xx,
no copy, no event.
"""

import os
import smtplib
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from mxstack import Stack  # noqa: E402
from mxtest import build_path, tap, wait_for  # noqa: E402
from mxwebhook import (Receiver, Runner, bill, events_for, lmtp_send,  # noqa: E402
                       make_secret, requests_for, start_spool_dovecot, verify)

PLUGIN_DIR = build_path("lmtp-webhook", ".libs")
SECRET = make_secret()
USER = "bills@acme.planapulse.app"


def folder_copies(st, user, folder):
    """Messages in one Maildir++ folder ("" is INBOX)."""
    local, _, domain = user.partition("@")
    base = st.path("mail", domain, local, "Maildir", "." + folder if folder else "")
    n = 0
    for sub in ("new", "cur"):
        d = os.path.join(base, sub)
        n += len(os.listdir(d)) if os.path.isdir(d) else 0
    return n


def all_copies(st, user):
    local, _, domain = user.partition("@")
    base = st.path("mail", domain, local, "Maildir")
    return sum(len(files) for d, _, files in os.walk(base)
               if os.path.basename(d) in ("new", "cur"))


def one_event(st, rx, rcpt, subject, where):
    """LMTP straight to Dovecot: 250, exactly one signed event for rcpt,
    and one more copy in the user's mailboxes than before."""
    before = all_copies(st, USER)
    refused, _ = lmtp_send(st, [rcpt], bill(rcpt, subject, size=400))
    evs = events_for(rx, subject, timeout=20)
    time.sleep(0.3)                 # a second event would come right after
    evs = requests_for(rx, subject)
    ok = refused == {} and len(evs) == 1
    tap.ok(ok, "%s: LMTP 250 and exactly one event" % where,
           diag="%r %d event(s)\n%s" % (refused, len(evs), st.read_log("dovecot")[-1500:]))
    if evs:
        _, headers, event, body = evs[0]
        # as LMTP encodes it: "bills+a..b"@ (a local part that needs quotes)
        said = event["data"]["envelope"]["rcpt_to"].replace('"', "")
        tap.ok(verify(SECRET, headers, body) is None and said == rcpt,
               "%s: the event is signed and names the recipient" % where,
               diag="%r %r" % (verify(SECRET, headers, body), event["data"]["envelope"]))
    tap.is_(all_copies(st, USER) - before, 1, "%s: exactly one copy saved" % where)


def test_missing_detail(st, rx):
    """lda_mailbox_autocreate = no (Dovecot's default): "march" does not exist."""
    inbox = folder_copies(st, USER, "")
    one_event(st, rx, "bills+march@acme.planapulse.app", "detail march", "bills+march@ "
              "(no such mailbox)")
    tap.is_(folder_copies(st, USER, "") - inbox, 1, "bills+march@: the copy is in INBOX")
    tap.ok("mailbox march not saved to: saving to INBOX" in st.read_log("dovecot"),
           "the fallback to INBOX is logged")


def test_over_quota(st, rx):
    """Every save fails for good (the quota): a 5xx, no copy, no event;
    Dovecot does not save a second time behind the plugin's back."""
    before = all_copies(st, USER)
    subject = "detail over quota"
    refused, _ = lmtp_send(st, ["bills+march@acme.planapulse.app"],
                           bill(USER, subject, size=300000))
    code = list(refused.values())[0][0] if refused else 250
    time.sleep(2)
    tap.ok(500 <= code < 600, "over quota: LMTP refuses with a 5xx", diag=repr(refused))
    tap.is_(len(requests_for(rx, subject)), 0, "over quota: no event")
    tap.is_(all_copies(st, USER) - before, 0, "over quota: no copy")
    tap.is_(os.listdir(st.path("spool", "active")), [], "over quota: nothing left spooled")


def test_invalid_details(st, rx):
    """lda_mailbox_autocreate = yes: a valid detail gets its mailbox, any
    other (the sender's choice) falls back to INBOX, with its event."""
    one_event(st, rx, "bills+ok@acme.planapulse.app", "detail ok", "bills+ok@ (autocreated)")
    tap.is_(folder_copies(st, USER, "ok"), 1, "bills+ok@: the copy is in the mailbox ok")
    for detail in ("~x", "a/b", ".x", "a..b", "x" * 300):
        one_event(st, rx, "bills+%s@acme.planapulse.app" % detail, "detail %s" % detail,
                  "bills+%s@ (no mailbox name)" % detail[:12])


def test_postfix(st, rx):
    """Through real Postfix (recipient_delimiter +), no mailbox march or
    april: each recipient delivered (queue empty), one event each."""
    rcpts = ["bills+march@acme.planapulse.app", USER, "bills+april@acme.planapulse.app"]
    for i, rcpt in enumerate(rcpts):
        with smtplib.SMTP("127.0.0.1", st.port("postfix-smtp"), timeout=60) as c:
            c.sendmail("billing@vendor.example", [rcpt], bill(rcpt, "postfix detail %d" % i,
                                                               size=300))
    empty = wait_for(lambda: st.postfix_queue_count() == 0, timeout=60)
    got = [events_for(rx, "postfix detail %d" % i, timeout=20) for i in range(len(rcpts))]
    time.sleep(0.3)
    counts = [len(requests_for(rx, "postfix detail %d" % i)) for i in range(len(rcpts))]
    tap.ok(empty and all(got) and counts == [1, 1, 1],
           "Postfix: three recipients delivered, one event each", diag=repr(counts))
    sent = [line for line in st.read_log("postfix").splitlines() if "status=sent" in line]
    tap.is_(len(sent), 3, "Postfix logged three deliveries", diag="\n".join(sent))


def stack(name, conf, quota=None, postfix=False):
    st = Stack(name)
    st.__enter__()
    tap.stack = st
    rx = Receiver()
    start_spool_dovecot(st, "http://127.0.0.1:%d/ws/{1}/bills" % rx.port, SECRET, PLUGIN_DIR,
                        quota=quota, dovecot_conf=conf)
    runner = Runner(st)
    runner.start()
    if postfix:
        st.start_postfix(main={"recipient_delimiter": "+"})
    return st, rx, runner


def main():
    st, rx, runner = stack("webhook-detail", "lmtp_save_to_detail_mailbox = yes\n",
                           quota="200K", postfix=True)
    try:
        test_missing_detail(st, rx)
        test_over_quota(st, rx)
        test_postfix(st, rx)
    finally:
        runner.stop()
        st.__exit__(None, None, None)
    st, rx, runner = stack("webhook-detail-auto", "lmtp_save_to_detail_mailbox = yes\n"
                           "lda_mailbox_autocreate = yes\n")
    try:
        test_invalid_details(st, rx)
    finally:
        runner.stop()
        st.__exit__(None, None, None)


main()
sys.exit(tap.done())
