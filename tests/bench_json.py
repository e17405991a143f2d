#!/usr/bin/env python3
"""attn bench --json is one valid JSON document with every suite's rows.

Runs a small attention preset, the quick decode and backward rows, and a
two-length scaling table; checks the documents parse, carry the machine
figures, and every row passed its reference check.
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
    scaling = run(binary, ["--scaling", "--scaling-min", "1024", "--scaling-max", "2048"])
    patterns = scaling.get("scaling", {}).get("patterns", [])
    if not patterns or any(not p["rows"] or not all(r["ok"] for r in p["rows"])
                           for p in patterns):
        failures.append(f"scaling: bad patterns {patterns}")
    for f in failures:
        print("FAIL", f)
    print(f"bench json: {0 if failures else 1} passed, {1 if failures else 0} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
