#!/usr/bin/python3
# mxkit-test: alone (podman: pods played from contrib/)
"""contrib/compose/ (mxkit next to Mailu) brought up with podman-compose:
milter-dkim, policyd-ratelimit and their Redis (password from a Compose
secret) from the mxkit image; a Debian Postfix + Dovecot container (the
container test's stand-in, t/container/) takes contrib/compose's
overrides/postfix/postfix.cf as its main.cf lines. Mail submitted to it
is signed (RSA and Ed25519, dkimpy verifies both), and the message that
takes a credential past 30 recipients a minute is deferred (4xx).

The overlay (host networking on a shared machine): every service gets
network_mode host (run through t/container/podman-hostnet: podman-compose
1.0.3 adds a bridge network to host-network containers), ports become
free loopback ports, service names
127.0.0.1, images the local ones; Mailu's antispam milter (Rspamd, not
part of this test) is dropped from smtpd_milters. Nothing else changes."""

import os
import re
import secrets
import shutil
import smtplib
import subprocess
import sys
import time
import urllib.request
from email.message import EmailMessage

import dkim
import yaml

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from mxstack import Stack, free_port, wait_port  # noqa: E402
from mxtest import src_path, tap, wait_for  # noqa: E402
import mxcontainer as mc  # noqa: E402
import mxdkim  # noqa: E402

T0 = time.monotonic()
COMPOSE = src_path("contrib", "compose")
PORTS = (8891, 10031, 9101, 9102, 6379)
PASSWORD = "C0mpose-" + secrets.token_hex(4)
HOSTNET = src_path("t", "container", "podman-hostnet")
ACCOUNTS = {"svc-billing@planapulse.ai": "billing-pw", "bills@acme.planapulse.app": "bills-pw"}


def log(text):
    tap.diag("[%4.0fs] %s" % (time.monotonic() - T0, text))


def compose(d, *args):
    return subprocess.run(["podman-compose", "--podman-path", HOSTNET, "-p", "mxkittest", "-f",
                           os.path.join(d, "docker-compose.override.yml")] + list(args),
                          capture_output=True, text=True, env=mc.ENV, timeout=600, cwd=d)


def text_sub(s, ports):
    s = mc.port_sub(s, ports).replace("0.0.0.0", "127.0.0.1")
    for name in ("mxkit-redis", "milter-dkim", "policyd-ratelimit"):
        s = s.replace("//%s:" % name, "//127.0.0.1:").replace("inet:%s:" % name,
                                                               "inet:127.0.0.1:")
    return s


def project(st, ports, dns):
    """contrib/compose/ copied and overlaid; the secrets generated."""
    d = st.path("compose")
    shutil.copytree(COMPOSE, d)
    os.chmod(d, 0o755)
    sec = os.path.join(d, "mxkit", "secrets")
    os.makedirs(sec)
    for sel, kind in (("rsa2026", "rsa"), ("ed2026", "ed25519")):
        path, _ = mxdkim.keygen(st, dns, "planapulse.ai", sel, kind)
        shutil.copy(path, sec)
    with open(os.path.join(sec, "redis-password"), "w") as f:
        f.write(PASSWORD + "\n")
    with open(os.path.join(sec, "redis.conf"), "w") as f:
        f.write("requirepass %s\n" % PASSWORD)
    for root, dirs, files in os.walk(d):
        for name in dirs:
            os.chmod(os.path.join(root, name), 0o755)
        for name in files:              # the containers' users read them
            os.chmod(os.path.join(root, name), 0o644)
            if root == sec:             # secrets: only their reader (uid 10001, Redis 999)
                os.chown(os.path.join(root, name), 999 if name == "redis.conf" else 10001, 0)
                os.chmod(os.path.join(root, name), 0o400)
            elif root.endswith("mxkit") and not name.endswith(".yml"):
                path = os.path.join(root, name)
                with open(path) as f:
                    text = f.read()
                with open(path, "w") as f:
                    f.write(text_sub(text, ports))
    path = os.path.join(d, "docker-compose.override.yml")
    with open(path) as f:
        doc = yaml.safe_load(f)
    images = {"mxkit:latest": mc.MXKIT, "redis:7.0-bookworm": mc.REDIS}
    for name in [n for n, svc in doc["services"].items() if "image" not in svc]:
        del doc["services"][name]       # Mailu's own (front, smtp pinned): not here
    for name, svc in doc["services"].items():
        svc["image"] = images[svc["image"]]
        svc["network_mode"] = "host"
        svc.pop("depends_on", None)
        svc["command"] = [str(ports.get(int(a), a)) if a.isdigit() else a
                          for a in svc["command"]]
        if name == "mxkit-redis":
            svc["command"] += ["--bind", "127.0.0.1"]
    with open(path, "w") as f:
        yaml.safe_dump(doc, f, sort_keys=False)
    return d


