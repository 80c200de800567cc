"""Development check (issue 22): the found cells that are a bare nucleus (cytoplasm under a tenth of
the nucleus), and what the classifier calls them, with a switch of workflows/fields.py off and on
(--switch; BARE_NUCLEUS_ABNORMAL_KEEPS_VERDICT unless told).

For each Herlev field set (composed, with masks and classes): every bare nucleus's p(abnormal) and
the true cell its nucleus lies on (class, nucleus IoU), and the cells called abnormal whose nucleus
lies on no true abnormal cell (on a normal cell or on the slide: false red boxes). For the real
unlabelled fields (no masks): counts only. The masks are read for these counts only.

    python benchmarks/dev/bare_nucleus_verdicts.py --sets SET [SET ...] --name NAME [--switch NAME] [--relight R,G,B]
    -> benchmarks/results/dev/bare_nucleus_verdicts_NAME.md
"""

import argparse
import csv
import sys
from pathlib import Path

import cv2
import numpy as np
import tifffile

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
from _common import code_commit, write_dev_result  # noqa: E402
from bench_fields import DATA, relit  # noqa: E402

BARE = "no cytoplasm found around this nucleus"


def classes_of(root: Path) -> dict:
    classes = {}
    if (root / "cells.csv").exists():
        with open(root / "cells.csv") as f:
            for row in csv.DictReader(f):
                classes[(row["field"], int(row["page"]))] = row["label"]
    return classes


def look(root: Path, keep: bool, switch: str = "BARE_NUCLEUS_ABNORMAL_KEEPS_VERDICT",
         light=None) -> tuple[list[dict], int, int]:
    """The bare nuclei of a set, the cells called abnormal on no true abnormal cell, and all calls,
    with the module's ``switch`` set to ``keep`` (each field re-lit by ``light`` when given)."""
    from napari_cervseg import segment_field
    from napari_cervseg.workflows import fields

    setattr(fields, switch, keep)
    classes = classes_of(root)
    bare, false_abnormal, abnormal = [], 0, 0
    for path in sorted((root / "images").glob("*.png")):
        rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        if light is not None:
            rgb = relit(rgb, light)
        masks = root / "cells" / f"{path.stem}.tif"
        pages = None
        if masks.exists():
            pages = tifffile.imread(masks)
            pages = pages[None] if pages.ndim == 2 else pages
        result = segment_field(rgb, model="default", operating_point="screening", finder="learned")
        for row in result.table:
            nucleus = result.nuclei == row["cell_id"]
            under, iou = None, 0.0
            if pages is not None and nucleus.any():
                on_cell = [int((nucleus & (page > 0)).sum()) for page in pages]
                i = int(np.argmax(on_cell))
                if on_cell[i] > 0.5 * nucleus.sum():
                    under = classes.get((path.stem, i))
                    iou = (nucleus & (pages[i] == 2)).sum() / max(1, (nucleus | (pages[i] == 2)).sum())
            if row["predicted_class"] == "abnormal":
                abnormal += 1
                false_abnormal += pages is not None and under != "abnormal"
            if any(BARE in w for w in row["warnings"]):
                bare.append({"field": path.stem, "cell": row["cell_id"], "p": row["p_abnormal"],
                             "called": row["predicted_class"], "under": under, "iou": float(iou)})
    return bare, false_abnormal, abnormal


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", nargs="+", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--switch", default="BARE_NUCLEUS_ABNORMAL_KEEPS_VERDICT",
                        help="the module switch of workflows/fields.py run off and on")
    parser.add_argument("--relight", default=None, metavar="R,G,B",
                        help="each field under another slide light, as bench_fields.py --relight")
    args = parser.parse_args()
    lines = ["# Bare nuclei on the field route, and the abnormal calls (issue 22)", "",
             (f"## code {code_commit()}: `python benchmarks/dev/bare_nucleus_verdicts.py --sets {' '.join(args.sets)}"
             f" --name {args.name} --switch {args.switch}"
              + (f" --relight {args.relight}" if args.relight else "") + "`"), "",
             ("Default classifier, screening point, learned finder. 'False abnormal': cells called abnormal whose"
             " nucleus lies mostly on no true abnormal cell (on a normal cell or on the slide); '-' where the set"
             " has no masks."), "",
             ("| set | switch on | bare nuclei | of them called abnormal | on a true abnormal cell | on a normal cell |"
             " on no cell | cells called abnormal | false abnormal |"), "|---|---|---|---|---|---|---|---|---|"]
    from napari_cervseg.workflows import fields

    if not hasattr(fields, args.switch):
        raise SystemExit(f"workflows/fields.py has no switch {args.switch!r}")
    default = getattr(fields, args.switch)
    light = None if args.relight is None else tuple(float(v) for v in args.relight.split(","))
    details = []
    for name in args.sets:
        root = Path(name) if Path(name).is_dir() else DATA / name
        has_masks = (root / "cells").is_dir()
        for keep in (False, True):
            bare, false_abnormal, abnormal = look(root, keep, args.switch, light)
            under = [b["under"] for b in bare]
            lines.append(f"| {root.name} | {'yes' if keep else 'no'} | {len(bare)} |"
                         f" {sum(b['called'] == 'abnormal' for b in bare)} |"
                         + (f" {under.count('abnormal')} | {under.count('normal')} | {under.count(None)} |"
                            if has_masks else " - | - | - |")
                         + f" {abnormal} | {false_abnormal if has_masks else '-'} |")
            if keep:
                details += [f"| {root.name} | {b['field']} | {b['cell']} | {b['p']:.3f} | {b['called']} |"
                            f" {b['under'] if has_masks else '-'} | {b['iou']:.2f} |" for b in bare]
            print(lines[-1], flush=True)
    setattr(fields, args.switch, default)
    lines += ["", "Each bare nucleus (the switch on):", "",
              "| set | field | cell | p(abnormal) | called | true cell under it | nucleus IoU |",
              "|---|---|---|---|---|---|---|", *details]
    print(write_dev_result(f"bare_nucleus_verdicts_{args.name}", lines))


if __name__ == "__main__":
    main()
