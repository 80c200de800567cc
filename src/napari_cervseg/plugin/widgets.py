"""napari dock widgets: Classify & explain, Segment cell, Segment all (batch), Measure cell.

Thin on purpose: every computation is a core call (``segment_cell``, ``explain``, ``measure``)
run in a napari thread worker; the widgets only pick layers and options, show progress, and
add layers. Errors become napari notifications, never tracebacks in the user's face.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
from magicgui.widgets import ComboBox
from qtpy.QtCore import QObject, Signal
from qtpy.QtWidgets import (
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ..explain import METHODS as EXPLAIN_METHODS
from ..measure.descriptors import format_value, write_rows_csv
from ..segment.grouping import GROUPINGS
from ..segment.inpaint import INPAINTERS
from ..segment.settings import SEGMENT_METHODS
from .layers import (
    WRITTEN_KEY,
    LayerError,
    descriptor_rows,
    digest,
    heatmap_layer_name,
    image_from_layer,
    label_colormap,
    layer_frames,
    rectangles_to_boxes,
    regions_layer_name,
    segment_boxes,
)

TABLE_COLUMNS = ("cell", "nucleus_area", "cytoplasm_area", "nc_ratio", "nucleus_cell_ratio",
                 "nucleus_perimeter", "nucleus_circularity", "nucleus_eccentricity", "cell_area",
                 "cell_circularity", "cell_solidity", "nucleus_mean_intensity", "cytoplasm_mean_intensity")


class Cancelled(Exception):
    """Raised from the progress callback when the user pressed Cancel."""


class _Bridge(QObject):
    progress = Signal(str, float)


def _notify_error(message: str) -> None:
    from napari.utils.notifications import show_error

    show_error(message)


def _notify_info(message: str) -> None:
    from napari.utils.notifications import show_info

    show_info(message)


def _layer_choices(viewer, kind):
    import napari

    cls = {"image": napari.layers.Image, "labels": napari.layers.Labels, "shapes": napari.layers.Shapes}[kind]

    def choices(_widget=None):
        return [layer.name for layer in viewer.layers if isinstance(layer, cls)]

    return choices


class _RunPanel(QWidget):
    """A run button, a progress bar with the current stage, and a cancel button."""

    def __init__(self, label: str, parent=None):
        super().__init__(parent)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.run_button = QPushButton(label)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        layout.addWidget(self.run_button)
        layout.addWidget(self.cancel_button)
        self.bar = QProgressBar()
        self.bar.setRange(0, 100)
        self.bar.setFormat("%p%")
        self.stage = QLabel("")

    def busy(self, on: bool):
        self.run_button.setEnabled(not on)
        self.cancel_button.setEnabled(on)
        if on:
            self.bar.setValue(0)


class _WorkerWidget(QWidget):
    """Common plumbing: run a function in a thread worker with progress and cancel."""

    def __init__(self, viewer, run_label: str):
        super().__init__()
        self.viewer = viewer
        self.form = QFormLayout()
        self.panel = _RunPanel(run_label)
        self.result_label = QLabel("")
        self.result_label.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.addLayout(self.form)
        layout.addWidget(self.panel)
        layout.addWidget(self.panel.bar)
        layout.addWidget(self.panel.stage)
        layout.addWidget(self.result_label)
        layout.addStretch(1)
        self._cancel = threading.Event()
        self._bridge = _Bridge()
        self._bridge.progress.connect(self._on_progress)
        self.worker = None
        self.panel.run_button.clicked.connect(self.run)
        self.panel.cancel_button.clicked.connect(self.cancel)

    def _on_progress(self, stage: str, fraction: float):
        self.panel.bar.setValue(int(round(100 * fraction)))
        self.panel.stage.setText(stage)

    def _progress_callback(self):
        cancel, bridge = self._cancel, self._bridge

        def progress(stage, fraction):
            if cancel.is_set():
                raise Cancelled()
            bridge.progress.emit(stage, float(fraction))

        return progress

    def cancel(self):
        self._cancel.set()
        self.panel.stage.setText("cancelling...")

    def _start(self, func, on_done):
        from napari.qt.threading import create_worker

        self._cancel.clear()
        self.panel.busy(True)
        # errors are ours to report (as notifications): no default traceback handler
        worker = create_worker(func, _start_thread=False, _ignore_errors=True)
        worker.returned.connect(on_done)
        worker.errored.connect(self._on_error)
        worker.finished.connect(lambda: self.panel.busy(False))
        self.worker = worker
        worker.start()
        return worker

    def _on_error(self, exc):
        if isinstance(exc, Cancelled):
            self.panel.stage.setText("cancelled")
            _notify_info("CervSeg: run cancelled")
            return
        self.panel.stage.setText("failed")
        _notify_error(f"CervSeg: {exc}")

    def _combo(self, label: str, choices, value=None) -> ComboBox:
        combo = ComboBox(choices=choices) if value is None else ComboBox(choices=choices, value=value)
        self.form.addRow(label, combo.native)
        return combo

    def _image_layer(self, combo: ComboBox):
        import napari

        name = combo.value
        if not name or name not in self.viewer.layers:
            raise LayerError("no image layer chosen: open an image (File > Open or File > Open Sample)")
        layer = self.viewer.layers[name]
        if not isinstance(layer, napari.layers.Image):
            raise LayerError(f"layer {name!r} is a {type(layer).__name__} layer; choose an image layer")
        return layer, image_from_layer(name, layer.data, layer.rgb)

    def _refresh_on_layer_change(self, *combos):
        def refresh(*_):
            for combo in combos:
                combo.reset_choices()

        self.viewer.layers.events.inserted.connect(refresh)
        self.viewer.layers.events.removed.connect(refresh)


MODEL_TIP = ("'default' (bundled), or the path of a .safetensors model (with its .json card) or of a Keras"
             " .keras / .h5 model (needs the keras extra)")


class ClassifyExplainWidget(_WorkerWidget):
    """Classify the chosen image and add the explanation heatmap over it."""

    def __init__(self, napari_viewer):
        super().__init__(napari_viewer, "Classify && explain")
        self.image_combo = self._combo("image", _layer_choices(napari_viewer, "image"))
        self.model_edit = QLineEdit("default")
        self.model_edit.setToolTip(MODEL_TIP)
        self.form.addRow("model", self.model_edit)
        self.method_combo = self._combo("method", list(EXPLAIN_METHODS), "gradcam++")
        self.target_combo = self._combo("explain class", ["predicted", "abnormal", "normal"], "predicted")
        self._refresh_on_layer_change(self.image_combo)

    def run(self):
        from ..explain import explain

        try:
            layer, image = self._image_layer(self.image_combo)
        except LayerError as exc:
            _notify_error(f"CervSeg: {exc}")
            return
        model, method = self.model_edit.text().strip() or "default", self.method_combo.value
        target = None if self.target_combo.value == "predicted" else self.target_combo.value
        progress = self._progress_callback()

        def work():
            progress("explain", 0.1)
            e = explain(model, image, method=method, target=target)
            progress("done", 1.0)
            return e

        def done(e):
            name = heatmap_layer_name(layer.name, method)
            _show_heatmap(self.viewer, name, e.heatmap, layer, visible=True)
            self.result_label.setText(
                f"{e.predicted_class} (p = {e.probability:.2f}); explained: {e.target_class}; "
                f"{e.seconds * 1000:.0f} ms")

        self._start(work, done)


#: the Segment widget's "call abnormal at" choices -> segment_cell's operating_point
CALL_CHOICES = {"most probable class": None, "screening point": "screening"}


class SegmentCellWidget(_WorkerWidget):
    """Segment the chosen image (or each rectangle of a Shapes layer) into nucleus / cytoplasm."""

    def __init__(self, napari_viewer):
        super().__init__(napari_viewer, "Segment cell")
        self.image_combo = self._combo("image", _layer_choices(napari_viewer, "image"))
        self.rect_combo = self._combo("cells (rectangles)", lambda _w=None: ["whole image"] + _layer_choices(
            napari_viewer, "shapes")())
        self.model_edit = QLineEdit("default")
        self.model_edit.setToolTip(MODEL_TIP)
        self.form.addRow("model", self.model_edit)
        self.method_combo = self._combo("method", list(SEGMENT_METHODS), "gradcam++")
        self.grouping_combo = self._combo("grouping", ["auto"] + list(GROUPINGS), "auto")
        self.nuc_iter = QSpinBox()
        self.nuc_iter.setRange(0, 50)
        self.nuc_iter.setValue(5)
        self.cyto_iter = QSpinBox()
        self.cyto_iter.setRange(0, 50)
        self.cyto_iter.setValue(5)
        self.form.addRow("GrabCut iterations, nucleus", self.nuc_iter)
        self.form.addRow("GrabCut iterations, cytoplasm", self.cyto_iter)
        self.inpainter_combo = self._combo("inpainter (LRP)", list(INPAINTERS), "auto")
        # screening: the model card's threshold on p(abnormal), chosen for a high abnormal recall
        self.call_combo = self._combo("call abnormal at", list(CALL_CHOICES), "most probable class")
        self._refresh_on_layer_change(self.image_combo, self.rect_combo)
        self.last_results = []

    def options(self) -> dict:
        method = self.method_combo.value
        opts = {"model": self.model_edit.text().strip() or "default", "method": method,
                "nucleus_iterations": self.nuc_iter.value(), "cytoplasm_iterations": self.cyto_iter.value()}
        if self.grouping_combo.value != "auto":
            opts["grouping"] = self.grouping_combo.value
        if method == "self-trained":  # the U-Net needs no GrabCut settings
            opts.pop("nucleus_iterations")
            opts.pop("cytoplasm_iterations")
        if method.startswith("lrp"):
            opts["inpainter"] = self.inpainter_combo.value
        if CALL_CHOICES[self.call_combo.value] is not None:
            opts["operating_point"] = CALL_CHOICES[self.call_combo.value]
        if method == "colour-baseline":
            opts.pop("model")
            opts["model"] = None
            opts.pop("operating_point", None)
        return opts

    def run(self):
        try:
            layer, image = self._image_layer(self.image_combo)
            boxes = None
            if self.rect_combo.value not in (None, "whole image"):
                shapes = self.viewer.layers[self.rect_combo.value]
                boxes = rectangles_to_boxes(shapes.data, shapes.shape_type, image.shape)
                if not boxes:
                    raise LayerError(f"shapes layer {shapes.name!r} has no rectangle inside the image;"
                                     " draw rectangles around cells, or choose 'whole image'")
        except LayerError as exc:
            _notify_error(f"CervSeg: {exc}")
            return
        options = self.options()
        progress = self._progress_callback()
        whole = [(0, 0, image.shape[0], image.shape[1])]

        def work():
            return segment_boxes(image, boxes or whole, progress=progress, **options)

        def done(out):
            labels, heatmap, results = out
            self.last_results = results
            self._show(layer, labels, heatmap, results, boxes, options["method"])

        self._start(work, done)

    def _show(self, image_layer, labels, heatmap, results, boxes, method):
        name = _add_regions(self.viewer, image_layer, labels, heatmap, results, boxes, method)
        first = results[0]
        found = sum(r.cell_found for r in results)
        text = (f"{len(results)} cell(s), {found} found; " if len(results) > 1 else "") + (
            f"{first.predicted_class} (p = {first.probability:.2f}); " if first.predicted_class else "")
        warnings = sorted({w for r in results for w in r.warnings})
        self.result_label.setText(text + f"labels in '{name}'" + ("\n" + "\n".join(warnings) if warnings else ""))


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
    _set_label_colours(target)
    if heatmap is not None and any(r is not None and r.heatmap is not None for r in results):
        hname = heatmap_layer_name(image_layer.name, method)
        if hname in viewer.layers:
            viewer.layers[hname].data = heatmap
        else:
            viewer.add_image(heatmap, name=hname, colormap="turbo", opacity=0.5, blending="translucent",
                             visible=False, contrast_limits=(0, 1), **geometry)
        # keep the labels on top so the user can paint on them
        viewer.layers.move(viewer.layers.index(target), len(viewer.layers))
    viewer.layers.selection.active = target
    return name


class BatchSegmentWidget(_WorkerWidget):
    """Segment every image layer, or every frame of a stack, with one model and method.

    The same engine as ``cervseg segment`` (``core.batch.segment_frames``): a frame that fails is
    reported and the others go on; Cancel keeps (and shows) what finished.
    """

    ALL = "all image layers"

    def __init__(self, napari_viewer):
        super().__init__(napari_viewer, "Segment all")
        self.scope_combo = self._combo("images", lambda _w=None: [self.ALL] + _layer_choices(
            napari_viewer, "image")())
        self.model_edit = QLineEdit("default")
        self.model_edit.setToolTip(MODEL_TIP)
        self.form.addRow("model", self.model_edit)
        self.method_combo = self._combo("method", list(SEGMENT_METHODS), "gradcam++")
        self._refresh_on_layer_change(self.scope_combo)
        self.rows: list[dict] = []

    def targets(self):
        """The chosen image layers with their frames: ``[(layer, [(name, getter), ...])]``."""
        import napari

        if self.scope_combo.value in (None, self.ALL):
            layers = [ly for ly in self.viewer.layers if isinstance(ly, napari.layers.Image)]
        else:
            layers = [self.viewer.layers[self.scope_combo.value]]
        if not layers:
            raise LayerError("no image layer to segment: open images (File > Open) first")
        return [(layer, layer_frames(layer.name, layer.data, layer.rgb)) for layer in layers]

    def run(self):
        from ..workflows.batch import BatchConfig, segment_frames

        try:
            targets = self.targets()
        except LayerError as exc:
            _notify_error(f"CervSeg: {exc}")
            return
        method = self.method_combo.value
        model = None if method == "colour-baseline" else (self.model_edit.text().strip() or "default")
        config = BatchConfig(model=model, method=method)
        progress = self._progress_callback()
        total = sum(len(frames) for _, frames in targets)

        def frames():
            for _, layer_frames_ in targets:
                for name, get in layer_frames_:
                    try:
                        yield name, get()
                    except LayerError as exc:
                        yield name, exc  # segment_frames reports it as that frame's failure

        def work():
            done, cancelled = [], False
            try:
                for out in segment_frames(frames(), config, progress=progress, total=total):
                    done.append(out)
            except Cancelled:
                cancelled = True
            return done, cancelled

        def finished(out):
            done, cancelled = out
            self._show_all(targets, done, method, cancelled)

        self._start(work, finished)

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
            text += "\nfailed: " + "; ".join(f"{n}: {r}" for n, r in zip(failed, reasons, strict=False))
        self.result_label.setText(text)


def _show_heatmap(viewer, name, heatmap, image_layer, visible: bool):
    """Update the heatmap layer of that name, or add it over the image (turbo, 50 % opacity)."""
    if name in viewer.layers:
        viewer.layers[name].data = heatmap
    else:
        viewer.add_image(heatmap, name=name, colormap="turbo", opacity=0.5, blending="translucent",
                         visible=visible, contrast_limits=(0, 1), scale=image_layer.scale[-2:],
                         translate=image_layer.translate[-2:])


def _set_label_colours(layer):
    layer.colormap = label_colormap()


class MeasureCellWidget(QWidget):
    """Descriptors of a labels layer, recomputed whenever the user paints; exportable as CSV."""

    def __init__(self, napari_viewer):
        super().__init__()
        self.viewer = napari_viewer
        form = QFormLayout()
        self.labels_combo = ComboBox(choices=_layer_choices(napari_viewer, "labels"))
        self.image_combo = ComboBox(choices=lambda _w=None: ["none"] + _layer_choices(napari_viewer, "image")())
        self.pixel_size = QDoubleSpinBox()
        self.pixel_size.setDecimals(4)
        self.pixel_size.setRange(0.0, 1000.0)
        self.pixel_size.setSpecialValueText("from layer scale / none")
        self.pixel_size.setSuffix(" µm/px")
        form.addRow("labels", self.labels_combo.native)
        form.addRow("image (intensities)", self.image_combo.native)
        form.addRow("pixel size", self.pixel_size)
        self.table = QTableWidget()
        self.export_button = QPushButton("Export CSV")
        self.status = QLabel("")
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.table)
        layout.addWidget(self.export_button)
        layout.addWidget(self.status)
        self.rows: list[dict] = []
        self._watched = None
        self.labels_combo.changed.connect(self._watch)
        self.image_combo.changed.connect(self.recompute)
        self.pixel_size.valueChanged.connect(self.recompute)
        self.export_button.clicked.connect(self._export_dialog)

        def refresh(*_):
            self.labels_combo.reset_choices()
            self.image_combo.reset_choices()

        napari_viewer.layers.events.inserted.connect(refresh)
        napari_viewer.layers.events.removed.connect(refresh)
        self._watch()

    def _watch(self, *_):
        if self._watched is not None:
            for ev in ("paint", "data", "labels_update"):
                emitter = getattr(self._watched.events, ev, None)
                if emitter is not None:
                    emitter.disconnect(self.recompute)
        name = self.labels_combo.value
        self._watched = self.viewer.layers[name] if name and name in self.viewer.layers else None
        if self._watched is not None:
            for ev in ("paint", "data", "labels_update"):
                emitter = getattr(self._watched.events, ev, None)
                if emitter is not None:
                    emitter.connect(self.recompute)
            source = self._watched.metadata.get("cervseg_image")
            if source and source in self.image_combo.choices:
                self.image_combo.value = source
        self.recompute()

    def effective_pixel_size(self):
        if self.pixel_size.value() > 0:
            return float(self.pixel_size.value())
        if self._watched is not None:
            sy, sx = (float(s) for s in self._watched.scale[-2:])
            if sy == sx and sy != 1.0:
                return sy
        return None

    def recompute(self, *_):
        layer = self._watched
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
            self.rows = descriptor_rows(layer.data, image, self.effective_pixel_size(),
                                        layer.metadata.get("cervseg_boxes"))
            self.status.setText(f"{len(self.rows)} cell(s) from '{layer.name}'")
        except (LayerError, ValueError) as exc:
            self.rows = []
            self.status.setText(str(exc))
            _notify_error(f"CervSeg: {exc}")
        self._fill_table()

    def columns(self) -> list[str]:
        cols = list(TABLE_COLUMNS)
        if self.rows and "frame" in self.rows[0]:
            cols.insert(1, "frame")
        if self.rows and "nucleus_area_um2" in self.rows[0]:
            cols[1:1] = ["nucleus_area_um2", "cytoplasm_area_um2"]
        return [c for c in cols if not self.rows or c in self.rows[0]]

    def _fill_table(self):
        cols = self.columns()
        self.table.clear()
        self.table.setColumnCount(len(cols))
        self.table.setHorizontalHeaderLabels(cols)
        self.table.setRowCount(len(self.rows))
        for i, row in enumerate(self.rows):
            for j, col in enumerate(cols):
                self.table.setItem(i, j, QTableWidgetItem(format_value(row.get(col))))
        self.table.resizeColumnsToContents()

    def export_csv(self, path) -> Path:
        """Write every descriptor of the table's rows (the table shows a subset of the columns)."""
        path = write_rows_csv(path, self.rows)
        self.status.setText(f"exported {len(self.rows)} row(s) to {path}")
        return path

    def _export_dialog(self):
        path, _ = QFileDialog.getSaveFileName(self, "Export descriptors", "descriptors.csv", "CSV (*.csv)")
        if path:
            self.export_csv(path)


__all__ = ["ClassifyExplainWidget", "SegmentCellWidget", "BatchSegmentWidget", "MeasureCellWidget"]
