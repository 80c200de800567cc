"""Whether an input is a cell the classifier can judge: a verdict only where one means something.

A classifier answers for anything it is fed: random noise, a blank slide, a scrap of text. Before a
class is called, :func:`assess` checks the input and names each reason it fails:

``too_small``
    a side below :data:`MIN_SIDE` px (the smallest training cell is 32 px; below 24 px the
    network sees an upscaled smear of a few pixels).
``no_contrast``
    grey-level standard deviation below :data:`MIN_CONTRAST` (a blank, flat image), or no
    structure: the standard deviation of the grey image seen at 96 px and blurred (sigma 2 px)
    below :data:`MIN_STRUCTURE` (a blank slide with sensor noise; every Herlev cell is above 9); with
    the model's statistics, also below the limit its validation cells stay above (a few specks on
    a slide).
``no_cell_found``
    the segmentation found no nucleus or cytoplasm (only when labels are given).
``unlike_training_cells``
    the classifier's penultimate features (its CAM layer, globally average pooled) are far from
    those of the training cells: the smallest Mahalanobis distance to a class mean under the
    training cells' shared, Ledoit-Wolf shrunk covariance (Lee et al. 2018) is above the model's
    threshold.
``unusual_colours``
    the image's colour statistics (:func:`colour_statistics`) are far (Mahalanobis distance)
    from those of the training cells.

The first three need nothing but the image. The last two need statistics of the model's own
training cells, computed by :func:`fit_statistics` and stored by :func:`store_statistics` in the
model card (``applicability``: colour statistics, thresholds, the rule) and a safetensors
sidecar beside the weights (``<name>.applicability.safetensors``: the feature means and
precision). A model without them (a wrapped network, an older card) runs the stat-free checks
only, and :class:`Applicability` says which checks ran.

Thresholds are chosen on the validation split of real cells, never on non-cell inputs: the
threshold is :data:`THRESHOLD_MARGIN` times the :data:`THRESHOLD_PERCENTILE` th percentile of the
validation cells' distances (for the structure contrast, bounded from below: the 1st percentile
divided by the margin).
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

#: below this side (px) an input is too small to be judged
MIN_SIDE = 24
#: below this grey-level standard deviation an image is flat (holds no cell)
MIN_CONTRAST = 2.0
#: below this standard deviation of the blurred grey image (at 96 px, sigma 2 px) an image has no
#: structure: a flat image with pixel noise (the lowest of the 733 Herlev cells is 9.4)
MIN_STRUCTURE = 3.0
#: thresholds: this percentile of the validation cells' distances ...
THRESHOLD_PERCENTILE = 99.0
#: ... times this margin (a percentile of ~75 cells is itself uncertain)
THRESHOLD_MARGIN = 1.2
#: the order the checks run and are reported in
CHECKS = ("too_small", "no_contrast", "no_cell_found", "unlike_training_cells", "unusual_colours")
#: checks that need the model's training statistics
STATISTICAL_CHECKS = ("unlike_training_cells", "unusual_colours")
#: each check's failure in a few words (what a widget shows after "no verdict:")
REASON_NAMES = {"too_small": "too small", "no_contrast": "no contrast", "no_cell_found": "no cell found",
                "unlike_training_cells": "unlike any training cell",
                "unusual_colours": "far outside the training colours"}
#: what would get a verdict (said in the warning)
WHAT_WORKS = (f"a single stained cell cropped tight, RGB, at least {MIN_SIDE} px a side, imaged like the"
              " model's training cells")
#: the card key and the sidecar's name part
CARD_KEY = "applicability"
SIDECAR_SUFFIX = ".applicability.safetensors"
#: the names of the colour statistics, in :func:`colour_statistics`' order
COLOUR_FEATURES = ("mean_r", "mean_g", "mean_b", "std_r", "std_g", "std_b", "mean_chroma",
                   "channel_correlation")


@dataclass
class Applicability:
    """Whether one input is a cell the classifier can judge, and why not.

    Attributes
    ----------
    judgeable : bool
        True when every check that ran passed.
    reasons : list of str
        The failed checks' codes (see :data:`CHECKS`), in check order.
    details : list of str
        One sentence per failed check (the measured value and the limit).
    checks_run : list of str
        The checks that ran.
    checks_skipped : dict of str to str
        Checks that did not run, and why (no training statistics, no labels given, ...).
    scores : dict
        The measured values (side, contrast, distances) and the thresholds used.
    """

    judgeable: bool
    reasons: list = field(default_factory=list)
    details: list = field(default_factory=list)
    checks_run: list = field(default_factory=list)
    checks_skipped: dict = field(default_factory=dict)
    scores: dict = field(default_factory=dict)

    @property
    def reason_text(self) -> str:
        """The failed checks as one line ("" when judgeable)."""
        return "; ".join(self.details)

    def warning(self) -> str | None:
        """The warning a result carries when no verdict is given (None when judgeable)."""
        if self.judgeable:
            return None
        return (f"no verdict: {self.reason_text}. The class is withheld (the raw probabilities stay in"
                f" 'probabilities'); what gets a verdict: {WHAT_WORKS}")

    def summary(self) -> dict:
        """JSON-friendly description."""
        return {"judgeable": self.judgeable, "not_judgeable": list(self.reasons), "details": list(self.details),
                "checks_run": list(self.checks_run), "checks_skipped": dict(self.checks_skipped),
                "scores": {k: (round(v, 4) if isinstance(v, float) else v) for k, v in self.scores.items()}}


# ----------------------------------------------------------------------------------------------
# measurements


def colour_statistics(rgb: np.ndarray, size: int = 96) -> np.ndarray:
    """Eight colour statistics of an RGB uint8 image, measured at ``size`` x ``size`` px.

    Per-channel means and standard deviations (0-255), the mean chroma (max - min of R, G, B per
    pixel) and the mean correlation between the three channels (1 for a grey image, near 0 for
    colour noise). Measured after resizing to the model's input size, as the network sees it.

    Parameters
    ----------
    rgb : ndarray (H, W, 3) uint8
    size : int
        The side the image is resized to first.

    Returns
    -------
    ndarray (8,) float64
        In the order of :data:`COLOUR_FEATURES`.

    Examples
    --------
    >>> import numpy as np
    >>> colour_statistics(np.full((40, 40, 3), 200, np.uint8))[:3].tolist()
    [200.0, 200.0, 200.0]
    """
    from .preprocess import resize

    x = resize(np.ascontiguousarray(rgb), size).reshape(-1, 3).astype(np.float64)
    mean = x.mean(0)
    std = x.std(0)
    chroma = float((x.max(1) - x.min(1)).mean())
    corr = []
    for a, b in ((0, 1), (0, 2), (1, 2)):
        if std[a] < 1e-6 or std[b] < 1e-6:
            corr.append(1.0)  # a flat channel: no evidence of colour noise
        else:
            corr.append(float(((x[:, a] - mean[a]) * (x[:, b] - mean[b])).mean() / (std[a] * std[b])))
    return np.array([*mean, *std, chroma, float(np.mean(corr))], np.float64)


def grey_contrast(rgb: np.ndarray) -> float:
    """The grey-level standard deviation of an RGB uint8 image."""
    return float(cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY).astype(np.float32).std())


def structure_contrast(rgb: np.ndarray) -> float:
    """The grey-level standard deviation of an RGB uint8 image seen at 96 x 96 px and blurred
    (Gaussian, sigma 2 px): its contrast at the scale of cell parts, not of pixel noise."""
    from .preprocess import resize

    grey = cv2.cvtColor(resize(np.ascontiguousarray(rgb), 96), cv2.COLOR_RGB2GRAY).astype(np.float32)
    return float(cv2.GaussianBlur(grey, (0, 0), 2.0).std())


def cell_features(model, images) -> np.ndarray:
    """The classifier's penultimate features of each image: its CAM layer's output, averaged over
    space (for the bundled compact network exactly the vector its last linear layer reads).

    Parameters
    ----------
    model : CellClassifier
    images : sequence of ndarray (H, W, 3) uint8
        Any sizes; each is preprocessed as for classification.

    Returns
    -------
    ndarray (N, D) float64
    """
    import torch

    from .preprocess import preprocess_array

    if model.cam_layer is None:
        raise ValueError("the model names no CAM layer, whose output the features are")
    module = dict(model.net.named_modules()).get(model.cam_layer)
    if module is None:
        raise ValueError(f"the model has no layer {model.cam_layer!r}")
    out: list[np.ndarray] = []
    grabbed = {}

    def hook(_module, _inputs, output):
        grabbed["x"] = output.detach()

    arrays = [preprocess_array(np.ascontiguousarray(im), model.preprocess) for im in images]
    with model.lock, torch.no_grad():
        handle = module.register_forward_hook(hook)
        try:
            for start in range(0, len(arrays), 64):
                x = torch.from_numpy(np.stack(arrays[start:start + 64])).to(model.device)
                model.net(x)
                feats = grabbed["x"]
                feats = feats.mean(dim=(2, 3)) if feats.ndim == 4 else feats.flatten(1)
                out.append(feats.cpu().double().numpy())
        finally:
            handle.remove()
    return np.concatenate(out) if out else np.zeros((0, 0))


def _mahalanobis(x: np.ndarray, means: np.ndarray, precision: np.ndarray) -> np.ndarray:
    """The smallest Mahalanobis distance of each row of ``x`` (N, D) to the rows of ``means``."""
    x = np.atleast_2d(x)
    best = np.full(len(x), np.inf)
    for mu in np.atleast_2d(means):
        d = x - mu
        best = np.minimum(best, np.einsum("nd,de,ne->n", d, precision, d))
    return np.sqrt(np.maximum(best, 0.0))


# ----------------------------------------------------------------------------------------------
# statistics of the training cells


def _threshold(val_scores: np.ndarray) -> float:
    return float(THRESHOLD_MARGIN * np.percentile(val_scores, THRESHOLD_PERCENTILE))


def _low_threshold(val_scores: np.ndarray) -> float:
    """The same rule for a statistic bounded from below: the (100 - p)th percentile / margin."""
    return float(np.percentile(val_scores, 100.0 - THRESHOLD_PERCENTILE) / THRESHOLD_MARGIN)


def fit_statistics(model, train_images, train_labels, val_images) -> tuple[dict, dict]:
    """Statistics of the training cells and thresholds chosen on the validation cells.

    Parameters
    ----------
    model : CellClassifier
    train_images : sequence of ndarray (H, W, 3) uint8
        The model's training split.
    train_labels : sequence of int
        Their class indices (the feature distance is to the nearest class mean).
    val_images : sequence of ndarray (H, W, 3) uint8
        The model's validation split (real cells the model did not train on).

    Returns
    -------
    card_block : dict
        For the card's ``applicability`` key: colour means, precision and threshold, the feature
        threshold, the rule, the counts and the validation distances' spread.
    tensors : dict of str to ndarray
        ``feature_means`` (C, D) and ``feature_precision`` (D, D), for the sidecar.
    """
    from sklearn.covariance import LedoitWolf

    size = model.preprocess.input_size
    labels = np.asarray(train_labels)
    # colours: one Gaussian over all training cells
    c_train = np.stack([colour_statistics(im, size) for im in train_images])
    c_val = np.stack([colour_statistics(im, size) for im in val_images])
    c_mean = c_train.mean(0)
    c_prec = LedoitWolf().fit(c_train).precision_
    c_val_d = _mahalanobis(c_val, c_mean[None], c_prec)
    # features: class means, shared covariance
    f_train = cell_features(model, train_images)
    f_val = cell_features(model, val_images)
    classes = sorted(set(labels.tolist()))
    means = np.stack([f_train[labels == k].mean(0) for k in classes])
    centred = f_train - means[np.searchsorted(classes, labels)]
    f_prec = LedoitWolf(assume_centered=True).fit(centred).precision_
    f_val_d = _mahalanobis(f_val, means, f_prec)
    f_train_d = _mahalanobis(f_train, means, f_prec)
    c_train_d = _mahalanobis(c_train, c_mean[None], c_prec)
    s_train = np.array([structure_contrast(im) for im in train_images])
    s_val = np.array([structure_contrast(im) for im in val_images])

    def spread(d):
        return {"median": round(float(np.median(d)), 3), "p99": round(float(np.percentile(d, 99)), 3),
                "max": round(float(d.max()), 3)}

    block = {
        "rule": (f"threshold = {THRESHOLD_MARGIN} x percentile {THRESHOLD_PERCENTILE:g} of the validation cells'"
                 f" distances; for the structure contrast (bounded from below) percentile"
                 f" {100 - THRESHOLD_PERCENTILE:g} / {THRESHOLD_MARGIN} (chosen on real validation cells only, never"
                 " on non-cell inputs)"),
        "n_train": int(len(train_images)), "n_val": int(len(val_images)),
        "features": {
            "layer": model.cam_layer, "dim": int(means.shape[1]), "classes": [int(k) for k in classes],
            "distance": "min over classes of the Mahalanobis distance (class means, shared Ledoit-Wolf covariance)",
            "threshold": _threshold(f_val_d), "train": spread(f_train_d), "val": spread(f_val_d),
        },
        "structure": {
            "measure": "grey-level std of the image at 96 px blurred with sigma 2 px (structure_contrast)",
            "threshold_low": _low_threshold(s_val), "train": spread(s_train), "val": spread(s_val),
            "min_train": round(float(s_train.min()), 3),
        },
        "colours": {
            "names": list(COLOUR_FEATURES), "size": int(size),
            "mean": [float(v) for v in c_mean], "precision": [[float(v) for v in row] for row in c_prec],
            "distance": "Mahalanobis distance (training mean, Ledoit-Wolf covariance)",
            "threshold": _threshold(c_val_d), "train": spread(c_train_d), "val": spread(c_val_d),
        },
    }
    tensors = {"feature_means": means.astype(np.float32), "feature_precision": f_prec.astype(np.float32)}
    return block, tensors


def sidecar_path(weights) -> Path:
    """Where a model's feature statistics live: ``<name>.applicability.safetensors`` beside it."""
    weights = Path(weights)
    return weights.with_name(weights.stem + SIDECAR_SUFFIX)


