#!/usr/bin/env python3
"""The standing adversarial suite: hostile inputs through the command-line
tool, one case per defect class found by adversarial runs, so each class
stays fixed (docs/testing.md).

Usage: adversarial.py ATTN_BINARY WORK_DIR GPT2_CHECKPOINT_DIR

Every case states what the rules (docs/semantics.md) or the error contract
(README, exit codes) say must happen, runs the tool, and checks it: NaN and
infinity where the rules put them and nowhere else, an error message and a
documented exit code instead of a crash, a hang or silent data loss, and
resources that follow the work. Cases that need a process limit
(RLIMIT_AS) are skipped under the sanitizers, whose shadow memory needs
terabytes of address space.
"""
import json
import os
import resource
import struct
import subprocess
import sys

import numpy as np

def sanitized(binary):
    """True for a tool built with the sanitizers (it links libasan/libubsan)."""
    if "ASAN_OPTIONS" in os.environ or "UBSAN_OPTIONS" in os.environ:
        return True
    libs = subprocess.run(["ldd", binary], capture_output=True, text=True).stdout
    return "libasan" in libs or "libubsan" in libs


class Runner:
    def __init__(self, binary, work, gpt2):
        self.binary, self.work, self.gpt2 = binary, work, gpt2
        self.failures = 0
        self.count = 0
        os.makedirs(work, exist_ok=True)

    def path(self, name):
        return os.path.join(self.work, name)

    def save(self, name, array):
        np.save(self.path(name), array)
        return self.path(name)

    def run(self, args, limit_as=None, timeout=60):
        def limit():
            if limit_as is not None:
                resource.setrlimit(resource.RLIMIT_AS, (limit_as, limit_as))
        try:
            return subprocess.run([self.binary] + args, capture_output=True,
                                  text=True, timeout=timeout, preexec_fn=limit)
        except subprocess.TimeoutExpired:  # a hang is a failure, reported
            return subprocess.CompletedProcess(args, -1, "", f"hung for {timeout} s")

    def check(self, name, ok, detail=""):
        self.count += 1
        if not ok:
            self.failures += 1
            print(f"FAIL {name}: {detail}")
        else:
            print(f"ok   {name}")

    def expect_error(self, name, args, fragment, **kw):
        """A clean refusal: exit 2 (or 104-109 for flags), the fragment on
        stderr, no crash."""
        res = self.run(args, **kw)
        documented = res.returncode == 2 or 104 <= res.returncode <= 109
        self.check(name, documented and fragment in res.stderr,
                   f"exit {res.returncode}, stderr {res.stderr.strip()!r}")


