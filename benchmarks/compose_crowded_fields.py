"""Compose crowded Herlev fields (a sixth to a third of the slide shows) from the bundled model's
**test** split only, with the project's compose tool (for `bench_fields.py`; issue 26, item 5):

    .venv/bin/python benchmarks/compose_crowded_fields.py [--out data/fields-herlev-crowded]

= compose_fields.py ../shared/data/herlev OUT --fields 10 --cells 15-25 --size 400x400
  --max-overlap 0.8 --seed 7 --names <the default card's test split>
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(ROOT / "data" / "fields-herlev-crowded"))
    args = parser.parse_args()
    card = json.loads((ROOT / "src" / "napari_cervseg" / "weights" / "default.json").read_text())
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as names:
        names.write("\n".join(card["training"]["split"]["test"]))
    subprocess.run([sys.executable, str(SHARED / "tools" / "compose_fields.py"), str(SHARED / "data" / "herlev"),
                    args.out, "--fields", "10", "--cells", "15-25", "--size", "400x400", "--max-overlap", "0.8",
                    "--seed", "7", "--names", names.name], check=True)
    Path(names.name).unlink()


if __name__ == "__main__":
    main()
