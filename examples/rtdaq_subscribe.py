#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Subscribe to rtdaq-ctl's ZeroMQ publisher and print what arrives.

Every message is multipart: [topic, JSON header] or [topic, JSON header, raw
payload] (topics "fits", "wavelet" and "frames" carry the payload; see
docs/zmq.md for every field). Needs pyzmq (Debian: python3-zmq); numpy is
used, when present, to summarise frame pixels.

    rtdaq_subscribe.py                                  # every topic, forever
    rtdaq_subscribe.py --topic stats. --count 5         # five stats messages
    rtdaq_subscribe.py --topic frames --json            # one JSON line each
    rtdaq_subscribe.py --pub tcp://daq:5556 --server-key server.pub \\
        --client-key me.secret                          # a CURVE endpoint
"""
import argparse
import json
import sys
import time

import zmq

try:
    import numpy as np
except ImportError:  # frames are summarised without it
    np = None

SCHEMA_VERSION = 1


def read_key(path):
    with open(path) as f:
        return f.read().strip().encode()


def summarise(topic, hdr, payload):
    """One human-readable line per message."""
    if topic.startswith("stats.") and topic != "stats.rings":
        rates = hdr.get("rates", {})
        top = max(rates.items(), key=lambda kv: kv[1], default=("-", 0.0))
        busy = hdr.get("busy_pct")
        return "%-16s pid %-7s %-5s busy %s  %s %.0f/s  status: %s" % (
            topic, hdr.get("pid"), "alive" if hdr.get("alive") else "DEAD",
            "-" if busy is None else "%.1f%%" % busy, top[0], top[1], hdr.get("status"))
    if topic == "stats.rings":
        return "stats.rings      " + ", ".join(
            "%s fill %.1f%% drop %d" % (r["name"], 100 * r["fill"], r["dropped"])
            for r in hdr.get("rings", []))
    if hdr.get("kind") == "end":
        return "%-16s END of %s (%s, %d records)" % (topic, hdr.get("ring"), hdr.get("reason"),
                                                    hdr.get("records", 0))
    if topic == "fits" and "frame" in hdr:
        fr = hdr["frame"]
        return "fits             %s frame %s: %d ions (%d converged), latency %.2f ms" % (
            hdr.get("ring"), fr.get("frame_id"), hdr.get("ions", 0), fr.get("n_converged", 0),
            1e3 * fr.get("latency_s", 0.0))
    if topic == "frames" and payload is not None:
        fr = hdr.get("frame", {})
        extra = ""
        if np is not None and fr.get("pixfmt") == 2 and len(payload) >= 2:
            px = np.frombuffer(payload[: len(payload) // 2 * 2], dtype="<u2")
            extra = " min %d max %d mean %.1f" % (px.min(), px.max(), px.mean())
        return "frames           id %s %sx%s %d bytes%s" % (
            fr.get("frame_id"), fr.get("width"), fr.get("height"), len(payload), extra)
    return "%-16s %s seq %s, %d payload bytes" % (topic, hdr.get("ring", ""), hdr.get("seq"),
                                                  0 if payload is None else len(payload))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pub", default="tcp://127.0.0.1:5556", help="publisher endpoint")
    ap.add_argument("--topic", action="append", default=None,
                    help="topic prefix to subscribe to (repeatable; default: all)")
    ap.add_argument("--count", type=int, default=0, help="exit after N messages (0 = never)")
    ap.add_argument("--timeout", type=float, default=0,
                    help="exit with status 1 if nothing arrives for S seconds (0 = wait forever)")
    ap.add_argument("--json", action="store_true", help="print each header as one JSON line")
    ap.add_argument("--server-key", help="server public key file (CURVE)")
    ap.add_argument("--client-key", help="our secret key file (CURVE)")
    a = ap.parse_args()

    ctx = zmq.Context.instance()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    if a.server_key:
        sub.curve_serverkey = read_key(a.server_key)
        if a.client_key:
            secret = read_key(a.client_key)
            sub.curve_secretkey = secret
            sub.curve_publickey = zmq.curve_public(secret)
        else:
            sub.curve_publickey, sub.curve_secretkey = zmq.curve_keypair()
    for t in a.topic or [""]:
        sub.setsockopt(zmq.SUBSCRIBE, t.encode())
    sub.connect(a.pub)

    seen = 0
    last = time.monotonic()
    poller = zmq.Poller()
    poller.register(sub, zmq.POLLIN)
    while a.count == 0 or seen < a.count:
        if not poller.poll(200):
            if a.timeout and time.monotonic() - last > a.timeout:
                print("no message for %.1f s from %s" % (a.timeout, a.pub), file=sys.stderr)
                return 1
            continue
        parts = sub.recv_multipart()
        last = time.monotonic()
        topic = parts[0].decode(errors="replace")
        hdr = json.loads(parts[1]) if len(parts) > 1 else {}
        payload = parts[2] if len(parts) > 2 else None
        if hdr.get("version", SCHEMA_VERSION) > SCHEMA_VERSION:
            print("note: %s has schema version %s, this script knows %d" %
                  (topic, hdr.get("version"), SCHEMA_VERSION), file=sys.stderr)
        if a.json:
            out = dict(hdr)
            out["_topic"] = topic
            out["_payload_bytes"] = 0 if payload is None else len(payload)
            print(json.dumps(out), flush=True)
        else:
            print(summarise(topic, hdr, payload), flush=True)
        seen += 1
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
