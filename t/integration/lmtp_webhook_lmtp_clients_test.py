#!/usr/bin/python3
"""lmtp_webhook_trusted_networks (helper-123): Authentication-Results under
the trusted authserv-id count only in mail from the LMTP client that ran
milter-dkim. Mailu's lmtp listens on port 2525 of the Compose network;
anything on that network handed Dovecot a bill carrying "dmarc=pass"
under the host's id, the event said dmarc: pass and content_signed, and
the consumer guide's code accepted it.

Real Dovecot LMTP with the plugin and lmtp-webhook-spool run, a receiver:
  - trusted_networks = 127.0.0.1: the same bill with the same forged
    header from 127.0.0.2 says none everywhere (and lmtp logs a warning
    naming 127.0.0.2); from 127.0.0.1 (standing in for Postfix, whose
    milter wrote that header) it says pass;
  - the default (127.0.0.0/8 ::1) trusts loopback clients;
  - Dovecot's LMTP XCLIENT (offered to login_trusted_networks, Mailu's
    whole Compose network): ADDR=127.0.0.1 from 127.0.0.2 claimed the
    MTA's address and its forged bill said dmarc pass (helper-124). The
    connection's own address must be listed too: none, and a warning
    naming both; from 127.0.0.1 with ADDR=127.0.0.1 pass, with ADDR= an
    unlisted address none;
  - a value that is no list of networks (host bits set, /0 of an
    address, empty included: each trusted more than it said,
    helper-124): 451, with the error in the log, and the mail is not
    saved; the next delivery after the fix goes through.
  - Dovecot's stock lmtp UNIX socket is mode 0666: a client over it was
    trusted whoever it was, and any local account's forged bill said
    dmarc pass (helper-127). Now its peer's uid must be root or in
    lmtp_webhook_trusted_unix_users (default postfix): nobody's bill
    says none (a warning names the uid), root's pass; listed, nobody's
    passes; a user that does not exist is an error (451).
  - behind Dovecot's lmtp_proxy (a front Dovecot proxying to this one,
    which lists it in login_trusted_networks): the same bytes delivered
    twice through the front had two webhook-ids, the front's Received:
    (with its own transaction id) was hashed and left in raw_message
    (helper-127). Now one id, raw_message the bytes sent; the front's
    client is the one checked (XCLIENT): 127.0.0.2 none, 127.0.0.1 pass.
    A front the back does not offer XCLIENT (not in its
    login_trusted_networks) cannot pass its client: its Received: (an
    id the session does not name, also "with LMTPS" after STARTTLS)
    marks the delivery as proxied, every result none and a warning; the
    id stays one, raw_message exact. A client of the front's own UNIX
    socket (0666) has no address to pass: none, not the front's trust
    (helper-128).
"""

import base64
import os
import shutil
import smtplib
import ssl
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from mxstack import Stack  # noqa: E402
from mxtest import build_path, tap, wait_for  # noqa: E402
from mxwebhook import Receiver, Runner, events_for, make_secret  # noqa: E402

PLUGIN_DIR = build_path("lmtp-webhook", ".libs")
TRUSTED = "mx.planapulse.test"
ACME = "bills@acme.planapulse.app"
CRLF = b"\r\n"
FORGED = ("Authentication-Results: %s; dkim=pass header.d=vendor.test header.s=s1 "
          "header.b=FORGEDxx; spf=pass smtp.mailfrom=vendor.test; dmarc=pass "
          "header.from=vendor.test" % TRUSTED)


def bill(subject):
    return CRLF.join(h.encode() for h in [
        FORGED, "From: Vendor <billing@vendor.test>", "To: " + ACME, "Subject: " + subject,
        "Message-ID: <%s@vendor.test>" % subject.replace(" ", "."),
        "Date: Sat, 05 Dec 2026 10:00:00 +0000"]) + CRLF * 2 + b"Pay to XX00 ATTACKER.\r\n"


