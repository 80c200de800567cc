"""The paper's Algorithm 1 (CAM-based) and Algorithm 2 (LRP-based), the non-XAI colour baseline and
the self-trained second stage: one interface (:class:`SegmentationAlgorithm`), each takes the
classifier, an RGB uint8 cell, the method asked for and its settings, and returns a
:class:`~napari_cervseg.segment.result.SegmentationResult`.
"""

from __future__ import annotations

import dataclasses
from typing import Protocol

import cv2
import numpy as np

from ..classify.predict import classify
from ..explain import Explanation, explain
from ..stages import Stages
from .colour import background_like, colour_rough_map
from .grouping import group, log_scale
from .inpaint import inpaint
from .refine import combine, dilate, grabcut, seed_map
from .result import SegmentationResult
from .settings import (
    BASELINE,
    SELF_TRAINED,
    BaselineSettings,
    CamSettings,
    LrpSettings,
    SegmentationError,
    SelfTrainedSettings,
)
from .student import SegmenterError, load_segmenter
from .two_pass import refine_nucleus, refine_rough, scaled


def smooth_heatmap(heat: np.ndarray, sigma_at_128: float) -> np.ndarray:
    """Gaussian-smoothed heatmap (sigma in px of a 128 px image), max-normalised again."""
    if sigma_at_128 <= 0:
        return heat
    out = cv2.GaussianBlur(heat, (0, 0), sigma_at_128 * max(heat.shape) / 128.0)
    peak = out.max()
    return out / peak if peak > 0 else out


def explain_or_reuse(model, rgb: np.ndarray, method: str, target, layer, explanation: Explanation | None,
                     stages: Stages) -> Explanation:
    """Every algorithm's first step: the given explanation (checked against the method and target,
    resized to the image) or a new one; its own timings join the run's."""
    stages.report("explain", 0.1)
    if explanation is None:
        explanation = explain(model, rgb, method=method, target=target, layer=layer)
    else:
        if explanation.method != method:
            raise SegmentationError(f"explanation= was made by {explanation.method!r}, not by method {method!r};"
                                    " pass an explanation of the same method, or none")
        wanted = target if target is None or isinstance(target, str) else model.class_names[int(target)]
        if target is not None and explanation.target_class != wanted:
            raise SegmentationError(f"explanation= explains {explanation.target_class!r}, not target {target!r}")
        heat = explanation.heatmap
        if heat.shape != rgb.shape[:2]:
            heat = np.clip(cv2.resize(heat, (rgb.shape[1], rgb.shape[0]), interpolation=cv2.INTER_LINEAR), 0, 1)
            explanation = dataclasses.replace(explanation, heatmap=heat.astype(np.float32))
    stages.timings.update(explanation.extras.get("timings", {}))
    return explanation


def _from_explanation(expl: Explanation, **fields) -> SegmentationResult:
    return SegmentationResult(heatmap=expl.heatmap, predicted_class=expl.predicted_class,
                              probability=expl.probability, probabilities=expl.probabilities, explanation=expl,
                              **fields)


class SegmentationAlgorithm(Protocol):
    """What every segmentation algorithm is: chosen once by :data:`ALGORITHMS`, called the same way.

    ``model`` is a loaded classifier (None only for the colour baseline); ``method`` the method name
    asked for (the CAM or LRP variant; the others take their name from ``settings``); ``settings``
    the method's settings dataclass; ``target`` the class to explain; ``explanation`` this image's
    explanation computed before (reused instead of explaining again, where the algorithm explains);
    ``progress(stage, fraction)``.
    """

    def __call__(self, model, rgb: np.ndarray, *, method: str, settings, target=None,
                 explanation: Explanation | None = None, progress=None) -> SegmentationResult: ...


def algorithm1_cam(model, rgb: np.ndarray, *, method: str = "gradcam++", settings: CamSettings | None = None,
                   target=None, explanation: Explanation | None = None, progress=None) -> SegmentationResult:
    """Algorithm 1: CAM heatmap -> 3-group rough map -> GrabCut nucleus, GrabCut cell -> combine.

    Parameters
    ----------
    model : CellClassifier
    rgb : ndarray (H, W, 3) uint8
    method : str
        A CAM method (``"gradcam++"`` ...).
    settings : CamSettings, optional
    target : str or int, optional
        Class to explain (None: the predicted one).
    explanation : Explanation, optional
        This image's explanation by ``method`` computed before, used instead of explaining again.
    progress : callable, optional
        ``progress(stage, fraction)``.

    Returns
    -------
    SegmentationResult
    """
    settings = settings or CamSettings()
    stages = Stages(progress)
    expl = explain_or_reuse(model, rgb, method, target, settings.layer, explanation, stages)
    with stages("grouping", report="group", at=0.4):
        rough = group(smooth_heatmap(expl.heatmap, settings.smooth), 3, settings.grouping)
    stages.report("grabcut", 0.5)
    nucleus, cell = refine_rough(rgb, rough, settings, stages)
    with stages("combine"):
        labels = combine(nucleus, cell)
    return _from_explanation(expl, labels=labels, rough=rough, method=method, algorithm="cam",
                             timings=stages.timings, settings={**settings.as_dict(), "layer": expl.layer})


