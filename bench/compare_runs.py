#!/usr/bin/env python3
"""bench/compare_runs.py: compares the training curves and evaluation results of two results
databases that each hold one `cgvlm run` of the same experiment with the same seed, e.g. one
trained on the GPU and one on the CPU (bench/gpu_e2e.sh). Standard library only (sqlite3).

    python3 bench/compare_runs.py A.db B.db [--tol-final 0.02] [--tol-final-abs 0.02]
                                            [--tol-step 0.5] [--tol-eval 0.10] [--last 10]

Where the numbers come from (db/schema.sql): step metrics through the view v_metrics (stage =
the task's kind, metric, step, value), one task per stage per database (the `done` one); the
evaluation's overall figures from evals (category '').

What is checked, per training stage (lm_pretrain, vit_pretrain, align, instruct), on the metric
"loss" at the steps both logged:
  - final: the mean of the last --last logged steps may differ by --tol-final relative (2 %) or
    by --tol-final-abs absolute (0.02 nats), whichever is larger;
  - every step: no step's two losses more than --tol-step relative apart (50 %: a factor 2), a
    bound that only catches a broken step (NaN, a wrong gradient, the wrong data), not drift;
and on the evaluation the accuracies (values in [0, 1]) within --tol-eval absolute (0.10). The
other eval figures (perplexities, retrieval recalls) and loss_gen / loss_con are shown, not
checked.

Why these tolerances. The GPU computes its matrix products in TF32 (10-bit mantissa: each
product's inputs rounded to a relative 2^-11 ~ 5e-4, accumulated in fp32) and sums in another
order than the CPU's fp32 OpenBLAS; one step's loss then differs by ~1e-3 relative. Training
amplifies such differences (every stage starts from the weights the previous stage trained on
that device), so the two runs follow nearby but not identical trajectories: on the same batches
(same seed) the loss level reached at the end of a stage is a property of the model, not of the
rounding, while the steps in between may move apart for a while (a loss that drops suddenly drops
a few steps earlier in one run). Calibrated without a GPU with bench/gpu_emu_plugin.sh and
CGVLM_EMU_JITTER=1e-3 (every product output perturbed by up to 1e-3 relative, a stand-in for
TF32), the shortened tiny run of bench/gpu_e2e.sh ended lm_pretrain, align and instruct within
0.2 % of the CPU run, vit_pretrain (a contrastive loss near 0.2) within 0.014 nats (7 %), with
single steps up to 31 % apart in transients, accuracies within 0.015-0.065 (200 questions), and
the caption perplexity 28 % apart: hence 2 % or 0.02 nats at the end, a factor 2 per step, 0.10
for accuracies, perplexities not checked. A wrong kernel (a gradient off by a factor, a missing
term, garbage) moves a final loss by tens of percent, makes it diverge, or drops accuracy to
chance (0.25 on the world benchmark's four options, against ~0.45 trained). Read the table too:
the exit status is a coarse screen.

Exit status: 0 all within tolerance, 1 a difference beyond one, 2 bad input (a database that
cannot be read, a stage missing or ambiguous).
"""
import argparse
import os
import sqlite3
import sys

STAGES = ("lm_pretrain", "vit_pretrain", "align", "instruct")
SHOWN = ("loss", "loss_gen", "loss_con")  # shown side by side; "loss" is the one checked


def fail_input(msg):
    print(f"compare_runs: {msg}", file=sys.stderr)
    sys.exit(2)


def open_db(path):
    if not os.path.isfile(path):
        fail_input(f"no database '{path}'")
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        con.execute("SELECT 1 FROM tasks LIMIT 1")
        return con
    except sqlite3.Error as e:
        fail_input(f"cannot read '{path}' as a cgvlm results database: {e}")


def task_of(con, path, kind):
    """The done task of this kind (None when there is none); more than one is ambiguous."""
    rows = con.execute("SELECT task_id FROM tasks WHERE kind = ? AND state = 'done' ORDER BY task_id",
                       (kind,)).fetchall()
    if len(rows) > 1:
        fail_input(f"'{path}' has {len(rows)} done {kind} tasks: give databases with one run each")
    return rows[0][0] if rows else None


def curve(con, task, metric):
    return dict(con.execute("SELECT step, value FROM v_metrics WHERE task_id = ? AND metric = ? ORDER BY step",
                            (task, metric)).fetchall())


def evals(con, task):
    return {(b, m): (v, n) for b, m, v, n in con.execute(
        "SELECT benchmark, metric, value, n FROM evals WHERE task_id = ? AND category = '' ORDER BY benchmark, metric",
        (task,))}


def rel(a, b):
    d = max(abs(a), abs(b))
    return abs(a - b) / d if d > 0 else 0.0


