#!/usr/bin/python3
"""A secret per workspace on one wildcard route (helper-120): every guide
routes bills@*.planapulse.app with one route, and all workspaces were
signed with one secret, so one workspace's copy forged events for all
("a leaked secret forges events for that workspace only" was not true).
secret_file= may now hold the route's captures: secret_file=DIR/{1}.secret.

Real Dovecot LMTP with the plugin, lmtp-webhook-spool run, a receiver:
acme's event verifies with acme's secret only and globex's with globex's
(Python's hmac); a workspace without a secret file has its event wait
(named in the log, nothing signed with the global secret) and posted
once the file is there. helper-124: a workspace file holding "====" or
"AAAA" signed its events with what amounts to the empty key (anyone
forged them) and a 3-byte key without a word: the first two wait, named
in the log, and the short key is warned of once."""

import os
import shutil
import signal
import smtplib
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from mxstack import Stack  # noqa: E402
from mxtest import build_path, tap, wait_for  # noqa: E402
from mxwebhook import Receiver, Runner, events_for, make_secret, verify  # noqa: E402

PLUGIN_DIR = build_path("lmtp-webhook", ".libs")
WORKSPACES = ("acme", "globex", "initech", "hooli", "umbrella", "stark")


def deliver(st, workspace, subject):
    rcpt = "bills@%s.planapulse.app" % workspace
    with smtplib.LMTP("127.0.0.1", st.port("lmtp"), timeout=30) as c:
        c.sendmail("billing@vendor.test", [rcpt], "From: billing@vendor.test\r\nTo: %s\r\n"
                   "Subject: %s\r\n\r\nbill\r\n" % (rcpt, subject))


def main():
    rx = Receiver()
    with Stack("webhook-workspace-secret") as st:
        tap.stack = st
        for w in WORKSPACES:
            st.users["bills@%s.planapulse.app" % w] = "pw"
        os.makedirs(st.path("spool"))
        shutil.chown(st.path("spool"), "nobody", "nogroup")
        sdir = st.path("secrets")
        os.makedirs(sdir)
        secrets = {w: make_secret(os.urandom(32)) for w in WORKSPACES + ("global",)}
        for w in ("acme", "globex"):
            with open(os.path.join(sdir, w + ".secret"), "w") as f:
                f.write(secrets[w] + "\n")
        for w, text in (("hooli", "====\n"), ("umbrella", "AAAA\n"), ("stark", "whsec_AQID\n")):
            with open(os.path.join(sdir, w + ".secret"), "w") as f:
                f.write(text)
        with open(st.path("global.secret"), "w") as f:
            f.write(secrets["global"] + "\n")
        with open(st.path("spool.conf"), "w") as f:
            f.write("spool_dir = %s\nsecret_file = %s\ntimeout = 5s\n"
                    % (st.path("spool"), st.path("global.secret")))
        st.start_dovecot(lmtp_plugins="lmtp_webhook", plugin_settings={
            "lmtp_webhook_route": "bills@*.planapulse.app http://127.0.0.1:%d/ws/{1} "
                                  "secret_file=%s/{1}.secret" % (rx.port, sdir),
            "lmtp_webhook_spool_dir": st.path("spool")},
            extra="mail_plugin_dir = %s\n" % PLUGIN_DIR)
        runner = Runner(st)
        proc = runner.start()
        for w in WORKSPACES:
            deliver(st, w, "bill for " + w)
        for w in ("acme", "globex"):
            ev = events_for(rx, "bill for " + w)
            signed_by = [k for k, s in secrets.items()
                         if ev and verify(s, ev[-1][1], ev[-1][3]) is None]
            tap.is_(signed_by, [w], "%s's event verifies with %s's secret only" % (w, w))
        tap.ok(not events_for(rx, "bill for initech", timeout=4)
               and wait_for(lambda: os.path.join(sdir, "initech.secret")
                            in st.read_log("spool"), timeout=10),
               "initech without a secret file: its event waits, the file named in the log")
        for w, why in (("hooli", "not valid base64"), ("umbrella", "every byte is zero")):
            tap.ok(not events_for(rx, "bill for " + w, timeout=1) and wait_for(
                lambda: "%s.secret: secret: %s" % (w, why) in st.read_log("spool"), timeout=10),
                "%s's file holds no secret (%s): its event waits, the file named" % (w, why),
                diag=st.read_log("spool")[-1500:])
        ev = events_for(rx, "bill for stark", timeout=10)
        tap.ok(ev and verify("whsec_AQID", ev[-1][1], ev[-1][3]) is None and wait_for(
            lambda: st.read_log("spool").count("stark.secret: the secret is 3 bytes, too short")
            == 1, timeout=5),
            "stark's 3-byte secret: posted, and warned of once in the log",
            diag=st.read_log("spool")[-1500:])
        with open(os.path.join(sdir, "initech.secret"), "w") as f:
            f.write(secrets["initech"] + "\n")
        proc.send_signal(signal.SIGUSR1)
        ev = events_for(rx, "bill for initech", timeout=20)
        tap.ok(ev and len(ev) == 1 and verify(secrets["initech"], ev[-1][1], ev[-1][3]) is None
               and verify(secrets["global"], ev[-1][1], ev[-1][3]) is not None,
               "its file in place: posted once, signed with initech's secret, not the global")
    rx.stop()
    return tap.done()


if __name__ == "__main__":
    sys.exit(main())
