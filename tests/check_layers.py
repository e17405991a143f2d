#!/usr/bin/env python3
"""The include rule of docs/architecture.md, checked over the source tree.

Each folder of src/ is a layer and may include only itself and the layers
below it:

    nn        -> nn, util            (a client of the public API; its own GEMV)
    api       -> api, cache, kernels, reference, core, util
    cache     -> cache, kernels, core, util
    kernels   -> kernels, core, util
    reference -> reference, core     (the oracles depend on nothing else)
    core      -> core, util
    util      -> util

Public headers of attn::attn (include/attn/*.h) include no attn/nn/ header;
clients (cli/, examples/, bench/ outside bench/support/) include no src/
header. Usage: check_layers.py SOURCE_DIR; exits 1 listing every violation.
"""
import pathlib
import re
import sys

ALLOWED = {
    "nn": {"nn", "util"},
    "api": {"api", "cache", "kernels", "reference", "core", "util"},
    "cache": {"cache", "kernels", "core", "util"},
    "kernels": {"kernels", "core", "util"},
    "reference": {"reference", "core"},
    "core": {"core", "util"},
    "util": {"util"},
}
INCLUDE = re.compile(r'^\s*#\s*include\s+["<]([^">]+)[">]', re.M)


def sources(root, folder):
    base = root / folder
    if not base.exists():
        return []
    return sorted(p for p in base.rglob("*") if p.suffix in (".h", ".cc"))


def main():
    root = pathlib.Path(sys.argv[1]).resolve()
    bad = []
    unknown = sorted(p.name for p in (root / "src").iterdir()
                     if p.is_dir() and p.name not in ALLOWED)
    for name in unknown:
        bad.append(f"src/{name}/: a folder with no place in the layer table")
    checked = 0
    for layer, allowed in ALLOWED.items():
        for path in sources(root, f"src/{layer}"):
            checked += 1
            for inc in INCLUDE.findall(path.read_text()):
                if inc.startswith("src/"):
                    target = inc.split("/")[1]
                    if target not in allowed:
                        bad.append(f"{path.relative_to(root)}: includes {inc} "
                                   f"({layer} may include {sorted(allowed)})")
    for path in sorted((root / "include" / "attn").glob("*.h")):
        checked += 1
        for inc in INCLUDE.findall(path.read_text()):
            if inc.startswith("attn/nn/") or inc.startswith("src/"):
                if path.name != "nn.h":
                    bad.append(f"{path.relative_to(root)}: includes {inc} "
                               "(attn::attn headers include neither attn/nn/ nor src/)")
    for folder in ("cli", "examples", "bench"):
        for path in sources(root, folder):
            if "support" in path.relative_to(root).parts:
                continue
            checked += 1
            for inc in INCLUDE.findall(path.read_text()):
                if inc.startswith("src/"):
                    bad.append(f"{path.relative_to(root)}: includes {inc} "
                               "(clients use the public headers only)")
    for line in bad:
        print(line)
    print(f"check_layers: {checked} files, {len(bad)} violations")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
