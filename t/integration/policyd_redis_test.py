#!/usr/bin/python3
"""policyd-ratelimit with a real redis-server shared by two MX nodes:

  4. two policyd-ratelimit instances behind two Postfix instances, sharing
     one redis-server, enforce one combined limit (keys hash-tagged, TTL).
  Checks (RCPT, DATA) are read with TIME + MGET, not the Lua script:
     exact answers for pipelined requests, one MGET per check, the
     script only for END-OF-MESSAGE (commandstats). Checks of many
     connections read in one go share one TIME, with the same answers.
  5. redis-server stopped (SIGSTOP: accepts, never answers) and killed:
     on_store_error = open answers DUNNO and keeps counting locally,
     closed defers; no request waits past the deadline; Redis is used
     again once it is back.
"""

import os
import re
import signal
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from mxstack import Stack  # noqa: E402
from mxtest import tap, wait_for  # noqa: E402
import mxpolicy as mp  # noqa: E402

CONFIG = """\
listen = inet:127.0.0.1:{port}
store = redis://127.0.0.1:%(redis)d/0
on_store_error = %(mode)s
deadline = 100ms
limit per_user = sasl_username rate=30/1h count=recipients
"""
DEADLINE = 0.100
SLACK = 0.150     # scheduling on a loaded 2-core machine


def rcpts(n, tag):
    return ["%s%d@example.net" % (tag, i) for i in range(n)]


def accepted(results):
    return len([c for c, _ in results if c == 250])


def redis_cli(st, *args):
    res = subprocess.run(["redis-cli", "-p", str(st.port("redis"))] + list(args),
                         capture_output=True, text=True, timeout=10)
    return res.stdout.strip()


