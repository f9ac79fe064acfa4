#!/usr/bin/python3
"""Every fenced block in doc/guides/*.md is checked by what it is:
main.cf with postconf (no warnings, e.g. no unused parameter), master.cf
with postconf -M/-P, docker-mailserver's postfix-master.cf lines applied
with postconf -P, dovecot.conf with doveconf, haproxy.cfg with haproxy -c,
mxkit configurations with the daemon's own -t (KeyTable and SigningTable
blocks of the same guide materialised, with real keys), and the webhook
consumers' handle() in Python, Node (with the npm reference library
standardwebhooks) and Go run against requests signed by
lmtp-webhook-spool: two signatures (a route's secret rotating), one
(the global secret), another route's secret, a tampered body, stale
timestamps, hostile headers (none may throw); accept only a DMARC pass
from a known vendor domain (not a lookalike) with content_signed true and
a To:/Cc: naming the workspace's bills address (not in a display name
or a comment), the same answer for a webhook-id seen before."""

import glob
import json
import os
import re
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from mxtest import build_path, run, src_path, tap  # noqa: E402
from mxwebhook import Receiver, make_secret, run_consumer, sign  # noqa: E402

BLOCK = re.compile(r"^```([^\n`]*)\n(.*?)^```[ \t]*$", re.M | re.S)
KNOWN = {"yaml", "main.cf", "master.cf", "dms-postfix-master.cf", "dovecot.conf", "haproxy.cfg",
         "milter-dkim.conf", "policyd-ratelimit.conf", "proxyv2-shim.conf",
         "lmtp-webhook-spool.conf", "KeyTable", "SigningTable", "python", "javascript", "go",
         "sh", "dns"}
DAEMONS = {"milter-dkim.conf": build_path("milter-dkim", "milter-dkim"),
           "policyd-ratelimit.conf": build_path("policyd-ratelimit", "policyd-ratelimit"),
           "proxyv2-shim.conf": build_path("proxyv2-shim", "proxyv2-shim"),
           "lmtp-webhook-spool.conf": build_path("lmtp-webhook", "lmtp-webhook-spool")}
KEYGEN = build_path("milter-dkim", "milter-dkim-keygen")
SPEC = {"secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "headers": {"webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek",
                    "webhook-timestamp": "1614265330",
                    "webhook-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="},
        "body": '{"test": 2432232314}'}


def first_path(text):
    m = re.match(r"#\s*(/\S+)", text)
    return m.group(1) if m else None


class Sandbox:
    """A directory standing in for /: absolute /etc, /var, /run paths in
    snippets are moved under it."""

    def __init__(self, root):
        self.root = root

    def move(self, text):
        return re.sub(r"(?<![\w/.])/(etc|var|run|tmp/docker-mailserver|overrides|mail)/",
                      lambda m: self.root + "/" + m.group(1) + "/", text)

    def write(self, path, text, mode=0o644):
        path = self.move(path)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, mode)
        return path


def check_main_cf(text, tmp, master=None):
    d = tempfile.mkdtemp(dir=tmp)
    with open(os.path.join(d, "main.cf"), "w") as f:
        f.write("compatibility_level = 3.6\n" + text)
    shutil.copy(master or "/usr/share/postfix/master.cf.dist", os.path.join(d, "master.cf"))
    res = run(["postconf", "-c", d, "-n"])
    return res.returncode == 0 and not res.stderr.strip(), res.stderr


def master_base(tmp, text):
    """Debian's master.cf without the services the snippet defines."""
    names = {tuple(line.split()[:2]) for line in text.splitlines()
             if line and not line[0].isspace() and not line.startswith("#")}
    out = []
    skip = False
    with open("/usr/share/postfix/master.cf.dist") as f:
        for line in f:
            if line[:1].strip() and not line.startswith("#"):
                skip = tuple(line.split()[:2]) in names
            if not skip:
                out.append(line)
    d = tempfile.mkdtemp(dir=tmp)
    with open(os.path.join(d, "main.cf"), "w") as f:
        f.write("compatibility_level = 3.6\n")
    with open(os.path.join(d, "master.cf"), "w") as f:
        f.write("".join(out))
    return d


