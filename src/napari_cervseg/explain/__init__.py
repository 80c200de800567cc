"""Explain the classifier's decision with heatmaps (CAM family, LRP rule sets, ensembles) and
measure the explanations (entropy, pixel flipping, ROAD)."""

from .explanation import Explanation, explain, explain_batch, normalise_heatmap
from .methods import CAM_METHODS, DEFAULT_METHOD, ENSEMBLE_MEMBERS, LRP_METHODS, METHODS, ExplainError

__all__ = [
    "CAM_METHODS", "DEFAULT_METHOD", "ENSEMBLE_MEMBERS", "LRP_METHODS", "METHODS", "ExplainError",
    "Explanation", "explain", "explain_batch", "normalise_heatmap",
]