def timed_requests(port, user, count):
    """count RCPT requests on one connection; returns (replies, worst seconds)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    f = sock.makefile("rwb")
    replies, worst = [], 0.0
    for i in range(count):
        t0 = time.monotonic()
        reply = mp.policy_request(f, {
            "request": "smtpd_access_policy", "protocol_state": "RCPT",
            "instance": "t%d" % i, "sasl_username": user, "client_address": "127.0.0.1",
            "recipient": "r%d@example.net" % i})
        worst = max(worst, time.monotonic() - t0)
        replies.append(reply and reply[0])
    sock.close()
    return replies, worst


def test_shared(st):
    s = mp.login(st, "svc-alerts", "pfa-submission")
    res, data = mp.transaction(s, "alerts@planapulse.ai", rcpts(20, "a"))
    s.quit()
    tap.is_((accepted(res), data and data[0]), (20, 250), "node A: 20 recipients sent")
    s = mp.login(st, "svc-alerts", "pfb-submission")
    res, data = mp.transaction(s, "alerts@planapulse.ai", rcpts(20, "b"))
    s.quit()
    tap.is_(accepted(res), 10, "node B: only 10 more fit the combined 30/1h")
    tap.is_(res[10][0], 450, "node B: the 11th RCPT deferred with 450")
    tap.ok(re.search(r"per_user: defer key=svc-alerts count=11 ", st.read_log("pdb")),
           "node B's policyd logged the decision")
    keys = redis_cli(st, "--scan", "--pattern", "mxrl:*").split()
    tap.ok("mxrl:{per_user:svc-alerts}:3600000" in keys, "Redis holds the hash-tagged key",
           diag=repr(keys))
    ttl = int(redis_cli(st, "PTTL", "mxrl:{per_user:svc-alerts}:3600000") or -3)
    tap.ok(0 < ttl <= 3600 * 1000 + 1000, "the key has a TTL (%d ms)" % ttl)


def commandstats(st):
    stats = {}
    for line in redis_cli(st, "INFO", "commandstats").splitlines():
        m = re.match(r"cmdstat_(\w+):calls=(\d+),", line)
        if m:
            stats[m.group(1)] = int(m.group(2))
    return stats


def request_bytes(state, instance, user, extra=""):
    return ("request=smtpd_access_policy\nprotocol_state=%s\ninstance=%s\n"
            "sasl_username=%s\nclient_address=127.0.0.1\n%s\n"
            % (state, instance, user, extra)).encode()


def test_checks(st):
    """RCPT and DATA: TIME + MGET; END-OF-MESSAGE: the script; exact."""
    sock = socket.create_connection(("127.0.0.1", st.port("pda")), timeout=10)
    f = sock.makefile("rwb")
    f.write(request_bytes("END-OF-MESSAGE", "pre", "svc-pipe", "recipient_count=25\n"))
    f.flush()
    tap.is_(_reply(f), "action=DUNNO",
            "25 recipients charged at END-OF-MESSAGE")
    redis_cli(st, "CONFIG", "RESETSTAT")
    # 8 RCPTs of one transaction and a DATA, pipelined in one write
    burst = b"".join(request_bytes("RCPT", "pipe", "svc-pipe", "recipient=p%d@example.net\n"
                                   % i) for i in range(8))
    burst += request_bytes("DATA", "pipe", "svc-pipe", "recipient_count=5\n")
    sock.sendall(burst)
    replies = [_reply(f) for _ in range(9)]
    tap.is_(replies[:5], ["action=DUNNO"] * 5,
            "pipelined RCPTs: the 26th to 30th recipient fit (checked, not charged)")
    tap.ok(all(r.startswith("action=450 4.7.1") for r in replies[5:8]),
           "the 31st does not, nor the next two (a deferred one is not kept)",
           diag=repr(replies))
    tap.is_(replies[8], "action=DUNNO", "DATA with the 5 accepted: fits")
    stats = commandstats(st)
    tap.is_((stats.get("mget", 0), stats.get("time", 0), stats.get("evalsha", 0),
             stats.get("eval", 0)), (9, 9, 0, 0),
            "9 checks: 9 MGET + 9 TIME, no script", diag=repr(stats))
    f.write(request_bytes("END-OF-MESSAGE", "pipe", "svc-pipe", "recipient_count=5\n"))
    f.flush()
    tap.is_(_reply(f), "action=DUNNO", "END-OF-MESSAGE charges the 5")
    stats = commandstats(st)
    tap.is_((stats.get("evalsha", 0), stats.get("mget", 0)), (1, 9),
            "END-OF-MESSAGE: one EVALSHA", diag=repr(stats))
    f.write(request_bytes("RCPT", "after", "svc-pipe", "recipient=q@example.net\n"))
    f.flush()
    tap.ok(_reply(f).startswith("action=450 4.7.1"), "the next RCPT sees all 30 charged")
    sock.close()


def clock_round(st, proc, port, attempt):
    """24 RCPTs written while the daemon is stopped: read in one go."""
    conns = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(24)]
    time.sleep(0.2)
    redis_cli(st, "CONFIG", "RESETSTAT")
    proc.send_signal(signal.SIGSTOP)     # the 24 requests wait in the sockets
    try:
        for i, c in enumerate(conns):
            user = "svc-full" if i % 2 else "svc-empty%d-%d" % (attempt, i)
            c.sendall(request_bytes("RCPT", "clk%d-%d" % (attempt, i), user,
                                    "recipient=c@example.net\n"))
        time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGCONT)
    replies = [_reply(c.makefile("rwb")) for c in conns]
    for c in conns:
        c.close()
    return replies, commandstats(st)


def test_shared_clock(st, redis):
    """Checks arriving together share one TIME; answers stay exact.

    A node of its own, with a 5 s deadline: a daemon stopped and resumed
    on a loaded machine can miss 100 ms, and this is about the answers."""
    proc, port, _ = mp.start_policyd(st, "pdc", CONFIG.replace("deadline = 100ms", "deadline = 5s")
                                     % {"redis": redis, "mode": "closed"})
    tap.ok(wait_for(lambda: "redis: connected" in st.read_log("pdc")),
           "pdc connected to redis-server")
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    f = sock.makefile("rwb")
    f.write(request_bytes("END-OF-MESSAGE", "full", "svc-full", "recipient_count=30\n"))
    f.flush()
    tap.is_(_reply(f), "action=DUNNO", "svc-full: 30 recipients charged")
    sock.close()
    replies, stats = clock_round(st, proc, port, 0)
    tap.ok(all(r == "action=DUNNO" for r in replies[0::2]),
           "12 fresh users: each RCPT fits", diag=repr(replies))
    tap.ok(all(r.startswith("action=450 4.7.1") for r in replies[1::2]),
           "12 RCPTs of a user at 30/1h: each deferred", diag=repr(replies))
    tap.ok(stats.get("mget", 0) == 24 and 1 <= stats.get("time", 0) < 24
           and stats.get("evalsha", 0) == 0,
           "24 checks read together: 24 MGET, fewer TIME (%d), no script"
           % stats.get("time", 0), diag=repr(stats))
    proc.terminate()
    proc.wait(timeout=10)


def _reply(f):
    lines = []
    while True:
        line = f.readline()
        if not line or line == b"\n":
            return "\n".join(lines) if line else None
        lines.append(line.decode().rstrip("\n"))


def test_redis_stopped(st):
    st.procs["redis"].send_signal(signal.SIGSTOP)
    replies, worst = timed_requests(st.port("pda"), "svc-stopped", 20)
    tap.is_(set(replies), {"action=DUNNO"}, "redis stopped, open: DUNNO")
    tap.ok(worst < DEADLINE + SLACK, "redis stopped, open: slowest answer %.0f ms "
           "(deadline 100 ms)" % (worst * 1000))
    replies, worst = timed_requests(st.port("pdb"), "svc-stopped", 20)
    tap.ok(replies and all(r and r.startswith("action=451 4.3.0") for r in replies),
           "redis stopped, closed: 451 4.3.0 (store_error_reply)", diag=repr(replies[:3]))
    tap.ok(worst < DEADLINE + SLACK, "redis stopped, closed: slowest answer %.0f ms"
           % (worst * 1000))
    tap.ok(wait_for(lambda: "redis: no answer for" in st.read_log("pda")),
           "the watchdog dropped the silent Redis connection")
    os.kill(st.procs["redis"].pid, signal.SIGKILL)
    st.stop_redis()


def test_redis_killed(st):
    t0 = time.monotonic()
    s = mp.login(st, "svc-local", "pfa-submission")
    res, data = mp.transaction(s, "local@planapulse.ai", rcpts(31, "l"))
    s.quit()
    tap.is_(accepted(res[:30]), 30, "redis down, open: 30 recipients pass (DUNNO)")
    tap.is_(res[30][0], 450, "redis down, open: the local memory store still counts "
            "(31st deferred)")
    tap.is_(data and data[0], 250, "redis down, open: the message is accepted")
    s = mp.login(st, "svc-local", "pfa-submission")
    res, _ = mp.transaction(s, "local@planapulse.ai", rcpts(1, "l2-"))
    s.quit()
    tap.is_(res[0][0], 450, "redis down, open: the local charge holds for the next message")
    s = mp.login(st, "svc-closed", "pfb-submission")
    res, _ = mp.transaction(s, "closed@planapulse.ai", rcpts(2, "c"))
    s.quit()
    tap.ok(all(c == 451 and "Rate limit service unavailable" in t for c, t in res),
           "redis down, closed: Postfix defers with 451 4.3.0", diag=repr(res))
    tap.ok(time.monotonic() - t0 < 20, "redis down: 65 RCPTs answered without stalls")
    replies, worst = timed_requests(st.port("pda"), "svc-killed", 20)
    tap.ok(worst < DEADLINE + SLACK, "redis killed: slowest answer %.0f ms" % (worst * 1000))


def test_redis_back(st):
    before = {n: st.read_log(n).count("redis: connected") for n in ("pda", "pdb")}
    st.start_redis()
    for name in ("pda", "pdb"):
        tap.ok(wait_for(lambda: st.read_log(name).count("redis: connected") > before[name],
                        timeout=10),
               "%s reconnected to the restarted redis-server" % name)
    s = mp.login(st, "svc-new", "pfa-submission")
    res, data = mp.transaction(s, "new@planapulse.ai", rcpts(5, "n"))
    s.quit()
    tap.is_((accepted(res), data and data[0]), (5, 250), "redis back: node A sends")
    tap.ok(redis_cli(st, "EXISTS", "mxrl:{per_user:svc-new}:3600000") == "1",
           "redis back: the charge went to Redis again")
    s = mp.login(st, "svc-new", "pfb-submission")
    res, data = mp.transaction(s, "new@planapulse.ai", rcpts(26, "m"))
    s.quit()
    tap.is_(accepted(res), 25, "redis back: node B sees node A's 5 (25 of 26 fit)")


WHOLE_BURST = """\
listen = inet:127.0.0.1:{port}
workers = 1
deadline = 2s
store = %s
limit w_rcpt = sasl_username rate=3/1s burst=2 count=recipients
limit w_bytes = sender rate=50M/1h count=bytes
"""


def test_whole_burst(st, redis):
    """A request that spends exactly the whole burst (or budget) of a fresh
    key fits in every store (outside attacker of 2026-12-03: the memory
    store admitted it, the Redis store refused it for good, with a false
    "retry in 1s": its sums had none of the memory store's half
    microsecond of slack, and epoch microseconds in a double round)."""
    results = {}
    for store in ("memory", "redis://127.0.0.1:%d/0" % redis):
        name = "pdw" if store == "memory" else "pdwr"
        proc, port, _ = mp.start_policyd(st, name, WHOLE_BURST % store)
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        f = sock.makefile("rwb")
        got = []
        for i in range(20):
            user = "whole-%s-%d-%d" % (name, i, time.monotonic_ns())
            for tag, state, extra in (("d", "DATA", "recipient_count=2\n"),
                                      ("e", "END-OF-MESSAGE", "recipient_count=2\n"),
                                      ("b", "END-OF-MESSAGE", "recipient_count=1\n"
                                       "sender=%s@x.example\nsize=%d\n"
                                       % (user, 50 * 1024 * 1024))):
                f.write(request_bytes(state, "w%d" % i, user + tag, extra))
                f.flush()
                got.append(_reply(f))
        results[name] = got
        sock.close()
        proc.terminate()
        proc.wait(timeout=10)
    for name, what in (("pdw", "memory"), ("pdwr", "Redis")):
        tap.is_(results[name].count("action=DUNNO"), 60,
                "%s store: 20 fresh keys spending exactly burst=2 at DATA and at "
                "END-OF-MESSAGE, and exactly 50M of 50M/1h bytes: 60 of 60 fit" % what,
                diag=repr(sorted(set(results[name]))))


with Stack("policyd-redis") as st:
    tap.stack = st
    for user in ("svc-local", "svc-closed", "svc-new"):
        st.users[user] = user + "-secret"
    st.start_dovecot()
    st.start_sink()
    redis = st.start_redis()
    procs = {}
    for name, mode in (("pda", "open"), ("pdb", "closed")):
        procs[name], port, _ = mp.start_policyd(st, name, CONFIG % {"redis": redis,
                                                                      "mode": mode})
        st.start_postfix(name="pf" + name[-1], submission=mp.restrictions(port))
    for name in procs:
        tap.ok(wait_for(lambda: "redis: connected" in st.read_log(name)),
               "%s connected to redis-server" % name)
    test_shared(st)
    test_checks(st)
    test_shared_clock(st, redis)
    test_redis_stopped(st)
    test_redis_killed(st)
    test_redis_back(st)
    test_whole_burst(st, redis)
    for name, proc in procs.items():
        tap.ok(proc.poll() is None, "%s is still running" % name)

sys.exit(tap.done())
