"""Cell descriptors from a labels array (0 background, 1 cytoplasm, 2 nucleus).

Works on any labels, hand-corrected or not. Areas in pixels and, given a pixel size, in µm².
The cell is nucleus + cytoplasm. N/C ratio = nucleus area / cytoplasm area (the cytologists'
ratio); ``nucleus_cell_ratio`` = nucleus area / whole-cell area.
"""

from __future__ import annotations

import math

import numpy as np
from skimage import measure as skm

from ..io.images import check_pixel_size, to_rgb_uint8

LENGTH_KEYS = ("perimeter", "equivalent_diameter", "major_axis", "minor_axis")


def _largest_region(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """The largest 8-connected region of ``mask`` and how many regions it has."""
    if not mask.any():
        return mask, 0
    regions, n = skm.label(mask, connectivity=2, return_num=True)
    if n <= 1:
        return mask, n
    sizes = np.bincount(regions.ravel())
    sizes[0] = 0
    return regions == int(np.argmax(sizes)), n


def _shape(mask: np.ndarray) -> dict:
    """Area, perimeter, equivalent diameter, axes, eccentricity, circularity, solidity of a mask
    (all its pixels taken as one region; zeros/NaN when empty)."""
    if not mask.any():
        return {"area": 0, "perimeter": 0.0, "equivalent_diameter": 0.0, "major_axis": 0.0,
                "minor_axis": 0.0, "eccentricity": float("nan"), "circularity": float("nan"),
                "solidity": float("nan")}
    props = skm.regionprops(mask.astype(np.uint8))[0]
    area = int(props.area)
    perimeter = float(skm.perimeter_crofton(mask, directions=4)) if min(mask.shape) > 1 else float(props.perimeter)
    return {
        "area": area,
        "perimeter": perimeter,
        "equivalent_diameter": float(props.equivalent_diameter_area),
        "major_axis": float(props.axis_major_length),
        "minor_axis": float(props.axis_minor_length),
        "eccentricity": float(props.eccentricity),
        # 4 pi A / P^2: 1 for a disc, lower for irregular outlines (capped at 1: digital perimeters
        # of tiny regions undershoot)
        "circularity": float(min(1.0, 4 * math.pi * area / perimeter**2)) if perimeter > 0 else float("nan"),
        "solidity": float(props.solidity),
    }


def measure(labels, image=None, pixel_size: float | None = None) -> dict:
    """Descriptors of one cell: a flat dict (one row of the descriptors table).

    Parameters
    ----------
    labels : ndarray (H, W)
        0 background, 1 cytoplasm, 2 nucleus (hand-corrected or not; integer-valued).
    image : ndarray, optional
        The cell image (H, W) or (H, W, 3|4), for mean intensities.
    pixel_size : float, optional
        µm per pixel (finite, > 0), for areas in µm² and lengths in µm.

    Returns
    -------
    dict
        ``nucleus_area``, ``cytoplasm_area``, ``cell_area`` (pixels), ``nc_ratio`` (nucleus /
        cytoplasm), ``nucleus_cell_ratio``; per region (``nucleus_``, ``cell_``) perimeter,
        equivalent_diameter, major/minor axis, eccentricity, circularity, solidity (of the largest
        part when a region has several, with a note); with ``image`` the mean grey intensity
        (0-255) of nucleus and cytoplasm; with ``pixel_size`` the areas in µm² (``*_area_um2``)
        and lengths in µm (``*_um``).

    Raises
    ------
    ValueError
        Labels that are not 2D, not integer-valued, or use values other than 0, 1, 2; a bad pixel size.

    See Also
    --------
    napari_cervseg.workflows.fields.cell_rows : every cell of instance labels, one row each.

    Examples
    --------
    >>> import numpy as np
    >>> from napari_cervseg import measure
    >>> labels = np.zeros((40, 40), np.uint8); labels[5:35, 5:35] = 1; labels[15:25, 15:25] = 2
    >>> row = measure(labels)
    >>> row["nucleus_area"], row["cytoplasm_area"], round(row["nc_ratio"], 3)
    (100, 800, 0.125)
    """
    labels = np.asarray(labels)
    pixel_size = check_pixel_size(pixel_size)
    if labels.dtype.kind not in "biuf":
        raise ValueError(f"labels must be a numeric array of 0 background, 1 cytoplasm, 2 nucleus; got dtype"
                         f" {labels.dtype}")
    if labels.ndim != 2:
        hint = (" (an RGB picture of labels? save labels as a single-channel image)"
                if labels.ndim == 3 and labels.shape[-1] in (3, 4) else "")
        raise ValueError(f"labels must be 2D (H, W), got shape {labels.shape}{hint}")
    if labels.dtype.kind == "f":
        finite = np.isfinite(labels)
        if not finite.all() or not np.array_equal(labels, np.round(labels)):
            bad = sorted(set(labels[~finite].tolist()) | set(labels[finite][labels[finite] != np.round(
                labels[finite])].tolist()), key=str)[:5]
            raise ValueError(f"labels must be whole numbers 0 background, 1 cytoplasm, 2 nucleus; found"
                             f" values {bad}")
    if labels.size and (labels.min() < 0 or labels.max() > 2):
        bad = sorted(set(np.unique(labels).tolist()) - {0, 1, 2})[:5]
        raise ValueError(f"labels must use 0 background, 1 cytoplasm, 2 nucleus; found values {bad}")
    nucleus = labels == 2
    cytoplasm = labels == 1
    cell = nucleus | cytoplasm
    row: dict = {
        "nucleus_area": int(nucleus.sum()),
        "cytoplasm_area": int(cytoplasm.sum()),
        "cell_area": int(cell.sum()),
    }
    row["nc_ratio"] = row["nucleus_area"] / row["cytoplasm_area"] if row["cytoplasm_area"] else float("nan")
    row["nucleus_cell_ratio"] = row["nucleus_area"] / row["cell_area"] if row["cell_area"] else float("nan")
    notes = []
    for prefix, mask in (("nucleus", nucleus), ("cell", cell)):
        largest, n_regions = _largest_region(mask)
        row[f"{prefix}_regions"] = n_regions
        if n_regions > 1:
            notes.append(f"{n_regions} separate {prefix} regions: its shape descriptors are of the largest"
                         f" ({int(largest.sum())} of {int(mask.sum())} px); areas count them all")
        for key, value in _shape(largest).items():
            if key != "area":
                row[f"{prefix}_{key}"] = value
    row["measure_notes"] = " | ".join(notes)
    if image is not None:
        rgb, _ = to_rgb_uint8(image)
        if rgb.shape[:2] != labels.shape:
            raise ValueError(f"image shape {rgb.shape[:2]} differs from labels shape {labels.shape}")
        grey = rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
        row["nucleus_mean_intensity"] = float(grey[nucleus].mean()) if nucleus.any() else float("nan")
        row["cytoplasm_mean_intensity"] = float(grey[cytoplasm].mean()) if cytoplasm.any() else float("nan")
    if pixel_size is not None:
        ps = pixel_size
        row["pixel_size_um"] = ps
        for key in ("nucleus_area", "cytoplasm_area", "cell_area"):
            row[f"{key}_um2"] = row[key] * ps * ps
        for prefix in ("nucleus", "cell"):
            for key in LENGTH_KEYS:
                row[f"{prefix}_{key}_um"] = row[f"{prefix}_{key}"] * ps
    return row


def format_value(value) -> str:
    """A table cell: floats to 6 significant digits, NaN and None as empty."""
    if value is None:
        return ""
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.6g}"
    return str(value)


def write_rows_csv(path, rows: list[dict]):
    """Write descriptor rows (union of their keys as columns) via a checked temporary file and
    rename, so a killed run or a full disk never leaves a truncated table (OutputError instead)."""
    import csv
    import io
    from pathlib import Path

    from ..io.images import write_text_atomic

    path = Path(path)
    keys: list[str] = []
    for row in rows:
        keys += [k for k in row if k not in keys]
    keys = keys or ["image"]  # an empty table still says what it is
    buf = io.StringIO(newline="")
    writer = csv.DictWriter(buf, fieldnames=keys)
    writer.writeheader()
    for row in rows:
        writer.writerow({k: format_value(row.get(k)) for k in keys})
    write_text_atomic(path, buf.getvalue())
    return path
