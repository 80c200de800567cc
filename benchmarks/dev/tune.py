"""Compare pipeline options on the default model's *validation* split (development tuning)."""
import json
import sys
import time

sys.path.insert(0, "src")
import torch

torch.set_num_threads(1)
from napari_cervseg.classify import load_model
from napari_cervseg.io.datasets import read_dataset
from napari_cervseg.workflows.evaluate import evaluate_segmentation

model = load_model("default", device="cpu")
split = set(model.card["training"]["split"][sys.argv[1]])
n = int(sys.argv[2])
samples = [s for s in read_dataset("../shared/data/herlev") if s.name in split and s.mask_path][:n]
for spec in sys.argv[3:]:
    method, opts = spec.split(":", 1) if ":" in spec else (spec, "{}")
    t = time.time()
    r = evaluate_segmentation(samples, model, [method], {method: json.loads(opts)})[method]
    print(f"{method:16s} {opts:60s} nuc {r['nucleus']['dice']:.3f} cyto {r['cytoplasm']['dice']:.3f} mean {r['mean']['dice']:.3f} ({time.time()-t:.0f}s)", flush=True)
