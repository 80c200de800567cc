"""``segment_cell``: one cell image in, one :class:`SegmentationResult` out, whatever the method.

Checks the request (method, settings, image size), prepares the image (RGB uint8, at most
PROCESS_SIZE px), answers "no cell" for an image without contrast, runs the method's algorithm
(:mod:`.algorithms`) and scales the labels back. What the API, the CLI and the napari widgets call.
"""

from __future__ import annotations

import time

import cv2
import numpy as np

from ..classify import load_model
from ..classify.applicability import MIN_CONTRAST, assess
from ..classify.classifier import pick_device
from ..classify.predict import abnormal_threshold, class_probabilities, classify, decide
from ..explain import Explanation
from ..io.images import MAX_PIXELS, check_pixel_size, check_size, to_rgb_uint8
from ..stages import ProgressCallback, Stages
from .algorithms import ALGORITHMS
from .result import SegmentationResult
from .settings import (
    BASELINE,
    DEFAULT_SEGMENT_METHOD,
    SEGMENT_METHODS,
    SELF_TRAINED,
    SegmentationError,
    Settings,
    algorithm_of,
    check_method,
    check_values_of_every_method,
    option_names,
    settings_for,
)

# MIN_CONTRAST (classify.applicability): below this grey-level std an image is treated as holding no cell
#: an image of at least this many pixels is checked for several cells (smaller ones are single
#: cells: the check costs time, and a 2-cell field is larger than this)
FIELD_CHECK_PIXELS = 250_000
#: longest side the pipeline works at: a larger image is processed downscaled (area averaging) and
#: its labels and heatmap scaled back (Herlev's largest crop is 768 px, so its figures are unaffected)
PROCESS_SIZE = 1024


def has_no_cell(rgb: np.ndarray) -> bool:
    """True for an image too small or too flat (grey-level std below MIN_CONTRAST) to hold a cell."""
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)
    return grey.size < 16 or float(grey.std()) < MIN_CONTRAST


def count_cells(rgb: np.ndarray) -> int:
    """How many nuclei of cell size (dark, compact, of comparable size) the image shows."""
    from .cells import find_nuclei

    nuclei = find_nuclei(rgb)
    return int(nuclei.max())


def field_warning(rgb: np.ndarray) -> str | None:
    """A warning when an image holds several cells, naming the route that handles them."""
    if rgb.shape[0] * rgb.shape[1] < FIELD_CHECK_PIXELS:
        return None
    n = count_cells(rgb)
    if n < 2:
        return None
    return (f"this image seems to hold {n} cells ({n} nuclei found), but segment_cell treats an image as one"
            " cell: use segment_field (napari: Segment all cells; CLI: cervseg segment --field) to segment,"
            " classify and measure each cell")


def _process_size(rgb: np.ndarray, warnings: list) -> np.ndarray:
    h, w = rgb.shape[:2]
    if max(h, w) <= PROCESS_SIZE:
        return rgb
    scale = PROCESS_SIZE / max(h, w)
    small = (max(1, round(w * scale)), max(1, round(h * scale)))
    warnings.append(f"processed at {small[1]} x {small[0]} px (downscaled from {h} x {w});"
                    " labels and heatmap scaled back to the image")
    return cv2.resize(rgb, small, interpolation=cv2.INTER_AREA)


def _scale_back(result: SegmentationResult, shape) -> None:
    size = (int(shape[1]), int(shape[0]))
    result.settings["processed_shape"] = list(result.labels.shape)
    result.labels = cv2.resize(result.labels, size, interpolation=cv2.INTER_NEAREST)
    result.rough = cv2.resize(result.rough, size, interpolation=cv2.INTER_NEAREST)
    if result.heatmap is not None:
        result.heatmap = np.clip(cv2.resize(result.heatmap, size, interpolation=cv2.INTER_LINEAR), 0, 1)


def _no_cell_result(rgb, full_shape, method, model_obj, operating_point, warnings, t_start):
    # nothing to segment: no cell is invented, and no class is called (the raw answer is kept)
    cls = prob = None
    probs: dict = {}
    if model_obj is not None:
        cls, prob, probs = classify(model_obj, rgb, operating_point=operating_point)
    zeros = np.zeros(full_shape, np.uint8)
    result = SegmentationResult(
        labels=zeros, rough=zeros.copy(), heatmap=np.zeros(full_shape, np.float32), method=method,
        algorithm="none", predicted_class=cls, probability=prob, probabilities=probs,
        model=getattr(model_obj, "source", None), timings={"total": time.perf_counter() - t_start},
        warnings=[*warnings, (f"no cell found: the image has no contrast (grey-level std < {MIN_CONTRAST});"
                              " labels are all background")])
    give_verdict(result, model_obj, rgb, np.zeros(rgb.shape[:2], np.uint8))
    return result


