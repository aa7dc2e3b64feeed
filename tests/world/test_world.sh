#!/usr/bin/env bash
# test_world.sh BIN PY3 CHECK_FORMATS TMP: `cgvlm world` end to end on small worlds: determinism,
# seeds, split independence, formats (Python), check, refusing a non-empty directory, --force,
# show, bench, and user errors (one line, exit 2, nothing changed).
set -u
BIN=$1 PY3=$2 CHECK=$3 T=$4
rm -rf "$T" && mkdir -p "$T"
fail=0
bad() { echo "FAIL: $*"; fail=1; }
SMALL=(--n-align 40 --n-instruct 60 --n-corpus 80 --n-corpus-heldout 10 --n-bench 36 --n-heldout 20)
gen() { "$BIN" --quiet world generate "${SMALL[@]}" "$@"; }
# sha256 of every file, with paths relative to the world
hashes() { (cd "$1" && find . -type f | LC_ALL=C sort | xargs sha256sum); }
expect_user_error() { # expect_user_error DESCRIPTION PATTERN -- command...
    local what=$1 pat=$2; shift 3
    out=$("$@" 2>&1); got=$?
    [ "$got" = 2 ] || bad "$what: exit $got, want 2: $out"
    [ "$(printf '%s\n' "$out" | wc -l)" = 1 ] || bad "$what: error is not one line: $out"
    case "$out" in "cgvlm: error: "*$pat*) ;; *) bad "$what: message '$out' lacks '$pat'";; esac
}

# determinism: same seed and options -> identical bytes; another seed -> different data
gen --seed 7 --out "$T/a" || bad "generate a"
gen --seed 7 --out "$T/b" || bad "generate b"
gen --seed 8 --out "$T/c" || bad "generate c"
[ "$(hashes "$T/a")" = "$(hashes "$T/b")" ] || bad "same seed gave different files"
for f in images/align.npy images/instruct.npy images/heldout.npy captions/align.jsonl \
         instruct/conversations.json corpus/train.txt benchmark/problems.json benchmark/manifest.json; do
    cmp -s "$T/a/$f" "$T/c/$f" && bad "seeds 7 and 8 gave the same $f"
done
cmp -s "$T/a/vocab.txt" "$T/c/vocab.txt" || bad "the vocabulary depends on the seed"
# item i of a split does not depend on the other splits' sizes
"$BIN" --quiet world generate --seed 7 --n-align 55 --n-instruct 60 --n-corpus 80 --n-corpus-heldout 10 \
    --n-bench 36 --n-heldout 20 --out "$T/d" || bad "generate d"
cmp -s "$T/a/instruct/conversations.json" "$T/d/instruct/conversations.json" || bad "n-align changed the instruct split"
head -40 "$T/d/captions/align.jsonl" | cmp -s - "$T/a/captions/align.jsonl" || bad "a longer align split changed its first items"

# formats, through Python's json/numpy/zlib, and through our own loaders
"$PY3" "$CHECK" "$T/a" >"$T/formats.log" 2>&1 || { bad "check_formats"; cat "$T/formats.log"; }
out=$("$BIN" world check "$T/a" 2>&1) || bad "world check: $out"
echo "$out" | grep -q "unknown 0" || bad "world check shows no unknown counts: $out"
echo "$out" | grep -q "^ok$" || bad "world check did not say ok: $out"
ls "$T" | grep -q 'tmp-' && bad "temporary directories were left behind: $(ls "$T")"

# larger images: the small (64) and base (128) models' sizes
for s in 64 128; do
    "$BIN" --quiet world generate --seed 3 --image-size $s --n-align 4 --n-instruct 4 --n-corpus 4 \
        --n-corpus-heldout 2 --n-bench 6 --n-heldout 3 --out "$T/s$s" || bad "generate at $s"
    "$BIN" world check "$T/s$s" >/dev/null 2>&1 || bad "world check at $s"
    "$PY3" -c "import numpy as n,sys; a=n.load(sys.argv[1]); sys.exit(a.shape!=(4,$s,$s,3))" "$T/s$s/images/align.npy" ||
        bad "align.npy shape at $s"
done

# an existing non-empty directory: refused with exit 2, nothing changed
before=$(hashes "$T/a")
expect_user_error "generate into a non-empty dir" "not empty" -- "$BIN" world generate --seed 9 "${SMALL[@]}" --out "$T/a"
[ "$(hashes "$T/a")" = "$before" ] || bad "a refused generate changed the directory"
ls "$T" | grep -q 'tmp-' && bad "a refused generate left a temporary directory"
# --force replaces it atomically with the new world
"$BIN" --quiet world generate --seed 8 "${SMALL[@]}" --out "$T/a" --force || bad "generate --force"
[ "$(hashes "$T/a")" = "$(hashes "$T/c")" ] || bad "--force did not give the seed-8 world"
ls "$T" | grep -q 'tmp-' && bad "--force left a temporary directory: $(ls "$T")"
# an existing empty directory is fine; a file is not
mkdir "$T/empty" && gen --seed 7 --out "$T/empty" || bad "generate into an empty dir"
: > "$T/afile"
expect_user_error "generate onto a file" "not a directory" -- "$BIN" world generate --out "$T/afile"

