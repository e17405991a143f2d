#!/usr/bin/env python3
"""`attn run` against an independent NumPy implementation of the semantics.

Usage: numpy_parity.py ATTN_BINARY WORK_DIR

Writes random inputs as .npy (also big-endian, Fortran-order and format 2.0
files, as NumPy can write them), runs the command-line tool for every option
and both layouts, and compares its out and lse with float64 NumPy within
2e-5 relative to the output's scale. Then checks that bad input gives a
non-zero exit and a message on stderr, never a crash.
"""
import math
import os
import subprocess
import sys

import numpy as np

TOL = 2e-5


def alibi_slopes(n):
    """The ALiBi paper's own slope recipe (power-of-two heads, else the
    closest power of two plus every other slope of twice that)."""
    def power_of_2(n):
        start = 2 ** (-2 ** -(math.log2(n) - 3))
        return [start * start ** i for i in range(n)]
    if math.log2(n).is_integer():
        return power_of_2(n)
    c = 2 ** math.floor(math.log2(n))
    return power_of_2(c) + alibi_slopes(2 * c)[0::2][: n - c]


def attention(q, k, v, causal=False, align="bottom-right", window=(-1, -1),
              softcap=0.0, scale=None, slopes=None, mask=None, key_len=None):
    """float64 attention on [B, H, S, D] arrays; returns out, lse."""
    q, k, v = (x.astype(np.float64) for x in (q, k, v))
    B, Hq, Sq, D = q.shape
    Hkv, Skv = k.shape[1], k.shape[2]
    k = np.repeat(k, Hq // Hkv, axis=1)
    v = np.repeat(v, Hq // Hkv, axis=1)
    if scale is None:
        scale = 1.0 / math.sqrt(D)
    s = float(np.float32(scale)) * np.einsum("bhid,bhjd->bhij", q, k)
    if softcap > 0:
        s = softcap * np.tanh(s / softcap)
    offset = Skv - Sq if align == "bottom-right" else 0
    pos = np.arange(Sq)[:, None] + offset
    j = np.arange(Skv)[None, :]
    if slopes is not None:
        s = s - np.asarray(slopes, np.float64)[None, :, None, None] * np.abs(pos - j)
    visible = np.ones((B, Hq, Sq, Skv), bool)
    if mask is not None and mask.dtype == np.bool_:
        visible &= np.broadcast_to(mask, visible.shape)
    elif mask is not None:
        s = s + mask.astype(np.float64)
    if key_len is not None:
        visible &= j[None, None] < np.asarray(key_len)[:, None, None, None]
    if causal:
        visible &= j <= pos
    if window[0] >= 0:
        visible &= j >= pos - window[0]
    if window[1] >= 0:
        visible &= j <= pos + window[1]
    s = np.where(visible, s, -np.inf)
    m = s.max(axis=-1, keepdims=True)
    m_safe = np.where(np.isfinite(m), m, 0.0)
    e = np.exp(s - m_safe)
    l = e.sum(axis=-1, keepdims=True)
    out = np.einsum("bhij,bhjd->bhid", e, v) / np.where(l > 0, l, 1.0)
    lse = np.where(l[..., 0] > 0, m[..., 0] + np.log(np.where(l > 0, l, 1.0))[..., 0], -np.inf)
    return out, lse


class Runner:
    def __init__(self, binary, work):
        self.binary, self.work = binary, work
        self.passed = self.failed = 0
        os.makedirs(work, exist_ok=True)

    def path(self, name):
        return os.path.join(self.work, name)

    def save(self, name, array, **kw):
        p = self.path(name)
        with open(p, "wb") as f:
            np.lib.format.write_array(f, array, **kw)
        return p

    def run(self, args, timeout=120):
        """attn run ARGS; a run that hangs past timeout counts as exit -1."""
        try:
            return subprocess.run([self.binary, "run"] + args, capture_output=True,
                                  text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return subprocess.CompletedProcess(args, -1, "", f"timed out after {timeout} s")

    def check(self, label, ok, detail=""):
        if ok:
            self.passed += 1
        else:
            self.failed += 1
            print(f"FAIL {label}: {detail}")


def parity_cases(r, rng):
    B, Hq, Hkv, Sq, Skv, D, Dv = 2, 6, 2, 13, 33, 16, 8  # Sq <= 16: decode serves it
    q = rng.standard_normal((B, Hq, Sq, D)).astype(np.float32)
    k = rng.standard_normal((B, Hkv, Skv, D)).astype(np.float32)
    v = rng.standard_normal((B, Hkv, Skv, Dv)).astype(np.float32)
    bool_2d = rng.random((Sq, Skv)) < 0.7
    bool_4d = rng.random((B, 1, Sq, Skv)) < 0.5
    bias = rng.standard_normal((B, Hq, Sq, Skv)).astype(np.float32)
    bias[rng.random(bias.shape) < 0.2] = -np.inf
    slopes = (rng.random(Hq) * 0.5).astype(np.float32)
    r.save("bool_2d.npy", bool_2d)
    r.save("bool_4d.npy", bool_4d)
    r.save("bias.npy", bias)
    r.save("slopes.npy", slopes)
    r.save("key_len32.npy", np.array([0, 21], np.int32))
    r.save("key_len64.npy", np.array([33, 5], np.int64))

    cases = [
        ("none", [], {}),
        ("causal", ["--causal"], dict(causal=True)),
        ("causal top-left", ["--causal", "--align", "top-left"],
         dict(causal=True, align="top-left")),
        ("window 4,2", ["--window", "4,2"], dict(window=(4, 2))),
        ("window -1,0", ["--window", "-1,0"], dict(window=(-1, 0))),
        ("softcap", ["--softcap", "1.5", "--scale", "1"], dict(softcap=1.5, scale=1.0)),
        ("scale", ["--scale", "0.05"], dict(scale=0.05)),
        ("alibi standard", ["--alibi"], dict(slopes=alibi_slopes(Hq))),
        ("alibi file", ["--alibi-slopes", r.path("slopes.npy")], dict(slopes=slopes)),
        ("bool mask 2-D", ["--mask", r.path("bool_2d.npy")], dict(mask=bool_2d)),
        ("bool mask 4-D", ["--mask", r.path("bool_4d.npy")], dict(mask=bool_4d)),
        ("float mask", ["--mask", r.path("bias.npy")], dict(mask=bias)),
        ("key-len int32", ["--key-len", r.path("key_len32.npy")], dict(key_len=[0, 21])),
        ("key-len int64", ["--key-len", r.path("key_len64.npy")], dict(key_len=[33, 5])),
        ("everything", ["--causal", "--align", "top-left", "--window", "9,3",
                        "--softcap", "2", "--scale", "0.4", "--alibi",
                        "--mask", r.path("bool_4d.npy"),
                        "--key-len", r.path("key_len32.npy")],
         dict(causal=True, align="top-left", window=(9, 3), softcap=2.0, scale=0.4,
              slopes=alibi_slopes(Hq), mask=bool_4d, key_len=[0, 21])),
    ]
    cases += pattern_cases(r, rng, Hq, Sq, Skv)
    for layout in ("bhsd", "bshd"):
        to_file = (lambda x: x) if layout == "bhsd" else (lambda x: x.transpose(0, 2, 1, 3))
        qp = r.save(f"q_{layout}.npy", np.ascontiguousarray(to_file(q)))
        kp = r.save(f"k_{layout}.npy", np.ascontiguousarray(to_file(k)))
        vp = r.save(f"v_{layout}.npy", np.ascontiguousarray(to_file(v)))
        for name, flags, kw in cases:
            want_out, want_lse = attention(q, k, v, **kw)
            for algorithm in ("reference", "naive", "flash", "decode", "auto"):
                label = f"{name} [{layout}, {algorithm}]"
                out_p, lse_p = r.path("out.npy"), r.path("lse.npy")
                for p in (out_p, lse_p):
                    if os.path.exists(p):
                        os.remove(p)
                res = r.run(["--q", qp, "--k", kp, "--v", vp, "--layout", layout,
                             "--algorithm", algorithm, "--out", out_p,
                             "--lse", lse_p] + flags)
                if res.returncode != 0:
                    r.check(label, False, f"exit {res.returncode}: {res.stderr.strip()}")
                    continue
                out = to_file(np.load(out_p)) if layout == "bshd" else np.load(out_p)
                lse = np.load(lse_p)
                scale = max(np.abs(want_out).max(), 1e-6)
                err = np.abs(out - want_out).max() / scale
                same_inf = np.array_equal(np.isinf(lse), np.isinf(want_lse))
                fin = np.isfinite(want_lse)
                lse_err = (np.abs(lse[fin] - want_lse[fin]) /
                           np.maximum(1, np.abs(want_lse[fin]))).max() if fin.any() else 0
                r.check(label, out.shape == want_out.shape and err <= TOL and
                        same_inf and lse_err <= TOL,
                        f"out rel err {err:.3g}, lse err {lse_err:.3g}, inf match {same_inf}")


def pattern_cases(r, rng, Hq, Sq, Skv):
    """--pattern flags against masks written from the papers' definitions."""
    def masks(align="bottom-right"):
        pos = np.arange(Sq)[:, None] + (Skv - Sq if align == "bottom-right" else 0)
        j = np.arange(Skv)[None, :]
        return pos, j, np.abs(pos - j)

    pos, j, dist = masks()
    strided = (j <= pos) & ((dist <= 2) | ((pos - j) % 5 == 0))
    strided_nc = (dist <= 1) | (dist % 7 == 0)
    fixed = (j <= pos) & ((pos // 8 == j // 8) | (j % 8 >= 6))
    dil = [1, 2, 1, 3, 1, 2]
    glob = [0, 32]
    longformer = np.zeros((Hq, Sq, Skv), bool)
    for h in range(Hq):
        band = (dist % dil[h] == 0) & (dist // dil[h] <= 3)
        longformer[h] = band | np.isin(pos, glob) | np.isin(j, glob)
    qb, kb = -(-Sq // 4), -(-Skv // 4)
    layout = rng.random((Hq, qb, kb)) < 0.4
    r.save("block_layout.npy", layout)
    tpos, tj, _ = masks("top-left")
    block_sparse = layout[:, tpos // 4, tj // 4]
    cu_q, cu_k = [0, 5, Sq], [0, 20, Skv]
    r.save("cu_q.npy", np.array(cu_q, np.int32))
    r.save("cu_k.npy", np.array(cu_k, np.int64))
    docs = np.zeros((Sq, Skv), bool)
    for d in range(2):
        for i in range(cu_q[d], cu_q[d + 1]):
            last = (i - cu_q[d]) + (cu_k[d + 1] - cu_k[d]) - (cu_q[d + 1] - cu_q[d])
            for jj in range(cu_k[d], cu_k[d + 1]):
                docs[i, jj] = jj - cu_k[d] <= last
    return [
        ("strided causal", ["--pattern", "strided", "--stride", "5", "--local", "2",
                            "--causal"], dict(causal=True, mask=strided)),
        ("strided", ["--pattern", "strided", "--stride", "7", "--local", "1"],
         dict(mask=strided_nc)),
        ("fixed causal", ["--pattern", "fixed", "--block", "8", "--summary", "2",
                          "--causal"], dict(causal=True, mask=fixed)),
        ("longformer", ["--pattern", "longformer", "--local", "3", "--dilation",
                        ",".join(map(str, dil)), "--global", "32,0"],
         dict(mask=longformer[None])),
        ("block-sparse", ["--pattern", "block-sparse", "--block", "4", "--block-layout",
                          r.path("block_layout.npy"), "--align", "top-left"],
         dict(align="top-left", mask=block_sparse[None])),
        ("documents causal", ["--pattern", "documents", "--cu-seqlens", r.path("cu_q.npy"),
                              "--cu-seqlens-k", r.path("cu_k.npy"), "--causal",
                              "--align", "top-left"],
         dict(align="top-left", mask=docs)),
    ]


def linear_cases(r, rng):
    """--linear against linear attention in float64 NumPy (Katharopoulos et
    al.: phi(q) . phi(k) in place of exp(q . k))."""
    B, Hq, Hkv, S, D, Dv = 2, 4, 2, 70, 16, 8
    q = rng.standard_normal((B, Hq, S, D)).astype(np.float32)
    k = rng.standard_normal((B, Hkv, S, D)).astype(np.float32)
    v = rng.standard_normal((B, Hkv, S, Dv)).astype(np.float32)
    qp, kp, vp = (r.save(f"lin_{n}.npy", x) for n, x in (("q", q), ("k", k), ("v", v)))
    maps = {"elu": lambda x: np.where(x > 0, x + 1, np.exp(np.minimum(x, 0))),
            "relu": lambda x: np.maximum(x, 0)}
    for fmap in ("elu", "relu"):
        for causal in (False, True):
            phi = maps[fmap]
            fq = phi(q.astype(np.float64))
            fk = np.repeat(phi(k.astype(np.float64)), Hq // Hkv, axis=1)
            vv = np.repeat(v.astype(np.float64), Hq // Hkv, axis=1)
            a = np.einsum("bhid,bhjd->bhij", fq, fk)
            if causal:
                a = np.tril(a)
            den = a.sum(-1, keepdims=True)
            want = np.einsum("bhij,bhjd->bhid", a, vv) / np.where(den != 0, den, 1)
            want = np.where(den != 0, want, 0)
            for algorithm in ("auto", "reference", "naive", "chunked"):
                label = f"linear {fmap}{' causal' if causal else ''} [{algorithm}]"
                out_p = r.path("lin_out.npy")
                if os.path.exists(out_p):
                    os.remove(out_p)
                res = r.run(["--q", qp, "--k", kp, "--v", vp, "--linear", "--feature-map",
                             fmap, "--algorithm", algorithm, "--out", out_p] +
                            (["--causal"] if causal else []))
                if res.returncode != 0:
                    r.check(label, False, f"exit {res.returncode}: {res.stderr.strip()}")
                    continue
                out = np.load(out_p)
                err = np.abs(out - want).max() / max(np.abs(want).max(), 1e-6)
                r.check(label, out.shape == want.shape and err <= TOL, f"rel err {err:.3g}")


def rewrite_cases(r, rng):
    """A SparseStrided call that flash runs as window + residue classes says
    so, and still matches the pattern's definition."""
    S, D = 96, 8
    q, k, v = (rng.standard_normal((1, 2, S, D)).astype(np.float32) for _ in range(3))
    paths = [r.save(f"rw_{n}.npy", x) for n, x in (("q", q), ("k", k), ("v", v))]
    pos, j = np.arange(S)[:, None], np.arange(S)[None, :]
    mask = (j <= pos) & ((pos - j <= 3) | ((pos - j) % 8 == 0))
    want, _ = attention(q, k, v, causal=True, mask=mask)
    out_p = r.path("rw_out.npy")
    res = r.run(["--q", paths[0], "--k", paths[1], "--v", paths[2], "--out", out_p,
                 "--algorithm", "flash", "--pattern", "strided", "--stride", "8",
                 "--local", "3", "--causal"])
    if res.returncode != 0:
        r.check("strided rewrite", False, res.stderr.strip())
        return
    err = np.abs(np.load(out_p) - want).max() / np.abs(want).max()
    r.check("strided rewrite", "flash (strided classes)" in res.stdout and err <= TOL,
            f"stdout {res.stdout.strip()!r}, rel err {err:.3g}")


def file_format_cases(r, rng):
    """Inputs as NumPy writes them in other forms read the same."""
    q = rng.standard_normal((1, 2, 5, 4)).astype(np.float32)
    k = rng.standard_normal((1, 2, 7, 4)).astype(np.float32)
    v = rng.standard_normal((1, 2, 7, 3)).astype(np.float32)
    want, _ = attention(q, k, v)
    forms = {
        "big-endian": lambda name, x: r.save(name, x.astype(">f4")),
        "fortran": lambda name, x: r.save(name, np.asfortranarray(x)),
        "format 2.0": lambda name, x: r.save(name, x, version=(2, 0)),
        "format 3.0": lambda name, x: r.save(name, x, version=(3, 0)),
    }
    for form, write in forms.items():
        args = ["--q", write("fq.npy", q), "--k", write("fk.npy", k),
                "--v", write("fv.npy", v), "--out", r.path("fout.npy")]
        res = r.run(args)
        if res.returncode != 0:
            r.check(form, False, res.stderr.strip())
            continue
        err = np.abs(np.load(r.path("fout.npy")) - want).max() / np.abs(want).max()
        r.check(f"file form {form}", err <= TOL, f"rel err {err:.3g}")


def error_cases(r, rng):
    """Bad input: non-zero exit, a message naming the problem, no crash."""
    q = r.save("eq.npy", rng.standard_normal((1, 2, 3, 4)).astype(np.float32))
    k = r.save("ek.npy", rng.standard_normal((1, 2, 5, 4)).astype(np.float32))
    v = r.save("ev.npy", rng.standard_normal((1, 2, 5, 4)).astype(np.float32))
    k3 = r.save("ek3.npy", rng.standard_normal((1, 3, 5, 4)).astype(np.float32))
    f64 = r.save("ef64.npy", rng.standard_normal((1, 2, 5, 4)))
    three_d = r.save("e3d.npy", np.zeros((2, 5, 4), np.float32))
    bad_mask = r.save("emask.npy", np.ones((3, 3, 5), bool))
    bad_len = r.save("elen.npy", np.array([9], np.int64))
    no_len = r.save("enolen.npy", np.zeros((0,), np.int64))
    # 128 bytes claiming a [0, 2^27] layout: refused before any allocation.
    empty_layout = r.save("eblock.npy", np.zeros((0, 2 ** 27), np.bool_))
    int_mask = r.save("eimask.npy", np.ones((3, 5), np.int32))
    with open(r.path("etrunc.npy"), "wb") as f:
        f.write(open(k, "rb").read()[:-3])
    base = ["--q", q, "--k", k, "--v", v]
    fifo = r.path("efifo.npy")
    if os.path.exists(fifo):
        os.remove(fifo)
    os.mkfifo(fifo)
    cases = [
        ("directory as input", ["--q", r.work, "--k", k, "--v", v], "is a directory"),
        ("FIFO as input", ["--q", fifo, "--k", k, "--v", v], "is not a regular file"),
        ("directory as output", base + ["--out", r.work], "is a directory"),
        ("output in a missing directory",
         base + ["--out", r.path("no/such/dir/out.npy")], "does not exist"),
        ("out and lse the same file",
         base + ["--out", r.path("same.npy"), "--lse", r.path("same.npy")],
         "name the same file"),
        ("absurd thread count", base + ["--threads", "100000"], "--threads"),
        ("missing file", ["--q", r.path("nope.npy"), "--k", k, "--v", v], "cannot open"),
        ("truncated file", ["--q", q, "--k", r.path("etrunc.npy"), "--v", v], "truncated"),
        ("float64 input", ["--q", q, "--k", f64, "--v", v], "expected dtype float32"),
        ("3-D input", ["--q", three_d, "--k", k, "--v", v], "expected a 4-D array"),
        ("heads mismatch", ["--q", q, "--k", k3, "--v", v], "KV heads"),
        ("bshd files without --layout",
         [
             "--q", r.save("eqs.npy", np.zeros((1, 3, 2, 4), np.float32)),
             "--k", r.save("eks.npy", np.zeros((1, 5, 2, 4), np.float32)),
             "--v", r.save("evs.npy", np.zeros((1, 5, 2, 4), np.float32)),
         ], "is --layout bshd meant?"),
        ("only q", ["--q", q], "must be given together"),
        ("bad window", base + ["--window", "3"], "--window"),
        ("bad window text", base + ["--window", "a,b"], "--window"),
        ("window < -1", base + ["--window", "-2,0"], "window_left"),
        ("negative softcap", base + ["--softcap", "-1"], "softcap"),
        ("infinite scale", base + ["--scale", "inf"], "scale"),
        ("mask shape", base + ["--mask", bad_mask], "does not broadcast"),
        ("mask dtype", base + ["--mask", int_mask], "expected dtype bool or float32"),
        ("key length range", base + ["--key-len", bad_len], "key_lengths"),
        ("empty key lengths", base + ["--key-len", no_len], "expected 1 lengths"),
        ("empty block layout", base + ["--pattern", "block-sparse", "--block", "4",
                                       "--block-layout", empty_layout],
         "layout dimensions must be >= 1"),
        ("slopes count", base + ["--alibi-slopes", r.path("slopes.npy")], "alibi_slopes"),
        ("unknown algorithm", base + ["--algorithm", "fast"], "--algorithm"),
        ("algorithm without files", ["--algorithm", "naive"], "--algorithm"),
        ("bad layout", base + ["--layout", "sbhd"], "--layout"),
        ("unknown pattern", base + ["--pattern", "dense"], "--pattern"),
        ("strided without stride", base + ["--pattern", "strided"], "--stride is required"),
        ("dilation count", base + ["--pattern", "longformer", "--local", "1",
                                   "--dilation", "1,2,3"], "one dilation per query head"),
        ("dilation text", base + ["--pattern", "longformer", "--local", "1",
                                  "--dilation", "1,x"], "--dilation"),
        ("layout dtype", base + ["--pattern", "block-sparse", "--block", "2",
                                 "--block-layout", f64], "--block-layout"),
        ("layout shape", base + ["--pattern", "block-sparse", "--block", "2",
                                 "--block-layout", bad_mask], "BlockSparse: layout is"),
        ("linear with a window", base + ["--linear", "--window", "3,0"],
         "--window: does not apply to --linear"),
        ("linear with flash", base + ["--linear", "--algorithm", "flash"],
         "with --linear, expected auto"),
        ("linear causal lengths", base + ["--linear", "--causal"],
         "causal linear attention needs as many queries"),
        ("linear feature map", base + ["--linear", "--feature-map", "tanh"], "--feature-map"),
        ("cu_seqlens past keys", base + ["--pattern", "documents", "--cu-seqlens",
                                         bad_len], "Documents"),
    ]
    for label, args, fragment in cases:
        res = r.run(args, timeout=30)
        # Documented: 2 for errors, 104-109 for bad flags or subcommands.
        documented = res.returncode == 2 or 104 <= res.returncode <= 109
        r.check(f"error: {label}", documented and fragment in res.stderr,
                f"exit {res.returncode}, stderr: {res.stderr.strip()!r}")


def subcommand_error_cases(r):
    """Bad arguments of other subcommands: an error message, no crash."""
    cases = [
        ("bench scaling range", ["bench", "--scaling", "--scaling-min", "4096",
                                 "--scaling-max", "64"], "--scaling-min"),
        ("bench thread count", ["bench", "--threads", "100000"], "--threads"),
        ("generate config directory", ["generate", "--config", r.work, "--weights",
                                       r.work, "--prompt", "1"], "is a directory"),
        ("generate max tokens", ["generate", "--config", "x", "--weights", "x",
                                 "--prompt", "1", "--max-new-tokens",
                                 "9223372036854775807"], "--max-new-tokens"),
        ("unknown subcommand", ["frobnicate"], "unknown subcommand 'frobnicate'"),
        ("negative seed", ["generate", "--config", "x", "--weights", "x",
                           "--prompt", "1", "--seed", "-1"], "--seed"),
        ("seed past 2^64", ["generate", "--config", "x", "--weights", "x",
                            "--prompt", "1", "--seed", "18446744073709551616"], "--seed"),
    ]
    for label, args, fragment in cases:
        res = subprocess.run([r.binary] + args, capture_output=True, text=True,
                             timeout=120)
        # Documented: 2 for errors, 104-109 for bad flags or subcommands.
        documented = res.returncode == 2 or 104 <= res.returncode <= 109
        r.check(f"error: {label}", documented and fragment in res.stderr,
                f"exit {res.returncode}, stderr: {res.stderr.strip()!r}")


def kv_memory(r):
    res = subprocess.run([r.binary, "kv-memory", "--model", "llama-3.1-8b"],
                         capture_output=True, text=True, timeout=60)
    r.check("kv-memory llama-3.1-8b", res.returncode == 0 and "16.00 GiB" in res.stdout,
            res.stdout + res.stderr)
    res = subprocess.run([r.binary, "kv-memory", "--model", "nope"],
                         capture_output=True, text=True, timeout=60)
    r.check("kv-memory unknown model", res.returncode == 2 and "unknown model" in res.stderr,
            res.stdout + res.stderr)
    res = subprocess.run([r.binary, "kv-memory", "--layers", "2", "--q-heads", "6",
                          "--kv-heads", "4", "--head-dim", "8"],
                         capture_output=True, text=True, timeout=60)
    r.check("kv-memory bad heads", res.returncode == 2 and "multiple" in res.stderr,
            res.stdout + res.stderr)


def builtin_example(r):
    res = r.run([])
    r.check("built-in example", res.returncode == 0 and "causal" in res.stdout,
            res.stdout + res.stderr)


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    r = Runner(sys.argv[1], sys.argv[2])
    rng = np.random.default_rng(20240601)
    parity_cases(r, rng)
    linear_cases(r, rng)
    file_format_cases(r, rng)
    rewrite_cases(r, rng)
    error_cases(r, rng)
    subcommand_error_cases(r)
    builtin_example(r)
    kv_memory(r)
    print(f"numpy parity: {r.passed} passed, {r.failed} failed")
    sys.exit(1 if r.failed else 0)


if __name__ == "__main__":
    main()
