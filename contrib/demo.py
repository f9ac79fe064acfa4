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
BUILD = os.environ.get("MXKIT_BUILD", os.path.join(TOP, "build"))


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


POLICYD_CONF = """\
listen = inet:127.0.0.1:{port}
store = redis://127.0.0.1:{redis}/0
on_store_error = open
defer_reply = 450 4.7.1 Rate limit {{limit}} exceeded for {{key}}; retry in {{retry_after}}s
limit per_user = sasl_username rate=30/1m,500/1d count=recipients
override per_user svc-billing rate=5000/1h,50000/1d
"""


def setup_policyd(st):
    """Start policyd-ratelimit (Redis store) before Postfix; return the
    submission service's restriction lists that consult it."""
    binary = os.path.join(BUILD, "policyd-ratelimit", "policyd-ratelimit")
    port = st.port("policyd")
    conf = st.path("etc", "policyd-ratelimit.conf")
    with open(conf, "w") as f:
        f.write(POLICYD_CONF.format(port=port, redis=st.port("redis")))
    st.start_daemon("policyd", [binary, "-f", "-c", conf], port=port)
    svc = "check_policy_service inet:127.0.0.1:%d" % port
    return {"smtpd_recipient_restrictions": svc, "smtpd_data_restrictions": svc,
            "smtpd_end_of_data_restrictions": svc}


def demo_policyd(st):
    print("\n[policyd-ratelimit] 30 recipients/min per SASL credential, shared in Redis")
    rcpts = ",".join("user%d@example.net" % i for i in range(31))
    res = swaks(st, "svc-alerts", "alerts-secret", "alerts@planapulse.ai", rcpts,
                "alert storm")
    accepted = res.stdout.count("<-  250 2.1.5")
    deferred = [line for line in res.stdout.splitlines() if "<** 450 4.7.1" in line]
    say("svc-alerts (a runaway service) sent to 31 recipients: %d accepted" % accepted)
    say("the 31st got: %s" % (deferred[0].split("<** ", 1)[1] if deferred else "NOTHING"))
    log = [line for line in st.read_log("policyd").splitlines() if "per_user: defer" in line]
    say("policyd-ratelimit logged: %s" % (log[-1].split(": ", 1)[1] if log else "NOTHING"))
    res2 = swaks(st, "svc-billing", "billing-secret", "noreply@planapulse.ai",
                 ",".join("cust%d@example.net" % i for i in range(40)), "invoices")
    billing = res2.stdout.count("<-  250 2.1.5")
    say("svc-billing (override 5000/1h) sent to 40 recipients: %d accepted" % billing)
    keys = subprocess.run(["redis-cli", "-p", str(st.port("redis")), "--scan", "--pattern",
                           "mxrl:*"], capture_output=True, text=True).stdout.split()
    say("the counters live in Redis, shared by every MX node: %s" % ", ".join(sorted(keys)))
    return accepted == 30 and len(deferred) == 1 and billing == 40


# (setup before Postfix starts -> submission options, demo after)
PARTS = [(None, demo_foundation), (setup_policyd, demo_policyd)]


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
        submission = {}
        for setup, _ in PARTS:
            if setup:
                submission.update(setup(st))
        st.start_postfix(submission=submission)
        results = [demo(st) for _, demo in PARTS]
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
