#!/usr/bin/python3
"""lmtp_webhook's commit from an outside attacker's and an unlucky
operator's side: the promises of doc/lmtp-webhook.md ("Durability:
Dovecot's mail_fsync") and lmtp-webhook(7), on real Dovecot 2.3 LMTP
with the plugin, lmtp-webhook-spool run and a real HTTP receiver;
faults made with tmpfs mounts, chattr, kill -9 and strace's syscall
injection (-P limits it to the spool's own files). Counted exactly:
bytes, ids, copies in the mailbox.

- mail_fsync misspelled: Dovecot refuses the configuration (nothing
  listens, nothing is saved), never a silent fallback.
- active/ on another mount than tmp/ (an operator's volume mounted on
  it): the rename cannot work, so the recipient must be tempfailed
  BEFORE the mail is saved (it used to be saved and then tempfailed at
  the commit, on every retry: a copy more per retry).
- The spool (a size-limited tmpfs) filling up in the middle of the
  body: 4xx, nothing saved, nothing in active/, the keeper's space
  given back; afterwards the same bytes retried give one whole event.
- The spool (a tmpfs) out of inodes for the next event's file: 4xx,
  nothing saved; the event committed before is whole.
- The retry of a delivery whose event is still in active/: the same
  webhook-id, one file, the new event's bytes whole (its created).
- optimized: fsync fails (EIO) after the save: 4xx, the event stays
  in active/ whole (held); the retry (same id) replaces it.
- always: the fsync of active/ fails (EIO) after the rename, which
  comes before the save now (spool_hold.c): 4xx, nothing saved,
  nothing in active/; the retry gives one whole event.
- active/ made immutable (chattr +i) between the reservation and the
  rename (the rename held back by strace): 4xx; once fixed, the retry
  gives the same id, whole.
- optimized, a crash between the rename and the fsync (an ext4 image,
  copied while the fsync is held back): the file reused from tmp/free.*
  must not show its old event's bytes under the new name (it did: the
  old header and body at the new length).
- The event's fsync (after the save) held back 1.5 s with the runner
  running: meanwhile the event is in active/, held, and not posted;
  released after the sync, posted once, whole, and LMTP says 250.
- kill -9 of lmtp processes at random points of 100 deliveries from 4
  concurrent clients: after every kill each file in active/ is whole
  (a JSON header line naming its file's id, then exactly body_length
  bytes); every delivery answered 250 has its event, released; the
  runner then posts each released file's body byte for byte, leaves
  the held ones (killed during their save) until their hold ends, and
  then posts them too.
- The save refused after the event was held (Dovecot's quota): the
  held event removed, nothing posted; a bill that fits, posted once.
- 4 concurrent LMTP clients racing for the runner's tmp/free.* files:
  every event posted with its own subject and attachment bytes (two
  writers in one file would mix them), at most one reservation file per
  live lmtp process in tmp/.
"""

import base64
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from mxstack import Stack, StackError  # noqa: E402
from mxtest import build_path, run, tap, wait_for  # noqa: E402
from mxwebhook import (Receiver, Runner, bill, lmtp_send, make_secret, read_event,  # noqa: E402
                       start_spool_dovecot, Strace, subject_of)

PLUGIN_DIR = build_path("lmtp-webhook", ".libs")
BILLS = "bills@acme.planapulse.app"
GLOBEX = "bills@globex.planapulse.app"
SECRET = make_secret()
TEMPFAIL = "Webhook spool unavailable"


# -- helpers ---------------------------------------------------------------

def active(st):
    return sorted(os.listdir(st.path("spool", "active")))


def header_whole(path):
    """None when the file's header line names its id and a body_length
    that is exactly what follows it (read without the body), else why."""
    try:
        with open(path, "rb") as f:
            head = f.readline()
            size = os.fstat(f.fileno()).st_size
        meta = json.loads(head)
    except (OSError, ValueError) as e:
        return repr(e)
    if not head.endswith(b"\n") or meta.get("id") != os.path.basename(path) \
            or meta.get("body_length") != size - len(head):
        return "not whole: %r, %d bytes" % (head[:300], size)
    return None


def broken_events(st, light=False):
    """{name: why} for every file of active/ that is not a whole event."""
    bad = {}
    for name in active(st):
        path = st.path("spool", "active", name)
        why = header_whole(path) if light else read_event(path)[1]
        if (why is None or not isinstance(why, str)) or not os.path.exists(path):
            continue
        bad[name] = why
    return bad


def pdf_of(body):
    """The bytes of the event's first attachment."""
    try:
        att = json.loads(body)["data"]["attachments"][0]
        return base64.b64decode(att["content_base64"])
    except (ValueError, KeyError, IndexError, TypeError):
        return None


def pdf_sent(data):
    """The PDF bytes inside a bill() as sent."""
    import email
    msg = email.message_from_bytes(data)
    for part in msg.walk():
        if part.get_content_type() == "application/pdf":
            return part.get_payload(decode=True)
    return None


