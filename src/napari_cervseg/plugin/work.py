"""How the dock widgets run work: one helper, :meth:`WorkerWidget.start`.

Work is a generator function ``steps(progress)`` run in a napari ``thread_worker``: it yields
:class:`Progress` (shown in the widget's :class:`RunPanel`) or finished items, and returns its
result. Cancel is ``worker.quit()``: the worker stops at the next yield (between cells or
frames), and the core's ``progress`` callback raises :class:`Cancelled` at the next stage.
Errors become napari notifications, never tracebacks in the user's face.
"""

from __future__ import annotations

import textwrap
from typing import NamedTuple

from magicgui.widgets import ComboBox, Container, Label, ProgressBar, PushButton

from .layers import LayerError, image_from_layer

#: the result text's line length (characters)
TEXT_WIDTH = 60


class Cancelled(Exception):
    """Raised in the worker thread at the next stage once the user pressed Cancel."""


class WorkFailed(Exception):
    """A RuntimeError of the work, passed on as this: a thread worker takes a RuntimeError out of
    its generator for a deleted worker and only warns, so the user would never hear of it."""


class Progress(NamedTuple):
    """What the work yields into the progress bar: the stage and the fraction done (0 to 1)."""

    stage: str
    fraction: float


def _notify_error(message: str) -> None:
    from napari.utils.notifications import show_error

    show_error(message)


def _notify_info(message: str) -> None:
    from napari.utils.notifications import show_info

    show_info(message)


def _combo_boxes(widget):
    """Every ComboBox inside a magicgui container, however deep."""
    if isinstance(widget, ComboBox):
        yield widget
    if isinstance(widget, Container):
        for child in widget:
            yield from _combo_boxes(child)


def _notify_warnings(warnings) -> None:
    """Show what the library warned of (an image converted, an option ignored) as napari warnings."""
    if not warnings:
        return
    from napari.utils.notifications import show_warning

    for message in dict.fromkeys(warnings):
        show_warning(f"CervSeg: {message}")


def load_models_stage(model: str | None, method: str, options: dict | None = None):
    """Work steps that load the classifier (and the self-trained segmenter) under a "loading model"
    stage: the first run of a session spends seconds here (imports, weights), later runs find the
    models warm in the loaders' caches."""
    yield Progress("loading model", 0.0)
    if model is not None:
        from ..classify import load_model

        load_model(model)
    if method == "self-trained":
        from ..segment.student import load_segmenter

        options = options or {}
        load_segmenter(getattr(options.get("settings"), "segmenter", None) or options.get("segmenter", "default"))


_warmed = {"started": False}


def warm_up_in_background() -> None:
    """Load the default classifier, segmenter and cell finder and run them once on a small
    synthetic cell, in a daemon thread, when the first widget opens: the user's first click then
    finds the imports done, the weights in the loaders' caches and the CPU kernels warm (issue 23
    item 7). Once per session; ``CERVSEG_NO_WARMUP=1`` turns it off (benchmarks)."""
    import os
    import threading

    if _warmed["started"] or os.environ.get("CERVSEG_NO_WARMUP") == "1":
        return
    _warmed["started"] = True

    def work():
        import contextlib

        import numpy as np

        with contextlib.suppress(Exception):  # a failure here only loses the head start
            from ..segment.finder import load_finder
            from ..segment.pipeline import segment_cell

            rr, cc = np.mgrid[0:96, 0:96]
            cell = np.full((96, 96, 3), 225, np.uint8)
            cell[(rr - 48) ** 2 + (cc - 48) ** 2 < 40 ** 2] = (170, 150, 190)
            cell[(rr - 48) ** 2 + (cc - 48) ** 2 < 12 ** 2] = (70, 50, 110)
            segment_cell(cell)
            load_finder("default")

    threading.Thread(target=work, name="cervseg-warm-up", daemon=True).start()


