// SPDX-License-Identifier: MIT
// rtdaq live page. One WebSocket (/ws) brings binary frames (with their fitted
// ions) at the pace this page asks for ("next" after each drawn frame) and a
// JSON stats message four times a second (counters, trace points, wavelet
// rows). Control goes through the HTTP API (/api/v1/...). Plain canvas code.
'use strict';

const $ = (id) => document.getElementById(id);
const state = {
  framesDrawn: 0, lastFrame: null, markers: [], scale: 1, bin: 1,
  traces: new Map(), // ion id -> [[t_ms, x, y, amp, sigma, A], ...]
  wav: new Map(),    // client -> [{t, v}]
  stats: null, ws: null, statsSeen: 0,
};
window.rtdWeb = state; // for the browser test and for poking at it from the console

// ---- colour maps: 256-entry RGB tables built from a few anchor colours ------------------
function ramp(stops) {
  const lut = new Uint8Array(256 * 3);
  for (let i = 0; i < 256; i++) {
    const p = i / 255 * (stops.length - 1), k = Math.min(Math.floor(p), stops.length - 2), f = p - k;
    for (let c = 0; c < 3; c++) lut[i * 3 + c] = Math.round(stops[k][c] * (1 - f) + stops[k + 1][c] * f);
  }
  return lut;
}
const CMAPS = {
  gray: ramp([[0, 0, 0], [255, 255, 255]]),
  viridis: ramp([[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]]),
  inferno: ramp([[0, 0, 4], [87, 16, 110], [188, 55, 84], [249, 142, 9], [252, 255, 164]]),
  hot: ramp([[0, 0, 0], [230, 0, 0], [255, 210, 0], [255, 255, 255]]),
};

// ---- frames ------------------------------------------------------------------------------
const off = document.createElement('canvas');
function drawFrame(buf) {
  const dv = new DataView(buf);
  if (buf.byteLength < 8 || dv.getUint32(0, true) !== 0x46575452) return; // "RTWF"
  const jl = dv.getUint32(4, true);
  const hdr = JSON.parse(new TextDecoder().decode(new Uint8Array(buf, 8, jl)));
  const start = (8 + jl + 7) & ~7;
  // u16: ADU as acquired; u8: (ADU - lo) * 255 / (hi - lo), scaled by rtdaq-web.
  const u8 = hdr.enc === 'u8', px = u8 ? new Uint8Array(buf, start, hdr.bw * hdr.bh) : new Uint16Array(buf, start, hdr.bw * hdr.bh);
  const toRaw = (v) => u8 ? hdr.lo + v * (hdr.hi - hdr.lo) / 255 : v, fromRaw = (a) => u8 ? (a - hdr.lo) * 255 / (hdr.hi - hdr.lo) : a;
  let lo = fromRaw(+$('lo').value), hi = fromRaw(+$('hi').value);
  if ($('contrast').value === 'auto') { // 0.5 % and 99.9 % of a subsample
    const s = [];
    for (let i = 0; i < px.length; i += 7) s.push(px[i]);
    s.sort((a, b) => a - b);
    lo = s[Math.floor(s.length * 0.005)];
    hi = Math.max(s[Math.min(s.length - 1, Math.floor(s.length * 0.999))], lo + 1);
    for (let i = 0; i < px.length; i++) if (px[i] > hi) hi = px[i]; // ions at full scale
  }
  const lut = CMAPS[$('cmap').value] || CMAPS.gray;
  off.width = hdr.bw; off.height = hdr.bh;
  const octx = off.getContext('2d'), img = octx.createImageData(hdr.bw, hdr.bh), d = img.data;
  const k = 255 / (hi - lo);
  for (let i = 0; i < px.length; i++) {
    let v = Math.round((px[i] - lo) * k);
    v = v < 0 ? 0 : v > 255 ? 255 : v;
    d[4 * i] = lut[3 * v]; d[4 * i + 1] = lut[3 * v + 1]; d[4 * i + 2] = lut[3 * v + 2]; d[4 * i + 3] = 255;
  }
  octx.putImageData(img, 0, 0);
  const cv = $('frame'), ctx = cv.getContext('2d');
  const scale = Math.min(cv.width / hdr.bw, cv.height / hdr.bh);
  ctx.imageSmoothingEnabled = false;
  ctx.fillStyle = '#000'; ctx.fillRect(0, 0, cv.width, cv.height);
  ctx.drawImage(off, 0, 0, hdr.bw * scale, hdr.bh * scale);
  state.scale = scale; state.bin = hdr.bin; state.lastFrame = hdr; state.framesDrawn++;
  drawOverlay(hdr);
  const f = hdr.fits;
  $('frameinfo').textContent = `#${hdr.id} ${hdr.w}×${hdr.h}` + (hdr.bin > 1 ? ` (bin ${hdr.bin})` : '') +
    ` · ${f ? f.n_ions + ' ions, latency ' + f.latency_us.toFixed(0) + ' µs' : 'no fits'}` +
    ` · contrast ${Math.round(toRaw(lo))}–${Math.round(toRaw(hi))} · ${hdr.enc} ${(buf.byteLength / 1024).toFixed(0)} KiB` + (hdr.partial ? ' · PARTIAL' : '');
}