def copies(st, subject, rcpt=BILLS):
    return len([m for m in st.maildir_messages(rcpt) if subject.encode() in m])


def code_of(refused, rcpt=BILLS):
    return refused.get(rcpt, (250, b""))[0]


def lmtp_pids(st):
    master = st.procs["dovecot-master"].pid
    out = subprocess.run(["pgrep", "-P", str(master)], capture_output=True,
                         text=True).stdout.split()
    pids = []
    for p in out:
        try:
            with open("/proc/%s/comm" % p) as f:
                if f.read().strip() == "lmtp":
                    pids.append(int(p))
        except OSError:
            pass
    return pids


def with_strace(st, opts, what, action):
    """action() with strace attached; (its result, strace's output)."""
    tracer = Strace(st, opts)
    if not tap.ok(tracer.ok, "%s: strace attaches to Dovecot" % what,
                  diag=tracer.proc.stderr.read() if tracer.proc.poll() is not None else ""):
        tracer.stop()
        return None, ""
    try:
        result = action()
    finally:
        log = tracer.stop()
    return result, log


def first_event(st, subject, data):
    """Deliver data once, wait for its event in active/ (runner stopped);
    its id."""
    refused, _ = lmtp_send(st, [BILLS], data)
    tap.is_(refused, {}, "%s: the first delivery: LMTP 250" % subject)
    names = active(st)
    tap.is_(len(names), 1, "%s: one event in active/" % subject)
    return names[0] if names else "none"


# -- the attacks -----------------------------------------------------------

def test_misspelled_fsync():
    with Stack("lmtp-webhook-commit-typo") as st:
        tap.stack = st
        os.makedirs(st.path("spool"))
        shutil.chown(st.path("spool"), "nobody", "nogroup")
        started = True
        try:
            st.start_dovecot(lmtp_plugins="lmtp_webhook", plugin_settings={
                "lmtp_webhook_route": "bills@*.planapulse.app http://127.0.0.1:9/ws/{1}/in",
                "lmtp_webhook_spool_dir": st.path("spool")},
                extra="mail_plugin_dir = %s\nmail_fsync = sometimes\n" % PLUGIN_DIR)
        except StackError:
            started = False
        st.failed = False                   # its log is expected, not a failure
        tap.ok(not started, "mail_fsync = sometimes: Dovecot does not start")
        tap.ok("sometimes" in st.read_log("dovecot-master"),
               "and says which value it refuses", diag=st.read_log("dovecot-master")[-500:])
        tap.is_((os.listdir(st.path("spool")), st.maildir_messages(BILLS)), ([], []),
                "nothing saved, nothing spooled")


def test_active_other_mount(st, kind):
    """active/ on a mount of its own (a tmpfs; a bind mount of a directory
    of the same file system): rename() from tmp/ gives EXDEV."""
    act = st.path("spool", "active")
    subject = "active on another mount (%s)" % kind
    data = bill(BILLS, subject)
    if kind == "tmpfs":
        m = run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", act])
    else:
        os.makedirs(st.path("elsewhere"), exist_ok=True)
        shutil.chown(st.path("elsewhere"), "nobody", "nogroup")
        m = run(["mount", "--bind", st.path("elsewhere"), act])
    if not tap.ok(m.returncode == 0, "%s mounted on active/" % kind, diag=m.stderr):
        return
    try:
        shutil.chown(act, "nobody", "nogroup")
        before = len(st.read_log("dovecot"))
        codes = [code_of(lmtp_send(st, [BILLS], data)[0]) for _ in range(2)]
        tap.ok(all(400 <= c < 500 for c in codes),
               "active/ on another mount (%s): LMTP 4xx, twice" % kind, diag=repr(codes))
        tap.ok(wait_for(lambda: "cross-device" in st.read_log("dovecot")[before:], timeout=5),
               "Dovecot's log says why (cross-device)", diag=st.read_log("dovecot")[before:][-600:])
        tap.is_(copies(st, subject), 0, "nothing saved: no copy per retry (the spool cannot "
                "take the event, which can be known before the save)")
        tap.is_(os.listdir(act), [], "nothing in active/")
    finally:
        run(["umount", "-l", act])
    refused, _ = lmtp_send(st, [BILLS], data)
    tap.is_(refused, {}, "active/ back on the spool's mount: the retry gets 250")
    tap.is_(copies(st, subject), 1, "one copy in all")
    names = active(st)
    tap.ok(len(names) == 1 and read_event(st.path("spool", "active", names[0]))[0],
           "and one whole event", diag=repr(names))
    for n in names:
        os.unlink(st.path("spool", "active", n))


