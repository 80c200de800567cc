"""A tuning set for the field route (issue 22) that is not the development fields: fields composed
by ``../shared/tools/compose_fields.py`` (as the development fields were) from the cells of the
bundled model's **validation** split (the development fields hold its test split; the finder
trains on its training split).

    .venv/bin/python benchmarks/dev/compose_val_fields.py   # -> data/fields-herlev-val (git-ignored)

Choices of the field route's post-processing are made on these fields; the development fields
are then scored once, as a check.
"""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def main():
    card = json.loads((ROOT / "src" / "napari_cervseg" / "weights" / "default.json").read_text())
    names = card["training"]["split"]["val"]
    out = ROOT / "data" / "fields-herlev-val"
    out.mkdir(parents=True, exist_ok=True)
    (out / "val_names.txt").write_text("\n".join(names) + "\n")
    subprocess.run([sys.executable, str(ROOT.parent / "shared" / "tools" / "compose_fields.py"),
                    str(ROOT.parent / "shared" / "data" / "herlev"), str(out), "--fields", "20", "--seed", "2",
                    "--names", str(out / "val_names.txt")], check=True)


if __name__ == "__main__":
    main()
