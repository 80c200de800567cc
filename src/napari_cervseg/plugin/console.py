"""One-liners for napari's console: segment a layer, or show a result, the way the widgets do.

    >>> from napari_cervseg.plugin.console import segment_layer
    >>> result = segment_layer(viewer)  # doctest: +SKIP
"""

from __future__ import annotations

from .layers import LayerError, image_from_layer, is_plugin_heatmap


def _image_layer(viewer, layer):
    import napari

    if isinstance(layer, str):
        if layer not in viewer.layers:
            names = [ly.name for ly in viewer.layers if isinstance(ly, napari.layers.Image)]
            raise LayerError(f"no layer named {layer!r}; image layers: {names or 'none (File > Open)'}")
        layer = viewer.layers[layer]
    if layer is None:
        selected = viewer.layers.selection.active
        images = [ly for ly in viewer.layers if isinstance(ly, napari.layers.Image) and not is_plugin_heatmap(ly)]
        if isinstance(selected, napari.layers.Image) and not is_plugin_heatmap(selected):
            layer = selected
        elif len(images) == 1:
            layer = images[0]
        else:
            raise LayerError(f"{len(images)} image layers and none selected: pass one, e.g."
                             " segment_layer(viewer, viewer.layers[0])" if images else
                             "no image layer: open one (File > Open or File > Open Sample)")
    if not isinstance(layer, napari.layers.Image) or is_plugin_heatmap(layer):
        raise LayerError(f"layer {layer.name!r} is not an image to segment; pass an image layer")
    return layer


def show_result(viewer, image_layer, result) -> str:
    """Add a :class:`~napari_cervseg.segment.result.SegmentationResult` of an image layer to the
    viewer as "Segment cell" does.

    Parameters
    ----------
    viewer : napari.viewer.Viewer
    image_layer : napari.layers.Image or str
        The layer (or its name) that was segmented.
    result : SegmentationResult
        From :func:`napari_cervseg.segment_cell` on that layer's data.

    Returns
    -------
    str
        The labels layer's name: ``<image> regions`` (plugin colours, region names on hover; a
        layer the user painted on is never overwritten: ``<image> regions [2]`` then).
    """
    from .widgets import _add_regions

    layer = _image_layer(viewer, image_layer)
    return _add_regions(viewer, layer, result.labels, result.heatmap, [result], None, result.method)


def segment_layer(viewer, layer=None, model="default", **options):
    """Segment an image layer and add its layers, as the "Segment cell" button does.

    Parameters
    ----------
    viewer : napari.viewer.Viewer
        ``viewer`` in napari's console.
    layer : napari.layers.Image or str, optional
        The layer or its name; default: the selected image layer, or the only one.
    model : str
        ``"default"`` (bundled) or a model file's path.
    **options
        :func:`napari_cervseg.segment_cell`'s keyword arguments (``method``, ``settings``,
        ``target``, ``operating_point``...).

    Returns
    -------
    SegmentationResult
        Its ``warnings`` start with what converting the layer's data did (e.g. a uint16 image
        stretched).

    Raises
    ------
    LayerError
        When no image layer is given or found; the message says what would work.
    """
    from ..segment.pipeline import segment_cell

    layer = _image_layer(viewer, layer)
    warnings: list[str] = []
    image = image_from_layer(layer.name, layer.data, layer.rgb, warnings)
    result = segment_cell(image, model=model, **options)
    result.warnings[:0] = [w for w in warnings if w not in result.warnings]
    show_result(viewer, layer, result)
    return result


__all__ = ["segment_layer", "show_result"]