def check_master_cf(text, tmp):
    d = master_base(tmp, text)
    with open(os.path.join(d, "master.cf"), "a") as f:
        f.write(text)
    res = run(["postconf", "-c", d, "-M"])
    res2 = run(["postconf", "-c", d, "-P"])
    return (res.returncode == 0 and res2.returncode == 0 and not res.stderr.strip()
            and not res2.stderr.strip()), res.stderr + res2.stderr


def check_dms_master(text, tmp):
    d = master_base(tmp, "")
    with open(os.path.join(d, "master.cf"), "a") as f:
        f.write("submission inet n - n - - smtpd\n")
    errors = ""
    for line in text.splitlines():
        if line.strip() and not line.startswith("#"):
            res = run(["postconf", "-c", d, "-P", line])
            errors += res.stderr
    res = run(["postconf", "-c", d, "-P"])
    return not errors.strip() and not res.stderr.strip() and "submission/inet/" in res.stdout, \
        errors + res.stderr


DOVECOT_BASE = """\
base_dir = {d}/run
state_dir = {d}/state
log_path = {d}/log
protocols = lmtp imap
mail_location = maildir:~/Maildir
passdb {{
  driver = static
  args = password=x
}}
userdb {{
  driver = static
  args = uid=nobody gid=nogroup home={d}/home/%u
}}
ssl = no
"""


def check_dovecot(text, tmp):
    d = tempfile.mkdtemp(dir=tmp)
    path = os.path.join(d, "dovecot.conf")
    with open(path, "w") as f:
        f.write(DOVECOT_BASE.format(d=d) + text)
    res = run(["doveconf", "-c", path, "-n"])
    return res.returncode == 0 and "rror" not in res.stderr and "arning" not in res.stderr, \
        res.stderr


def check_haproxy(text, tmp):
    path = os.path.join(tempfile.mkdtemp(dir=tmp), "haproxy.cfg")
    with open(path, "w") as f:
        # the test has no DNS: servers start without an address
        f.write("defaults\n    timeout connect 5s\n    timeout client 60s\n"
                "    timeout server 60s\n    default-server init-addr none\n" + text)
    res = run(["haproxy", "-c", "-f", path])
    return res.returncode == 0 and "ALERT" not in res.stderr, res.stdout + res.stderr


def materialise_tables(blocks, box):
    """Write the guide's KeyTable/SigningTable blocks into the sandbox and
    generate each key the KeyTable names."""
    for tag, text in blocks:
        if tag in ("KeyTable", "SigningTable") and first_path(text):
            box.write(first_path(text), box.move(text))
        if tag == "KeyTable":
            for line in text.splitlines():
                f = line.split()
                if len(f) == 2 and not f[0].startswith("#"):
                    domain, selector, key = f[1].split(":", 2)
                    key = box.move(key)
                    os.makedirs(os.path.dirname(key), exist_ok=True)
                    res = run([KEYGEN, "-d", "example.com" if domain == "%" else domain,
                               "-s", selector, "-D", os.path.dirname(key)])
                    made = os.path.join(os.path.dirname(key), selector + ".private")
                    if res.returncode == 0 and made != key:
                        os.rename(made, key)


def check_daemon(tag, text, box):
    text = box.move(text)
    made = {"sender_binding": "svc-billing  *@example.com\n", "secret_file": make_secret() + "\n",
            "store_password_file": "guide-password\n"}
    for name, content in made.items():
        m = re.search(r"^%s\s*=\s*(\S+)" % name, text, re.M)
        if m and not os.path.exists(m.group(1)):     # files an operator makes by hand
            box.write(m.group(1), content)
    # directories under /run come from the systemd unit's RuntimeDirectory=
    for m in re.finditer(r"^(?:socket\s*=\s*unix:|pid_file\s*=\s*)(%s/run/\S+)" % re.escape(box.root),
                         text, re.M):
        os.makedirs(os.path.dirname(m.group(1)), exist_ok=True)
    # the parent of spool_dir (/var/spool, /var/mail-state) is the
    # system's or the container's volume; the spool itself is made at start
    m = re.search(r"^spool_dir\s*=\s*(%s/\S+)" % re.escape(box.root), text, re.M)
    if m:
        os.makedirs(os.path.dirname(m.group(1).rstrip("/")), exist_ok=True)
    path = box.write(os.path.join(box.root, "check", tag), text)
    res = run([DAEMONS[tag], "-t", "-c", path])
    return res.returncode == 0, res.stdout + res.stderr


