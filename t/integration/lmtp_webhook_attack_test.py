#!/usr/bin/python3
"""lmtp-webhook from an outside attacker's and an unlucky operator's side:
breaks that the other lmtp_webhook tests do not cover. Real Postfix ->
Dovecot LMTP with the plugin -> lmtp-webhook-spool run -> a real HTTP
receiver (t/lib/mxwebhook.py).

- An operator's "drop" while the runner's attempt is in the receiver's
  hands: a failed attempt must not bring the dropped event back.
- The runner stopped for longer than dead_letter_after: each waiting
  event still gets its attempt (it must not go to dead/ unposted).
"""

import hashlib
import json
import os
import re
import shutil
import smtplib
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from mxstack import Stack  # noqa: E402
from mxtest import build_path, run, tap, wait_for  # noqa: E402
from mxwebhook import (RawServer, Receiver, Runner, Script, bill, make_secret,  # noqa: E402
                       requests_for, verify)
from mxwebhook import lmtp_send as lmtp_transaction  # noqa: E402

SPOOL_TOOL = build_path("lmtp-webhook", "lmtp-webhook-spool")
PLUGIN_DIR = build_path("lmtp-webhook", ".libs")
SECRET = make_secret()
BILLS = "bills@acme.planapulse.app"
PAY = "pay@acme.planapulse.app"
STREAM = "stream@acme.planapulse.app"


def lmtp_send(st, rcpts, data):
    """{rcpt: (code, text)} of the recipients not given 250."""
    return lmtp_transaction(st, rcpts, data)[0]


SCRIPT = Script()
ANSWERS = SCRIPT.answers    # subject -> planned answers
SEEN = SCRIPT.seen          # subject -> [time.time() of each request]
responder = SCRIPT


def spool_dir_list(st, sub):
    d = st.path("spool", sub)
    return sorted(os.listdir(d)) if os.path.isdir(d) else []


def run_tool(st, *args):
    return run([SPOOL_TOOL, "-c", st.path("spool.conf")] + list(args), timeout=30)


def write_conf(st, **extra):
    conf = {"spool_dir": st.path("spool"), "secret_file": st.path("secret"), "timeout": "5s"}
    conf.update(extra)
    with open(st.path("spool.conf"), "w") as f:
        for k, v in conf.items():
            f.write("%s = %s\n" % (k, v))


def test_drop_in_flight(st, rx, runner):
    """The operator drops an event while the runner's attempt hangs in the
    receiver; the receiver then answers 500. The drop must stick."""
    s = "dropped while in flight"
    ANSWERS[s] = [(500, 3, {}), 200]
    tap.is_(lmtp_send(st, [BILLS], bill(BILLS, s)), {}, "drop in flight: LMTP 250")
    tap.ok(wait_for(lambda: SEEN.get(s), timeout=5), "the attempt reached the receiver")
    ids = spool_dir_list(st, "active")
    tap.is_(len(ids), 1, "one event in active/")
    res = run_tool(st, "drop", ids[0])
    tap.is_(res.returncode, 0, "lmtp-webhook-spool drop succeeds", diag=res.stderr)
    mark = len(runner.log())
    tap.ok(wait_for(lambda: "HTTP status 500" in runner.log()[mark:] or
                    "dropped meanwhile" in runner.log()[mark:], timeout=10),
           "the receiver answered 500 to the attempt under way", diag=runner.log()[-800:])
    tap.ok(wait_for(lambda: "dropped meanwhile, not retried" in runner.log()[mark:], timeout=5),
           "the runner says the failed attempt's event was dropped meanwhile",
           diag=runner.log()[-800:])
    time.sleep(7)                       # a resurrected event is retried after ~5 s
    tap.is_(spool_dir_list(st, "active"), [], "the dropped event stays dropped (not in active/)")
    tap.is_(len(SEEN.get(s, [])), 1, "and is not posted again", diag=runner.log()[-800:])
    tap.is_([n for n in spool_dir_list(st, "tmp") if not n.startswith("free.")
             and ".%d." % runner.proc.pid in n], [],
            "the runner left no file of its own in tmp/")


