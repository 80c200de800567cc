"""A tuning set for the field route (issue 22) that is not the development fields: fields composed
by ``../shared/tools/compose_fields.py`` (as the development fields were) from the cells of the
bundled model's **validation** split (the development fields hold its test split; the finder
trains on its training split).

    .venv/bin/python benchmarks/dev/compose_val_fields.py   # -> data/fields-herlev-val (git-ignored)
    .venv/bin/python benchmarks/dev/compose_val_fields.py --seed 3 --out data/fields-herlev-val2
        # a second, fresh composition of the same validation-split cells, for a choice made after
        # the first set was seen
    .venv/bin/python benchmarks/dev/compose_val_fields.py --seed 4 --max-side 480 --size 1536x1152
        --out data/fields-herlev-val-large   # with the larger (mostly normal) cells too
    .venv/bin/python benchmarks/dev/compose_val_fields.py --split test --seed 21 --out data/fields-herlev-test21
        # fresh compositions of the development fields' (test-split) cells, as a check

Choices of the field route's post-processing are made on these fields; the development fields
are then scored once, as a check.
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=2)
    parser.add_argument("--out", default="data/fields-herlev-val")
    parser.add_argument("--max-side", type=int, default=320, help="the composer's largest cell side (px)")
    parser.add_argument("--size", default="1024x768", help="field size, WxH")
    parser.add_argument("--split", default="val", choices=("val", "test"),
                        help="whose cells: the validation split (tuning sets) or the test split (the development"
                        " fields' cells: fresh compositions of them as a check)")
    args = parser.parse_args()
    card = json.loads((ROOT / "src" / "napari_cervseg" / "weights" / "default.json").read_text())
    names = card["training"]["split"][args.split]
    out = ROOT / args.out
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.split}_names.txt").write_text("\n".join(names) + "\n")
    subprocess.run([sys.executable, str(ROOT.parent / "shared" / "tools" / "compose_fields.py"),
                    str(ROOT.parent / "shared" / "data" / "herlev"), str(out), "--fields", "20", "--seed", str(args.seed),
                    "--names", str(out / f"{args.split}_names.txt"),
                    "--max-side", str(args.max_side), "--size", args.size], check=True)


if __name__ == "__main__":
    main()