def event_body(dmarc, from_domain="vendor.example", content_signed=True,
               to="Acme AP <bills@acme.example>", cc=None):
    auth = {"authserv_id": "mx.example.com", "from_domain": from_domain, "dmarc": dmarc,
            "dmarc_policy": None, "content_signed": content_signed, "dkim": [],
            "spf": {"result": "none", "domain": None, "aligned": False}}
    headers = {"from": "billing@" + str(from_domain), "to": to, "cc": cc,
               "subject": "Invoice 42", "date": None, "message_id": None}
    return json.dumps({"type": "message.received", "data": {"text": "caf\u00e9",
                                                            "headers": headers,
                                                            "authentication": auth}},
                      ensure_ascii=False).encode()


def signed_by_spool(tmp):
    """Requests as lmtp-webhook-spool sends them (our C signer), captured:
    one for a route with two secret files (rotation: two signatures), one
    with the global secret."""
    rx = Receiver()
    secrets = {k: make_secret(os.urandom(32)) for k in ("global", "old", "new")}
    spool = os.path.join(tmp, "spool")
    for sub in ("active", "dead", "tmp"):
        os.makedirs(os.path.join(spool, sub))
    for k, secret in secrets.items():
        with open(os.path.join(tmp, k + ".secret"), "w") as f:
            f.write(secret + "\n")
    bodies = {"msg_rotating": event_body("pass"), "msg_global": event_body("fail")}
    for msg_id, body in bodies.items():
        head = {"id": msg_id, "url": "http://127.0.0.1:%d/%s" % (rx.port, msg_id),
                "created": int(time.time()), "attempts": 1, "next_attempt": 0,
                "last_error": None, "body_length": len(body)}
        if msg_id == "msg_rotating":
            head["secret_files"] = [os.path.join(tmp, "old.secret"),
                                    os.path.join(tmp, "new.secret")]
        with open(os.path.join(spool, "active", msg_id), "wb") as f:
            f.write(json.dumps(head).encode() + b"\n" + body)
    conf = os.path.join(tmp, "spool.conf")
    with open(conf, "w") as f:
        f.write("spool_dir = %s\nsecret_file = %s\n" % (spool,
                                                       os.path.join(tmp, "global.secret")))
    run([DAEMONS["lmtp-webhook-spool.conf"], "-c", conf, "flush"])
    rx.stop()
    got = {h.get("webhook-id"): {"headers": {k: v for k, v in h.items()
                                             if k.startswith("webhook-")},
                                 "body": raw.decode()} for _, h, raw in rx.requests}
    if set(got) != set(bodies):
        return None
    return secrets, got


