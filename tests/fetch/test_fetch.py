#!/usr/bin/python3
"""test_fetch.py: `cgvlm fetch` against the fault-injecting test server (server.py) on loopback.

    test_fetch.py CGVLM_BIN quick|slow

Every case builds its files and manifest in a temp dir, starts the server on a free port, runs
the real binary and checks its exit status, its messages, the cache, and what the server sent.
"""
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

# loopback only: a proxy from the environment must not carry the test's requests
for var in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
    os.environ.pop(var, None)
os.environ["no_proxy"] = os.environ["NO_PROXY"] = "127.0.0.1,localhost"

HERE = os.path.dirname(os.path.abspath(__file__))
BIN = os.path.abspath(sys.argv[1])
TIER = sys.argv[2] if len(sys.argv) > 2 else "quick"
FAILURES = []


def check(cond, what):
    if not cond:
        FAILURES.append(what)
        print("FAIL:", what, flush=True)


def data(n, seed):
    out, x = bytearray(), seed
    while len(out) < n:
        x = (x * 6364136223846793005 + 1442695040888963407) % 2**64
        out += x.to_bytes(8, "little")
    return bytes(out[:n])


class Env:
    """A temp dir with the server's root, a cache, and the server process."""

    def __init__(self, files, tls=None):
        self.tmp = tempfile.mkdtemp(prefix="cgvlm-fetch-")
        self.root = os.path.join(self.tmp, "www")
        self.cache = os.path.join(self.tmp, "cache")
        self.faults_path = os.path.join(self.tmp, "faults.json")
        self.files = files
        for path, content in files.items():
            p = os.path.join(self.root, path)
            os.makedirs(os.path.dirname(p), exist_ok=True)
            with open(p, "wb") as f:
                f.write(content)
        self.set_faults({})
        port_file = os.path.join(self.tmp, "port")
        self.proc = subprocess.Popen([sys.executable, os.path.join(HERE, "server.py"), "--root", self.root,
                                      "--port-file", port_file, "--faults", self.faults_path]
                                     + (["--tls"] + list(tls) if tls else []))
        for _ in range(200):
            if os.path.exists(port_file):
                break
            time.sleep(0.025)
        with open(port_file) as f:
            self.port = int(f.read())
        self.url = "%s://127.0.0.1:%d" % ("https" if tls else "http", self.port)

    def set_faults(self, faults):
        with open(self.faults_path, "w") as f:
            json.dump(faults, f)

    def manifest(self, name="bench", version="1", entries=None, where="www/manifest.json", **extra):
        """Writes a manifest listing `entries` (default: every file, relative URLs)."""
        if entries is None:
            entries = [{"path": p, "url": p, "sha256": hashlib.sha256(c).hexdigest(), "size": len(c)}
                       for p, c in sorted(self.files.items())]
        m = dict(name=name, version=version, format="scienceqa", files=entries, **extra)
        path = os.path.join(self.tmp, where)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            json.dump(m, f)
        if where.startswith("www/"):  # served: fetch it over http
            return self.url + "/" + where[4:]
        return path

    def fetch(self, ref, *args, cache=None, timeout=60):
        cmd = [BIN, "fetch", ref, "--cache", cache or self.cache, "--retry-delay", "0.05", "--timeout", "2"]
        return subprocess.run(cmd + list(args), capture_output=True, text=True, timeout=timeout)

    def stats(self):
        with urllib.request.urlopen(self.url + "/__stats") as r:
            return json.load(r)

    def reset(self):
        urllib.request.urlopen(self.url + "/__reset").read()

    def cached(self, path, name="bench", version="1"):
        return os.path.join(self.cache, name, version, path)

    def close(self):
        self.proc.kill()
        self.proc.wait()
        shutil.rmtree(self.tmp, ignore_errors=True)


def sent(st, path):
    return st.get("/" + path, {}).get("bytes", 0)


def requests(st, path):
    return st.get("/" + path, {}).get("requests", 0)


