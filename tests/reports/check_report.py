#!/usr/bin/python3
"""check_report.py CGVLM SCHEMA: builds a results db with known values (make_db.py), runs
`cgvlm report` on it and checks every number of summary.json against an independent computation
from the raw tables with numpy / scipy (means, sample sds, t quantiles and t-intervals, the ratio
to generative-only at 100 %, paired differences, the smallest fraction at 95 %), the bootstraps
against oracle.py (the documented scheme, exactly), the CSVs, and the figures: valid PNG (signature,
IHDR size) and SVG (XML), and .dat files holding the expected points."""
import csv, json, math, os, re, sqlite3, struct, subprocess, sys, tempfile
import xml.etree.ElementTree as ET

import numpy as np
from scipy import stats

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from oracle import boot_questions, boot_ratio_seeds

BIN, SCHEMA = sys.argv[1], sys.argv[2]
work = tempfile.mkdtemp(prefix="cgvlm-report-test-")
DB = os.path.join(work, "t.db")
subprocess.run(["/usr/bin/python3", os.path.join(HERE, "make_db.py"), SCHEMA, DB], check=True)
con = sqlite3.connect(DB)
fails = 0


def fail(msg):
    global fails
    fails += 1
    print("FAIL " + msg)


def close(what, got, want, tol=1e-9):
    if got is None or want is None or not (abs(got - want) <= tol * max(1.0, abs(want))):
        fail("%s: got %r, want %r" % (what, got, want))


def report(sweep, *args):
    out = os.path.join(work, "out-" + sweep)
    r = subprocess.run([BIN, "report", "--db", DB, "--sweep", sweep, "--out", out] + list(args), capture_output=True, text=True)
    if r.returncode != 0:
        fail("report %s: exit %d: %s" % (sweep, r.returncode, r.stderr))
        sys.exit(1)
    return out, json.load(open(os.path.join(out, "summary.json")))


def values(sweep, bench, metric, category=""):
    """{(lambda, fraction): [(run_id, seed, value)]} straight from the tables, by run id."""
    rows = con.execute(
        "SELECT r.lambda, r.fraction, r.run_id, r.seed, e.value FROM evals e JOIN run_tasks rt ON rt.task_id = e.task_id "
        "JOIN runs r ON r.run_id = rt.run_id JOIN sweeps s ON s.sweep_id = r.sweep_id "
        "WHERE s.name = ? AND e.benchmark = ? AND e.metric = ? AND e.category = ? ORDER BY r.run_id",
        (sweep, bench, metric, category)).fetchall()
    out = {}
    for lam, frac, rid, seed, v in rows:
        out.setdefault((lam, frac), []).append((rid, seed, v))
    return out


def correctness(run_id, bench, method):
    rows = con.execute("SELECT p.question_id, p.correct FROM predictions p JOIN run_tasks rt ON rt.task_id = p.task_id "
                       "WHERE rt.run_id = ? AND p.benchmark = ? AND p.method = ?", (run_id, bench, method)).fetchall()
    return dict(rows)


def paired(a, b):
    q = sorted(set(a) & set(b))
    return np.array([a[k] for k in q]), np.array([b[k] for k in q])


def check_t_cell(what, cell, vals):
    x = np.array([v for _, _, v in vals])
    if cell["n"] != len(x):
        fail("%s: n %d, want %d" % (what, cell["n"], len(x)))
        return
    close(what + " mean", cell["mean"], x.mean(), 1e-12)
    if len(x) >= 2:
        close(what + " sd", cell["sd"], x.std(ddof=1), 1e-12)
        close(what + " t quantile", cell["t_quantile"], stats.t.ppf(0.975, len(x) - 1), 1e-8)
        # identical values: a zero-width interval (scipy returns nan for scale 0)
        lo, hi = stats.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=stats.sem(x)) if x.std() > 0 else (x.mean(), x.mean())
        close(what + " lo", cell["lo"], lo, 1e-8)
        close(what + " hi", cell["hi"], hi, 1e-8)
        if cell["interval"] != "t":
            fail("%s: interval %s, want t" % (what, cell["interval"]))