def test_dead_letter_bound(st, rx, runner):
    """dead_letter_after = 10s (the least taken) and a receiver that always
    answers 500: the event is tried, then moves to dead/ with the bytes it
    was posted with;
    "retry" brings it back and it is posted (not dead-lettered again at
    once for its age), with the same id and bytes."""
    runner.stop()
    write_conf(st, dead_letter_after="10s")
    runner.start()
    s = "dead letter bound"
    ANSWERS[s] = [500]
    tap.is_(lmtp_send(st, [BILLS], bill(BILLS, s)), {}, "dead letter: LMTP 250")
    ids = spool_dir_list(st, "active")
    tap.ok(wait_for(lambda: spool_dir_list(st, "dead") == ids, timeout=20),
           "the failing event moves to dead/", diag=runner.log()[-800:])
    tap.ok(wait_for(lambda: "dead-lettered after 1 attempts" in runner.log()
                    or "dead-lettered after 2 attempts" in runner.log(), timeout=5),
           "after its attempts (logged)", diag=runner.log()[-800:])
    posted = requests_for(rx, s)
    tap.ok(len(posted) in (1, 2), "posted %d time(s) before giving up" % len(posted))
    with open(st.path("spool", "dead", ids[0]), "rb") as f:
        tap.is_(f.read().split(b"\n", 1)[1], posted[0][3], "dead/ keeps the posted bytes")
    ANSWERS[s] = [200]
    time.sleep(1)
    res = run_tool(st, "retry", ids[0])
    tap.is_(res.returncode, 0, "retry of the dead event succeeds", diag=res.stderr)
    tap.ok(wait_for(lambda: len(requests_for(rx, s)) == len(posted) + 1, timeout=10),
           "retried: posted again", diag=runner.log()[-800:])
    got = requests_for(rx, s)[-1]
    tap.is_((got[1]["webhook-id"], got[3]), (ids[0], posted[0][3]),
            "with the same id and bytes")
    tap.ok(wait_for(lambda: not spool_dir_list(st, "active") and
                    not spool_dir_list(st, "dead"), timeout=10),
           "and gone from the spool once delivered",
           diag=str((spool_dir_list(st, "active"), spool_dir_list(st, "dead"))))
    runner.stop()
    write_conf(st)
    runner.start()


def test_dead_letter_unposted(st, rx, runner):
    """dead_letter_after = 10s, the runner stopped for 12 s: the events that
    waited get their first attempt when it starts again."""
    runner.stop()
    write_conf(st, dead_letter_after="10s")
    subjects = ["waited out the runner %d" % i for i in range(3)]
    for s in subjects:
        tap.is_(lmtp_send(st, [BILLS], bill(BILLS, s)), {}, "runner down: LMTP 250 (%s)" % s)
    ids = spool_dir_list(st, "active")
    time.sleep(12)
    runner.start()
    got = wait_for(lambda: all(SEEN.get(s) for s in subjects), timeout=10)
    tap.ok(got, "each event waiting longer than dead_letter_after was still posted",
           diag=runner.log()[-1200:])
    tap.is_(sorted(h["webhook-id"] for s in subjects for _, h, _, _ in requests_for(rx, s)),
            ids, "once each, with its id")
    tap.is_(spool_dir_list(st, "dead"), [], "nothing dead-lettered unposted")
    tap.ok(wait_for(lambda: not spool_dir_list(st, "active"), timeout=10), "active/ drains")
    runner.stop()
    write_conf(st)
    runner.start()


def rewrite_head(path, mtime, **fields):
    """An event's header line changed (a value, or a function of the old
    one), its body kept, and its mtime set."""
    with open(path, "rb") as f:
        head, body = f.read().split(b"\n", 1)
    meta = json.loads(head)
    for k, v in fields.items():
        meta[k] = v(meta[k]) if callable(v) else v
    with open(path, "wb") as f:
        f.write(json.dumps(meta).encode() + b"\n" + body)
    os.utime(path, (time.time(), mtime))


