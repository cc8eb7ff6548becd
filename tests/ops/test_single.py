# SPDX-License-Identifier: MIT
"""`rtdaq run --single`: the whole system as threads of one process.

Started by run_py.sh with an interpreter that imports zmq. Arguments: the build
directory. Exit 0 pass, 1 fail, 77 skip.

`rtdaq run --single --duration 5 --rate 1000 --json` on an instance and ports of
this test must: run no child process, process frames, publish stats on its PUB
socket (a ZeroMQ subscriber here receives them), exit 0 with a JSON report, and
leave no shared-memory segment of the instance behind.
"""
import json
import os
import subprocess
import sys
import time

import zmq

build = sys.argv[1]
rtdaq = os.path.join(build, "tools", "rtdaq")
pid = os.getpid()
inst = "single%d" % pid
# Same scheme as test_e2e.py, shifted so the two tests never share a port.
base = 20000 + (pid * 7 + 6000) % 12000
ppkt, pfrm, ppub, pctl = base, base + 1, base + 2, base + 3

failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)


def segments():
    return sorted(f for f in os.listdir("/dev/shm") if f.startswith("rtdaq.%s." % inst))


def children(p):
    kids = []
    try:
        for t in os.listdir("/proc/%d/task" % p):
            with open("/proc/%d/task/%s/children" % (p, t)) as f:
                kids += f.read().split()
    except OSError:
        pass
    return kids


env = {k: v for k, v in os.environ.items() if not k.startswith("RTDAQ_")}
zctx = zmq.Context()
sub = zctx.socket(zmq.SUB)
sub.setsockopt(zmq.SUBSCRIBE, b"stats.")
sub.setsockopt(zmq.LINGER, 0)
sub.connect("tcp://127.0.0.1:%d" % ppub)  # reconnects until the publisher binds

launcher = subprocess.Popen(
    [rtdaq, "run", "--single", "--duration", "5", "--rate", "1000", "--json",
     "--instance", inst, "--packet-port", str(ppkt), "--frame-port", str(pfrm),
     "--pub", "tcp://127.0.0.1:%d" % ppub, "--ctl", "tcp://127.0.0.1:%d" % pctl],
    stdout=subprocess.PIPE, text=True, env=env)
stats_msgs, processes, kids = 0, set(), []
end = time.time() + 40
while launcher.poll() is None and time.time() < end:
    if sub.poll(100):
        parts = sub.recv_multipart()
        stats_msgs += 1
        processes.add(parts[0].decode(errors="replace"))
    # Only while it runs: LeakSanitizer's checker at exit is a child of its own.
    if not kids and time.time() < end - 36:
        kids = children(launcher.pid)
try:
    out, _ = launcher.communicate(timeout=30)
except subprocess.TimeoutExpired:
    launcher.kill()
    out, _ = launcher.communicate()
    failures.append("rtdaq run --single did not end within its duration + 30 s")
sub.close()
zctx.term()

check(launcher.returncode == 0, "rtdaq run --single exited 0 (rc %s)" % launcher.returncode)
check(not kids, "no child processes (saw %s)" % kids)
check(stats_msgs >= 2, "subscriber received %d stats messages on the PUB socket (topics %s)"
      % (stats_msgs, sorted(processes)))
try:
    rep = json.loads(out.strip().splitlines()[-1])
    print("final report:", json.dumps(rep), flush=True)
    check(rep.get("single") is True, "report says single")
    check(rep.get("frames", 0) > 1000, "acq ingested frames (%s)" % rep.get("frames"))
    check(rep.get("frames_processed", 0) > 1000, "proc processed frames (%s)"
          % rep.get("frames_processed"))
    check(rep.get("fits", 0) > 0, "fits done (%s)" % rep.get("fits"))
    check(rep.get("segments_left") == 0, "report: no segments left")
except (ValueError, IndexError):
    check(False, "final report is JSON: %r" % out[-300:])
left = segments()
check(not left, "no shared-memory segments left: %s" % left)
for f in left:
    os.unlink(os.path.join("/dev/shm", f))

print("single: %s" % ("all checks passed" if not failures else "%d checks failed" % len(failures)))
sys.exit(1 if failures else 0)