def store_statistics(weights, block: dict, tensors: dict, extra: dict | None = None) -> Path:
    """Write the feature statistics beside ``weights`` and the block into its JSON card.

    Parameters
    ----------
    weights : path
        The model's ``.safetensors`` file (its card is the ``.json`` beside it).
    block, tensors : dict
        From :func:`fit_statistics`.
    extra : dict, optional
        More keys for the card's block (e.g. the command that computed it).

    Returns
    -------
    Path
        The sidecar written.
    """
    from safetensors.numpy import save_file

    weights = Path(weights)
    card_path = weights.with_suffix(".json")
    card = json.loads(card_path.read_text())
    side = sidecar_path(weights)
    tmp = side.with_name(side.name + ".tmp")
    save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(tmp))
    tmp.chmod(0o644)
    tmp.replace(side)
    card[CARD_KEY] = {**block, **(extra or {}), "sidecar": side.name}
    tmp_card = card_path.with_name(card_path.name + ".tmp")
    tmp_card.write_text(json.dumps(card, indent=2))
    tmp_card.replace(card_path)
    _CACHE.clear()
    return side


_CACHE: dict = {}
_CACHE_LOCK = threading.Lock()


def _load_statistics(model) -> tuple[dict | None, str]:
    """``(stats, why_not)``: the model's statistics, or None and the reason they are absent."""
    block = (model.card or {}).get(CARD_KEY)
    if not isinstance(block, dict):
        return None, "this model has no statistics of its training cells (see 'cervseg verdict-stats')"
    try:
        colours = block["colours"]
        c_mean = np.asarray(colours["mean"], np.float64)
        c_prec = np.asarray(colours["precision"], np.float64)
        if c_mean.shape != (len(COLOUR_FEATURES),) or c_prec.shape != (len(COLOUR_FEATURES),) * 2:
            raise ValueError("colour statistics of the wrong shape")
        stats = {"colour_mean": c_mean, "colour_precision": c_prec, "colour_threshold": float(colours["threshold"]),
                 "colour_size": int(colours.get("size", model.preprocess.input_size)),
                 "feature_threshold": float(block["features"]["threshold"]),
                 "structure_threshold": float((block.get("structure") or {}).get("threshold_low", MIN_STRUCTURE))}
    except (KeyError, TypeError, ValueError) as exc:
        return None, f"the card's {CARD_KEY!r} block is unreadable ({exc})"
    name = str(block.get("sidecar", ""))
    source = Path(str(model.source))
    if not name or Path(name).name != name or not source.is_file():
        return {**stats, "feature_means": None}, "no feature statistics file beside the model"
    side = source.with_name(name)
    try:
        key = (str(side), side.stat().st_mtime_ns, side.stat().st_size)
    except OSError:
        return {**stats, "feature_means": None}, f"{side.name} is missing beside the model"
    with _CACHE_LOCK:
        tensors = _CACHE.get(key)
    if tensors is None:
        from safetensors.numpy import load_file

        try:
            tensors = load_file(str(side))
            means = np.asarray(tensors["feature_means"], np.float64)
            prec = np.asarray(tensors["feature_precision"], np.float64)
            if means.ndim != 2 or prec.shape != (means.shape[1], means.shape[1]):
                raise ValueError("tensors of the wrong shape")
            tensors = {"feature_means": means, "feature_precision": prec}
        except Exception as exc:  # noqa: BLE001 - a damaged sidecar skips the check, named
            return {**stats, "feature_means": None}, f"{side.name} is unreadable ({type(exc).__name__})"
        with _CACHE_LOCK:
            _CACHE[key] = tensors
    return {**stats, **tensors}, ""


