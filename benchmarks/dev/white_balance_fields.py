"""Which fields does the white balance of the crops change (issue 22)? Each field of a set is
segmented with WHITE_BALANCE off and on; the fields whose count of matched true nuclei (IoU >= 0.5)
or of found cells differs are printed with their slide colour. The masks are read to count only.

    python benchmarks/dev/white_balance_fields.py data/fields-herlev-val [--mode into-range]
"""

import sys, numpy as np
sys.path.insert(0, "benchmarks")
from bench_fields import field_set, match_nuclei
from napari_cervseg import segment_field
from napari_cervseg.workflows import fields as F
from napari_cervseg.segment.cells import slide_colour
name = sys.argv[1]
for path, rgb, pages in field_set(name):
    out = []
    for wb in (False, True):
        F.WHITE_BALANCE = wb
        r = segment_field(rgb, finder="learned", operating_point="screening")
        pairs = match_nuclei(r.nuclei, pages)
        out.append((len(pairs), r.n_cells))
    if out[0] != out[1]:
        print(path.stem, len(pages), "slide", slide_colour(rgb).round(0), "off", out[0], "on", out[1], flush=True)
