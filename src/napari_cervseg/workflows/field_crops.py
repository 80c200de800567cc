"""Classifier training crops cut from composed fields (issue 22, item 3).

On a field of view the classifier sees each found cell in a crop of the field: a common slide
colour behind it, neighbours and overlapping cytoplasm in its corners, a box cut by the finder
rather than Herlev's hand-cut one. Crops like these, cut from fields composed of the *training
split's* cells, teach it that view. Each cell's extent comes from the self-trained segmenter's
pseudo-label of its own image (no mask is read) and its class is its image's label: image-level
labels only, as everywhere in training.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..classify.preprocess import resize
from .finder_training import FinderTrainConfig, TrainingCell, compose_field

#: how the fields for classifier crops are composed: the finder's composer near native scale (the
#: field route crops at full resolution), in colour and without made-pale nuclei (a paler nucleus
#: is evidence of class, not of the slide); rays are not needed, so the fewest are drawn
FIELD_CROP_FIELDS = FinderTrainConfig(field_size=448, scale_range=(0.8, 1.05), grey_share=0.0,
                                      pale_nucleus_share=0.0, n_rays=4)
#: each side of a cell's box moves by up to this share of its larger side: the finder's extent is
#: not the pseudo-label's
BOX_JITTER = 0.08


def crop_box(box: tuple[int, int, int, int], shape) -> tuple[int, int, int, int]:
    """The field route's crop around a cell's (r0, c0, r1, c1) box (the same layout as at inference)."""
    from .fields import _crop_box

    r0, c0, r1, c1 = box
    return _crop_box((slice(r0, r1), slice(c0, c1)), shape)


def field_crops(cells: list[TrainingCell], labels, n_fields: int, size: int, seed: int = 0,
                config: FinderTrainConfig = FIELD_CROP_FIELDS, progress=None) -> tuple[np.ndarray, np.ndarray]:
    """Crops (N, size, size, 3) uint8 of the cells placed on ``n_fields`` composed fields, and their
    class indices (N,): ``labels[cell.source]`` of the cell each crop holds.

    ``cells`` come from :func:`~napari_cervseg.workflows.finder_training.training_cells` of the
    images whose class indices are ``labels``."""
    from ..stages import report_count

    labels = np.asarray(labels)
    if not cells:
        raise ValueError("no pseudo-labelled cell to compose fields from (the segmenter found no nucleus in any)")
    rng = np.random.default_rng(seed)
    config = replace(config, n_fields=n_fields)
    crops, classes = [], []
    for f in range(n_fields):
        rgb, _, _, info = compose_field(cells, rng, config)
        placed = info["placed"]
        above = np.zeros(rgb.shape[:2], bool)  # the cells placed after (on top of) this one
        hidden = []
        for _, cell_mask, nucleus in reversed(placed):
            hidden.append((above & nucleus).sum() > 0.5 * nucleus.sum())
            above |= cell_mask
        for (index, cell_mask, _), covered in zip(placed, reversed(hidden), strict=True):
            if covered:
                continue  # its nucleus lies under other cells: the crop would show theirs
            rows, cols = np.nonzero(cell_mask)
            if len(rows) < 16 or rows.min() == 0 or cols.min() == 0 or rows.max() == cell_mask.shape[0] - 1 \
                    or cols.max() == cell_mask.shape[1] - 1:
                continue  # cut by the field's edge: the class of a part is not the image's
            side = max(rows.max() - rows.min() + 1, cols.max() - cols.min() + 1)
            jitter = rng.uniform(-BOX_JITTER, BOX_JITTER, 4) * side
            box = (int(rows.min() + jitter[0]), int(cols.min() + jitter[1]),
                   int(rows.max() + 1 + jitter[2]), int(cols.max() + 1 + jitter[3]))
            r0, c0, r1, c1 = crop_box(box, rgb.shape[:2])
            if r1 - r0 < 8 or c1 - c0 < 8:
                continue
            crops.append(resize(rgb[r0:r1, c0:c1], size))
            classes.append(int(labels[cells[index].source]))
        report_count(progress, f + 1, n_fields, "fields composed for crops")
    if not crops:
        raise ValueError(f"no cell crop could be cut from {n_fields} composed fields")
    return np.stack(crops), np.asarray(classes, np.int64)