def has_statistics(model) -> bool:
    """Whether the model carries statistics of its training cells (both statistical checks run)."""
    stats, _ = _load_statistics(model)
    return stats is not None and stats.get("feature_means") is not None


# ----------------------------------------------------------------------------------------------
# the checks


def assess(model, image, labels=None) -> Applicability:
    """Whether ``image`` is a cell ``model`` can judge; the reasons when it is not.

    Parameters
    ----------
    model : CellClassifier, str, path or None
        The classifier or its name / file (None: only the checks that need no model run).
    image : ndarray
        (H, W) grey or (H, W, 3|4) RGB(A), any dtype :func:`~napari_cervseg.io.images.to_rgb_uint8` takes.
    labels : ndarray (H, W), optional
        The segmentation (0 background); when given, an empty one fails ``no_cell_found``.

    Returns
    -------
    Applicability

    Examples
    --------
    >>> import numpy as np
    >>> a = assess(None, np.random.default_rng(0).integers(0, 256, (5, 5, 3), dtype=np.uint8))
    >>> a.judgeable, a.reasons
    (False, ['too_small'])
    """
    from ..io.images import to_rgb_uint8

    if model is not None and not hasattr(model, "net"):
        from .models import load_model

        model = load_model(model)
    rgb = image if (isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3
                    and image.shape[2] == 3) else to_rgb_uint8(image)[0]
    result = Applicability(judgeable=True)

    def fail(code, text):
        result.reasons.append(code)
        result.details.append(text)

    h, w = rgb.shape[:2]
    result.checks_run.append("too_small")
    result.scores["side"] = int(min(h, w))
    if min(h, w) < MIN_SIDE:
        fail("too_small", f"too small ({h} x {w} px; a cell crop needs at least {MIN_SIDE} px a side)")
    stats, why = (None, "no classifier") if model is None else _load_statistics(model)
    result.checks_run.append("no_contrast")
    contrast = grey_contrast(rgb) if rgb.size else 0.0
    structure = structure_contrast(rgb) if rgb.size else 0.0
    result.scores.update(contrast=contrast, structure=structure)
    cells_low = stats["structure_threshold"] if stats is not None else None
    if contrast < MIN_CONTRAST:
        fail("no_contrast", f"no contrast (grey-level std {contrast:.2f} < {MIN_CONTRAST}: a flat image)")
    elif structure < MIN_STRUCTURE:
        fail("no_contrast", f"no contrast beyond pixel noise (blurred grey-level std {structure:.2f} <"
                            f" {MIN_STRUCTURE}: a flat image)")
    elif cells_low is not None and structure < cells_low:
        fail("no_contrast", f"less contrast than real cells (blurred grey-level std {structure:.2f} <"
                            f" {cells_low:.2f}, the limit real validation cells stay above)")
    if cells_low is not None:
        result.scores["structure_threshold"] = cells_low
    if labels is None:
        result.checks_skipped["no_cell_found"] = "no segmentation given"
    else:
        result.checks_run.append("no_cell_found")
        if not (np.asarray(labels) > 0).any():
            fail("no_cell_found", "no cell found by the segmentation")
    if stats is None or stats.get("feature_means") is None or min(h, w) < 1:
        result.checks_skipped["unlike_training_cells"] = why or "no statistics"
    else:
        try:
            feats = cell_features(model, [rgb])
        except (ValueError, RuntimeError) as exc:
            result.checks_skipped["unlike_training_cells"] = f"features not available ({exc})"
        else:
            if feats.shape[1] != stats["feature_means"].shape[1]:
                result.checks_skipped["unlike_training_cells"] = (
                    f"the statistics have {stats['feature_means'].shape[1]} features, the model {feats.shape[1]}")
            else:
                result.checks_run.append("unlike_training_cells")
                d = float(_mahalanobis(feats, stats["feature_means"], stats["feature_precision"])[0])
                t = stats["feature_threshold"]
                result.scores.update(feature_distance=d, feature_threshold=t)
                if not np.isfinite(d) or d > t:
                    fail("unlike_training_cells", f"unlike any training cell (feature distance {d:.1f} >"
                                                  f" {t:.1f}, the limit real validation cells stay under)")
    if stats is None:
        result.checks_skipped["unusual_colours"] = why or "no statistics"
    elif min(h, w) >= 1:
        result.checks_run.append("unusual_colours")
        c = colour_statistics(rgb, stats["colour_size"])
        d = float(_mahalanobis(c, stats["colour_mean"][None], stats["colour_precision"])[0])
        t = stats["colour_threshold"]
        result.scores.update(colour_distance=d, colour_threshold=t)
        if not np.isfinite(d) or d > t:
            fail("unusual_colours", f"far outside the training colours (colour distance {d:.1f} > {t:.1f})")
    result.judgeable = not result.reasons
    return result