# ---------------------------------------------------------------- cg3: three seeds
out3, s3 = report("cg3", "--bootstrap", "400", "--seed", "7")
lam_of = [l["lambda"] for l in s3["lines"]]
if not s3["cg"] or lam_of != [0, 1] or s3["x_axis"] != "instruct.fraction" or s3["xs"] != [0.01, 0.1, 0.5, 1.0]:
    fail("cg3 shape: cg %r lines %r x %r xs %r" % (s3["cg"], lam_of, s3["x_axis"], s3["xs"]))
if s3["primary"] != {"benchmark": "world", "metric": "accuracy_likelihood"}:
    fail("primary metric %r" % s3["primary"])
if s3["runs"] != {"total": 24, "done": 24, "failed": 0, "other": 0}:
    fail("run counts %r" % s3["runs"])
ncells = 0
for metric, bench in (("accuracy_likelihood", "world"), ("accuracy_letter", "world"), ("caption_ppl", "alignment"),
                      ("retrieval_r1", "alignment"), ("retrieval_r5", "alignment"), ("text_ppl", "alignment")):
    ref = values("cg3", bench, metric)
    for c in s3["cells"]:
        if c["metric"] == metric and c["benchmark"] == bench:
            key = (lam_of[c["line"]], c["x"])
            check_t_cell("cg3 %s %r" % (metric, key), c, ref.pop(key, []))
            ncells += 1
    if ref:
        fail("cg3 %s: cells missing from summary: %r" % (metric, list(ref)))
if ncells != 6 * 8:
    fail("cg3: %d cells, want 48" % ncells)
for c in s3["categories"]:
    ref = values("cg3", "world", "accuracy_likelihood", c["category"])
    check_t_cell("cg3 category %s" % c["category"], c, ref[(lam_of[c["line"]], c["x"])])
if len(s3["categories"]) != 4 * 8:
    fail("cg3: %d category cells, want 32" % len(s3["categories"]))

acc = values("cg3", "world", "accuracy_likelihood")
base = np.mean([v for _, _, v in acc[(0, 1.0)]])
h = s3["headline"]
close("cg3 baseline value", h["baseline_value"], base, 1e-12)
close("cg3 chance", h["chance"], np.mean([1 / len(json.loads(t)) for (t,) in con.execute(
    "SELECT p.scores_json FROM predictions p JOIN run_tasks rt ON rt.task_id = p.task_id JOIN runs r ON r.run_id = rt.run_id "
    "JOIN sweeps s ON s.sweep_id = r.sweep_id WHERE s.name = 'cg3' AND p.method = 'likelihood'")]), 1e-12)
if len(h["rows"]) != 4:
    fail("cg3 headline rows: %d" % len(h["rows"]))
smallest = None
for row in h["rows"]:
    f = row["x"]
    on = [v for _, _, v in acc[(1, f)]]
    off = {seed: v for _, seed, v in acc[(0, f)]}
    close("cg3 ratio %g" % f, row["ratio"]["mean"], np.mean(on) / base, 1e-12)
    lo, hi = boot_ratio_seeds(on, [v for _, _, v in acc[(0, 1.0)]], 400, 7, row["ratio"]["boot_label"])
    if row["ratio"]["boot_label"] != "ratio|world|accuracy_likelihood|align.lambda=1|x=%.17g" % f:
        fail("cg3 ratio label %r" % row["ratio"]["boot_label"])
    close("cg3 ratio %g lo (bootstrap over seeds)" % f, row["ratio"]["lo"], lo, 1e-12)
    close("cg3 ratio %g hi (bootstrap over seeds)" % f, row["ratio"]["hi"], hi, 1e-12)
    d = np.array([v - off[seed] for _, seed, v in acc[(1, f)]])
    close("cg3 diff %g" % f, row["diff"]["mean"], d.mean(), 1e-12)
    lo, hi = stats.t.interval(0.95, len(d) - 1, loc=d.mean(), scale=stats.sem(d))
    close("cg3 diff %g lo" % f, row["diff"]["lo"], lo, 1e-8)
    close("cg3 diff %g hi" % f, row["diff"]["hi"], hi, 1e-8)
    if smallest is None and np.mean(on) >= 0.95 * base:
        smallest = f
