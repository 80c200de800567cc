"""Pure-Python helpers between napari layers and the core (no Qt): layer naming, the
never-overwrite rule for painted labels, rectangles and stack frames as the core's inputs, and
descriptor tables. The per-cell / per-frame loops themselves are the core's
(``workflows.batch.segment_frames`` / ``segment_boxes``).
"""

from __future__ import annotations

import hashlib

import numpy as np

from .. import _gl_safety
from ..io.images import ImageError, to_rgb_uint8
from ..measure.descriptors import measure
from ..measure.records import CELL_ID, P_ABNORMAL, PREDICTED_CLASS, by_suspicion
from ..segment.result import LABEL_COLOURS

# Checked again here, not only when the package was imported: the package may have been imported
# before Qt (a script, a test session), and the widgets that need this module come after Qt.
_gl_safety.keep_triton_out()

WRITTEN_KEY = "cervseg_written_digest"
#: the metadata key that says which of the plugin's own products a layer is (``"heatmap"``): such
#: layers are never offered or taken as images to segment
KIND_KEY = "cervseg_kind"
#: what a regions layer's label values are (napari shows a labels layer's ``features`` on hover)
REGION_NAMES = ("background", "cytoplasm", "nucleus")


class LayerError(ValueError):
    """A layer the plugin cannot use; the message names the layer and what would work."""


def label_colormap():
    """napari's colormap for the label values: the core's ``LABEL_COLOURS`` (cytoplasm orange,
    nucleus blue, as in the overlays the CLI writes), background and other values transparent."""
    from napari.utils.colormaps import DirectLabelColormap

    colours = {value: "#{:02x}{:02x}{:02x}".format(*rgb) for value, rgb in LABEL_COLOURS.items()}
    return DirectLabelColormap(color_dict={0: "transparent", None: "transparent", **colours})


def digest(data) -> str:
    """SHA-1 of an array's bytes and shape: what the plugin wrote into a labels layer, to tell later
    whether the user has painted on it."""
    arr = np.ascontiguousarray(np.asarray(data))
    return hashlib.sha1(arr.tobytes() + str(arr.shape).encode()).hexdigest()


def is_plugin_heatmap(layer) -> bool:
    """Whether a layer is a heatmap this plugin added (marked in its metadata)."""
    return getattr(layer, "metadata", {}).get(KIND_KEY) == "heatmap"


def layer_type_name(layer) -> str:
    """``"Labels"``, ``"Shapes"``...: the layer's type as the user knows it (napari hands menu
    commands a proxy of the layer, whose own type name means nothing to a user)."""
    if layer is None:
        return "no layer"
    return layer.__class__.__name__  # the proxy passes __class__ through to the layer


def region_features() -> dict:
    """napari ``features`` for a regions layer: hovering a pixel shows ``nucleus``, not ``2``."""
    return {"index": list(range(len(REGION_NAMES))), "region": list(REGION_NAMES)}


def image_from_layer(name: str, data, rgb: bool, warnings: list | None = None) -> np.ndarray:
    """An image layer's data as one 2D cell image.

    Parameters
    ----------
    name : str
        The layer's name (for the error message).
    data : array-like
        The layer's data: (H, W) grey or (H, W, 3/4) colour.
    rgb : bool
        Whether the last axis holds the colour channels.
    warnings : list, optional
        Gets what the conversion did that the user should know (e.g. a uint16 image stretched).

    Returns
    -------
    ndarray
        (H, W, 3) RGB uint8.

    Raises
    ------
    LayerError
        For a stack or any other shape, or data that is no image; the message names the layer
        and what would work.
    """
    arr = np.asarray(data)
    if arr.ndim != (3 if rgb else 2):
        raise LayerError(
            f"layer {name!r} has shape {arr.shape}: this segments one 2D grey or RGB cell image;"
            " pick a 2D layer, or segment every frame of a stack with 'Segment all (batch)'"
            " (Plugins > CervSeg, or Layers > Segment)"
        )
    try:
        image, notes = to_rgb_uint8(arr, name=f"layer {name!r}")
    except ImageError as exc:
        raise LayerError(str(exc)) from exc
    if warnings is not None:
        warnings.extend(notes)
    return image