def verdict_text(predicted_class, probability, applicability=None) -> str:
    """What to show a user for one cell: ``"abnormal (p = 0.93)"``, or ``"no verdict: <why>"`` (the
    failed checks in a few words; the result's warning has the measured values).

    Parameters
    ----------
    predicted_class : str or None
    probability : float or None
    applicability : Applicability or dict, optional
        An :class:`Applicability` or its :meth:`~Applicability.summary` (a result's
        ``applicability``); when it is not judgeable the class is not shown.

    Returns
    -------
    str

    Examples
    --------
    >>> verdict_text("normal", 0.91)
    'normal (p = 0.91)'
    >>> verdict_text(None, None, {"judgeable": False, "not_judgeable": ["too_small", "no_contrast"]})
    'no verdict: too small, no contrast'
    """
    if isinstance(applicability, Applicability):
        applicability = applicability.summary()
    if applicability and not applicability.get("judgeable", True):
        reasons = [REASON_NAMES.get(r, r) for r in applicability.get("not_judgeable") or []]
        return "no verdict: " + (", ".join(reasons) or "not a cell the classifier can judge")
    if predicted_class is None:
        return "no class"
    return f"{predicted_class} (p = {probability:.2f})"


def statistics_from_split(model, data_root, log=None) -> tuple[dict, dict]:
    """:func:`fit_statistics` on the training and validation splits named in the model's card.

    Parameters
    ----------
    model : CellClassifier
        A model whose card lists ``training.split`` (``train`` and ``val`` image names).
    data_root : path
        The data the model was trained on (:func:`~napari_cervseg.io.datasets.read_dataset`).
    log : callable, optional

    Returns
    -------
    tuple of dict
        ``(card_block, tensors)`` as :func:`fit_statistics`.
    """
    from ..io.datasets import read_dataset
    from .classifier import CLASS_NAMES, ModelError

    split = (model.card.get("training") or {}).get("split") or {}
    if not split.get("train") or not split.get("val"):
        raise ModelError("the model card lists no training / validation split (training.split); the"
                         " statistics must come from the cells the model trained on")
    samples = {s.name: s for s in read_dataset(data_root)}
    missing = [n for n in split["train"] + split["val"] if n not in samples]
    if missing:
        raise ModelError(f"{len(missing)} images of the card's split are not in {data_root} (e.g. {missing[0]});"
                         " give the data the model was trained on")
    names = model.class_names if set(model.class_names) >= set(CLASS_NAMES) else CLASS_NAMES
    train = [samples[n] for n in split["train"]]
    val = [samples[n] for n in split["val"]]
    if log:
        log(f"statistics of {len(train)} training cells, thresholds on {len(val)} validation cells")
    return fit_statistics(model, [s.load_image() for s in train], [names.index(s.label) for s in train],
                          [s.load_image() for s in val])

__all__ = ["Applicability", "assess", "colour_statistics", "cell_features", "fit_statistics", "store_statistics",
           "sidecar_path", "has_statistics", "statistics_from_split", "verdict_text", "CHECKS", "MIN_SIDE", "MIN_CONTRAST", "MIN_STRUCTURE", "structure_contrast", "WHAT_WORKS"]
