#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Write the seed corpora of tests/fuzz (corpus/<target>/) and the issue-13 crash input
(regress/fragments/): a handful of valid inputs per target, in each target's input format
(see the opening comment of fuzz_<target>.c). Deterministic; standard library only.
Usage: tests/fuzz/gen_corpus.py  (rewrites the files in place)."""
import math
import os
import random
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def put(target, name, data, kind="corpus"):
    d = os.path.join(HERE, kind, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def pieces(*dgrams):
    """The datagram-sequence format: [u16 length LE][bytes] per datagram."""
    return b"".join(struct.pack("<H", len(d)) + d for d in dgrams)


# ---- sensor packets (acq/rtd_wire.h) ----
PKT_MAGIC, FRAG_MAGIC = 0x50445452, 0x46445452


def pkt(client, seq, samples, magic=PKT_MAGIC, version=1, ln=None):
    payload = struct.pack("<%dd" % len(samples), *samples)
    return struct.pack("<IHHIIQQ", magic, version, 0, client, len(payload) if ln is None else ln,
                       seq, 1_700_000_000_000_000_000 + seq) + payload


good = [pkt(1, s, [0.5 * s, -1.0]) for s in range(3)] + [pkt(2, 0, [3.0, 4.0, 5.0])]
put("stream", "whole", b"\x00" + b"".join(good))
put("stream", "split7", b"\x07" + b"".join(good))
put("stream", "split1", b"\x01" + b"".join(good[:2]))
put("stream", "gap_reorder", b"\x00" + pkt(5, 0, [1.0]) + pkt(5, 4, [1.0]) + pkt(5, 2, [1.0]))
put("stream", "bad_magic", b"\x03" + good[0] + pkt(1, 1, [1.0], magic=0x12345678) + good[2])
put("stream", "oversize", b"\x00" + good[0] + pkt(1, 1, [0.0] * 200))
put("stream", "cut", b"\x05" + good[0] + good[1][:40])

put("datagram", "two_packets", pieces(good[0] + good[1]))
put("datagram", "sequence", pieces(*[pkt(9, s, [float(s)]) for s in range(5)]))
put("datagram", "trailing", pieces(good[0] + b"\x01\x02\x03", good[1]))
put("datagram", "bad_version", pieces(pkt(1, 0, [1.0], version=2), good[3]))
put("datagram", "short_len", pieces(pkt(1, 0, [1.0, 2.0], ln=64)))

# ---- frame fragments ----


def frag(fid, index, count, w, h, off, ln, hdr_len=56):
    return struct.pack("<IHHQIIIIIIIIQ", FRAG_MAGIC, 1, hdr_len, fid, index, count, w, h, 2,
                       w * h * 2, off, ln, 1_700_000_000_000_000_000 + fid) + bytes(ln)


def frame(fid, w, h, chunk, order=None, skip=()):
    fb = w * h * 2
    count = (fb + chunk - 1) // chunk
    idx = order if order is not None else range(count)
    return [frag(fid, i, count, w, h, i * chunk, min(chunk, fb - i * chunk))
            for i in idx if i not in skip]


W, H = 64, 32  # 4096-byte frames
put("fragments", "in_order", b"\x00" + pieces(*frame(1, W, H, 1024), *frame(2, W, H, 1024)))
put("fragments", "reversed", b"\x00" + pieces(*frame(3, W, H, 1000, order=range(4, -1, -1))))
put("fragments", "one_fragment", b"\x00" + pieces(*frame(4, W, H, 4096)))
put("fragments", "missing_deliver",
    b"\x01" + pieces(*frame(5, W, H, 1024, skip=(1,)), b"", *frame(6, W, H, 1024, skip=(0,)),
                     *frame(7, W, H, 1024)))
put("fragments", "missing_drop", b"\x00" + pieces(*frame(8, W, H, 1024, skip=(3,)), b""))
put("fragments", "dup_late",
    b"\x00" + pieces(*frame(10, W, H, 2048), *frame(10, W, H, 2048), *frame(9, W, H, 2048)))
put("fragments", "odd_chunk", b"\x01" + pieces(*frame(11, 30, 10, 97)))
# Issue 13: fragment 65535 of 65536 into a frame of 2 (a heap overflow of the bitmap).
crash = b"\x00" + pieces(frag(7, 0, 2, 256, 128, 0, 32768), frag(7, 65535, 65536, 256, 128, 0, 16))
put("fragments", "issue13_two_datagrams", crash, kind="regress")
put("fragments", "issue13_selfconsistent",
    b"\x00" + pieces(frag(7, 0, 2, 256, 128, 0, 32768), frag(7, 65535, 65536, 256, 128, 65535, 1)),
    kind="regress")

# ---- recordings (acq/rtd_rec.h) ----
_T = []
for n in range(256):
    c = n
    for _ in range(8):
        c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
    _T.append(c)


def crc32c(data, crc=0):
    crc ^= 0xFFFFFFFF
    for b in data:
        crc = _T[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def file_hdr(hdr_len=64):
    h = bytearray(struct.pack("<8sHHIQQII16sII", b"RTDAQREC", 1, 0, hdr_len, 1_700_000_000 * 10**9,
                              1000, 4096, 64, b"fuzz", 0, 0))
    struct.pack_into("<I", h, 60, crc32c(bytes(h)))
    return bytes(h)


def rec(seq, typ, payload, ts):
    h = bytearray(struct.pack("<IIHHIQQQ", 0x43455252, len(payload), typ, 0, 0, seq, ts, ts + 5))
    struct.pack_into("<I", h, 12, crc32c(bytes(h) + payload))
    pad = (-len(payload)) % 8
    return bytes(h) + payload + bytes(pad)


def packet_payload(client, seq, n):
    body = struct.pack("<%dd" % n, *[float(i) for i in range(n)])
    return struct.pack("<IIQQ", client, len(body), seq, 1000 + seq) + body


def frame_payload(fid, w, h):
    return struct.pack("<QIIIIQ", fid, w, h, 2, 0, 5000 + fid) + bytes(range(256)) * (w * h * 2 // 256)


def recording(records, end=True, hdr_len=64):
    out = bytearray(file_hdr(hdr_len))
    out += bytes(hdr_len - 64)
    offs = []
    for i, (typ, p, ts) in enumerate(records):
        offs.append(len(out))
        out += rec(i, typ, p, ts)
    n = len(records)
    if end:
        idx_off = len(out)
        entries = b"".join(struct.pack("<QQ", o, r[2]) for o, r in zip(offs, records))
        out += rec(n, 3, struct.pack("<QII", 0, len(offs), 0) + entries, 10**6)
        out += rec(n + 1, 4, struct.pack("<QQ", n, idx_off), 10**6 + 1)
    return bytes(out)


recs = [(1, packet_payload(1, s, 3), 2000 + 10 * s) for s in range(4)] + \
       [(2, frame_payload(1, 16, 8), 3000), (1, packet_payload(2, 0, 1), 3100)]
put("rec", "complete", recording(recs))
put("rec", "cut_short", recording(recs, end=False)[:-20])
put("rec", "no_end", recording(recs[:3], end=False))
put("rec", "frames_only", recording([(2, frame_payload(i, 16, 16), 100 * i) for i in range(3)]))
put("rec", "header_only", recording([], end=False))
put("rec", "wide_header", recording(recs[:2], hdr_len=72))
# A header length that is not a multiple of 8 (checksum right): every record header after it
# would be read misaligned (UBSan: misaligned load); the reader must refuse the file.
put("rec", "misaligned_header", recording(recs[:2], hdr_len=68), kind="regress")

# ---- configuration (INI, acq's section and the shared one) ----
put("config", "acq", b"[acq]\nwidth = 256\nheight = 128\nframe-slots = 32\npartial = deliver\n"
    b"source = synthetic\nsynthetic-rate = 500\nmlock = false\nquiet = yes\n")
put("config", "shared", b"; every process reads one file\n[rtdaq]\ninstance = lab1\n"
    b"packet-port = 7100\n[proc]\nworkers = auto\n[acq]\nio = epoll\nmax-payload = 2048\n")
put("config", "record", b"[acq]\nrecord = /tmp/x.rtdrec\npacket-ring-bytes = 1048576\n"
    b"overflow = drop-newest\nframe-timeout-ms = 50\n# comment\n")
put("config", "bad_key", b"[acq]\nno-such-key = 1\n")
put("config", "bad_value", b"[acq]\nframe-slots = 3\n")
put("config", "syntax", b"[acq\nwidth 12\n")
put("config", "replay", b"[acq]\nsource = replay:rec.rtdrec\nframes = 10\nduration = 2.5\n")

# ---- raw frame files for `rtdaq fit-frames` ([w-8][h-8][mode] + u16 pixels) ----


def pixels(w, h, ions, seed):
    r = random.Random(seed)
    px = []
    for y in range(h):
        for x in range(w):
            v = 100 + r.randint(0, 10)
            for cx, cy, a in ions:
                v += int(a * math.exp(-((x - cx) ** 2 + (y - cy) ** 2) / 8.0))
            px.append(min(v, 65535))
    return struct.pack("<%dH" % len(px), *px)


def ff(name, w, h, mode, frames):
    put("fit_frames", name, bytes([w - 8, h - 8, mode]) + b"".join(frames))


ff("two_ions", 32, 24, 0, [pixels(32, 24, [(8, 8, 800), (22, 14, 600)], 1)])
ff("shm_mode", 16, 40, 1, [pixels(16, 40, [(8, 12, 900), (8, 28, 700)], 2)])
ff("bin1_mle", 24, 24, 6, [pixels(24, 24, [(12, 12, 1000)], 3), pixels(24, 24, [], 4)])
ff("flat", 16, 16, 0, [bytes(16 * 16 * 2)])
ff("truncated", 16, 16, 8, [pixels(16, 16, [(8, 8, 500)], 5)[:300]])