if h["smallest_fraction_95"] != smallest:
    fail("cg3 smallest fraction at 95 %%: %r, want %r" % (h["smallest_fraction_95"], smallest))

# CSV agrees with the summary
rows = list(csv.DictReader(open(os.path.join(out3, "data_efficiency.csv"))))
if len(rows) != 16:
    fail("data_efficiency.csv: %d rows, want 16" % len(rows))
for r in rows:
    ref = [v for _, _, v in values("cg3", r["benchmark"], r["metric"])[(float(r["lambda"]), float(r["fraction"]))]]
    close("data_efficiency.csv mean", float(r["mean"]), np.mean(ref), 1e-9)

# figures: PNG + SVG valid, the .dat holds the expected points
for name in ("data_efficiency", "data_efficiency_world_accuracy_letter", "loss_align", "loss_instruct", "loss_lm_pretrain",
             "categories", "alignment"):
    png = open(os.path.join(out3, name + ".png"), "rb").read()
    if png[:8] != b"\x89PNG\r\n\x1a\n" or png[12:16] != b"IHDR":
        fail("%s.png is not a PNG" % name)
    else:
        w, hgt = struct.unpack(">II", png[16:24])
        if not (800 <= w <= 3000 and 400 <= hgt <= 3000) or len(png) < 10000:
            fail("%s.png: %dx%d, %d bytes" % (name, w, hgt, len(png)))
    try:
        root = ET.parse(os.path.join(out3, name + ".svg")).getroot()
        if not root.tag.endswith("svg") or len(list(root.iter())) < 50:
            fail("%s.svg: root %s, %d elements" % (name, root.tag, len(list(root.iter()))))
    except ET.ParseError as e:
        fail("%s.svg does not parse: %s" % (name, e))
    if not os.path.exists(os.path.join(out3, name + ".gp")):
        fail("%s.gp missing" % name)


def dat_blocks(path):
    blocks, cur = [], None
    for line in open(path):
        if line.startswith("# line") or line.startswith("# curve") or line.startswith("# panel"):
            cur = {"title": line.split(":", 1)[1].strip(), "rows": []}
            blocks.append(cur)
        elif line.strip() and not line.startswith("#"):
            cur["rows"].append([float(v) for v in line.split()])
    return blocks


blocks = dat_blocks(os.path.join(out3, "data_efficiency.dat"))
if [b["title"] for b in blocks] != ["generative only (λ = 0)", "contrastive (λ = 1)"]:
    fail("data_efficiency.dat blocks: %r" % [b["title"] for b in blocks])
for lam, b in zip((0, 1), blocks):
    if [r[0] for r in b["rows"]] != [0.01, 0.1, 0.5, 1.0]:
        fail("data_efficiency.dat x values %r" % [r[0] for r in b["rows"]])
    for x, mean, lo, hi, n, has in b["rows"]:
        v = np.array([v for _, _, v in acc[(lam, x)]])
        tlo, thi = stats.t.interval(0.95, len(v) - 1, loc=v.mean(), scale=stats.sem(v))
        close(".dat mean", mean, v.mean(), 1e-12)
        close(".dat lo", lo, tlo, 1e-8)
        close(".dat hi", hi, thi, 1e-8)
        if n != len(v) or has != 1:
            fail(".dat n %r has %r" % (n, has))
cb = dat_blocks(os.path.join(out3, "categories.dat"))
if len(cb) != 4 * 2:
    fail("categories.dat: %d blocks, want 8" % len(cb))
for b in cb:
    cat, label = b["title"].split(" | ")
    lam = 1 if label.startswith("contrastive") else 0
    ref = values("cg3", "world", "accuracy_likelihood", cat)
    for x, mean, lo, hi, n, has in b["rows"]:
        close("categories.dat %s %s mean" % (cat, label), mean, np.mean([v for _, _, v in ref[(lam, x)]]), 1e-12)