def attention_cases(r, rng):
    """Rules 5 and 8 end to end, for every algorithm the tool offers."""
    def run_all(name, q, k, v, extra, expect):
        qp, kp, vp = (r.save(f"{name}_{t}.npy", x.astype(np.float32))
                      for t, x in (("q", q), ("k", k), ("v", v)))
        algorithms = ["reference", "naive", "flash"]
        if q.shape[2] <= 16:
            algorithms.append("decode")
        for alg in algorithms:
            out, lse = r.path(f"{name}_{alg}_out.npy"), r.path(f"{name}_{alg}_lse.npy")
            res = r.run(["run", "--q", qp, "--k", kp, "--v", vp, "--algorithm", alg,
                         "--out", out, "--lse", lse] + extra)
            if res.returncode != 0:
                r.check(f"{name} ({alg})", False, res.stderr.strip())
                continue
            o, l = np.load(out), np.load(lse)
            ok, why = expect(o, l.reshape(o.shape[:3]))
            r.check(f"{name} ({alg})", ok, why)

    # 1. A NaN value behind the causal diagonal reaches no row before it.
    q, k, v = (rng.standard_normal((1, 1, 4, 4)) for _ in range(3))
    v[0, 0, 3, 0] = np.nan

    def hidden(o, l):
        rows_ok = np.isfinite(o[0, 0, :3]).all()
        row3 = np.isnan(o[0, 0, 3, 0]) and np.isfinite(o[0, 0, 3, 1:]).all()
        return rows_ok and row3, f"out {o[0, 0].tolist()}"
    run_all("causal hidden NaN value", q, k, v, ["--causal"], hidden)
    q, k, v = (rng.standard_normal((1, 2, 100, 8)) for _ in range(3))
    v[0, :, 63, :] = np.nan

    def hidden100(o, l):
        return (np.isfinite(o[0, :, :63]).all() and np.isnan(o[0, :, 63:]).all(),
                f"{np.isnan(o).sum()} NaN elements")
    run_all("causal hidden NaN value, S 100", q, k, v, ["--causal"], hidden100)

    # 2. A +inf or NaN bias at a visible key poisons that row only.
    q, k, v = (rng.standard_normal((1, 1, 3, 4)) for _ in range(3))
    for label, value in (("+inf", np.inf), ("NaN", np.nan)):
        bias = np.zeros((1, 1, 3, 3), np.float32)
        bias[0, 0, 1, 2] = value
        mask = r.save(f"bias_{label}.npy", bias)

        def poisoned(o, l):
            ok = (np.isnan(o[0, 0, 1]).all() and np.isnan(l[0, 0, 1]) and
                  np.isfinite(o[0, 0, [0, 2]]).all() and np.isfinite(l[0, 0, [0, 2]]).all())
            return ok, f"out {o[0, 0].tolist()} lse {l[0, 0].tolist()}"
        run_all(f"bias {label}", q, k, v, ["--mask", mask], poisoned)

    # 2. A score past float32's range (q = k = 1e20) poisons its row.
    q, k, v = (rng.standard_normal((1, 1, 3, 4)) for _ in range(3))
    q[0, 0, 0] = 1e20
    k[0, 0, 0] = 1e20

    def overflow(o, l):
        return (np.isnan(o[0, 0, 0]).all() and np.isnan(l[0, 0, 0]) and
                np.isfinite(o[0, 0, 1:]).all(), f"out {o[0, 0].tolist()}")
    run_all("score overflow", q, k, v, [], overflow)

    # 3. A NaN query row is NaN, not a masked row (out 0, lse -inf).
    q, k, v = (rng.standard_normal((1, 1, 3, 4)) for _ in range(3))
    q[0, 0, 2, 1] = np.nan

    def nan_query(o, l):
        return (np.isnan(o[0, 0, 2]).all() and np.isnan(l[0, 0, 2]) and
                np.isfinite(o[0, 0, :2]).all(), f"row 2 {o[0, 0, 2].tolist()} lse {l[0, 0, 2]}")
    run_all("NaN query row", q, k, v, [], nan_query)

    # 8. Empty keys (Skv = 0) are allowed: every row is 0 with lse -inf.
    q = rng.standard_normal((1, 1, 3, 4))
    k = np.zeros((1, 1, 0, 4))
    v = np.zeros((1, 1, 0, 4))

    def empty(o, l):
        return ((o == 0).all() and (l == -np.inf).all(), f"out {o.tolist()}")
    run_all("no keys", q, k, v, [], empty)