def test_clock_went_back(st, rx, runner):
    """The host's clock ran two days ahead while an attempt failed, then NTP
    stepped it back: the event's next attempt (and its file's mtime) is
    two days away, further than any wait the runner sets (a day at
    most). It must be tried now, not in two days."""
    s = "clock stepped back"
    ANSWERS[s] = [500, 200]
    tap.is_(lmtp_send(st, [BILLS], bill(BILLS, s)), {}, "clock: LMTP 250")
    # this event's own first attempt (a 500 in the log may be another's:
    # a CI run went on with the event still held, never attempted)
    tap.ok(wait_for(lambda: len(SEEN.get(s, [])) >= 1
                    and "HTTP status 500" in runner.log(), timeout=20),
           "the first attempt failed", diag=runner.log()[-600:])
    runner.stop()
    ids = spool_dir_list(st, "active")
    if not tap.is_(len(ids), 1, "the event waits in active/"):
        return
    ahead = 2 * 86400                   # as written by the runner two days ahead
    next_attempt = int(time.time()) + ahead + 5
    rewrite_head(st.path("spool", "active", ids[0]), next_attempt,
                 created=lambda c: c + ahead, next_attempt=next_attempt)
    runner.start()
    tap.ok(wait_for(lambda: len(SEEN.get(s, [])) >= 2, timeout=20),
           "after the clock went back two days the event is tried at once",
           diag=runner.log()[-600:])
    tap.ok(wait_for(lambda: not spool_dir_list(st, "active"), timeout=20),
           "and delivered")
    got = requests_for(rx, s)
    tap.is_([h["webhook-id"] for _, h, _, _ in got], ids * 2, "with its id, both times")
    test_clock_went_back_held(st, rx, runner)


def test_clock_went_back_held(st, rx, runner):
    """The same step back while an event was held (its mail being saved:
    the hold ends 15 minutes on, as the mtime says): released or not, a
    hold ending two days away was kept until the clock caught up."""
    s = "clock stepped back while held"
    runner.stop()
    tap.is_(lmtp_send(st, [BILLS], bill(BILLS, s)), {}, "held: LMTP 250")
    ids = spool_dir_list(st, "active")
    if not tap.is_(len(ids), 1, "the event waits in active/"):
        return
    # held, as the plugin writes it before the save
    rewrite_head(st.path("spool", "active", ids[0]), time.time() + 2 * 86400 + 900, held=True)
    runner.start()
    tap.ok(wait_for(lambda: len(SEEN.get(s, [])) >= 1, timeout=20),
           "held, its hold two days away (the clock stepped back): posted at once",
           diag=runner.log()[-600:])
    tap.ok(wait_for(lambda: not spool_dir_list(st, "active"), timeout=20), "and delivered")


def test_nul_in_filename(st, rx):
    """Filenames that decode to a NUL byte (RFC 2231 %00, an RFC 2047 =00):
    Python's email reads "invoice.pdf\\x00.exe"; the event must not say
    "invoice.pdf" (what follows the NUL, the real extension, silently
    cut). The NUL is the one character a C string cannot carry: it
    becomes U+FFFD, and the rest of the name is kept."""
    import email
    import email.policy
    forms = [("filename*=utf-8''invoice.pdf%00.exe", "rfc2231"),
             ("filename*0*=utf-8''invoice.pdf%00; filename*1=.exe", "rfc2231 continued"),
             ('filename="=?utf-8?q?invoice.pdf=00.exe?="', "rfc2047")]
    for param, label in forms:
        s = "nul in filename, %s" % label
        data = ("From: Acme Billing <billing@vendor.example>\r\nTo: %s\r\nSubject: %s\r\n"
                "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
                "--b\r\nContent-Type: text/plain\r\n\r\nInvoice.\r\n--b\r\n"
                "Content-Type: application/octet-stream\r\n"
                "Content-Disposition: attachment; %s\r\n\r\nMZ\r\n--b--\r\n"
                % (BILLS, s, param)).encode()
        py = [p.get_filename() for p in email.message_from_bytes(
            data, policy=email.policy.default).walk() if p.get_filename()]
        smtp_send(st, BILLS, data)
        got = wait_for(lambda: requests_for(rx, s), timeout=30)
        if not tap.ok(got, "%s: event posted" % s):
            continue
        names = [a["filename"] for a in got[0][2]["data"]["attachments"]]
        tap.is_(names, [n.replace("\x00", "\ufffd") for n in py],
                "%s: the name is Python's, NUL as U+FFFD, nothing after it lost (Python: %r)"
                % (label, py))