lb = dat_blocks(os.path.join(out3, "loss_align.dat"))
titles = sorted(b["title"] for b in lb)
want = sorted(["generative only loss (3 tasks)", "generative only loss_gen (3 tasks)", "contrastive loss (3 tasks)",
               "contrastive loss_gen (3 tasks)", "contrastive loss_con (3 tasks)"])
if titles != want:
    fail("loss_align.dat curves %r, want %r" % (titles, want))
for b in lb:
    group, metric = b["title"].rsplit(" (", 1)[0].rsplit(" ", 1)
    lam_sql = "r.lambda > 0" if group == "contrastive" else "r.lambda = 0"
    ref = dict(con.execute(
        "SELECT m.step, AVG(m.value) FROM metrics m JOIN metric_names n ON n.name_id = m.name_id WHERE n.name = ? AND m.task_id IN "
        "(SELECT t.task_id FROM tasks t JOIN run_tasks rt ON rt.task_id = t.task_id JOIN runs r ON r.run_id = rt.run_id "
        "JOIN sweeps s ON s.sweep_id = r.sweep_id WHERE s.name = 'cg3' AND t.kind = 'align' AND " + lam_sql + ") GROUP BY m.step",
        (metric,)).fetchall())
    got = {r[0]: r[1] for r in b["rows"]}
    if set(got) != set(ref) or any(abs(got[k] - ref[k]) > 1e-9 for k in ref):
        fail("loss_align.dat %s differs from the mean over tasks" % b["title"])

# ---------------------------------------------------------------- cg1: one seed -> bootstraps over questions
out1, s1 = report("cg1", "--bootstrap", "300", "--seed", "3")
lam1 = [l["lambda"] for l in s1["lines"]]
acc1 = values("cg1", "world", "accuracy_likelihood")
for c in s1["cells"]:
    if c["benchmark"] != "world":
        if c["interval"] != "none":
            fail("cg1 %s: interval %s with one seed and no predictions" % (c["metric"], c["interval"]))
        continue
    key = (lam1[c["line"]], c["x"])
    (rid, _, v), = values("cg1", "world", c["metric"])[key]
    close("cg1 mean", c["mean"], v, 1e-12)
    want_label = "acc|world|%s|align.lambda=%s|x=%.17g" % (c["metric"], "%g" % key[0], key[1])
    if c["interval"] != "bootstrap_questions" or c["boot_label"] != want_label:
        fail("cg1 cell interval %r label %r, want %r" % (c["interval"], c.get("boot_label"), want_label))
        continue
    ok = correctness(rid, "world", c["metric"].split("_", 1)[1])
    col = np.array([ok[k] for k in sorted(ok)])
    close("cg1 accuracy from predictions", v, col.mean(), 1e-12)
    lo, hi = boot_questions([col, col], "mean", 300, 3, want_label)
    close("cg1 %r lo" % (key,), c["lo"], lo, 1e-12)
    close("cg1 %r hi" % (key,), c["hi"], hi, 1e-12)
# independent of the RNG scheme: numpy's generator against a run with many replicates; the interval
# must agree within resampling noise plus one step of the lattice of accuracies (1/#questions)
_, s1big = report("cg1", "--bootstrap", "5000", "--seed", "3")
for c in s1big["cells"]:
    if c["interval"] != "bootstrap_questions":
        continue
    (rid, _, v), = values("cg1", "world", c["metric"])[(lam1[c["line"]], c["x"])]
    ok = correctness(rid, "world", c["metric"].split("_", 1)[1])
    col = np.array([ok[k] for k in sorted(ok)])
    idx = np.random.default_rng(1).integers(0, len(col), size=(40000, len(col)))
    ref = np.percentile(col[idx].mean(1), [2.5, 97.5])
    tol = 0.05 * (ref[1] - ref[0]) + 1.01 / len(col)
    if abs(c["lo"] - ref[0]) > tol or abs(c["hi"] - ref[1]) > tol:
        fail("cg1 %s interval [%g, %g] far from numpy's [%g, %g]" % (c["boot_label"], c["lo"], c["hi"], ref[0], ref[1]))
