"""napari dock widget: Learn from corrections.

The cells a user corrected by painting on labels layers fine-tune the self-trained segmenter
(:func:`napari_cervseg.workflows.corrections.learn_from_corrections`, which also runs without a
viewer and behind ``cervseg self-train --corrections``). Labels layers made by Segment cell name
their image in their metadata (``cervseg_image``) and are listed at once, the ones painted on
(their data no longer what the plugin wrote) chosen; any other labels layer is paired with its
image by hand. The work runs in a thread worker with progress and Cancel; the new segmenter is
written with its card to a new file (never over an existing one, nor the bundled segmenter) and
can be put into the open Segment cell widgets with one click.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from magicgui.widgets import ComboBox, FileEdit, LineEdit, PushButton, Select, SpinBox

from .layers import FIELD_KEY, WRITTEN_KEY, LayerError, digest, image_from_layer, layer_frames
from .work import Progress, WorkerWidget, _notify_error, _notify_info

if TYPE_CHECKING:
    import napari

#: the metadata key of a labels layer that names its image layer
IMAGE_KEY = "cervseg_image"
#: how a pair is shown: "<labels layer>  <-  <image layer>"
ARROW = "  <-  "


def _default_output() -> Path:
    """A new file under ~/cervseg/segmenters (named by the time, so it does not exist yet)."""
    return Path.home() / "cervseg" / "segmenters" / time.strftime("corrected-%Y%m%d-%H%M%S.safetensors")


def layer_pairs(viewer) -> list[tuple[str, str, bool]]:
    """``(labels layer, image layer, painted on)`` for each labels layer that names its image
    (made by Segment cell) whose image layer is still open; a field's instance layers are left out."""
    import napari

    pairs = []
    for layer in viewer.layers:
        if not isinstance(layer, napari.layers.Labels) or layer.metadata.get(FIELD_KEY):
            continue
        image = layer.metadata.get(IMAGE_KEY)
        if image in viewer.layers and isinstance(viewer.layers[image], napari.layers.Image) \
                and "cervseg_classes" not in layer.metadata:
            written = layer.metadata.get(WRITTEN_KEY)
            pairs.append((layer.name, image, written is None or written != digest(layer.data)))
    return pairs


def _default_finder_output() -> Path:
    """A new finder file under ~/cervseg/finders (named by the time)."""
    return Path.home() / "cervseg" / "finders" / time.strftime("corrected-%Y%m%d-%H%M%S.safetensors")


#: how a field is shown: "<cells layer> + <nuclei layer>  <-  <image layer>"
FIELD_JOIN = " + "


def field_pairs(viewer) -> list[tuple[str, str, str, bool]]:
    """``(cells layer, nuclei layer, image layer, painted on)`` for each field Segment all cells
    made whose layers are all still open; painted on: either labels layer differs from what the
    plugin wrote."""
    import napari

    out = []
    for layer in viewer.layers:
        nuclei = layer.metadata.get(FIELD_KEY) if isinstance(layer, napari.layers.Labels) else None
        image = layer.metadata.get(IMAGE_KEY) if nuclei else None
        if not nuclei or nuclei not in viewer.layers or image not in viewer.layers:
            continue
        painted = any(other.metadata.get(WRITTEN_KEY) not in (None, digest(other.data))
                      for other in (layer, viewer.layers[nuclei]))
        out.append((layer.name, nuclei, image, painted))
    return out


