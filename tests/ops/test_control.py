# SPDX-License-Identifier: MIT
"""Acknowledged control under `rtdaq run`: every "ok" checked from outside.

Started by run_py.sh with an interpreter that imports zmq. Arguments: the build
directory and the source directory. Exit 0 pass, 1 fail, 77 skip.

For each parameter, on a running system, the command exits 0 only after its
owner applied it, and the effect shows in the `fits` stream or the counters:
- proc.threshold above every spot empties the fits of ions within 1 s; 0 brings them back;
- acq.roi.* puts every fitted position inside the region;
- acq.frame_rate_limit=2000 gives 2000 +- 1 % frames/s over 10 s;
- acq.packet_rate_limit caps the packets published into the ring.
Refusals: an unknown parameter, a ROI outside the frame, `record start` to a bad
path, and a `set` while the owner is stopped (SIGSTOP) all exit 1 with the reason.
Restarts: after rtdaq-ctl is SIGKILLed and restarted, `rtdaq stop` stops the frames
and `rtdaq start` resumes them; rtdaq-ctl SIGKILLed in the middle of writes, in a
loop, never stops acq (its published frames keep rising).
A second `rtdaq run` on the running instance is refused, naming the running pid.
"""
import json
import os
import signal
import struct
import subprocess
import sys
import time

import zmq

build, src = sys.argv[1], sys.argv[2]
rtdaq = os.path.join(build, "tools", "rtdaq")
pid = os.getpid()
inst = "tctl%d" % pid
base = 20000 + (pid * 11) % 12000
ppkt, pfrm, ppub, pctl = base, base + 1, base + 2, base + 3
CTL = "tcp://127.0.0.1:%d" % pctl
failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)


def stat():
    out = subprocess.run([rtdaq, "stat", "--instance", inst, "--json"],
                         capture_output=True, text=True, timeout=20)
    return json.loads(out.stdout)


def counters(st, process):
    for p in st.get("processes", []):
        if p["process"] == process:
            return {c["label"]: c["value"] for c in p.get("counters", [])}, p
    return {}, None


def counter(process, label):
    return counters(stat(), process)[0].get(label, 0)


def pid_of(process):
    p = counters(stat(), process)[1]
    return p["pid"] if p and p.get("alive") else None


def ctl(*args, timeout=30):
    out = subprocess.run([rtdaq] + list(args) + ["--ctl", CTL],
                         capture_output=True, text=True, timeout=timeout)
    return out.returncode, out.stdout + out.stderr


def wait_for(pred, timeout, step=0.05):
    end = time.time() + timeout
    while time.time() < end:
        v = pred()
        if v:
            return v
        time.sleep(step)
    return None


ION = struct.Struct("<QQffffffffiiHHI")