def test_full_mid_body(st):
    """A 192 KB tmpfs spool; a bill of ~400 KB fills it mid-body."""
    spool = st.path("spool")
    subject = "spool fills mid-body"
    data = bill(BILLS, subject, size=300000)
    m = run(["mount", "-t", "tmpfs", "-o", "size=192k,mode=0700", "tmpfs", spool])
    if not tap.ok(m.returncode == 0, "a 192 KB tmpfs mounted on the spool", diag=m.stderr):
        return
    try:
        shutil.chown(spool, "nobody", "nogroup")
        refused, _ = lmtp_send(st, [BILLS], data)
        tap.ok(400 <= code_of(refused) < 500 and TEMPFAIL in str(refused),
               "full mid-body: LMTP 4xx (the spool's tempfail)", diag=repr(refused))
        tap.is_(copies(st, subject), 0, "nothing saved")
        tap.is_(active(st), [], "nothing in active/")
        tmp = st.path("spool", "tmp")
        sizes = {n: os.path.getsize(os.path.join(tmp, n)) for n in os.listdir(tmp)}
        tap.ok(sum(sizes.values()) == 0, "tmp/: the failed event's space given back",
               diag=repr(sizes))
        small = "fits after the full one"
        refused, _ = lmtp_send(st, [BILLS], bill(BILLS, small, size=20000))
        tap.is_(refused, {}, "a bill that fits, next: 250")
        names = active(st)
        meta = read_event(st.path("spool", "active", names[0]))[0] if len(names) == 1 else None
        tap.ok(meta is not None, "its event whole, alone in active/", diag=repr(names))
    finally:
        run(["umount", "-l", spool])
    refused, _ = lmtp_send(st, [BILLS], data)
    tap.is_(refused, {}, "the big bill retried with room: 250")
    names = active(st)
    ev = read_event(st.path("spool", "active", names[0])) if len(names) == 1 else (None, "")
    tap.ok(ev[0] is not None and pdf_of(ev[1]) == pdf_sent(data),
           "one whole event, its attachment byte for byte", diag=repr(names) + repr(ev[1])[:200])
    tap.is_(copies(st, subject), 1, "one copy in all")
    for n in names:
        os.unlink(st.path("spool", "active", n))


def test_out_of_inodes(st):
    """A tmpfs spool with no inode left for the next event's file: 4xx
    before the save (the committed events keep theirs)."""
    spool = st.path("spool")
    m = run(["mount", "-t", "tmpfs", "-o", "size=4m,nr_inodes=5,mode=0700", "tmpfs", spool])
    if not tap.ok(m.returncode == 0, "a tmpfs of 5 inodes mounted on the spool", diag=m.stderr):
        return
    try:
        shutil.chown(spool, "nobody", "nogroup")
        first, second = "inodes: the last one", "inodes: none left"
        refused, _ = lmtp_send(st, [BILLS], bill(BILLS, first))
        tap.is_(refused, {}, "the spool's last inode: 250")
        refused, _ = lmtp_send(st, [BILLS], bill(BILLS, second))
        tap.ok(400 <= code_of(refused) < 500 and TEMPFAIL in str(refused),
               "no inode left: LMTP 4xx", diag=repr(refused))
        tap.is_((copies(st, first), copies(st, second)), (1, 0), "only the first mail saved")
        names = active(st)
        tap.ok(len(names) == 1 and subject_of(read_event(
            st.path("spool", "active", names[0]))[1] or b"") == first,
            "active/: the first event, whole, alone", diag=repr(names))
    finally:
        run(["umount", "-l", spool])


def test_retry_replaces(st):
    subject = "retry replaces"
    data = bill(BILLS, subject)
    eid = first_event(st, subject, data)
    path = st.path("spool", "active", eid)
    first = read_event(path)[0] or {}
    time.sleep(1.1)                     # a created of its own
    refused, _ = lmtp_send(st, [BILLS], data)
    tap.is_(refused, {}, "the same bytes again: 250")
    tap.is_(active(st), [eid], "the same webhook-id, one file")
    meta, body = read_event(path)
    tap.ok(meta is not None and meta["created"] > first.get("created", 1 << 62)
           and pdf_of(body) == pdf_sent(data),
           "the file is the new event (later created), whole", diag=repr(meta))
    os.unlink(path)


def fault_after_rename(st, what, opts_for, subject):
    """A fault strace makes after the rename: 4xx, the event in active/
    whole, the retry (same id) replaces it with 250."""
    data = bill(BILLS, subject)
    eid = first_event(st, subject, data)
    os.unlink(st.path("spool", "active", eid))
    before = len(st.read_log("dovecot"))
    if not eio_refused(st, what, opts_for(eid), data):
        return
    tap.is_(active(st), [eid], "%s: the event stays in active/ (same id)" % what)
    meta, body = read_event(st.path("spool", "active", eid))
    tap.ok(meta is not None and pdf_of(body) == pdf_sent(data),
           "%s: whole, its attachment byte for byte" % what, diag=repr(body)[:200])
    tap.ok(wait_for(lambda: "NOT spooled" in st.read_log("dovecot")[before:], timeout=5),
           "%s: Dovecot's log says so" % what)
    retry_one_event(st, what, data, eid)