def check_request(model, method: str = DEFAULT_SEGMENT_METHOD, *, settings: Settings | None = None,
                  options: dict | None = None, operating_point=None, target=None, device=None,
                  pixel_size: float | None = None, max_pixels: int | None = MAX_PIXELS):
    """Check a segmentation request before any work, as every entry point needs it (the CLI, a batch,
    a slide, the widgets): method, settings (also values of options another method would take),
    device, pixel size, pixel limit, model, operating point and target. Returns the loaded model
    (None for the colour baseline without one).

    Raises
    ------
    SegmentationError
        An unknown method or option, a bad value (the message names the valid ones).
    ModelError
        A model that cannot be loaded, a device that does not exist, an operating point or target
        the model does not have.
    ValueError
        A pixel size or pixel limit that is not a number it can be.
    """
    method = check_method(method)
    names = set(option_names())
    options = {k: v for k, v in (options or {}).items() if k in names}
    settings_for(method, settings, **options)
    check_values_of_every_method(options)
    if device is not None:
        pick_device(device)
    check_pixel_size(pixel_size)
    check_size((), "image", max_pixels)  # (the limit itself; no image yet)
    model_obj = _model_for(method, model, device, operating_point)
    if model_obj is not None and target is not None:
        model_obj.class_index(target)
    return model_obj


def _model_for(method: str, model, device, operating_point):
    """The loaded classifier a method runs with (None for the colour baseline without one), its
    operating point checked: a bad one fails before any work."""
    model_obj = load_model(model, device=device) if model is not None else None
    if model_obj is None and method != BASELINE:
        what = "also classifies and explains" if method == SELF_TRAINED else "explains a classifier"
        raise SegmentationError(f"method {method!r} {what}: pass model= (e.g. 'default')")
    if model_obj is not None:
        abnormal_threshold(model_obj, operating_point)
    return model_obj


def give_verdict(result: SegmentationResult, model_obj, rgb: np.ndarray, labels: np.ndarray) -> None:
    """Check that the input is a cell the classifier can judge; if not, withhold the class and say why."""
    verdict = assess(model_obj, rgb, labels)
    result.assessment = verdict
    if not verdict.judgeable:
        result.predicted_class = result.probability = None
        result.warnings.append(verdict.warning())


