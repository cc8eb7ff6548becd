# SPDX-License-Identifier: MIT
"""The live page in a real browser: headless Chromium (Debian chromium + chromium-driver,
python3-selenium) against a running demo with the synthetic camera.

Checks, from the page and from outside: the frame canvas updates (frames drawn keeps rising,
and the canvas holds an image, not a blank); every ion marker is drawn at the synthetic
camera's true position within 1 px (the camera leaves its ground truth in each frame slot and
rtdaq-web forwards it; the markers come from rtdaq-proc's fits), and the overlay canvas really
has the marker colour on each ring; a click on an ion shows its details; a `set` typed into the
page is applied (read back through the API). Saves a screenshot with the test's output
(argument 2, or $RTD_WEB_SCREENSHOT). Skips (77) with a message where Chromium is absent.
Arguments: the build directory [screenshot path]. Exit 0 pass, 1 fail, 77 skip.
"""
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from webtest import System, check, finish, wait_for  # noqa: E402

build = sys.argv[1]
shot = os.environ.get("RTD_WEB_SCREENSHOT") or (sys.argv[2] if len(sys.argv) > 2 else
                                                os.path.join(build, "tests", "web",
                                                             "web_browser.png"))
chrome = shutil.which("chromium") or shutil.which("chromium-browser")
driver = shutil.which("chromedriver")
try:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
except ImportError:
    webdriver = None
if not chrome or not driver or webdriver is None:
    print("skip: needs chromium, chromedriver and python3-selenium "
          "(Debian: apt-get install chromium chromium-driver python3-selenium)")
    sys.exit(77)