def file_cases(r, rng):
    q = r.save("f_q.npy", rng.standard_normal((1, 2, 3, 4)).astype(np.float32))
    kv = r.save("f_kv.npy", rng.standard_normal((1, 2, 5, 4)).astype(np.float32))
    base = ["run", "--q", q, "--k", kv, "--v", kv]
    # 4. No silent data loss: a full device, the same path twice, and a
    # failed write leaving the old file intact.
    r.expect_error("lse to a full device", base + ["--lse", "/dev/full"], "/dev/full")
    r.expect_error("out to a full device", base + ["--out", "/dev/full"], "/dev/full")
    same = r.path("f_same.npy")
    r.expect_error("out and lse the same file", base + ["--out", same, "--lse", same],
                   "same file")
    # 10. A 128-byte layout claiming [0, 2^27] blocks: refused, no 1 GiB.
    layout = r.save("f_layout.npy", np.zeros((0, 2 ** 27), np.bool_))
    r.expect_error("empty block layout", base + ["--pattern", "block-sparse", "--block",
                                                "4", "--block-layout", layout],
                   "layout dimensions must be >= 1")
    # 12. An empty --key-len file is not "no key lengths".
    no_len = r.save("f_nolen.npy", np.zeros((0,), np.int64))
    r.expect_error("empty key lengths", base + ["--key-len", no_len], "expected 1 lengths")
    r.expect_error("unknown subcommand", ["frobnicate"], "unknown subcommand 'frobnicate'")
    # 5. Resources follow the work: 500 threads on 2 items stay small.
    out = r.path("f_out.npy")
    res = r.run(base + ["--threads", "500", "--algorithm", "naive", "--out", out])
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    r.check("naive with --threads 500 on 2 items", res.returncode == 0 and peak_mb < 400,
            f"exit {res.returncode}, peak {peak_mb:.0f} MB, {res.stderr.strip()!r}")
    # 7. Start-up under a small address-space limit: nothing loads BLAS.
    if not sanitized(r.binary):
        for args in (["--version"], ["run", "--threads", "2"], ["kv-memory"]):
            res = r.run(args, limit_as=100 << 20, timeout=30)
            r.check(f"{' '.join(args)} under a 100 MB address-space limit",
                    res.returncode == 0, f"exit {res.returncode} {res.stderr.strip()!r}")


def read_safetensors(path):
    data = open(path, "rb").read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    return header, data[8 + n:]


def write_safetensors(path, header, payload):
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + payload)


def checkpoint_cases(r):
    cfg = os.path.join(r.gpt2, "config.json")
    weights = os.path.join(r.gpt2, "model.safetensors")
    config = json.load(open(cfg))
    gen = ["generate", "--weights", weights, "--prompt", "1,2,3,4,5,6",
           "--max-new-tokens", "2"]
    # 3. NaN weights: generation stops with the layer named, not tokens.
    header, payload = read_safetensors(weights)
    payload = bytearray(payload)
    name = next(n for n in header if n.endswith("h.0.attn.c_attn.weight"))
    begin, end = header[name]["data_offsets"]
    payload[begin:end] = np.full((end - begin) // 4, np.nan, np.float32).tobytes()
    nan_weights = r.path("nan_model.safetensors")
    write_safetensors(nan_weights, header, bytes(payload))
    r.expect_error("NaN attention weights", ["generate", "--config", cfg, "--weights",
                                              nan_weights, "--prompt", "1,2,3",
                                              "--max-new-tokens", "2"],
                   "layer 0 of 2 produced a non-finite value")

    def with_config(label, changes, fragment):
        c = dict(config)
        c.update(changes)
        path = r.path(f"config_{label}.json")
        json.dump(c, open(path, "w"))
        r.expect_error(f"config: {label}", gen[:1] + ["--config", path] + gen[1:], fragment)
    # 9. The config against the tensors, before allocating.
    with_config("2^24 wide", {"n_embd": 2 ** 24, "vocab_size": 2 ** 24},
                "describes a model of")
    with_config("2^24 layers", {"n_layer": 2 ** 24}, "describes a model of")
    with_config("fewer layers than the file", {"n_layer": 1}, "are not used")
    with_config("negative eps", {"layer_norm_epsilon": -1.0},
                "\"layer_norm_epsilon\" must be a finite number")
    # 12. Prompts: spaces allowed, empty items not; the context said first.
    r.expect_error("prompt with a trailing comma",
                   ["generate", "--config", cfg, "--weights", weights, "--prompt", "1,"],
                   "is not a comma-separated list")
    r.expect_error("generation past the context",
                   ["generate", "--config", cfg, "--weights", weights, "--prompt", "1,2,3",
                    "--max-new-tokens", str(config["n_positions"])],
                   "exceed the model's context")
    r.expect_error("negative seed", ["generate", "--config", cfg, "--weights", weights,
                                     "--prompt", "1", "--seed", "-1"], "--seed")


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    r = Runner(*sys.argv[1:])
    rng = np.random.default_rng(1515)
    attention_cases(r, rng)
    file_cases(r, rng)
    checkpoint_cases(r)
    print(f"adversarial: {r.count - r.failures} of {r.count} cases passed")
    sys.exit(1 if r.failures else 0)


if __name__ == "__main__":
    main()
