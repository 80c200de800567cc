"""The explanation methods by name, and the error every explainer raises."""

from __future__ import annotations

CAM_METHODS = ("gradcam++", "gradcam++-paper", "gradcam", "scorecam", "layercam", "eigencam", "ensemble",
               "ensemble-mean")


#: pixel-wise combination of the members' max-normalised maps, per ensemble method
ENSEMBLES = {"ensemble": "median", "ensemble-mean": "mean"}


#: the members of the ensemble (the authors' EnsembleCAM: pixel-wise median of these maps)
ENSEMBLE_MEMBERS = ("gradcam", "gradcam++", "scorecam", "eigencam", "layercam")


LRP_METHODS = ("lrp-ruleset1", "lrp-ruleset2")


METHODS = CAM_METHODS + LRP_METHODS


DEFAULT_METHOD = "gradcam++"


class ExplainError(ValueError):
    """An explanation request that cannot be met (unknown method, layer, or unsupported model)."""


def _check_method(method: str) -> str:
    method = str(method).lower()
    if method not in METHODS:
        raise ExplainError(f"unknown explanation method {method!r}; choose one of {', '.join(METHODS)}")
    return method


#: where the CAM family comes from: pytorch-grad-cam when installed ("auto"), or our own hooks
CAM_BACKENDS = ("auto", "pytorch-grad-cam", "builtin")