def mailserver(st, ports):
    """The stand-in Postfix with contrib/compose's postfix.cf."""
    cfg = st.path("mailserver-config")
    os.makedirs(cfg)
    with open(os.path.join(COMPOSE, "overrides", "postfix", "postfix.cf")) as f:
        main = text_sub(f.read(), ports)
    main = main.replace("inet:antispam:11332, ", "")
    with open(os.path.join(cfg, "postfix-main.cf"), "w") as f:
        f.write(main)
    with open(os.path.join(cfg, "postfix-accounts.cf"), "w") as f:
        f.write("".join("%s|{PLAIN}%s\n" % kv for kv in ACCOUNTS.items()))
    os.chmod(cfg, 0o755)
    smtp, sub = free_port(), free_port()
    name = "mxkittest-mailserver"
    mc.podman("rm", "-f", name)
    res = mc.podman("run", "-d", "--name", name, "--network", "host",
                    "-e", "SMTP_PORT=%d" % smtp, "-e", "SUBMISSION_PORT=%d" % sub,
                    "-e", "RELAYHOST=[127.0.0.1]:%d" % st.ports["sink"],
                    "-v", "%s:/tmp/docker-mailserver:ro" % cfg, mc.MAILSERVER)
    if res.returncode != 0 or not wait_port(sub, timeout=60):
        raise RuntimeError("stand-in mailserver: %s%s" % (res.stderr, mc.logs(name)))
    return name, sub


def readyz(port):
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d/readyz" % port, timeout=5) as r:
            return r.status == 200
    except OSError:
        return False


def send(port, rcpts, subject):
    s = smtplib.SMTP("127.0.0.1", port, timeout=30)
    s.ehlo("laptop.planapulse.ai")
    s.login("svc-billing@planapulse.ai", ACCOUNTS["svc-billing@planapulse.ai"])
    m = EmailMessage()
    m["From"] = "noreply@planapulse.ai"
    m["To"] = rcpts[0]
    m["Subject"] = subject
    m["Message-ID"] = "<%s@planapulse.ai>" % secrets.token_hex(8)
    m.set_content("compose\n")
    try:
        s.sendmail("noreply@planapulse.ai", rcpts, m.as_bytes())
        out = ("sent", None)
    except smtplib.SMTPDataError as e:
        out = ("data", (e.smtp_code, e.smtp_error))
    except smtplib.SMTPException as e:
        out = ("error", str(e))
    s.quit()
    return out


def check_grace():
    """Compose's default stop grace (10 s) is shorter than drain_timeout's
    default (25 s): each mxkit daemon must be given at least 30 s, or a
    stop SIGKILLs a drain and tempfails what it held."""
    with open(os.path.join(COMPOSE, "docker-compose.override.yml")) as f:
        doc = yaml.safe_load(f)
    short = {}
    for name, svc in doc["services"].items():
        if svc.get("image") != "mxkit:latest":
            continue
        m = re.fullmatch(r"(\d+)s", str(svc.get("stop_grace_period", "")))
        if not m or int(m.group(1)) < 30:
            short[name] = svc.get("stop_grace_period")
    tap.is_(short, {}, "every mxkit service has stop_grace_period >= 30s (drain_timeout 25s)")


def day_counters(ports):
    """policyd-ratelimit's 500/1d state in Redis: key -> value"""
    def cli(*args):
        return subprocess.run(["redis-cli", "-p", str(ports[6379]), "--no-auth-warning", "-a",
                               PASSWORD] + list(args), capture_output=True,
                              text=True).stdout
    keys = sorted(k for k in cli("--scan", "--pattern", "mxrl:*").split()
                  if k.endswith(":86400000"))
    return {k: cli("GET", k).strip() for k in keys}


