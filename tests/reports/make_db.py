#!/usr/bin/python3
"""make_db.py MAKE_EMPTY_DB DB: (MAKE_EMPTY_DB creates the db through cgvlm's store_open) builds a results database with known, reproducible values for the
report tests. Sweeps:
  cg3      align.lambda {0,1} x instruct.fraction {0.01,0.1,0.5,1} x seeds {0,1,2}: evals (overall,
           per category, alignment), per-question predictions, step losses, an environment
  cg1      the same grid with a single seed (intervals become question bootstraps)
  generic  axes lm_pretrain.lr {1e-3,3e-3} x model.adapter {"linear","mlp2x"}, seeds {0,1}
  pending  runs queued, no evaluations yet
  strings, noaxes, partial   edge cases: no numeric axis; no axes; a CG sweep without λ = 0, one run failed
  null6, null1  six fractions where λ has no effect, 3 seeds / 1 seed (the paired tests' null)
  shift4   six fractions, 5 seeds, λ > 0 adds 25 points everywhere (a real effect)
The values come from random.Random with fixed seeds, so every run of this script writes the same db.
`make_db.py MAKE_EMPTY_DB DB big` (MAKE_EMPTY_DB: build/tests/reports/make_empty_db) writes instead one sweep "big" the size of the default CPU sweep, for timing
`cgvlm report`: 2 lambdas x 6 fractions x 5 seeds, 600 questions, a loss logged at every step."""
import json, math, random, sqlite3, subprocess, sys, zlib

schema, path = sys.argv[1], sys.argv[2]
subprocess.run([schema, path], check=True)
db = sqlite3.connect(path)

BIG = len(sys.argv) > 3 and sys.argv[3] == "big"
NQ = 600 if BIG else 120
CATS = ["color", "shape", "count", "position"]
rnd = random.Random(1234)
QUESTIONS = [("q%03d" % i, CATS[i % len(CATS)], 2 + rnd.randrange(4)) for i in range(NQ)]  # id, category, #options

env_id = db.execute("INSERT INTO environments (code_version, compiler, blas, cuda, device, host, os) "
                    "VALUES ('abc123', 'GNU 12.2', 'OpenBLAS 0.3.21', 'none', 'cpu', 'testhost', 'Linux')").lastrowid
task_keys = {}


def task(kind, key, state="done"):
    if key in task_keys:
        return task_keys[key]
    tid = db.execute("INSERT INTO tasks (key, kind, config_json, state, env_id) VALUES (?, ?, '{}', ?, ?)",
                     (key, kind, state, env_id)).lastrowid
    task_keys[key] = tid
    return tid


def metric_id(name):
    db.execute("INSERT OR IGNORE INTO metric_names (name) VALUES (?)", (name,))
    return db.execute("SELECT name_id FROM metric_names WHERE name = ?", (name,)).fetchone()[0]


