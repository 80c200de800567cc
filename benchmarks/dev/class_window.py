"""Dev check (issue 22, item 3): is a normal field cell called abnormal because its crop shows the
whole cell with slide around it, where a large normal Herlev image is cut inside the cell?

`benchmarks/bench_fields.py` with one change: each found cell whose crop is larger than a window
of K nucleus diameters (the finder's nucleus) around its nucleus is classified on that window
instead; segmentation, extents and everything else are as before. Only image-level class labels
are scored (no mask chooses anything; the masks only match cells as bench_fields always does).
The first argument is K, the rest go to bench_fields.py:

    python benchmarks/dev/class_window.py 4 --sets data/fields-herlev-val data/fields-herlev-val2
        data/fields-herlev-val3 data/fields-herlev-val-large data/fields-herlev-val-large2
        --finder learned --operating-point screening
        --out benchmarks/results/dev/fields_val12345_class_window4
"""

import math
import runpy
import sys
from pathlib import Path

import numpy as np

import napari_cervseg
import napari_cervseg.workflows.fields as fields_route
from napari_cervseg.classify.models import load_model
from napari_cervseg.classify.predict import classify

BENCH = Path(__file__).resolve().parents[1] / "bench_fields.py"


def windowed_route(k: float):
    """Patch the field route so that big cells are classified on a window of k nucleus diameters."""
    model = load_model("default")
    state: dict = {"windowed": 0}
    segment_field, in_crop, judge = fields_route.segment_field, fields_route._in_crop, fields_route._judge

    def segment_field_keeping_image(image, *args, **kwargs):
        state["rgb"], state["operating_point"] = np.asarray(image), kwargs.get("operating_point")
        return segment_field(image, *args, **kwargs)

    def in_crop_keeping_seed(cell, shape):
        out = in_crop(cell, shape)
        state["box"], state["seed"] = out[0], out[2]
        return out

    def judge_on_window(record, result):
        judge(record, result)
        seed = state["seed"]
        if not seed.any() or record.predicted_class is None:
            return
        r0, c0, r1, c1 = state["box"]
        rows, cols = np.nonzero(seed)
        cy, cx = rows.mean() + r0, cols.mean() + c0
        half = k * math.sqrt(seed.sum() / math.pi)
        w0, w1 = max(r0, int(cy - half)), min(r1, int(cy + half))
        v0, v1 = max(c0, int(cx - half)), min(c1, int(cx + half))
        if w1 - w0 >= 0.95 * (r1 - r0) and v1 - v0 >= 0.95 * (c1 - c0):
            return  # the crop is no larger than the window: classified as before
        cls, prob, probs = classify(model, state["rgb"][w0:w1, v0:v1], operating_point=state["operating_point"])
        record.predicted_class, record.probability = cls, prob
        record.p_abnormal = float(probs.get("abnormal"))
        state["windowed"] += 1

    fields_route._in_crop, fields_route._judge = in_crop_keeping_seed, judge_on_window
    napari_cervseg.segment_field = segment_field_keeping_image
    return state


if __name__ == "__main__":
    state = windowed_route(float(sys.argv[1]))
    # (the result file names this script and K as its command)
    sys.argv = [f"benchmarks/dev/class_window.py {sys.argv[1]}"] + sys.argv[2:]
    runpy.run_path(str(BENCH), run_name="__main__")
    print(f"cells classified on their window: {state['windowed']}")