def heatmap_layer_name(image_name: str, method: str, explained_class: str | None = None) -> str:
    """``<image> heatmap [<method>, <class>]``: the heatmap layer's name.

    Parameters
    ----------
    image_name : str
        The explained image layer's name.
    method : str
        The explanation method that made the heatmap (``gradcam++`` also for ``self-trained``,
        whose heatmap is its teacher's explanation).
    explained_class : str, optional
        The class the heatmap explains, so that explaining "normal" never silently replaces
        the "abnormal" heatmap.

    Returns
    -------
    str

    Examples
    --------
    >>> heatmap_layer_name("cell", "gradcam++", "abnormal")
    'cell heatmap [gradcam++, abnormal]'
    """
    return f"{image_name} heatmap [{method}, {explained_class}]" if explained_class else \
        f"{image_name} heatmap [{method}]"


def regions_layer_name(image_name: str, existing: list[str], layer_metadata: dict | None,
                       layer_data=None) -> tuple[str, bool]:
    """Name for the regions labels layer and whether an existing layer may be replaced.

    The layer ``<image> regions`` is reused only while it still holds exactly what the plugin
    wrote there (a digest kept in its metadata); once a user has painted on it, a new layer
    ``<image> regions [2]``, ``[3]``... is made instead, so no correction is ever lost.

    Parameters
    ----------
    image_name : str
        The segmented image layer's name.
    existing : list of str
        The names of the viewer's layers.
    layer_metadata, layer_data : dict and array, optional
        The metadata and data of the existing ``<image> regions`` layer, if any.

    Returns
    -------
    name : str
    replace : bool
        Whether ``name`` is the existing layer, to be overwritten (it holds no painting).
    """
    base = f"{image_name} regions"
    if base not in existing:
        return base, False
    if layer_metadata is not None and layer_data is not None and \
            layer_metadata.get(WRITTEN_KEY) == digest(layer_data):
        return base, True
    i = 2
    while f"{base} [{i}]" in existing:
        i += 1
    return f"{base} [{i}]", False


def rectangles_to_boxes(shapes_data, shape_types, image_shape) -> list[tuple[int, int, int, int]]:
    """Rectangles of a Shapes layer as boxes clipped to the image.

    Parameters
    ----------
    shapes_data : list of arrays
        The Shapes layer's vertices (data coordinates; the last two axes are rows, columns).
    shape_types : list of str
        The shapes' types; only ``"rectangle"`` counts.
    image_shape : tuple
        The image's shape; boxes are clipped to its height and width.

    Returns
    -------
    list of (r0, c0, r1, c1)
        Integer boxes (end exclusive) of at least 2 x 2 pixels inside the image.
    """
    boxes = []
    h, w = image_shape[:2]
    for verts, kind in zip(shapes_data, shape_types, strict=False):
        if kind != "rectangle":
            continue
        v = np.asarray(verts)[:, -2:]
        r0, c0 = np.floor(v.min(0)).astype(int)
        r1, c1 = np.ceil(v.max(0)).astype(int)
        r0, c0, r1, c1 = max(r0, 0), max(c0, 0), min(r1, h), min(c1, w)
        if r1 - r0 >= 2 and c1 - c0 >= 2:
            boxes.append((int(r0), int(c0), int(r1), int(c1)))
    return boxes


def layer_frames(name: str, data, rgb: bool, warnings: dict | None = None):
    """The 2D images of an image layer, read lazily.

    Parameters
    ----------
    name : str
        The layer's name (frames are named ``"<name> [frame i]"``).
    data : array-like
        The layer's data: 2D (or 2D RGB), or a stack with frames on the first axis.
    rgb : bool
        Whether the last axis holds the colour channels.
    warnings : dict, optional
        Gets, for each frame read, what its conversion did that the user should know
        (frame name -> list of messages).

    Returns
    -------
    list of (str, callable)
        ``(frame name, getter)``: one for a 2D layer, one per frame of a stack; each getter
        returns the frame as RGB uint8 or raises LayerError.

    Raises
    ------
    LayerError
        For data of more than three (non-channel) dimensions.
    """
    ndim = np.ndim(data) - (1 if rgb else 0)
    notes = {} if warnings is None else warnings
    if ndim == 2:
        return [(name, lambda: image_from_layer(name, data, rgb, notes.setdefault(name, [])))]
    if ndim == 3:
        n = int(np.shape(data)[0])
        return [(f"{name} [frame {i}]",
                 lambda i=i: image_from_layer(f"{name} [frame {i}]", np.asarray(data[i]), rgb,
                                              notes.setdefault(f"{name} [frame {i}]", [])))
                for i in range(n)]
    raise LayerError(f"layer {name!r} has shape {np.shape(data)}: the batch action segments 2D images and"
                     " the frames of 3D stacks (frames on the first axis); take a 3D part of it first")