def algorithm2_lrp(model, rgb: np.ndarray, *, method: str = "lrp-ruleset1", settings: LrpSettings | None = None,
                   target=None, explanation: Explanation | None = None, progress=None) -> SegmentationResult:
    """Algorithm 2: LRP relevance -> 2-group nucleus seed -> GrabCut nucleus; log-scaled 3-group
    map minus the nucleus -> cytoplasm seed; inpaint the dilated nucleus; GrabCut the cell on the
    inpainted image; combine.

    Parameters are those of :func:`algorithm1_cam`, with ``method`` an LRP rule set and
    ``settings`` an :class:`LrpSettings`.
    """
    settings = settings or LrpSettings()
    stages = Stages(progress)
    expl = explain_or_reuse(model, rgb, method, target, None, explanation, stages)
    with stages("grouping", report="group", at=0.4):
        heat = smooth_heatmap(expl.heatmap, settings.smooth)
        top = group(heat, 2, settings.grouping) == 1
        rough = group(log_scale(heat, settings.log_scale_factor), 3, settings.grouping)
    stages.report("grabcut nucleus", 0.5)
    r = scaled(settings.dilation, rgb.shape)
    far_bg = ~dilate(rough >= 1, 2 * r)
    nucleus = refine_nucleus(rgb, top, far_bg, settings, stages)
    with stages("inpainting", report="inpaint", at=0.7):
        nucleus_dilated = dilate(nucleus, r)
        ring = dilate(nucleus_dilated, r) & ~nucleus_dilated
        cytoplasm_seed = ((rough >= 1) & ~nucleus_dilated) | ring
        removed, inpainter_used = inpaint(rgb, nucleus_dilated, settings.inpainter, settings.lama_model)
    with stages("grabcut_cytoplasm", report="grabcut cytoplasm", at=0.8):
        cell = grabcut(removed, seed_map(rgb.shape, cytoplasm_seed, sure_fg=nucleus_dilated,
                                         sure_bg=far_bg & background_like(rgb)),
                       settings.cytoplasm_iterations, settings.work_size)
    with stages("combine"):
        labels = combine(nucleus, cell)
    rough_map = rough.copy()
    rough_map[top] = 2
    return _from_explanation(expl, labels=labels, rough=rough_map, method=method, algorithm="lrp",
                             inpainter=inpainter_used, timings=stages.timings,
                             settings=settings.as_dict())


def colour_baseline(model, rgb: np.ndarray, *, method: str = BASELINE, settings: BaselineSettings | None = None,
                    target=None, explanation: Explanation | None = None, progress=None) -> SegmentationResult:
    """The non-XAI baseline: colour k-means rough map + the same GrabCut refinement as Algorithm 1.

    The classifier (if given) still answers, so the result carries a class; there is no heatmap
    (``target`` and ``explanation`` do not apply).
    """
    settings = settings or BaselineSettings()
    stages = Stages(progress)
    cls = prob = None
    probs: dict = {}
    if model is not None:
        with stages("classify"):
            cls, prob, probs = classify(model, rgb)
    with stages("grouping", report="cluster colours", at=0.3):
        rough = colour_rough_map(rgb)
    stages.report("grabcut", 0.5)
    nucleus, cell = refine_rough(rgb, rough, settings, stages)
    with stages("combine"):
        labels = combine(nucleus, cell)
    return SegmentationResult(
        labels=labels, rough=rough, heatmap=None, method=BASELINE, algorithm="baseline",
        predicted_class=cls, probability=prob, probabilities=probs, timings=stages.timings,
        settings=settings.as_dict())


def self_trained(model, rgb: np.ndarray, *, method: str = SELF_TRAINED, settings: SelfTrainedSettings | None = None,
                 target=None, explanation: Explanation | None = None, progress=None) -> SegmentationResult:
    """The weakly supervised second stage: labels from a U-Net trained on Algorithm 1's own
    pseudo-masks (no ground truth; :mod:`napari_cervseg.workflows.selftrain`); the classifier's
    class and heatmap (``settings.explain_method``) come with it, as for every method."""
    settings = settings or SelfTrainedSettings()
    stages = Stages(progress)
    expl = explain_or_reuse(model, rgb, settings.explain_method, target, None, explanation, stages)
    with stages("segmenter", report="segment", at=0.5):
        try:
            seg = load_segmenter(settings.segmenter)
        except SegmenterError as exc:
            raise SegmentationError(str(exc)) from exc
        threshold = seg.cell_threshold if settings.cell_threshold is None else settings.cell_threshold
        labels = seg.predict(rgb, tta=settings.tta, refine=settings.refine, cell_threshold=threshold)
    return _from_explanation(expl, labels=labels, rough=labels.copy(), method=SELF_TRAINED,
                             algorithm="self-trained", timings=stages.timings,
                             settings={**settings.as_dict(), "segmenter": seg.source, "cell_threshold": threshold,
                                       "teacher": seg.card.get("teacher")})


#: the function that runs each algorithm (see :func:`~napari_cervseg.segment.settings.algorithm_of`)
ALGORITHMS: dict[str, SegmentationAlgorithm] = {"cam": algorithm1_cam, "lrp": algorithm2_lrp, "baseline": colour_baseline,
              "self-trained": self_trained}
