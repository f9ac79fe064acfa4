"""mxtest - TAP output for integration tests (Python side of t/tap.h).

    from mxtest import tap
    tap.ok(cond, "name", diag="shown on failure")
    tap.is_(got, want, "name")
    sys.exit(tap.done())

Every failed assertion marks the current Stack (tap.stack) as failed, so
its daemons' logs are printed before teardown.
"""

import os
import subprocess
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
BUILD = os.environ.get("MXKIT_BUILD", TOP)


class Tap:
    def __init__(self):
        self.count = 0
        self.failed = 0
        self.stack = None

    def ok(self, cond, name, diag=None):
        self.count += 1
        if not cond:
            self.failed += 1
            if self.stack is not None:
                self.stack.failed = True
        print("%s %d - %s" % ("ok" if cond else "not ok", self.count, name), flush=True)
        if not cond and diag:
            self.diag(diag)
        return bool(cond)

    def is_(self, got, want, name, diag=None):
        text = "got:  %r\nwant: %r" % (got, want)
        return self.ok(got == want, name, diag=text + ("\n" + diag if diag else ""))

    def skip(self, name, reason):
        self.count += 1
        print("ok %d - %s # SKIP %s" % (self.count, name, reason), flush=True)

    def diag(self, text):
        for line in str(text).splitlines():
            print("# " + line, flush=True)

    def done(self):
        print("1..%d" % self.count, flush=True)
        return 1 if self.failed or self.count == 0 else 0


tap = Tap()


def run(argv, timeout=60, input=None):
    """Run a client program; returns CompletedProcess with text output."""
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, input=input)


def wait_for(predicate, timeout=20.0, interval=0.1):
    """Poll predicate until it returns something true; returns its value
    (or the last false value on timeout)."""
    deadline = time.monotonic() + timeout
    value = predicate()
    while not value and time.monotonic() < deadline:
        time.sleep(interval)
        value = predicate()
    return value


def build_path(*parts):
    return os.path.join(BUILD, *parts)


def src_path(*parts):
    return os.path.join(TOP, *parts)
