"""Dice / IoU per class and classification metrics."""

from __future__ import annotations

import numpy as np

LABEL_NAMES = {1: "cytoplasm", 2: "nucleus"}


def dice(pred: np.ndarray, truth: np.ndarray) -> float:
    """Dice of two boolean masks; 1.0 when both are empty (nothing to find, nothing found)."""
    pred, truth = np.asarray(pred, bool), np.asarray(truth, bool)
    denom = pred.sum() + truth.sum()
    return 1.0 if denom == 0 else float(2.0 * np.logical_and(pred, truth).sum() / denom)


def iou(pred: np.ndarray, truth: np.ndarray) -> float:
    pred, truth = np.asarray(pred, bool), np.asarray(truth, bool)
    union = np.logical_or(pred, truth).sum()
    return 1.0 if union == 0 else float(np.logical_and(pred, truth).sum() / union)


def segmentation_scores(labels: np.ndarray, truth: np.ndarray) -> dict:
    """Dice and IoU of a segmentation against a reference, per region and their mean.

    Parameters
    ----------
    labels, truth : ndarray (H, W)
        Label arrays (0 background, 1 cytoplasm, 2 nucleus) of the same shape.

    Returns
    -------
    dict
        ``{"nucleus": {"dice", "iou"}, "cytoplasm": {...}, "mean": {...}}``; a region absent from
        both arrays scores 1.

    Examples
    --------
    >>> import numpy as np
    >>> from napari_cervseg import segmentation_scores
    >>> a = np.zeros((8, 8), np.uint8); a[2:6, 2:6] = 1; a[3:5, 3:5] = 2
    >>> segmentation_scores(a, a)["mean"]["dice"]
    1.0
    """
    labels, truth = np.asarray(labels), np.asarray(truth)
    if labels.shape != truth.shape:
        raise ValueError(f"labels shape {labels.shape} differs from ground truth shape {truth.shape}")
    out = {}
    for value, name in LABEL_NAMES.items():
        out[name] = {"dice": dice(labels == value, truth == value), "iou": iou(labels == value, truth == value)}
    out["mean"] = {k: (out["nucleus"][k] + out["cytoplasm"][k]) / 2 for k in ("dice", "iou")}
    return out


def roc_auc(y_true, score) -> float:
    """Area under the ROC curve: the probability that a random positive scores above a random
    negative (ties count one half); NaN when one class is absent.

    Parameters
    ----------
    y_true : array-like of int
        1 for the positive (abnormal) class, 0 for the other.
    score : array-like of float
        Each item's score for the positive class (e.g. p(abnormal)).

    Returns
    -------
    float

    Examples
    --------
    >>> roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    0.75
    """
    from scipy.stats import rankdata

    y, s = np.asarray(y_true, int), np.asarray(score, float)
    n_pos, n_neg = int((y == 1).sum()), int((y == 0).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(s)
    return float((ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def classification_metrics(y_true, y_pred, positive: int = 1) -> dict:
    """Accuracy, weighted precision/recall/F1 (as the paper's Table 6), abnormal recall, confusion.

    Classes: 0 normal, 1 abnormal. ``confusion[i][j]`` counts true class i predicted as j.
    """
    y_true, y_pred = np.asarray(y_true, int), np.asarray(y_pred, int)
    conf = np.zeros((2, 2), int)
    np.add.at(conf, (y_true, y_pred), 1)
    n = conf.sum()
    per_class = []
    for c in (0, 1):
        tp = conf[c, c]
        prec = tp / conf[:, c].sum() if conf[:, c].sum() else 0.0
        rec = tp / conf[c, :].sum() if conf[c, :].sum() else 0.0
        f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
        per_class.append((prec, rec, f1, conf[c, :].sum()))
    support = np.array([p[3] for p in per_class], float)
    weights = support / support.sum() if support.sum() else np.zeros(2)
    return {
        "accuracy": float(np.trace(conf) / n) if n else 0.0,
        "precision": float(sum(w * p[0] for w, p in zip(weights, per_class, strict=False))),
        "recall": float(sum(w * p[1] for w, p in zip(weights, per_class, strict=False))),
        "f1": float(sum(w * p[2] for w, p in zip(weights, per_class, strict=False))),
        "balanced_accuracy": float(np.mean([p[1] for p in per_class])),
        "abnormal_recall": float(per_class[positive][1]),
        "normal_recall": float(per_class[1 - positive][1]),
        "confusion": conf.tolist(),
        "n": int(n),
    }
