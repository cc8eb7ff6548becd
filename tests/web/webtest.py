# SPDX-License-Identifier: MIT
"""Shared by the rtdaq-web tests: a running system (`rtdaq run`, synthetic camera) on an
instance and ports of the test, and rtdaq-web on a free port, both real processes.
"""
import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request

failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)
    return cond


def finish():
    if failures:
        print("%d check(s) failed" % len(failures), flush=True)
        sys.exit(1)
    print("all checks passed", flush=True)
    sys.exit(0)


def wait_for(pred, timeout, step=0.1):
    end = time.time() + timeout
    while time.time() < end:
        v = pred()
        if v:
            return v
        time.sleep(step)
    return None


class System:
    """`rtdaq run` (acq + proc + ctl + packet simulator) and rtdaq-web, stopped on exit."""

    def __init__(self, build, tag, rate=1000, workers="1", mode="both", web_args=()):
        self.build = build
        self.rtdaq = os.path.join(build, "tools", "rtdaq")
        # $RTD_WEB_BIN: another rtdaq-web build (e.g. ASan) against this build's system.
        self.web_bin = os.environ.get("RTD_WEB_BIN") or os.path.join(build, "web", "rtdaq-web")
        pid = os.getpid()
        self.inst = "%s%d" % (tag, pid)
        # Below 32768: the ephemeral range may hand our ports to another test's connections.
        base = 20000 + (pid * 11) % 12000
        self.pctl = base + 3
        self.run = subprocess.Popen(
            [self.rtdaq, "run", "--instance", self.inst, "--workers", workers, "--mode", mode,
             "--rate", str(rate), "--packet-port", str(base), "--frame-port", str(base + 1),
             "--pub", "tcp://127.0.0.1:%d" % (base + 2), "--ctl",
             "tcp://127.0.0.1:%d" % self.pctl, "--sim-clients", "4", "--sim-rate", "200",
             "--quiet"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.web = None
        self.port = None
        self.web_args = list(web_args)

    def stat(self):
        out = subprocess.run([self.rtdaq, "stat", "--instance", self.inst, "--json"],
                             capture_output=True, text=True, timeout=20)
        try:
            return json.loads(out.stdout)
        except ValueError:
            return {}

    def counter(self, st, process, label):
        for p in st.get("processes", []):
            if p["process"] == process:
                for c in p.get("counters", []):
                    if c["label"] == label:
                        return c["value"]
        return None

    def wait_frames(self, timeout=30):
        """Frames flowing and fitted (proc.w0 processed > 0)."""
        return wait_for(lambda: (self.counter(self.stat(), "proc.w0", "frames.processed")
                                 or 0) > 0, timeout, 0.3)

    def start_web(self, *extra):
        self.web = subprocess.Popen(
            [self.web_bin, "--instance", self.inst, "--listen", "127.0.0.1:0", "--ctl",
             "tcp://127.0.0.1:%d" % self.pctl] + self.web_args + list(extra),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.web.stdout.readline()  # the readiness line
        m = re.search(r"listening on https?://[0-9.]+:(\d+)/", line)
        if not m:
            raise RuntimeError("rtdaq-web did not become ready: %r %s" %
                               (line, self.web.stderr.read()[-500:] if self.web.poll() is not None
                                else ""))
        self.port = int(m.group(1))
        self.base = "http://127.0.0.1:%d" % self.port
        return self.port

    def http(self, path, body=None, method=None, raw=None, timeout=10):
        """(status, parsed JSON or text, content type)."""
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None
                                            else None)
        req = urllib.request.Request(self.base + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                status, text, ctype = r.status, r.read().decode(), r.headers.get("Content-Type")
        except urllib.error.HTTPError as e:
            status, text, ctype = e.code, e.read().decode(), e.headers.get("Content-Type")
        if ctype and ctype.startswith("application/json"):
            try:
                return status, json.loads(text), ctype
            except ValueError:
                pass
        return status, text, ctype

    def close(self):
        for p in (self.web, self.run):
            if p and p.poll() is None:
                p.send_signal(2)  # SIGINT: both stop cleanly
        for p in (self.web, self.run):
            if p:
                try:
                    p.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        if self.web and self.web.returncode != 0:
            print("rtdaq-web exited %d; its stderr ends:\n%s" %
                  (self.web.returncode, self.web.stderr.read()[-3000:]), flush=True)


def parse_metrics(text):
    """{name: [(labels dict, value)]} and the TYPE of each family; raises on a bad line."""
    samples, types = {}, {}
    line_re = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$')
    label_re = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, typ = line.split(" ", 3)
            if name in types:
                raise ValueError("TYPE twice for %s" % name)
            types[name] = typ
            continue
        if not line or line.startswith("#"):
            continue
        m = line_re.match(line)
        if not m:
            raise ValueError("not exposition format: %r" % line)
        labels = dict(label_re.findall(m.group(3) or ""))
        samples.setdefault(m.group(1), []).append((labels, float(m.group(4))))
    return samples, types
