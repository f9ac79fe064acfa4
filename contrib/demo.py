#!/usr/bin/python3
"""contrib/demo.py - the demo's body (see contrib/demo). Boots the stack in
/tmp/mxkit-demo, sends real mail and explains each step. Each mxkit part
adds one function to PARTS."""

import os
import re
import shutil
import subprocess
import sys
import uuid

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(TOP, "t", "lib"))
from mxstack import Stack  # noqa: E402
from mxtest import wait_for  # noqa: E402

DEMO_DIR = "/tmp/mxkit-demo"
BUILD = os.path.abspath(os.environ.get("MXKIT_BUILD", os.path.join(TOP, "build")))


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
    return {"submission": {"smtpd_recipient_restrictions": svc, "smtpd_data_restrictions": svc,
                           "smtpd_end_of_data_restrictions": svc}}


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


DKIM_CONF = """\
socket = inet:{port}@127.0.0.1
key_table = {dir}/etc/dkim/key.table
signing_table = refile:{dir}/etc/dkim/signing.table
sender_binding = {dir}/etc/dkim/sender_binding
dns_test_file = {dir}/etc/dkim/dns.txt
authserv_id = mx.mxkit.test
"""
DKIM_RECORDS = {}


def setup_dkim(st):
    """Keys from milter-dkim-keygen (RSA-2048 and Ed25519), OpenDKIM-format
    tables, milter-dkim started before Postfix; return the submission
    service's smtpd_milters."""
    etc = st.path("etc", "dkim")
    os.makedirs(etc, exist_ok=True)
    for selector, kind in (("rsa2026", "rsa"), ("ed2026", "ed25519")):
        out = subprocess.run([os.path.join(BUILD, "milter-dkim", "milter-dkim-keygen"),
                              "-d", "planapulse.ai", "-s", selector, "-t", kind, "-D", etc],
                             capture_output=True, text=True, check=True).stdout
        DKIM_RECORDS[out.split()[0].rstrip(".")] = "".join(re.findall(r'"([^"]*)"', out))
    with open(os.path.join(etc, "dns.txt"), "w") as f:      # DNS stand-in for the milter
        f.write("".join("%s %s\n" % kv for kv in DKIM_RECORDS.items()))
    with open(os.path.join(etc, "key.table"), "w") as f:
        f.write("rsa2026 planapulse.ai:rsa2026:%s/rsa2026.private\n"
                "ed2026  planapulse.ai:ed2026:%s/ed2026.private\n" % (etc, etc))
    with open(os.path.join(etc, "signing.table"), "w") as f:
        f.write("*@planapulse.ai rsa2026,ed2026\n")
    with open(os.path.join(etc, "sender_binding"), "w") as f:
        f.write("svc-billing *@planapulse.ai\n")
    port = st.port("milter-dkim")
    conf = st.path("etc", "milter-dkim.conf")
    with open(conf, "w") as f:
        f.write(DKIM_CONF.format(port=port, dir=st.dir))
    st.start_daemon("milter-dkim", [os.path.join(BUILD, "milter-dkim", "milter-dkim"),
                                    "-f", "-c", conf], port=port)
    return {"submission": {"smtpd_milters": "inet:127.0.0.1:%d" % port,
                           "milter_default_action": "tempfail"}}


def demo_dkim(st):
    import dkim          # python3-dkim: a verifier nobody here wrote
    print("\n[milter-dkim] RSA-2048 + Ed25519 signatures, checked by dkimpy")
    token = uuid.uuid4().hex[:12]
    swaks(st, "svc-billing", "billing-secret", "noreply@planapulse.ai", "alice@mxkit.test",
          "invoice " + token, ["--header", "From: Billing <noreply@planapulse.ai>"])
    found = wait_for(lambda: [m for m in st.maildir_messages("alice@mxkit.test")
                              if token.encode() in m], timeout=20)
    message = re.sub(rb"(?<!\r)\n", b"\r\n", found[0]) if found else b""
    head = message.split(b"\r\n\r\n")[0]
    algs = re.findall(rb"a=([a-z0-9-]+);", b"".join(
        re.findall(rb"^DKIM-Signature:.*?(?=^\S)", head + b"\r\nX:", re.M | re.S)))
    say("svc-billing's invoice arrived with DKIM-Signature headers: %s"
        % (b", ".join(algs).decode() or "NONE"))
    d = dkim.DKIM(message)

    def dnsfunc(name, timeout=5):
        value = DKIM_RECORDS.get(name.decode().rstrip("."))
        return value.encode() if value else None
    results = [d.verify(idx=i, dnsfunc=dnsfunc) for i in range(len(algs))]
    say("dkimpy verified them with the TXT records milter-dkim-keygen printed: %s"
        % ", ".join("pass" if r else "FAIL" for r in results))
    bad = swaks(st, "svc-billing", "billing-secret", "staff@plana.solutions",
                "alice@mxkit.test", "not mine", ["--header", "From: staff@plana.solutions"])
    refused = [line.split("<** ", 1)[1] for line in bad.stdout.splitlines() if "<** 550" in line]
    say("svc-billing posing as staff@plana.solutions (sender_binding): %s"
        % (refused[0] if refused else "NOT REFUSED"))
    return len(results) == 2 and all(results) and bool(refused)


