"""Do false cells (found nuclei that match no true nucleus) differ from matched ones in what the
crop's own segmentation says about their nucleus (issue 22)? For each reported cell: did the
crop's segmentation draw a nucleus that agrees with the finder's (kept), draw none touching it,
or draw none at all (the finder's nucleus kept as it is)? The true masks are read, for this count
only: a design check.

    python benchmarks/dev/seed_fallback_check.py --sets data/fields-herlev-val2 fields-isbi-dev
    -> benchmarks/results/dev/seed_fallback_check.md
"""

import argparse
import sys
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
from _common import code_commit, write_dev_result  # noqa: E402
from bench_fields import field_set, match_nuclei  # noqa: E402

KINDS = ("crop's nucleus", "finder's: the crop's disagrees", "finder's: the crop's touches it not",
         "finder's: the crop draws none")


def main() -> None:
    import napari_cervseg.workflows.fields as fields_module
    from napari_cervseg import segment_field

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", nargs="+", default=["data/fields-herlev-val2", "fields-isbi-dev"])
    args = parser.parse_args()
    original = fields_module._own_nucleus
    paths: list[str] = []

    def recording(result, region, seed):
        chosen = original(result, region, seed)
        crop_nucleus = (result.labels == 2) & region
        seed_here = seed & region
        if not crop_nucleus.any():
            paths.append(KINDS[3])
        elif np.array_equal(chosen, seed_here):
            paths.append(KINDS[2] if not (crop_nucleus & seed_here).any() else KINDS[1])
        else:
            paths.append(KINDS[0])
        return chosen

    fields_module._own_nucleus = recording
    lines = ["# What the crop's segmentation says of matched and false cells' nuclei (issue 22)", "",
             f"## code {code_commit()}: `python benchmarks/dev/seed_fallback_check.py --sets {' '.join(args.sets)}`", "",
             "| set | kind | cells | " + " | ".join(KINDS) + " |", "|---|---|---|" + "---|" * len(KINDS)]
    for name in args.sets:
        tally = {True: Counter(), False: Counter()}
        for _path, rgb, pages in field_set(name):
            paths.clear()
            result = segment_field(rgb, operating_point="screening")
            matched = {k for _, k in match_nuclei(result.nuclei, pages)}
            for k in range(1, result.n_cells + 1):
                tally[k in matched][paths[k - 1]] += 1
        for kind in (True, False):
            counts = tally[kind]
            lines.append(f"| {name} | {'matched' if kind else 'false'} | {sum(counts.values())} | "
                         + " | ".join(str(counts[k]) for k in KINDS) + " |")
            print(lines[-1])
    write_dev_result("seed_fallback_check", lines)


if __name__ == "__main__":
    main()