// Frame pixel (x = column, y = row; pixel centres at integers) to canvas, and back.
const toCanvas = (x, y) => [(x / state.bin + 0.5 / state.bin) * state.scale, (y / state.bin + 0.5 / state.bin) * state.scale];

function drawOverlay(hdr) {
  const cv = $('overlay'), ctx = cv.getContext('2d');
  ctx.clearRect(0, 0, cv.width, cv.height);
  state.markers = [];
  if ($('showtruth').checked && hdr.truth) {
    ctx.strokeStyle = '#ff00ff'; ctx.lineWidth = 1;
    for (const [x, y] of hdr.truth) {
      const [cx, cy] = toCanvas(x, y);
      ctx.beginPath(); ctx.moveTo(cx - 4, cy); ctx.lineTo(cx + 4, cy); ctx.moveTo(cx, cy - 4); ctx.lineTo(cx, cy + 4); ctx.stroke();
    }
  }
  const roi = state.roi; // acq.roi.* from the control socket's params (0 x 0: whole frame)
  if (roi && roi.w > 0 && roi.h > 0) {
    const [x0, y0] = toCanvas(roi.x - 0.5, roi.y - 0.5), [x1, y1] = toCanvas(roi.x + roi.w - 0.5, roi.y + roi.h - 0.5);
    ctx.strokeStyle = '#ffd54f'; ctx.lineWidth = 1; ctx.setLineDash([6, 4]);
    ctx.strokeRect(x0, y0, x1 - x0, y1 - y0); ctx.setLineDash([]);
  }
  if (!hdr.fits) return;
  ctx.font = '11px system-ui'; ctx.lineWidth = 2;
  for (const ion of hdr.fits.ions) {
    const [cx, cy] = toCanvas(ion.x, ion.y);
    const r = Math.max(5, 2 * ion.sigma / state.bin * state.scale);
    const ok = ion.state === 0;
    ctx.strokeStyle = ok ? '#00ff66' : '#ff3030';
    ctx.beginPath(); ctx.arc(cx, cy, r, 0, 2 * Math.PI); ctx.stroke();
    ctx.fillStyle = ctx.strokeStyle;
    ctx.fillText(`${ion.id >= 0 ? ion.id : '?'} σ${ion.sigma.toFixed(1)}`, cx + r + 2, cy - r);
    state.markers.push({ id: ion.id, x: ion.x, y: ion.y, cx, cy, r, ion });
  }
}

$('overlay').addEventListener('click', (e) => {
  const rect = e.target.getBoundingClientRect(), mx = e.clientX - rect.left, my = e.clientY - rect.top;
  let best = null, bd = 1e9;
  for (const m of state.markers) {
    const d = Math.hypot(m.cx - mx, m.cy - my);
    if (d < bd) { bd = d; best = m; }
  }
  if (!best || bd > 30) { $('iondetail').textContent = 'no ion there'; return; }
  const i = best.ion;
  $('iondetail').textContent = `ion ${i.id} (index ${i.index}): x ${i.x.toFixed(2)} y ${i.y.toFixed(2)} px, ` +
    `amplitude ${i.amp.toFixed(1)}, σ ${i.sigma.toFixed(2)}` + (i.A ? `, σy ${i.sigma_y.toFixed(2)}, A ${i.A.toFixed(2)}` : '') +
    `, offset ${i.offset.toFixed(1)}, χ² ${i.chi2.toExponential(2)}, state ${i.state}, ${i.iters} iterations` +
    (i.flags ? `, flags ${i.flags}` : '');
});

