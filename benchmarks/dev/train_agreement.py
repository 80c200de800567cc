"""One retraining variant of the student (issue 15, item 2): pseudo-labels where two teachers agree.

Teachers: Algorithm 1 (gradcam++) and the colour baseline, each run on the bundled model card's
train / validation images (image-level labels only; no mask is read). A pixel keeps its label where
both teachers give the same class and is left out of the loss (IGNORE) where they differ; otherwise
the bundled recipe (SelfTrainConfig defaults, the epoch of lowest validation loss against the
agreement pseudo-labels). One torch thread (the machine is shared).

    PYTHONPATH=src nohup .venv/bin/python benchmarks/dev/train_agreement.py runs/seg_agree.safetensors [EPOCHS]

Then: PYTHONPATH=src .venv/bin/python benchmarks/dev/val_selftrain.py runs/seg_agree.safetensors
"""

import sys
import time

import numpy as np
import torch

from napari_cervseg import load_model
from napari_cervseg.io.datasets import default_data_root, read_dataset
from napari_cervseg.segment.student import save_segmenter
from napari_cervseg.workflows.selftrain import IGNORE, SelfTrainConfig, pseudo_labels, train_segmenter

torch.set_num_threads(1)
out = sys.argv[1]
epochs = int(sys.argv[2]) if len(sys.argv) > 2 else 40
model = load_model("default", device="cpu")
split = model.card["training"]["split"]
samples = read_dataset(default_data_root())
pairs = {}
t0 = time.perf_counter()
for part in ("train", "val"):
    items = [s for s in samples if s.name in set(split[part])]
    images = [s.load_image() for s in items]
    a = pseudo_labels(images, model, {"method": "gradcam++"})
    b = pseudo_labels(images, model, {"method": "colour-baseline"})
    keep, labels, agree = [], [], []
    for i, (la, lb) in enumerate(zip(a, b, strict=True)):
        if la is None or lb is None:
            continue
        lab = la.astype(np.int16)  # cv2 resizes int16, not int64
        lab[la != lb] = IGNORE
        keep.append(i)
        labels.append(lab)
        agree.append(float((la == lb).mean()))
    pairs[part] = ([images[i] for i in keep], labels)
    print(f"{part}: {len(keep)} of {len(images)} images; teachers agree on {np.mean(agree):.3f} of pixels",
          flush=True)
label_seconds = time.perf_counter() - t0
config = SelfTrainConfig(epochs=epochs, teacher={"method": "gradcam++ & colour-baseline (agreement)"})
seg = train_segmenter(pairs["train"][0], pairs["train"][1], config, pairs["val"][0], pairs["val"][1],
                      log=lambda *a: print(*a, flush=True),
                      card_extra={"teacher": config.teacher, "classifier": "default",
                                  "pseudo_label_seconds": round(label_seconds, 1),
                                  "command": "benchmarks/dev/train_agreement.py " + " ".join(sys.argv[1:])})
print("wrote", save_segmenter(seg, out), seg.card["train_seconds"], "s")