def losses(tid, steps, start, con):
    r = random.Random(tid)
    for s in range(0, steps + 1, 1 if BIG else max(1, steps // 20)):
        g = start * math.exp(-s / (steps / 2.5)) + 0.4 + 0.02 * r.random()
        db.execute("INSERT INTO metrics VALUES (?, ?, ?, ?, 0)", (tid, metric_id("loss_gen"), s, g))
        c = 0.0
        if con:
            c = 2.0 * math.exp(-s / (steps / 3)) + 0.3 + 0.02 * r.random()
            db.execute("INSERT INTO metrics VALUES (?, ?, ?, ?, 0)", (tid, metric_id("loss_con"), s, c))
        db.execute("INSERT INTO metrics VALUES (?, ?, ?, ?, 0)", (tid, metric_id("loss"), s, g + c))


def p_correct(lam, f, seed):
    eff = min(1.0, f * (4.0 if lam > 0 else 1.0))
    return 0.30 + 0.55 * eff ** 0.35 + 0.02 * (seed - 1)


def make_sweep(name, axes, points, seeds, with_evals=True, failed=(), pfun=None):
    spec = {"name": name, "base": "experiments/cgvlm-tiny.json", "axes": {a: vs for a, vs in axes}, "seeds": seeds}
    sid = db.execute("INSERT INTO sweeps (name, spec_json, axes_json, code_version, created_at) VALUES (?, ?, ?, 'abc123', 0)",
                     (name, json.dumps(spec, sort_keys=True), json.dumps([a for a, _ in axes]))).lastrowid
    lm = task("lm_pretrain", name + "/lm")
    if with_evals:
        losses(lm, 1500 if BIG else 200, 4.0, False)
    for params in points:
        for seed in seeds:
            lam = params.get("align.lambda")
            frac = params.get("instruct.fraction")
            rname = ",".join("%s=%s" % (k, json.dumps(v)) for k, v in params.items()) + ",seed=%d" % seed
            rid = db.execute("INSERT INTO runs (sweep_id, name, config_json, params_json, seed, lambda, fraction, size, created_at) "
                             "VALUES (?, ?, '{}', ?, ?, ?, ?, 'tiny', 0)",
                             (sid, rname, json.dumps(params), seed, lam, frac)).lastrowid
            for k, v in params.items():
                db.execute("INSERT INTO run_params VALUES (?, ?, ?, ?)",
                           (rid, k, json.dumps(v), v if isinstance(v, (int, float)) else None))
            al = task("align", "%s/align/%s/%d" % (name, lam, seed))
            broken = rname in failed
            ins = task("instruct", "%s/instruct/%s" % (name, rname), "failed" if broken else "done" if with_evals else "queued")
            ev = task("eval", "%s/eval/%s" % (name, rname), "queued" if broken or not with_evals else "done")
            for t in (lm, al, ins, ev):
                db.execute("INSERT OR IGNORE INTO run_tasks VALUES (?, ?)", (rid, t))
            if not with_evals or broken:
                continue
            if not db.execute("SELECT 1 FROM metrics WHERE task_id = ?", (al,)).fetchone():
                losses(al, 600 if BIG else 100, 3.0, (lam or 0) > 0)
            losses(ins, int((600 if BIG else 100) * (frac or 1)) + 10, 2.0, False)
            if lam is None:  # generic sweep: a score that depends on the params
                lr = params.get("lm_pretrain.lr", 0.002)
                base = 0.5 + 40 * lr + (0.05 if params.get("model.adapter") == "mlp2x" else 0) + 0.01 * seed
                p = min(0.95, base)
            else:
                p = (pfun or p_correct)(lam, frac, seed)
            r = random.Random(zlib.crc32(b"%s/%d" % (name.encode(), rid)))
            for method, delta in (("likelihood", 0.0), ("letter", -0.05)):
                correct = []
                for qid, cat, nopt in QUESTIONS:
                    ok = 1 if r.random() < p + delta else 0
                    ans = r.randrange(nopt)
                    chosen = ans if ok else (ans + 1) % nopt
                    scores = json.dumps([round(-r.random() * 5, 3) for _ in range(nopt)]) if method == "likelihood" else '"(A)"'
                    db.execute("INSERT INTO predictions VALUES (?, 'world', ?, ?, ?, NULL, ?, ?, ?, ?)",
                               (ev, method, qid, cat, chosen, ans, ok, scores))
                    correct.append((cat, ok))
                acc = sum(o for _, o in correct) / NQ
                db.execute("INSERT INTO evals VALUES (?, 'world', ?, '', ?, ?)", (ev, "accuracy_" + method, acc, NQ))
                for cat in CATS:
                    sub = [o for c, o in correct if c == cat]
                    db.execute("INSERT INTO evals VALUES (?, 'world', ?, ?, ?, ?)",
                               (ev, "accuracy_" + method, cat, sum(sub) / len(sub), len(sub)))
            if lam is not None:
                for metric, v in (("caption_ppl", 12 - 3 * (lam > 0) + r.random()), ("retrieval_r1", 0.2 + 0.3 * (lam > 0) + 0.05 * r.random()),
                                  ("retrieval_r5", 0.5 + 0.3 * (lam > 0) + 0.05 * r.random()), ("text_ppl", 20 + r.random())):
                    db.execute("INSERT INTO evals VALUES (?, 'alignment', ?, '', ?, NULL)", (ev, metric, v))


if BIG:
    FR = [0.01, 0.05, 0.1, 0.25, 0.5, 1.0]
    make_sweep("big", [("align.lambda", [0, 1]), ("instruct.fraction", FR)],
               [{"align.lambda": l, "instruct.fraction": f} for l in (0, 1) for f in FR], [0, 1, 2, 3, 4])
    db.commit()
    sys.exit(0)
CG = [("align.lambda", [0, 1]), ("instruct.fraction", [0.01, 0.1, 0.5, 1.0])]
cg_points = [{"align.lambda": l, "instruct.fraction": f} for l in (0, 1) for f in (0.01, 0.1, 0.5, 1.0)]
make_sweep("cg3", CG, cg_points, [0, 1, 2])
make_sweep("cg1", CG, cg_points, [0])
GEN = [("lm_pretrain.lr", [0.001, 0.003]), ("model.adapter", ["linear", "mlp2x"])]
make_sweep("generic", GEN, [{"lm_pretrain.lr": lr, "model.adapter": a} for lr in (0.001, 0.003) for a in ("linear", "mlp2x")], [0, 1])
make_sweep("pending", CG, cg_points[:2], [0], with_evals=False)
# edge cases: only a string axis (no x axis), no axes at all, a CG sweep without λ = 0 and with a failed run
make_sweep("strings", [("model.adapter", ["linear", "mlp2x"])], [{"model.adapter": a} for a in ("linear", "mlp2x")], [0, 1])
make_sweep("noaxes", [], [{}], [0, 1, 2])
make_sweep("partial", CG, [p for p in cg_points if p["align.lambda"] == 1], [0, 1],
           failed=("align.lambda=1,instruct.fraction=0.5,seed=1",))
# the paired tests: six fractions where λ changes nothing (3 seeds, and 1 seed), and a large effect at every
# fraction with 5 seeds (+25 points: it must come out significant after Holm)
FR6 = [0.01, 0.05, 0.1, 0.25, 0.5, 1.0]
CG6 = [("align.lambda", [0, 1]), ("instruct.fraction", FR6)]
cg6_points = [{"align.lambda": l, "instruct.fraction": f} for l in (0, 1) for f in FR6]
p_null = lambda lam, f, seed: 0.35 + 0.4 * f ** 0.35 + 0.02 * (seed - 1)
make_sweep("null6", CG6, cg6_points, [0, 1, 2], pfun=p_null)
make_sweep("null1", CG6, cg6_points, [0], pfun=p_null)
make_sweep("shift4", CG6, cg6_points, [0, 1, 2, 3, 4],
           pfun=lambda lam, f, seed: 0.35 + 0.3 * f ** 0.35 + 0.02 * (seed - 2) + (0.25 if lam > 0 else 0))
db.commit()
db.close()