def one_file_case(fault, size=200_000, args=()):
    """One file `f.bin` with `fault`; returns (env, completed process)."""
    env = Env({"f.bin": data(size, 7)})
    env.set_faults({"/f.bin": fault})
    r = env.fetch(env.manifest(), *args)
    return env, r


def nothing_valid_left(env, path="f.bin"):
    final = env.cached(path)
    part = final + ".part"
    check(not os.path.exists(final), "%s must not exist after a failure" % final)
    return part


# ---------------------------------------------------------------- quick cases


def test_happy_path_and_cache():
    files = {"problems.json": data(50_000, 1), "images/0/image.png": data(300_000, 2),
             "images/1/image.png": data(1, 3), "images/2/image.png": b"", "pid_splits.json": data(9_999, 4),
             "deep/a/b/c.bin": data(1_000_000, 5)}
    env = Env(files)
    try:
        # a delay on four files: with --jobs 4 they are served at the same time
        env.set_faults({"/" + p: {"delay": 0.3} for p in list(files)[:4]})
        murl = env.manifest()
        r = env.fetch(murl, "--jobs", "4")
        check(r.returncode == 0, "happy path exit %d: %s" % (r.returncode, r.stderr))
        check(r.stdout.strip() == os.path.join(env.cache, "bench", "1"), "prints the directory: %r" % r.stdout)
        for p, c in files.items():
            got = open(env.cached(p), "rb").read() if os.path.exists(env.cached(p)) else None
            check(got == c, "file %s has the served bytes" % p)
            check(not os.path.exists(env.cached(p) + ".part"), "no .part left for %s" % p)
        check("fetched 6 files (1.4 MB)" in r.stderr and "0 from cache" in r.stderr,
              "summary line: %r" % r.stderr)
        st = env.stats()
        check(st.get("__max_active", 0) >= 3, "transfers overlap (max active %s)" % st.get("__max_active"))
        check(os.path.exists(os.path.join(env.cache, "bench", ".manifest-1.json")), "manifest kept in the cache")

        env.reset()
        r = env.fetch(murl)
        check(r.returncode == 0 and "6 from cache" in r.stderr, "re-run all from cache: %r" % r.stderr)
        st = env.stats()
        check(all(sent(st, p) == 0 and requests(st, p) == 0 for p in files), "re-run sends no file bytes: %s" % st)

        # by name: the cached manifest, no network for the files
        r = env.fetch("bench")
        check(r.returncode == 0 and "6 from cache" in r.stderr, "fetch by NAME: %r" % r.stderr)
        r = env.fetch("bench@1", "--offline")
        check(r.returncode == 0, "offline by NAME@VERSION with a warm cache: %r" % r.stderr)
        r = subprocess.run([BIN, "fetch", "--list", "--cache", env.cache], capture_output=True, text=True, timeout=10)
        check(r.returncode == 0 and r.stdout == "bench 1 6 1.4 %s/bench/1 latest\n" % env.cache,
              "fetch --list: %r %r" % (r.stdout, r.stderr))
        empty = os.path.join(env.cache, "empty-cache")
        r = subprocess.run([BIN, "fetch", "--list", "--cache", empty], capture_output=True, text=True, timeout=10)
        check(r.returncode == 0 and r.stdout == "" and "holds no benchmarks yet" in r.stderr,
              "fetch --list of an empty cache says so on stderr: %r %r" % (r.stdout, r.stderr))
        r = env.fetch("bench@2", "--offline")
        check(r.returncode == 2 and "version '2'" in r.stderr, "unknown version: %r" % r.stderr)

        # a damaged cached file is noticed (sha256) and fetched again
        with open(env.cached("problems.json"), "r+b") as f:
            f.write(b"X")
        env.reset()
        r = env.fetch("bench")
        check(r.returncode == 0 and "5 from cache" in r.stderr, "damaged file refetched: %r" % r.stderr)
        check(open(env.cached("problems.json"), "rb").read() == files["problems.json"], "damaged file repaired")
        check(sent(env.stats(), "problems.json") == 50_000, "only the damaged file is sent again")
        # damaged, and the server now fails: the damaged copy is gone, not left looking valid
        with open(env.cached("problems.json"), "r+b") as f:
            f.write(b"X")
        env.set_faults({"/problems.json": {"status": 404}})
        r = env.fetch("bench")
        check(r.returncode == 1 and not os.path.exists(env.cached("problems.json")),
              "damaged copy removed when the refetch fails: %r" % r.stderr)
    finally:
        env.close()


