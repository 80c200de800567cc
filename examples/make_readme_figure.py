"""Make docs/pipeline.png: image, heatmap, rough map, labels, ground truth for the sample cell.

    python examples/make_readme_figure.py [--data ../shared/data/herlev]
"""

import argparse
from pathlib import Path

import cv2
import numpy as np

from napari_cervseg import segment_cell
from napari_cervseg.io.datasets import default_data_root
from napari_cervseg.plugin.samples import load_sample
from napari_cervseg.segment.result import heatmap_rgb, overlay

parser = argparse.ArgumentParser()
parser.add_argument("--data", default=None)
args = parser.parse_args()
image = load_sample("abnormal")
result = segment_cell(image)
palette = np.array([[235, 235, 235], [255, 150, 30], [40, 90, 255]], np.uint8)
tiles = [image, heatmap_rgb(result.heatmap), palette[result.rough], overlay(image, result.labels)]
root = Path(args.data) if args.data else default_data_root()
truth_path = root / "masks" / "149185604-149185645-004.png" if root else None
if truth_path is not None and truth_path.exists():
    truth = cv2.imread(str(truth_path), cv2.IMREAD_UNCHANGED)
    tiles.append(overlay(image, truth))
size = 200
tiles = [cv2.resize(t, (size, int(size * image.shape[0] / image.shape[1])), interpolation=cv2.INTER_NEAREST)
         for t in tiles]
gap = np.full((tiles[0].shape[0], 6, 3), 255, np.uint8)
row = np.concatenate(sum(([t, gap] for t in tiles), [])[:-1], axis=1)
out = Path(__file__).parents[1] / "docs" / "pipeline.png"
out.parent.mkdir(exist_ok=True)
cv2.imwrite(str(out), cv2.cvtColor(row, cv2.COLOR_RGB2BGR))
print(f"wrote {out} ({result.predicted_class}, p = {result.probability:.2f})")