def main():
    ap = argparse.ArgumentParser(description="compare two cgvlm runs' loss curves and evaluations")
    ap.add_argument("a", help="first results db (e.g. the GPU run)")
    ap.add_argument("b", help="second results db (e.g. the CPU run)")
    ap.add_argument("--tol-final", type=float, default=0.02, help="final loss, relative (default 0.02)")
    ap.add_argument("--tol-final-abs", type=float, default=0.02, help="final loss, absolute nats (default 0.02)")
    ap.add_argument("--tol-step", type=float, default=0.5, help="any step's loss, relative (default 0.5)")
    ap.add_argument("--tol-eval", type=float, default=0.10, help="accuracies, absolute (default 0.10)")
    ap.add_argument("--last", type=int, default=10, help="logged steps averaged for the final loss (default 10)")
    ap.add_argument("--stages", default=",".join(STAGES), help="training stages to compare (comma-separated)")
    args = ap.parse_args()
    if args.last < 1:
        fail_input("--last must be at least 1")
    ca, cb = open_db(args.a), open_db(args.b)
    stages = [s for s in args.stages.split(",") if s]
    for s in stages:
        if s not in STAGES:
            fail_input(f"unknown stage '{s}' (known: {', '.join(STAGES)})")

    bad = []
    print(f"A = {args.a}\nB = {args.b}")
    print(f"{'stage':<13}{'metric':<9}{'steps':>6}  {'first A':>9} {'first B':>9}  "
          f"{'final A':>9} {'final B':>9} {'final rd':>9}  {'max rd':>8} {'at':>5}  check")
    for s in stages:
        ta, tb = task_of(ca, args.a, s), task_of(cb, args.b, s)
        if ta is None or tb is None:
            bad.append(f"{s}: no done task in {args.a if ta is None else args.b}")
            print(f"{s:<13}{'-':<9}  missing in {'A' if ta is None else 'B'}  FAIL")
            continue
        for metric in SHOWN:
            xa, xb = curve(ca, ta, metric), curve(cb, tb, metric)
            steps = sorted(set(xa) & set(xb))
            if not steps:
                if metric == "loss":
                    bad.append(f"{s}: no common logged steps of 'loss'")
                    print(f"{s:<13}{metric:<9}{0:>6}  no common steps  FAIL")
                continue
            tail = steps[-args.last:]
            fa = sum(xa[k] for k in tail) / len(tail)
            fb = sum(xb[k] for k in tail) / len(tail)
            frd = rel(fa, fb)
            worst = max(steps, key=lambda k: rel(xa[k], xb[k]))
            mrd = rel(xa[worst], xb[worst])
            check = ""
            if metric == "loss":
                check = "ok"
                if frd > args.tol_final and abs(fa - fb) > args.tol_final_abs:
                    check = "FAIL"
                    bad.append(f"{s}: final loss {fa:.5g} vs {fb:.5g}, {100 * frd:.2f} % apart "
                               f"(tolerance {100 * args.tol_final:g} % or {args.tol_final_abs:g})")
                if mrd > args.tol_step:
                    check = "FAIL"
                    bad.append(f"{s}: step {worst} loss {xa[worst]:.5g} vs {xb[worst]:.5g}, "
                               f"{100 * mrd:.1f} % apart (tolerance {100 * args.tol_step:g} %)")
                if len(xa) != len(xb):
                    check += f" ({len(xa)} vs {len(xb)} steps logged)"
            print(f"{s:<13}{metric:<9}{len(steps):>6}  {xa[steps[0]]:>9.4f} {xb[steps[0]]:>9.4f}  "
                  f"{fa:>9.4f} {fb:>9.4f} {100 * frd:>8.2f}%  {100 * mrd:>7.2f}% {worst:>5}  {check}")

    ea_task, eb_task = task_of(ca, args.a, "eval"), task_of(cb, args.b, "eval")
    if ea_task is None or eb_task is None:
        bad.append(f"eval: no done eval task in {args.a if ea_task is None else args.b}")
        print("eval: missing  FAIL")
    else:
        ea, eb = evals(ca, ea_task), evals(cb, eb_task)
        print(f"\n{'benchmark':<14}{'metric':<22}{'A':>9} {'B':>9} {'diff':>9}  {'n':>5}  check")
        for key in sorted(set(ea) | set(eb)):
            if key not in ea or key not in eb:
                bad.append(f"eval {key[0]} {key[1]}: only in {'A' if key in ea else 'B'}")
                print(f"{key[0]:<14}{key[1]:<22} only in {'A' if key in ea else 'B'}  FAIL")
                continue
            (va, na), (vb, nb) = ea[key], eb[key]
            checked = key[1].startswith("accuracy")  # the rest: shown, not checked (see the header)
            check = "info"
            if checked:
                check = "ok" if abs(va - vb) <= args.tol_eval else "FAIL"
                if check == "FAIL":
                    bad.append(f"eval {key[0]} {key[1]}: {va:.4g} vs {vb:.4g} ({abs(va - vb):.3g} apart > {args.tol_eval:g})")
            unit = checked or key[1].startswith("retrieval")
            shown = f"{va - vb:+9.4f}" if unit else f"{100 * rel(va, vb):8.2f}%"
            print(f"{key[0]:<14}{key[1]:<22}{va:>9.4f} {vb:>9.4f} {shown}  {na if na is not None else '-':>5}  {check}")

    print(f"\ntolerances: final loss (mean of the last {args.last} logged steps) {100 * args.tol_final:g} % "
          f"relative or {args.tol_final_abs:g} absolute, any step {100 * args.tol_step:g} %, accuracies "
          f"{args.tol_eval:g} absolute (see the header of {os.path.basename(__file__)})")
    if bad:
        print(f"DIFFERENT: {len(bad)} check(s) beyond tolerance:")
        for b in bad:
            print(f"  {b}")
        return 1
    print("SAME within tolerance")
    return 0


if __name__ == "__main__":
    sys.exit(main())