// ---- stats, traces, wavelets --------------------------------------------------------------
const fmt = (v, d = 0) => v === undefined || v === null ? '–' : Number(v).toLocaleString('en', { maximumFractionDigits: d });

function onStats(s) {
  state.stats = s; state.statsSeen++;
  $('instance').textContent = s.instance;
  const fr = s.frames, r = s.rates || {};
  const dropped = fr.dropped.total;
  const acq = s.processes.find((p) => p.process === 'acq');
  const lat = []; // frame -> result latency over the last 10 s, per worker
  for (const p of s.processes) {
    const h = p.latency && p.latency.latency;
    if (h && p.process.startsWith('proc.w')) lat.push(h.window_10s);
  }
  const p99 = lat.length ? Math.max(...lat.map((h) => h.p99_us)) : null;
  const p50 = lat.length ? Math.max(...lat.map((h) => h.p50_us)) : null;
  $('headline').innerHTML = `<b>${fmt(r.frames_per_s)}</b> frames/s · ${fmt(r.processed_per_s)} processed/s · ` +
    `${fmt(r.fits_per_s)} fits/s · <span class="${dropped ? 'bad' : 'good'}">${fmt(dropped)} dropped</span>`;
  const rows = [
    ['frames received', fmt(fr.received)], ['processed', fmt(fr.processed)],
    ['dropped', fmt(fr.dropped.total)], ['· ring full', fmt(fr.dropped.ring_full)],
    ['· camera skip or incomplete', fmt(fr.dropped.camera_skip)], ['· rate limit', fmt(fr.dropped.rate_limit)],
    ['lost (dead worker)', fr.ring ? fmt(fr.ring.lost_dead) : '–'],
    ['frame ring fill', fr.ring ? `${fmt(fr.ring.fill)} / ${fmt(fr.ring.slots)} (${(100 * fr.ring.fill_ratio).toFixed(1)} %)` : '–'],
    ['latency p50 / p99 (10 s)', p50 === null ? '–' : `${fmt(p50)} / ${fmt(p99)} µs`],
    ['packets/s', fmt(r.packets_per_s)],
    ['recording', `${fmt(s.recording.records)} kept, ` +
      `<span class="${s.recording.dropped ? 'bad' : ''}">${fmt(s.recording.dropped)} dropped</span>`],
  ];
  $('summary').innerHTML = rows.map(([a, b]) => `<tr><td>${a}</td><td>${b}</td></tr>`).join('');
  $('procs').innerHTML = '<tr><th>process</th><th>pid</th><th>CPU %</th><th>busy %</th><th>status</th></tr>' +
    s.processes.map((p) => {
      const busy = p.rates && p.rates.busy_ns !== undefined ? (p.rates.busy_ns / 1e7).toFixed(1) : '–';
      const cls = p.alive ? (p.heartbeat_age_s > 3 ? 'warn' : '') : 'bad';
      return `<tr class="${cls}"><td>${p.process}</td><td>${p.pid}</td><td>${p.cpu_percent.toFixed(1)}</td>` +
        `<td>${busy}</td><td>${(p.status || '').slice(0, 60).replace(/</g, '&lt;')}</td></tr>`;
    }).join('');
  void acq;
  for (const pt of s.traces || []) {
    for (const [id, x, y, amp, sigma, A] of pt.ions) {
      if (!state.traces.has(id)) state.traces.set(id, []);
      state.traces.get(id).push([pt.t, x, y, amp, sigma, A]);
    }
  }
  for (const w of s.wavelet || []) { // band power per channel, coherence per channel pair
    const key = w.kind === 'power' ? `power ${w.client}` : `coherence ${w.clients[0]}–${w.clients[1]}`;
    if (!state.wav.has(key)) {
      state.wav.set(key, []);
      const o = document.createElement('option'); o.value = o.textContent = key; $('wclient').appendChild(o);
    }
    state.wav.get(key).push({ t: w.t, v: w.v });
  }
  const span = +$('span').value * 1000, now = Date.now();
  for (const [id, a] of state.traces) {
    while (a.length && a[0][0] < now - span) a.shift();
    if (!a.length) state.traces.delete(id);
  }
  for (const a of state.wav.values()) while (a.length && a[0].t < now - 120000) a.shift();
  drawTraces(now - span, now);
  drawWavelet();
}