def eio_refused(st, what, opts, data):
    """Deliver data with strace injecting EIO as opts say: LMTP 4xx and
    the injected error, checked; False when strace did not attach."""
    refused, log = with_strace(st, opts, what, lambda: lmtp_send(st, [BILLS], data)[0])
    if refused is None:
        return False
    tap.ok(400 <= code_of(refused) < 500, "%s: LMTP 4xx" % what,
           diag=repr(refused) + "\n" + log[-1500:])
    tap.ok("EIO (Input/output error) (INJECTED)" in log, "%s: the injected error happened" % what,
           diag=log[-1500:])
    return True


def retry_one_event(st, what, data, eid):
    """The retry of data after a fault: 250, one whole event, same id."""
    refused, _ = lmtp_send(st, [BILLS], data)
    tap.is_(refused, {}, "%s: the retry: 250" % what)
    tap.ok(active(st) == [eid] and read_event(st.path("spool", "active", eid))[0],
           "%s: one whole event, same id" % what)
    os.unlink(st.path("spool", "active", eid))


def test_fsync_eio_optimized(st):
    fault_after_rename(st, "optimized, fsync EIO after the rename", lambda eid: [
        "-e", "trace=fsync,fdatasync", "-e", "inject=fsync,fdatasync:error=EIO",
        "-P", st.path("spool", "active", eid)], "fsync eio optimized")


def test_fsync_eio_always(st):
    """always: active/ is synced after the rename and before the mail is
    saved (spool_hold.c): its EIO tempfails with nothing saved and
    nothing left in active/; the retry gives one whole event."""
    what = "always, fsync of active/ EIO"
    subject = "fsync eio always"
    data = bill(BILLS, subject)
    eid = first_event(st, subject, data)
    os.unlink(st.path("spool", "active", eid))
    saved = copies(st, subject)
    before = len(st.read_log("dovecot"))
    if not eio_refused(st, what, ["-e", "trace=fsync,fdatasync",
                                  "-e", "inject=fsync,fdatasync:error=EIO",
                                  "-P", st.path("spool", "active")], data):
        return
    tap.is_(copies(st, subject), saved, "%s: the mail not saved (no copy more)" % what)
    tap.is_(active(st), [], "%s: nothing left in active/" % what)
    tap.ok(wait_for(lambda: "not spooled" in st.read_log("dovecot")[before:], timeout=5),
           "%s: Dovecot's log says so" % what)
    retry_one_event(st, what, data, eid)
    tap.is_(copies(st, subject), saved + 1, "%s: one copy more, the retry's" % what)


def test_immutable_mid_commit(st):
    """chattr +i active/ while the rename is held back: after the reserve."""
    subject = "immutable mid-commit"
    data = bill(BILLS, subject)
    eid = first_event(st, subject, data)
    os.unlink(st.path("spool", "active", eid))
    act = st.path("spool", "active")
    chattr = {}

    def deliver():
        def lock():
            time.sleep(0.8)
            chattr["rc"] = run(["chattr", "+i", act]).returncode
        t = threading.Thread(target=lock)
        t.start()
        try:
            return lmtp_send(st, [BILLS], data)[0]
        finally:
            t.join()
    try:
        refused, log = with_strace(st, [
            # every rename (strace's -P does not match a rename to a name
            # that is not there yet): the maildir's before the save too,
            # but active/ only holds ours
            "-e", "trace=rename,renameat,renameat2",
            "-e", "inject=rename,renameat,renameat2:delay_enter=1500000"],
            "chattr +i mid-commit", deliver)
    finally:
        run(["chattr", "-i", act])
    if refused is None:
        return
    tap.is_(chattr.get("rc"), 0, "chattr +i active/ during the held-back rename")
    tap.ok(400 <= code_of(refused) < 500 and "EPERM" in log,
           "the rename fails (EPERM): LMTP 4xx", diag=repr(refused) + log[-800:])
    tap.is_(active(st), [], "nothing half-written in active/")
    refused, _ = lmtp_send(st, [BILLS], data)
    tap.is_(refused, {}, "once fixed, the retry: 250")
    tap.ok(active(st) == [eid] and read_event(st.path("spool", "active", eid))[0],
           "one whole event, the same id")
    os.unlink(st.path("spool", "active", eid))


