#!/usr/bin/python3
"""lmtp-webhook-spool's secret_file rotated the way kubelet updates a
Secret volume (a new timestamped directory, ..data_tmp renamed over
..data; the file a symlink through ..data), then SIGHUP: the man page says
secret_file takes effect at once. helper-121: the reload did not read it
(it was read at the next listing of active/, at most once a second), and
an event delivered within about a second after the signal was signed
with the old secret, sometimes two rotations old.

Real Dovecot LMTP with the plugin, lmtp-webhook-spool run, a receiver:
8 rotations, each followed by SIGHUP, the reload's log line, then one
bill at once: each event verifies with the newest secret (Python's hmac)
and with no older one."""

import os
import signal
import smtplib
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from mxstack import Stack  # noqa: E402
from mxtest import build_path, tap, wait_for  # noqa: E402
from mxwebhook import Receiver, Runner, events_for, make_secret, verify  # noqa: E402

PLUGIN_DIR = build_path("lmtp-webhook", ".libs")
ACME = "bills@acme.planapulse.app"


def kubelet_write(vol, name, content, seq):
    """One Secret volume update as kubelet makes it."""
    stamp = "..2026_12_05_00_00_%02d.%d" % (seq, os.getpid())
    os.makedirs(os.path.join(vol, stamp))
    with open(os.path.join(vol, stamp, name), "w") as f:
        f.write(content)
    os.symlink(stamp, os.path.join(vol, "..data_tmp"))
    old = os.path.realpath(os.path.join(vol, "..data")) if os.path.lexists(
        os.path.join(vol, "..data")) else None
    os.rename(os.path.join(vol, "..data_tmp"), os.path.join(vol, "..data"))
    if not os.path.lexists(os.path.join(vol, name)):
        os.symlink(os.path.join("..data", name), os.path.join(vol, name))
    if old:
        for f in os.listdir(old):
            os.unlink(os.path.join(old, f))
        os.rmdir(old)


def deliver(st, subject):
    with smtplib.LMTP("127.0.0.1", st.port("lmtp"), timeout=30) as c:
        c.sendmail("billing@vendor.test", [ACME], "From: billing@vendor.test\r\nTo: %s\r\n"
                   "Subject: %s\r\n\r\nbill\r\n" % (ACME, subject))


def main():
    rx = Receiver()
    with Stack("webhook-secret-rotate") as st:
        tap.stack = st
        st.users[ACME] = "pw"
        os.makedirs(st.path("spool"))
        import shutil
        shutil.chown(st.path("spool"), "nobody", "nogroup")
        vol = st.path("secret-volume")
        os.makedirs(vol)
        secrets = [make_secret(os.urandom(32))]
        kubelet_write(vol, "webhook.secret", secrets[0] + "\n", 0)
        with open(st.path("spool.conf"), "w") as f:
            f.write("spool_dir = %s\nsecret_file = %s\ntimeout = 5s\n"
                    % (st.path("spool"), os.path.join(vol, "webhook.secret")))
        st.start_dovecot(lmtp_plugins="lmtp_webhook", plugin_settings={
            "lmtp_webhook_route": "bills@*.planapulse.app http://127.0.0.1:%d/ws/{1}" % rx.port,
            "lmtp_webhook_spool_dir": st.path("spool")},
            extra="mail_plugin_dir = %s\n" % PLUGIN_DIR)
        runner = Runner(st)
        proc = runner.start()
        deliver(st, "rotation 0")
        ev = events_for(rx, "rotation 0")
        tap.ok(ev and verify(secrets[0], ev[-1][1], ev[-1][3]) is None, "the first secret signs")
        bad = []
        for seq in range(1, 9):
            secrets.append(make_secret(os.urandom(32)))
            kubelet_write(vol, "webhook.secret", secrets[-1] + "\n", seq)
            mark = st.read_log("spool").count("reloaded")
            proc.send_signal(signal.SIGHUP)
            wait_for(lambda: st.read_log("spool").count("reloaded") > mark, timeout=10)
            subject = "rotation %d" % seq
            deliver(st, subject)
            ev = events_for(rx, subject)
            if not ev:
                bad.append((seq, "no event"))
                continue
            signed_by = [i for i, s in enumerate(secrets) if verify(s, ev[-1][1], ev[-1][3]) is None]
            if signed_by != [seq]:
                bad.append((seq, signed_by))
            time.sleep(0.05 * seq)
        tap.is_(bad, [], "8 rotations, SIGHUP, a bill at once: each event signed with the "
                "newest secret only")
        tap.ok(proc.poll() is None, "lmtp-webhook-spool is still running")
    rx.stop()
    return tap.done()


if __name__ == "__main__":
    sys.exit(main())
