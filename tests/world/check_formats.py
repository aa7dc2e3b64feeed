#!/usr/bin/python3
"""check_formats.py WORLD_DIR: checks a generated world with standard tools only (json, numpy,
zlib/struct for PNG): every file parses, carries the fields its format requires, matches the
sha256/size recorded in world.json and the benchmark manifest, and the benchmark's question
templates never occur in the instruction data."""
import hashlib
import json
import os
import re
import struct
import sys
import zlib

import numpy as np

failures = []


def fail(msg):
    failures.append(msg)
    print("FAIL:", msg)


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read())
    return h.hexdigest()


def read_png(path):
    """Returns (w, h, rows) for an 8-bit RGB PNG, checking signature, IHDR and IDAT."""
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "bad signature"
    pos, idat, w = 8, b"", None
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + n]
        crc = struct.unpack(">I", data[pos + 8 + n:pos + 12 + n])[0]
        assert zlib.crc32(kind + body) & 0xFFFFFFFF == crc, "bad crc in " + kind.decode()
        if kind == b"IHDR":
            w, h, depth, ctype = struct.unpack(">IIBB", body[:10])
            assert depth == 8 and ctype == 2, "not 8-bit RGB"
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    raw = zlib.decompress(idat)
    assert len(raw) == h * (1 + 3 * w), "pixel data size"
    return w, h, raw


def template(q):
    """A question with its content words (colours, shapes, sizes, positions, numbers) blanked."""
    words = ("red green blue yellow purple orange black circle square triangle cross circles squares "
             "triangles crosses small large top bottom left right center zero one two three four").split()
    return " ".join("_" if t in words else t for t in q.split())


def tokens(text):
    return re.findall(r"<[^ >]+>|[.,?:;!()]|[^\s.,?:;!()]+", text)