def test_two_rcpts_first_fails(st):
    """Two routed recipients in one transaction; the first one's commit
    fails (fsync EIO after the rename): Dovecot's LMTP copies the first
    saved mail to the next recipient, which the tempfail let go of."""
    subject = "two recipients, the first commit fails"
    data = bill(BILLS, subject)
    eid = first_event(st, subject, data)
    os.unlink(st.path("spool", "active", eid))
    refused, _ = lmtp_send(st, [GLOBEX], data)
    gid = active(st)
    os.unlink(st.path("spool", "active", gid[0])) if gid else None
    tap.ok(refused == {} and len(gid) == 1 and gid[0] != eid,
           "the second recipient alone: 250, an id of its own", diag=repr((refused, gid)))
    refused, log = with_strace(st, [
        "-e", "trace=fsync,fdatasync", "-e", "inject=fsync,fdatasync:error=EIO",
        "-P", st.path("spool", "active", eid)], "two recipients",
        lambda: lmtp_send(st, [BILLS, GLOBEX], data)[0])
    if refused is None:
        return
    tap.ok(400 <= code_of(refused) < 500 and GLOBEX not in refused,
           "the first recipient 4xx (its fsync failed), the second 250",
           diag=repr(refused) + log[-600:])
    tap.is_(active(st), sorted([eid] + gid), "both events in active/, under the ids each "
            "recipient has alone")
    for name in active(st):
        meta, body = read_event(st.path("spool", "active", name))
        rcpt = json.loads(body)["data"]["envelope"]["rcpt_to"] if meta else None
        tap.ok(meta is not None and pdf_of(body) == pdf_sent(data)
               and rcpt == (BILLS if name == eid else GLOBEX),
               "%s: whole, its attachment, its own rcpt_to (%s)" % (name, rcpt))
    tap.is_((copies(st, subject), copies(st, subject, GLOBEX)), (2, 2),
            "the mails: one more saved for each (the tempfailed one too, as documented)")
    for name in active(st):
        os.unlink(st.path("spool", "active", name))


def hold_rename(st, what, during, data):
    """Deliver data with every rename held back 1.5 s and during() run
    0.8 s in (between the reservation and the commit's rename)."""
    def deliver():
        t = threading.Thread(target=lambda: (time.sleep(0.8), during()))
        t.start()
        try:
            return lmtp_send(st, [BILLS], data)[0]
        finally:
            t.join()
    return with_strace(st, ["-e", "trace=rename,renameat,renameat2",
                            "-e", "inject=rename,renameat,renameat2:delay_enter=1500000"],
                       what, deliver)


def test_keeper_removed_mid_commit(st):
    """An operator's rm of tmp/* (or the sweep) while the event waits for
    its rename: the commit writes it to a file of its own (250)."""
    subject = "keeper removed mid-commit"
    data = bill(BILLS, subject, size=400000)
    eid = first_event(st, subject, data)
    os.unlink(st.path("spool", "active", eid))
    tmp = st.path("spool", "tmp")
    gone = []

    def rm():
        for n in os.listdir(tmp):
            os.unlink(os.path.join(tmp, n))
            gone.append(n)
    refused, log = hold_rename(st, "tmp/* removed mid-commit", rm, data)
    if refused is None:
        return
    tap.ok(len([n for n in gone if n.startswith("reserve.")]) == 1,
           "the keeper's file was removed under the delivery", diag=repr(gone))
    tap.is_(refused, {}, "the commit writes the event anew: 250", diag=log[-800:])
    tap.is_(active(st), [eid], "one event, its id")
    meta, body = read_event(st.path("spool", "active", eid))
    tap.ok(meta is not None and pdf_of(body) == pdf_sent(data),
           "whole, its 400 KB attachment byte for byte", diag=repr(body)[:300])
    tap.is_(copies(st, subject), 2, "the mail saved once more (2 with the first)")
    os.unlink(st.path("spool", "active", eid))


def test_tmp_removed_mid_commit(st):
    """rm -rf tmp/ while the event waits for its rename."""
    subject = "tmp removed mid-commit"
    data = bill(BILLS, subject)
    eid = first_event(st, subject, data)
    os.unlink(st.path("spool", "active", eid))
    refused, log = hold_rename(st, "tmp/ removed mid-commit",
                               lambda: shutil.rmtree(st.path("spool", "tmp")), data)
    if refused is None:
        return
    code = code_of(refused)
    names = active(st)
    tap.ok(code == 250 and names == [eid] or 400 <= code < 500 and names == [],
           "250 with its event, or 4xx (the retry brings it)", diag=repr((refused, names)))
    refused, _ = lmtp_send(st, [BILLS], data)
    tap.is_(refused, {}, "the retry: 250 (tmp/ made again)")
    tap.ok(active(st) == [eid] and read_event(st.path("spool", "active", eid))[0],
           "one whole event, the same id")
    os.unlink(st.path("spool", "active", eid))


