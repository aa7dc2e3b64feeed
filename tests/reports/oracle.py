"""oracle.py: the documented bootstrap scheme of reports/stats.h, written again in Python for the
tests: xoshiro256** seeded by splitmix64 (util/rng.c), streams cg_rng_seed2(seed, fnv1a64(label)),
indices cg_rng_below(n), percentiles 2.5 / 97.5 with numpy's linear interpolation."""
import numpy as np

M = (1 << 64) - 1


def fnv1a64(s):
    h = 0xcbf29ce484222325
    for ch in s.encode():
        h = ((h ^ ch) * 0x100000001b3) & M
    return h


def _splitmix(x):
    x = (x + 0x9e3779b97f4a7c15) & M
    z = x
    z = ((z ^ (z >> 30)) * 0xbf58476d1ce4e5b9) & M
    z = ((z ^ (z >> 27)) * 0x94d049bb133111eb) & M
    return x, z ^ (z >> 31)


def _rotl(x, k):
    return ((x << k) | (x >> (64 - k))) & M


class Rng:
    def __init__(self, seed, stream):
        x = seed ^ ((stream * 0xd1342543de82ef95 + 0x2545f4914f6cdd1d) & M)
        _, x = _splitmix(x)
        self.s = []
        for _ in range(4):
            x, z = _splitmix(x)
            self.s.append(z)

    def u64(self):
        s = self.s
        result = (_rotl((s[1] * 5) & M, 7) * 9) & M
        t = (s[1] << 17) & M
        s[2] ^= s[0]
        s[3] ^= s[1]
        s[1] ^= s[2]
        s[0] ^= s[3]
        s[2] ^= t
        s[3] = _rotl(s[3], 45)
        return result

    def below(self, n):
        if n <= 1:
            return 0
        limit = M - M % n
        while True:
            x = self.u64()
            if x < limit:
                return x % n


def _interval(reps):
    reps = np.array([r for r in reps if np.isfinite(r)])
    return tuple(np.percentile(reps, [2.5, 97.5]))


def boot_questions(cols, stat, B, seed, label):
    """cols: aligned 0/1 arrays over the same questions; stat 'mean' | 'ratio' | 'diff'."""
    rng = Rng(seed, fnv1a64(label))
    n = len(cols[0])
    reps = []
    with np.errstate(divide="ignore", invalid="ignore"):
        for _ in range(B):
            idx = [rng.below(n) for _ in range(n)]
            m0 = sum(int(cols[0][k]) for k in idx) / n
            m1 = sum(int(cols[1][k]) for k in idx) / n if stat != "mean" else 0
            reps.append(m0 if stat == "mean" else (np.float64(m0) / m1 if stat == "ratio" else m0 - m1))
    return _interval(reps)


def boot_ratio_seeds(a, b, B, seed, label):
    rng = Rng(seed, fnv1a64(label))
    reps = []
    for _ in range(B):
        sa = sum(a[rng.below(len(a))] for _ in range(len(a)))
        sb = sum(b[rng.below(len(b))] for _ in range(len(b)))
        reps.append((sa / len(a)) / (sb / len(b)))
    return _interval(reps)
