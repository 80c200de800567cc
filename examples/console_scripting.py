"""Segment a cell, explain it, correct it and measure it from Python (or napari's console).

    python examples/console_scripting.py            # plain Python, prints the results
    python examples/console_scripting.py --napari   # opens a viewer with the layers
"""

import sys

import numpy as np

from napari_cervseg import explain, measure, segment_cell
from napari_cervseg.plugin.samples import load_sample

image = load_sample("abnormal")
result = segment_cell(image)  # bundled model, the self-trained default (its Grad-CAM++ heatmap in result.heatmap)
print(f"class {result.predicted_class} (p = {result.probability:.2f}), method {result.method}")
print("stage times (ms):", {k: round(v * 1000, 1) for k, v in result.timings.items()})

lrp = segment_cell(image, method="lrp-ruleset1")  # Algorithm 2, OpenCV inpainting unless LAMA_MODEL is set
print(f"LRP: inpainter {lrp.inpainter}, nucleus {int((lrp.labels == 2).sum())} px")

why_normal = explain("default", image, method="gradcam++", target="normal")
print(f"evidence for 'normal' peaks at {np.unravel_index(why_normal.heatmap.argmax(), image.shape[:2])}")

# a hand correction, as a user would paint it with napari's brush: grow the nucleus by 1 px
from scipy import ndimage as ndi

corrected = result.labels.copy()
corrected[ndi.binary_dilation(corrected == 2) & (corrected > 0)] = 2
row = measure(corrected, image, pixel_size=0.25)
print(f"N/C ratio {row['nc_ratio']:.2f}; nucleus {row['nucleus_area_um2']:.0f} µm²")

if "--napari" in sys.argv:
    import napari

    from napari_cervseg.plugin.console import show_result

    viewer = napari.Viewer()
    viewer.add_image(image, name="cell", rgb=True)
    show_result(viewer, "cell", result)  # "cell regions" in the plugin's colours, the heatmap under it
    napari.run()