def test_crash_before_fsync(st):
    """optimized, a crash between the rename and the fsync (LMTP has not
    answered): the spool is an ext4 image (loop, commit=1), and the
    crash is a copy of the image taken while the fsync is held back,
    once ext4's journal has committed the rename. The lmtp process's
    file is a tmp/free.* file the runner recycled (here: an old event's
    8 KB). After the crash, active/ID must not hold the old event's
    bytes (another bill, maybe another workspace's: under ID's header
    it is posted to ID's URL); what ext4 had not written reads as
    zeros."""
    spool = st.path("spool")
    subject = "crash between rename and fsync"
    data = bill(BILLS, subject, size=30000)
    eid = first_event(st, subject, data)
    os.unlink(st.path("spool", "active", eid))
    img, snap = st.path("spool.img"), st.path("crash.img")
    made = run(["truncate", "-s", "64M", img]).returncode == 0 \
        and run(["mkfs.ext4", "-q", "-F", img]).returncode == 0
    m = run(["mount", "-o", "loop,commit=1", img, spool]) if made else None
    if not tap.ok(m is not None and m.returncode == 0, "an ext4 image mounted on the spool",
                  diag=m.stderr if m else "mkfs.ext4 failed"):
        return
    seen = {}
    try:
        for sub in ("", "tmp", "active", "dead"):
            os.makedirs(os.path.join(spool, sub), exist_ok=True)
            shutil.chown(os.path.join(spool, sub), "nobody", "nogroup")
        old = json.dumps({"id": "msg_old", "url": "http://old/", "body_length": 8000})
        with open(os.path.join(spool, "tmp", "free.1.1"), "wb") as f:
            f.write(old.encode() + b"\n" + b"Y" * 8000)
        shutil.chown(os.path.join(spool, "tmp", "free.1.1"), "nobody", "nogroup")
        run(["sync"])

        def deliver():
            t = threading.Thread(target=lambda: seen.update(refused=lmtp_send(
                st, [BILLS], data)[0]))
            t.start()
            seen["renamed"] = wait_for(lambda: os.path.exists(
                os.path.join(spool, "active", eid)), timeout=10)
            time.sleep(3)                   # ext4 commits its journal (commit=1)
            shutil.copyfile(img, snap)      # the disk as a crash now leaves it
            t.join()
            return seen.get("refused")
        refused, log = with_strace(st, ["-e", "trace=fsync,fdatasync",
                                        "-e", "inject=fsync,fdatasync:delay_enter=6000000",
                                        "-P", os.path.join(spool, "active", eid)],
                                   "crash before fsync", deliver)
        tap.ok(seen.get("renamed") and "free.1.1" not in os.listdir(os.path.join(spool, "tmp")),
               "the free file was claimed and renamed into active/ before the fsync")
        tap.is_(refused, {}, "without the crash: 250")
        with open(os.path.join(spool, "active", eid), "rb") as f:
            seen["event"] = f.read()
    finally:
        run(["umount", "-l", spool])
    crashed = st.path("crashed")
    os.makedirs(crashed, exist_ok=True)
    m = run(["mount", "-o", "loop", snap, crashed])
    if not tap.ok(m.returncode == 0, "the crashed image mounts (journal replayed)",
                  diag=m.stderr):
        return
    try:
        path = os.path.join(crashed, "active", eid)
        there = os.path.exists(path)
        meta, body = read_event(path) if there else (None, b"")
        head = open(path, "rb").read(200) if there else b""
        got = open(path, "rb").read() if there else b""
        event = seen.get("event", b"")
        tap.diag("after the crash: active/ %s; the event %s (%d of %d bytes)" % (
            os.listdir(os.path.join(crashed, "active")),
            "whole" if meta else "absent" if not there else "NOT whole", len(got), len(event)))
        # what ext4 had not written yet reads as zeros (not JSON: dead/,
        # and Postfix retries, as LMTP never answered); a byte of the
        # old event under the new name is another bill, maybe another
        # workspace's, posted with the new event's header and URL
        foreign = [i for i, b in enumerate(got) if b != 0 and (i >= len(event) or b != event[i])]
        tap.ok(not foreign, "after the crash active/%s holds no byte of the old event: each "
               "is the new event's or not written (0)" % eid,
               diag="%d foreign bytes of %d, beginning %r" % (len(foreign), len(got), head))
    finally:
        run(["umount", crashed])


