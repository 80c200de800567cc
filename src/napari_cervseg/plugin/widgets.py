"""napari dock widgets: Classify & explain, Segment cell, Segment all (batch), Measure cell.

Each is a magicgui :class:`~magicgui.widgets.Container` of magicgui controls, thin over functions
that also run without a viewer (``explain``, ``workflows.batch.segment_boxes`` /
``segment_frames``, ``plugin.layers.descriptor_rows``). Work runs in a napari ``thread_worker``
generator started by one helper, :meth:`.work.WorkerWidget.start`: it yields :class:`~.work.Progress` into the
progress bar, Cancel is ``worker.quit()`` (checked between cells, frames and stages), and errors
become napari notifications, never tracebacks in the user's face. The Segment widgets' method and
settings controls (:class:`~.controls.MethodControls`) are built from the settings dataclasses
(``segment.settings``), like the CLI's options.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from magicgui.widgets import ComboBox, Container, FloatSpinBox, Label, PushButton, Table

from ..classify.applicability import verdict_text
from ..explain import DEFAULT_METHOD
from ..explain import METHODS as EXPLAIN_METHODS
from ..measure.descriptors import format_value, write_rows_csv
from ..measure.records import CELL_ID, P_ABNORMAL, PREDICTED_CLASS, by_suspicion
from ..segment.settings import SegmentationError, Settings
from .controls import MethodControls, model_edit
from .docks import docked as _docked
from .layers import (
    FIELD_KEY,
    KIND_KEY,
    NUCLEI_KEY,
    WRITTEN_KEY,
    LayerError,
    abnormal_cell_boxes,
    column_header,
    descriptor_rows,
    digest,
    field_features,
    free_layer_name,
    heatmap_layer_name,
    heatmap_name_for,
    image_from_layer,
    is_plugin_heatmap,
    label_colormap,
    layer_frames,
    read_frames,
    rectangles_to_boxes,
    region_features,
    regions_layer_name,
    show_left_out,
)
from .work import Progress, WorkerWidget, _follow_layers, _notify_error, _notify_warnings, load_models_stage

if TYPE_CHECKING:
    import napari

TABLE_COLUMNS = ("cell", "nucleus_area", "cytoplasm_area", "nc_ratio", "nucleus_cell_ratio",
                 "nucleus_perimeter", "nucleus_circularity", "nucleus_eccentricity", "cell_area",
                 "cell_circularity", "cell_solidity", "nucleus_mean_intensity", "cytoplasm_mean_intensity")


#: the Measure table's columns for a field's cells layer (one row per cell, most suspicious first)
#: the Measure table's least height (px)
TABLE_MIN_HEIGHT = 320
FIELD_TABLE_COLUMNS = (CELL_ID, PREDICTED_CLASS, P_ABNORMAL, "nucleus_area", "cytoplasm_area", "nc_ratio",
                       "nucleus_circularity", "cell_area", "cell_circularity", "nucleus_mean_intensity")


def table_text(value) -> str:
    """A table cell's text: 4 significant digits without exponents for the usual ranges (a ratio
    0.0595, an area 23543); the CSV keeps full precision."""
    if isinstance(value, float) and np.isfinite(value) and value != int(value):
        return f"{value:.0f}" if abs(value) >= 1000 else f"{value:.4g}"
    return format_value(value)


def field_rows(cells_layer, nuclei_layer, image=None, pixel_size=None) -> list[dict]:
    """Per-cell descriptors of a field's (possibly corrected) cells and nuclei layers, with the
    class each cell was given, most suspicious first."""
    from ..workflows.fields import cell_rows

    classes = {int(k): v for k, v in cells_layer.metadata.get("cervseg_classes", {}).items()}
    return by_suspicion(cell_rows(np.asarray(cells_layer.data), np.asarray(nuclei_layer.data), image, pixel_size,
                                  classes))


def _layer_names(viewer, kind: str, first: tuple[str, ...] = ()):
    """Choices callable for a ComboBox: ``first`` then the names of the viewer's layers of a kind
    (the plugin's own heatmaps are not images to segment or explain)."""

    def choices(_widget=None):
        import napari

        cls = {"image": napari.layers.Image, "labels": napari.layers.Labels,
               "shapes": napari.layers.Shapes}[kind]
        return [*first, *(layer.name for layer in viewer.layers
                          if isinstance(layer, cls) and not is_plugin_heatmap(layer))]

    return choices


class ClassifyExplainWidget(WorkerWidget):
    """Classify the chosen image and add the explanation heatmap over it.

    Parameters
    ----------
    viewer : napari.viewer.Viewer
        The viewer whose image layers are offered; the heatmap layer is added to it.

    Notes
    -----
    The work is :func:`napari_cervseg.explain` (it runs without a viewer too).
    """

    def __init__(self, viewer: napari.viewer.Viewer):
        self.image_combo = ComboBox(label="image", choices=_layer_names(viewer, "image"))
        self.model_edit = model_edit()
        self.method_combo = ComboBox(label="method", choices=list(EXPLAIN_METHODS), value=DEFAULT_METHOD)
        self.target_combo = ComboBox(label="explain class", choices=["predicted", "abnormal", "normal"],
                                     value="predicted")
        super().__init__(viewer, "Classify && explain",
                         [self.image_combo, self.model_edit, self.method_combo, self.target_combo])
        self.last_explanation = None

    def run(self):
        """Explain the chosen image in a thread worker; the heatmap layer comes when it is done."""
        from ..classify.applicability import assess
        from ..explain import explain

        try:
            layer, image = self._image_layer(self.image_combo)
        except LayerError as exc:
            self.refuse(f"CervSeg: {exc}")
            return
        model, method = self.model_edit.value.strip() or "default", self.method_combo.value
        target = None if self.target_combo.value == "predicted" else self.target_combo.value

        def steps(progress):
            yield from load_models_stage(model, method)
            yield Progress("explain", 0.1)
            e = explain(model, image, method=method, target=target)
            e.extras["applicability"] = assess(model, image)  # no verdict on what is not a cell
            return e

        def done(e):
            self.last_explanation = e
            self.panel.report(Progress("done", 1.0))
            _notify_warnings(self.input_warnings)
            _show_heatmap(self.viewer, heatmap_layer_name(layer.name, method, e.target_class), e.heatmap, layer,
                          visible=True)
            self.panel.tell(f"{verdict_text(e.predicted_class, e.probability, e.extras['applicability'])};"
                            f" explained: {e.target_class}; "
                            f"{e.seconds * 1000:.0f} ms" + "".join("\n" + w for w in self.input_warnings))

        self.start(steps, returned=done)


class SegmentCellWidget(WorkerWidget):
    """Segment the chosen image (or each rectangle of a Shapes layer) into nucleus / cytoplasm.

    Parameters
    ----------
    viewer : napari.viewer.Viewer
        The viewer whose image and shapes layers are offered; the labels layer
        ``<image> regions`` (and the heatmap under it) are added to it.

    Notes
    -----
    The work is :func:`napari_cervseg.workflows.batch.segment_boxes` (the whole image is one box),
    which runs without a viewer too. Labels a user has painted on are never overwritten: a re-run
    then makes ``<image> regions [2]``.
    """

    WHOLE = "whole image"

    def __init__(self, viewer: napari.viewer.Viewer):
        self.image_combo = ComboBox(label="image", choices=_layer_names(viewer, "image"))
        self.rect_combo = ComboBox(label="cells (rectangles)", choices=_layer_names(viewer, "shapes", (self.WHOLE,)))
        self.method_controls = MethodControls()
        super().__init__(viewer, "Segment cell", [self.image_combo, self.rect_combo, *self.method_controls.widgets])
        self.last_results = []
        self.last_field = None
        # shown when the image holds several cells: one click runs Segment all cells on it
        self.field_button = PushButton(text="Segment all cells on this image", visible=False)
        self.field_button.clicked.connect(lambda *_: self.segment_all_cells())
        self.append(self.field_button)
        self._field_layer = None

    def segment_all_cells(self):
        """Run Segment all cells (its dock reused or opened) on the image this widget found to be a field."""
        if self._field_layer is None or self._field_layer not in self.viewer.layers:
            return None
        widget = _docked(self.viewer, SegmentFieldWidget, "Segment all cells (CervSeg)")
        widget.reset_choices()
        widget.image_combo.value = self._field_layer.name
        widget.run()
        return widget

    @property
    def method_combo(self) -> ComboBox:
        return self.method_controls.method_combo

    @property
    def call_combo(self) -> ComboBox:
        return self.method_controls.call_combo

    @property
    def setting_controls(self) -> dict:
        return self.method_controls.setting_controls

    def settings(self) -> Settings:
        """The chosen method's settings (see :meth:`MethodControls.settings`)."""
        return self.method_controls.settings()

    def options(self) -> dict:
        """segment_cell's arguments from the controls (see :meth:`MethodControls.options`)."""
        return self.method_controls.options()

    def run(self):
        """Segment in a thread worker; the labels layer comes when every cell is done."""
        from ..workflows.frames import paste_boxes, segment_boxes

        try:
            layer, image = self._image_layer(self.image_combo)
            boxes = None
            if self.rect_combo.value not in (None, self.WHOLE):
                shapes = self.viewer.layers[self.rect_combo.value]
                boxes = rectangles_to_boxes(shapes.data, shapes.shape_type, image.shape)
                if not boxes:
                    raise LayerError(f"shapes layer {shapes.name!r} has no rectangle inside the image;"
                                     " draw rectangles around cells, or choose 'whole image'")
            config = self.method_controls.config()
        except (LayerError, SegmentationError) as exc:
            self.refuse(f"CervSeg: {exc}")
            return
        cells = boxes or [(0, 0, image.shape[0], image.shape[1])]
        done: list = []  # (box, name, result, status) of each finished cell, kept if the run is cancelled

        def steps(progress):
            yield from load_models_stage(config.model, config.method, config.options)
            for i, (box, name, result, row) in enumerate(segment_boxes(image, cells, config, progress,
                                                                      should_stop=self.stop_requested), start=1):
                yield box, name, result, row["status"]
                yield Progress(f"{name} done" if i < len(cells) else "done", i / len(cells))

        def finished_cells():
            if not done:
                return  # cancelled before the first cell, or failed: the stage says so
            results = [result for _, _, result, _ in done]
            failed = [(name, status.removeprefix("failed: ")) for _, name, result, status in done if result is None]
            if len(failed) == len(done):
                self.panel.stopped("failed")
                _notify_error(f"CervSeg: {failed[0][1]}")
                return
            notes = [f"{name} failed: {reason}" for name, reason in failed]
            if self.cancelled:
                notes.append(f"cancelled: {len(done)} of {len(cells)} cell(s) done and shown")
            finished_boxes = [box for box, _, _, _ in done]
            labels, heatmap = paste_boxes(image.shape, finished_boxes, results)
            self.last_results = results
            self._show(layer, labels, heatmap, results, finished_boxes if boxes else None, config.method, notes)
            if boxes:  # rectangles are cells too: instance ids, per-cell classes, clean measurements
                from ..workflows.fields import field_from_boxes

                self.last_field = field_from_boxes(image, finished_boxes, results)
                names = add_field_layers(self.viewer, layer, self.last_field)
                calls = ", ".join(f"{r.cell_id}: {r.verdict} ({r.p_abnormal:.2f})"
                                  for r in self.last_field.records if r.p_abnormal is not None)
                self.panel.tell(self.panel.result.value + f"\nper cell: {calls}\ninstances in '{names['cells']}'")

        self.start(steps, yielded=done.append, finished=finished_cells)

    def _show(self, image_layer, labels, heatmap, results, boxes, method, failed):
        name = _add_regions(self.viewer, image_layer, labels, heatmap, results, boxes, method)
        done = [r for r in results if r is not None]
        first = done[0]
        found = sum(r.cell_found for r in done)
        text = (f"{len(results)} cell(s), {found} found; " if len(results) > 1 else "") + (
            f"{verdict_text(first.predicted_class, first.probability, first.applicability)}; "
            if first.predicted_class or not first.judgeable else "")
        notes = list(self.input_warnings) + sorted({w for r in done for w in r.warnings} - set(self.input_warnings))
        several = [w for w in first.warnings if "segment_field" in w] if boxes is None and len(done) == 1 else []
        self._field_layer = image_layer if several else None
        self.field_button.visible = bool(several)
        if several:
            # one verdict for a field of cells would hide the abnormal ones among them: withheld
            text = "no single verdict: this image holds several cells; "
            _notify_warnings([f"{several[0]} (or click 'Segment all cells on this image')"])
        self.panel.tell(text + f"labels in '{name}'" + "".join("\n" + n for n in notes + failed))
        _notify_warnings(self.input_warnings)


def _add_regions(viewer, image_layer, labels, heatmap, results, boxes, method) -> str:
    """Put labels (2D, or frames x H x W for a stack) in ``<image> regions``, or in a new
    ``<image> regions [n]`` when that layer holds painting; the heatmap goes under it, hidden."""
    existing = [layer.name for layer in viewer.layers]
    base = f"{image_layer.name} regions"
    old = viewer.layers[base] if base in existing else None
    name, replace = regions_layer_name(image_layer.name, existing, old.metadata if old is not None else None,
                                       old.data if old is not None else None)
    if replace and np.shape(viewer.layers[name].data) != np.shape(labels):
        name, replace = regions_layer_name(image_layer.name, existing, None, None)
    spatial = labels.ndim  # the image layer's scale has one entry per non-channel axis
    metadata = {WRITTEN_KEY: digest(labels), "cervseg_boxes": boxes, "cervseg_image": image_layer.name,
                "cervseg_summaries": [r.summary() if r is not None else None for r in results]}
    geometry = {"scale": image_layer.scale[-spatial:], "translate": image_layer.translate[-spatial:]}
    if replace:
        target = viewer.layers[name]
        target.data = labels
        target.metadata.update(metadata)
    else:
        target = viewer.add_labels(labels, name=name, opacity=0.5, metadata=metadata, **geometry)
    target.colormap = label_colormap()
    target.features = region_features()  # hovering shows "nucleus", not "2"
    if heatmap is not None and any(r is not None and r.heatmap is not None for r in results):
        _show_heatmap(viewer, heatmap_name_for(image_layer.name, results), heatmap, image_layer, visible=False)
        # keep the labels on top so the user can paint on them
        viewer.layers.move(viewer.layers.index(target), len(viewer.layers))
    viewer.layers.selection.active = target
    return name


class SegmentFieldWidget(WorkerWidget):
    """Find, segment, classify and measure every cell of the chosen image (a field of view).

    Parameters
    ----------
    viewer : napari.viewer.Viewer
        The viewer whose image layers are offered; ``<image> cells`` and ``<image> nuclei``
        labels layers (sharing ids, with per-cell ``features``: hover a cell to see its class,
        p(abnormal), areas and N/C ratio), the heatmap, and ``<image> abnormal cells`` (red boxes
        around the cells called abnormal) are added to it.

    Notes
    -----
    The work is :func:`napari_cervseg.segment_field`, which runs without a viewer too. Cancel keeps
    the cells already done. Layers the user painted on are never overwritten.
    """

    def __init__(self, viewer: napari.viewer.Viewer):
        from ..workflows.fields import DEFAULT_FINDER, FINDERS, WHITE_BALANCE_DESCRIPTION, WHITE_BALANCE_MODES

        self.image_combo = ComboBox(label="image", choices=_layer_names(viewer, "image"))
        self.finder_combo = ComboBox(label="cell finder", choices=list(FINDERS), value=DEFAULT_FINDER,
                                     tooltip="learned: the U-Net trained on composed fields (finds overlapping cells"
                                             " whole); classic: hand-set contrast rules")
        self.white_balance_combo = ComboBox(
            label="slide colour", choices=["default", *WHITE_BALANCE_MODES], value="default",
            tooltip="how each cell's crop is white-balanced before it is judged: " + WHITE_BALANCE_DESCRIPTION)
        self.method_controls = MethodControls()
        super().__init__(viewer, "Segment all cells", [self.image_combo, self.finder_combo, self.white_balance_combo,
                                                       *self.method_controls.widgets])
        self.last_result = None

    def run(self):
        """Segment every cell in a thread worker; the layers come when the field is done."""
        import threading

        from ..workflows.fields import field_model, segment_field
        from .work import Cancelled

        try:
            layer, image = self._image_layer(self.image_combo)
            options = self.method_controls.options()
        except (LayerError, SegmentationError) as exc:
            self.refuse(f"CervSeg: {exc}")
            return
        finder = self.finder_combo.value
        white_balance = None if self.white_balance_combo.value == "default" else self.white_balance_combo.value
        stop = threading.Event()

        def steps(progress):
            def report(stage, fraction):
                try:
                    progress(stage, fraction)
                except Cancelled:  # keep the cells already done: stop before the next one
                    stop.set()

            # (the field route's classifier: "default" is FIELD_MODEL there)
            yield from load_models_stage(field_model(options.get("model")), options.get("method"), options)
            yield Progress("finding cells", 0.0)
            return segment_field(image, progress=report, should_stop=stop.is_set, finder=finder,
                                 white_balance=white_balance, **options)

        self.start(steps, returned=lambda result: self._show(layer, result), keep_on_cancel=True)

    def _show(self, image_layer, result):
        self.last_result = result
        names = add_field_layers(self.viewer, image_layer, result)
        abnormal = result.abnormal_ids
        text = (f"{result.verdict()}: {result.n_cells} cell(s), {len(abnormal)} called abnormal"
                + (f" (most suspicious: cell {abnormal[0]})" if abnormal else "")
                + f"; labels in '{names['cells']}' and '{names['nuclei']}'"
                # which classifier called the cells ("default" on a field is the ensemble)
                + (f"; called by {Path(result.model).stem}" if result.model else "")
                # a slide colour outside the training images' range: the cells were judged balanced
                + ("; crops white-balanced (slide colour outside the training range)"
                   if result.white_balance.get("gains") else "")
                + (f"; {len(result.left_out)} found nucleus(es) left out as not cells (points in"
                   f" '{names['left_out']}', to look at)" if "left_out" in names else ""))
        notes = list(self.input_warnings) + [w for w in result.warnings if w not in self.input_warnings]
        self.panel.tell(text + "".join("\n" + n for n in notes))
        _notify_warnings(self.input_warnings)
        if self.cancelled or any(w.startswith("stopped after") for w in result.warnings):
            self.panel.stage.value = "cancelled: the cells done are shown"


def add_field_layers(viewer, image_layer, result) -> dict:
    """Add (or refresh) the layers of a field: ``<image> cells`` and ``<image> nuclei`` (instance
    labels with per-cell features), the heatmap, and ``<image> abnormal cells`` (boxes). Returns
    the layer names used."""
    existing = [layer.name for layer in viewer.layers]
    geometry = {"scale": image_layer.scale[-2:], "translate": image_layer.translate[-2:]}
    # a cell given no class reads "no verdict" on hover and in Measure (not blank, not "background")
    shown = [{**r.row(), PREDICTED_CLASS: r.verdict} for r in result.records]
    features = field_features(shown)
    classes = {r.cell_id: {PREDICTED_CLASS: r.verdict, P_ABNORMAL: r.p_abnormal} for r in result.records}
    # both names first: each layer names its partner from the moment it is added, so a Measure
    # widget that takes the first one never reads instance ids as 0/1/2 labels
    names, replace = {}, {}
    for kind in ("nuclei", "cells"):
        base = f"{image_layer.name} {kind}"
        old = viewer.layers[base] if base in existing else None
        names[kind], replace[kind] = free_layer_name(base, existing, None if old is None else old.metadata,
                                                     None if old is None else old.data)
    for kind, data in (("nuclei", result.nuclei), ("cells", result.cells)):
        name = names[kind]
        metadata = {WRITTEN_KEY: digest(data), "cervseg_image": image_layer.name, "cervseg_classes": classes,
                    "cervseg_summary": result.summary()}
        metadata[FIELD_KEY if kind == "cells" else NUCLEI_KEY] = names["nuclei" if kind == "cells" else "cells"]
        if replace[kind]:
            target = viewer.layers[name]
            target.metadata.update(metadata)
            target.data = data
        else:
            target = viewer.add_labels(data, name=name, opacity=0.35 if kind == "cells" else 0.6,
                                       metadata=metadata, **geometry)
        target.features = features
    if result.heatmap is not None and result.heatmap.any():
        explained = {r.explained_class for r in result.records} - {None}
        hname = heatmap_layer_name(image_layer.name, result.settings.get("explain_method") or result.method,
                                   explained.pop() if len(explained) == 1 else "predicted")
        _show_heatmap(viewer, hname, result.heatmap, image_layer, visible=False)
    _show_outlines(viewer, image_layer, result, geometry)
    if _show_abnormal_boxes(viewer, image_layer.name, result.table, geometry):
        names["abnormal"] = f"{image_layer.name} abnormal cells"
    if show_left_out(viewer, f"{image_layer.name} left out", result.left_out, size=14, **geometry):
        names["left_out"] = f"{image_layer.name} left out"
    _follow_field_edits(viewer, viewer.layers[names["cells"]], viewer.layers[names["nuclei"]], image_layer.name,
                        classes, geometry)
    viewer.layers.selection.active = viewer.layers[names["cells"]]
    return names


def _show_abnormal_boxes(viewer, image_name: str, rows: list[dict], geometry) -> bool:
    """``<image> abnormal cells``: the plugin's own marks, redrawn from ``rows`` (none: removed)."""
    boxes, texts = abnormal_cell_boxes(rows)
    bname = f"{image_name} abnormal cells"
    if bname in viewer.layers:
        viewer.layers.remove(bname)
    if boxes:
        viewer.add_shapes(boxes, shape_type="rectangle", name=bname, edge_color="red", face_color="transparent",
                          edge_width=3, features={"label": texts},
                          text={"string": "{label}", "color": "red", "anchor": "upper_left", "size": 9},
                          **geometry)
    return bool(boxes)


def _follow_field_edits(viewer, cells_layer, nuclei_layer, image_name: str, classes: dict, geometry) -> None:
    """One source of truth after a hand edit: the cells / nuclei layers' data. Their hover
    features, the abnormal boxes and the outlines are measured again from it (a deleted cell's
    box and outline go; a painted nucleus shows its new area)."""
    from ..workflows.fields import cell_rows

    state = {"digest": (digest(cells_layer.data), digest(nuclei_layer.data))}

    def edited(*_):
        now = (digest(cells_layer.data), digest(nuclei_layer.data))
        if now == state["digest"] or cells_layer not in viewer.layers or nuclei_layer not in viewer.layers:
            return
        state["digest"] = now
        image = None
        if image_name in viewer.layers:
            with contextlib.suppress(LayerError, ValueError):
                layer = viewer.layers[image_name]
                image = image_from_layer(image_name, layer.data, layer.rgb)
        rows = cell_rows(np.asarray(cells_layer.data), np.asarray(nuclei_layer.data), image, None,
                         dict(classes))
        features = field_features(rows)
        cells_layer.features = features
        nuclei_layer.features = features
        _show_abnormal_boxes(viewer, image_name, rows, geometry)
        oname = f"{image_name} cell outlines"
        if oname in viewer.layers:  # outlines of cells that are gone go too
            outlines = viewer.layers[oname]
            ids = {int(r["cell_id"]) for r in rows}
            gone = [i for i, k in enumerate(outlines.features["cell_id"]) if int(k) not in ids]
            if gone:
                outlines.selected_data = set(gone)
                outlines.remove_selected()

    for layer in (cells_layer, nuclei_layer):
        for name in ("paint", "data", "set_data", "labels_update"):
            emitter = getattr(layer.events, name, None)
            if emitter is not None:
                emitter.connect(edited)


#: outline colours by verdict
OUTLINE_COLOURS = {"abnormal": "red", "normal": "cyan", None: "yellow"}


def _show_outlines(viewer, image_layer, result, geometry) -> None:
    """``<image> cell outlines``: each cell's full extent as a polygon (overlaps shown), coloured by
    verdict (red abnormal, cyan normal, yellow no verdict). The plugin's own layer: redrawn."""
    name = f"{image_layer.name} cell outlines"
    if name in viewer.layers:
        viewer.layers.remove(name)
    outlines = result.outlines()
    records = [r for r in result.records if len(outlines.get(r.cell_id, ())) >= 3]
    if not records:
        return
    # closed paths, not polygons: napari triangulates a polygon's face even when it is transparent,
    # and that fails on some real cells' outlines (a real field's extent crashed the layer)
    rings = [np.vstack([outlines[r.cell_id], outlines[r.cell_id][:1]]) for r in records]
    viewer.add_shapes(rings, shape_type="path", name=name,
                      edge_color=[OUTLINE_COLOURS.get(r.predicted_class, "yellow") for r in records],
                      face_color="transparent", edge_width=2, opacity=0.8,
                      features={"cell_id": [r.cell_id for r in records], "class": [r.verdict for r in records]},
                      **geometry)


class BatchSegmentWidget(WorkerWidget):
    """Segment every image layer, or every frame of a stack, with one model, method and settings.

    Parameters
    ----------
    viewer : napari.viewer.Viewer
        The viewer whose image layers are segmented; one labels layer per image layer (a stack
        of labels for a stack) is added to it.

    Notes
    -----
    The same engine as ``cervseg segment`` (:func:`napari_cervseg.workflows.batch.segment_frames`):
    a frame that fails is reported and the others go on; Cancel keeps (and shows) what finished.
    """

    ALL = "all image layers"

    def __init__(self, viewer: napari.viewer.Viewer):
        self.scope_combo = ComboBox(label="images", choices=_layer_names(viewer, "image", (self.ALL,)))
        self.method_controls = MethodControls()
        super().__init__(viewer, "Segment all", [self.scope_combo, *self.method_controls.widgets])
        self.rows: list[dict] = []
        self.frame_warnings: dict[str, list[str]] = {}

    @property
    def method_combo(self) -> ComboBox:
        return self.method_controls.method_combo

    def targets(self):
        """The chosen image layers with their frames: ``[(layer, [(name, getter), ...])]``."""
        import napari

        if self.scope_combo.value in (None, self.ALL):
            layers = [ly for ly in self.viewer.layers
                      if isinstance(ly, napari.layers.Image) and not is_plugin_heatmap(ly)]
        else:
            layers = [self.viewer.layers[self.scope_combo.value]]
        if not layers:
            raise LayerError("no image layer to segment: open images (File > Open) first")
        self.frame_warnings: dict[str, list[str]] = {}
        return [(layer, layer_frames(layer.name, layer.data, layer.rgb, self.frame_warnings)) for layer in layers]

    def run(self):
        """Segment every frame in a thread worker; each finished frame is kept as it comes."""
        from ..workflows.frames import segment_frames

        try:
            targets = self.targets()
            config = self.method_controls.config()
        except (LayerError, SegmentationError) as exc:
            self.refuse(f"CervSeg: {exc}")
            return
        frames = [frame for _, layer_frames_ in targets for frame in layer_frames_]
        done: list = []

        def steps(progress):
            yield from load_models_stage(config.model, config.method, config.options)
            yield from segment_frames(read_frames(frames), config, progress=progress, total=len(frames),
                                      should_stop=self.stop_requested)

        self.start(steps, yielded=done.append,
                   finished=lambda: self._show_all(targets, done, config.method, self.cancelled))

    def _show_all(self, targets, done, method, cancelled):
        by_name = {name: (result, row) for name, result, row in done}
        self.rows, made, failed = [], [], []
        for layer, frames in targets:
            results = [by_name.get(name, (None, None))[0] for name, _ in frames]
            if not any(r is not None for r in results):
                failed += [name for name, _ in frames if name in by_name]
                continue
            shape = next(r.labels.shape for r in results if r is not None)
            labels = np.zeros((len(frames), *shape), np.uint8)
            heat = np.zeros((len(frames), *shape), np.float32)
            for i, r in enumerate(results):
                if r is not None and r.labels.shape == shape:
                    labels[i] = r.labels
                    if r.heatmap is not None:
                        heat[i] = r.heatmap
            if len(frames) == 1:
                labels, heat = labels[0], heat[0]
            made.append(_add_regions(self.viewer, layer, labels, heat, results, None, method))
            failed += [name for name, _ in frames if name in by_name and by_name[name][0] is None]
        for name, _, row in done:
            self.rows.append({"layer": name, **row})
        text = (f"{sum(r is not None for _, r, _ in done)} of {sum(len(f) for _, f in targets)} image(s)"
                f" segmented into {len(made)} layer(s)")
        if cancelled:
            text += " (cancelled: the rest were not run)"
        if failed:
            reasons = [by_name[n][1].get("status", "") for n in failed]
            text += "".join(f"\n{n} failed: {r.removeprefix('failed: ')}"
                            for n, r in zip(failed, reasons, strict=False))
        notes = [f"{name}: {w}" for name, result, _ in done
                 for w in dict.fromkeys(self.frame_warnings.get(name, []) + (result.warnings if result else []))]
        if notes:  # the first few in the text, every one as a notification
            text += "".join("\n" + n for n in notes[:5]) + (f"\n... {len(notes) - 5} more" if len(notes) > 5 else "")
            _notify_warnings(notes)
        self.panel.tell(text)


def _show_heatmap(viewer, name, heatmap, image_layer, visible: bool):
    """Update the heatmap layer of that name, or add it over the image (turbo, 50 % opacity),
    marked as the plugin's heatmap (metadata) so that no dropdown or batch takes it for an image."""
    spatial = np.ndim(heatmap)
    if name in viewer.layers:
        viewer.layers[name].data = heatmap
    else:
        viewer.add_image(heatmap, name=name, colormap="turbo", opacity=0.5, blending="translucent",
                         visible=visible, contrast_limits=(0, 1), scale=image_layer.scale[-spatial:],
                         translate=image_layer.translate[-spatial:],
                         metadata={KIND_KEY: "heatmap", "cervseg_image": image_layer.name})


class MeasureCellWidget(Container):
    """Descriptors of a labels layer, recomputed whenever the user paints; exportable as CSV.

    Parameters
    ----------
    viewer : napari.viewer.Viewer
        The viewer whose labels (and image, for intensities) layers are offered.

    Notes
    -----
    The rows are :func:`napari_cervseg.plugin.layers.descriptor_rows` (viewer-free): one per
    rectangle the labels were segmented from, per stack frame, or one for the whole layer.
    """

    def __init__(self, viewer: napari.viewer.Viewer):
        self.viewer = viewer
        self.labels_combo = ComboBox(label="labels", choices=_layer_names(viewer, "labels"))
        self.image_combo = ComboBox(label="image (intensities)", choices=_layer_names(viewer, "image", ("none",)))
        self.pixel_size = FloatSpinBox(label="pixel size (µm/px)", value=0.0, min=0.0, max=1000.0, step=0.0001,
                                       tooltip="0: from the labels layer's scale, or none (pixel units)")
        self.table = Table(value={"data": [], "index": [], "columns": list(TABLE_COLUMNS)})
        self.table.read_only = True
        self.table.native.setMinimumHeight(TABLE_MIN_HEIGHT)  # a dozen cells in view, not three
        from qtpy.QtWidgets import QStyledItemDelegate

        # the cells' own text (table_text), not magicgui's reformatting (0.0595 shown as 5.951e-02)
        self.table.native.setItemDelegate(QStyledItemDelegate(self.table.native))
        self.table.native.setSelectionBehavior(self.table.native.SelectionBehavior.SelectRows)
        self.recompute_button = PushButton(text="Recompute",
                                           tooltip="measure the labels again (edits are followed as they happen)")
        self.export_button = PushButton(text="Export CSV")
        buttons = Container(widgets=[self.recompute_button, self.export_button], layout="horizontal", labels=False)
        buttons.margins = (0, 0, 0, 0)
        self.status = Label(value="")
        super().__init__(widgets=[self.labels_combo, self.image_combo, self.pixel_size, self.table,
                                  buttons, self.status])
        self.rows: list[dict] = []
        self._watched = None
        self._nuclei = None
        self._measured = None  # digest of the data last measured: a refresh without an edit measures nothing
        self.table.native.cellClicked.connect(lambda row, _col: self.go_to_row(row))
        self.recompute_button.clicked.connect(lambda *_: self.recompute())
        self.labels_combo.changed.connect(self._watch)
        self.image_combo.changed.connect(self.recompute)
        self.pixel_size.changed.connect(self.recompute)
        self.export_button.clicked.connect(self._export_dialog)
        _follow_layers(self, viewer)
        # a field's partner layer arriving (or the chosen layer re-added) is measured at once
        viewer.layers.events.inserted.connect(self._partner_added)
        self._watch()

    def _partner_added(self, event):
        chosen = self.labels_combo.value
        if chosen in self.viewer.layers:
            meta = self.viewer.layers[chosen].metadata
            if event.value.name in (meta.get(FIELD_KEY), meta.get(NUCLEI_KEY)) or self._watched is None:
                with contextlib.suppress(RuntimeError):  # the widget was closed
                    self._watch()

    def _edit_events(self):
        """The events by which the watched cells/labels and nuclei layers report an edit."""
        for watched in (self._watched, self._nuclei):
            if watched is not None:
                # set_data: what layer.refresh() emits after an edit from the console
                for ev in ("paint", "data", "labels_update", "set_data"):
                    emitter = getattr(watched.events, ev, None)
                    if emitter is not None:
                        yield emitter

    def _watch(self, *_):
        for emitter in self._edit_events():
            emitter.disconnect(self._edited)
        name = self.labels_combo.value
        self._watched = self.viewer.layers[name] if name and name in self.viewer.layers else None
        cells_name = self._watched.metadata.get(NUCLEI_KEY) if self._watched is not None else None
        if cells_name in self.viewer.layers:  # a field's nuclei layer: measured with its cells layer
            self._watched = self.viewer.layers[cells_name]
        elif cells_name:  # its cells layer is not open (not yet, or removed): nothing to measure alone
            self._watched = self._nuclei = None
            self._fill_table(rows=[])
            self.status.value = (f"'{name}' holds the nuclei of a field; its cells layer '{cells_name}' is not"
                                 " open: measured once it is (or choose a cells or regions layer)")
            return
        # a cells layer of "Segment all cells": measured cell by cell with its nuclei layer
        nuclei_name = self._watched.metadata.get(FIELD_KEY) if self._watched is not None else None
        self._nuclei = self.viewer.layers[nuclei_name] if nuclei_name in self.viewer.layers else None  # noqa: SIM401
        if nuclei_name and self._nuclei is None:  # instance ids, not 0/1/2: wait for the nuclei layer
            self._watched = None
            self._fill_table(rows=[])
            self.status.value = (f"'{name}' holds a field's cells; its nuclei layer '{nuclei_name}' is not open:"
                                 " measured once it is")
            return
        for emitter in self._edit_events():
            emitter.connect(self._edited)
        if self._watched is not None:
            source = self._watched.metadata.get("cervseg_image")
            if source and source in self.image_combo.choices:
                self.image_combo.value = source
        self.recompute()

    def _data_digest(self):
        return tuple(digest(layer.data) for layer in (self._watched, self._nuclei) if layer is not None)

    def _edited(self, *_):
        """An edit event: measure again if the data changed (a refresh also fires on a mere redraw)."""
        if self._data_digest() != self._measured:
            self.recompute()

    def effective_pixel_size(self):
        """The pixel size in µm: the control's, else the labels layer's (isotropic) scale, else None."""
        if self.pixel_size.value > 0:
            return float(self.pixel_size.value)
        if self._watched is not None:
            sy, sx = (float(s) for s in self._watched.scale[-2:])
            if sy == sx and sy != 1.0:
                return sy
        return None

    def recompute(self, *_):
        """Measure the watched labels layer again and refill the table."""
        layer = self._watched
        self._measured = self._data_digest()
        if layer is None:
            self.rows = []
            self._fill_table()
            return
        try:
            image = None
            if self.image_combo.value not in (None, "none") and self.image_combo.value in self.viewer.layers:
                image_layer = self.viewer.layers[self.image_combo.value]
                if np.ndim(layer.data) == 3 and np.ndim(image_layer.data) - image_layer.rgb == 3:
                    image = np.asarray(image_layer.data)  # a stack: measured frame by frame
                else:
                    image = image_from_layer(image_layer.name, image_layer.data, image_layer.rgb)
            if self._nuclei is not None:
                self.rows = field_rows(layer, self._nuclei, image, self.effective_pixel_size())
            else:
                self.rows = descriptor_rows(layer.data, image, self.effective_pixel_size(),
                                            layer.metadata.get("cervseg_boxes"))
            self.status.value = f"{len(self.rows)} cell(s) from '{layer.name}'" + (
                ", most suspicious first; click a row to go to the cell" if self._nuclei is not None else "")
        except (LayerError, ValueError) as exc:
            self.rows = []
            self.status.value = str(exc)
            _notify_error(f"CervSeg: {exc}")
        self._fill_table()

    def go_to_row(self, index: int) -> None:
        """Show the row's cell: a field's cell is selected in the cells layer and centred; a
        rectangle's cell is centred; a stack's row goes to its frame."""
        if not 0 <= index < len(self.rows) or self._watched is None:
            return
        row, layer = self.rows[index], self._watched
        scale, translate = np.asarray(layer.scale[-2:]), np.asarray(layer.translate[-2:])
        if "centroid" in row:
            centre = np.asarray(row["centroid"], float)
            if "cell_id" in row:
                layer.selected_label = int(row["cell_id"])
        elif "box" in row:
            r0, c0, r1, c1 = (int(v) for v in str(row["box"]).split(","))
            centre = np.array([(r0 + r1) / 2, (c0 + c1) / 2])
        elif "frame" in row:
            self.viewer.dims.set_current_step(0, int(row["frame"]))
            centre = None
        else:
            return
        if centre is not None:
            camera = self.viewer.scene.camera if hasattr(self.viewer, "scene") else self.viewer.camera  # napari 0.9
            camera.center = tuple(centre * scale + translate)
        self.viewer.layers.selection.active = layer

    def columns(self) -> list[str]:
        """The table's columns (the CSV has every descriptor)."""
        if self.rows and "cell_id" in self.rows[0]:
            return [c for c in FIELD_TABLE_COLUMNS if c in self.rows[0]]
        cols = list(TABLE_COLUMNS)
        if self.rows and "frame" in self.rows[0]:
            cols.insert(1, "frame")
        if self.rows and "nucleus_area_um2" in self.rows[0]:
            cols[1:1] = ["nucleus_area_um2", "cytoplasm_area_um2"]
        return [c for c in cols if not self.rows or c in self.rows[0]]

    def _fill_table(self, rows: list | None = None):
        if rows is not None:
            self.rows = rows
        cols = self.columns()
        self.table.value = {"data": [[table_text(row.get(c)) for c in cols] for row in self.rows],
                            "index": list(range(1, len(self.rows) + 1)), "columns": [column_header(c) for c in cols]}
        for i, col in enumerate(cols):  # the descriptor's CSV name, for the curious
            self.table.native.horizontalHeaderItem(i).setToolTip(col)
        self.table.native.resizeColumnsToContents()

    def export_csv(self, path) -> Path:
        """Write every descriptor of the table's rows (the table shows a subset of the columns)."""
        path = write_rows_csv(path, self.rows)
        self.status.value = f"exported {len(self.rows)} row(s) to {path}"
        return path

    def _export_dialog(self, *_):
        from qtpy.QtWidgets import QFileDialog

        path, _ = QFileDialog.getSaveFileName(self.native, "Export descriptors", "descriptors.csv", "CSV (*.csv)")
        if path:
            self.export_csv(path)


__all__ = ["ClassifyExplainWidget", "SegmentCellWidget", "SegmentFieldWidget", "BatchSegmentWidget",
           "MeasureCellWidget", "add_field_layers"]