def lmtp_from(st, source, data, xclient=None):
    """One LMTP delivery to ACME from the local address source (after
    XCLIENT ADDR=xclient if given): (code, text)."""
    with smtplib.LMTP("127.0.0.1", st.port("lmtp"), timeout=30,
                      source_address=(source, 0)) as c:
        c.ehlo_or_helo_if_needed()
        if xclient is not None:
            code, text = c.docmd("XCLIENT", "ADDR=%s" % xclient)
            if code != 220:
                return code, text
            c.ehlo()                    # a new session: LHLO again
        c.mail("billing@vendor.test")
        code, text = c.rcpt(ACME)
        if code != 250:
            return code, text
        return c.data(data)


def authentication(rx, subject):
    ev = events_for(rx, subject, timeout=20)
    return ev[-1][2]["data"]["authentication"] if ev else None


def dovecot_reload(st, networks, name="lmtp_webhook_trusted_networks"):
    path = st.path("dovecot", "dovecot.conf")
    with open(path) as f:
        conf = f.read()
    lines = [ln for ln in conf.splitlines() if name not in ln]
    at = next(i for i, ln in enumerate(lines) if "lmtp_webhook_spool_dir" in ln)
    if networks is not None:
        lines.insert(at, "  %s = %s" % (name, networks))
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    res = subprocess.run(["doveadm", "-c", path, "reload"], capture_output=True, text=True)
    tap.is_(res.returncode, 0, "doveadm reload (%s = %r)" % (name, networks),
            diag=res.stderr)
    time.sleep(1.5)                     # lmtp processes of the old settings end


UNIX_CLIENT = r'''
import os, smtplib, sys
uid = int(sys.argv[3])
if uid:
    os.setgid(65534)
    os.setuid(uid)
c = smtplib.LMTP(sys.argv[1], timeout=30)
c.ehlo()
c.mail("billing@vendor.test")
c.rcpt("bills@acme.planapulse.app")
print(c.data(open(sys.argv[2], "rb").read())[0])
c.quit()
'''


def lmtp_unix(st, uid, data, sock=None):
    """One delivery over Dovecot's stock lmtp socket (or sock) as uid: the code."""
    path = st.path("unix-bill")
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, 0o644)
    res = subprocess.run([sys.executable, "-c", UNIX_CLIENT, sock or st.path("dovecot", "run", "lmtp"),
                          path, str(uid)], capture_output=True, text=True, timeout=60)
    return res.stdout.strip() or res.stderr[-300:]


def test_unix_socket(st, rx):
    sock = st.path("dovecot", "run", "lmtp")
    tap.is_(oct(os.stat(sock).st_mode & 0o777), "0o666", "Dovecot's stock lmtp socket: 0666")
    for uid, subject, want in ((65534, "unix nobody", "none"), (0, "unix root", "pass")):
        got = lmtp_unix(st, uid, bill(subject))
        auth = authentication(rx, subject) if got == "250" else None
        tap.ok(auth is not None and auth["dmarc"] == want and not auth.get("content_signed")
               if want == "none" else auth is not None and auth["dmarc"] == want,
               "over the UNIX socket as uid %d: delivered, dmarc %s" % (uid, want),
               diag="%r %r" % (got, auth))
    tap.ok(wait_for(lambda: "LMTP client over a UNIX socket, uid 65534, is not in "
                    "lmtp_webhook_trusted_unix_users" in st.read_log("dovecot"), timeout=5),
           "the warning names the uid", diag=st.read_log("dovecot")[-800:])
    dovecot_reload(st, "postfix, nobody", "lmtp_webhook_trusted_unix_users")
    got = lmtp_unix(st, 65534, bill("unix nobody listed"))
    auth = authentication(rx, "unix nobody listed") if got == "250" else None
    tap.ok(auth is not None and auth["dmarc"] == "pass", "nobody listed: its bill is trusted",
           diag="%r %r" % (got, auth))
    for value, error in (("postfix no-such-user-mx", "no such user: no-such-user-mx"),
                         ("99999999999999999999", "99999999999999999999 is no uid"),
                         ("4294967296", "4294967296 is no uid"),
                         ("4294967295", "4294967295 is no uid")):
        dovecot_reload(st, value, "lmtp_webhook_trusted_unix_users")
        got = lmtp_unix(st, 65534, bill("unix bad value " + value))
        tap.ok("451" in got, "lmtp_webhook_trusted_unix_users = %s: 451" % value, diag=got)
        tap.ok(wait_for(lambda: "lmtp_webhook_trusted_unix_users: " + error
                        in st.read_log("dovecot"), timeout=5), "the error names it")
    dovecot_reload(st, None, "lmtp_webhook_trusted_unix_users")


