"""Per-stage time per cell for Algorithm 1, Algorithm 2 and the colour baseline, on this CPU.

    .venv/bin/python benchmarks/bench_stages.py [--data ../shared/data/herlev] [--n 60]

Runs the bundled default model's weights at 128 px and at 224 px input (the compact network is
fully convolutional with global pooling, so it accepts any size; this isolates the cost of the
input size from the weights). Images: the first N of the default model's test split
(real Herlev cells of their own sizes). Writes benchmarks/results/stages.json and stages.md.
"""

from __future__ import annotations

import dataclasses
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from _common import default_model_and_test_cells, parser

from napari_cervseg import segment_cell

STAGES = ("preprocess", "forward_backward", "classify", "grouping", "nucleus_seed", "grabcut_nucleus", "inpainting",
          "grabcut_cytoplasm", "combine", "total")
METHODS = ("gradcam++", "lrp-ruleset1", "colour-baseline")


def main(argv=None):
    args = parser(__doc__, "stages").parse_args(argv)
    model128, samples, images = default_model_and_test_cells(args)
    results = {}
    for size in (128, 224):
        model = dataclasses.replace(model128, preprocess=dataclasses.replace(model128.preprocess, input_size=size))
        for method in METHODS:
            segment_cell(images[0], model=model, method=method, inpainter="opencv")  # warm-up
            per_stage = {s: [] for s in STAGES}
            for img in images:
                r = segment_cell(img, model=model, method=method, inpainter="opencv")
                for s in STAGES:
                    if s in r.timings:
                        per_stage[s].append(r.timings[s])
            results[f"{method}@{size}"] = {
                s: {"median_ms": 1000 * float(np.median(v)), "mean_ms": 1000 * float(np.mean(v))}
                for s, v in per_stage.items() if v
            }
            print(f"{method}@{size}: total median {results[f'{method}@{size}']['total']['median_ms']:.1f} ms")
    sizes = [img.shape[:2] for img in images]
    meta = {
        "command": "python benchmarks/bench_stages.py " + " ".join(argv or sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "n_images": len(images),
        "image_sizes_median_hw": [int(np.median([s[0] for s in sizes])), int(np.median([s[1] for s in sizes]))],
        "model": model128.source,
        "native_input_size": model128.preprocess.input_size,
        "note": "both rows use the default weights, fed at 128 px and at 224 px",
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    lines = ["# Per-stage time per cell (CPU)\n", f"Command: `{meta['command']}`  ", (f"Date: {meta['date']}, "
             f"{meta['machine']}, torch {meta['torch']}, {meta['n_images']} Herlev test-split cells "
             f"(median size {meta['image_sizes_median_hw'][0]} x {meta['image_sizes_median_hw'][1]} px). "
             f"{meta['note']}.\n"), "Median ms per cell (mean in brackets):\n",
             "| method @ input | " + " | ".join(STAGES) + " |", "|---" * (len(STAGES) + 1) + "|"]
    for key, stages in results.items():
        cells = [f"{stages[s]['median_ms']:.1f} ({stages[s]['mean_ms']:.1f})" if s in stages else "-" for s in STAGES]
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
