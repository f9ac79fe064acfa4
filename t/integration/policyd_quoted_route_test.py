#!/usr/bin/python3
"""policyd-ratelimit's recipient_domain and an '@' inside a quoted local
part (helper-116; real Postfix 3.7, smtp-sink as the next hop, Python's
smtplib as the client).

Postfix resolves "u@victim.example"@localhost inside the quotes by
default (resolve_dequoted_address = yes): the local domain is stripped
and the mail relayed to u@victim.example, whatever allow_percent_hack
and swap_bangpath say. The daemon charges it to the local domain (it
cannot know which domains Postfix takes for local), so every local name
gave another budget: 3 messages reached victim.example through a 1/1h
limit. policyd-ratelimit.conf(5) says to set resolve_dequoted_address =
no with the other two where a recipient-domain limit matters:

  1. with Postfix's defaults but those two: the quoted spellings reach
     victim.example (why the man page names the third setting);
  2. with all three: exactly one message reaches victim.example.
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
             '"u3@victim.example"@[127.0.0.1]']


def reached_victim(st):
    return sorted(set(re.findall(r"to=<([^>]*victim\.example)>.*status=sent",
                                 st.read_log("postfix"))))


def run(name, dequoted):
    with Stack(name) as st:
        tap.stack = st
        _proc, port, _ = mp.start_policyd(st, "policyd", """\
listen = inet:127.0.0.1:{port}
store = memory
limit per_domain = recipient_domain rate=1/1h count=messages
""")
        st.start_sink()
        main = {"mydestination": "localhost", "allow_percent_hack": "no",
                "swap_bangpath": "no"}
        if not dequoted:
            main["resolve_dequoted_address"] = "no"
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
        wait_for(lambda: len(reached_victim(st)) >= (2 if dequoted else 1), timeout=20)
        time.sleep(2)                   # the queue runs what it took
        return reached_victim(st), answers


got, answers = run("policyd-quoted-default", True)
tap.ok(len(got) >= 2, "resolve_dequoted_address at its default: a quoted '@' with a local "
       "domain reaches victim.example beside the plain address (why the man page names "
       "the setting)", diag="reached %s; SMTP %s" % (got, answers))
got, answers = run("policyd-quoted-no", False)
tap.is_(got, ["u1@victim.example"], "resolve_dequoted_address = no (with allow_percent_hack "
        "and swap_bangpath = no): exactly one message reaches victim.example through "
        "recipient_domain 1/1h", diag="SMTP %s" % answers)
sys.exit(tap.done())
