#!/usr/bin/python3
"""reference.py: the CG-VLM model of DESIGN.md §1 written independently in PyTorch, used as the
oracle for the C training core.

    reference.py EXPORT_BIN MODE [linear]     (MODE: lm | clip | align | instruct)

runs `EXPORT_BIN MODE TMPDIR [linear]` (tests/train/ref_export.c; `linear`: linear adapter, fixed
tau, lambda 0.5), loads the same weights and batch, and
compares, in float64 (so the differences are the C code's float32 rounding and nothing else):
logits, L_gen, L_con, the gradient of every trainable tensor, the losses of 5 AdamW steps (with
global-norm clipping) and every trained parameter after them. Tolerances (stated in the output):
  logits          max|c - t| <= 1e-5 + 1e-5 * max|t|
  losses          |c - t| <= 1e-5 + 1e-5 * |t|
  gradients       per tensor max|c - t| <= 2e-5 * max|t| + 1e-8
  after 5 steps   per tensor max|c - t| <= 2% of the tensor's largest move (lr 1e-3: ~5e-3),
                  and within 1e-5 on every entry whose first gradient is >= 1e-3 of the tensor's
                  largest. Where a gradient is ~0 (e.g. attention key biases, whose exact gradient
                  is 0: softmax ignores a per-row constant), Adam's m/sqrt(v) turns float32
                  rounding into a visible step, so such entries may differ by ~1e-5.
(measured on this code: logits 2e-7, gradients <= 3e-6 of the tensor's largest entry, parameters
after 5 steps: entries with |grad| >= 1e-3 max within 6e-6 (most within 3e-7), max 2.4e-5;
losses <= 2e-7.)
Exit status 0 when everything is within tolerance, 1 otherwise.
"""
import math
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
import torch.nn.functional as F

torch.set_default_dtype(torch.float64)


def read_config(d):
    cfg = {}
    with open(os.path.join(d, "config.txt")) as f:
        for line in f:
            k, *v = line.split()
            cfg[k] = v if k == "decay" else v[0] if v else ""
    for k in ("image_size", "patch", "vit_dim", "vit_layers", "vit_heads", "lm_dim", "lm_layers",
              "lm_heads", "ctx", "vocab", "pool", "learn_tau", "steps"):
        cfg[k] = int(cfg[k])
    for k in ("tau", "lambda", "lr", "clip", "beta1", "beta2", "eps", "weight_decay"):
        cfg[k] = float(cfg[k])
    cfg["decay"] = set(cfg.get("decay", []))
    return cfg


def load_dir(d):
    return {f[:-4]: np.load(os.path.join(d, f)) for f in sorted(os.listdir(d)) if f.endswith(".npy")}


