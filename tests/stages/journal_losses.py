"""journal_losses.py: compares the step losses of metric journals (JSON lines, a torn last line
skipped, as metrics_journal_replay does).

  journal_losses.py REF.jsonl GOT.jsonl [GOT2.jsonl ...]
Every step of REF must appear in the GOT journals with exactly the same loss (bitwise: the values
are printed with 17 digits), steps logged twice (re-run after a resume) must agree, and the GOT
journals together must cover exactly REF's steps."""
import json
import sys


def losses(path):
    out = {}
    with open(path) as f:
        for line in f:
            try:
                r = json.loads(line)
            except json.JSONDecodeError:
                continue  # a torn last line after SIGKILL
            if r.get("t") == "scalar" and r.get("name") == "loss":
                s, v = r["step"], r["value"]
                if s in out and out[s] != v:
                    sys.exit(f"{path}: step {s} logged twice with different losses {out[s]!r} != {v!r}")
                out[s] = v
    return out


def main():
    ref = losses(sys.argv[1])
    got = {}
    for p in sys.argv[2:]:
        for s, v in losses(p).items():
            if s in got and got[s] != v:
                sys.exit(f"step {s}: the resumed run logged {v!r}, the first attempt {got[s]!r}")
            got[s] = v
    if not ref:
        sys.exit("the reference journal has no losses")
    if set(ref) != set(got):
        sys.exit(f"steps differ: reference {len(ref)} steps, resumed {len(got)}; missing "
                 f"{sorted(set(ref) - set(got))[:10]}, extra {sorted(set(got) - set(ref))[:10]}")
    bad = [s for s in ref if ref[s] != got[s]]
    if bad:
        s = bad[0]
        sys.exit(f"{len(bad)} steps differ, first step {s}: {ref[s]!r} != {got[s]!r}")
    print(f"{len(ref)} step losses identical")


if __name__ == "__main__":
    main()
