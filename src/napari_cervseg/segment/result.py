"""What one segmentation produced, and the pictures made of it."""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from ..classify.applicability import Applicability
from ..explain import Explanation
from ..io.images import to_rgb_uint8


@dataclass
class SegmentationResult:
    """Everything one segmentation produced: what the API, the CLI and the widgets pass around.

    Arrays have the input image's height and width (H, W).

    Attributes
    ----------
    labels : ndarray (H, W) uint8
        0 background, 1 cytoplasm, 2 nucleus.
    rough : ndarray (H, W) uint8
        The rough 3-class map before GrabCut (same coding).
    heatmap : ndarray (H, W) float32 or None
        The explanation in [0, 1]; None for the colour baseline.
    method, algorithm : str
        The method asked for; ``"cam"`` (Algorithm 1), ``"lrp"`` (Algorithm 2), ``"baseline"``,
        ``"self-trained"`` or ``"none"`` (no cell).
    predicted_class : str or None
        The class called (at the operating point asked for); None when no verdict is given
        (``judgeable`` False).
    probability : float or None
        The probability of ``predicted_class``.
    probabilities : dict of str to float
        Every class's probability, as the network answered (kept when the verdict is withheld).
    explanation : Explanation or None
        The explanation the segmentation came from (its ``target_class`` is :attr:`explained_class`,
        LRP's raw ``relevance`` is :attr:`relevance`); None for the colour baseline and the finder.
    assessment : Applicability or None
        Whether the input is a cell the classifier can judge, and why not
        (:func:`napari_cervseg.classify.applicability.assess`); :attr:`judgeable`,
        :attr:`not_judgeable` and :attr:`applicability` read it.
    inpainter : str or None
        The inpainter Algorithm 2 used.
    model : str or None
        Where the classifier came from.
    timings : dict of str to float
        Seconds per stage, and ``"total"``.
    settings : dict
        The method's settings (``dataclasses.asdict`` of its settings class) as run.
    warnings : list of str
        What the user should know (input conversions, options ignored, no cell found, no verdict).
    """

    labels: np.ndarray  # uint8: 0 background, 1 cytoplasm, 2 nucleus
    rough: np.ndarray  # uint8 rough 3-class map before GrabCut (same coding)
    heatmap: np.ndarray | None  # float32 in [0, 1]; None for the baseline
    method: str
    algorithm: str  # "cam" (Algorithm 1), "lrp" (Algorithm 2) or "baseline"
    predicted_class: str | None = None
    probability: float | None = None  # of the predicted class
    probabilities: dict = field(default_factory=dict)
    explanation: Explanation | None = None
    assessment: Applicability | None = None
    inpainter: str | None = None
    model: str | None = None
    timings: dict = field(default_factory=dict)  # seconds per stage
    settings: dict = field(default_factory=dict)
    warnings: list = field(default_factory=list)

    @property
    def explained_class(self) -> str | None:
        """The class the heatmap explains (None without an explanation)."""
        return None if self.explanation is None else self.explanation.target_class

    @property
    def relevance(self) -> np.ndarray | None:
        """LRP's raw relevance at the model's input size (None for the CAM family and no explanation)."""
        return None if self.explanation is None else self.explanation.relevance

    @property
    def judgeable(self) -> bool:
        """Whether the input is a cell the classifier can judge; when False the class is withheld."""
        return True if self.assessment is None else self.assessment.judgeable

    @property
    def not_judgeable(self) -> list[str]:
        """Why not: the failed checks (``too_small``, ``no_contrast``, ``no_cell_found``,
        ``unlike_training_cells``, ``unusual_colours``); empty when judgeable."""
        return [] if self.assessment is None else list(self.assessment.reasons)

    @property
    def applicability(self) -> dict:
        """The checks that ran and were skipped, what they measured and their limits (JSON-friendly)."""
        return {} if self.assessment is None else self.assessment.summary()

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
            "judgeable": self.judgeable,
            "not_judgeable": list(self.not_judgeable),
            "applicability": self.applicability,
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