def cases(live):
    """(name, case, wanted decision) for the guide's handle()."""
    secrets, got = live
    rot, glob_ = got["msg_rotating"], got["msg_global"]
    stale_body = event_body("pass")
    stamp = int(time.time()) - 600
    stale = {"headers": {"webhook-id": "msg_stale", "webhook-timestamp": str(stamp),
                         "webhook-signature": sign(secrets["global"], "msg_stale", stamp,
                                                   stale_body)},
             "body": stale_body.decode()}
    out = [
        ("two signatures (rotation), the old secret", dict(rot, secrets=[secrets["old"]]),
         "accept"),
        ("two signatures (rotation), the new secret", dict(rot, secrets=[secrets["new"]]),
         "accept"),
        ("another route's secret", dict(rot, secrets=[secrets["global"]]), "reject"),
        ("body changed", dict(rot, secrets=[secrets["old"]], body=rot["body"] + " "),
         "reject"),
        ("one signature, dmarc fail", dict(glob_, secrets=[secrets["global"]]),
         "quarantine"),
        ("one signature, a consumer with two secrets",
         dict(glob_, secrets=[secrets["new"], secrets["global"]]), "quarantine"),
        ("stale timestamp (10 min)", dict(stale, secrets=[secrets["global"]]), "reject"),
        ("spec vector (2021: stale)", {"headers": SPEC["headers"], "body": SPEC["body"],
                                       "secrets": [SPEC["secret"]]}, "reject"),
    ]
    now = int(time.time())

    def fresh(msg_id, body, secret=secrets["global"], **headers):
        h = {"webhook-id": msg_id, "webhook-timestamp": str(now),
             "webhook-signature": sign(secret, msg_id, now, body)}
        h.update(headers)
        return {"headers": {k: v for k, v in h.items() if v is not None},
                "body": body.decode(), "secrets": [secret]}
    vendor, lookalike = event_body("pass"), event_body("pass", "vendor-billing.example")
    title = fresh("msg_title", vendor)
    title["headers"] = {k.title(): v for k, v in title["headers"].items()}
    out += [
        # DMARC proves the From: domain sent it, not that it is a vendor you pay
        ("dmarc pass from a lookalike domain", fresh("msg_lookalike", lookalike), "quarantine"),
        ("the same event again (a retry or replay)", fresh("msg_lookalike", lookalike),
         "quarantine"),
        ("title-case header names (Flask)", title, "accept"),
        # a Content-Type added over a signature that leaves it unsigned
        ("dmarc pass, content not signed", fresh("msg_unsigned_ct",
                                                 event_body("pass", content_signed=False)),
         "quarantine"),
        # a genuine bill to another customer, sent on to this workspace
        ("dmarc pass, To: another customer", fresh("msg_other_customer", event_body(
            "pass", to="AP <ap@attacker-co.example>")), "quarantine"),
        ("the address only in a quoted display name", fresh("msg_display", event_body(
            "pass", to='"bills@acme.example, x" <ap@attacker-co.example>')), "quarantine"),
        ("the address only in a comment", fresh("msg_comment", event_body(
            "pass", to="ap@attacker-co.example (bills@acme.example)")), "quarantine"),
        # helper-120: one level of comment removed by a regex left the
        # address of an escaped or nested comment outside it
        ("the address in a comment with an escaped parenthesis", fresh(
            "msg_comment_esc", event_body("pass", to="ap@attacker-co.example (Attacker Co\\), "
                                          "bills@acme.example, \\()")), "quarantine"),
        ("the address in a nested comment", fresh("msg_comment_nest", event_body(
            "pass", to="AP <ap@attacker-co.example> (Attacker Co (AP), bills@acme.example, "
            "(x) dept)")), "quarantine"),
        ("the address beside a quoted name with an escaped quote and a comment", fresh(
            "msg_quote_esc", event_body("pass", to='"Acme \\" (x" <bills@acme.example> (y)')),
         "accept"),
        ("no To:", fresh("msg_no_to", event_body("pass", to=None)), "quarantine"),
        ("the address in Cc:, bare, upper case", fresh("msg_cc", event_body(
            "pass", to="ap@attacker-co.example", cc="x@y.example, BILLS@acme.example")),
         "accept"),
        ("a non-ASCII signature", fresh("msg_nonascii", vendor,
                                        **{"webhook-signature": "v1,\u00e9\u00e9"}), "reject"),
        ("a timestamp that is no number", fresh("msg_nonnumeric", vendor,
                                                **{"webhook-timestamp": "abc"}), "reject"),
        ("no webhook-signature", fresh("msg_nosig", vendor,
                                       **{"webhook-signature": None}), "reject"),
        ("a malformed secret before the right one",
         dict(fresh("msg_badsecret", vendor), secrets=["whsec_!!notbase64", secrets["global"]]),
         "accept"),
    ]
    return out


def check_consumers(lang, code, tmp, live):
    if live is None:
        return False, "lmtp-webhook-spool sent no requests to check against"
    vectors = cases(live)
    want = [w for _, _, w in vectors]
    got = run_consumer(lang, code, [c for _, c, _ in vectors], tmp)
    return got == want, "got %r want %r for %s" % (got, want, [n for n, _, _ in vectors])


