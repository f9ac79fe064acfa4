#!/usr/bin/python3
"""The launcher's proof: real Postfix with SASL through real Dovecot;
swaks submits on the submission port; the message reaches the Dovecot
maildir over LMTP; a wrong password gets 535; relaying goes to smtp-sink."""

import os
import sys
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from mxstack import Stack  # noqa: E402
from mxtest import run, tap, wait_for  # noqa: E402


def swaks(st, user, password, sender, rcpt, token):
    return run(["swaks", "--server", "127.0.0.1", "--port", str(st.port("postfix-submission")),
                "--auth", "PLAIN", "--auth-user", user, "--auth-password", password,
                "--from", sender, "--to", rcpt, "--header", "Subject: " + token,
                "--body", "token " + token])


with Stack("submission") as st:
    tap.stack = st
    st.start_dovecot()
    st.start_sink()
    st.start_postfix()

    token = uuid.uuid4().hex
    res = swaks(st, "svc-billing", "billing-secret", "noreply@planapulse.ai",
                "alice@mxkit.test", token)
    tap.is_(res.returncode, 0, "swaks submits with SASL PLAIN as svc-billing")
    tap.ok("235 2.7.0 Authentication successful" in res.stdout, "server answered 235",
           diag=res.stdout[-2000:])
    msgs = wait_for(lambda: [m for m in st.maildir_messages("alice@mxkit.test")
                             if token.encode() in m])
    tap.is_(len(msgs), 1, "message is in alice's Dovecot maildir, exactly once")
    tap.ok(msgs and b"Received: from" in msgs[0],
           "the stored copy carries Postfix's Received: header")
    # Postfix logs status=sent after Dovecot's reply, through postlogd
    wait_for(lambda: "status=sent" in st.read_log("postfix"), timeout=10)
    log = st.read_log("postfix")
    tap.ok("sasl_username=svc-billing" in log, "Postfix logged the SASL user")
    tap.ok("relay=127.0.0.1[127.0.0.1]:%d" % st.port("lmtp") in log and "status=sent" in log,
           "Postfix delivered over LMTP to Dovecot")

    bad = swaks(st, "svc-billing", "wrong-password", "noreply@planapulse.ai",
                "alice@mxkit.test", "never")
    tap.ok(bad.returncode != 0, "swaks fails with a wrong password")
    tap.ok("535 5.7.8" in bad.stdout, "wrong password refused with 535 5.7.8",
           diag=bad.stdout[-1500:])

    anon = run(["swaks", "--server", "127.0.0.1", "--port", str(st.port("postfix-submission")),
                "--from", "x@example.org", "--to", "someone@example.net"])
    tap.ok("554 5.7.1" in anon.stdout, "unauthenticated relay on submission refused with 554",
           diag=anon.stdout[-1500:])

    token2 = uuid.uuid4().hex
    res = swaks(st, "svc-alerts", "alerts-secret", "alerts@planapulse.ai",
                "ops@example.net", token2)
    tap.is_(res.returncode, 0, "authenticated relay to a remote domain accepted")
    relayed = wait_for(lambda: [m for m in st.sink_messages() if token2 in m])
    tap.is_(len(relayed), 1, "remote mail relayed to smtp-sink exactly once")

sys.exit(tap.done())