# an interrupted generate leaves either the whole world or nothing, never a temporary directory
"$BIN" --quiet world generate --seed 5 --n-align 3000 --n-instruct 3000 --out "$T/int" 2>/dev/null & pid=$!
sleep 0.3; kill -INT $pid 2>/dev/null; wait $pid; got=$?
if [ $got = 0 ]; then "$BIN" world check "$T/int" >/dev/null 2>&1 || bad "a generate that finished before SIGINT is broken"
elif [ -e "$T/int" ]; then bad "an interrupted generate left '$T/int'"; fi
ls "$T" | grep -q 'tmp-' && bad "an interrupted generate left a temporary directory: $(ls "$T")"

# user errors: one line, exit 2
expect_user_error "unknown flag" "unknown" -- "$BIN" world generate --out "$T/x" --frob
expect_user_error "missing --out" "--out" -- "$BIN" world generate --seed 1
expect_user_error "check without DIR" "world check: give one world directory" -- "$BIN" world check
expect_user_error "show without DIR" "world show: give one world directory" -- "$BIN" world show --n 4
expect_user_error "bad image size" "--image-size" -- "$BIN" world generate --out "$T/x" --image-size 5
expect_user_error "bad count" "--n-bench" -- "$BIN" world generate --out "$T/x" --n-bench 0
expect_user_error "bad seed" "--seed" -- "$BIN" world generate --out "$T/x" --seed abc
expect_user_error "unknown subcommand" "unknown subcommand" -- "$BIN" world frob
expect_user_error "check a missing dir" "cannot open" -- "$BIN" world check "$T/nope"
[ -e "$T/x" ] && bad "a failed generate created its --out directory"

# check catches damage: truncated .npy, malformed JSON, a bad problem, a changed file
cp -r "$T/b" "$T/e1" && truncate -s -100 "$T/e1/images/align.npy"
expect_user_error "truncated npy" "truncated" -- "$BIN" world check "$T/e1"
cp -r "$T/b" "$T/e2" && printf '[{"id": 1,,]' > "$T/e2/instruct/conversations.json"
expect_user_error "malformed conversations" "malformed JSON at line 1, column" -- "$BIN" world check "$T/e2"
cp -r "$T/b" "$T/e3" && "$PY3" - "$T/e3/benchmark/problems.json" <<'EOF'
import json, sys
p = json.load(open(sys.argv[1])); p["5"]["answer"] = 7; json.dump(p, open(sys.argv[1], "w"))
EOF
expect_user_error "answer out of range" "problem '5': field 'answer'" -- "$BIN" world check "$T/e3"
cp -r "$T/b" "$T/e4" && sed -i '1s/"caption":"a /"caption":"an /' "$T/e4/captions/align.jsonl"
expect_user_error "edited caption" "unknown words" -- "$BIN" world check "$T/e4"
cp -r "$T/b" "$T/e5" && f="$T/e5/images/heldout.npy" &&
    printf '\001' | dd of="$f" bs=1 seek=$(( $(stat -c %s "$f") - 1 )) conv=notrunc status=none
expect_user_error "changed file" "does not match its sha256" -- "$BIN" world check "$T/e5"

# show: a PNG contact sheet
"$BIN" --quiet world show "$T/b" --out "$T/sheet.png" --n 6 || bad "world show"
"$BIN" --quiet world show "$T/b" --split instruct --out "$T/sheet2.png" || bad "world show --split instruct"
"$BIN" --quiet world show "$T/b" --split bench --out "$T/sheet3.png" --n 5 || bad "world show --split bench"
head -c 8 "$T/sheet.png" | od -An -tx1 | grep -q "89 50 4e 47 0d 0a 1a 0a" || bad "contact sheet is not a PNG"
expect_user_error "show bad split" "--split" -- "$BIN" world show "$T/b" --split nope

# bench: one JSON line with the required keys
out=$("$BIN" bench world --json --n 300 --image-size 64) || bad "bench world"
echo "$out" | "$PY3" -c "import json,sys; j=json.loads(sys.stdin.read()); assert j['bench']=='world' and j['image_size']==64 and j['images_per_s']>0 and j['seconds']>0" ||
    bad "bench world JSON: $out"
expect_user_error "bench bad flag" "unknown" -- "$BIN" bench world --frob

[ $fail = 0 ] && echo "test_world: ok"
[ $fail = 0 ] && rm -rf "$T"
exit $fail