(brid, _, bval), = acc1[(0, 1.0)]
for row in s1["headline"]["rows"]:
    f = row["x"]
    (rid_on, _, von), = acc1[(1, f)]
    (rid_off, _, voff), = acc1[(0, f)]
    close("cg1 ratio", row["ratio"]["mean"], von / bval, 1e-12)
    close("cg1 diff", row["diff"]["mean"], von - voff, 1e-12)
    if row["ratio"]["interval"] != "bootstrap_questions" or row["diff"]["interval"] != "bootstrap_questions":
        fail("cg1 headline intervals %s / %s" % (row["ratio"]["interval"], row["diff"]["interval"]))
    a, b = paired(correctness(rid_on, "world", "likelihood"), correctness(brid, "world", "likelihood"))
    lo, hi = boot_questions([a, b], "ratio", 300, 3, row["ratio"]["boot_label"])
    close("cg1 ratio %g lo" % f, row["ratio"]["lo"], lo, 1e-12)
    close("cg1 ratio %g hi" % f, row["ratio"]["hi"], hi, 1e-12)
    a, b = paired(correctness(rid_on, "world", "likelihood"), correctness(rid_off, "world", "likelihood"))
    lo, hi = boot_questions([a, b], "diff", 300, 3, row["diff"]["boot_label"])
    close("cg1 diff %g lo" % f, row["diff"]["lo"], lo, 1e-12)
    close("cg1 diff %g hi" % f, row["diff"]["hi"], hi, 1e-12)
md = open(os.path.join(out1, "report.md")).read()
if "bootstrap interval over benchmark questions" not in md or "single seed" not in md:
    fail("cg1 report.md does not say its intervals are bootstraps over questions")
if "bootstrap interval over benchmark questions" not in open(os.path.join(out1, "data_efficiency.gp")).read().replace("\\n", " "):
    fail("cg1 figure title does not say its interval is a bootstrap over questions")

# same seed -> same numbers; another seed -> other bootstrap intervals, same means
_, s1b = report("cg1", "--bootstrap", "300", "--seed", "3")
if s1b["cells"] != s1["cells"]:
    fail("cg1: the same --seed gave different numbers")
_, s1c = report("cg1", "--bootstrap", "300", "--seed", "4")
if [c["mean"] for c in s1c["cells"]] != [c["mean"] for c in s1["cells"]] or \
        all(c["lo"] == d["lo"] for c, d in zip(s1c["cells"], s1["cells"]) if c["interval"] != "none"):
    fail("cg1: --seed 4 should change the bootstrap intervals and nothing else")

# ---------------------------------------------------------------- generic sweep: any axes
outg, sg = report("generic")
if sg["cg"] or sg["x_axis"] != "lm_pretrain.lr" or [l["key"] for l in sg["lines"]] != ['model.adapter="linear"', 'model.adapter="mlp2x"']:
    fail("generic shape: cg %r x %r lines %r" % (sg["cg"], sg["x_axis"], [l["key"] for l in sg["lines"]]))
if "headline" in sg:
    fail("generic sweep has a CG headline")
for c in sg["cells"]:
    rows = con.execute(
        "SELECT e.value FROM evals e JOIN run_tasks rt ON rt.task_id = e.task_id JOIN runs r ON r.run_id = rt.run_id "
        "JOIN sweeps s ON s.sweep_id = r.sweep_id JOIN run_params pl ON pl.run_id = r.run_id AND pl.path = 'lm_pretrain.lr' "
        "JOIN run_params pa ON pa.run_id = r.run_id AND pa.path = 'model.adapter' "
        "WHERE s.name = 'generic' AND e.metric = ? AND e.category = '' AND pl.value_num = ? AND pa.value_json = ? ORDER BY r.run_id",
        (c["metric"], c["x"], sg["lines"][c["line"]]["key"].split("=", 1)[1])).fetchall()
    check_t_cell("generic %s" % c["metric"], c, [(0, 0, v) for (v,) in rows])
