"""Development check (issue 22): how many nuclei each finder finds on the four real unlabelled
dense fields (`../shared/data/fields-real-unlabelled`). There are no masks, so no precision or
recall: a count only, read beside a look at the fields (20-40 epithelial cells each, with
inflammatory cells and debris between them). In brackets: of those, the nuclei the learned
finder's turned second look did not confirm (the field route leaves them out if called normal).

    .venv/bin/python benchmarks/dev/real_field_counts.py --finders classic runs/finder_v2.safetensors ...

Writes benchmarks/results/dev/real_field_counts.md.
"""

import argparse
import sys
from pathlib import Path

import cv2

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
from _common import code_commit, write_dev_result  # noqa: E402

import napari_cervseg.segment.finder as finder_module  # noqa: E402
from napari_cervseg.workflows.fields import find_cells  # noqa: E402

REAL = ROOT.parent / "shared" / "data" / "fields-real-unlabelled" / "images"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--finders", nargs="+", default=["classic", "learned"])
    ap.add_argument("--views", nargs="+", type=int, default=[2], choices=[1, 2],
                    help="looks per learned finder: 1 (the image only) and / or 2 (also turned 180 degrees)")
    args = ap.parse_args()
    commit = code_commit()
    finder_module.CONFIRM_TURNED = True  # the second look is an option, off by default: this check is about it
    paths = sorted(REAL.glob("*.png"))
    lines = ["# Nuclei found on the real unlabelled fields (issue 22; counts, no masks)", "",
             (f"## code {commit}: `python benchmarks/dev/real_field_counts.py --finders {' '.join(args.finders)}"
             f" --views {' '.join(map(str, args.views))}`"), "",
             "| finder | " + " | ".join(p.stem for p in paths) + " | all |", "|---" * (len(paths) + 2) + "|"]
    for name, views in [(n, v) for n in args.finders for v in (args.views if n != "classic" else [1])]:
        finder_module.TWO_VIEWS = views == 2
        counts, unconfirmed = [], []
        for path in paths:
            rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
            with_nucleus = [c for c in find_cells(rgb, name) if c.nucleus.any()]
            counts.append(len(with_nucleus))
            unconfirmed.append(sum(not c.is_confirmed() for c in with_nucleus))
        label = name if name == "classic" else f"{name} ({views} look{'s' if views > 1 else ''})"
        lines.append(f"| {label} | " + " | ".join(f"{n} ({u})" for n, u in zip(counts, unconfirmed, strict=True))
                     + f" | {sum(counts)} ({sum(unconfirmed)}) |")
        print(lines[-1], flush=True)
    write_dev_result("real_field_counts", lines)


if __name__ == "__main__":
    main()