def test_url_secret_not_logged(st, rx, runner):
    """A route whose URL carries the receiver's credentials (user:password@,
    ?token=): they are sent (Basic auth, query) but appear in no log line
    of Dovecot or the runner, on success or failure."""
    import base64
    s = "url with credentials"
    ANSWERS[s] = [500, 200]
    tap.is_(lmtp_send(st, [PAY], bill(PAY, s)), {}, "credentials in the URL: LMTP 250")
    got = wait_for(lambda: len(requests_for(rx, s)) >= 2, timeout=15)
    if not tap.ok(got, "posted (500, then 200)", diag=runner.log()[-600:]):
        return
    path, headers, _, _ = requests_for(rx, s)[-1]
    tap.is_((path, headers.get("authorization")),
            ("/ws/acme/pay?token=t0ps3cret",
             "Basic " + base64.b64encode(b"hookuser:s3cr3tpass").decode()),
            "the receiver got the query and the Basic credentials")
    logs = st.read_log("dovecot") + runner.log()
    tap.is_([w for w in ("s3cr3tpass", "t0ps3cret", "hookuser") if w in logs], [],
            "neither the password, the token nor the user is in any log")
    tap.ok("delivered to http://***@127.0.0.1:%d/ws/acme/pay?***" % rx.port in runner.log(),
           "the runner names the receiver without them", diag=runner.log()[-400:])


def test_spool_full_backoff(st, rx, runner):
    """The spool fills up while an attempt is under way, and the receiver
    answers 500: the attempt cannot be recorded, but its backoff (~5 s)
    must hold all the same, not a repost at every one-second scan (a
    receiver already failing, hammered by every waiting event). The
    second attempt, unrecorded too, counts on from the first (it started
    the schedule over: a repost every 5 s for as long as the spool
    stayed full, never dead-lettered). Once there is room again the
    event is delivered."""
    spool = st.path("spool")
    runner.stop()
    mounted = run(["mount", "-t", "tmpfs", "-o", "size=512k,mode=0700", "tmpfs", spool])
    if not tap.ok(mounted.returncode == 0, "a 512 KB tmpfs on the spool", diag=mounted.stderr):
        return
    try:
        shutil.chown(spool, "nobody", "nogroup")
        runner.start()
        s = "spool full during the attempt"
        ANSWERS[s] = [(500, 1, {}), (500, 0, {}), 200]
        tap.is_(lmtp_send(st, [BILLS], bill(BILLS, s)), {}, "spool full: LMTP 250 before")
        tap.ok(wait_for(lambda: SEEN.get(s), timeout=5), "the attempt reached the receiver")
        filler = os.path.join(spool, "filler")
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            while os.write(fd, b"x" * 4096) > 0:
                pass
        except OSError:
            pass
        os.close(fd)
        tap.ok(wait_for(lambda: "cannot record attempt 1" in runner.log(), timeout=5),
               "the runner cannot record the failed attempt", diag=runner.log()[-600:])
        failed_at = time.time()
        time.sleep(3)
        early = [t for t in SEEN.get(s, []) if failed_at - 0.5 < t < failed_at + 3]
        tap.is_(len(early), 0, "no repost within 3 s of the failure: the backoff holds",
                diag=runner.log()[-800:])
        second = wait_for(lambda: re.search(r"cannot record attempt 2: .*; next in (\d+)s all "
                                            r"the same", runner.log()), timeout=10)
        tap.ok(second and int(second.group(1)) >= 100, "the second attempt, unrecorded too, "
               "counts on: next in %ss (the schedule's second step), not 5 s again"
               % (second.group(1) if second else "?"), diag=runner.log()[-800:])
        time.sleep(6)
        tap.is_(len(SEEN.get(s, [])), 2, "no third attempt 6 s later", diag=runner.log()[-800:])
        os.unlink(filler)
        run_tool(st, "flush")
        tap.ok(wait_for(lambda: len(SEEN.get(s, [])) == 3 and not spool_dir_list(st, "active"),
                        timeout=10),
               "room again, a flush: posted and delivered", diag=runner.log()[-800:])
        tap.is_(len({h["webhook-id"] for _, h, _, _ in requests_for(rx, s)}), 1,
                "with one id")
    finally:
        if runner.proc:
            runner.stop()
        run(["umount", "-l", spool])
        runner.start()


class EndlessReceiver(RawServer):
    """Reads each request whole, answers 200 with a Content-Length of 1 GB,
    then sends the body: as fast as it can ("fast") or never ("hang")."""

    def __init__(self):
        self.mode = "hang"
        self.posts = []
        super().__init__(16)

    def session(self, conn):
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return
            data += chunk
        head, body = data.split(b"\r\n\r\n", 1)
        length = int([l.split(b":")[1] for l in head.split(b"\r\n")
                      if l.lower().startswith(b"content-length:")][0])
        while len(body) < length:
            body += conn.recv(65536)
        self.posts.append(body)
        try:
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000\r\n\r\n")
            while self.mode == "fast":
                conn.sendall(b"x" * 65536)
            time.sleep(30)
        except OSError:
            pass
        conn.close()