def read_frames(frames):
    """Read the frames of :func:`layer_frames` one at a time, for ``segment_frames``.

    Parameters
    ----------
    frames : iterable of (str, callable)
        ``(name, getter)`` pairs.

    Yields
    ------
    name, image
        The image, or the LayerError of a frame that cannot be read (``segment_frames``
        reports it as that frame's failure and goes on).
    """
    for name, get in frames:
        try:
            yield name, get()
        except LayerError as exc:
            yield name, exc


def descriptor_rows(labels, image=None, pixel_size=None, boxes=None) -> list[dict]:
    """The descriptors of a labels layer, as table rows.

    Parameters
    ----------
    labels : array-like
        (H, W) labels (0 background, 1 cytoplasm, 2 nucleus) or a stack (frames, H, W).
    image : array-like, optional
        The image for intensity descriptors (a stack for a labels stack); one of another
        shape gives no intensities rather than an error.
    pixel_size : float, optional
        µm per pixel, for the ``*_um2`` columns.
    boxes : list of (r0, c0, r1, c1), optional
        The rectangles the labels were segmented from: one row per box.

    Returns
    -------
    list of dict
        One row per box (``cell`` = 1, 2, ..., ``box``), per frame of a stack (``frame`` =
        0, 1, ...), or one for the whole labels array.

    Raises
    ------
    LayerError
        For labels that are neither 2D nor a stack of 2D frames.
    """
    labels = np.asarray(labels)
    if labels.ndim == 3:
        frames = None if image is None else np.asarray(image)
        if frames is not None and frames.shape[:3] != labels.shape:
            frames = None
        return [{"cell": i + 1, "frame": i,
                 **measure(labels[i], None if frames is None else frames[i], pixel_size)}
                for i in range(labels.shape[0])]
    if labels.ndim != 2:
        raise LayerError(f"labels of shape {labels.shape}: the descriptors need a 2D labels layer"
                         " or a stack of them (frames, H, W)")
    if image is not None and np.asarray(image).shape[:2] != labels.shape:
        image = None  # a mismatched image gives no intensities rather than an error
    if not boxes:
        return [{"cell": 1, **measure(labels, image, pixel_size)}]
    rows = []
    for i, (r0, c0, r1, c1) in enumerate(boxes):
        crop_img = None if image is None else np.asarray(image)[r0:r1, c0:c1]
        rows.append({"cell": i + 1, "box": f"{r0},{c0},{r1},{c1}",
                     **measure(labels[r0:r1, c0:c1], crop_img, pixel_size)})
    return rows


#: the metadata key that marks a cells layer made by "Segment all cells" (value: the nuclei layer's name)
FIELD_KEY = "cervseg_nuclei_layer"
#: the metadata key that marks a nuclei layer of "Segment all cells" (value: the cells layer's name)
NUCLEI_KEY = "cervseg_cells_layer"
#: the columns a cells layer's features carry (napari shows them when the cursor is on a cell)
FEATURE_COLUMNS = (PREDICTED_CLASS, P_ABNORMAL, "nucleus_area", "cytoplasm_area", "nc_ratio",
                   "cell_circularity")


def field_features(rows: list[dict]) -> dict:
    """napari ``features`` for instance labels: one row per cell id (``index`` = the label value,
    0 the background), so hovering a cell shows its class, p(abnormal), areas and N/C ratio."""
    features: dict = {"index": [0] + [int(r["cell_id"]) for r in rows]}
    for column in FEATURE_COLUMNS:
        blank = "background" if column == "predicted_class" else float("nan")
        values = [r.get(column) for r in rows]
        if column.endswith("_area"):  # pixel counts: 5940, not 5.94e+03 on hover
            values = [None if v is None or not np.isfinite(v) else int(round(v)) for v in values]
            blank = 0
        features[column] = [blank] + [blank if v is None else v for v in values]
    return features


