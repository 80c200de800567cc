"""Layers > Segment / Measure menu commands: act on the selected layer (napari injects the viewer)."""

import napari

from .docks import docked
from .layers import is_plugin_heatmap, layer_type_name
from .widgets import (
    BatchSegmentWidget,
    MeasureCellWidget,
    SegmentCellWidget,
    SegmentFieldWidget,
    _notify_error,
)


def _run_on_selected_image(viewer, widget_cls, dock_name: str, what: str) -> None:
    """Dock ``widget_cls`` on the selected image layer and run it; another selection is a notification."""
    layer = viewer.layers.selection.active
    if not isinstance(layer, napari.layers.Image) or is_plugin_heatmap(layer):
        kind = "a heatmap" if layer is not None and is_plugin_heatmap(layer) else (
            f"the {layer_type_name(layer)} layer {layer.name!r}" if layer is not None else "no layer")
        _notify_error(f"CervSeg: select an image layer to {what} (the selection is {kind})")
        return
    widget = docked(viewer, widget_cls, dock_name)
    widget.reset_choices()
    widget.image_combo.value = layer.name
    if widget.worker is not None and widget.panel.cancel_button.enabled:
        _notify_error(f"CervSeg: {dock_name} is still running; wait for it or press Cancel")
        return
    widget.run()


def segment_active_layer(viewer: napari.viewer.Viewer) -> None:
    """Segment the selected image layer with the Segment cell widget's default settings."""
    _run_on_selected_image(viewer, SegmentCellWidget, "Segment cell (CervSeg)", "segment")


def measure_active_layer(viewer: napari.viewer.Viewer) -> None:
    """Open the descriptors table for the selected labels layer."""
    layer = viewer.layers.selection.active
    if not isinstance(layer, napari.layers.Labels):
        kind = f"the {layer_type_name(layer)} layer {layer.name!r}" if layer is not None else "no layer"
        _notify_error(f"CervSeg: select a labels layer to measure (the selection is {kind})")
        return
    widget = docked(viewer, MeasureCellWidget, "Measure cell (CervSeg)")
    widget.reset_choices()
    widget.labels_combo.value = layer.name


def segment_all_layers(viewer: napari.viewer.Viewer) -> None:
    """Segment every image layer (every frame of a stack) with the default model and method."""
    if not any(isinstance(layer, napari.layers.Image) and not is_plugin_heatmap(layer) for layer in viewer.layers):
        _notify_error("CervSeg: no image layer to segment: open images (File > Open) first")
        return
    widget = docked(viewer, BatchSegmentWidget, "Segment all (CervSeg)")
    if widget.worker is not None and widget.panel.cancel_button.enabled:
        _notify_error("CervSeg: Segment all is still running; wait for it or press Cancel")
        return
    widget.run()


def segment_fields_active_layer(viewer: napari.viewer.Viewer) -> None:
    """Find, segment, classify and measure every cell of the selected image layer."""
    _run_on_selected_image(viewer, SegmentFieldWidget, "Segment all cells (CervSeg)", "segment its cells")
