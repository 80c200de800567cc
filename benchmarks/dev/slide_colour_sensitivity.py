"""Does the slide's colour move the fields' classifier (issue 22)? Each **validation-split** Herlev
cell is laid, as ``../shared/tools/compose_fields.py`` lays it onto a field (its pixels over its own
slide colour, times the field's slide colour), onto 6 slide colours of training-split images, and
onto the reference slide colour of the white balance (``reference_slide.py``). The masks are read
only to find each image's slide colour the way the composer does; nothing is chosen on them.

    python benchmarks/dev/slide_colour_sensitivity.py -> benchmarks/results/dev/slide_colour_sensitivity.md
"""

import csv
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT.parent / "shared" / "tools"))
from _common import code_commit, write_dev_result  # noqa: E402
from compose_fields import background_colour  # noqa: E402


def main() -> None:
    from napari_cervseg.classify import load_model
    from napari_cervseg.classify.predict import classify
    from napari_cervseg.workflows.fields import FIELD_MODEL, REFERENCE_SLIDE_RGB

    data = ROOT.parent / "shared" / "data" / "herlev"
    rows = {r["name"]: r for r in csv.DictReader((data / "manifest.csv").read_text().splitlines())}
    split = json.loads((ROOT / "src" / "napari_cervseg" / "weights" / "default.json").read_text())["training"]["split"]
    model = load_model(FIELD_MODEL)

    def image(name):
        r = rows[name]
        rgb = np.asarray(Image.open(data / "images" / r["herlev_class"] / f"{name}.png").convert("RGB"))
        return rgb, np.asarray(Image.open(data / "masks" / f"{name}.png"))

    slides = np.asarray([background_colour(*image(n)) for n in split["train"] if rows[n]["has_mask"] == "1"][::8])
    rng = np.random.default_rng(0)
    stats = {"own": [], "slides": [], "reference": []}
    labels = []
    for name in split["val"]:
        if rows[name]["has_mask"] != "1":
            continue
        rgb, mask = image(name)
        transmittance = np.clip(rgb.astype(np.float32) / np.maximum(background_colour(rgb, mask), 1), 0.02, 1.0)

        def p_abnormal(slide, transmittance=transmittance):
            return classify(model, np.clip(transmittance * slide, 0, 255).astype(np.uint8))[2]["abnormal"]

        labels.append(rows[name]["label"])
        stats["own"].append(classify(model, rgb)[2]["abnormal"])
        stats["slides"].append([p_abnormal(s) for s in slides[rng.choice(len(slides), 6, replace=False)]])
        stats["reference"].append(p_abnormal(np.asarray(REFERENCE_SLIDE_RGB)))
    threshold = model.card["operating_points"]["screening"]["abnormal_threshold"]
    own = np.asarray(stats["own"])
    abnormal = np.asarray(labels) == "abnormal"
    lines = ["# The slide's colour and the fields' classifier (issue 22)", "",
             f"## code {code_commit()}: `python benchmarks/dev/slide_colour_sensitivity.py`", "",
             (f"{len(own)} validation-split cells ({abnormal.sum()} abnormal), classifier {FIELD_MODEL}, screening"
             f" threshold {threshold:.3f} on p(abnormal); 6 training-split slide colours per cell."), "",
             ("| cell laid on | mean abs. change of p(abnormal) from its own image | abnormal called abnormal | normal"
             " called normal |"), "|---|---|---|---|",
             f"| its own image | 0 | {(own[abnormal] >= threshold).mean():.3f} | {(own[~abnormal] < threshold).mean():.3f} |"]
    for key, what in (("slides", "training-split slide colours (each)"), ("reference", "the reference slide colour")):
        p = np.asarray(stats[key])
        p = p if p.ndim == 2 else p[:, None]
        lines.append(f"| {what} | {np.abs(p - own[:, None]).mean():.3f} | {(p[abnormal] >= threshold).mean():.3f} |"
                     f" {(p[~abnormal] < threshold).mean():.3f} |")
    write_dev_result("slide_colour_sensitivity", lines + [""])
    print("\n".join(lines))


if __name__ == "__main__":
    main()
