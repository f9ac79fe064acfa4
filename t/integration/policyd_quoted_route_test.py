#!/usr/bin/python3
"""policyd-ratelimit's recipient_domain and a route in a recipient's
local part (helper-116; real Postfix 3.7, smtp-sink as the next hop,
Python's smtplib as the client).

Postfix resolves "u@victim.example"@localhost inside the quotes by
default (resolve_dequoted_address = yes), u%victim.example@localhost
(allow_percent_hack) and victim.example!u@localhost (swap_bangpath):
the local domain is stripped and the mail relayed to u@victim.example.
Charged to the local domain (the daemon cannot know which domains
Postfix takes for local), each local name gave another budget: 3
messages reached victim.example through a 1/1h limit.

  1. routed_recipients = reject (the default), Postfix's defaults: every
     routed spelling is refused at RCPT with 550 5.1.3; exactly one
     message reaches victim.example;
  2. routed_recipients = count, Postfix's defaults: the routed spellings
     reach victim.example beside the plain address (why reject is the
     default);
  3. routed_recipients = count, with allow_percent_hack, swap_bangpath
     and resolve_dequoted_address = no: exactly one message reaches
     victim.example (Postfix delivers the routed ones locally, or
     refuses them).
"""

import os
import re
import smtplib
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from mxstack import Stack  # noqa: E402
from mxtest import tap, wait_for  # noqa: E402
import mxpolicy as mp  # noqa: E402

SPELLINGS = ["u1@victim.example", '"u2@victim.example"@localhost',
             '"u3@victim.example"@[127.0.0.1]', "u4%victim.example@localhost",
             "victim.example!u5@localhost"]


def reached_victim(st):
    return sorted(set(re.findall(r"to=<([^>]*victim\.example)>.*status=sent",
                                 st.read_log("postfix"))))


def run(name, routed, postfix_defaults):
    with Stack(name) as st:
        tap.stack = st
        _proc, port, _ = mp.start_policyd(st, "policyd", """\
listen = inet:127.0.0.1:{port}
store = memory
limit per_domain = recipient_domain rate=1/1h count=messages
routed_recipients = %s
""" % routed)
        st.start_sink()
        main = {"mydestination": "localhost"}
        if not postfix_defaults:
            main.update(allow_percent_hack="no", swap_bangpath="no",
                        resolve_dequoted_address="no")
        st.start_postfix(main=main, smtpd=mp.restrictions(port))
        answers = []
        for i, rcpt in enumerate(SPELLINGS):
            with smtplib.SMTP("127.0.0.1", st.port("postfix-smtp"), timeout=30) as c:
                try:
                    c.sendmail("sender@client.example", [rcpt],
                               "Subject: victim %d\r\n\r\nhello\r\n" % i)
                    answers.append("sent")
                except smtplib.SMTPException as e:
                    answers.append(str(e)[:60])
        wait_for(lambda: len(reached_victim(st)) >= (2 if routed == "count" and postfix_defaults
                                                      else 1), timeout=20)
        time.sleep(2)                   # the queue runs what it took
        if routed == "reject":
            refused = re.findall(r"reject routed recipient=<([^>]*)>", st.read_log("policyd"))
            tap.is_(len(refused), 4, "policyd logs each refusal", diag=str(refused))
        return reached_victim(st), answers


got, answers = run("policyd-routed-reject", "reject", True)
tap.is_(got, ["u1@victim.example"], "routed_recipients = reject, Postfix's defaults: exactly "
        "one message reaches victim.example through recipient_domain 1/1h",
        diag="SMTP %s" % answers)
tap.is_([bool(re.search(r"\(550, b.5\.1\.3 ", a)) for a in answers[1:]], [True] * 4,
        "each routed spelling is refused with 550 5.1.3", diag="SMTP %s" % answers)
got, answers = run("policyd-routed-count", "count", True)
tap.ok(len(got) >= 2, "routed_recipients = count, Postfix's defaults: a routed spelling "
       "reaches victim.example beside the plain address (why reject is the default)",
       diag="reached %s; SMTP %s" % (got, answers))
got, answers = run("policyd-routed-count-no", "count", False)
tap.is_(got, ["u1@victim.example"], "routed_recipients = count with allow_percent_hack, "
        "swap_bangpath and resolve_dequoted_address = no: exactly one message reaches "
        "victim.example", diag="SMTP %s" % answers)
sys.exit(tap.done())