if len(sg["cells"]) != 2 * 2 * 2:
    fail("generic: %d cells, want 8" % len(sg["cells"]))
if not os.path.exists(os.path.join(outg, "by_lm_pretrain_lr.png")):
    fail("generic: no figure against the first numeric axis")
mdg = open(os.path.join(outg, "report.md")).read()
if "Does contrastive" in mdg or "accuracy_likelihood on world" not in mdg:
    fail("generic report.md: headline present or metric tables missing")

# ---------------------------------------------------------------- edge cases: no numeric axis, no axes, no baseline
for sweep, nlines, runs in (("strings", 2, {"total": 4, "done": 4, "failed": 0, "other": 0}),
                            ("noaxes", 1, {"total": 3, "done": 3, "failed": 0, "other": 0}),
                            ("partial", 1, {"total": 8, "done": 7, "failed": 1, "other": 0})):
    oute, se = report(sweep)
    if len(se["lines"]) != nlines or se["runs"] != runs:
        fail("%s: %d lines, runs %r" % (sweep, len(se["lines"]), se["runs"]))
    md = open(os.path.join(oute, "report.md")).read()
    if re.search(r"\bnan\b", md, re.I) or "Does contrastive" in md:
        fail("%s: report.md shows nan or a headline it cannot have" % sweep)
    for c in se["cells"]:
        if c["metric"] == "accuracy_likelihood":
            want = [v for (v,) in con.execute(
                "SELECT e.value FROM evals e JOIN run_tasks rt ON rt.task_id = e.task_id JOIN runs r ON r.run_id = rt.run_id "
                "JOIN sweeps s ON s.sweep_id = r.sweep_id WHERE s.name = ? AND e.metric = 'accuracy_likelihood' AND e.category = '' "
                "AND (r.fraction IS NULL OR r.fraction = ?) AND r.params_json LIKE ? ORDER BY r.run_id",
                (sweep, c["x"], "%" + se["lines"][c["line"]]["key"].split("=", 1)[-1] + "%")).fetchall()]
            check_t_cell("%s cell" % sweep, c, [(0, 0, v) for v in want])
partial = json.load(open(os.path.join(work, "out-partial", "summary.json")))
one = [c for c in partial["cells"] if c["metric"] == "accuracy_likelihood" and c["x"] == 0.5]
if len(one) != 1 or one[0]["n"] != 1 or one[0]["interval"] != "bootstrap_questions":
    fail("partial: the cell with one run left should be a question bootstrap: %r" % one)

# ---------------------------------------------------------------- paired tests, Holm, MDE, seeds needed
from scipy import optimize
import warnings
warnings.simplefilter("ignore", RuntimeWarning)  # scipy's nct warns in far tails it does not need here


def power(ncp, df, alpha):
    tc = stats.t.ppf(1 - alpha / 2, df)
    return stats.nct.sf(tc, df, ncp) + stats.nct.cdf(-tc, df, ncp)


def mde_ref(sd, n, alpha=0.05):
    """The smallest true difference detected with 80 % power: scipy's noncentral t, solved by brentq."""
    ncp = optimize.brentq(lambda d: power(d, n - 1, alpha) - 0.8, 1e-6, 300, xtol=1e-13)
    return ncp * sd / math.sqrt(n)


def holm_ref(p):
    order = sorted(range(len(p)), key=lambda k: p[k])
    adj, run = [None] * len(p), 0.0
    for i, k in enumerate(order):
        run = max(run, min(1.0, (len(p) - i) * p[k]))
        adj[k] = run
    return adj


