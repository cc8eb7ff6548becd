# SPDX-License-Identifier: MIT
"""What the live page costs the acquisition: the demo at 10 kHz (synthetic camera, one fit
worker, one wavelet worker, ctl, packet simulator) with rtdaq-web, and a headless Chromium
that alternates between the live page and about:blank, in windows of --window seconds
(closed, open u16, closed, open u8, ...: interleaved in the same run). Per window: frames received,
dropped (every reason), processed, lost; rtdaq-web's and Chromium's CPU; WebSocket bytes and
frames sent. Not a pass/fail test: prints one JSON object per window and a summary.
Usage: measure_web.py BUILD [--windows 8] [--window 15] [--rate 10000]
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from webtest import System  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("build")
ap.add_argument("--windows", type=int, default=8)
ap.add_argument("--window", type=float, default=15)
ap.add_argument("--rate", type=int, default=10000)
a = ap.parse_args()

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402

HZ = os.sysconf("SC_CLK_TCK")


def cpu_s(pids):
    t = 0
    for p in pids:
        try:
            with open("/proc/%d/stat" % p) as f:
                f = f.read().rsplit(")", 1)[1].split()
            t += int(f[11]) + int(f[12])
        except (OSError, IndexError):
            pass
    return t / HZ


def children(pid):
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    kids = [int(x) for x in out.split()]
    return kids + [g for k in kids for g in children(k)]


def totals(s, st):
    c = lambda p, l: s.counter(st, p, l) or 0  # noqa: E731
    w = {}
    for p in st.get("processes", []):
        if p["process"] == "web":
            w = {x["label"]: x["value"] for x in p.get("counters", [])}
    fr = next((r for r in st.get("rings", []) if r["name"] == "frames"), {})
    return {"rx": c("acq", "frames.rx"),
            # frames.dropped includes ring.frames_dropped; the rate limit is counted apart.
            "dropped": c("acq", "frames.dropped") + c("acq", "frames.rate_limited"),
            "processed": sum(c("proc.w%d" % k, "frames.processed") for k in range(8)),
            "lost": sum(g.get("lost_dead", 0) for g in fr.get("groups", [])),
            "ws_bytes": w.get("ws.bytes", 0), "ws_frames": w.get("ws.frames", 0)}


sysm = System(a.build, "webmeas", rate=a.rate, workers="1", mode="both")
profile = tempfile.mkdtemp(prefix="rtdaq-web-measure-")
browser = None
try:
    if not sysm.wait_frames(60):
        sys.exit("system did not come up")
    sysm.start_web()
    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium")
    for o in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--disable-background-networking", "--disable-component-update", "--disable-sync",
              "--no-first-run", "--disable-features=BackForwardCache", "--window-size=1500,1300", "--user-data-dir=" + profile):
        opts.add_argument(o)
    browser = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=opts)
    browser.get("about:blank")
    time.sleep(5)  # past start-up
    rows = []
    for i in range(a.windows):
        page = i % 2 == 1
        enc = "u16" if i % 4 == 1 else "u8"  # open windows alternate the pixel encoding
        browser.get(sysm.base + "/" if page else "about:blank")
        time.sleep(1.0)  # the page connected (or closed) before the window starts
        if page:
            browser.execute_script(
                "const e = document.getElementById('enc'); e.value = '%s'; e.onchange();" % enc)
        cpids = [browser.service.process.pid] + children(browser.service.process.pid)
        t0, s0 = time.time(), totals(sysm, sysm.stat())
        w0, c0 = cpu_s([sysm.web.pid]), cpu_s(cpids)
        time.sleep(a.window)
        t1, s1 = time.time(), totals(sysm, sysm.stat())
        w1, c1 = cpu_s([sysm.web.pid]), cpu_s(cpids)
        dt = t1 - t0
        r = {"page": "open " + enc if page else "closed", "seconds": round(dt, 2)}
        r.update({k: s1[k] - s0[k] for k in s0})
        r["frames_per_s"] = round(r["rx"] / dt)
        r["web_cpu_pct"] = round(100 * (w1 - w0) / dt, 2)
        r["chromium_cpu_pct"] = round(100 * (c1 - c0) / dt, 1)
        r["ws_kB_per_s"] = round(r["ws_bytes"] / dt / 1000, 1)
        r["ws_frames_per_s"] = round(r["ws_frames"] / dt, 1)
        r["loadavg"] = os.getloadavg()[0]
        print(json.dumps(r), flush=True)
        rows.append(r)
    for state in ("closed", "open"):
        w = [r for r in rows if r["page"].startswith(state)]
        print(json.dumps({"summary": state, "windows": len(w),
                          "frames": sum(r["rx"] for r in w),
                          "dropped": sum(r["dropped"] for r in w),
                          "lost": sum(r["lost"] for r in w),
                          "web_cpu_pct": [r["web_cpu_pct"] for r in w],
                          "ws_kB_per_s": [r["ws_kB_per_s"] for r in w],
                          "ws_frames_per_s": [r["ws_frames_per_s"] for r in w]}), flush=True)
finally:
    if browser:
        browser.quit()
    sysm.close()
    shutil.rmtree(profile, ignore_errors=True)