FRONT = """base_dir = {d}/front/run
state_dir = {d}/front/state
log_path = {d}/log/front.log
protocols = lmtp
listen = 127.0.0.1
ssl = yes
ssl_cert = <{d}/front/cert.pem
ssl_key = <{d}/front/key.pem
default_internal_user = dovecot
default_login_user = dovenull
lmtp_proxy = yes
passdb {{
  driver = static
  args = proxy=y host=127.0.0.1 port={back} nopassword=y
}}
userdb {{
  driver = static
  args = uid=nobody gid=nogroup home={d}/front/home
}}
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {front}
  }}
}}
"""


def test_proxy_front(st, rx):
    for sub in ("run", "state", "home"):
        os.makedirs(st.path("front", sub))
    port = st.port("front")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=front.test", "-keyout", st.path("front", "key.pem"),
                    "-out", st.path("front", "cert.pem")], check=True, capture_output=True)
    with open(st.path("front", "dovecot.conf"), "w") as f:
        f.write(FRONT.format(d=st.dir, back=st.port("lmtp"), front=port))
    proc = st._spawn("front", ["dovecot", "-F", "-c", st.path("front", "dovecot.conf")],
                     st.path("log", "front-master.log"))
    st._ready("front", port, proc)
    data = bill("through the front")
    for i in range(2):                  # Postfix's retry after a lost answer
        with smtplib.LMTP("127.0.0.1", port, timeout=30) as c:
            c.ehlo_or_helo_if_needed()
            c.mail("billing@vendor.test")
            c.rcpt(ACME)
            tap.is_(c.data(data)[0], 250, "through Dovecot's lmtp_proxy, delivery %d" % (i + 1))
    ev = events_for(rx, "through the front", count=2, timeout=20)
    tap.is_(len({e[1]["webhook-id"] for e in ev}), 1,
            "the same bytes delivered twice through the proxy: one webhook-id",
            diag=repr([e[1]["webhook-id"] for e in ev]))
    raws = [base64.b64decode(e[2]["data"]["raw_message"]["content_base64"]) for e in ev]
    tap.ok(len(raws) == 2 and all(r == data for r in raws),
           "raw_message is the bytes sent, without the proxy's Received:",
           diag=repr([r[:200] for r in raws]))
    for source, want in (("127.0.0.2", "none"), ("127.0.0.1", "pass")):
        subject = "front from %s" % source
        with smtplib.LMTP("127.0.0.1", port, timeout=30, source_address=(source, 0)) as c:
            c.ehlo_or_helo_if_needed()
            c.mail("billing@vendor.test")
            c.rcpt(ACME)
            code = c.data(bill(subject))[0]
        auth = authentication(rx, subject) if code == 250 else None
        tap.ok(auth is not None and auth["dmarc"] == want,
               "through the proxy from %s: dmarc %s (XCLIENT passed its address)"
               % (source, want), diag="%r %r" % (code, auth))
    # helper-128: a client of the front's stock socket (0666) has no
    # address to pass; it was trusted as the front itself
    got = lmtp_unix(st, 65534, bill("front unix nobody"), st.path("front", "run", "lmtp"))
    auth = authentication(rx, "front unix nobody") if got == "250" else None
    tap.ok(auth is not None and auth["dmarc"] == "none",
           "nobody over the front's UNIX socket: delivered, dmarc none", diag="%r %r" % (got, auth))
    tap.ok(wait_for(lambda: "delivered through a Dovecot LMTP proxy that passed no client "
                    "address" in st.read_log("dovecot"), timeout=5), "and a warning says why")
    # the front not in login_trusted_networks: no XCLIENT, so its clients
    # cannot be told apart; its Received: (an id not ours) says it is one
    path = st.path("dovecot", "dovecot.conf")
    with open(path) as f:
        conf = f.read()
    with open(path, "w") as f:
        f.write(conf.replace("login_trusted_networks = 127.0.0.0/8",
                             "login_trusted_networks = 127.0.0.9"))
    subprocess.run(["doveadm", "-c", path, "reload"], check=True)
    time.sleep(1.5)
    data = bill("front without xclient")
    for i in range(2):                  # the second over TLS: "with LMTPS" (helper-128)
        with smtplib.LMTP("127.0.0.1", port, timeout=30, source_address=("127.0.0.2", 0)) as c:
            c.ehlo_or_helo_if_needed()
            if i == 1:
                c.starttls(context=ssl._create_unverified_context())
                c.ehlo()
            c.mail("billing@vendor.test")
            c.rcpt(ACME)
            tap.is_(c.data(data)[0], 250, "a proxy without XCLIENT, delivery %d" % (i + 1))
    ev = events_for(rx, "front without xclient", count=2, timeout=20)
    auths = [e[2]["data"]["authentication"]["dmarc"] for e in ev]
    tap.is_(auths, ["none", "none"], "its client's forged dmarc=pass counts for nothing, "
            "also after STARTTLS")
    tap.ok(len({e[1]["webhook-id"] for e in ev}) == 1 and all(
        base64.b64decode(e[2]["data"]["raw_message"]["content_base64"]) == data for e in ev),
        "one webhook-id, raw_message the bytes sent", diag=repr([e[1] for e in ev]))
    tap.ok("delivered through a Dovecot LMTP proxy that did not pass its client's address"
           in st.read_log("dovecot"), "lmtp logs why")
    with open(path, "w") as f:
        f.write(conf)
    subprocess.run(["doveadm", "-c", path, "reload"], check=True)
    time.sleep(1.5)