def segment_cell(image, model="default", method: str = DEFAULT_SEGMENT_METHOD, *, settings: Settings | None = None,
                 target=None, device=None, progress: ProgressCallback | None = None,
                 max_pixels: int | None = MAX_PIXELS, operating_point=None,
                 explanation: Explanation | None = None, warn_if_field: bool = True,
                 **options) -> SegmentationResult:
    """Segment one cell image into nucleus / cytoplasm / background.

    Parameters
    ----------
    image : ndarray
        (H, W) grey, (H, W, 3) RGB or (H, W, 4) RGBA; uint8, uint16 or float.
    model : str, path or CellClassifier, optional
        ``"default"`` (bundled), a ``.safetensors`` / ``.keras`` file, or a loaded classifier;
        None only for ``"colour-baseline"``.
    method : str
        ``"self-trained"`` (default: the best method on the validation split, see
        :data:`~napari_cervseg.segment.settings.DEFAULT_SEGMENT_METHOD`) -> the U-Net trained on
        Algorithm 1's pseudo-masks, shown with its Grad-CAM++ heatmap; a CAM method
        (``"gradcam++"``, ``"gradcam++-paper"``, ``"gradcam"``, ...) -> Algorithm 1;
        ``"lrp-ruleset1"`` / ``"lrp-ruleset2"`` -> Algorithm 2; ``"colour-baseline"`` -> the
        non-XAI baseline. See :data:`~napari_cervseg.segment.settings.SEGMENT_METHODS`.
    settings : CamSettings, LrpSettings, BaselineSettings or SelfTrainedSettings, optional
        The method's settings (its defaults when None); ``options`` apply on top.
    target : str or int, optional
        Class to explain (None: the predicted one; "abnormal" / "normal").
    device : str, optional
        ``"cpu"``, ``"cuda"``, ... (default: CUDA, else MPS, else CPU).
    progress : callable, optional
        ``progress(stage: str, fraction: float)``.
    max_pixels : int or None
        Refuse images larger than this (height x width) with an ImageError that names the
        region-of-interest routes; images with a side above PROCESS_SIZE px are processed downscaled.
    operating_point : None, "screening" or float
        How ``predicted_class`` is called from the probabilities: None (argmax), ``"screening"``
        (the card's validation-chosen threshold on p(abnormal)) or a threshold; the explanation
        (target None) still follows the network's most probable class.
    explanation : Explanation, optional
        This image's explanation by the method computed before (e.g. by the Classify & explain
        step), used instead of explaining again.
    warn_if_field : bool
        Warn when a large image seems to hold several cells (see :func:`field_warning`).
    **options
        Single settings by name (``grouping="kmeans"``, ``dilation=5``, ``inpainter="opencv"``,
        ...); a name that belongs to another method is ignored with a warning in the result.

    Returns
    -------
    SegmentationResult
        ``labels`` (H, W) uint8 (0 background, 1 cytoplasm, 2 nucleus), ``heatmap`` (H, W)
        float32 in [0, 1], ``predicted_class``, ``probability``, ``method``, ``settings``,
        ``timings`` (seconds per stage) and ``warnings``. An image without contrast yields
        all-background labels and a warning instead of an invented cell. ``judgeable`` says
        whether the input is a cell the classifier can judge; when it is not (too small, no
        contrast, no cell found, unlike the training cells, far outside their colours: the
        reasons in ``not_judgeable``) ``predicted_class`` and ``probability`` are None, a
        warning says why, and the labels are kept.

    Raises
    ------
    SegmentationError
        An unknown method, option or value (the message names the valid ones).
    ImageError
        An image that cannot be read as a cell picture (shape, type, size).

    See Also
    --------
    napari_cervseg.measure : descriptors of the labels.
    napari_cervseg.segment.settings.settings_for : the settings a method runs with.

    Examples
    --------
    >>> import numpy as np
    >>> from napari_cervseg import segment_cell
    >>> result = segment_cell(np.full((64, 64, 3), 200, np.uint8), model=None, method="colour-baseline")
    >>> result.cell_found, result.labels.shape
    (False, (64, 64))
    """
    t_start = time.perf_counter()
    method = check_method(method)
    algorithm = algorithm_of(method)
    settings, ignored = settings_for(method, settings, **options)
    model_obj = _model_for(method, model, device, operating_point)
    try:
        shape = np.shape(image)
    except (ValueError, TypeError, AttributeError):  # ragged lists: to_rgb_uint8 names the problem
        shape = ()
    check_size(shape, "image", max_pixels)  # before any conversion of a huge array
    rgb, warnings = to_rgb_uint8(image)
    full_shape = rgb.shape[:2]
    rgb = _process_size(rgb, warnings)
    if warn_if_field and (several := field_warning(rgb)):
        warnings.append(several)
    if has_no_cell(rgb):
        return _no_cell_result(rgb, full_shape, method, model_obj, operating_point, warnings, t_start)
    result = ALGORITHMS[algorithm](model_obj, rgb, method=method, settings=settings, target=target,
                                   explanation=explanation, progress=progress)
    result.model = getattr(model_obj, "source", None)
    views = getattr(model_obj, "class_views", 1)
    if views > 1 and result.probabilities:
        # the class from the views the card's thresholds were chosen on; the heatmap explains the
        # image as it is (explained_class)
        result.probabilities = dict(zip(model_obj.class_names, map(float, class_probabilities(model_obj, rgb)),
                                        strict=True))
    if (operating_point is not None or views > 1) and result.probabilities:
        names = list(result.probabilities)
        chosen = decide(model_obj, [result.probabilities[n] for n in names], operating_point)
        result.predicted_class, result.probability = names[chosen], result.probabilities[names[chosen]]
    result.warnings = (warnings + [f"option {k!r} does not apply to method {method!r}; ignored" for k in ignored]
                       + result.warnings)
    if not result.cell_found:
        result.warnings.append("no cell found: the refinement left no nucleus or cytoplasm")
    give_verdict(result, model_obj, rgb, result.labels)
    if rgb.shape[:2] != full_shape:
        _scale_back(result, full_shape)
    result.timings["total"] = time.perf_counter() - t_start
    Stages(progress).report("done", 1.0)
    return result


__all__ = ["segment_cell", "has_no_cell", "SegmentationResult", "SegmentationError", "SEGMENT_METHODS",
           "DEFAULT_SEGMENT_METHOD", "MIN_CONTRAST", "PROCESS_SIZE"]
