#!/usr/bin/python3
"""lmtp-webhook beside Pigeonhole Sieve (real Dovecot 2.3 LMTP with
Debian's dovecot-sieve, real Postfix; an outside attacker's finding of
2026-12-04, helper-97):

Sieve stores a message through mailbox transactions of its own and never
sets the delivery's saved_mail, which was all the plugin looked at: with
Sieve loaded, every fileinto, a keep, even the implicit keep after a
script error left the bill in its mailbox with a 250 and no event, and
nothing was logged. The plugin now counts the saves every mailbox
transaction commits during the delivery (save_watch(3)).

For each script on a bills@ user, alone and all in one LMTP transaction
with a plain user: the answer is 250, the copies on disk are what the
script asks for, and there is exactly one signed event when a copy was
kept, none when none was (discard, redirect, reject), as lmtp-webhook(7)
says. A sieve_before script and a bill through real Postfix likewise.
"""

import os
import shutil
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

# workspace: (script, copies kept)
SCRIPTS = {
    "fileinto": ('require "fileinto"; fileinto "Bills";', 1),
    "missing": ('require "fileinto"; fileinto "Nope";', 1),     # implicit keep
    "create": ('require ["fileinto", "mailbox"]; fileinto :create "Made";', 1),
    "keepfile": ('require "fileinto"; keep; fileinto "Bills";', 2),
    "redircopy": ('require "copy"; redirect :copy "acct@example.org";', 1),
    "vacation": ('require "vacation"; vacation :days 1 "away";', 1),
    "stop": ("stop;", 1),
    "runtime": ('redirect "a@example.org"; redirect "b@example.org"; '
                'redirect "c@example.org";', 1),                 # error: implicit keep
    "broken": ('fileinto "Bills" this is not sieve', 1),          # no compile: keep
    "discard": ("discard;", 0),
    "redirect": ('redirect "acct@example.org";', 0),
    "reject": ('require "reject"; reject "no bills here";', 0),
    "plain": (None, 1),
}


def user(ws):
    return "bills@%s.planapulse.app" % ws


def copies(st, addr):
    local, _, domain = addr.partition("@")
    base = st.path("mail", domain, local, "Maildir")
    return sum(len(files) for d, _, files in os.walk(base)
               if os.path.basename(d) in ("new", "cur"))


def install_scripts(st):
    for ws, (script, _) in SCRIPTS.items():
        home = st.path("mail", ws + ".planapulse.app", "bills")
        os.makedirs(os.path.join(home, "Maildir", ".Bills", "new"), exist_ok=True)
        os.makedirs(os.path.join(home, "Maildir", ".Bills", "cur"), exist_ok=True)
        os.makedirs(os.path.join(home, "Maildir", ".Bills", "tmp"), exist_ok=True)
        if script:
            with open(os.path.join(home, ".dovecot.sieve"), "w") as f:
                f.write(script + "\n")
        for d, dirs, files in os.walk(os.path.dirname(home)):
            for x in [d] + [os.path.join(d, n) for n in dirs + files]:
                shutil.chown(x, "nobody", "nogroup")


def check(st, rx, ws, subject, reply, before, where):
    _, kept = SCRIPTS[ws]
    addr = user(ws)
    if kept:
        events_for(rx, subject, timeout=20)
    time.sleep(0.5)                 # a second event, or one for a discarded mail
    evs = [e for e in requests_for(rx, subject)
           if e[2]["data"]["envelope"]["rcpt_to"] == addr]
    got = copies(st, addr) - before
    tap.ok(reply == 250 and got == kept and len(evs) == (1 if kept else 0),
           "%s: Sieve %s: 250, %d cop%s kept, %d event" % (where, ws, kept,
                                                          "y" if kept == 1 else "ies",
                                                          1 if kept else 0),
           diag="reply %r, copies %d, events %d\n%s" % (reply, got, len(evs),
                                                     st.read_log("dovecot")[-1500:]))
    if evs:
        tap.ok(verify(SECRET, evs[0][1], evs[0][3]) is None,
               "%s: Sieve %s: the event is signed" % (where, ws))


def test_single(st, rx):
    for ws in SCRIPTS:
        before = copies(st, user(ws))
        subject = "sieve single %s" % ws
        refused, _ = lmtp_send(st, [user(ws)], bill(user(ws), subject, size=400))
        check(st, rx, ws, subject, refused.get(user(ws), (250,))[0], before, "alone")


def test_one_transaction(st, rx):
    rcpts = [user(ws) for ws in SCRIPTS] + ["alice@mxkit.test"]
    before = {ws: copies(st, user(ws)) for ws in SCRIPTS}
    alice = copies(st, "alice@mxkit.test")
    subject = "sieve one transaction"
    refused, _ = lmtp_send(st, rcpts, bill(rcpts[0], subject, size=400))
    for ws in SCRIPTS:
        check(st, rx, ws, subject, refused.get(user(ws), (250,))[0], before[ws],
              "one transaction")
    tap.is_(copies(st, "alice@mxkit.test") - alice, 1, "one transaction: alice got hers")
    tap.is_(len(requests_for(rx, subject)), sum(1 for _, k in SCRIPTS.values() if k),
            "one transaction: as many events as bills@ recipients with a copy kept")


def test_postfix(st, rx):
    subject = "sieve through postfix"
    with smtplib.SMTP("127.0.0.1", st.port("postfix-smtp"), timeout=60) as c:
        c.sendmail("billing@vendor.example", [user("fileinto")],
                   bill(user("fileinto"), subject, size=400))
    empty = wait_for(lambda: st.postfix_queue_count() == 0, timeout=60)
    evs = events_for(rx, subject, timeout=20)
    time.sleep(0.5)
    tap.ok(empty and len(requests_for(rx, subject)) == 1,
           "through Postfix, Sieve fileinto: delivered, one event", diag=repr(len(evs)))


def main():
    with Stack("webhook-sieve") as st:
        tap.stack = st
        st.start_sink()
        for ws in SCRIPTS:
            st.users[user(ws)] = "x"
        rx = Receiver()
        install_scripts(st)
        os.makedirs(st.path("sieve"))
        before = st.path("sieve", "before.sieve")
        with open(before, "w") as f:        # an operator's spam rule, not for bills
            f.write('require "fileinto";\nif header :contains "X-Spam" "yes" '
                    '{ fileinto "Junk"; stop; }\n')
        shutil.chown(st.path("sieve"), "nobody", "nogroup")   # its compiled binary
        start_spool_dovecot(st, "http://127.0.0.1:%d/ws/{1}/bills" % rx.port, SECRET,
                            PLUGIN_DIR, sieve=True,
                            more={"sieve_before": before, "sieve_vacation_min_period": "0"},
                            dovecot_conf="submission_host = 127.0.0.1:%d\n"
                            % st.port("sink"))
        runner = Runner(st)
        runner.start()
        st.start_postfix(main={"virtual_mailbox_domains": "fileinto.planapulse.app"})
        try:
            test_single(st, rx)
            test_one_transaction(st, rx)
            test_postfix(st, rx)
            tap.ok("Fatal" not in st.read_log("dovecot") and
                   "Panic" not in st.read_log("dovecot"), "no Fatal or Panic in Dovecot's log")
        finally:
            runner.stop()


main()
sys.exit(tap.done())
