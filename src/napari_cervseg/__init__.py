"""napari-cervseg: explainable-AI driven, weakly supervised segmentation of Pap smear cells.

Scriptable from napari's console and plain Python::

    from napari_cervseg import segment_cell, measure, load_model
    result = segment_cell(image)                 # bundled model; self-trained U-Net + Grad-CAM++ heatmap
    result.labels, result.heatmap, result.predicted_class, result.probability
    measure(result.labels, image, pixel_size=0.2)

The package is layered (each imports only those before it): ``io`` (images, data sets),
``classify`` (models, cards, decisions), ``explain`` (heatmaps and their metrics), ``segment``
(the algorithms and their settings) and ``measure`` (descriptors, scores), ``workflows`` (batch,
evaluation, training, self-training), then ``cli`` and ``plugin`` (the napari widgets). Nothing
outside ``plugin`` imports Qt or napari.
"""

from . import _gl_safety  # noqa: F401  (first: keeps Triton's LLVM out of a software-OpenGL napari)
from ._version import __version__
from .classify import CellClassifier, ModelError, load_model, save_model, wrap_model
from .classify.predict import Classification, classify
from .explain import METHODS as EXPLAIN_METHODS
from .explain import Explanation, explain, explain_batch
from .io.images import ImageError
from .io.slides import open_slide
from .measure.descriptors import measure
from .measure.records import CellRecord
from .measure.scores import segmentation_scores
from .segment import (
    SEGMENT_METHODS,
    BaselineSettings,
    CamSettings,
    LrpSettings,
    SegmentationError,
    SegmentationResult,
    SelfTrainedSettings,
    segment_cell,
)
from .workflows.corrections import CorrectionConfig, CorrectionError, learn_from_corrections
from .workflows.fields import FieldResult, segment_field
from .workflows.slides import SlideConfig, SlideResult, segment_slide

__all__ = [
    "__version__",
    "segment_cell",
    "segment_field",
    "FieldResult",
    "CellRecord",
    "segment_slide",
    "SlideConfig",
    "SlideResult",
    "open_slide",
    "measure",
    "load_model",
    "save_model",
    "wrap_model",
    "classify",
    "Classification",
    "explain",
    "explain_batch",
    "segmentation_scores",
    "SegmentationResult",
    "Explanation",
    "CellClassifier",
    "CamSettings",
    "LrpSettings",
    "BaselineSettings",
    "SelfTrainedSettings",
    "ImageError",
    "ModelError",
    "SegmentationError",
    "SEGMENT_METHODS",
    "EXPLAIN_METHODS",
    "learn_from_corrections",
    "CorrectionConfig",
    "CorrectionError",
]
