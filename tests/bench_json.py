#!/usr/bin/env python3
"""attn bench --json is one valid JSON document with every suite's rows.

Runs a small attention preset, the quick decode and backward rows, a
two-length scaling table and the model layers (short); checks the
documents parse, carry the machine figures, and every row passed its
reference check.
Usage: bench_json.py ATTN_BINARY
"""
import json
import subprocess
import sys


def run(binary, args):
    res = subprocess.run([binary, "bench", "--json", "--repeats", "1", "--no-naive"] + args,
                         capture_output=True, text=True, timeout=600)
    if res.returncode != 0:
        raise SystemExit(f"bench {args} exited {res.returncode}: {res.stderr}")
    return json.loads(res.stdout)


def main():
    binary = sys.argv[1]
    failures = []
    doc = run(binary, ["--preset", "transformer", "--preset", "decode-quick",
                       "--preset", "backward-quick"])
    for key in ("cpu", "simd", "fp32_peak_gflops", "read_bandwidth_gbs", "rows",
                "kv_rows", "backward_rows"):
        if key not in doc:
            failures.append(f"missing key {key}")
    for table in ("rows", "kv_rows", "backward_rows"):
        rows = doc.get(table, [])
        if not rows:
            failures.append(f"{table}: no rows")
        for row in rows:
            if row.get("ok") is not True or not row.get("median_ms", 0) > 0:
                failures.append(f"{table}: bad row {row}")
    # Decode rows carry their roofline: the longer of the KV bytes at the
    # measured bandwidth and the FLOPs at the fp32 peak, and the row's share.
    for row in doc.get("kv_rows", []):
        roof, pct, ms = (row.get("roofline_ms", 0), row.get("pct_roofline", 0),
                         row.get("median_ms", 0))
        bound = 1e3 * row.get("cache_bytes", 0) / (doc["read_bandwidth_gbs"] * 1e9)
        if not (roof > 0 and abs(pct - 100 * roof / ms) <= 1e-6 * pct + 1e-9):
            failures.append(f"kv_rows: roofline {roof} / {pct}% for {ms} ms")
        if roof < 0.5 * bound:  # at least the cache's own bytes once
            failures.append(f"kv_rows: roofline {roof} ms under {bound} ms")
    # --scaling through its preset name: rows per S, each pattern's cell
    # holding its time, rate and check; then the fitted figures.
    scaling = run(binary, ["--preset", "scaling", "--scaling-min", "1024",
                           "--scaling-max", "2048"]).get("scaling", {})
    rows = scaling.get("rows", [])
    if [r.get("S") for r in rows] != [1024, 2048]:
        failures.append(f"scaling: rows {rows}")
    for r in rows:
        cells = [v for k, v in r.items() if k != "S"]
        if len(cells) < 5 or not all(c and c["ok"] and c["median_ms"] > 0
                                     for c in cells):
            failures.append(f"scaling: bad row {r}")
    if len(scaling.get("figures", [])) != 4:
        failures.append(f"scaling: figures {scaling.get('figures')}")
    # --model: the layer rows and the two targets' figures.
    model = run(binary, ["--model", "--model-tokens", "8",
                         "--model-context", "64"]).get("model", {})
    layers = model.get("rows", [])
    if len(layers) < 3 or not all(r.get("ok") is True and r["median_ms"] > 0
                                  for r in layers):
        failures.append(f"model: bad rows {layers}")
    for key in ("bert_attention_ms", "bert_standalone_flash_fresh_ms",
                "llama_decode_gbs", "read_bandwidth_gbs"):
        if not model.get(key, 0) > 0:
            failures.append(f"model: {key} = {model.get(key)}")
    for f in failures:
        print("FAIL", f)
    print(f"bench json: {0 if failures else 1} passed, {1 if failures else 0} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