SHIM_HAPROXY = """
frontend fe_smtp
    bind 127.0.0.1:{port:haproxy-smtp}
    default_backend be_smtp
backend be_smtp
    server mx 127.0.0.1:{port:proxyv2-shim} send-proxy-v2 proxy-v2-options crc32c
"""


def setup_shim(st):
    """haproxy (send-proxy-v2) -> proxyv2-shim (xclient) -> Postfix smtpd;
    return the smtpd option that lets the shim use XCLIENT."""
    port = st.port("proxyv2-shim")
    conf = st.path("etc", "proxyv2-shim.conf")
    with open(conf, "w") as f:
        f.write("listener = 127.0.0.1:%d backend=127.0.0.1:%d mode=xclient "
                "trusted=127.0.0.0/8\n" % (port, st.port("postfix-smtp")))
        # No DNS here: XCLIENT NAME=[UNAVAILABLE] instead of a PTR lookup.
        f.write("xclient_name_lookup = no\n")
    st.start_daemon("proxyv2-shim", [os.path.join(BUILD, "proxyv2-shim", "proxyv2-shim"),
                                     "-f", "-c", conf], port=port)
    st.port("haproxy-smtp")
    st.start_haproxy(SHIM_HAPROXY, wait_ports=[st.port("haproxy-smtp")])
    return {"smtpd": {"smtpd_authorized_xclient_hosts": "127.0.0.1"}}


def demo_shim(st):
    print("\n[proxyv2-shim] haproxy send-proxy-v2 -> shim (XCLIENT) -> Postfix")
    token = uuid.uuid4().hex[:12]
    res = subprocess.run(["swaks", "--server", "127.0.0.1", "--port", str(st.port("haproxy-smtp")),
                          "--local-interface", "127.0.0.2", "--from", "partner@example.org",
                          "--to", "alice@mxkit.test", "--header", "Subject: via haproxy " + token],
                         capture_output=True, text=True, timeout=60)
    say("a client on 127.0.0.2 sent mail through haproxy: %s"
        % ("accepted (250)" if "250 2.0.0 Ok" in res.stdout else "NOT ACCEPTED"))
    log = [line for line in st.read_log("postfix").splitlines()
           if ": client=" in line and "[127.0.0.2]" in line]
    say("Postfix logged the real client, not haproxy's or the shim's 127.0.0.1: %s"
        % (log[0].split("]: ", 1)[1] if log else "NO"))
    shim = [line for line in st.read_log("proxyv2-shim").splitlines() if "client=127.0.0.2" in line]
    say("proxyv2-shim logged: %s" % (shim[-1].split(": ", 1)[1] if shim else "NOTHING"))
    found = wait_for(lambda: [m for m in st.maildir_messages("alice@mxkit.test")
                              if token.encode() in m], timeout=20)
    return bool(log and found)


WEBHOOK_RX = None


def setup_webhook(st):
    """Before Dovecot starts: a local receiver (Python http.server that
    checks signatures with Python's hmac), a secret, a spool; returns
    start_dovecot()'s arguments that load the lmtp_webhook plugin."""
    global WEBHOOK_RX
    from mxwebhook import Receiver, make_secret
    WEBHOOK_RX = Receiver()
    secret = make_secret()
    with open(st.path("webhook.secret"), "w") as f:
        f.write(secret + "\n")
    os.chmod(st.path("webhook.secret"), 0o644)
    os.makedirs(st.path("webhook-spool"))
    shutil.chown(st.path("webhook-spool"), "nobody", "nogroup")
    with open(st.path("lmtp-webhook-spool.conf"), "w") as f:
        f.write("spool_dir = %s\nsecret_file = %s\n"
                % (st.path("webhook-spool"), st.path("webhook.secret")))
    # the plugin commits events to the spool; this daemon posts them
    st.start_daemon("lmtp-webhook-spool", [
        os.path.join(BUILD, "lmtp-webhook", "lmtp-webhook-spool"),
        "-c", st.path("lmtp-webhook-spool.conf"), "-f", "run"])
    return {"lmtp_plugins": "lmtp_webhook",
            "plugin_settings": {
                "lmtp_webhook_route": "bills@*.planapulse.app "
                "http://127.0.0.1:%d/ws/{1}/api/bills/inbound" % WEBHOOK_RX.port,
                "lmtp_webhook_spool_dir": st.path("webhook-spool")},
            "extra": "mail_plugin_dir = %s\n" % os.path.join(BUILD, "lmtp-webhook", ".libs")}