def check_tests(sweep, summ, outdir, target=None):
    """Every headline row's test against scipy from the raw tables; returns the rows' expected MDEs (points)."""
    acc = values(sweep, "world", "accuracy_likelihood")
    rows = summ["headline"]["rows"]
    ps, mdes = [], []
    for row in rows:
        f, t = row["x"], row["test"]
        on = {seed: (rid, v) for rid, seed, v in acc[(1, f)]}
        off = {seed: (rid, v) for rid, seed, v in acc[(0, f)]}
        seeds = sorted(set(on) & set(off))
        what = "%s %g" % (sweep, f)
        if len(seeds) >= 2:
            d = np.array([on[k][1] - off[k][1] for k in seeds])
            ref = stats.ttest_1samp(d, 0.0)
            if t["method"] != "paired_t_seeds" or t["df"] != len(d) - 1:
                fail("%s: test %r df %r" % (what, t["method"], t.get("df")))
            close(what + " t", t["t"], ref.statistic, 1e-10)
            close(what + " p", t["p"], ref.pvalue, 1e-9)
            close(what + " p vs ttest_rel", t["p"], stats.ttest_rel([on[k][1] for k in seeds], [off[k][1] for k in seeds]).pvalue, 1e-9)
            mde = mde_ref(d.std(ddof=1), len(d))
            close(what + " mde (scipy nct)", t["mde"], mde, 1e-7)
            close(what + " mde at alpha/K", t["mde_holm"], mde_ref(d.std(ddof=1), len(d), 0.05 / len(rows)), 1e-7)
            if t["mde_over"] != "seeds":
                fail("%s: mde_over %r" % (what, t["mde_over"]))
            if target is not None:
                n = t.get("seeds_needed")
                z = target / 100 / d.std(ddof=1)
                if n is None or not (power(z * math.sqrt(n), n - 1, 0.05) >= 0.8 - 1e-9 and
                                     (n == 2 or power(z * math.sqrt(n - 1), n - 2, 0.05) < 0.8)):
                    fail("%s: seeds_needed %r for %g points is not the smallest n with 80 %% power" % (what, n, target))
        else:
            (k,) = seeds
            a, b = paired(correctness(on[k][0], "world", "likelihood"), correctness(off[k][0], "world", "likelihood"))
            bb, cc = int(((a == 1) & (b == 0)).sum()), int(((a == 0) & (b == 1)).sum())
            if t["method"] != "signflip_questions_exact" or (t["discordant_on"], t["discordant_off"], t["questions"]) != (bb, cc, len(a)):
                fail("%s: test %r counts %r, want (%d, %d, %d)" % (what, t["method"], (t.get("discordant_on"), t.get("discordant_off"),
                                                                                     t.get("questions")), bb, cc, len(a)))
            close(what + " p (exact McNemar, scipy binomtest)", t["p"], stats.binomtest(bb, bb + cc, 0.5).pvalue if bb + cc else 1.0, 1e-9)
            mde = mde_ref((a - b).std(ddof=1), len(a))
            close(what + " mde over questions", t["mde"], mde, 1e-7)
            if t["mde_over"] != "questions" or t["mde_holm"] is not None or t.get("seeds_needed", None) is not None:
                fail("%s: one seed: mde_over %r, mde_holm %r, seeds_needed %r" % (what, t["mde_over"], t["mde_holm"], t.get("seeds_needed")))
        ps.append(t["p"])
        mdes.append(100 * mde)
    for row, adj in zip(rows, holm_ref(ps)):
        close("%s %g Holm" % (sweep, row["x"]), row["test"]["p_holm"], adj, 1e-12)
        if row["test"]["holm_k"] != len(rows) or row["test"]["significant_holm"] != (adj < 0.05):
            fail("%s %g: holm_k %r significant %r" % (sweep, row["x"], row["test"]["holm_k"], row["test"]["significant_holm"]))
    # significance.csv says the same
    sig = list(csv.DictReader(open(os.path.join(outdir, "significance.csv"))))
    if len(sig) != len(rows):
        fail("%s significance.csv: %d rows, want %d" % (sweep, len(sig), len(rows)))
    for r, row in zip(sig, rows):
        close("%s significance.csv p" % sweep, float(r["p"]), row["test"]["p"], 1e-9)
        close("%s significance.csv p_holm" % sweep, float(r["p_holm"]), row["test"]["p_holm"], 1e-9)
        close("%s significance.csv mde" % sweep, float(r["mde"]), row["test"]["mde"], 1e-9)
        if r["significant_holm"] != ("1" if row["test"]["significant_holm"] else "0") or int(r["holm_k"]) != len(rows):
            fail("%s significance.csv significant/holm_k %r %r" % (sweep, r["significant_holm"], r["holm_k"]))
    return [row["test"]["significant_holm"] for row in rows], mdes