def main():
    rx = Receiver()
    with Stack("webhook-lmtp-clients") as st:
        tap.stack = st
        st.users[ACME] = "pw"
        os.makedirs(st.path("spool"))
        shutil.chown(st.path("spool"), "nobody", "nogroup")
        with open(st.path("global.secret"), "w") as f:
            f.write(make_secret(os.urandom(32)) + "\n")
        with open(st.path("spool.conf"), "w") as f:
            f.write("spool_dir = %s\nsecret_file = %s\ntimeout = 5s\n"
                    % (st.path("spool"), st.path("global.secret")))
        st.start_dovecot(
            lmtp_plugins="lmtp_webhook",
            plugin_settings={
                "lmtp_webhook_route": "bills@*.planapulse.app http://127.0.0.1:%d/ws/{1} "
                                      "raw_message=yes" % rx.port,
                "lmtp_webhook_trusted_networks": "127.0.0.1",
                "lmtp_webhook_spool_dir": st.path("spool"),
                "lmtp_webhook_trusted_authserv_id": TRUSTED},
            extra="mail_plugin_dir = %s\nlogin_trusted_networks = 127.0.0.0/8\n" % PLUGIN_DIR)
        Runner(st).start()

        got = lmtp_from(st, "127.0.0.2", bill("from a stranger"))
        tap.is_(got[0], 250, "LMTP from 127.0.0.2 (not listed): delivered", diag=str(got))
        auth = authentication(rx, "from a stranger")
        tap.ok(auth is not None and auth["dmarc"] == "none" and auth["spf"]["result"] == "none"
               and not auth.get("content_signed") and not [
                   d for d in auth.get("dkim") or [] if d.get("result") == "pass"],
               "its forged dmarc=pass under our id counts for nothing: every result none",
               diag=repr(auth))
        tap.ok(wait_for(lambda: "LMTP client 127.0.0.2 is not in lmtp_webhook_trusted_networks"
                        in st.read_log("dovecot"), timeout=5),
               "lmtp logs a warning naming the client", diag=st.read_log("dovecot")[-800:])
        got = lmtp_from(st, "127.0.0.1", bill("from postfix"))
        tap.is_(got[0], 250, "LMTP from 127.0.0.1 (listed): delivered", diag=str(got))
        auth = authentication(rx, "from postfix")
        tap.ok(auth is not None and auth["dmarc"] == "pass",
               "the listed client's header (what its milter wrote) is trusted: dmarc pass",
               diag=repr(auth))

        for source, claim, want in (("127.0.0.2", "127.0.0.1", "none"),
                                    ("127.0.0.1", "127.0.0.1", "pass"),
                                    ("127.0.0.1", "10.9.9.9", "none")):
            subject = "xclient %s as %s" % (source, claim)
            got = lmtp_from(st, source, bill(subject), xclient=claim)
            auth = authentication(rx, subject) if got[0] == 250 else None
            tap.ok(got[0] == 250 and auth is not None and auth["dmarc"] == want
                   and (want == "pass" or not [d for d in auth.get("dkim") or []
                                               if d.get("result") == "pass"]),
                   "LMTP from %s, XCLIENT ADDR=%s: delivered, dmarc %s" % (source, claim, want),
                   diag="%r %r" % (got, auth))
        tap.ok(wait_for(lambda: "LMTP connection from 127.0.0.2 (XCLIENT ADDR=127.0.0.1) is "
                        "not in lmtp_webhook_trusted_networks" in st.read_log("dovecot"),
                        timeout=5),
               "the warning names the connection's address and the claimed one",
               diag=st.read_log("dovecot")[-800:])

        test_unix_socket(st, rx)
        test_proxy_front(st, rx)

        dovecot_reload(st, None)
        tap.is_(lmtp_from(st, "127.0.0.2", bill("default stranger"))[0], 250,
                "default (127.0.0.0/8 ::1): 127.0.0.2 delivered")
        auth = authentication(rx, "default stranger")
        tap.ok(auth is not None and auth["dmarc"] == "pass",
               "and trusted: a loopback client is the MTA by default", diag=repr(auth))

        for bad in ("127.0.0.1/33", "banana", "10.0.0.0/8, nope", "127.0.0.1/24",
                    "127.0.0.1/0", "::1/0", '""', ""):
            dovecot_reload(st, bad)
            seen = st.read_log("dovecot").count("lmtp_webhook_trusted_networks: ")
            got = lmtp_from(st, "127.0.0.1", bill("bad value " + bad))
            tap.is_(got[0], 451, "trusted_networks = %r: the routed recipient is tempfailed"
                    % bad, diag=str(got))
            tap.ok(wait_for(lambda: st.read_log("dovecot").count(
                "lmtp_webhook_trusted_networks: ") > seen, timeout=5),
                "the error names the setting")
        tap.is_(len(st.maildir_messages(ACME)), 16, "nothing saved while the value was bad "
                "(16 mails from before)")
        dovecot_reload(st, "127.0.0.1, ::1")
        tap.is_(lmtp_from(st, "127.0.0.1", bill("fixed"))[0], 250, "fixed: delivered")
        tap.ok(authentication(rx, "fixed") is not None, "and its event posted")
    rx.stop()
    sys.exit(tap.done())


if __name__ == "__main__":
    main()