def test_redis_restart(ports):
    """the shipped Redis keeps its append-only file on a volume: a
    restart refills no budget (helper-122: it ran with no persistence)"""
    kept = day_counters(ports)
    names = [n for n in mc.podman("ps", "--format", "{{.Names}}").stdout.split()
             if "mxkit-redis" in n]
    res = mc.podman("restart", "-t", "5", *names)
    back = wait_for(lambda: day_counters(ports) != {}, timeout=30)
    after = day_counters(ports)
    tap.ok(names and res.returncode == 0 and back and kept and after == kept,
           "Redis restarted (%s): policyd-ratelimit's daily counters kept, values equal "
           "(%d keys)" % (names, len(kept)),
           diag="%r\nbefore %r\nafter %r" % (res.stderr, kept, after))


def main():
    check_grace()
    with Stack("compose") as st:
        tap.stack = st
        st.start_sink()
        mc.ensure_base(log)
        mc.build("contrib/container/Containerfile", mc.MXKIT, log=log)
        mc.build("t/container/mailserver.Containerfile", mc.MAILSERVER, log=log)
        mc.build("t/container/redis.Containerfile", mc.REDIS, src_path("t", "container"),
                 log=log)
        ports = {p: free_port() for p in PORTS}
        dns = mxdkim.Dns(st.path("etc", "dns.txt"))
        d = project(st, ports, dns)
        compose(d, "down", "-v")        # -v: a Redis volume of an earlier run
        name = None
        try:
            res = compose(d, "up", "-d")
            up = wait_for(lambda: all(wait_port(ports[p], timeout=0.2) for p in (9101, 9102)),
                          timeout=60)
            tap.ok(res.returncode == 0 and up, "podman-compose up: milter-dkim, "
                   "policyd-ratelimit and Redis from contrib/compose", diag=res.stdout[-2000:]
                   + res.stderr[-2000:])
            ready = wait_for(lambda: all(readyz(ports[p]) for p in (9101, 9102)), timeout=30)
            tap.ok(ready, "both ready (/readyz); policyd-ratelimit has reached Redis with "
                   "the secret's password")
            name, sub = mailserver(st, ports)
            log("stand-in Postfix up")
            first = send(sub, ["ops@example.net"], "signed through compose")
            tap.is_(first, ("sent", None), "submitted to the stand-in Postfix")
            ok = wait_for(lambda: len(st.sink_messages()) == 1, timeout=30)
            msgs = st.sink_messages()
            raw = mxdkim.crlf(mxdkim.strip_sink_headers(msgs[0])) if msgs else b""
            n = len(re.findall(rb"^DKIM-Signature:", raw, re.M))
            results = [dkim.DKIM(raw).verify(idx=i, dnsfunc=dns.dnsfunc) for i in range(n)]
            algos = sorted(a.decode() for a in re.findall(rb"\ba=([\w-]+);", raw))
            tap.ok(ok and results == [True, True] and algos == ["ed25519-sha256",
                                                                  "rsa-sha256"],
                   "signed by milter-dkim with RSA and Ed25519; dkimpy verifies both",
                   diag="%r %r\n%s" % (results, algos, mc.logs(name)[-2000:]))
            second = send(sub, ["r%d@example.net" % i for i in range(30)], "over the limit")
            tap.ok(second[0] == "data" and 400 <= second[1][0] < 500
                   and b"Rate limit per_user" in second[1][1],
                   "the message taking the credential to 31 recipients a minute is "
                   "deferred (%s)" % (second,), diag=mc.logs(name)[-1500:])
            time.sleep(1)
            tap.is_(len(st.sink_messages()), 1, "and not relayed")
            test_redis_restart(ports)
        finally:
            if name:
                for line in mc.logs(name).splitlines()[-40:]:
                    st.out.write("#   %s\n" % line)
                mc.podman("rm", "-f", name)
            res = compose(d, "down", "-v")
            mc.podman("network", "rm", "-f", "mxkittest_default")  # podman-compose makes it
        log("compose test took %.0f s" % (time.monotonic() - T0))
    return tap.done()


sys.exit(main())