CONTRIB = re.compile(r"#\s*(?:\S+\s+from\s+)?(contrib/[\w./-]+)(?:\s+\(([\w.-]+)\))?")


def check_contrib(text):
    """A block whose first line names a file under contrib/ ("# contrib/F",
    "# /etc/x from contrib/F", or "# contrib/F.yaml (KEY)" for a
    ConfigMap's data key) must be what
    that file holds: the container tests deploy those files, so the guide
    shows what was tested. None when the block names no such file."""
    first, _, body = text.partition("\n")
    m = CONTRIB.match(first)
    if not m:
        return None
    path = src_path(*m.group(1).split("/"))
    try:
        with open(path) as f:
            content = f.read()
    except OSError as e:
        return False, str(e)
    if m.group(2) and path.endswith(".yaml"):
        import yaml
        data = {}
        for doc in yaml.safe_load_all(content):
            if doc and doc.get("kind") == "ConfigMap":
                data.update(doc.get("data") or {})
        if m.group(2) not in data:
            return False, "%s has no ConfigMap key %s" % (m.group(1), m.group(2))
        content = data[m.group(2)]
    if not body.strip():
        return False, "empty block"
    whole = text if not m.group(2) and content.startswith(first) else body
    return whole in content, "not found verbatim in %s%s" % (
        m.group(1), " (%s)" % m.group(2) if m.group(2) else "")


def main():
    guides = sorted(glob.glob(src_path("doc", "guides", "*.md")))
    tap.ok(len(guides) >= 8, "%d guides" % len(guides))
    with tempfile.TemporaryDirectory() as tmp:
        live = signed_by_spool(tmp)
        tap.ok(live is not None, "lmtp-webhook-spool produced signed requests for the "
               "consumer checks (one with two signatures)")
        for guide in guides:
            name = os.path.basename(guide)
            with open(guide) as f:
                blocks = [(m.group(1).strip(), m.group(2)) for m in BLOCK.finditer(f.read())]
            box = Sandbox(tempfile.mkdtemp(dir=tmp))
            materialise_tables(blocks, box)
            for i, (tag, text) in enumerate(blocks, 1):
                label = "%s block %d (%s)" % (name, i, tag or "untagged")
                same = check_contrib(text)
                if same is not None:
                    tap.ok(same[0], label + ": the same as the contrib/ file the container "
                           "tests deploy", diag=same[1])
                if tag not in KNOWN:
                    tap.ok(False, label + ": tagged with what it is", diag="tag %r" % tag)
                elif tag == "main.cf":
                    good, err = check_main_cf(text, tmp)
                    tap.ok(good, label + ": postconf -n without a warning", diag=err)
                elif tag == "master.cf":
                    good, err = check_master_cf(text, tmp)
                    tap.ok(good, label + ": postconf -M/-P accept it", diag=err)
                elif tag == "dms-postfix-master.cf":
                    good, err = check_dms_master(text, tmp)
                    tap.ok(good, label + ": applied with postconf -P", diag=err)
                elif tag == "dovecot.conf":
                    good, err = check_dovecot(text, tmp)
                    tap.ok(good, label + ": doveconf -n accepts it", diag=err)
                elif tag == "haproxy.cfg":
                    good, err = check_haproxy(text, tmp)
                    tap.ok(good, label + ": haproxy -c accepts it", diag=err)
                elif tag in DAEMONS:
                    good, err = check_daemon(tag, text, box)
                    tap.ok(good, label + ": %s -t accepts it"
                           % os.path.basename(DAEMONS[tag]), diag=err)
                elif tag == "yaml":
                    import yaml
                    try:
                        docs = list(yaml.safe_load_all(text))
                        good, err = bool(docs), ""
                    except yaml.YAMLError as e:
                        good, err = False, str(e)
                    tap.ok(good, label + ": YAML that parses", diag=err)
                elif tag in ("python", "javascript", "go"):
                    good, err = check_consumers(tag, text, tmp, live)
                    tap.ok(good, label + ": handle() accepts, quarantines and rejects as it must",
                           diag=err)
    return tap.done()


sys.exit(main())
