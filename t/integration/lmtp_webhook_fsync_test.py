#!/usr/bin/python3
"""lmtp-webhook keeps an event as durably as Dovecot keeps the mail
(issue 14 item 7): the plugin follows Dovecot's mail_fsync. Watched with
strace on real Dovecot 2.3 LMTP (every process it forks after the
attach), for each setting:

- optimized (Dovecot's default): the event is renamed from tmp/ into
  active/ (held) before the mail is saved, and fsynced under its new
  name after the save: the mail's own sync has committed its name
  already; no fsync before the rename, none of a spool directory;
- always: fsync in tmp/, rename, fsync of active/ (the directory), all
  before the save;
- never: the rename alone, no fsync of anything in the spool;
- in every mode LMTP answers 250, the mail is saved once, and the event
  in active/ is whole: its header line names its id and body_length,
  and exactly body_length bytes follow, a JSON body naming the subject.

Without Dovecot's mail_fsync the plugin fsynced twice per event whatever
the operator chose (the first check of "optimized" fails on that code)."""

import json
import os
import re
import shutil
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from mxstack import Stack  # noqa: E402
from mxtest import build_path, tap, wait_for  # noqa: E402
from mxwebhook import Strace, bill, lmtp_send, subject_of  # noqa: E402

PLUGIN_DIR = build_path("lmtp-webhook", ".libs")
BILLS = "bills@acme.planapulse.app"
SYSCALLS = "fsync,fdatasync,rename,renameat,renameat2"
LINE = re.compile(r'^\d+\s+(\w+)\((.*)\)\s+=\s+(-?\d+)')


def traced(st, mode, subject):
    """Deliver one bill with strace on Dovecot; the spool's syscalls as
    (name, arguments, result), and LMTP's refusals. strace -o FILE
    writes one file with each line prefixed by its pid."""
    tracer = Strace(st, ["-s", "300", "-e", "trace=" + SYSCALLS])
    if not tracer.ok:
        tap.ok(False, "strace attaches to Dovecot", diag=tracer.why_not())
        sys.exit(tap.done())
    refused, _ = lmtp_send(st, [BILLS], bill(BILLS, subject))
    wait_for(lambda: os.listdir(st.path("spool", "active")), timeout=10)

    def written():
        try:
            with open(tracer.out) as f:
                return "active/" in f.read()
        except OSError:
            return False
    # strace writes its lines after the calls return: on a loaded machine
    # the rename into active/ was seen by the test before it was in the
    # file (a CI run found no rename at all for the optimized setting)
    wait_for(written, timeout=10)
    time.sleep(0.5)                     # and the fsync that follows it
    log = tracer.stop()
    spool = st.path("spool")
    calls, order = [], []
    for line in log.splitlines():
        m = LINE.match(line)
        if m and spool in m.group(2):
            calls.append((m.group(1), m.group(2), int(m.group(3))))
            if is_rename_into_active(calls[-1], spool):
                order.append("event renamed")
            elif fsync_of(calls[-1], r"<%s/active/msg_" % re.escape(spool)):
                order.append("event synced")
        elif m and m.group(1).startswith("rename") and "/new/" in m.group(2):
            order.append("mail saved")      # Dovecot's maildir tmp/ -> new/
    return calls, refused, order, log


def show(calls):
    return "\n".join("%s(%s) = %d" % c for c in calls)


def is_rename_into_active(call, spool):
    return call[0].startswith("rename") and ('"%s/active/' % spool) in call[1]


def fsync_of(call, path_pattern):
    return call[0] in ("fsync", "fdatasync") and re.search(path_pattern, call[1])


