#!/usr/bin/python3
"""check_html.py CGVLM SCHEMA PNG_STATS: report.html is self-contained (no scripts, no network references,
figures inline) and renders: headless Chromium takes a screenshot that is checked to be non-blank
(decoded by png_stats.c with libpng: share of non-white pixels and number of distinct colours). Exits 77 (skip)
only when Chromium is absent."""
import os, re, shutil, struct, subprocess, sys, tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
BIN, SCHEMA, PNG_STATS = sys.argv[1], sys.argv[2], sys.argv[3]
CHROMIUM = "/usr/bin/chromium"
fails = 0


def fail(msg):
    global fails
    fails += 1
    print("FAIL " + msg)


work = tempfile.mkdtemp(prefix="cgvlm-report-html-")
try:
    db = os.path.join(work, "t.db")
    subprocess.run(["/usr/bin/python3", os.path.join(HERE, "make_db.py"), SCHEMA, db], check=True)
    out = os.path.join(work, "rep")
    subprocess.run([BIN, "report", "--db", db, "--sweep", "cg3", "--out", out, "--bootstrap", "200"], check=True)
    html = open(os.path.join(out, "report.html"), encoding="utf-8").read()
    if re.search(r"<script", html, re.I):
        fail("report.html has a script")
    if re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", html, re.I) or re.search(r"url\(\s*['\"]?https?:", html, re.I):
        fail("report.html references the network")
    if re.search(r"""<img[^>]+src=["'](?!data:)""", html):
        fail("report.html has an image that is not inline")
    nimg = len(re.findall(r"<img[^>]+src=\"data:image/png;base64,", html))
    if nimg != 7:
        fail("report.html has %d inline figures, want 7" % nimg)
    for text in ("Does contrastive alignment make the model", "Headline numbers", "Accuracy by category",
                 "Alignment quality", "Training loss", "Paired test and detectable effect", "Holm over 4 fractions", "Sweep configuration", "Code and environment", "OpenBLAS"):
        if text not in html:
            fail("report.html lacks '%s'" % text)

    if not os.access(CHROMIUM, os.X_OK):
        print("SKIP: %s not found; the screenshot check needs Debian's chromium" % CHROMIUM)
        sys.exit(77 if fails == 0 else 1)

    def screenshot(page, shot):
        profile = tempfile.mkdtemp(prefix="chromium-", dir=work)
        return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                               "--disable-background-networking", "--disable-component-update", "--disable-sync",
                               "--user-data-dir=" + profile, "--screenshot=" + shot, "--window-size=1200,2000",
                               "file://" + page], capture_output=True, text=True, timeout=120)

    # control: a blank page must fall under the thresholds used below
    blank = os.path.join(work, "blank.html")
    open(blank, "w").write("<!DOCTYPE html><html><body></body></html>")
    if screenshot(blank, os.path.join(work, "blank.png")).returncode == 0:
        st = subprocess.run([PNG_STATS, os.path.join(work, "blank.png")], check=True, capture_output=True, text=True).stdout.split()
        if float(st[2]) >= 0.03 or int(st[3]) >= 100:
            fail("the blank control page passes the non-blank thresholds: %r" % st)
    shot = os.path.join(work, "shot.png")
    r = screenshot(os.path.join(out, "report.html"), shot)
    if r.returncode != 0 or not os.path.exists(shot):
        fail("chromium failed (exit %d): %s" % (r.returncode, r.stderr[-2000:]))
    else:
        png = open(shot, "rb").read()
        if png[:8] != b"\x89PNG\r\n\x1a\n" or png[12:16] != b"IHDR":
            fail("the screenshot is not a PNG")
        w, h = struct.unpack(">II", png[16:24])
        st = subprocess.run([PNG_STATS, shot], check=True, capture_output=True, text=True).stdout.split()
        if (int(st[0]), int(st[1])) != (w, h):
            fail("png_stats and the IHDR disagree on the size")
        share, colours = float(st[2]), int(st[3])
        if (w, h) != (1200, 2000):
            fail("screenshot is %dx%d, want 1200x2000" % (w, h))
        print("screenshot: %.1f %% non-white pixels, %d distinct colours" % (100 * share, colours))
        if share < 0.03:
            fail("screenshot looks blank: %.2f %% non-white" % (100 * share))
        if colours < 100:
            fail("screenshot has only %d distinct colours (no figure rendered?)" % colours)
finally:
    if fails == 0:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print("outputs kept in " + work)
print("check_html: %s" % ("ok" if fails == 0 else "%d failures" % fails))
sys.exit(1 if fails else 0)
