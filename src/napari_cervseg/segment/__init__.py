"""Turn a heatmap into nucleus / cytoplasm / background: grouping, GrabCut refinement, inpainting,
the paper's two algorithms, the colour baseline and the self-trained second stage."""

from .pipeline import segment_cell
from .result import LABEL_COLOURS, SegmentationResult, heatmap_rgb, overlay
from .settings import (
    BASELINE,
    NUCLEUS_SEEDS,
    SEGMENT_METHODS,
    SELF_TRAINED,
    BaselineSettings,
    CamSettings,
    LrpSettings,
    RefineSettings,
    SegmentationError,
    SelfTrainedSettings,
    settings_for,
)

__all__ = [
    "BASELINE", "LABEL_COLOURS", "NUCLEUS_SEEDS", "SEGMENT_METHODS", "SELF_TRAINED", "BaselineSettings",
    "CamSettings", "LrpSettings", "RefineSettings", "SegmentationError", "SegmentationResult",
    "SelfTrainedSettings", "heatmap_rgb", "overlay", "segment_cell", "settings_for",
]