const COLORS = ['#4fc3f7', '#ffb74d', '#81c784', '#e57373', '#ba68c8', '#fff176', '#4db6ac', '#f06292', '#a1887f', '#90a4ae'];
function plot(id, label, t0, t1, series) {
  const cv = $(id), ctx = cv.getContext('2d'), W = cv.width, H = cv.height;
  ctx.clearRect(0, 0, W, H);
  let lo = Infinity, hi = -Infinity;
  for (const s of series) for (const [, v] of s.pts) { if (v < lo) lo = v; if (v > hi) hi = v; }
  ctx.fillStyle = '#8a96a3'; ctx.font = '11px system-ui';
  ctx.fillText(label, 4, 12);
  if (!(hi >= lo)) return;
  if (hi === lo) { hi += 0.5; lo -= 0.5; }
  const pad = (hi - lo) * 0.05; lo -= pad; hi += pad;
  ctx.fillText(hi.toPrecision(4), W - 60, 12); ctx.fillText(lo.toPrecision(4), W - 60, H - 3);
  for (const s of series) {
    ctx.strokeStyle = s.color; ctx.lineWidth = 1; ctx.beginPath();
    let first = true;
    for (const [t, v] of s.pts) {
      const x = (t - t0) / (t1 - t0) * W, y = H - (v - lo) / (hi - lo) * H;
      if (first) ctx.moveTo(x, y); else ctx.lineTo(x, y);
      first = false;
    }
    ctx.stroke();
  }
}

function drawTraces(t0, t1) {
  const ids = [...state.traces.keys()].sort((a, b) => a - b);
  const ser = (k) => ids.map((id, i) => ({ color: COLORS[i % COLORS.length], pts: state.traces.get(id).map((p) => [p[0], p[k]]) }));
  plot('tx', 'x (px) per ion', t0, t1, ser(1));
  plot('ty', 'y (px) per ion', t0, t1, ser(2));
  plot('tamp', 'amplitude (ADU)', t0, t1, ser(3));
  const shm = ids.some((id) => state.traces.get(id).some((p) => p[5]));
  plot('tA', shm ? 'motion amplitude A (px)' : 'σ (px)', t0, t1, ser(shm ? 5 : 4));
  // Position histogram: x of every ion over the span, 0.1 px bins around each ion's mean.
  const cv = $('hist'), ctx = cv.getContext('2d'), W = cv.width, H = cv.height;
  ctx.clearRect(0, 0, W, H);
  ctx.fillStyle = '#8a96a3'; ctx.fillText('x − mean (px) histogram, all ions', 4, 12);
  const bins = new Array(81).fill(0);
  for (const id of ids) {
    const a = state.traces.get(id), m = a.reduce((s, p) => s + p[1], 0) / a.length;
    for (const p of a) { const b = Math.round((p[1] - m) * 20) + 40; if (b >= 0 && b <= 80) bins[b]++; }
  }
  const mx = Math.max(1, ...bins);
  ctx.fillStyle = '#4fc3f7';
  bins.forEach((c, i) => ctx.fillRect(i * W / 81, H - c / mx * (H - 16), W / 81 - 1, c / mx * (H - 16)));
  ctx.fillStyle = '#8a96a3'; ctx.fillText('−2', 2, H - 2); ctx.fillText('+2', W - 16, H - 2);
}

