"""A classifier card whose class probabilities average the 8 flips / quarter turns of a cell
(``class_views: 8``), with its screening threshold re-chosen on the card's validation split from
probabilities made that way, by the card's own rule (issue 22; benchmarks/results/finder_rule.md,
"The classifier looking eight times"). No mask is read; the test split's figures are only reported.

    python benchmarks/dev/class_views_card.py --model default --data ../shared/data/herlev \
        --out runs/default_views8.safetensors

Writes the weights (copied), the applicability sidecar (copied) and the new card beside them.
"""

import argparse
import copy
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
from _common import code_commit  # noqa: E402


def main() -> None:
    from napari_cervseg.classify import load_model
    from napari_cervseg.classify.applicability import sidecar_path
    from napari_cervseg.classify.models import _resolve_weights
    from napari_cervseg.classify.predict import class_probabilities
    from napari_cervseg.io.datasets import read_dataset
    from napari_cervseg.io.images import to_rgb_uint8
    from napari_cervseg.workflows.train import screening_point

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "herlev"))
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    weights = _resolve_weights(args.model)
    out = Path(args.out).with_suffix(".safetensors")
    if out.exists():
        raise SystemExit(f"{out} exists; choose another --out")
    model = load_model(weights, device="cpu")
    card = dict(model.card)
    recall = float(card["operating_points"]["screening"]["target_abnormal_recall"])
    previous = float(card["operating_points"]["screening"]["abnormal_threshold"])
    split = card["training"]["split"]
    samples = {s.name: s for s in read_dataset(args.data)}
    model = copy.copy(model)  # the loaded model is cached and shared: its card stays as it is
    model.card = {**card, "class_views": 8}
    p, y = {}, {}
    for part in ("val", "test"):
        chosen = [samples[n] for n in split[part]]
        p[part] = np.array([class_probabilities(model, to_rgb_uint8(s.load_image())[0])[
            model.class_names.index("abnormal")] for s in chosen])
        y[part] = np.array([int(s.label == "abnormal") for s in chosen])
    points = screening_point(p["val"], y["val"], p["test"], y["test"], recall, tta=True)
    points["screening"]["probabilities"] = "the mean over the 8 flips / quarter turns (class_views: 8), as at inference"
    command = (f"python benchmarks/dev/class_views_card.py --model {args.model} --data {args.data} --out {args.out}"
               f" (code {code_commit()}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})")
    card.update(class_views=8, operating_points=points, class_views_made_by=command)
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(weights, out)
    if sidecar_path(weights).exists():
        shutil.copyfile(sidecar_path(weights), sidecar_path(out))
    out.with_suffix(".json").write_text(json.dumps(card, indent=2))
    s = points["screening"]
    print(f"threshold {s['abnormal_threshold']:.4f} (was {previous:.4f}); val abnormal recall"
          f" {s['val_abnormal_recall']:.3f}; test: {json.dumps(s['test_metrics'])}")


if __name__ == "__main__":
    main()