def test_endless_2xx_body(st, rx, runner, endless):
    """A receiver answers 200 and then never finishes its (1 GB) body, or
    sends it as fast as it can: it accepted the event. It must count as
    delivered (once), not time out, be posted again and again and end up
    dead-lettered although the receiver took it every time."""
    for mode in ("hang", "fast"):
        endless.mode = mode
        before = len(endless.posts)
        s = "endless body %s" % mode
        mark = len(runner.log())
        tap.is_(lmtp_send(st, [STREAM], bill(STREAM, s)), {}, "%s: LMTP 250" % s)
        tap.ok(wait_for(lambda: "delivered to http://127.0.0.1:%d" % endless.port
                        in runner.log()[mark:], timeout=10),
               "%s: delivered (the 200 counts)" % s, diag=runner.log()[mark:][-600:])
        time.sleep(7)                   # a wrong retry would come after ~5 s
        tap.is_(len(endless.posts) - before, 1, "%s: posted once" % s,
                diag=runner.log()[mark:][-600:])
    endless.mode = "hang"


def smtp_send(st, rcpt, data):
    with smtplib.SMTP("127.0.0.1", st.port("postfix-smtp"), timeout=120) as c:
        c.sendmail("billing@vendor.example", [rcpt], data)


def copies(st, user, subject):
    return len([m for m in st.maildir_messages(user) if subject.encode() in m])


def big_header_bill(subject, lines, name="X-Pad"):
    """a bill whose From, Subject and attachment come after `lines`
    header lines of about 900 bytes each (Postfix folds at 998)"""
    pad = "".join("%s: %05d %s\r\n" % (name, i, "p" * 900) for i in range(lines))
    return (pad + "From: Acme Billing <billing@vendor.example>\r\nTo: %s\r\n"
            "Subject: %s\r\nMessage-ID: <%s@vendor.example>\r\nMIME-Version: 1.0\r\n"
            "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
            "Content-Type: text/plain\r\n\r\nInvoice.\r\n--b\r\n"
            "Content-Type: application/pdf\r\n"
            "Content-Disposition: attachment; filename=invoice.pdf\r\n\r\n%%PDF-1.4\r\n"
            "--b--\r\n" % (BILLS, subject, hashlib.sha1(subject.encode()).hexdigest())).encode()


def part_header_bill(subject, lines):
    """a bill whose attachment's Content-Type and filename come after
    `lines` header lines of its part, of about 900 bytes each"""
    pad = "".join("X-Pad: %05d %s\r\n" % (i, "p" * 900) for i in range(lines))
    return ("From: Acme Billing <billing@vendor.example>\r\nTo: %s\r\nSubject: %s\r\n"
            "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
            "--b\r\nContent-Type: text/plain\r\n\r\nInvoice.\r\n--b\r\n%s"
            "Content-Type: application/pdf\r\n"
            "Content-Disposition: attachment; filename=invoice.pdf\r\n\r\n%%PDF-1.4\r\n"
            "--b--\r\n" % (BILLS, subject, pad)).encode()


def test_header_past_dovecot_limit(st, rx, runner):
    """Bills whose From and Subject, or whose attachment's Content-Type and
    filename, come after 11 MB of header lines (each under Postfix's
    header_size_limit, the whole under message_size_limit): Dovecot's
    parser empties every value past 10 MB of one header, so the event
    would say From "" or filename "" while the mailbox copy has them.
    Refused (Postfix keeps it), not posted wrong."""
    for s, data in (("bill behind eleven megabytes of header", big_header_bill),
                    ("attachment behind eleven megabytes of header", part_header_bill)):
        before = len(rx.requests)
        mark = len(st.read_log("dovecot"))
        pmark = len(st.read_log("postfix"))
        smtp_send(st, BILLS, data(s, 12 * 1024))
        tap.ok(wait_for(lambda: "status=deferred" in st.read_log("postfix")[pmark:],
                        timeout=60),
               "%s: Postfix's delivery to LMTP is deferred" % s,
               diag=st.read_log("postfix")[pmark:][-1500:])
        tap.ok(wait_for(lambda: "Dovecot parses whole" in st.read_log("dovecot")[mark:],
                        timeout=10),
               "and Dovecot's log says why", diag=st.read_log("dovecot")[mark:][-1500:])
        time.sleep(2)
        wrong = [json.loads(b)["data"]["headers"] for _, _, b in rx.requests[before:]]
        wrong += [[(a["filename"], a["content_type"]) for a in json.loads(b)["data"]["attachments"]]
                  for _, _, b in rx.requests[before:]]
        tap.is_(wrong, [], "no event with header values emptied is posted")
        tap.is_(copies(st, BILLS, s), 0, "and no copy is saved")
        tap.is_(st.postfix_queue_count(), 1, "Postfix keeps the mail in its queue")
        run(["postsuper", "-c", st.path("postfix"), "-d", "ALL"])


