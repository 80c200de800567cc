"""Development check (issue 22, session 17): where a large field's time goes. The default route
(screening point, learned finder) on five val-large fields (1536 x 1152) under cProfile, after one
field to warm up; the cumulative seconds of the route's main parts.

    python benchmarks/dev/profile_large_fields.py  -> benchmarks/results/dev/profile_large_fields.md
"""

import cProfile
import pstats
import sys
from pathlib import Path

import cv2

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
from _common import code_commit, write_dev_result  # noqa: E402

# (file ending, function name) -> what it is
PARTS = {("workflows/fields.py", "segment_field"): "the whole route",
         ("workflows/fields.py", "find_cells"): "finding the cells",
         ("segment/finder.py", "_maps_of"): "  the finder's network, tile by tile (both views)",
         ("segment/pipeline.py", "segment_cell"): "each cell's crop segmented (heatmap, student, verdict)",
         ("segment/cells.py", "foreground_mask"): "the field's stained area",
         ("segment/cells.py", "background_colour"): "the slide colour (every call)"}


def main() -> None:
    from napari_cervseg import segment_field

    paths = sorted((ROOT / "data" / "fields-herlev-val-large" / "images").glob("*.png"))[:6]
    images = [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in paths]
    segment_field(images[0], model="default", operating_point="screening", finder="learned")  # warm up
    profile = cProfile.Profile()
    cells = 0
    profile.enable()
    for image in images[1:]:
        cells += segment_field(image, model="default", operating_point="screening", finder="learned").n_cells
    profile.disable()
    stats = pstats.Stats(profile).stats
    lines = ["# Where a large field's time goes (issue 22, session 17)", "",
             f"## code {code_commit()}: `python benchmarks/dev/profile_large_fields.py`", "",
             f"Five val-large fields, {cells} cells, cProfile (which adds its own overhead); cumulative seconds.", "",
             "| part | calls | seconds |", "|---|---|---|"]
    for (ending, name), label in PARTS.items():
        found = [(s[0], s[3]) for (file, _, func), s in stats.items() if file.endswith(ending) and func == name]
        calls, seconds = (sum(c for c, _ in found), sum(t for _, t in found)) if found else (0, 0.0)
        lines.append(f"| {label} | {calls} | {seconds:.2f} |")
    write_dev_result("profile_large_fields", lines)


if __name__ == "__main__":
    main()
