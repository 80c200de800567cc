"""Are two runs' figures identical? Compares every number of two result JSONs (an evaluation's, a
field benchmark's) except timings, and lists the differences.

    python benchmarks/dev/compare_figures.py BEFORE.json AFTER.json [--out FILE.md]

Keys naming time, speed or memory (seconds, s_per, per_second, timings, wall, rss, memory,
command, date, versions) are left out: they change from run to run.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import Counter
from pathlib import Path

#: parts of a key that name a time, a speed or memory
SKIP_PARTS = ("second", "s_per", "timing", "wall", "rss", "memory")
#: whole keys that name the run, not its figures
SKIP_KEYS = ("command", "date", "versions", "version", "started", "finished", "host", "out", "path", "s / field",
             "s / cell")


def skipped(key) -> bool:
    key = str(key).lower()
    return key in SKIP_KEYS or any(part in key for part in SKIP_PARTS)


def leaves(value, prefix=""):
    if isinstance(value, dict):
        for k, v in value.items():
            if skipped(k):
                continue
            yield from leaves(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from leaves(v, f"{prefix}[{i}]")
    else:
        yield prefix, value


def same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or a == b
    return a == b


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("before")
    p.add_argument("after")
    p.add_argument("--out")
    args = p.parse_args()
    before = dict(leaves(json.loads(Path(args.before).read_text())))
    after = dict(leaves(json.loads(Path(args.after).read_text())))
    differ = [k for k in before if k in after and not same(before[k], after[k])]
    only = sorted(set(before) ^ set(after))
    lines = [f"`{' '.join(['python', *sys.argv])}`", "",
             (f"{len(before)} figures compared (timings left out): {len(differ)} differ,"
             f" {len(only)} in one run only.")]
    groups = Counter(".".join(k.split(".")[:2]) for k in differ)
    lines += [f"- differing figures under `{g}`: {n}" for g, n in groups.most_common()]
    lines += [f"- `{k}`: {before[k]!r} -> {after[k]!r}" for k in differ[:50]]
    lines += [f"- only in one: `{k}`" for k in only[:50]]
    text = "\n".join(lines) + "\n"
    if args.out:
        Path(args.out).write_text(text)
    print(text)
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