function heat(ctx, W, H, rows, cols, get, lo, hi) {
  const img = ctx.createImageData(cols, rows), lut = CMAPS.viridis;
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) {
    const v = get(r, c), i = 4 * (r * cols + c);
    if (v === null || v === undefined || !isFinite(v)) { img.data[i + 3] = 0; continue; }
    const k = Math.max(0, Math.min(255, Math.round((v - lo) / (hi - lo) * 255)));
    img.data[i] = lut[3 * k]; img.data[i + 1] = lut[3 * k + 1]; img.data[i + 2] = lut[3 * k + 2]; img.data[i + 3] = 255;
  }
  const o = document.createElement('canvas'); o.width = cols; o.height = rows;
  o.getContext('2d').putImageData(img, 0, 0);
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(o, 0, 0, W, H);
}

function drawWavelet() {
  const key = $('wclient').value, a = state.wav.get(key);
  const cv = $('wmap'), ctx = cv.getContext('2d');
  if (!a || !a.length) return;
  const coh = key.startsWith('coherence');
  $('wnote').textContent = `${key}: ${coh ? 'mean coherence R² (0–1)' : 'log10 band power'}, ` +
    `time → (last ${a.length} windows), bands ↓ (rtdaq-proc --bands)`;
  const nb = a[0].v.length, val = (v) => coh ? v : v > 0 ? Math.log10(v) : null;
  let lo = coh ? 0 : Infinity, hi = coh ? 1 : -Infinity;
  if (!coh) for (const w of a) for (const v of w.v) { const l = val(v); if (l !== null) { lo = Math.min(lo, l); hi = Math.max(hi, l); } }
  if (!(hi > lo)) hi = lo + 1;
  ctx.clearRect(0, 0, cv.width, cv.height);
  heat(ctx, cv.width, cv.height, nb, a.length, (r, c) => val(a[c].v[r]), lo, hi);
}

// A finished WCT job: time × period map, the cone of influence and the 95 % contour.
function drawJob(res) {
  const cv = $('jobmap'), ctx = cv.getContext('2d'), W = cv.width, H = cv.height;
  const ns = res.WCT.length, n = res.WCT[0].length;
  ctx.clearRect(0, 0, W, H);
  heat(ctx, W, H, ns, n, (r, c) => res.WCT[r][c], 0, 1);
  const p0 = Math.log2(res.period[0]), p1 = Math.log2(res.period[ns - 1]);
  ctx.strokeStyle = '#fff'; ctx.lineWidth = 1; ctx.setLineDash([4, 3]); ctx.beginPath(); // COI
  for (let t = 0; t < n; t++) {
    const y = (Math.log2(Math.max(res.coi[t], res.period[0])) - p0) / (p1 - p0) * H;
    if (t) ctx.lineTo(t / n * W, y); else ctx.moveTo(0, y);
  }
  ctx.stroke(); ctx.setLineDash([]);
  if (res.sig) { // outline the cells above the per-scale significance level
    ctx.fillStyle = '#000';
    for (let r = 0; r < ns; r++) {
      const s = res.sig[r];
      if (s === null) continue;
      for (let t = 1; t < n; t++) {
        const a = res.WCT[r][t - 1] > s, b = res.WCT[r][t] > s;
        const ab = r + 1 < ns && res.sig[r + 1] !== null && (res.WCT[r + 1][t] > res.sig[r + 1]) !== b;
        if (a !== b || ab) ctx.fillRect(t / n * W, r / ns * H, Math.max(1, W / n), Math.max(1, H / ns));
      }
    }
  }
  ctx.fillStyle = '#fff'; ctx.fillText(`WCT: period ${res.period[0].toPrecision(3)} (top) – ${res.period[ns - 1].toPrecision(3)}; dashed: COI; black: ${res.significance_level} level`, 4, 12);
}

// ---- control -----------------------------------------------------------------------------
async function api(path, body) {
  const opt = body === undefined ? {} : { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) };
  let text;
  try {
    const r = await fetch('api/v1/' + path, opt);
    text = await r.text();
    $('reply').textContent = `${r.status} ${path}: ${text}`;
    return JSON.parse(text);
  } catch (e) {
    $('reply').textContent = `${path}: ${e} ${text || ''}`;
    return null;
  }
}
$('start').onclick = () => api('start', {});
$('stop').onclick = () => api('stop', {});
$('set').onclick = () => {
  const m = /^\s*([\w.]+)\s*=\s*(\S+)\s*$/.exec($('setexpr').value);
  if (!m) { $('reply').textContent = 'write NAME=VALUE, e.g. proc.threshold=50'; return; }
  const v = Number(m[2]);
  api('set', { params: { [m[1]]: isNaN(v) ? m[2] : v } });
};
$('recstart').onclick = () => api('record', { action: 'start', path: $('recpath').value });
$('recstop').onclick = () => api('record', { action: 'stop' });