def _follow_layers(widget: Container, viewer) -> None:
    """Keep the widget's layer choices current (also when not docked): layers that come and go,
    and renamed layers, which stay chosen under their new name."""
    names: dict[int, str] = {}  # id(layer) -> its name when last seen

    def remember():
        names.clear()
        names.update({id(layer): layer.name for layer in viewer.layers})

    def renamed(event):
        layer = event.source
        old = names.get(id(layer))
        chosen = [combo for combo in _combo_boxes(widget) if old is not None and combo.value == old]
        widget.reset_choices()
        for combo in chosen:
            if layer.name in combo.choices:
                combo.value = layer.name
        remember()

    def follow_image(layer):
        """A newly opened or selected image layer becomes the image the widget works on (not the
        plugin's own heatmaps), as napari users expect."""
        import napari

        from .layers import is_plugin_heatmap

        combo = getattr(widget, "image_combo", None)
        if (combo is None or not isinstance(layer, napari.layers.Image) or is_plugin_heatmap(layer)
                or layer.name not in combo.choices):
            return
        combo.value = layer.name

    def inserted(event):
        event.value.events.name.connect(renamed)
        remember()
        widget.reset_choices()
        follow_image(event.value)

    def selected(event):
        follow_image(viewer.layers.selection.active)

    def removed(event):
        event.value.events.name.disconnect(renamed)
        remember()
        widget.reset_choices()

    for layer in viewer.layers:
        layer.events.name.connect(renamed)
    remember()
    viewer.layers.events.inserted.connect(inserted)
    viewer.layers.events.removed.connect(removed)
    viewer.layers.selection.events.active.connect(selected)


class RunPanel(Container):
    """Run and Cancel buttons, a progress bar, the current stage and the result text.

    Parameters
    ----------
    label : str
        The run button's text.
    """

    def __init__(self, label: str):
        self.run_button = PushButton(text=label)
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.bar = ProgressBar(min=0, max=100, value=0)
        self.stage = Label(value="")
        self.result = Label(value="")  # no word wrap: a wrapped QLabel is not given its height here
        buttons = Container(widgets=[self.run_button, self.cancel_button], layout="horizontal", labels=False)
        buttons.margins = (0, 0, 0, 0)
        super().__init__(widgets=[buttons, self.bar, self.stage, self.result], labels=False)
        self.margins = (0, 0, 0, 0)

    def busy(self, on: bool) -> None:
        """Enable Cancel (and disable Run) while work runs; a new run starts the bar at 0 and
        clears the previous run's result, so nothing stale is on show."""
        self.run_button.enabled = not on
        self.cancel_button.enabled = on
        if on:
            self.bar.value = 0
            self.stage.value = "starting"
            self.result.value = ""

    def stopped(self, stage: str) -> None:
        """A run that did not finish (refused, cancelled, failed): say so and clear its bar."""
        self.bar.value = 0
        self.stage.value = stage

    def tell(self, text: str) -> None:
        """Show the result text, each line wrapped at :data:`TEXT_WIDTH` characters."""
        self.result.value = "\n".join(textwrap.fill(line, TEXT_WIDTH, break_long_words=False) or line
                                      for line in text.split("\n"))

    def report(self, progress: Progress) -> None:
        """Show a stage and its fraction."""
        self.bar.value = int(round(100 * min(max(progress.fraction, 0.0), 1.0)))
        self.stage.value = progress.stage