def test_held_until_synced(st, rx, runner):
    """optimized, the event's own fsync (after the save) held back 1.5 s:
    meanwhile the event is in active/, held, and the runner (running)
    posts nothing; after the sync it is released and posted once, whole,
    and LMTP says 250."""
    subject = "held until synced"
    data = bill(BILLS, subject)
    eid = first_event(st, subject, data)
    os.unlink(st.path("spool", "active", eid))
    runner.start()
    seen = {}

    def deliver():
        def look():
            time.sleep(0.9)     # inside the held-back fsync
            path = st.path("spool", "active", eid)
            try:
                seen["mtime"] = os.stat(path).st_mtime - time.time()
                seen["held"] = (read_event(path)[0] or {}).get("held")
            except OSError as e:
                seen["error"] = repr(e)
            seen["posted"] = [r for r in list(rx.requests) if subject_of(r[2]) == subject]
        t = threading.Thread(target=look)
        t.start()
        try:
            return lmtp_send(st, [BILLS], data)[0]
        finally:
            t.join()
    try:
        refused, log = with_strace(st, [
            "-e", "trace=fsync,fdatasync", "-e", "inject=fsync,fdatasync:delay_enter=1500000",
            "-P", st.path("spool", "active", eid)], "fsync held back", deliver)
        if refused is None:
            return
        tap.is_(refused, {}, "event fsync held back 1.5 s: LMTP 250")
        tap.ok(seen.get("held") is True and seen.get("mtime", 0) > 600,
               "during it the event is in active/, held (mtime %+.0f s)" % seen.get("mtime", 0),
               diag=repr(seen))
        tap.is_(seen.get("posted"), [], "and the runner posted nothing")
        tap.ok(wait_for(lambda: [r for r in list(rx.requests) if subject_of(r[2]) == subject],
                        timeout=10), "released after the sync: posted")
        time.sleep(1)
        got = [r for r in list(rx.requests) if subject_of(r[2]) == subject]
        tap.ok(len(got) == 1 and pdf_of(got[0][2]) == pdf_sent(data),
               "posted once, whole", diag=repr(len(got)))
        tap.ok(wait_for(lambda: active(st) == [], timeout=10), "active/ empty after the POST")
    finally:
        runner.stop()


def storm_client(st, subjects, results):
    for s in subjects:
        try:
            refused, _ = lmtp_send(st, [BILLS], bill(BILLS, s, size=random.choice(
                [5000, 60000, 300000, 1000000])))
            results[s] = code_of(refused)
        except Exception as e:             # the killed process's connection
            results[s] = repr(e)


def test_kill9_storm(st, rx, runner):
    subjects = ["storm %03d" % i for i in range(100)]
    results, broken, kills = {}, {}, []
    stop = threading.Event()

    def killer():
        while not stop.is_set():
            time.sleep(random.uniform(0.002, 0.03))  # a random point of a delivery
            pids = lmtp_pids(st)
            if pids and len(kills) * 5 <= len(results) + 5:   # one per ~5 deliveries
                victim = random.choice(pids)
                try:
                    os.kill(victim, signal.SIGKILL)
                    kills.append(victim)
                except ProcessLookupError:
                    pass
                time.sleep(0.02)
                broken.update(broken_events(st, light=True))
    clients = [threading.Thread(target=storm_client, args=(st, subjects[i::4], results))
               for i in range(4)]
    k = threading.Thread(target=killer)
    k.start()
    for c in clients:
        c.start()
    for c in clients:
        c.join()
    stop.set()
    k.join()
    ok250 = sorted(s for s, c in results.items() if c == 250)
    tap.ok(len(kills) >= 15 and len(ok250) >= 30,
           "kill -9 storm: %d kills, %d of 100 deliveries answered 250" % (len(kills), len(ok250)))
    tap.is_(broken, {}, "after every kill, every file in active/ is a whole event")
    tap.is_(broken_events(st), {}, "and at the end")
    files = {}
    for name in active(st):
        meta, body = read_event(st.path("spool", "active", name))
        if meta is not None:
            files.setdefault(subject_of(body), []).append(body)
    missing = [s for s in ok250 if s not in files]
    tap.is_(missing, [], "every delivery answered 250 has its event in active/")
    tap.is_(sorted(s for s in files if s not in subjects), [], "and nothing else is there")
    tap.is_(sorted(s for s, b in files.items() if len(b) != 1), [], "one event per delivery")
    # a delivery killed during its save leaves its event held (named
    # before the save, released after it: spool_hold.c): never posted
    # before its hold ends, and never one answered 250
    now = time.time()
    held = sorted(n for n in active(st)
                  if os.stat(st.path("spool", "active", n)).st_mtime > now + 60
                  and (read_event(st.path("spool", "active", n))[0] or {}).get("held") is True)
    held_subjects = [subject_of(read_event(st.path("spool", "active", n))[1]) for n in held]
    tap.is_([s for s in ok250 if s in held_subjects], [], "no delivery answered 250 left its event held (%d held: "
            "deliveries killed during their save)" % len(held))
    runner.start()
    try:
        tap.ok(wait_for(lambda: active(st) == held, timeout=60),
               "the runner posts every released event, none of the held ones",
               diag="left: %r, held: %r" % (active(st), held))
        for n in held:          # their hold ends: as the clock would make it
            os.utime(st.path("spool", "active", n), (now, now))
        tap.ok(wait_for(lambda: active(st) == [], timeout=60),
               "once their hold ends, the runner posts them too")
        posted = {}
        for _, _, body in list(rx.requests):
            posted.setdefault(subject_of(body), set()).add(body)
        tap.is_(sorted(s for s in files if posted.get(s) != {files[s][0]}), [],
                "each posted with the file's body, byte for byte")
        test_free_race(st, rx)
    finally:
        runner.stop()


