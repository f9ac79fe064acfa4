#!/usr/bin/python3
"""policyd-ratelimit and Postfix's recipient_delimiter (helper-122; real
Postfix 3.7 delivering to real Dovecot LMTP, Python's smtplib).

With recipient_delimiter = + (Debian's debconf default and Dovecot's),
Postfix and Dovecot deliver alice+1@ ... alice+6@ to alice's mailbox, and
each spelling was a key of its own: 8 messages reached alice through
`recipient rate=2/1h`. Now a key is the address without its extension:

  1. default recipient_delimiter (+): alice@, alice+1@ .. alice+6@, one
     message each: exactly 2 reach alice's Maildir, the rest are
     deferred (450) at RCPT;
  2. a sender's extensions (alice+news@ as MAIL FROM) share the sender's
     budget too;
  3. recipient_delimiter = (empty) in policyd: each extension is counted
     apart again (Postfix's own setting decides what is one mailbox; the
     daemon cannot read it), so 1/1h lets one message per spelling.
"""

import os
import smtplib
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from mxstack import Stack  # noqa: E402
from mxtest import tap, wait_for  # noqa: E402
import mxpolicy as mp  # noqa: E402

ALICE = "alice@example.test"


def send(st, sender, rcpt, subject):
    with smtplib.SMTP("127.0.0.1", st.port("postfix-smtp"), timeout=30) as c:
        try:
            c.sendmail(sender, [rcpt], "From: %s\r\nTo: %s\r\nSubject: %s\r\n\r\nhi\r\n"
                       % (sender, rcpt, subject))
            return 250
        except smtplib.SMTPRecipientsRefused as e:
            return list(e.recipients.values())[0][0]
        except smtplib.SMTPResponseException as e:
            return e.smtp_code


def stack(name, delimiter_line, limits):
    st = Stack(name)
    st.__enter__()
    tap.stack = st
    st.users[ALICE] = "pw"
    st.users["bob@example.test"] = "pw"
    _proc, port, _ = mp.start_policyd(st, "policyd", "listen = inet:127.0.0.1:{port}\n"
                                      "store = memory\n" + delimiter_line + limits)
    st.start_dovecot(extra="recipient_delimiter = +\n")
    st.start_postfix(main={"virtual_mailbox_domains": "example.test",
                           "recipient_delimiter": "+"}, smtpd=mp.restrictions(port))
    return st


def main():
    st = stack("policyd-delimiter", "", "limit per_rcpt = recipient rate=2/1h\n")
    try:
        rcpts = [ALICE] + ["alice+%d@example.test" % i for i in range(1, 7)]
        codes = [send(st, "sender@client.example", r, "to %s" % r) for r in rcpts]
        tap.is_(codes, [250, 250, 450, 450, 450, 450, 450],
                "alice@ and alice+1..6@ under recipient 2/1h: the first two pass, the rest "
                "are deferred (450)")
        tap.ok(wait_for(lambda: len(st.maildir_messages(ALICE)) == 2, timeout=20),
               "exactly 2 messages in alice's Maildir (8 before)",
               diag=str(len(st.maildir_messages(ALICE))))
    finally:
        st.__exit__(None, None, None)

    st = stack("policyd-delimiter-sender", "", "limit per_sender = sender rate=2/1h\n")
    try:
        codes = [send(st, s, "bob@example.test", "from %s" % s)
                 for s in ("alice@client.example", "alice+a@client.example",
                           "Alice+b@Client.Example", "alice+c@client.example")]
        tap.is_(codes, [250, 250, 450, 450], "a sender's extensions share its budget")
    finally:
        st.__exit__(None, None, None)

    st = stack("policyd-delimiter-off", "recipient_delimiter =\n",
               "limit per_rcpt = recipient rate=1/1h\n")
    try:
        codes = [send(st, "sender@client.example", r, "off %s" % r)
                 for r in (ALICE, "alice+1@example.test", "alice+2@example.test", ALICE)]
        tap.is_(codes, [250, 250, 250, 450], "recipient_delimiter = (empty): each extension "
                "is a key of its own, as before")
    finally:
        st.__exit__(None, None, None)
    return tap.done()


if __name__ == "__main__":
    sys.exit(main())