class WorkerWidget(Container):
    """A dock widget whose work runs in a napari thread worker: labelled controls, then a RunPanel.

    Subclasses give their controls and implement ``run()``, which starts the work with
    :meth:`start`.

    Parameters
    ----------
    viewer : napari.viewer.Viewer
        The viewer the widget works on.
    run_label : str
        The run button's text.
    controls : list of magicgui widgets
        The controls above the run panel (each shown with its label).
    """

    def __init__(self, viewer, run_label: str, controls):
        from .. import _gl_safety

        # Qt is surely up now, though it may not have been when this module was imported (a script
        # that imports the widgets before making its viewer): the work's imports must not load Triton
        _gl_safety.keep_triton_out()
        self.viewer = viewer
        self.panel = RunPanel(run_label)
        self.result_label = self.panel.result
        self.controls = Container(widgets=list(controls))  # labelled, lined up
        self.controls.margins = (0, 0, 0, 0)
        super().__init__(widgets=[self.controls, self.panel], labels=False)
        self.worker = None
        self.cancelled = False
        self.input_warnings: list[str] = []
        self.panel.run_button.clicked.connect(lambda *_: self.run())
        self.panel.cancel_button.clicked.connect(lambda *_: self.cancel())
        _follow_layers(self, viewer)
        warm_up_in_background()

    def run(self) -> None:  # pragma: no cover - every subclass has its own
        raise NotImplementedError

    def start(self, steps, *, returned=None, yielded=None, finished=None, keep_on_cancel: bool = False):
        """Run ``steps(progress)`` in a napari thread worker, with progress and cancel.

        The one way every widget and menu command runs work.

        Parameters
        ----------
        steps : callable
            ``steps(progress)`` returns a generator: what it yields goes to the progress bar
            (a :class:`Progress`) or to ``yielded`` (anything else: a finished item); what it
            returns goes to ``returned``. ``progress(stage, fraction)`` is the core's progress
            callback: it shows the stage and, once Cancel was pressed, raises :class:`Cancelled`.
        returned, yielded, finished : callable, optional
            Called in the GUI thread with the return value, with each finished item, and (with
            no argument) when the work ended in any way (done, failed or cancelled).
        keep_on_cancel : bool
            Work that stops early on Cancel and returns what it finished (a field's cells): its
            return value still goes to ``returned``. Otherwise a cancelled run adds nothing.

        Returns
        -------
        GeneratorWorker
            Started; ``worker.quit()`` (the Cancel button) stops it at the next cell, frame or stage.
        """
        from napari.qt.threading import thread_worker

        worker = None
        # what the work returned: napari emits ``returned`` only when no quit was asked for, but
        # work that stops early on Cancel (a field's finished cells) returns what it has done
        outcome: dict = {}

        def progress(stage: str, fraction: float) -> None:  # in the worker thread, between stages
            if worker.abort_requested:
                raise Cancelled()
            worker.yielded.emit(Progress(stage, float(fraction)))

        @thread_worker(start_thread=False, ignore_errors=True)  # errors are ours to report
        def work():
            try:
                outcome["value"] = yield from steps(progress)
                return outcome["value"]
            except RuntimeError as exc:
                raise WorkFailed(str(exc)) from exc

        def on_yielded(value):
            if isinstance(value, Progress):
                self.panel.report(value)
            elif yielded is not None:
                yielded(value)

        def on_finished():
            if worker.abort_requested and not self.cancelled:  # quit after the last step
                self._on_cancelled()
                if keep_on_cancel and "value" in outcome and not outcome.get("delivered") and returned is not None:
                    outcome["delivered"] = True
                    returned(outcome["value"])  # the work stopped early and kept what it had done
            self.panel.busy(False)
            if finished is not None:
                finished()

        worker = work()
        worker.yielded.connect(on_yielded)
        if returned is not None:
            worker.returned.connect(lambda value: (outcome.__setitem__("delivered", True), returned(value)))
        worker.errored.connect(self._on_error)
        worker.aborted.connect(self._on_cancelled)
        worker.finished.connect(on_finished)
        self.cancelled = False
        self.panel.busy(True)
        self.worker = worker
        worker.start()
        return worker

    def cancel(self) -> None:
        """Ask the running work to stop at the next cell, frame or stage."""
        if self.worker is not None and self.panel.cancel_button.enabled:
            self.worker.quit()
            self.panel.stage.value = "cancelling..."

    def stop_requested(self) -> bool:
        """The library's ``should_stop()``: True once Cancel was pressed (the loops stop between cells
        and frames; the progress callback also stops a cell between its stages)."""
        return self.worker is not None and self.worker.abort_requested

    def refuse(self, message: str) -> None:
        """An input the run cannot take: no stale result stays on show, and the user is told why."""
        self.panel.tell("")
        self.panel.stopped("not run: " + message.removeprefix("CervSeg: "))
        _notify_error(message if message.startswith("CervSeg") else f"CervSeg: {message}")

    def _on_cancelled(self):
        if self.cancelled:
            return
        self.cancelled = True
        self.panel.stopped("cancelled")
        _notify_info("CervSeg: run cancelled")

    def _on_error(self, exc):
        if isinstance(exc, Cancelled):
            self._on_cancelled()
            return
        self.panel.stopped("failed")
        _notify_error(f"CervSeg: {exc}")

    def _image_layer(self, combo: ComboBox):
        """The chosen image layer and its data as one RGB uint8 image; what the conversion did
        (a uint16 image stretched...) is kept in ``self.input_warnings`` for the result text."""
        import napari

        name = combo.value
        if not name or name not in self.viewer.layers:
            raise LayerError("no image layer chosen: open an image (File > Open or File > Open Sample)")
        layer = self.viewer.layers[name]
        if not isinstance(layer, napari.layers.Image):
            raise LayerError(f"layer {name!r} is a {type(layer).__name__} layer; choose an image layer")
        self.input_warnings = []
        return layer, image_from_layer(name, layer.data, layer.rgb, self.input_warnings)
