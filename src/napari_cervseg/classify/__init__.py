"""Classify a cell normal / abnormal: architectures, the loaded classifier, weights and cards,
preprocessing and augmentation, and the class decision (operating points)."""

from .classifier import CLASS_NAMES, CellClassifier, ModelError, pick_device, wrap_model
from .models import WEIGHTS_DIR, bundled_models, load_model, save_model
from .networks import ARCHITECTURES, CompactCNN, VGG16Adapted128, XceptionHead, build_architecture
from .preprocess import PreprocessConfig

__all__ = [
    "ARCHITECTURES", "CLASS_NAMES", "WEIGHTS_DIR", "CellClassifier", "CompactCNN", "ModelError",
    "PreprocessConfig", "VGG16Adapted128", "XceptionHead", "build_architecture", "bundled_models",
    "load_model", "pick_device", "save_model", "wrap_model",
]
