"""Which fields does the white balance of the crops change (issue 22)? Each field of a set is
segmented with white_balance "off" and with MODE; the fields whose count of matched true nuclei
(IoU >= 0.5) or of found cells differs are printed with their slide colour. The masks are read to
count only.

    python benchmarks/dev/white_balance_fields.py data/fields-herlev-val [--mode into-range]
"""

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
from bench_fields import field_set, match_nuclei  # noqa: E402


def main() -> None:
    from napari_cervseg import segment_field
    from napari_cervseg.segment.cells import slide_colour
    from napari_cervseg.workflows import fields

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("set")
    parser.add_argument("--mode", default="to-reference", choices=fields.WHITE_BALANCE_MODES)
    args = parser.parse_args()
    for path, rgb, pages in field_set(args.set):
        counts = []
        for mode in ("off", args.mode):
            result = segment_field(rgb, finder="learned", operating_point="screening", white_balance=mode)
            counts.append((len(match_nuclei(result.nuclei, pages)), result.n_cells))
        if counts[0] != counts[1]:
            print(f"{path.stem}: {len(pages)} true cells, slide {slide_colour(rgb).round(0)}; matched / found:"
                  f" off {counts[0]}, {args.mode} {counts[1]}", flush=True)


if __name__ == "__main__":
    main()