def test_resume_after_drop():
    size = 1_000_000
    env, r = one_file_case({"drop_after": size // 2}, size=size)
    try:
        check(r.returncode == 0, "resume after a drop: %s" % r.stderr)
        check(open(env.cached("f.bin"), "rb").read() == env.files["f.bin"], "resumed file is right")
        st = env.stats()
        check(requests(st, "f.bin") == 2, "two requests (%d)" % requests(st, "f.bin"))
        ranges = st["/f.bin"]["ranges"]
        check(ranges[0] is None and ranges[1] == "bytes=%d-" % (size // 2), "second request resumes: %s" % ranges)
        check(sent(st, "f.bin") <= size + 1024, "server sent %d bytes for a %d-byte file" % (sent(st, "f.bin"), size))
        check("1 resumed" in r.stderr, "summary says resumed: %r" % r.stderr)
    finally:
        env.close()


def test_resume_after_reset():
    size = 600_000
    env, r = one_file_case({"drop_after": 200_000, "reset": True, "drop_times": 2}, size=size)
    try:
        check(r.returncode == 0, "resume after two resets: %s" % r.stderr)
        check(open(env.cached("f.bin"), "rb").read() == env.files["f.bin"], "file right after resets")
        st = env.stats()
        check(requests(st, "f.bin") == 3, "three requests: %s" % st)
        check(sent(st, "f.bin") <= size + 400_000, "resets resume, not restart: %d" % sent(st, "f.bin"))
    finally:
        env.close()


def test_resume_server_ignores_range():
    size = 400_000
    env, r = one_file_case({"drop_after": size // 2, "ignore_range": True}, size=size)
    try:
        check(r.returncode == 0, "restart when Range is ignored: %s" % r.stderr)
        check(open(env.cached("f.bin"), "rb").read() == env.files["f.bin"], "restarted file is right")
        check(sent(env.stats(), "f.bin") == size + size // 2, "whole file sent again")
        check("resumed" not in r.stderr, "a restart is not a resume: %r" % r.stderr)
    finally:
        env.close()


def test_resume_partial_from_earlier_run():
    """A .part left by an interrupted run is continued by the next run."""
    size = 300_000
    env = Env({"f.bin": data(size, 9)})
    try:
        m = env.manifest()
        os.makedirs(os.path.dirname(env.cached("f.bin")), exist_ok=True)
        with open(env.cached("f.bin") + ".part", "wb") as f:
            f.write(env.files["f.bin"][:100_000])
        r = env.fetch(m)
        check(r.returncode == 0, "resume a .part: %s" % r.stderr)
        check(sent(env.stats(), "f.bin") == size - 100_000, "only the rest is sent: %d" % sent(env.stats(), "f.bin"))
        # a stale .part from another version of the file: checksum fails, starts over once
        os.unlink(env.cached("f.bin"))
        with open(env.cached("f.bin") + ".part", "wb") as f:
            f.write(b"\0" * 1000)
        env.reset()
        r = env.fetch(m)
        check(r.returncode == 0, "stale .part is replaced: %s" % r.stderr)
        check(open(env.cached("f.bin"), "rb").read() == env.files["f.bin"], "file right after a stale .part")
    finally:
        env.close()


def test_5xx_then_success():
    env, r = one_file_case({"fail": [500, 503]})
    try:
        check(r.returncode == 0, "500, 503 then ok: %s" % r.stderr)
        check(requests(env.stats(), "f.bin") == 3, "three requests: %s" % env.stats())
        check("2 retries" in r.stderr, "summary counts retries: %r" % r.stderr)
    finally:
        env.close()


def test_404_no_retry():
    env, r = one_file_case({"status": 404})
    try:
        check(r.returncode == 1, "404 exits 1: %d" % r.returncode)
        check("HTTP 404" in r.stderr and "f.bin" in r.stderr, "404 message: %r" % r.stderr)
        check(r.stderr.count("\n") == 1, "one error line: %r" % r.stderr)
        check(requests(env.stats(), "f.bin") == 1, "404 is not retried: %s" % env.stats())
        check(not os.path.exists(nothing_valid_left(env)), "no .part after a 404")
    finally:
        env.close()


def test_5xx_gives_up():
    env, r = one_file_case({"status": 503}, args=("--retries", "2"))
    try:
        check(r.returncode == 1 and "HTTP 503" in r.stderr and "3 attempts" in r.stderr, "gives up: %r" % r.stderr)
        check(requests(env.stats(), "f.bin") == 3, "1 + 2 retries: %s" % env.stats())
    finally:
        env.close()


def test_wrong_bytes():
    env, r = one_file_case({"corrupt": True})
    try:
        check(r.returncode == 1 and "checksum mismatch" in r.stderr, "wrong bytes: %r" % r.stderr)
        check(not os.path.exists(nothing_valid_left(env)), "no .part after a checksum mismatch")
    finally:
        env.close()


def test_redirect_to_file_refused():
    env, r = one_file_case({"redirect": "file:///etc/passwd"})
    try:
        check(r.returncode == 1 and "refused a redirect to 'file:///etc/passwd'" in r.stderr,
              "redirect to file:// refused: %r" % r.stderr)
        part = nothing_valid_left(env)
        check(not os.path.exists(part) or b"root:" not in open(part, "rb").read(), "no local file copied")
    finally:
        env.close()


def test_redirect_http_followed():
    env = Env({"real.bin": data(5000, 3)})
    try:
        env.set_faults({"/moved.bin": {"redirect": env.url + "/real.bin"}})
        c = env.files["real.bin"]
        m = env.manifest(entries=[{"path": "x.bin", "url": "moved.bin", "sha256": hashlib.sha256(c).hexdigest(),
                                   "size": len(c)}])
        r = env.fetch(m)
        check(r.returncode == 0 and open(env.cached("x.bin"), "rb").read() == c, "http redirect: %r" % r.stderr)
    finally:
        env.close()


def test_more_than_declared():
    for fault in ({"extra": 5000}, {"extra": 5000, "no_length": True}):
        env, r = one_file_case(fault)
        try:
            check(r.returncode == 1 and "more than the 200000 bytes" in r.stderr, "%s: %r" % (fault, r.stderr))
            check(not os.path.exists(nothing_valid_left(env)), "no .part after too many bytes")
        finally:
            env.close()


def test_shorter_than_declared():
    """The server's whole file is shorter than the manifest says: an error at once, no retries."""
    env = Env({"a.bin": data(1000, 1)})
    try:
        c = env.files["a.bin"]
        m = env.manifest(entries=[{"path": "a.bin", "url": "a.bin", "sha256": hashlib.sha256(c).hexdigest(),
                                   "size": 5000}])
        r = env.fetch(m)
        check(r.returncode == 1 and "1000 of the 5000 bytes" in r.stderr, "shorter file: %r" % r.stderr)
        check(requests(env.stats(), "a.bin") == 1, "not retried: %s" % env.stats())
        check(not os.path.exists(nothing_valid_left(env, "a.bin")), "no .part left")
    finally:
        env.close()


def test_bad_manifests():
    env = Env({"a.bin": data(100, 1)})
    good = {"path": "a.bin", "url": "a.bin", "sha256": hashlib.sha256(env.files["a.bin"]).hexdigest(), "size": 100}
    cases = [
        (dict(good, path="../escape.bin"), "'..'"),
        (dict(good, path="a/../../b"), "'..'"),
        (dict(good, path="/etc/passwd"), "absolute"),
        (dict(good, path="a//b"), "empty component"),
        (dict(good, path=""), "empty"),
        (dict(good, path="./a"), "'.'"),
        (dict(good, path="a.part"), ".part"),
        (dict(good, sha256="abc"), "64 hexadecimal"),
        (dict(good, sha256="g" * 64), "64 hexadecimal"),
        (dict(good, size=-1), "negative"),
        (dict(good, size=1.5), "integer"),
        ({k: v for k, v in good.items() if k != "url"}, "'url'"),
        ({k: v for k, v in good.items() if k != "sha256"}, "'sha256'"),
        (dict(good, url="ftp://x/a"), "only http, https and file"),
    ]
    try:
        for i, (entry, why) in enumerate(cases):
            m = env.manifest(entries=[good, entry], where="www/m%d.json" % i)
            r = env.fetch(m)
            check(r.returncode == 2, "bad entry %s: exit %d" % (entry, r.returncode))
            check(why in r.stderr and "files[1]" in r.stderr, "bad entry %s: message %r" % (entry, r.stderr))
        m = env.manifest(entries=[good, good], where="www/dup.json")
        r = env.fetch(m)
        check(r.returncode == 2 and "duplicate path 'a.bin'" in r.stderr, "duplicate: %r" % r.stderr)
        m = env.manifest(entries=[good, dict(good, path="a.bin/c")], where="www/dir.json")
        r = env.fetch(m)
        check(r.returncode == 2 and "both a file and a directory" in r.stderr, "file/dir clash: %r" % r.stderr)
        m = env.manifest(name="../x", entries=[good], where="www/name.json")
        r = env.fetch(m)
        check(r.returncode == 2 and "name" in r.stderr, "bad name: %r" % r.stderr)
        with open(os.path.join(env.tmp, "broken.json"), "w") as f:
            f.write('{"name": "x", ')
        r = env.fetch(os.path.join(env.tmp, "broken.json"))
        check(r.returncode == 2 and "malformed JSON" in r.stderr, "broken JSON: %r" % r.stderr)
        check(requests(env.stats(), "a.bin") == 0, "nothing downloaded for a bad manifest")
        check(not os.path.exists(env.cache) or not os.listdir(env.cache), "cache untouched by bad manifests")
        # a manifest served over http may not point at local files
        m = env.manifest(entries=[dict(good, url="file:///etc/passwd", size=0)])
        r = env.fetch(m)
        check(r.returncode == 2 and "local file" in r.stderr, "remote manifest -> file:// refused: %r" % r.stderr)
    finally:
        env.close()


def test_offline():
    env = Env({"p.json": data(1000, 1), "i/1.png": data(2000, 2), "i/2.png": data(3000, 3)})
    try:
        m = env.manifest()
        r = env.fetch(m, "--offline")
        check(r.returncode == 2 and "never fetched" in r.stderr, "offline cold, manifest URL: %r" % r.stderr)
        local = env.manifest(where="local.json")
        r = env.fetch(local, "--offline")
        check(r.returncode == 2, "offline cold exit %d" % r.returncode)
        check("3 of 3 files" in r.stderr and "'i/1.png'" in r.stderr, "offline cold names the missing: %r" % r.stderr)
        check(all(k == "__max_active" for k in env.stats()), "offline touches no network: %s" % env.stats())
        r = env.fetch(m)
        check(r.returncode == 0, "online fetch: %r" % r.stderr)
        env.reset()
        r = env.fetch(m, "--offline")
        check(r.returncode == 0 and "3 from cache" in r.stderr, "offline warm: %r" % r.stderr)
        os.unlink(env.cached("i/2.png"))
        r = env.fetch("bench", "--offline")
        check(r.returncode == 2 and "1 of 3 files" in r.stderr and "'i/2.png'" in r.stderr, "offline one missing: %r" % r.stderr)
        check(all(k == "__max_active" for k in env.stats()), "offline sent no requests: %s" % env.stats())
        r = env.fetch("nosuch", "--offline")
        check(r.returncode == 2 and "no benchmark 'nosuch'" in r.stderr, "unknown name: %r" % r.stderr)
    finally:
        env.close()


def test_file_manifest_relative_urls():
    """A world's benchmark dir: manifest + files with relative URLs, fetched from file://."""
    tmp = tempfile.mkdtemp(prefix="cgvlm-fetch-file-")
    try:
        files = {"problems.json": b'{"1": {}}', "images/12/image.png": data(777, 5)}
        bench = os.path.join(tmp, "world dir", "benchmark")
        for p, c in files.items():
            os.makedirs(os.path.dirname(os.path.join(bench, p)), exist_ok=True)
            open(os.path.join(bench, p), "wb").write(c)
        entries = [{"path": p, "url": p, "sha256": hashlib.sha256(c).hexdigest(), "size": len(c)} for p, c in files.items()]
        man = os.path.join(bench, "manifest.json")
        json.dump({"name": "world-sqa", "version": "s1", "format": "scienceqa", "files": entries}, open(man, "w"))
        cache = os.path.join(tmp, "cache")
        base = [BIN, "fetch", "--cache", cache]
        for ref in (man, "file://" + man.replace(" ", "%20")):
            r = subprocess.run(base + [ref], capture_output=True, text=True, timeout=30)
            check(r.returncode == 0, "file manifest %s: %r" % (ref, r.stderr))
            for p, c in files.items():
                got = os.path.join(cache, "world-sqa", "s1", p)
                check(os.path.exists(got) and open(got, "rb").read() == c, "file:// fetched %s" % p)
            shutil.rmtree(cache)
        # XDG_CACHE_HOME is the default cache
        envv = dict(os.environ, XDG_CACHE_HOME=os.path.join(tmp, "xdg"))
        r = subprocess.run([BIN, "fetch", man], capture_output=True, text=True, timeout=30, env=envv)
        check(r.returncode == 0 and r.stdout.strip() == os.path.join(tmp, "xdg", "cgvlm", "world-sqa", "s1"),
              "XDG_CACHE_HOME default: %r %r" % (r.stdout, r.stderr))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def test_base_url_override():
    env = Env({"a.bin": data(4000, 1)})
    try:
        m = env.manifest(where="elsewhere/manifest.json")  # relative URLs would point to elsewhere/
        r = env.fetch(m)
        check(r.returncode == 1, "relative URL resolved next to the manifest (missing there): %r" % r.stderr)
        r = env.fetch(m, "--base-url", env.url)
        check(r.returncode == 0 and requests(env.stats(), "a.bin") == 1, "--base-url: %r" % r.stderr)
        # a cache that cannot be a directory: one clear line, exit 2
        blocker = os.path.join(env.tmp, "not-a-dir")
        open(blocker, "w").close()
        r = env.fetch(m, "--base-url", env.url, cache=blocker)
        check(r.returncode == 2 and "not a directory" in r.stderr and r.stderr.count("\n") == 1,
              "cache is a file: %r" % r.stderr)
    finally:
        env.close()


def test_tls_verified():
    """A self-signed certificate is refused (TLS verification is on), at once, without retries."""
    openssl = shutil.which("openssl")
    if not openssl:
        print("test_tls_verified: no openssl command, skipped")
        return
    keydir = tempfile.mkdtemp(prefix="cgvlm-tls-")
    cert, key = os.path.join(keydir, "cert.pem"), os.path.join(keydir, "key.pem")
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "1", "-subj", "/CN=127.0.0.1"], check=True, capture_output=True)
    env = Env({"a.bin": data(1000, 1)}, tls=(cert, key))
    try:
        c = env.files["a.bin"]
        m = env.manifest(where="local.json", base_url=env.url + "/",
                         entries=[{"path": "a.bin", "url": "a.bin", "sha256": hashlib.sha256(c).hexdigest(), "size": 1000}])
        t0 = time.time()
        r = env.fetch(m, "--retries", "3", "--retry-delay", "1")
        check(r.returncode == 1 and "certificate" in r.stderr.lower(), "self-signed refused: %r" % r.stderr)
        check("attempts" not in r.stderr and time.time() - t0 < 1.0, "no retries on a bad certificate: %r" % r.stderr)
        check(not os.path.exists(env.cached("a.bin")), "nothing cached from an unverified server")
    finally:
        env.close()
        shutil.rmtree(keydir, ignore_errors=True)


def test_progress_bar_on_a_terminal():
    """stderr a terminal: a progress bar (redrawn with \\r); not a terminal: no escape codes."""
    import pty
    env = Env({"a.bin": data(3_000_000, 1), "b.bin": data(1000, 2)})
    try:
        env.set_faults({"/a.bin": {"delay": 0.3}})
        m = env.manifest()
        master, slave = pty.openpty()
        p = subprocess.Popen([BIN, "fetch", m, "--cache", env.cache], stdout=subprocess.PIPE, stderr=slave)
        os.close(slave)
        out = b""
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        p.wait(timeout=30)
        os.close(master)
        text = out.decode(errors="replace")
        check(p.returncode == 0, "fetch on a terminal: %r" % text)
        check("\r\x1b[K" in text and "2 files" in text and "%" in text, "progress bar drawn: %r" % text)
        check("fetched 2 files" in text, "summary after the bar: %r" % text)
        r = env.fetch("bench")
        check("\x1b[" not in r.stderr and "\r" not in r.stderr, "no escape codes off a terminal: %r" % r.stderr)
    finally:
        env.close()


def test_cli_errors():
    for args in (["fetch"], ["fetch", "a", "b"], ["fetch", "--frob", "x"], ["fetch", "x", "--jobs", "0"],
                 ["fetch", "x", "--timeout", "abc"], ["fetch", "bad name!"]):
        r = subprocess.run([BIN] + args, capture_output=True, text=True, timeout=10)
        check(r.returncode == 2 and r.stderr.startswith("cgvlm: error:") and r.stderr.count("\n") == 1,
              "%s: exit %d %r" % (args, r.returncode, r.stderr))


def test_large_files_hashed_by_a_thread():
    """Files of 8 MiB and more are hashed by a second thread (the default with two CPUs): the same
    behaviour through a drop and resume, a server ignoring Range, wrong bytes and extra bytes."""
    size = 9_000_000
    body = data(size, 11)
    digest = hashlib.sha256(body).hexdigest()
    env = Env({"drop.bin": body, "norange.bin": body, "bad.bin": body, "big.bin": body})
    try:
        env.set_faults({"/drop.bin": {"drop_after": size // 2}, "/norange.bin": {"drop_after": size // 3, "ignore_range": True},
                        "/bad.bin": {"corrupt": True}, "/big.bin": {"extra": 5000}})

        def one(path):
            entries = [{"path": path, "url": path, "sha256": digest, "size": size}]
            return env.fetch(env.manifest(name=path.replace(".", "-"), entries=entries))

        r = one("drop.bin")
        st = env.stats()
        check(r.returncode == 0 and open(env.cached("drop.bin", "drop-bin"), "rb").read() == body,
              "large file resumed after a drop: %r" % r.stderr)
        check(st["/drop.bin"]["ranges"] == [None, "bytes=%d-" % (size // 2)], "resumed at the drop: %s" % st["/drop.bin"])
        check(sent(st, "drop.bin") == size, "nothing re-sent: %d for %d" % (sent(st, "drop.bin"), size))
        r = one("norange.bin")
        check(r.returncode == 0 and open(env.cached("norange.bin", "norange-bin"), "rb").read() == body,
              "large file restarted when Range is ignored: %r" % r.stderr)
        check(sent(env.stats(), "norange.bin") == size + size // 3, "whole file sent again")
        r = one("bad.bin")
        check(r.returncode == 1 and "checksum mismatch" in r.stderr, "large file, wrong bytes: %r" % r.stderr)
        check(not os.path.exists(env.cached("bad.bin", "bad-bin") + ".part"), "no .part after a mismatch")
        check(not os.path.exists(env.cached("bad.bin", "bad-bin")), "no file after a mismatch")
        r = one("big.bin")
        check(r.returncode == 1 and "more than the %d bytes" % size in r.stderr, "large file, extra bytes: %r" % r.stderr)
        check(not os.path.exists(env.cached("big.bin", "big-bin") + ".part"), "no .part after too many bytes")
    finally:
        env.close()


# ---------------------------------------------------------------- slow cases


def test_trickle_times_out():
    env, r = one_file_case({"trickle": 0.05}, size=5000, args=("--timeout", "1", "--retries", "1"))
    try:
        check(r.returncode == 1, "trickle fails: %d %r" % (r.returncode, r.stderr))
        check("2 attempts" in r.stderr and "too slow" in r.stderr,
              "trickle message: %r" % r.stderr)
        check(requests(env.stats(), "f.bin") == 2, "one retry: %s" % env.stats())
        nothing_valid_left(env)
    finally:
        env.close()


def test_many_files():
    files = {"img/%03d.png" % i: data(2000 + i, i) for i in range(300)}
    env = Env(files)
    try:
        r = env.fetch(env.manifest(), "--jobs", "16")
        check(r.returncode == 0 and "fetched 300 files" in r.stderr, "300 files: %r" % r.stderr)
        check(all(open(env.cached(p), "rb").read() == c for p, c in files.items()), "300 files right")
    finally:
        env.close()


def test_two_fetches_share_the_cache():
    """Parallel evaluations fetch the same benchmark: one downloads, the other waits, then uses it."""
    env = Env({"a.bin": data(300_000, 1), "b.bin": data(200_000, 2)})
    try:
        env.set_faults({"/a.bin": {"delay": 0.5}})
        m = env.manifest()
        cmd = [BIN, "fetch", m, "--cache", env.cache]
        procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
        outs = [p.communicate(timeout=60) for p in procs]
        check(all(p.returncode == 0 for p in procs), "both fetches succeed: %s" % (outs,))
        check(sum("2 from cache" in e for _, e in outs) == 1, "the second one finds everything cached: %s" % (outs,))
        st = env.stats()
        check(sent(st, "a.bin") == 300_000 and sent(st, "b.bin") == 200_000, "each file sent once: %s" % st)
    finally:
        env.close()


QUICK = [test_happy_path_and_cache, test_resume_after_drop, test_resume_after_reset, test_resume_server_ignores_range,
         test_resume_partial_from_earlier_run, test_5xx_then_success, test_404_no_retry, test_5xx_gives_up,
         test_wrong_bytes, test_redirect_to_file_refused, test_redirect_http_followed, test_more_than_declared,
         test_shorter_than_declared, test_bad_manifests, test_offline, test_file_manifest_relative_urls,
         test_base_url_override, test_tls_verified, test_progress_bar_on_a_terminal, test_cli_errors,
         test_large_files_hashed_by_a_thread]
SLOW = [test_trickle_times_out, test_many_files, test_two_fetches_share_the_cache]

if __name__ == "__main__":
    for t in QUICK if TIER == "quick" else SLOW:
        t0 = time.time()
        t()
        print("%-40s %.1f s" % (t.__name__, time.time() - t0), flush=True)
    print("test_fetch %s: %d failures" % (TIER, len(FAILURES)))
    sys.exit(1 if FAILURES else 0)