class Ref:
    """The model as plain functions of a dict of named tensors."""

    def __init__(self, cfg, params):
        self.c = cfg
        self.p = {k: torch.tensor(v.astype(np.float64)) for k, v in params.items()}

    def block(self, pre, x, nh, causal):
        p = self.p
        B, T, C = x.shape
        hs = C // nh
        h = F.layer_norm(x, (C,), p[pre + "ln1.w"], p[pre + "ln1.b"], 1e-5)
        qkv = F.linear(h, p[pre + "attn.qkv.w"], p[pre + "attn.qkv.b"])
        q, k, v = qkv.split(C, dim=2)
        q, k, v = (t.view(B, T, nh, hs).transpose(1, 2) for t in (q, k, v))
        att = (q @ k.transpose(-2, -1)) / math.sqrt(hs)
        if causal:
            mask = torch.tril(torch.ones(T, T, dtype=torch.bool))
            att = att.masked_fill(~mask, float("-inf"))
        y = (F.softmax(att, dim=-1) @ v).transpose(1, 2).reshape(B, T, C)
        x = x + F.linear(y, p[pre + "attn.proj.w"], p[pre + "attn.proj.b"])
        h = F.layer_norm(x, (C,), p[pre + "ln2.w"], p[pre + "ln2.b"], 1e-5)
        h = F.gelu(F.linear(h, p[pre + "mlp.fc.w"], p[pre + "mlp.fc.b"]), approximate="tanh")
        return x + F.linear(h, p[pre + "mlp.proj.w"], p[pre + "mlp.proj.b"])

    def stack(self, name, x, L, nh, causal):
        for l in range(L):
            x = self.block(f"{name}.h.{l}.", x, nh, causal)
        return F.layer_norm(x, (x.shape[-1],), self.p[name + ".lnf.w"], self.p[name + ".lnf.b"], 1e-5)

    def vit(self, images):
        c, p = self.c, self.p
        B, S = images.shape[0], c["image_size"]
        ps, g = c["patch"], S // c["patch"]
        x = torch.tensor(images.astype(np.float64)) / 255.0 - 0.5
        # patches row-major on the grid, each flattened as (y, x, channel)
        x = x.view(B, g, ps, g, ps, 3).permute(0, 1, 3, 2, 4, 5).reshape(B, g * g, ps * ps * 3)
        x = F.linear(x, p["vit.patch.w"], p["vit.patch.b"]) + p["vit.pos"]
        return self.stack("vit", x, c["vit_layers"], c["vit_heads"], False)

    def adapter(self, f):
        p = self.p
        h = F.linear(f, p["adapter.fc1.w"], p["adapter.fc1.b"])
        if self.c["adapter"] == "mlp2x":
            h = F.linear(F.gelu(h, approximate="tanh"), p["adapter.fc2.w"], p["adapter.fc2.b"])
        return h

    def lm(self, vis, tokens):
        p = self.p
        x = p["lm.wte"][torch.tensor(tokens, dtype=torch.long)]
        if vis is not None:
            x = torch.cat([vis, x], dim=1)
        x = x + p["lm.wpe"][: x.shape[1]]
        h = self.stack("lm", x, self.c["lm_layers"], self.c["lm_heads"], True)
        return h @ p["lm.wte"].t()

    @staticmethod
    def info_nce(a, b, logit_scale):
        logits = logit_scale.exp() * (a @ b.t())
        lab = torch.arange(a.shape[0])
        return 0.5 * (F.cross_entropy(logits, lab) + F.cross_entropy(logits.t(), lab))

    def logit_scale(self, name):
        if name in self.p:
            return self.p[name][0]
        return torch.tensor(math.log(1.0 / self.c["tau"]))

    def forward(self, batch, mode):
        """returns (loss, gen, con, logits)"""
        c, p = self.c, self.p
        images, tokens, targets, content = batch
        mask = torch.tensor(content.astype(np.float64))
        if mode == "clip":
            f = self.vit(images).mean(dim=1)
            img = F.normalize(F.linear(f, p["clip.img_proj.w"], p["clip.img_proj.b"]), dim=-1)
            e = p["clip.bow.wte"][torch.tensor(tokens, dtype=torch.long)]
            bow = (e * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
            txt = F.normalize(F.linear(bow, p["clip.txt_proj.w"], p["clip.txt_proj.b"]), dim=-1)
            con = self.info_nce(img, txt, self.logit_scale("clip.logit_scale"))
            return con, torch.tensor(0.0), con, None
        vis = self.adapter(self.vit(images)) if mode != "lm" else None
        P = 0 if vis is None else vis.shape[1]
        logits = self.lm(vis, tokens)
        tg = torch.tensor(targets, dtype=torch.long)
        text_logits = logits[:, P:, :]
        sel = tg >= 0
        gen = F.cross_entropy(text_logits[sel], tg[sel])
        loss, con = gen, torch.tensor(0.0)
        if mode == "align" and c["lambda"] > 0:
            B, g, k, d = vis.shape[0], c["image_size"] // c["patch"], c["pool"], vis.shape[2]
            pooled = vis.view(B, g // k, k, g // k, k, d).mean(dim=(2, 4)).reshape(B, -1, d)
            vbar = F.normalize(pooled, dim=-1).mean(dim=1)
            t = F.normalize(p["lm.wte"][torch.tensor(tokens, dtype=torch.long)], dim=-1)
            tbar = (t * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
            con = self.info_nce(vbar, tbar, self.logit_scale("con.logit_scale"))
            loss = gen + c["lambda"] * con
        return loss, gen, con, logits


TRAINS = {"lm": ("lm.",), "clip": ("vit.", "clip."), "align": ("adapter.", "con."),
          "instruct": ("adapter.", "lm.")}

failures = 0


def report(name, err, tol, detail=""):
    global failures
    ok = err <= tol
    failures += 0 if ok else 1
    print(f"  {name:34s} err {err:.3e}  tol {tol:.3e}  {'ok' if ok else 'FAIL'} {detail}")


def main():
    exe, mode, variant = sys.argv[1], sys.argv[2], sys.argv[3:]
    with tempfile.TemporaryDirectory() as d:
        subprocess.run([exe, mode, d] + variant, check=True)
        cfg = read_config(d)
        p0, g_c, p5_c = load_dir(d + "/p0"), load_dir(d + "/g"), load_dir(d + "/p5")
        batch = tuple(np.load(f"{d}/{n}.npy") for n in ("images", "tokens", "targets", "content"))
        logits_c = np.load(d + "/logits.npy") if os.path.exists(d + "/logits.npy") else None
        losses_c = np.loadtxt(d + "/losses.txt", ndmin=2)

    ref = Ref(cfg, p0)
    trained = sorted(k for k in ref.p if k.startswith(TRAINS[mode]))
    assert trained and set(trained) == set(g_c), (trained, sorted(g_c))
    print(f"reference {mode} {' '.join(variant)}: adapter {cfg['adapter']}, learn_tau {cfg['learn_tau']}, "
          f"lambda {cfg['lambda']}; {len(trained)} trainable tensors, float64 PyTorch {torch.__version__}")
    for k in trained:
        ref.p[k].requires_grad_(True)

    # forward: logits and losses
    loss, gen, con, logits = ref.forward(batch, mode)
    if logits is not None:
        lt = logits.detach().numpy()
        report("logits", np.abs(logits_c - lt).max(), 1e-5 + 1e-5 * np.abs(lt).max())
    for name, c_val, t_val in (("loss", losses_c[0, 0], loss), ("L_gen", losses_c[0, 1], gen),
                               ("L_con", losses_c[0, 2], con)):
        t_val = float(t_val)
        report(name, abs(c_val - t_val), 1e-5 + 1e-5 * abs(t_val), f"(C {c_val:.7f} torch {t_val:.7f})")

    # gradients of every trainable tensor
    loss.backward()
    worst = 0.0
    g0 = {}
    for k in trained:
        gt = g0[k] = ref.p[k].grad.numpy().copy()
        scale = np.abs(gt).max()
        err = np.abs(g_c[k] - gt).max()
        worst = max(worst, err / (scale + 1e-30))
        report("grad " + k, err, 2e-5 * scale + 1e-8)
    print(f"  worst gradient error relative to the tensor's largest entry: {worst:.2e}")

    # 5 AdamW steps, global-norm clipping, on the same batch
    params = [ref.p[k] for k in trained]
    m = [torch.zeros_like(q) for q in params]
    v = [torch.zeros_like(q) for q in params]
    b1, b2, eps, lr, wd = cfg["beta1"], cfg["beta2"], cfg["eps"], cfg["lr"], cfg["weight_decay"]
    for s in range(cfg["steps"]):
        for q in params:
            q.grad = None
        loss, gen, con, _ = ref.forward(batch, mode)
        report(f"step {s} loss", abs(losses_c[s, 0] - float(loss)), 1e-5 + 1e-5 * abs(float(loss)))
        loss.backward()
        with torch.no_grad():
            norm = math.sqrt(sum(float((q.grad ** 2).sum()) for q in params))
            sc = cfg["clip"] / norm if norm > cfg["clip"] else 1.0
            t = s + 1
            for k, q, mi, vi in zip(trained, params, m, v):
                g = q.grad * sc
                mi.mul_(b1).add_((1 - b1) * g)
                vi.mul_(b2).add_((1 - b2) * g * g)
                mhat, vhat = mi / (1 - b1 ** t), vi / (1 - b2 ** t)
                decay = wd if k in cfg["decay"] else 0.0
                q.sub_(lr * (mhat / (vhat.sqrt() + eps) + decay * q))
    for k, q in zip(trained, params):
        diff = np.abs(p5_c[k] - q.detach().numpy())
        moved = np.abs(q.detach().numpy() - p0[k]).max()
        report("after 5 steps " + k, diff.max(), 2e-2 * moved, f"(largest move {moved:.2e})")
        live = np.abs(g0[k]) >= 1e-3 * np.abs(g0[k]).max()
        report("  entries with |grad| >= 1e-3 max", diff[live].max() if live.any() else 0.0, 1e-5)
    print(f"reference {mode}: {'all within tolerance' if not failures else f'{failures} FAILED'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