class Fits:
    """The `fits` stream: per message (n_ions, [(x, y), ...], frame width, frame height)."""

    def __init__(self):
        self.ctx = zmq.Context()
        self.s = self.ctx.socket(zmq.SUB)
        self.s.setsockopt(zmq.SUBSCRIBE, b"fits")
        self.s.setsockopt(zmq.RCVHWM, 100000)
        self.s.connect("tcp://127.0.0.1:%d" % ppub)

    def drain(self):
        while self.s.poll(0):
            self.s.recv_multipart()

    def collect(self, seconds):
        out, end = [], time.time() + seconds
        while time.time() < end:
            if not self.s.poll(50):
                continue
            parts = self.s.recv_multipart()
            if len(parts) < 2:
                continue
            hdr = json.loads(parts[1])
            if hdr.get("kind") != "data":
                continue
            ions = []
            if len(parts) > 2:
                for k in range(len(parts[2]) // ION.size):
                    v = ION.unpack_from(parts[2], k * ION.size)
                    ions.append((v[2], v[3]))
            out.append((hdr["frame"]["n_ions"], ions, hdr["frame"]["width"],
                        hdr["frame"]["height"]))
        return out


launcher = subprocess.Popen(
    [rtdaq, "run", "--instance", inst, "--workers", "1", "--mode", "fits", "--rate", "5000",
     "--packet-port", str(ppkt), "--frame-port", str(pfrm),
     "--pub", "tcp://127.0.0.1:%d" % ppub, "--ctl", CTL,
     "--sim-clients", "2", "--sim-rate", "1000", "--quiet"],
    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
fits = None
try:
    up = wait_for(lambda: ctl("status", "--json")[0] == 0 and pid_of("proc.w0")
                  and counter("acq", "frames.rx") > 100, 30, 0.2)
    check(up is not None, "system up under rtdaq run")
    if not up:
        raise SystemExit

    # A second run on the same instance is refused and names the running launcher.
    second = subprocess.run([rtdaq, "run", "--instance", inst, "--duration", "1", "--quiet"],
                            capture_output=True, text=True, timeout=30)
    check(second.returncode == 1 and ("pid %d" % launcher.pid) in second.stderr,
          "second rtdaq run refused: rc %d, %s" % (second.returncode, second.stderr.strip()))

    fits = Fits()
    got = wait_for(lambda: [m for m in fits.collect(0.3) if m[0] > 0], 10)
    check(bool(got), "fits with ions on the stream")

    # proc.threshold: above every spot -> no ions within 1 s; 0 -> ions again.
    rc, out = ctl("set", "proc.threshold=60000")
    check(rc == 0 and "applied by rtdaq-proc" in out, "set proc.threshold=60000: %s" % out.strip())
    t0 = time.time()
    first_empty = wait_for(lambda: [m for m in fits.collect(0.05) if m[0] == 0], 1.0, 0)
    check(first_empty is not None, "an empty frame within 1 s (%.2f s)" % (time.time() - t0))
    later = fits.collect(0.5)
    check(later and all(m[0] == 0 for m in later),
          "every frame empty after that (%d frames, %d with ions)"
          % (len(later), sum(1 for m in later if m[0])))
    rc, out = ctl("set", "proc.threshold=0")
    check(rc == 0, "set proc.threshold=0: %s" % out.strip())
    back = wait_for(lambda: [m for m in fits.collect(0.05) if m[0] > 0], 1.0, 0)
    check(back is not None, "ions back within 1 s")

    # acq.roi.*: every fitted position inside the region (full-frame coordinates).
    X, Y, W, H = 100, 50, 120, 150
    rc, out = ctl("set", "acq.roi.x=%d" % X, "acq.roi.y=%d" % Y, "acq.roi.width=%d" % W,
                  "acq.roi.height=%d" % H)
    check(rc == 0 and "applied by rtdaq-acq" in out, "set ROI: %s" % out.strip())
    # Frames published before the ROI applied may still wait in the ring (proc behind
    # under load): the results of ROI frames (W x H) must all lie inside it, and every
    # frame fitted within 1 s of the acknowledgement must be one.
    got_roi = wait_for(lambda: [m for m in fits.collect(0.05) if (m[2], m[3]) == (W, H)], 1.0, 0)
    check(got_roi is not None, "ROI frames in the fits stream within 1 s")
    time.sleep(0.5)
    fits.drain()
    msgs = fits.collect(1.0)
    pos = [p for m in msgs for p in m[1]]
    inside = [p for p in pos if X <= p[0] < X + W and Y <= p[1] < Y + H]
    check(msgs and all((m[2], m[3]) == (W, H) for m in msgs),
          "every frame fitted after that is the %dx%d region (%d of %d)"
          % (W, H, sum(1 for m in msgs if (m[2], m[3]) == (W, H)), len(msgs)))
    check(len(pos) > 50 and len(inside) == len(pos),
          "ROI: %d of %d fitted positions inside [%d,%d)x[%d,%d)"
          % (len(inside), len(pos), X, X + W, Y, Y + H))
    rc, out = ctl("set", "acq.roi.x=250", "acq.roi.width=100")
    check(rc == 1 and "refused" in out and "exceeds the 300x300 frame" in out,
          "ROI outside the frame refused: %s" % out.strip())
    rc, out = ctl("params", "--json")
    p = {q["name"]: q for q in json.loads(out.splitlines()[0])["params"]} if rc == 0 else {}
    check(p.get("acq.roi.x", {}).get("requested") == X and p.get("acq.roi.x", {}).get("applied") == X,
          "refused ROI withdrawn: requested/applied x = %s/%s"
          % (p.get("acq.roi.x", {}).get("requested"), p.get("acq.roi.x", {}).get("applied")))
    rc, out = ctl("set", "acq.roi.x=0", "acq.roi.y=0", "acq.roi.width=0", "acq.roi.height=0")
    check(rc == 0, "ROI cleared")

    # acq.frame_rate_limit=2000: 2000 +- 1 % frames/s over 10 s, counted by acq.
    rc, out = ctl("set", "acq.frame_rate_limit=2000")
    check(rc == 0, "set acq.frame_rate_limit=2000: %s" % out.strip())
    time.sleep(0.5)
    f0, t0 = counter("acq", "frames.rx"), time.time()
    time.sleep(10)
    f1, t1 = counter("acq", "frames.rx"), time.time()
    r = (f1 - f0) / (t1 - t0)
    check(abs(r - 2000) <= 20, "frame rate limit 2000: %.1f frames/s over %.1f s" % (r, t1 - t0))
    rc, _ = ctl("set", "acq.frame_rate_limit=0")
    check(rc == 0, "frame rate limit off")

    # acq.packet_rate_limit=500 against 2 x 1000 packets/s: the ring gets ~500/s.
    rc, out = ctl("set", "acq.packet_rate_limit=500")
    check(rc == 0, "set acq.packet_rate_limit=500: %s" % out.strip())
    time.sleep(0.5)
    c0, t0 = counters(stat(), "acq")[0], time.time()
    time.sleep(4)
    c1, t1 = counters(stat(), "acq")[0], time.time()
    passed = ((c1["packets.rx"] - c1["packets.rate_limited"])
              - (c0["packets.rx"] - c0["packets.rate_limited"])) / (t1 - t0)
    check(abs(passed - 500) <= 25 and c1["packets.rate_limited"] > c0["packets.rate_limited"],
          "packet rate limit 500: %.1f packets/s published" % passed)
    rc, _ = ctl("set", "acq.packet_rate_limit=0")
    check(rc == 0, "packet rate limit off")

    # Refusals with their reasons.
    rc, out = ctl("set", "no.such.param=1")
    check(rc == 1 and "unknown parameter" in out, "unknown parameter: %s" % out.strip())
    rc, out = ctl("record", "start", "/nonexistent/dir/x")
    check(rc == 1 and "No such file or directory" in out, "record to a bad path: %s" % out.strip())
    w0 = int(counter("proc.w0", "pid"))  # the worker process (the segment's pid is its supervisor)
    os.kill(w0, signal.SIGSTOP)
    try:
        rc, out = ctl("set", "proc.max_iter=30", "--timeout", "0.5")
        check(rc == 1 and "rtdaq-proc" in out and ("pid %d" % w0) in out,
              "set with its owner stopped: %s" % out.strip())
    finally:
        os.kill(w0, signal.SIGCONT)
    applied = wait_for(lambda: {q["name"]: q for q in json.loads(ctl("params", "--json")[1]
                                                                  .splitlines()[0])["params"]}
                       ["proc.max_iter"].get("applied") == 30, 3)
    check(applied is not None, "applied once the worker runs again")

    # rtdaq-ctl SIGKILLed and restarted: stop stops the frames, start resumes them.
    old = pid_of("ctl")
    os.kill(old, signal.SIGKILL)
    new = wait_for(lambda: (lambda p: p if p and p != old else None)(pid_of("ctl")), 20, 0.2)
    check(new is not None, "rtdaq-ctl restarted (pid %s -> %s)" % (old, new))
    wait_for(lambda: ctl("status", "--json")[0] == 0, 10, 0.2)
    rc, out = wait_for(lambda: (lambda r: r if r[0] == 0 else None)(ctl("stop")), 5, 0.2) or (1, "")
    check(rc == 0 and "acknowledged by rtdaq-acq" in out, "stop after the ctl restart: %s" % out.strip())
    time.sleep(0.3)  # acq stores its counters every 100 ms
    a = counter("acq", "frames.rx")
    time.sleep(0.6)
    b = counter("acq", "frames.rx")
    check(b - a <= 1, "frames stopped (%d in 0.6 s)" % (b - a))
    rc, out = ctl("start")
    check(rc == 0, "start: %s" % out.strip())
    time.sleep(0.6)
    c = counter("acq", "frames.rx")
    check(c - b > 1000, "frames resumed (%d in 0.6 s)" % (c - b))

    # A writer that dies in the middle of a write, made deterministic: rtdaq-ctl stopped,
    # its seqlock word left odd (as a SIGKILL between W1 and W2 leaves it), then killed.
    # acq's bounded read gives up (ctl.read_busy), acq keeps publishing and follows the
    # next rtdaq-ctl, which does not adopt the torn block.
    import mmap
    cp = pid_of("ctl")
    os.kill(cp, signal.SIGSTOP)
    with open("/dev/shm/rtdaq.%s.ctl.params" % inst, "r+b") as f:
        m = mmap.mmap(f.fileno(), 4096)
        seq = struct.unpack_from("<Q", m, 64)[0]
        struct.pack_into("<Q", m, 64, seq | 1)
        m.close()
    busy0 = counter("acq", "ctl.read_busy")
    a = counter("acq", "frames.rx")
    time.sleep(1.0)
    b = counter("acq", "frames.rx")
    busy1 = counter("acq", "ctl.read_busy")
    check(b - a > 1000 and busy1 > busy0,
          "writer stopped mid-write: acq published %d frames in 1 s, %d bounded reads gave up"
          % (b - a, busy1 - busy0))
    os.kill(cp, signal.SIGKILL)
    os.kill(cp, signal.SIGCONT)
    wait_for(lambda: (lambda p: p if p and p != cp else None)(pid_of("ctl")), 20, 0.2)
    wait_for(lambda: ctl("status", "--json")[0] == 0, 10, 0.2)
    rc, out = wait_for(lambda: (lambda r: r if r[0] == 0 else None)(ctl("stop")), 5, 0.2) or (1, "")
    check(rc == 0, "stop through the next rtdaq-ctl: %s" % out.strip())
    rc, out = ctl("start")
    check(rc == 0, "start again: %s" % out.strip())

    # ctl SIGKILLed in the middle of writes, in a loop: acq keeps publishing.
    ctx = zmq.Context()
    stuck = 0
    for i in range(5):
        cp = wait_for(lambda: pid_of("ctl"), 20, 0.1)
        wait_for(lambda: ctl("status", "--json")[0] == 0, 10, 0.1)
        d = ctx.socket(zmq.DEALER)
        d.setsockopt(zmq.LINGER, 0)
        d.connect(CTL)
        for k in range(300):
            d.send_multipart([b"", json.dumps({"cmd": "set", "wait": False, "params": {
                "acq.frame_rate_limit": 0, "acq.roi.x": 0, "proc.max_iter": 20 + k % 5}}).encode()])
        time.sleep(0.002 * (i + 1))
        os.kill(cp, signal.SIGKILL)
        d.close()
        a = counter("acq", "frames.rx")
        time.sleep(1.0)
        b = counter("acq", "frames.rx")
        print("     kill %d: acq published %d frames in the next 1 s" % (i, b - a), flush=True)
        if b - a < 500:
            stuck += 1
    ctx.term()
    check(stuck == 0, "acq kept publishing through 5 ctl kills mid-write (%d stalls)" % stuck)
    check(launcher.poll() is None, "launcher still running")
finally:
    if fits:
        fits.s.close(0)
        fits.ctx.term()
    if launcher.poll() is None:
        launcher.send_signal(signal.SIGINT)
    try:
        out, err = launcher.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        launcher.kill()
        out, err = launcher.communicate()
    if failures:
        print(err[-4000:])
print("control: %d checks failed" % len(failures) if failures else "control: all checks passed")
sys.exit(1 if failures else 0)