def test_free_race(st, rx):
    frees = [n for n in os.listdir(st.path("spool", "tmp")) if n.startswith("free.")]
    tap.ok(len(frees) > 8, "the runner left %d tmp/free.* files to reuse" % len(frees))
    subjects = ["race %03d" % i for i in range(60)]
    sent, results = {}, {}

    def client(mine):
        for s in mine:
            data = bill(BILLS, s, size=random.choice([500, 5000, 60000]))
            sent[s] = pdf_sent(data)
            try:
                results[s] = code_of(lmtp_send(st, [BILLS], data)[0])
            except Exception as e:
                results[s] = repr(e)
    threads = [threading.Thread(target=client, args=(subjects[i::6],)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    tap.is_(sorted(s for s in subjects if results.get(s) != 250), [],
            "6 concurrent clients racing for free files: every delivery 250")
    wait_for(lambda: active(st) == [] and all(
        any(subject_of(b) == s for _, _, b in list(rx.requests)) for s in subjects), timeout=30)
    posted = {}
    for _, _, body in list(rx.requests):
        if subject_of(body) in sent:
            posted.setdefault(subject_of(body), []).append(body)
    tap.is_(sorted(s for s in subjects if s not in posted), [], "every event posted")
    tap.is_(sorted(s for s, bodies in posted.items()
                   if any(pdf_of(b) != sent[s] for b in bodies)), [],
            "each with its own attachment, byte for byte (no two writers in one file)")
    live = lmtp_pids(st)
    tmp = os.listdir(st.path("spool", "tmp"))
    per_pid = {p: len([n for n in tmp if n.startswith("reserve.%d." % p)]) for p in live}
    tap.ok(live and all(c <= 1 for c in per_pid.values()),
           "at most one reservation file per live lmtp process", diag=repr((per_pid, tmp)))


def test_not_saved_withdrawn(st, rx, runner):
    """The save fails after the event was held (over quota: Dovecot
    refuses the mail): the held event is removed, nothing is posted;
    a bill that fits is saved and posted once."""
    runner.start()
    try:
        subject = "over quota"
        data = bill(BILLS, subject, size=300000)
        refused, _ = lmtp_send(st, [BILLS], data)
        tap.ok(code_of(refused) >= 400, "over quota: LMTP refuses the mail", diag=repr(refused))
        tap.is_(copies(st, subject), 0, "nothing saved")
        time.sleep(2.5)         # two scans of active/
        tap.is_(active(st), [], "the held event removed from active/")
        tap.is_([r for r in list(rx.requests) if subject_of(r[2]) == subject], [],
                "nothing posted")
        refused, _ = lmtp_send(st, [BILLS], bill(BILLS, "fits"))
        tap.is_(refused, {}, "a bill that fits: 250")
        tap.ok(wait_for(lambda: [r for r in list(rx.requests) if subject_of(r[2]) == "fits"],
                        timeout=10) and copies(st, "fits") == 1, "saved once, posted")
        time.sleep(1)
        tap.is_(len([r for r in list(rx.requests) if subject_of(r[2]) == "fits"]), 1,
                "posted once")
    finally:
        runner.stop()


def start(st, fsync=None, route_url="http://127.0.0.1:9/ws/{1}/in", quota=None):
    st.users[GLOBEX] = "x"
    start_spool_dovecot(st, route_url, SECRET, PLUGIN_DIR, fsync=fsync, quota=quota)

for tool in ("strace", "chattr"):
    if shutil.which(tool) is None:
        tap.ok(False, "%s is installed" % tool)
        sys.exit(tap.done())

test_misspelled_fsync()
with Stack("lmtp-webhook-commit-optimized") as st:
    tap.stack = st
    rx = Receiver()
    start(st, route_url="http://127.0.0.1:%d/ws/{1}/in" % rx.port)
    runner = Runner(st)
    test_active_other_mount(st, "tmpfs")
    test_active_other_mount(st, "bind")
    test_full_mid_body(st)
    test_out_of_inodes(st)
    test_retry_replaces(st)
    test_fsync_eio_optimized(st)
    test_immutable_mid_commit(st)
    test_two_rcpts_first_fails(st)
    test_keeper_removed_mid_commit(st)
    test_tmp_removed_mid_commit(st)
    test_crash_before_fsync(st)
    test_held_until_synced(st, rx, runner)
    test_kill9_storm(st, rx, runner)
    rx.stop()
with Stack("lmtp-webhook-commit-always") as st:
    tap.stack = st
    start(st, fsync="always")
    test_fsync_eio_always(st)
with Stack("lmtp-webhook-commit-quota") as st:
    tap.stack = st
    rx = Receiver()
    start(st, route_url="http://127.0.0.1:%d/ws/{1}/in" % rx.port, quota="100K")
    test_not_saved_withdrawn(st, rx, Runner(st))
    rx.stop()
sys.exit(tap.done())
