"""Algorithm 1 (CAM-based), Algorithm 2 (LRP-based) and the non-XAI colour baseline.

Each returns one :class:`SegmentationResult`: what the API, the CLI and the napari widgets pass
around. Labels: 0 background, 1 cytoplasm, 2 nucleus, the image's own height and width.

Sizes that the paper leaves open (dilation radius, smoothing) are given in pixels *of a 128 px
image* and scaled with the image, so one setting fits Herlev's 40-768 px crops alike.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import cv2
import numpy as np
from scipy import ndimage as ndi

from .grouping import GROUPINGS, group, kmeans, log_scale
from .imageio import MAX_PIXELS, check_size, to_rgb_uint8
from .inpaint import inpaint
from .models import load_model
from .refine import DEFAULT_WORK_SIZE, combine, dilate, erode, grabcut, seed_map
from .xai import CAM_METHODS, LRP_METHODS, abnormal_threshold, classify, decide, explain

BASELINE = "colour-baseline"
#: the weakly supervised second stage: a U-Net trained on Algorithm 1's pseudo-masks (core.selftrain)
SELF_TRAINED = "self-trained"
SEGMENT_METHODS = CAM_METHODS + LRP_METHODS + (BASELINE, SELF_TRAINED)
#: below this grey-level standard deviation an image is treated as holding no cell
MIN_CONTRAST = 2.0
#: longest side the pipeline works at: a larger image is processed downscaled (area averaging) and
#: its labels and heatmap scaled back (Herlev's largest crop is 768 px, so its figures are unaffected)
PROCESS_SIZE = 1024


class SegmentationError(ValueError):
    pass


@dataclass
class SegmentationResult:
    """Everything one segmentation produced; arrays have the input image's height and width."""

    labels: np.ndarray  # uint8: 0 background, 1 cytoplasm, 2 nucleus
    rough: np.ndarray  # uint8 rough 3-class map before GrabCut (same coding)
    heatmap: np.ndarray | None  # float32 in [0, 1]; None for the baseline
    method: str
    algorithm: str  # "cam" (Algorithm 1), "lrp" (Algorithm 2) or "baseline"
    predicted_class: str | None = None
    probability: float | None = None  # of the predicted class
    probabilities: dict = field(default_factory=dict)
    explained_class: str | None = None
    relevance: np.ndarray | None = None  # raw LRP relevance (model input size)
    inpainter: str | None = None
    model: str | None = None
    timings: dict = field(default_factory=dict)  # seconds per stage
    settings: dict = field(default_factory=dict)
    warnings: list = field(default_factory=list)

    @property
    def cell_found(self) -> bool:
        return bool((self.labels > 0).any())

    @property
    def nucleus(self) -> np.ndarray:
        return self.labels == 2

    @property
    def cytoplasm(self) -> np.ndarray:
        return self.labels == 1

    def summary(self) -> dict:
        """JSON-friendly description without the arrays."""
        return {
            "method": self.method,
            "algorithm": self.algorithm,
            "predicted_class": self.predicted_class,
            "probability": self.probability,
            "probabilities": self.probabilities,
            "explained_class": self.explained_class,
            "inpainter": self.inpainter,
            "model": self.model,
            "cell_found": self.cell_found,
            "nucleus_pixels": int(self.nucleus.sum()),
            "cytoplasm_pixels": int(self.cytoplasm.sum()),
            "timings": {k: round(v, 5) for k, v in self.timings.items()},
            "settings": self.settings,
            "warnings": list(self.warnings),
        }

    def overlay(self, image, alpha: float = 0.45) -> np.ndarray:
        """RGB uint8 picture of the labels over the image (nucleus blue, cytoplasm orange)."""
        return overlay(image, self.labels, alpha)


LABEL_COLOURS = {1: (255, 150, 30), 2: (40, 90, 255)}  # cytoplasm orange, nucleus blue