def docs(outdir):
    return open(os.path.join(outdir, "report.md")).read(), open(os.path.join(outdir, "report.html"), encoding="utf-8").read()


def spread(vals, unit):
    v = sorted(vals)
    med = v[len(v) // 2] if len(v) % 2 else 0.5 * (v[len(v) // 2 - 1] + v[len(v) // 2])
    text = "%.1f %s" % (med, unit)
    if len(v) > 1 and v[-1] - v[0] >= 0.05:
        text += " (median over the %d fractions; %.1f to %.1f by fraction)" % (len(v), v[0], v[-1])
    return text


check_tests("cg3", s3, out3)
check_tests("cg1", s1, out1)
# a null: six fractions, λ changes nothing, 3 seeds -> nothing significant after Holm; the MDE sentence
outn, sn = report("null6", "--target-effect", "2")
sigs, mdes = check_tests("null6", sn, outn, target=2)
if any(sigs):
    fail("null6: a fraction came out significant after Holm: %r" % sigs)
want = ("No fraction shows a significant on − off difference (paired t-test over seeds, Holm over 6 fractions, α = 0.05); "
        "with 3 seeds this sweep could detect differences of about " + spread(mdes, "points or more at 80 % power") +
        " — smaller effects are not ruled out.")
need = [math.ceil(v) for v in [np.median([r["test"]["seeds_needed"] for r in sn["headline"]["rows"]])]][0]
want_t = "To detect a paired difference of 2 points at 80 %% power (two-sided α = 0.05, from the observed sd of the differences), " \
         "this sweep would need about %d seeds per point" % need
for name, text in zip(("report.md", "report.html"), docs(outn)):
    for w in (want, want_t, "Paired test and detectable effect", "p, Holm over 6", "seeds for 2 pp"):
        if w not in text:
            fail("null6 %s lacks %r" % (name, w))
if sn["headline"]["testing"]["target_effect"] != 0.02:
    fail("null6: target_effect %r" % sn["headline"]["testing"]["target_effect"])
# a real effect: +25 points at every fraction, 5 seeds -> significant everywhere after Holm
outs, ss = report("shift4")
sigs, _ = check_tests("shift4", ss, outs)
if not all(sigs):
    fail("shift4: the +25 point effect is not significant everywhere after Holm: %r" % sigs)
for name, text in zip(("report.md", "report.html"), docs(outs)):
    if "The on − off difference is significant (paired t-test over seeds, Holm over 6 fractions, α = 0.05) at 1 %" not in text \
            or "No fraction shows" in text:
        fail("shift4 %s does not say the difference is significant" % name)
# one seed: the sign-flip test over questions; the MDE over seeds cannot be computed
outo, so = report("null1", "--target-effect", "2", "--bootstrap", "200")
sigs, mdes = check_tests("null1", so, outo, target=2)
if any(sigs):
    fail("null1: a fraction came out significant: %r" % sigs)
want = ("No fraction shows a significant on − off difference (exact sign-flip test over benchmark questions, Holm over 6 "
        "fractions, α = 0.05); with a single seed the detectable effect over seeds cannot be computed (the variation between "
        "training seeds is unknown). Over the 120 questions alone the test could detect about " + spread(mdes, "points at 80 % power"))
for name, text in zip(("report.md", "report.html"), docs(outo)):
    for w in (want, "cannot be estimated from a single seed", "sign-flip, questions"):
        if w not in text:
            fail("null1 %s lacks %r" % (name, w))

print("check_report: %s" % ("ok" if fails == 0 else "%d failures" % fails))
if fails == 0:
    import shutil
    shutil.rmtree(work)
else:
    print("outputs kept in " + work)
sys.exit(1 if fails else 0)