profile = tempfile.mkdtemp(prefix="rtdaq-web-chromium-")
sysm = System(build, "webui", rate=1000, mode="both")
browser = None
try:
    check(sysm.wait_frames(40) is not None, "system up: frames fitted by proc.w0 within 40 s")
    sysm.start_web()
    opts = webdriver.ChromeOptions()
    opts.binary_location = chrome
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--disable-background-networking", "--disable-component-update", "--disable-sync",
              "--no-first-run", "--window-size=1500,1640", "--user-data-dir=" + profile):
        opts.add_argument(a)
    browser = webdriver.Chrome(service=Service(driver), options=opts)
    browser.set_script_timeout(20)
    def web_cpu_s():
        with open("/proc/%d/stat" % sysm.web.pid) as f:
            v = f.read().rsplit(")", 1)[1].split()
        return (int(v[11]) + int(v[12])) / os.sysconf("SC_CLK_TCK")
    cpu0, t0 = web_cpu_s(), time.time()
    browser.get(sysm.base + "/")
    js = browser.execute_script

    n1 = wait_for(lambda: js("return window.rtdWeb && window.rtdWeb.framesDrawn") or 0, 20)
    check(bool(n1), "the page drew its first frame (%s)" % n1)
    time.sleep(2)
    n2 = js("return window.rtdWeb.framesDrawn")
    check(n2 >= (n1 or 0) + 10, "the frame canvas keeps updating: %s -> %s frames in 2 s" %
          (n1, n2))
    spread = js("""
        const c = document.getElementById('frame'), d = c.getContext('2d')
            .getImageData(0, 0, c.width, c.height).data;
        let lo = 255, hi = 0;
        for (let i = 0; i < d.length; i += 4 * 97) { lo = Math.min(lo, d[i + 1]); hi = Math.max(hi, d[i + 1]); }
        return hi - lo;""")
    check(spread > 100, "the frame canvas holds an image (green channel spread %d)" % spread)

    # The u8 encoding (scaled by rtdaq-web) draws an image too; then back to u16.
    js("const e = document.getElementById('enc'); e.value = 'u8'; e.onchange();")
    got = wait_for(lambda: js("return window.rtdWeb.lastFrame.enc") == "u8", 10)
    spread8 = js("""
        const c = document.getElementById('frame'), d = c.getContext('2d')
            .getImageData(0, 0, c.width, c.height).data;
        let lo = 255, hi = 0;
        for (let i = 0; i < d.length; i += 4 * 97) { lo = Math.min(lo, d[i + 1]); hi = Math.max(hi, d[i + 1]); }
        return hi - lo;""")
    check(got and spread8 > 100, "u8 frames drawn after 'enc u8' (green spread %d)" % spread8)
    js("const e = document.getElementById('enc'); e.value = 'u16'; e.onchange();")
    check(wait_for(lambda: js("return window.rtdWeb.lastFrame.enc") == "u16", 10),
          "back to u16 frames")

    # Markers against truth, on a frame that has fits (threshold is the default here).
    def frame_with_fits():
        return js("""
            const s = window.rtdWeb, f = s.lastFrame;
            if (!f || !f.fits || !f.truth || !s.markers.length) return null;
            return {seq: f.seq, truth: f.truth, bin: s.bin, scale: s.scale,
                    markers: s.markers.map(m => ({id: m.id, cx: m.cx, cy: m.cy, r: m.r}))};""")
    fr = wait_for(frame_with_fits, 15)
    check(fr is not None, "a frame with fitted ions and the camera's truth was drawn")
    if fr:
        worst, unmatched = 0.0, 0
        for m in fr["markers"]:
            # Canvas to frame pixels: the inverse of the page's toCanvas().
            x = m["cx"] / fr["scale"] * fr["bin"] - 0.5
            y = m["cy"] / fr["scale"] * fr["bin"] - 0.5
            d = min(((x - tx) ** 2 + (y - ty) ** 2) ** 0.5 for tx, ty in fr["truth"])
            worst = max(worst, d)
            unmatched += d > 1.0
        check(len(fr["markers"]) == len(fr["truth"]),
              "one marker per true ion: %d markers, %d ions" % (len(fr["markers"]),
                                                                len(fr["truth"])))
        check(unmatched == 0, "every marker within 1 px of a true position (worst %.3f px)" %
              worst)
        painted = js("""
            const ctx = document.getElementById('overlay').getContext('2d');
            let n = 0;
            for (const m of window.rtdWeb.markers) {
              let hit = false;
              for (let a = 0; a < 16 && !hit; a++) {
                const x = Math.round(m.cx + m.r * Math.cos(a * Math.PI / 8));
                const y = Math.round(m.cy + m.r * Math.sin(a * Math.PI / 8));
                const p = ctx.getImageData(x - 1, y - 1, 3, 3).data;
                for (let i = 0; i < p.length; i += 4)
                  if (p[i + 1] > 200 && p[i] < 80 && p[i + 3] > 200) hit = true;
              }
              n += hit;
            }
            return [n, window.rtdWeb.markers.length];""")
        check(painted[0] == painted[1] and painted[1] > 0,
              "overlay canvas has the marker ring drawn for %d of %d ions" % tuple(painted))
        # A click on the first ion shows its details.
        m0 = js("const m = window.rtdWeb.markers[0]; return [m.cx, m.cy, m.id];")
        ov = browser.find_element(By.ID, "overlay")
        webdriver.ActionChains(browser).move_to_element_with_offset(
            ov, int(m0[0] - ov.size["width"] / 2), int(m0[1] - ov.size["height"] / 2)).click() \
            .perform()
        detail = browser.find_element(By.ID, "iondetail").text
        check(detail.startswith("ion "), "clicking an ion shows its fit: %r" % detail[:90])

    # Stats reached the page.
    check(wait_for(lambda: js("return window.rtdWeb.statsSeen") >= 2, 5) is not None,
          "the page received stats messages")
    summary = browser.find_element(By.ID, "summary").text
    check("frames received" in summary and "ring full" in summary and "rate limit" in summary,
          "counters panel filled (%r...)" % summary[:60])

    # The stated budget (docs/web.md): rtdaq-web under 10 % of one core with a page open.
    cpu = 100 * (web_cpu_s() - cpu0) / (time.time() - t0)
    check(cpu < 10, "rtdaq-web used %.1f %% of a core with the page open (budget 10 %%)" % cpu)

    # A set made from the page is applied.
    box = browser.find_element(By.ID, "setexpr")
    box.clear()
    box.send_keys("proc.threshold=123")
    browser.find_element(By.ID, "set").click()
    reply = wait_for(lambda: browser.find_element(By.ID, "reply").text or None, 10)
    check(reply and reply.startswith("200 set"), "the page shows the set reply: %r" %
          (reply or "")[:80])
    st, p, _ = sysm.http("/api/v1/params")
    vals = {q["name"]: q.get("value", q.get("requested")) for q in p.get("params", [])}
    check(vals.get("proc.threshold") == 123, "proc.threshold is 123 after the page's set (%s)" %
          vals.get("proc.threshold"))
    js("document.getElementById('setexpr').value = ''; document.getElementById('reply').textContent = '';")

    # A WCT job submitted from the page runs in rtdaq-web, finishes, and its map is drawn.
    browser.find_element(By.ID, "wctdemo").click()
    done = wait_for(lambda: "done" in browser.find_element(By.ID, "jobs").text, 60, 0.3)
    check(done, "the page's WCT job finished: %r" % browser.find_element(By.ID, "jobs").text[-80:])
    if done:
        browser.find_element(By.CSS_SELECTOR, "#jobs button[data-show]").click()
        drawn = wait_for(lambda: js("""
            const c = document.getElementById('jobmap'), d = c.getContext('2d')
                .getImageData(0, 0, c.width, c.height).data;
            let n = 0;
            for (let i = 3; i < d.length; i += 4 * 13) n += d[i] > 0;
            return n > 1000;"""), 10)
        check(drawn, "the finished job's coherence map is drawn")
    js("document.getElementById('reply').textContent = '';")
    # Let the wavelet panel and traces fill, then the screenshot.
    time.sleep(float(os.environ.get("RTD_WEB_SCREENSHOT_WAIT", "4")))
    js("window.scrollTo(0, 0);")
    os.makedirs(os.path.dirname(os.path.abspath(shot)), exist_ok=True)
    browser.save_screenshot(shot)
    check(os.path.getsize(shot) > 10000, "screenshot saved: %s" % shot)
finally:
    if browser:
        browser.quit()
    sysm.close()
    shutil.rmtree(profile, ignore_errors=True)
check(sysm.web is not None and sysm.web.returncode == 0,
      "rtdaq-web exited 0 on SIGINT (%s)" % (sysm.web.returncode if sysm.web else None))
finish()