class LearnCorrectionsWidget(WorkerWidget):
    """Fine-tune the segmenter on corrected labels layers and write it as a new file.

    Parameters
    ----------
    viewer : napari.viewer.Viewer
        The viewer whose (image, labels) layer pairs are offered.

    Notes
    -----
    The work is :func:`napari_cervseg.workflows.corrections.learn_from_corrections`. Each chosen
    pair gives one cell per image (or per rectangle the labels were made in, or per frame of a
    stack); a cell without a painted nucleus is left out, with a note.
    """

    def __init__(self, viewer: napari.viewer.Viewer):
        from ..workflows.corrections import CorrectionConfig

        self.viewer = viewer  # the choices callables need it before the base class sets it
        self.manual: list[tuple[str, str]] = []
        self.last_path: Path | None = None
        self.pairs = Select(label="corrected cells", choices=self._pair_choices, allow_multiple=True,
                            tooltip="labels layer <- its image; painted-on layers are chosen at first")
        self.image_combo = ComboBox(label="image", choices=self._names("image"))
        self.labels_combo = ComboBox(label="its labels", choices=self._names("labels"))
        self.add_button = PushButton(text="Add pair")
        self.base_edit = LineEdit(value="default", label="start from",
                                  tooltip="the segmenter to fine-tune: 'default' (bundled) or a .safetensors file")
        self.out_edit = FileEdit(label="new segmenter", mode="w", filter="*.safetensors", value=_default_output(),
                                 tooltip="a new .safetensors file (its .json card is written beside); nothing is"
                                         " overwritten")
        self.steps_spin = SpinBox(label="steps", value=CorrectionConfig().steps, min=1, max=5000,
                                  tooltip="optimiser steps (the default was chosen on development fields)")
        self.use_button = PushButton(text="Use in Segment cell", enabled=False)
        # fields: corrected cells / nuclei layers of Segment all cells teach the cell finder
        self.fields = Select(label="corrected fields", choices=self._field_choices, allow_multiple=True,
                             tooltip="cells + nuclei layers <- their image (Segment all cells); painted ones chosen")
        self.finder_out_edit = FileEdit(label="new cell finder", mode="w", filter="*.safetensors",
                                        value=_default_finder_output(),
                                        tooltip="a new .safetensors file; the bundled finder is never replaced")
        self.fields_button = PushButton(text="Learn cell finder from fields")
        super().__init__(viewer, "Learn", [self.pairs, self.image_combo, self.labels_combo, self.add_button,
                                           self.base_edit, self.out_edit, self.steps_spin])
        self.append(self.use_button)
        self.append(self.fields)
        self.append(self.finder_out_edit)
        self.append(self.fields_button)
        self.fields_button.clicked.connect(lambda *_: self.run_fields())
        self.last_finder: Path | None = None
        self.add_button.clicked.connect(lambda *_: self.add_pair())
        self.use_button.clicked.connect(lambda *_: self.use_in_segment_widgets())
        self.pairs.value = [self._pair_text(lab, img) for lab, img, painted in layer_pairs(viewer) if painted]
        for layer in viewer.layers:
            self._watch(layer)
        viewer.layers.events.inserted.connect(lambda event: self._watch(event.value))

    # -- the pairs ------------------------------------------------------------------------

    def _names(self, kind):
        def choices(_widget=None):
            import napari

            cls = napari.layers.Image if kind == "image" else napari.layers.Labels
            return [layer.name for layer in self.viewer.layers if isinstance(layer, cls)]

        return choices

    @staticmethod
    def _pair_text(labels: str, image: str) -> str:
        return f"{labels}{ARROW}{image}"

    def _pair_choices(self, _widget=None):
        found = [(lab, img) for lab, img, _ in layer_pairs(self.viewer)]
        manual = [p for p in self.manual if p not in found and p[0] in self.viewer.layers
                  and p[1] in self.viewer.layers]
        return [self._pair_text(lab, img) for lab, img in found + manual]

    def _watch(self, layer) -> None:
        """A painted-on labels layer of the list gets chosen (once the user paints)."""
        import napari

        if isinstance(layer, napari.layers.Labels):
            # paint: the brush and layer.paint(); set_data / labels_update: data[...] = ...; refresh()
            for name in ("data", "paint", "set_data", "labels_update"):
                emitter = getattr(layer.events, name, None)
                if emitter is not None:
                    emitter.connect(lambda *_: self._refresh())

    def _refresh(self) -> None:
        with contextlib.suppress(RuntimeError):  # the widget was closed; its Qt controls are gone
            self._choose_painted()

    def _choose_painted(self) -> None:
        chosen = set(self.pairs.value)
        self.pairs.reset_choices()
        painted = {self._pair_text(lab, img) for lab, img, p in layer_pairs(self.viewer) if p}
        self.pairs.value = [c for c in self.pairs.choices if c in chosen or c in painted]
        chosen = set(self.fields.value)
        self.fields.reset_choices()
        painted = {self._field_text(c, n, i) for c, n, i, p in field_pairs(self.viewer) if p}
        self.fields.value = [c for c in self.fields.choices if c in chosen or c in painted]

    @staticmethod
    def _field_text(cells: str, nuclei: str, image: str) -> str:
        return f"{cells}{FIELD_JOIN}{nuclei}{ARROW}{image}"

    def _field_choices(self, _widget=None):
        return [self._field_text(c, n, i) for c, n, i, _ in field_pairs(self.viewer)]

    def run_fields(self):
        """Fine-tune the cell finder on the chosen corrected fields and write it as a new file."""
        from ..segment.finder import FINDER_DIR, load_finder, save_finder
        from ..workflows.finder_training import finetune_finder

        if not self.fields.value:
            _notify_error("CervSeg: no corrected field chosen: run Segment all cells, correct its cells / nuclei"
                          " layers (erase, split, paint; ids shared), then choose it in 'corrected fields'")
            return
        out = Path(str(self.finder_out_edit.value))
        if out.suffix != ".safetensors" or out.exists() or out.with_suffix(".json").exists() \
                or out.resolve().parent == FINDER_DIR.resolve():
            _notify_error(f"CervSeg: {out}: choose a new .safetensors file (nothing is overwritten, the bundled"
                          " finder least of all)")
            return
        images, cells, nuclei, sources = [], [], [], []
        try:
            for text in self.fields.value:
                layers, image_name = text.split(ARROW)
                cells_name, nuclei_name = layers.split(FIELD_JOIN)
                image_layer = self.viewer.layers[image_name]
                images.append(image_from_layer(image_name, image_layer.data, image_layer.rgb))
                cells.append(np.asarray(self.viewer.layers[cells_name].data))
                nuclei.append(np.asarray(self.viewer.layers[nuclei_name].data))
                sources.append(text)
                if cells[-1].shape != images[-1].shape[:2] or nuclei[-1].shape != cells[-1].shape:
                    raise LayerError(f"{cells_name!r} / {nuclei_name!r} are not the size of {image_name!r}")
        except (LayerError, KeyError) as exc:
            _notify_error(f"CervSeg: {exc}")
            return

        def steps(progress):
            yield Progress(f"{len(images)} corrected field(s)", 0.0)
            t0 = time.perf_counter()
            tuned = finetune_finder(load_finder("default"), images, cells, nuclei, sources=sources,
                                    should_stop=self.stop_requested)
            return save_finder(tuned, out), time.perf_counter() - t0

        def finished(result):
            path, seconds = result
            self.last_finder = Path(path)
            self.panel.stage.value = "done"
            self.panel.tell(f"the cell finder learnt from {len(images)} corrected field(s) in {seconds:.0f} s;\n"
                            f"wrote {path}; use it: segment_field(image, finder={str(path)!r})")
            self.finder_out_edit.value = _default_finder_output()

        self.start(steps, returned=finished)

    def add_pair(self) -> None:
        """Pair the chosen image and labels layers by hand (a labels layer Segment cell did not make)."""
        image, labels = self.image_combo.value, self.labels_combo.value
        if not image or not labels:
            _notify_error("CervSeg: choose an image layer and the labels layer that corrects it")
            return
        if (labels, image) not in self.manual:
            self.manual.append((labels, image))
        chosen = [*self.pairs.value, self._pair_text(labels, image)]
        self.pairs.reset_choices()
        self.pairs.value = [c for c in self.pairs.choices if c in chosen]

    def corrections(self, skipped: list | None = None):
        """The chosen pairs as corrected cells (core :class:`~.workflows.corrections.Correction`)."""
        from ..workflows.corrections import CorrectionError, cells_from_labels

        if not self.pairs.value:
            raise LayerError("no corrected cells chosen: segment a cell (Segment cell), paint its labels layer"
                             " (1 cytoplasm, 2 nucleus, 0 background), then choose it in the list")
        cells = []
        for text in self.pairs.value:
            labels_name, image_name = text.split(ARROW)
            labels_layer, image_layer = self.viewer.layers[labels_name], self.viewer.layers[image_name]
            frames = layer_frames(image_name, image_layer.data, image_layer.rgb)
            data = np.asarray(labels_layer.data)
            boxes = labels_layer.metadata.get("cervseg_boxes")
            if len(frames) > 1:
                if data.ndim != 3 or data.shape[0] != len(frames):
                    raise LayerError(f"labels layer {labels_name!r} has shape {data.shape} but image layer"
                                     f" {image_name!r} has {len(frames)} frames; pair labels of the same shape")
                items = [(name, get(), data[i]) for i, (name, get) in enumerate(frames)]
            else:
                items = [(f"{labels_name} <- {image_name}", frames[0][1](), data)]
            for name, image, labels in items:
                try:
                    got = cells_from_labels(image, labels, name, boxes, skipped)
                except CorrectionError as exc:
                    if len(items) == 1 or skipped is None:
                        raise
                    skipped.append((name, str(exc)))
                    continue
                cells.extend(got)
        if not cells:
            raise LayerError("no cell with a painted nucleus among the chosen pairs: "
                             + "; ".join(r for _, r in (skipped or [])[:3]))
        return cells

    # -- the work -------------------------------------------------------------------------

    def run(self):
        """Fine-tune in a thread worker and write the new segmenter."""
        from ..workflows.corrections import (
            CorrectionConfig,
            CorrectionError,
            check_output_path,
            learn_from_corrections,
        )

        skipped: list = []
        try:
            cells = self.corrections(skipped)
            out = Path(str(self.out_edit.value))
            check_output_path(out)
        except (LayerError, CorrectionError) as exc:
            _notify_error(f"CervSeg: {exc}")
            return
        base = self.base_edit.value.strip() or "default"
        config = CorrectionConfig(steps=int(self.steps_spin.value))
        self.use_button.enabled = False

        def steps(progress):
            yield Progress(f"{len(cells)} corrected cell(s)", 0.0)
            t0 = time.perf_counter()
            path = learn_from_corrections([c.image for c in cells], [c.labels for c in cells], out, base=base,
                                          config=config, sources=[c.source for c in cells], progress=progress)
            return path, len(cells), time.perf_counter() - t0

        def finished(result):
            path, n, seconds = result
            self.last_path = Path(path)
            self.use_button.enabled = True
            notes = [f"left out {name}: {why}" for name, why in skipped]
            self.panel.stage.value = "done"
            self.panel.tell(f"learnt from {n} corrected cell(s) in {seconds:.0f} s;\nwrote {path} (+ .json card)"
                            + ("\n" + "\n".join(notes) if notes else ""))
            self.out_edit.value = _default_output()  # the next run goes to a new file

        self.start(steps, returned=finished)

    def use_in_segment_widgets(self) -> list:
        """Put the new segmenter into every docked Segment cell widget (method self-trained)."""
        from .widgets import SegmentCellWidget

        if self.last_path is None:
            return []
        docked = getattr(self.viewer.window, "dock_widgets", {}) or {}
        targets = [w for w in docked.values() if isinstance(w, SegmentCellWidget)]
        for widget in targets:
            controls = widget.method_controls
            controls.method_combo.value = "self-trained"
            controls.setting_controls["segmenter"].value = str(self.last_path)
        if targets:
            _notify_info(f"CervSeg: Segment cell now uses {self.last_path.name} (method self-trained)")
        else:
            self.panel.tell(self.panel.result.value + "\nopen Segment cell, choose method self-trained and set"
                            f" segmenter to {self.last_path}")
        return targets


