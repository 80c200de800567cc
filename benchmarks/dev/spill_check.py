"""How much of what the finder reports of its cells lies in no true cell, and how much of that the
classic stained-area mask would remove (issue 22): the extents themselves (polygon and p(cell))
and the lone cells' missed cytoplasm. The true masks are read, for this count only.

    python benchmarks/dev/spill_check.py --sets data/fields-herlev-val2 fields-isbi-dev
    -> benchmarks/results/dev/spill_check.md
"""

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
from _common import code_commit, write_dev_result  # noqa: E402
from bench_fields import field_set  # noqa: E402


def main() -> None:
    import napari_cervseg.segment.finder as finder_module
    from napari_cervseg.segment.cells import foreground_mask

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", nargs="+", default=["data/fields-herlev-val2", "fields-isbi-dev"])
    args = parser.parse_args()
    finder = finder_module.load_finder("default")
    lines = ["# What is reported of found cells but lies in no true cell (issue 22)", "",
             f"## code {code_commit()}: `python benchmarks/dev/spill_check.py --sets {' '.join(args.sets)}`", "",
             ("Bundled finder, full-resolution pixels. \"In no cell\": in no true cell's mask; \"stained\": on"
              " `foreground_mask`."), "",
             "| set | part | pixels | in no cell | in no cell, unstained | in a cell, unstained |",
             "|---|---|---|---|---|---|"]
    for name in args.sets:
        tally = {"extent": np.zeros(4), "lone missed": np.zeros(4), "clump missed": np.zeros(4)}
        for _path, rgb, pages in field_set(name):
            any_cell = (pages > 0).any(0)
            stained = foreground_mask(rgb)
            for cell in finder.find(rgb):
                r0, c0, r1, c1 = cell.box
                parts = {"extent": ((r0, c0), cell.extent)}
                for attribute, part in (("missed", "lone missed"), ("clump_missed", "clump missed")):
                    given = getattr(cell, attribute, None)
                    if given is not None:
                        parts[part] = ((r0 + given[0], c0 + given[1]), given[2])
                for part, ((a, b), mask) in parts.items():
                    box = (slice(a, a + mask.shape[0]), slice(b, b + mask.shape[1]))
                    inside, dyed = any_cell[box][mask], stained[box][mask]
                    tally[part] += [mask.sum(), (~inside).sum(), (~inside & ~dyed).sum(), (inside & ~dyed).sum()]
        for part, (n, none, none_bare, cell_bare) in tally.items():
            lines.append(f"| {name} | {part} | {int(n)} | {none / max(n, 1):.3f} | {none_bare / max(n, 1):.3f} |"
                         f" {cell_bare / max(n, 1):.3f} |")
            print(lines[-1])
    write_dev_result("spill_check", lines)


if __name__ == "__main__":
    main()