def test_header_under_dovecot_limit(st, rx, runner):
    """9 MB of Authentication-Results (10,000 of 900 bytes) before From and
    Subject: under the limit, every one is in the event, in order, byte
    for byte, and the headers after them too."""
    s = "bill behind nine megabytes of authentication results"
    data = big_header_bill(s, 10 * 1000, name="Authentication-Results")
    smtp_send(st, BILLS, data)
    got = wait_for(lambda: requests_for(rx, s), timeout=60)
    if not tap.ok(got, "9 MB of Authentication-Results: the event is posted",
                  diag=st.read_log("dovecot")[-1500:]):
        return
    d = got[0][2]["data"]
    want = ["%05d %s" % (i, "p" * 900) for i in range(10 * 1000)]
    have = d["authentication_results"]
    diff = [(i, a[:60], b[:60]) for i, (a, b) in enumerate(zip(have, want)) if a != b][:3]
    tap.ok(have == want, "all 10,000 Authentication-Results, in order, byte for byte (%d)"
           % len(have), diag=str(diff))
    tap.is_((d["headers"]["from"], d["attachments"][0]["filename"]),
            ("Acme Billing <billing@vendor.example>", "invoice.pdf"),
            "and the From and attachment that follow them")
    tap.is_(verify(SECRET, got[0][1], got[0][3]), None, "signed")

with Stack("lmtp-webhook-attack") as st:
    tap.stack = st
    rx = Receiver()
    rx.responder = responder
    st.users[PAY] = "x"
    st.users[STREAM] = "x"
    endless = EndlessReceiver()
    os.makedirs(st.path("spool"))
    shutil.chown(st.path("spool"), "nobody", "nogroup")
    with open(st.path("secret"), "w") as f:
        f.write(SECRET + "\n")
    os.chmod(st.path("secret"), 0o644)
    write_conf(st)
    st.start_dovecot(
        lmtp_plugins="lmtp_webhook",
        plugin_settings={
            "lmtp_webhook_route": "bills@*.planapulse.app "
                                  "http://127.0.0.1:%d/ws/{1}/api/bills/inbound" % rx.port,
            "lmtp_webhook_route2": "pay@*.planapulse.app http://hookuser:s3cr3tpass@"
                                   "127.0.0.1:%d/ws/{1}/pay?token=t0ps3cret" % rx.port,
            "lmtp_webhook_route3": "stream@*.planapulse.app "
                                   "http://127.0.0.1:%d/ws/{1}/stream" % endless.port,
            "lmtp_webhook_spool_dir": st.path("spool"),
        },
        extra="mail_plugin_dir = %s\n" % PLUGIN_DIR)
    st.start_postfix(main={"message_size_limit": "104857600"})
    runner = Runner(st)
    runner.start()
    TESTS = [test_drop_in_flight, test_dead_letter_unposted, test_dead_letter_bound,
             test_header_past_dovecot_limit, test_header_under_dovecot_limit,
             test_clock_went_back, test_url_secret_not_logged, test_spool_full_backoff]
    TESTS_RX = [test_nul_in_filename]
    only = os.environ.get("ATTACK_ONLY")
    for t in TESTS:
        if not only or t.__name__ in only.split(","):
            t(st, rx, runner)
    for t in TESTS_RX:
        if not only or t.__name__ in only.split(","):
            t(st, rx)
    if not only or "test_endless_2xx_body" in only.split(","):
        test_endless_2xx_body(st, rx, runner, endless)
    runner.stop()
    rx.stop()

sys.exit(tap.done())