def check_event(st, mode, subject):
    names = os.listdir(st.path("spool", "active"))
    tap.is_(len(names), 1, "%s: one event in active/" % mode)
    if not names:
        return
    with open(st.path("spool", "active", names[0]), "rb") as f:
        data = f.read()
    head, _, body = data.partition(b"\n")
    meta = json.loads(head)
    tap.ok(meta.get("id") == names[0] and meta.get("body_length") == len(body)
           and subject_of(body) == subject,
           "%s: the event is whole (id, body_length %s, %d bytes, its subject)"
           % (mode, meta.get("body_length"), len(body)))


def run_mode(mode):
    with Stack("lmtp-webhook-fsync-" + mode) as st:
        tap.stack = st
        os.makedirs(st.path("spool"))
        shutil.chown(st.path("spool"), "nobody", "nogroup")
        extra = "mail_plugin_dir = %s\n" % PLUGIN_DIR
        if mode != "default":
            extra += "mail_fsync = %s\n" % mode
        st.start_dovecot(lmtp_plugins="lmtp_webhook", plugin_settings={
            "lmtp_webhook_route": "bills@*.planapulse.app http://127.0.0.1:9/ws/{1}/in",
            "lmtp_webhook_spool_dir": st.path("spool")}, extra=extra)
        subject = "fsync %s" % mode
        calls, refused, order, log = traced(st, mode, subject)
        spool = st.path("spool")
        tap.is_(refused, {}, "%s: LMTP 250" % mode)
        tap.is_(len(st.maildir_messages(BILLS)), 1, "%s: the mail is saved once" % mode)
        check_event(st, mode, subject)
        renames = [i for i, c in enumerate(calls) if is_rename_into_active(c, spool)]
        tap.is_(len(renames), 1, "%s: one rename into active/" % mode,
                diag=show(calls) or log[-3000:])
        at = renames[0] if renames else len(calls)
        event_fsyncs_after = [c for c in calls[at:]
                              if fsync_of(c, r"<%s/active/msg_[0-9a-f]+>" % re.escape(spool))]
        tmp_fsyncs_before = [c for c in calls[:at]
                             if fsync_of(c, r"<%s/tmp/" % re.escape(spool))]
        dir_fsyncs = [c for c in calls if fsync_of(c, r"<%s(/active)?/?>" % re.escape(spool))]
        all_fsyncs = [c for c in calls if c[0] in ("fsync", "fdatasync")]
        if mode in ("default", "optimized"):
            tap.ok(len(event_fsyncs_after) == 1 and len(all_fsyncs) == 1,
                   "%s: one fsync, of the event under its name in active/, after the rename"
                   % mode, diag=show(calls))
            tap.is_(dir_fsyncs + tmp_fsyncs_before, [],
                    "%s: no fsync before the rename, none of a directory" % mode)
        elif mode == "always":
            tap.is_(len(tmp_fsyncs_before), 1, "always: the event fsynced in tmp/ before the "
                    "rename", diag=show(calls))
            tap.ok(any(fsync_of(c, r"<%s/active>" % re.escape(spool)) for c in calls[at:]),
                   "always: then active/ (the directory) fsynced", diag=show(calls))
        else:
            tap.is_(all_fsyncs, [], "never: no fsync of anything in the spool")
        tap.ok(all(c[2] == 0 for c in calls), "%s: every traced call succeeded" % mode,
               diag=show(calls))
        # spool_hold.c: named (held) before the save, so that the mail's
        # sync commits the name; optimized syncs the event after it
        saved = order.index("mail saved") if "mail saved" in order else -1
        tap.ok(0 <= order.index("event renamed") < saved if "event renamed" in order else False,
               "%s: the event is renamed into active/ before the mail is saved" % mode,
               diag=repr(order))
        if mode in ("default", "optimized"):
            tap.ok("event synced" in order[saved + 1:] and saved >= 0,
                   "%s: and fsynced after the save" % mode, diag=repr(order))


if shutil.which("strace") is None:
    tap.ok(False, "strace is installed (contrib/install-deps installs it)")
    sys.exit(tap.done())
for mode in ("default", "optimized", "always", "never"):
    run_mode(mode)
sys.exit(tap.done())