def main(root):
    world = json.load(open(os.path.join(root, "world.json")))
    opts = world["options"]
    S = opts["image_size"]
    for key in ("format", "format_version", "seed", "options", "files", "vocab_size"):
        if key not in world:
            fail("world.json lacks " + key)

    # every file is listed with its hash, and every listed file matches
    listed = {f["path"]: f for f in world["files"]}
    on_disk = set()
    for d, _, files in os.walk(root):
        for f in files:
            rel = os.path.relpath(os.path.join(d, f), root)
            if rel != "world.json":
                on_disk.add(rel)
    if on_disk != set(listed):
        fail("world.json file list differs from the files: %s" % sorted(on_disk ^ set(listed))[:5])
    for rel, f in listed.items():
        p = os.path.join(root, rel)
        if os.path.exists(p) and (sha256(p) != f["sha256"] or os.path.getsize(p) != f["size"]):
            fail("world.json sha256/size mismatch for " + rel)

    vocab = open(os.path.join(root, "vocab.txt")).read().split("\n")[:-1]
    if vocab[:4] != ["<pad>", "<bos>", "<eos>", "<unk>"] or len(set(vocab)) != len(vocab) or len(vocab) > 256:
        fail("vocab.txt: specials, duplicates or size (%d)" % len(vocab))
    vset = set(vocab)

    def known(text, what):
        unk = [t for t in tokens(text) if t not in vset]
        if unk:
            fail("%s: unknown words %s" % (what, unk[:5]))

    counts = {"align": opts["n_align"], "instruct": opts["n_instruct"], "heldout": opts["n_heldout"]}
    for split, n in counts.items():
        a = np.load(os.path.join(root, "images", split + ".npy"))
        if a.dtype != np.uint8 or a.shape != (n, S, S, 3):
            fail("images/%s.npy: %s %s, expected uint8 %s" % (split, a.dtype, a.shape, (n, S, S, 3)))
        if a.std() < 5:
            fail("images/%s.npy looks blank" % split)

    for split in ("align", "heldout"):
        lines = open(os.path.join(root, "captions", split + ".jsonl")).read().splitlines()
        if len(lines) != counts[split]:
            fail("captions/%s.jsonl has %d lines" % (split, len(lines)))
        caps = []
        for i, line in enumerate(lines):
            c = json.loads(line)
            if c.get("image") != "%s/%06d" % (split, i) or not isinstance(c.get("caption"), str) or "id" not in c:
                fail("captions/%s.jsonl line %d: %s" % (split, i + 1, line))
                break
            known(c["caption"], "caption")
            caps.append(c["caption"])
        if split == "heldout" and len(set(caps)) != len(caps):
            fail("held-out captions are not unique")

    convs = json.load(open(os.path.join(root, "instruct", "conversations.json")))
    if len(convs) != counts["instruct"]:
        fail("conversations: %d items" % len(convs))
    instruct_templates = set()
    for c in convs:
        t = c["conversations"]
        ok = (isinstance(c["id"], str) and re.fullmatch(r"instruct/\d{6}", c["image"]) and
              int(c["image"].split("/")[1]) < counts["instruct"] and len(t) == 2 and
              t[0]["from"] == "human" and t[0]["value"].startswith("<image>\n") and t[1]["from"] == "gpt")
        if not ok:
            fail("conversation %s is malformed" % c.get("id"))
            break
        q = t[0]["value"][len("<image>\n"):]
        known(q + " " + t[1]["value"], "conversation " + c["id"])
        instruct_templates.add(template(q))

    for part in ("train", "heldout"):
        docs = [l for l in open(os.path.join(root, "corpus", part + ".txt")).read().splitlines() if l.strip()]
        want = opts["n_corpus"] if part == "train" else opts["n_corpus_heldout"]
        if len(docs) != want:
            fail("corpus/%s.txt: %d documents, expected %d" % (part, len(docs), want))
        for d in docs:
            known(d, "corpus")
            if len(tokens(d)) > world["max_doc_tokens"]:
                fail("corpus document longer than max_doc_tokens: " + d)
                break

    # the benchmark: ScienceQA schema and layout
    bdir = os.path.join(root, "benchmark")
    problems = json.load(open(os.path.join(bdir, "problems.json")))
    splits = json.load(open(os.path.join(bdir, "pid_splits.json")))
    if len(problems) != opts["n_bench"]:
        fail("problems.json: %d problems" % len(problems))
    for key in ("train", "val", "test", "trainval", "minitrain", "minival", "minitest"):
        if key not in splits:
            fail("pid_splits.json lacks " + key)
    if sorted(splits["val"] + splits["test"], key=int) != sorted(problems, key=int):
        fail("val + test do not cover the problems exactly")
    fields = ("question", "choices", "answer", "hint", "image", "task", "grade", "subject", "topic",
              "category", "skill", "split", "lecture", "solution")
    mc_format = re.compile(r"^(context: .+ )?question: .+ options:( [A-E]\. [^.]+){2,5} answer:$")
    for pid, p in problems.items():
        missing = [f for f in fields if f not in p]
        if missing:
            fail("problem %s lacks %s" % (pid, missing))
            continue
        if not (2 <= len(p["choices"]) <= 5 and isinstance(p["answer"], int) and 0 <= p["answer"] < len(p["choices"])):
            fail("problem %s: choices/answer" % pid)
        if pid not in splits[p["split"]]:
            fail("problem %s: split %s does not list it" % (pid, p["split"]))
        if template(p["question"]) in instruct_templates:
            fail("benchmark template occurs in the instruction data: " + p["question"])
        known(p["question"] + " " + p["hint"] + " " + " ".join(p["choices"]), "problem " + pid)
        if p["image"] is None:
            if not p["hint"]:
                fail("text-only problem %s has no hint" % pid)
        else:
            w, h, _ = read_png(os.path.join(bdir, "images", pid, p["image"]))
            if (w, h) != (S, S):
                fail("problem %s image is %dx%d" % (pid, w, h))
    # the corpus's multiple-choice documents use the benchmark's prompt layout
    mc_docs = [d for d in open(os.path.join(root, "corpus", "train.txt")).read().splitlines() if d.startswith("context:")]
    if not mc_docs:
        fail("the corpus has no multiple-choice documents")
    for d in mc_docs[:200]:
        prompt, letter = d.rsplit(" ", 1)
        if not mc_format.match(prompt) or letter not in "ABCDE":
            fail("corpus multiple-choice document is not in the prompt layout: " + d)
            break

    manifest = json.load(open(os.path.join(bdir, "manifest.json")))
    if manifest.get("name") != "cgvlm-world" or manifest.get("format") != "scienceqa" or "version" not in manifest:
        fail("manifest name/format/version")
    mfiles = {f["path"]: f for f in manifest["files"]}
    bench_disk = {os.path.relpath(os.path.join(d, f), bdir) for d, _, fs in os.walk(bdir) for f in fs} - {"manifest.json"}
    if set(mfiles) != bench_disk:
        fail("manifest does not list exactly the benchmark files")
    for rel, f in mfiles.items():
        p = os.path.join(bdir, rel)
        if f["url"] != rel or sha256(p) != f["sha256"] or os.path.getsize(p) != f["size"]:
            fail("manifest entry mismatch for " + rel)
    print("check_formats: %d failures" % len(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