async function refreshJobs() {
  const r = await fetch('api/v1/wavelet/jobs').then((x) => x.json()).catch(() => null);
  if (!r || !r.jobs) return;
  $('jobs').innerHTML = '<tr><th>job</th><th>status</th><th>progress</th><th></th></tr>' + r.jobs.map((j) =>
    `<tr><td>${j.id}</td><td>${j.status}</td><td>${(100 * j.progress).toFixed(0)} % ${j.message}</td>` +
    `<td>${j.status === 'running' || j.status === 'queued' ? `<button data-cancel="${j.id}">cancel</button>` :
      j.status === 'done' ? `<button data-show="${j.id}">show</button>` : ''}</td></tr>`).join('');
  if (r.jobs.some((j) => j.status === 'running' || j.status === 'queued')) setTimeout(refreshJobs, 500);
}
$('jobs').addEventListener('click', async (e) => {
  const c = e.target.dataset.cancel, s = e.target.dataset.show;
  if (c) { await fetch('api/v1/wavelet/jobs/' + c, { method: 'DELETE' }); refreshJobs(); }
  if (s) { const r = await fetch('api/v1/wavelet/jobs/' + s).then((x) => x.json()); if (r.job.result) drawJob(r.job.result); }
});
$('jobsrefresh').onclick = refreshJobs;
$('wctdemo').onclick = async () => { // two noisy sines sharing a 32-sample period half the time
  const n = 512, y1 = [], y2 = [];
  for (let i = 0; i < n; i++) {
    const c = Math.sin(2 * Math.PI * i / 32);
    y1.push(c + 0.5 * Math.random()); y2.push((i > n / 2 ? c : Math.sin(2 * Math.PI * i / 11)) + 0.5 * Math.random());
  }
  await api('wavelet/wct', { y1, y2, dt: 1, mc_count: 60, async: true, backend: 'cpu' });
  refreshJobs();
};

// ---- connection ----------------------------------------------------------------------------
function connect() {
  const url = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + location.pathname.replace(/[^/]*$/, '') + 'ws';
  const ws = new WebSocket(url);
  ws.binaryType = 'arraybuffer';
  state.ws = ws;
  ws.onopen = () => { $('conn').textContent = 'live'; $('conn').className = 'good'; ws.send('fps ' + $('fps').value); ws.send('enc ' + $('enc').value); };
  ws.onclose = () => { $('conn').textContent = 'disconnected: retrying'; $('conn').className = 'bad'; setTimeout(connect, 1000); };
  ws.onmessage = (e) => {
    if (typeof e.data === 'string') { onStats(JSON.parse(e.data)); return; }
    requestAnimationFrame(() => { // draw at the display's pace, then ask for the next one
      try { drawFrame(e.data); } finally { if (ws.readyState === 1) ws.send('next'); }
    });
  };
}
async function pollParams() { // the ROI rectangle follows the parameters
  try {
    const r = await fetch('api/v1/params').then((x) => x.json());
    const v = {};
    for (const p of r.params || []) v[p.name] = p.value !== undefined ? p.value : p.requested;
    state.roi = { x: v['acq.roi.x'] || 0, y: v['acq.roi.y'] || 0, w: v['acq.roi.width'] || 0, h: v['acq.roi.height'] || 0 };
  } catch (e) { /* ctl not running: no ROI shown */ }
  setTimeout(pollParams, 3000);
}
pollParams();
$('fps').onchange = () => state.ws && state.ws.readyState === 1 && state.ws.send('fps ' + $('fps').value);
$('wclient').onchange = drawWavelet;
$('enc').onchange = () => state.ws && state.ws.readyState === 1 && state.ws.send('enc ' + $('enc').value);
connect();