def demo_webhook(st):
    import base64
    import hashlib
    from mxwebhook import verify
    print("\n[lmtp-webhook] a bill mail becomes a signed webhook; an outage is caught up")
    rx = WEBHOOK_RX
    pdf = st.path("invoice-42.pdf")
    with open(pdf, "wb") as f:
        f.write(b"%PDF-1.4\n" + os.urandom(3000) + b"\n%%EOF\n")
    with open(pdf, "rb") as f:
        pdf_bytes = f.read()
    res = subprocess.run(["swaks", "--server", "127.0.0.1", "--port", str(st.port("postfix-smtp")),
                          "--from", "billing@vendor.example", "--to", "bills@acme.planapulse.app",
                          "--header", "Subject: Invoice 42", "--body", "Invoice attached.",
                          "--attach-type", "application/pdf", "--attach-name", "invoice-42.pdf",
                          "--attach", "@" + pdf], capture_output=True, text=True, timeout=60)
    say("swaks sent a PDF bill to bills@acme.planapulse.app through Postfix: %s"
        % ("accepted" if "250 2.0.0 Ok" in res.stdout else "NOT ACCEPTED"))
    got = wait_for(lambda: rx.events(), timeout=20)
    if not got:
        say("NO webhook arrived")
        return False
    path, headers, event, raw = got[0]
    good = verify(open(st.path("webhook.secret")).read().strip(), headers, raw) is None
    att = (event["data"]["attachments"] or [{}])[0]
    same = base64.b64decode(att.get("content_base64") or "") == pdf_bytes \
        and att.get("sha256") == hashlib.sha256(pdf_bytes).hexdigest()
    say("POST %s, webhook-id %s, workspace %r" % (path, headers.get("webhook-id"),
                                                  event["data"]["workspace"]))
    say("signature checked with Python's hmac: %s; attachment %s bytes and sha256 match: %s"
        % ("valid" if good else "INVALID", att.get("filename"), "yes" if same else "NO"))
    rx.stop()
    res = subprocess.run(["swaks", "--server", "127.0.0.1", "--port", str(st.port("postfix-smtp")),
                          "--from", "billing@vendor.example", "--to", "bills@acme.planapulse.app",
                          "--header", "Subject: Invoice 43 during the outage"],
                         capture_output=True, text=True, timeout=60)
    tool = [os.path.join(BUILD, "lmtp-webhook", "lmtp-webhook-spool"),
            "-c", st.path("lmtp-webhook-spool.conf")]
    spooled = wait_for(lambda: os.listdir(st.path("webhook-spool", "active")), timeout=20)
    say("receiver down: mail accepted, %d event in the spool, its first attempt failed "
        "(lmtp-webhook-spool list):" % len(spooled))
    for line in subprocess.run(tool + ["list"], capture_output=True, text=True).stdout.splitlines():
        say("  " + line[:170])
    rx.start()
    flush = subprocess.run(tool + ["flush"], capture_output=True, text=True)
    say("receiver back, lmtp-webhook-spool flush: %s" % flush.stdout.strip())
    late = wait_for(lambda: [e for e in rx.events()
                             if e[2]["data"]["headers"]["subject"].startswith("Invoice 43")],
                    timeout=20)
    say("the caught-up event arrived %d time(s), signature %s"
        % (len(late), "valid" if late and verify(open(st.path("webhook.secret")).read().strip(),
                                                  late[0][1], late[0][3]) is None else "INVALID"))
    return good and same and len(spooled) == 1 and len(late) == 1


# (setup before Postfix starts -> {"submission": opts, "smtpd": opts}, demo after)
PARTS = [(None, demo_foundation), (setup_policyd, demo_policyd), (setup_dkim, demo_dkim),
         (setup_shim, demo_shim), (None, demo_webhook)]


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
        print("booting Postfix, Dovecot, Redis, haproxy and smtp-sink on 127.0.0.1 in " + DEMO_DIR)
        st.start_dovecot(**setup_webhook(st))
        st.start_sink()
        st.start_redis()
        submission, smtpd = {}, {}
        for setup, _ in PARTS:
            if setup:
                opts = setup(st)
                submission.update(opts.get("submission", {}))
                smtpd.update(opts.get("smtpd", {}))
        st.start_postfix(submission=submission, smtpd=smtpd)
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
