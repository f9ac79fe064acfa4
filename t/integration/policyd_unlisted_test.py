#!/usr/bin/python3
"""Recipients Postfix refuses after the policy check are not charged to a
recipient_domain limit (real Postfix 3.7, Python's smtplib, memory store).

Postfix's implicit reject_unlisted_recipient (smtpd_reject_unlisted_
recipient = yes, the default) runs after smtpd_recipient_restrictions:
the check has let the recipient through (DUNNO) before Postfix refuses it
with 550 5.1.1. Before, such recipients were charged at END-OF-MESSAGE:
four unknown recipients and one real one at a domain with a budget of 5
used all 5 (an outside attacker's finding: no credentials needed to spend
a domain's budget up to smtpd_recipient_limit times over).

  1. The check alone in smtpd_recipient_restrictions (port 25): Postfix
     accepts one recipient of five, says so (recipient_count = 1), and the
     domain is charged one: the next transaction gets four of five
     through. One warning names the fix.
  2. reject_unlisted_recipient before the check, as the documentation says
     (the submission service): the unknown recipients never reach the
     check; the same counts, and no warning.
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from mxstack import Stack  # noqa: E402
from mxtest import tap, wait_for  # noqa: E402
import mxpolicy as mp  # noqa: E402

CONFIG = """\
listen = inet:127.0.0.1:{port}
store = memory
limit per_domain = recipient_domain rate=5/1h count=recipients
"""

WARNING = "recipients this check let through were refused after it"


def codes(results):
    return [c for c, _ in results]


def domain_budget(st, service, domain, what):
    """five unknown-then-known recipients, then five known ones"""
    log = lambda: st.read_log("policyd").count(WARNING)
    before = log()
    s = mp.login(st, None, service)
    res, data = mp.transaction(s, "sender@client.example",
                               ["nobody%d@%s" % (i, domain) for i in range(4)]
                               + ["known0@%s" % domain])
    s.quit()
    tap.is_((codes(res), data and data[0]), ([550] * 4 + [250], 250),
            "%s: Postfix refuses four unknown recipients (550) and takes the known one"
            % what, diag=repr(res))
    s = mp.login(st, None, service)
    res, data = mp.transaction(s, "sender@client.example",
                               ["known%d@%s" % (i, domain) for i in range(5)])
    s.quit()
    tap.is_(codes(res), [250] * 4 + [450],
            "%s: the domain was charged one recipient of its five, not five: four of the "
            "next five get through, the fifth is deferred" % what, diag=repr(res))
    tap.is_(data and data[0], 250, "%s: and the four are accepted" % what)
    return log() - before


with Stack("policyd-unlisted") as st:
    tap.stack = st
    proc, port, conf = mp.start_policyd(st, "policyd", CONFIG)
    aliases = ", ".join("known%d@%s=sink@example.net" % (i, d) for i in range(5)
                        for d in ("implicit.example", "explicit.example"))
    st.start_postfix(main={
        "virtual_alias_domains": "implicit.example, explicit.example",
        "virtual_alias_maps": "inline:{ %s }" % aliases,
        "smtpd_error_sleep_time": "0",
    }, smtpd=mp.restrictions(port), submission=mp.restrictions(
        port, rcpt_before="reject_unlisted_recipient",
        extra={"smtpd_relay_restrictions": "permit_mynetworks, reject_unauth_destination"}))

    warned = domain_budget(st, "postfix-smtp", "implicit.example",
                           "check alone (implicit reject_unlisted_recipient after it)")
    tap.ok(wait_for(lambda: st.read_log("policyd").count(WARNING) == 1, timeout=5),
           "one warning for the transaction whose recipients were refused after the check",
           diag=st.read_log("policyd")[-1500:])
    line = [x for x in st.read_log("policyd").splitlines() if WARNING in x]
    tap.ok(line and "4 of the 5 recipients" in line[0]
           and "put reject_unlisted_recipient before check_policy_service" in line[0],
           "it counts them and names the fix", diag=repr(line))
    warned = domain_budget(st, "postfix-submission", "explicit.example",
                           "reject_unlisted_recipient before the check")
    tap.is_(warned, 0, "reject_unlisted_recipient before the check: nothing refused after "
            "it, no warning")
    tap.ok(proc.poll() is None, "policyd-ratelimit is still running")

sys.exit(tap.done())