def overlay(image, labels: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    rgb = to_rgb_uint8(image)[0].astype(np.float32)
    out = rgb.copy()
    for value, colour in LABEL_COLOURS.items():
        sel = labels == value
        out[sel] = (1 - alpha) * rgb[sel] + alpha * np.asarray(colour, np.float32)
    edges = cv2.morphologyEx(labels, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) > 0
    out[edges] = (255, 255, 255)
    return out.astype(np.uint8)


def heatmap_rgb(heatmap: np.ndarray) -> np.ndarray:
    """A heatmap as a colour picture (OpenCV's JET), RGB uint8."""
    heat = np.clip(np.nan_to_num(heatmap), 0, 1)
    return cv2.cvtColor(cv2.applyColorMap((heat * 255).astype(np.uint8), cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)


# --------------------------------------------------------------------------------------------
# shared steps


def _scaled(pixels_at_128: float, shape) -> int:
    return max(1, int(round(pixels_at_128 * max(shape[:2]) / 128.0)))


def _smooth(heat: np.ndarray, sigma_at_128: float) -> np.ndarray:
    if sigma_at_128 <= 0:
        return heat
    sigma = sigma_at_128 * max(heat.shape) / 128.0
    out = cv2.GaussianBlur(heat, (0, 0), sigma)
    peak = out.max()
    return out / peak if peak > 0 else out


NUCLEUS_SEEDS = ("colour", "dark", "rough")
#: least lightness difference (Lab L, 0-255) for the rough nucleus to count as two colour classes
MIN_NUCLEUS_CONTRAST = 12.0


def lightness(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(cv2.medianBlur(rgb, 3), cv2.COLOR_RGB2Lab)[..., 0].astype(np.float32)


#: lightness difference (Lab L) between the halves of a nucleus seed above which it is split again
RESPLIT_CONTRAST = 15.0


def dark_part(rgb: np.ndarray, region: np.ndarray, grow: bool = True,
              min_contrast: float = MIN_NUCLEUS_CONTRAST) -> np.ndarray:
    """The darker colour class (Otsu on Lab lightness) inside ``region``; the whole region when it
    holds one colour class only (its two Otsu classes differ by less than MIN_NUCLEUS_CONTRAST)."""
    from skimage.filters import threshold_otsu

    region = np.asarray(region, bool)
    if region.sum() < 16:
        return region
    L = lightness(rgb)
    values = L[region]
    if np.ptp(values) == 0:
        return region
    t = threshold_otsu(values)
    dark, light = values[values <= t], values[values > t]
    if light.size == 0 or light.mean() - dark.mean() < min_contrast:
        return region
    seed = region & (t >= L)
    if not grow:
        return seed
    # a partial explanation covers part of the nucleus: take the whole dark blob it touches,
    # but no farther than the region's own equivalent radius
    reach = dilate(region, max(1, int(round(np.sqrt(region.sum() / np.pi)))))
    lab, _ = ndi.label((t >= L) & reach)
    touched = np.unique(lab[seed])
    return np.isin(lab, touched[touched > 0])


#: the probable-nucleus zone reaches this fraction of the seed's equivalent radius beyond it
NUCLEUS_GROW = 0.3


def refine_nucleus(rgb: np.ndarray, candidate: np.ndarray, far_bg: np.ndarray, iterations: int,
                   work_size=DEFAULT_WORK_SIZE, nucleus_seed: str = "dark",
                   timings: dict | None = None) -> np.ndarray:
    """GrabCut the nucleus from a candidate region (the heatmap's top group).

    ``nucleus_seed`` "dark" keeps the candidate's darker colour class (a stained nucleus is darker
    than cytoplasm: a coarse heatmap's top group often spills over the cytoplasm, and GrabCut would
    then learn cytoplasm colours as nucleus); "rough" keeps the candidate as is (the paper).
    The (eroded) seed is sure nucleus and a zone around it (NUCLEUS_GROW of the seed's equivalent
    radius: a wider zone fills GrabCut's nucleus model with cytoplasm colours) probable nucleus,
    so the cut can both trim a spilled seed and grow a partial one; ``far_bg`` is sure background.
    """
    if nucleus_seed not in NUCLEUS_SEEDS:
        raise SegmentationError(f"nucleus_seed must be one of {NUCLEUS_SEEDS}, got {nucleus_seed!r}")
    t0 = time.perf_counter()
    if nucleus_seed == "colour":
        seed = colour_nucleus_seed(rgb, candidate)
    elif nucleus_seed == "dark":
        seed = dark_part(rgb, candidate)
    else:
        seed = np.asarray(candidate, bool)
    t1 = time.perf_counter()
    if timings is not None:
        timings["nucleus_seed"] = t1 - t0
        timings["grabcut_nucleus"] = 0.0
    if not seed.any():
        return seed
    core = erode(seed, 1)
    zone = dilate(seed, max(1, int(round(NUCLEUS_GROW * np.sqrt(seed.sum() / np.pi)))))
    nucleus = grabcut(rgb, seed_map(rgb.shape, zone, sure_fg=core if core.any() else None,
                                    sure_bg=far_bg & ~zone), iterations, work_size)
    if timings is not None:
        timings["grabcut_nucleus"] = time.perf_counter() - t1
    return nucleus


def darkest_colour_class(rgb: np.ndarray) -> np.ndarray:
    """The darkest of three colour classes of the image (k-means on Lab, as the baseline)."""
    return colour_rough_map(rgb) == 2


def colour_nucleus_seed(rgb: np.ndarray, candidate: np.ndarray) -> np.ndarray:
    """The darkest-colour blobs that the explanation's candidate region touches.

    Colour draws the boundary (a stained nucleus is the darkest thing in the cell); the
    explanation chooses which dark blob is the nucleus that drove the decision (a crop often holds
    neighbouring nuclei or debris). Falls back to :func:`dark_part` when no dark blob is touched.
    """
    candidate = np.asarray(candidate, bool)
    dark = dark_part(rgb, darkest_colour_class(rgb))
    lab, n = ndi.label(dark)
    if n == 0 or not candidate.any():
        return dark_part(rgb, candidate)
    overlap = np.bincount(lab[candidate], minlength=n + 1)
    overlap[0] = 0
    if overlap.max() == 0:
        return dark_part(rgb, candidate)
    # blobs touched by a real share of the candidate (not a stray pixel of its rim)
    keep = np.flatnonzero(overlap >= max(1, 0.1 * overlap.max()))
    seed = np.isin(lab, keep)
    # dark cytoplasm (normal cells stained dark) can share the darkest class with a small
    # nucleus: split the seed again by lightness while its two halves still differ clearly
    for _ in range(2):
        smaller = dark_part(rgb, seed, grow=False, min_contrast=RESPLIT_CONTRAST)
        if smaller.sum() == seed.sum() or not smaller.any():
            break
        seed = smaller
    return seed


def background_like(rgb: np.ndarray) -> np.ndarray:
    """Pixels of the brightest of three lightness classes (multi-Otsu): where the slide shows
    through. Unstained background is the brightest thing in a bright-field Pap smear image."""
    from skimage.filters import threshold_multiotsu

    L = lightness(rgb)
    if np.ptp(L) < 3:
        return np.zeros(L.shape, bool)
    try:
        t = threshold_multiotsu(L, classes=3)
    except ValueError:  # too few grey levels for three classes
        return np.zeros(L.shape, bool)
    return t[-1] < L


def refine_rough(rgb: np.ndarray, rough: np.ndarray, nucleus_iterations: int = 5,
                 cytoplasm_iterations: int = 5, dilation: float = 12, work_size=DEFAULT_WORK_SIZE,
                 timings: dict | None = None, nucleus_seed: str = "colour",
                 inpaint_nucleus: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """GrabCut the rough nucleus (rough == 2), then the cell (rough >= 1) seeded with that nucleus.

    Seeds: see :func:`refine_nucleus` for the nucleus (pixels farther than ``dilation`` from the
    rough cell are sure background there). For the cell, the rough cell is probable foreground,
    the refined nucleus sure foreground; sure background only where a pixel is both far from the
    rough cell and of the image's brightest colour class (:func:`background_like`): a heatmap
    often covers only part of the cytoplasm, and a sure background drawn from it alone would cut
    the cell. Everything else is probable background.
    Returns (nucleus, cell) bool masks.
    """
    timings = timings if timings is not None else {}
    r = _scaled(dilation, rgb.shape)
    nuc_rough, cell_rough = rough == 2, rough >= 1
    far_bg = ~dilate(cell_rough, r)
    nucleus = refine_nucleus(rgb, nuc_rough, far_bg, nucleus_iterations, work_size, nucleus_seed, timings)
    t1 = time.perf_counter()
    image_for_cell, sure_cell = rgb, erode(nucleus, 1)
    if inpaint_nucleus and nucleus.any():
        # Algorithm 2's idea: without the dark nucleus in its colour model, GrabCut's cell model is
        # the cytoplasm's own colours
        sure_cell = dilate(nucleus, r)
        image_for_cell, _ = inpaint(rgb, sure_cell, "opencv")
    t2 = time.perf_counter()
    cell = grabcut(image_for_cell, seed_map(rgb.shape, cell_rough, sure_fg=sure_cell,
                                            sure_bg=far_bg & background_like(rgb)),
                   cytoplasm_iterations, work_size)
    t3 = time.perf_counter()
    if inpaint_nucleus:
        timings["inpainting"] = t2 - t1
    timings["grabcut_cytoplasm"] = t3 - t2
    return nucleus, cell


def colour_rough_map(rgb: np.ndarray, seed: int = 0) -> np.ndarray:
    """Non-XAI rough map: k-means (k=3) on the median-filtered Lab image; darkest = nucleus,
    middle = cytoplasm, brightest = background."""
    lab = cv2.cvtColor(cv2.medianBlur(rgb, 5), cv2.COLOR_RGB2Lab).reshape(-1, 3).astype(np.float32)
    rng = np.random.default_rng(seed)
    sample = lab if len(lab) <= 4096 else lab[rng.choice(len(lab), 4096, replace=False)]
    k = min(3, len(np.unique(sample, axis=0)))
    if k < 2:
        return np.zeros(rgb.shape[:2], np.uint8)
    centres, _ = kmeans(sample, k)
    assign = ((lab[:, None, :] - centres[None].astype(np.float32)) ** 2).sum(-1).argmin(1)
    order = np.argsort(-centres[:, 0])  # brightest first
    rank = np.empty(k, int)
    rank[order] = np.arange(k) + (3 - k)
    return rank[assign].reshape(rgb.shape[:2]).astype(np.uint8)


def _no_cell(rgb: np.ndarray) -> bool:
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)
    return grey.size < 16 or float(grey.std()) < MIN_CONTRAST


# --------------------------------------------------------------------------------------------
# the algorithms


def _explain_step(explanation, model, rgb, method, target, layer, progress):
    """Every algorithm's first step: report it, explain (or reuse), start the timings with the
    explanation's own. Returns ``(explanation, timings)``."""
    _report(progress, "explain", 0.1)
    expl = _reuse_or_explain(explanation, model, rgb, method, target, layer)
    return expl, dict(expl.extras.get("timings", {}))


def _reuse_or_explain(explanation, model, rgb, method, target, layer):
    """The given explanation (checked against the method and target, resized to the image) or a new one."""
    if explanation is None:
        return explain(model, rgb, method=method, target=target, layer=layer)
    if explanation.method != method:
        raise SegmentationError(f"explanation= was made by {explanation.method!r}, not by method {method!r};"
                                " pass an explanation of the same method, or none")
    if target is not None and explanation.target_class != (target if isinstance(target, str) else
                                                           model.class_names[int(target)]):
        raise SegmentationError(f"explanation= explains {explanation.target_class!r}, not target {target!r}")
    heat = explanation.heatmap
    if heat.shape != rgb.shape[:2]:
        import dataclasses

        heat = np.clip(cv2.resize(heat, (rgb.shape[1], rgb.shape[0]), interpolation=cv2.INTER_LINEAR), 0, 1)
        explanation = dataclasses.replace(explanation, heatmap=heat.astype(np.float32))
    return explanation


def algorithm1_cam(model, rgb: np.ndarray, method: str = "gradcam++", grouping: str = "gmm",
                   target=None, layer=None, nucleus_iterations: int = 5, cytoplasm_iterations: int = 5,
                   dilation: float = 12, smooth: float = 0.0, work_size=DEFAULT_WORK_SIZE,
                   nucleus_seed: str = "colour", inpaint_nucleus: bool = True,
                   explanation=None, progress=None) -> SegmentationResult:
    """Algorithm 1: CAM heatmap -> 3-group rough map -> GrabCut nucleus, GrabCut cell -> combine.

    ``explanation``: an :class:`Explanation` of this image by ``method`` computed before (e.g. by
    the Classify & explain step), used instead of explaining again."""
    expl, timings = _explain_step(explanation, model, rgb, method, target, layer, progress)
    _report(progress, "group", 0.4)
    t0 = time.perf_counter()
    heat = _smooth(expl.heatmap, smooth)
    rough = group(heat, 3, grouping)
    timings["grouping"] = time.perf_counter() - t0
    _report(progress, "grabcut", 0.5)
    nucleus, cell = refine_rough(rgb, rough, nucleus_iterations, cytoplasm_iterations, dilation, work_size,
                                 timings, nucleus_seed, inpaint_nucleus)
    t0 = time.perf_counter()
    labels = combine(nucleus, cell)
    timings["combine"] = time.perf_counter() - t0
    return SegmentationResult(
        labels=labels, rough=rough, heatmap=expl.heatmap, method=method, algorithm="cam",
        predicted_class=expl.predicted_class, probability=expl.probability,
        probabilities=expl.probabilities, explained_class=expl.target_class, timings=timings,
        settings={"grouping": grouping, "layer": expl.layer, "nucleus_iterations": nucleus_iterations,
                  "cytoplasm_iterations": cytoplasm_iterations, "dilation": dilation, "smooth": smooth,
                  "work_size": work_size, "nucleus_seed": nucleus_seed, "inpaint_nucleus": inpaint_nucleus},
    )


def algorithm2_lrp(model, rgb: np.ndarray, method: str = "lrp-ruleset1", grouping: str = "kmeans",
                   target=None, nucleus_iterations: int = 5, cytoplasm_iterations: int = 5,
                   dilation: float = 3, smooth: float = 2.0, log_scale_factor: float = 1000.0,
                   inpainter: str = "auto", lama_model=None, work_size=DEFAULT_WORK_SIZE,
                   nucleus_seed: str = "colour", explanation=None, progress=None) -> SegmentationResult:
    """Algorithm 2: LRP relevance -> 2-group nucleus seed -> GrabCut nucleus; log-scaled 3-group
    map minus the nucleus -> cytoplasm seed; inpaint the dilated nucleus; GrabCut the cell on the
    inpainted image; combine. ``explanation``: as in :func:`algorithm1_cam`."""
    expl, timings = _explain_step(explanation, model, rgb, method, target, None, progress)
    _report(progress, "group", 0.4)
    t0 = time.perf_counter()
    heat = _smooth(expl.heatmap, smooth)
    top = group(heat, 2, grouping) == 1
    rough = group(log_scale(heat, log_scale_factor), 3, grouping)
    timings["grouping"] = time.perf_counter() - t0
    _report(progress, "grabcut nucleus", 0.5)
    r = _scaled(dilation, rgb.shape)
    far_bg = ~dilate(rough >= 1, 2 * r)
    nucleus = refine_nucleus(rgb, top, far_bg, nucleus_iterations, work_size, nucleus_seed, timings)
    _report(progress, "inpaint", 0.7)
    t0 = time.perf_counter()
    nucleus_dilated = dilate(nucleus, r)
    ring = dilate(nucleus_dilated, r) & ~nucleus_dilated
    cytoplasm_seed = ((rough >= 1) & ~nucleus_dilated) | ring
    removed, inpainter_used = inpaint(rgb, nucleus_dilated, inpainter, lama_model)
    timings["inpainting"] = time.perf_counter() - t0
    _report(progress, "grabcut cytoplasm", 0.8)
    t0 = time.perf_counter()
    cell = grabcut(removed, seed_map(rgb.shape, cytoplasm_seed, sure_fg=nucleus_dilated,
                                     sure_bg=far_bg & background_like(rgb)),
                   cytoplasm_iterations, work_size)
    timings["grabcut_cytoplasm"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    labels = combine(nucleus, cell)
    timings["combine"] = time.perf_counter() - t0
    rough_map = rough.copy()
    rough_map[top] = 2
    return SegmentationResult(
        labels=labels, rough=rough_map, heatmap=expl.heatmap, method=method, algorithm="lrp",
        predicted_class=expl.predicted_class, probability=expl.probability,
        probabilities=expl.probabilities, explained_class=expl.target_class, relevance=expl.relevance,
        inpainter=inpainter_used, timings=timings,
        settings={"grouping": grouping, "nucleus_iterations": nucleus_iterations,
                  "cytoplasm_iterations": cytoplasm_iterations, "dilation": dilation, "smooth": smooth,
                  "log_scale_factor": log_scale_factor, "inpainter": inpainter, "work_size": work_size,
                  "nucleus_seed": nucleus_seed},
    )


def colour_baseline(rgb: np.ndarray, model=None, nucleus_iterations: int = 5, cytoplasm_iterations: int = 5,
                    dilation: float = 12, work_size=DEFAULT_WORK_SIZE, nucleus_seed: str = "dark",
                    inpaint_nucleus: bool = True, progress=None) -> SegmentationResult:
    """The non-XAI baseline: colour k-means rough map + the same GrabCut refinement as Algorithm 1.
    The classifier (if given) still answers, so the result carries a class."""
    timings: dict = {}
    cls = prob = None
    probs: dict = {}
    if model is not None:
        t0 = time.perf_counter()
        cls, prob, probs = classify(model, rgb)
        timings["classify"] = time.perf_counter() - t0
    _report(progress, "cluster colours", 0.3)
    t0 = time.perf_counter()
    rough = colour_rough_map(rgb)
    timings["grouping"] = time.perf_counter() - t0
    _report(progress, "grabcut", 0.5)
    nucleus, cell = refine_rough(rgb, rough, nucleus_iterations, cytoplasm_iterations, dilation, work_size,
                                 timings, nucleus_seed, inpaint_nucleus)
    t0 = time.perf_counter()
    labels = combine(nucleus, cell)
    timings["combine"] = time.perf_counter() - t0
    return SegmentationResult(
        labels=labels, rough=rough, heatmap=None, method=BASELINE, algorithm="baseline",
        predicted_class=cls, probability=prob, probabilities=probs, timings=timings,
        settings={"nucleus_iterations": nucleus_iterations, "cytoplasm_iterations": cytoplasm_iterations,
                  "dilation": dilation, "work_size": work_size, "nucleus_seed": nucleus_seed,
                  "inpaint_nucleus": inpaint_nucleus},
    )


def self_trained(model, rgb: np.ndarray, segmenter="default", target=None, explain_method: str = "gradcam++",
                 explanation=None, progress=None) -> SegmentationResult:
    """The weakly supervised second stage: labels from a U-Net trained on Algorithm 1's own
    pseudo-masks (no ground truth; :mod:`.selftrain`); the classifier's class and heatmap
    (``explain_method``) come with it, as for every method."""
    from .selftrain import SegmenterError, load_segmenter

    expl, timings = _explain_step(explanation, model, rgb, explain_method, target, None, progress)
    _report(progress, "segment", 0.5)
    t0 = time.perf_counter()
    try:
        seg = load_segmenter(segmenter)
    except SegmenterError as exc:
        raise SegmentationError(str(exc)) from exc
    labels = seg.predict(rgb)
    timings["segmenter"] = time.perf_counter() - t0
    return SegmentationResult(
        labels=labels, rough=labels.copy(), heatmap=expl.heatmap, method=SELF_TRAINED, algorithm="self-trained",
        predicted_class=expl.predicted_class, probability=expl.probability, probabilities=expl.probabilities,
        explained_class=expl.target_class, timings=timings,
        settings={"segmenter": seg.source, "teacher": seg.card.get("teacher"), "explain_method": explain_method},
    )


def _applicable_options(algorithm, options: dict) -> tuple[dict, list[str]]:
    """Split options into those ``algorithm`` takes and those that belong to another algorithm
    (ignored, with a warning: one CLI line can serve every method); unknown names are errors."""
    import inspect

    known = set()
    for func in (algorithm1_cam, algorithm2_lrp, colour_baseline, self_trained):
        known |= set(inspect.signature(func).parameters)
    internal = {"model", "rgb", "method", "grouping", "target", "progress"}
    unknown = sorted(set(options) - known)
    if unknown or set(options) & internal:
        valid = sorted(known - internal)
        raise SegmentationError(f"unknown option(s) {', '.join(sorted(unknown or set(options) & internal))};"
                                f" valid options: {', '.join(valid)}")
    accepted = set(inspect.signature(algorithm).parameters)
    return ({k: v for k, v in options.items() if k in accepted},
            sorted(k for k in options if k not in accepted))


def _report(progress, stage: str, fraction: float):
    if progress is not None:
        progress(stage, fraction)


def _scale_back(result: SegmentationResult, shape) -> None:
    size = (int(shape[1]), int(shape[0]))
    result.settings["processed_shape"] = list(result.labels.shape)
    result.labels = cv2.resize(result.labels, size, interpolation=cv2.INTER_NEAREST)
    result.rough = cv2.resize(result.rough, size, interpolation=cv2.INTER_NEAREST)
    if result.heatmap is not None:
        result.heatmap = np.clip(cv2.resize(result.heatmap, size, interpolation=cv2.INTER_LINEAR), 0, 1)


def segment_cell(image, model="default", method: str = "gradcam++", grouping: str | None = None,
                 target=None, device=None, progress=None, max_pixels: int | None = MAX_PIXELS,
                 operating_point=None, **options) -> SegmentationResult:
    """Segment one cell image into nucleus / cytoplasm / background.

    Parameters
    ----------
    image : array (H, W) grey, (H, W, 3) RGB or (H, W, 4) RGBA; uint8, uint16 or float
    model : "default" (bundled), a path to a ``.safetensors`` model, or a loaded classifier
    method : a CAM method ("gradcam++" default, "gradcam++-paper", "gradcam") -> Algorithm 1;
        "lrp-ruleset1" / "lrp-ruleset2" -> Algorithm 2; "colour-baseline" -> the non-XAI baseline
    grouping : "gmm" (Algorithm 1 default), "kmeans" (Algorithm 2 default), "intermeans", "threshold"
    target : class to explain (None = predicted; "abnormal" / "normal")
    device : "cpu", "cuda", ... (default: CUDA, else MPS, else CPU)
    progress : optional callable ``progress(stage: str, fraction: float)``
    max_pixels : refuse images larger than this (height x width) with an ImageError that names the
        region-of-interest routes; images with a side above PROCESS_SIZE px are processed downscaled
    operating_point : how ``predicted_class`` is called from the probabilities: None (argmax),
        ``"screening"`` (the card's validation-chosen threshold on p(abnormal)) or a threshold;
        the explanation (target None) still follows the network's most probable class
    **options : passed to the algorithm (``nucleus_iterations``, ``cytoplasm_iterations``,
        ``dilation``, ``smooth``, ``inpainter``, ``lama_model``, ``layer``, ``work_size``)

    Returns
    -------
    SegmentationResult
        ``labels`` (0 background, 1 cytoplasm, 2 nucleus), ``heatmap``, ``predicted_class``,
        ``probability``, ``method``, ``timings`` (seconds per stage) and more.
        An image without contrast yields all-background labels and a warning instead of an
        invented cell.
    """
    t_start = time.perf_counter()
    method = str(method).lower()
    model_obj = load_model(model, device=device) if model is not None else None
    if model_obj is not None:
        abnormal_threshold(model_obj, operating_point)  # a bad operating point fails before any work
    if method not in SEGMENT_METHODS:
        raise SegmentationError(f"unknown method {method!r}; choose one of {', '.join(SEGMENT_METHODS)}")
    if grouping is not None and grouping not in GROUPINGS:
        raise SegmentationError(f"unknown grouping {grouping!r}; choose one of {', '.join(GROUPINGS)}")
    check_size(np.shape(image), "image", max_pixels)
    rgb, warnings = to_rgb_uint8(image)
    full_shape = rgb.shape[:2]
    if max(full_shape) > PROCESS_SIZE:
        scale = PROCESS_SIZE / max(full_shape)
        small = (max(1, round(full_shape[1] * scale)), max(1, round(full_shape[0] * scale)))
        rgb = cv2.resize(rgb, small, interpolation=cv2.INTER_AREA)
        warnings.append(f"processed at {small[1]} x {small[0]} px (downscaled from {full_shape[0]} x"
                        f" {full_shape[1]}); labels and heatmap scaled back to the image")
    model_name = getattr(model_obj, "source", None)
    if _no_cell(rgb):
        # nothing to segment: the classifier still answers, no cell is invented
        cls = prob = None
        probs: dict = {}
        if model_obj is not None:
            cls, prob, probs = classify(model_obj, rgb, operating_point=operating_point)
        zeros = np.zeros(full_shape, np.uint8)
        return SegmentationResult(
            labels=zeros, rough=zeros.copy(), heatmap=np.zeros(full_shape, np.float32), method=method,
            algorithm="none", predicted_class=cls, probability=prob, probabilities=probs, model=model_name,
            timings={"total": time.perf_counter() - t_start},
            warnings=warnings + [("no cell found: the image has no contrast (grey-level std"
                                 f" < {MIN_CONTRAST}); labels are all background")],
        )
    algorithm = colour_baseline if method == BASELINE else algorithm2_lrp if method in LRP_METHODS \
        else self_trained if method == SELF_TRAINED else algorithm1_cam
    options, ignored = _applicable_options(algorithm, options)
    if method == BASELINE:
        result = colour_baseline(rgb, model_obj, progress=progress, **options)
    elif method == SELF_TRAINED:
        if model_obj is None:
            raise SegmentationError("method 'self-trained' also classifies and explains: pass model= (e.g. 'default')")
        result = self_trained(model_obj, rgb, target=target, progress=progress, **options)
    else:
        if model_obj is None:
            raise SegmentationError(f"method {method!r} explains a classifier: pass model= (e.g. 'default')")
        if method in LRP_METHODS:
            result = algorithm2_lrp(model_obj, rgb, method, grouping or "kmeans", target, progress=progress,
                                    **options)
        else:
            result = algorithm1_cam(model_obj, rgb, method, grouping or "gmm", target, progress=progress,
                                    **options)
    result.model = model_name
    if operating_point is not None and model_obj is not None and result.probabilities:
        names = list(result.probabilities)
        chosen = decide(model_obj, [result.probabilities[n] for n in names], operating_point)
        result.predicted_class, result.probability = names[chosen], result.probabilities[names[chosen]]
    result.warnings = warnings + [f"option {k!r} does not apply to method {method!r}; ignored"
                                  for k in ignored] + result.warnings
    if not result.cell_found:
        result.warnings.append("no cell found: the refinement left no nucleus or cytoplasm")
    if rgb.shape[:2] != full_shape:
        _scale_back(result, full_shape)
    result.timings["total"] = time.perf_counter() - t_start
    _report(progress, "done", 1.0)
    return result


__all__ = [
    "SegmentationResult", "SegmentationError", "segment_cell", "algorithm1_cam", "algorithm2_lrp",
    "colour_baseline", "self_trained", "refine_rough", "colour_rough_map", "overlay", "heatmap_rgb",
    "SEGMENT_METHODS", "BASELINE", "SELF_TRAINED",
]
