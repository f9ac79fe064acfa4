#!/usr/bin/python3
"""contrib/demo.py - the demo's body (see contrib/demo). Boots the stack in
/tmp/mxkit-demo, sends real mail and explains each step. Each mxkit part
adds one function to PARTS."""

import os
import shutil
import subprocess
import sys
import uuid

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(TOP, "t", "lib"))
from mxstack import Stack  # noqa: E402
from mxtest import wait_for  # noqa: E402

DEMO_DIR = "/tmp/mxkit-demo"


def say(text):
    print("  " + text, flush=True)


def swaks(st, user, password, sender, rcpt, subject, extra=()):
    return subprocess.run(
        ["swaks", "--server", "127.0.0.1", "--port", str(st.port("postfix-submission")),
         "--auth", "PLAIN", "--auth-user", user, "--auth-password", password,
         "--from", sender, "--to", rcpt, "--header", "Subject: " + subject] + list(extra),
        capture_output=True, text=True, timeout=60)


def demo_foundation(st):
    print("\n[foundation] Postfix submission with SASL through Dovecot, LMTP delivery")
    token = uuid.uuid4().hex[:12]
    res = swaks(st, "svc-billing", "billing-secret", "noreply@planapulse.ai",
                "alice@mxkit.test", "demo " + token)
    ok = "235 2.7.0" in res.stdout
    say("svc-billing authenticated on the submission port: %s" % ("yes (235)" if ok else "NO"))
    found = wait_for(lambda: [m for m in st.maildir_messages("alice@mxkit.test")
                              if token.encode() in m], timeout=20)
    say("Postfix delivered it over LMTP; Dovecot stored it in alice's maildir: %s"
        % ("yes" if found else "NO"))
    bad = swaks(st, "svc-billing", "stolen-guess", "noreply@planapulse.ai",
                "alice@mxkit.test", "never")
    say("a wrong password was refused: %s" % ("yes (535)" if "535 " in bad.stdout else "NO"))
    return bool(ok and found)


PARTS = [demo_foundation]


def main():
    if "--down" in sys.argv:
        if os.path.exists(os.path.join(DEMO_DIR, "stack.json")):
            Stack.load(DEMO_DIR).stop()
            shutil.rmtree(DEMO_DIR, ignore_errors=True)
            print("demo stack stopped")
        else:
            print("no demo stack running")
        return 0
    keep = "--keep" in sys.argv
    if os.path.exists(os.path.join(DEMO_DIR, "stack.json")):
        Stack.load(DEMO_DIR).stop()
    shutil.rmtree(DEMO_DIR, ignore_errors=True)
    st = Stack(directory=DEMO_DIR, keep=True)
    try:
        print("booting Postfix, Dovecot, Redis and smtp-sink on 127.0.0.1 in " + DEMO_DIR)
        st.start_dovecot()
        st.start_sink()
        st.start_redis()
        st.start_postfix()
        results = [part(st) for part in PARTS]
        st.save()
        print("\n%d of %d demo steps worked." % (sum(results), len(results)))
        if keep:
            print("\nThe stack keeps running (contrib/demo --down stops it):")
            for name, port in sorted(st.ports.items()):
                print("  %-22s 127.0.0.1:%d" % (name, port))
            print("  logs in %s/log" % DEMO_DIR)
        return 0 if all(results) else 1
    except Exception as exc:
        print("demo failed: %s" % exc)
        st.dump_logs()
        keep = False
        return 1
    finally:
        if not keep:
            st.stop()
            shutil.rmtree(DEMO_DIR, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
