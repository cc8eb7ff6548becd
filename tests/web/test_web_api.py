# SPDX-License-Identifier: MIT
"""rtdaq-web's HTTP API and /metrics against a running system (real processes).

1. `rtdaq run` (synthetic camera at 1 kHz, one fit worker, ctl) and rtdaq-web on a free port.
2. /metrics is Prometheus text: one TYPE per family, counters end in _total, histograms have
   cumulative _bucket series ending in le="+Inf" equal to _count; the frame counters move
   with the frames, and agree with `rtdaq stat` read before and after (from outside).
3. /api/v1/counters: the same accounting, moving.
4. Control through the API: `set` is applied (params shows it); malformed JSON, an unknown
   parameter, an out-of-range value, an oversized body, an unknown path and a wrong method
   each get a 4xx with a JSON error, change nothing, and are counted in /api/v1/web.
5. POST /api/v1/wavelet/wct with PyCWT's argument names returns WCT, coi, freq and sig.
Arguments: the build directory. Exit 0 pass, 1 fail.
"""
import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from webtest import System, check, finish, parse_metrics  # noqa: E402

build = sys.argv[1]
sysm = System(build, "webapi", rate=1000)
try:
    check(sysm.wait_frames(40) is not None, "system up: frames fitted by proc.w0 within 40 s")
    sysm.start_web()
    check(sysm.port > 0, "rtdaq-web ready on port %d" % sysm.port)
    time.sleep(0.6)  # first snapshot with rates

    # 2. /metrics
    rx_before = sysm.counter(sysm.stat(), "acq", "frames.rx") or 0
    time.sleep(0.35)  # rtdaq-web snapshots every 250 ms: the one served is newer than rx_before
    st, text, ctype = sysm.http("/metrics")
    rx_after = sysm.counter(sysm.stat(), "acq", "frames.rx") or 0
    check(st == 200 and ctype.startswith("text/plain; version=0.0.4"), "/metrics 200 text/plain")
    try:
        samples, types = parse_metrics(text)
        parsed = True
    except ValueError as e:
        parsed = False
        print("  %s" % e)
    check(parsed, "/metrics parses as exposition format, one TYPE per family")
    if parsed:
        bad = [n for n, t in types.items() if t == "counter" and not n.endswith("_total")]
        check(not bad, "every counter ends in _total (%s)" % bad[:3])
        rx = samples.get("rtdaq_frames_received_total", [({}, -1)])[0][1]
        check(rx_before <= rx <= rx_after and rx > 0,
              "rtdaq_frames_received_total %d between rtdaq stat before %d and after %d" %
              (rx, rx_before, rx_after))
        drops = {l["reason"]: v for l, v in samples.get("rtdaq_frames_dropped_total", [])}
        acq_dropped = sysm.counter(sysm.stat(), "acq", "frames.dropped") or 0
        check(set(drops) == {"ring_full", "rate_limit", "camera_skip"} and
              drops["ring_full"] + drops["camera_skip"] <= acq_dropped,
              "rtdaq_frames_dropped_total by reason: %s, within acq's frames.dropped %d" %
              (drops, acq_dropped))
        hists = [n for n, t in types.items() if t == "histogram"]
        check(any(n.startswith("rtdaq_proc_latency") for n in hists),
              "proc's latency histogram exported (%s)" % hists[:4])
        hok = True
        for n in hists:
            series = {}
            for labels, v in samples.get(n + "_bucket", []):
                key = tuple(sorted((k, x) for k, x in labels.items() if k != "le"))
                series.setdefault(key, []).append((labels["le"], v))
            counts = {tuple(sorted(l.items())): v for l, v in samples.get(n + "_count", [])}
            for key, b in series.items():
                vals = [v for _, v in b]
                if b[-1][0] != "+Inf" or vals != sorted(vals) or counts.get(key) != vals[-1]:
                    hok = False
                    print("  bad histogram %s %s" % (n, key))
        check(hok and hists, "histograms: cumulative buckets, +Inf last and equal to _count")
        time.sleep(1.5)
        _, text2, _ = sysm.http("/metrics")
        rx2 = parse_metrics(text2)[0]["rtdaq_frames_received_total"][0][1]
        pr = samples["rtdaq_frames_processed_total"][0][1]
        pr2 = parse_metrics(text2)[0]["rtdaq_frames_processed_total"][0][1]
        check(rx2 - rx >= 500 and pr2 > pr,
              "frames move in /metrics: received +%d, processed +%d in 1.5 s at 1 kHz" %
              (rx2 - rx, pr2 - pr))

    # 3. /api/v1/counters
    st, c1, _ = sysm.http("/api/v1/counters")
    time.sleep(1.0)
    st2, c2, _ = sysm.http("/api/v1/counters")
    check(st == 200 and st2 == 200 and c1.get("ok") is True, "/api/v1/counters 200 with ok")
    check(c2["frames"]["received"] - c1["frames"]["received"] >= 500,
          "counters: frames received +%d in 1 s" %
          (c2["frames"]["received"] - c1["frames"]["received"]))
    fps = c2["rates"].get("frames_per_s", 0)
    # Loose: acq publishes its counters every 100 ms and a loaded machine makes the camera skip.
    check(500 <= fps <= 1300, "counters: %.0f frames/s for a 1 kHz camera" % fps)
    names = [p["process"] for p in c2["processes"]]
    check({"acq", "proc.w0", "ctl", "web"} <= set(names), "processes listed: %s" % names)

    # 4. Control through the API.
    st, p0, _ = sysm.http("/api/v1/params")
    def params(r):
        """name -> value of a params reply (a list of {name, value, ...})."""
        return {p["name"]: p.get("value", p.get("requested")) for p in r.get("params", [])}
    check(st == 200 and p0.get("ok") is True and "proc.threshold" in params(p0),
          "GET /api/v1/params forwarded to rtdaq-ctl")
    st, r, _ = sysm.http("/api/v1/set", {"params": {"proc.threshold": 77}})
    check(st == 200 and r.get("ok") is True, "set proc.threshold=77: %d %s" % (st, r))
    _, p1, _ = sysm.http("/api/v1/params")
    check(params(p1).get("proc.threshold") == 77, "params shows proc.threshold = 77")
    _, w0, _ = sysm.http("/api/v1/web")
    bad_cases = [
        ("malformed JSON", "/api/v1/set", None, b'{"params": {', None, 400, "bad_json"),
        ("unknown parameter", "/api/v1/set", {"params": {"proc.nonexistent": 1}}, None, None,
         400, "unknown_param"),
        ("out-of-range value", "/api/v1/set", {"params": {"proc.threshold": -3}}, None, None,
         400, "out_of_range"),
        ("body over 64 KiB", "/api/v1/set", None, b"x" * 70000, None, 413, "too_large"),
        ("unknown endpoint", "/api/v1/shutdown", {}, None, None, 404, "not_found"),
        ("GET on a command", "/api/v1/set", None, None, "GET", 405, "method"),
        ("path escape", "/../../etc/passwd", None, None, None, 404, "not_found"),
        ("WCT without dt", "/api/v1/wavelet/wct", {"y1": [1] * 20, "y2": [1] * 20}, None, None,
         400, "bad_request"),
    ]
    for what, path, body, raw, method, want, code in bad_cases:
        st, r, ctype = sysm.http(path, body=body, raw=raw, method=method)
        check(st == want and isinstance(r, dict) and r.get("ok") is False and
              r.get("code") == code and r.get("error"),
              "%s: %d %s (want %d %s)" % (what, st, r if isinstance(r, dict) else r[:80], want,
                                          code))
    _, p2, _ = sysm.http("/api/v1/params")
    check(params(p2) == params(p1), "the bad requests changed no parameter")
    _, w1, _ = sysm.http("/api/v1/web")
    d4 = w1["counters"]["http.responses_4xx"] - w0["counters"]["http.responses_4xx"]
    check(d4 == len(bad_cases), "4xx counted: +%d for %d bad requests" % (d4, len(bad_cases)))
    check(w1["counters"]["bad.json"] > w0["counters"]["bad.json"] and
          w1["counters"]["bad.body_too_large"] == w0["counters"]["bad.body_too_large"] + 1,
          "bad requests counted by cause")

    # 5. The old system's WCT request.
    n = 256
    y1 = [math.sin(2 * math.pi * i / 16) + 0.1 * math.cos(i * 1.7) for i in range(n)]
    y2 = [math.sin(2 * math.pi * i / 16 + 0.5) + 0.1 * math.sin(i * 2.3) for i in range(n)]
    st, r, _ = sysm.http("/api/v1/wavelet/wct", {"y1": y1, "y2": y2, "dt": 1, "dj": 1 / 12,
                                                 "s0": -1, "J": -1, "sig": True,
                                                 "significance_level": 0.95, "normalize": True,
                                                 "mc_count": 20, "backend": "numba"}, timeout=120)
    res = r.get("job", {}).get("result", {}) if isinstance(r, dict) else {}
    ok = st == 200 and r.get("ok") is True and len(res.get("WCT", [])) == res.get("nscales") \
        and len(res["WCT"][0]) == n and len(res.get("coi", [])) == n \
        and len(res.get("sig", [])) == res.get("nscales")
    check(ok, "POST /api/v1/wavelet/wct: %d, %s x %s map, coi, sig" %
          (st, res.get("nscales"), n))
    if ok:
        per = res["period"]
        j16 = min(range(len(per)), key=lambda j: abs(per[j] - 16))
        mid = res["WCT"][j16][n // 2]
        check(mid > 0.9, "coherence of two 16-sample sines at period %.1f: %.3f" % (per[j16], mid))
finally:
    sysm.close()
check(sysm.web.returncode == 0 if sysm.web else False,
      "rtdaq-web exited 0 on SIGINT (%s)" % (sysm.web.returncode if sysm.web else None))
finish()
