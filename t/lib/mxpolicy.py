"""mxpolicy - helpers for policyd-ratelimit integration tests: write a
configuration, start the daemon under a Stack, wire it into a Postfix
submission service, and drive SMTP transactions with Python's smtplib.

Postfix restriction lists used (the ones doc/policyd-ratelimit.md
recommends): the policy service is the last entry of
smtpd_recipient_restrictions (so recipients Postfix refuses anyway never
reach it), and the only entry of smtpd_data_restrictions and
smtpd_end_of_data_restrictions.
"""

import signal
import smtplib
import subprocess

from mxtest import build_path, wait_for

POLICYD = build_path("policyd-ratelimit", "policyd-ratelimit")


def write_config(st, name, body):
    """NAME.conf, with {port} replaced by NAME's port: -t parses every
    listen address as start-up does, so a template's {port} is an error"""
    path = st.path("etc", name + ".conf")
    with open(path, "w") as f:
        f.write(body.replace("{port}", str(st.port(name))))
    return path


def start_policyd(st, name, body):
    """Write NAME.conf (with {port} replaced by NAME's port) and start
    policyd-ratelimit in the foreground; returns (proc, port, config path)."""
    port = st.port(name)
    path = write_config(st, name, body.replace("{port}", str(port)))
    proc = st.start_daemon(name, [POLICYD, "-f", "-c", path], port=port)
    return proc, port, path


def restrictions(port, rcpt_before="", extra=None):
    """-o options for a Postfix smtpd service using the policy service."""
    svc = "check_policy_service inet:127.0.0.1:%d" % port
    opts = {
        "smtpd_recipient_restrictions": (rcpt_before + ", " if rcpt_before else "") + svc,
        "smtpd_data_restrictions": svc,
        "smtpd_end_of_data_restrictions": svc,
    }
    opts.update(extra or {})
    return opts


def hup(proc, st, name, count):
    """SIGHUP and wait for the count-th 'configuration reloaded' line."""
    proc.send_signal(signal.SIGHUP)
    return wait_for(lambda: st.read_log(name).count("configuration reloaded") >= count)


def login(st, user, service="postfix-submission"):
    s = smtplib.SMTP("127.0.0.1", st.port(service), timeout=30)
    s.ehlo("client.mxkit.test")
    if user:
        s.login(user, st.users[user])
    return s


def message(sender, rcpt, subject, body_bytes=0):
    body = "x" * 76 + "\r\n"
    lines = body * (body_bytes // len(body) + 1) if body_bytes else "hello\r\n"
    return ("From: %s\r\nTo: %s\r\nSubject: %s\r\n\r\n%s" % (sender, rcpt, subject,
                                                             lines)).encode()


def transaction(s, sender, rcpts, data=None, mail_options=()):
    """MAIL, RCPT for each, then DATA when a recipient was accepted (else
    RSET). Returns (list of (code, text) per RCPT, (code, text) of DATA or
    None)."""
    code, text = s.mail(sender, list(mail_options))
    if code != 250:
        return [], (code, text.decode(errors="replace"))
    results = []
    for r in rcpts:
        c, t = s.rcpt(r)
        results.append((c, t.decode(errors="replace")))
    if not any(c == 250 for c, _ in results):
        s.rset()
        return results, None
    if data is None:
        data = message(sender, rcpts[0], "test")
    try:
        c, t = s.data(data)
    except smtplib.SMTPDataError as e:
        c, t = e.smtp_code, e.smtp_error
    if c != 250:            # Postfix keeps the transaction after a refused
        s.rset()            # end of DATA; real clients reset, as we do
    return results, (c, t.decode(errors="replace") if isinstance(t, bytes) else t)


def policy_connections(port):
    """Established TCP connections to the policy port, as a set of peers."""
    res = subprocess.run(["ss", "-Htn", "state", "established", "( sport = :%d )" % port],
                         capture_output=True, text=True)
    peers = set()
    for line in res.stdout.splitlines():
        fields = line.split()
        if len(fields) >= 4:
            peers.add(fields[-1])
    return peers


def policy_request(sock_file, attrs):
    """Send one request on a file made from a socket; returns the reply
    lines (without the blank line) or None on EOF."""
    for k, v in attrs.items():
        sock_file.write(("%s=%s\n" % (k, v)).encode())
    sock_file.write(b"\n")
    sock_file.flush()
    lines = []
    while True:
        line = sock_file.readline()
        if not line:
            return None
        if line == b"\n":
            return lines
        lines.append(line.decode().rstrip("\n"))


def resp_commands(buf):
    """Complete RESP arrays (Redis commands) at the start of buf: (list of
    argv, the rest), for the tests' stand-ins of broken Redis servers."""
    out = []
    while buf.startswith(b"*") and b"\r\n" in buf:
        end = buf.index(b"\r\n")
        n, pos, argv = int(buf[1:end]), end + 2, []
        for _ in range(n):
            if b"\r\n" not in buf[pos:]:
                return out, buf
            e = buf.index(b"\r\n", pos)
            ln = int(buf[pos + 1:e])
            if len(buf) < e + 2 + ln + 2:
                return out, buf
            argv.append(buf[e + 2:e + 2 + ln])
            pos = e + 2 + ln + 2
        out.append(argv)
        buf = buf[pos:]
    return out, buf