def abnormal_cell_boxes(rows: list[dict]) -> tuple[list[np.ndarray], list[str]]:
    """Rectangles (napari Shapes data, corner rows / cols) around the cells called abnormal, most
    suspicious first, and their texts (``id: p(abnormal)``: short, so that labels near the image's
    edge or a neighbour's box are not cut or run into each other; the red says abnormal)."""
    chosen = by_suspicion([r for r in rows if r.get(PREDICTED_CLASS) == "abnormal"])
    boxes = [np.array([[r0, c0], [r0, c1], [r1, c1], [r1, c0]], float)
             for r0, c0, r1, c1 in (r["bbox"] for r in chosen)]
    texts = [f"{r[CELL_ID]}: {r[P_ABNORMAL]:.2f}" for r in chosen]
    return boxes, texts


def free_layer_name(base: str, existing: list[str], layer_metadata: dict | None, layer_data) -> tuple[str, bool]:
    """``(name, replace)`` for a layer the plugin writes: ``base`` itself when it is new or still
    holds what the plugin wrote (then it is replaced), else the first free ``base [n]`` (a layer the
    user painted on is never overwritten)."""
    if base not in existing:
        return base, False
    if layer_metadata is not None and layer_metadata.get(WRITTEN_KEY) == digest(layer_data):
        return base, True
    n = 2
    while f"{base} [{n}]" in existing:
        n += 1
    return f"{base} [{n}]", False


def heatmap_name_for(image_name: str, results) -> str:
    """The heatmap layer's name for the results of one run (see :func:`heatmap_layer_name`): the
    explanation method that made the heatmaps, and the class they explain (``"predicted"`` when
    the cells of one run explain different classes)."""
    done = [r for r in results if r is not None and r.heatmap is not None]
    methods = {r.explanation.method if r.explanation is not None else r.method for r in done}
    classes = {r.explained_class for r in done} - {None}
    method = methods.pop() if len(methods) == 1 else "mixed"
    explained = classes.pop() if len(classes) == 1 else ("predicted" if classes else None)
    return heatmap_layer_name(image_name, method, explained)


#: the Measure table's headers: the descriptor in words, with its unit
_HEADER_WORDS = {"cell": "cell", "cell_id": "cell", "frame": "frame", "predicted_class": "class",
                 P_ABNORMAL: "p(abnormal)", "nc_ratio": "N/C ratio", "nucleus_cell_ratio": "nucleus / cell"}
_UNITS = {"_area_um2": "µm²", "_um": "µm", "_area": "px²", "_perimeter": "px", "_diameter": "px",
          "_axis": "px", "_intensity": "0-255"}


def column_header(column: str) -> str:
    """A descriptor column's header for a table: words and unit, on two lines.

    Parameters
    ----------
    column : str
        The descriptor's name (a CSV column).

    Returns
    -------
    str

    Examples
    --------
    >>> column_header("nucleus_area")
    'nucleus area\\n(px²)'
    >>> column_header("nucleus_mean_intensity")
    'nucleus mean\\nintensity\\n(0-255)'
    >>> column_header("nucleus_area_um2")
    'nucleus area\\n(µm²)'
    >>> column_header("nc_ratio")
    'N/C ratio'
    """
    import textwrap

    if column in _HEADER_WORDS:
        return _HEADER_WORDS[column]
    words = column.removesuffix("_um2").removesuffix("_um").replace("_", " ")
    unit = next((unit for suffix, unit in _UNITS.items() if column.endswith(suffix)), None)
    # narrow columns: more rows and columns fit in a dock without scrolling sideways
    return textwrap.fill(words, 14) + (f"\n({unit})" if unit else "")


def show_left_out(viewer, name: str, centres, size: float, **geometry) -> bool:
    """``name``: hollow orange circles on the found nuclei the route left out as not cells
    (FieldResult.left_out / SlideResult.left_out), so a screener sees what was not counted. The
    plugin's own layer: redrawn, removed when there are none. Returns whether added."""
    if name in viewer.layers:
        viewer.layers.remove(name)
    if len(centres):
        viewer.add_points(np.asarray(centres, float), name=name, size=size, face_color="transparent",
                          border_color="orange", border_width=0.15, **geometry)
    return bool(len(centres))
