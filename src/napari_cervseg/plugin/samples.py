"""Sample cells for napari's File > Open Sample menu (Herlev; citation in sample_data/README.md)."""

from __future__ import annotations

from pathlib import Path

SAMPLE_DIR = Path(__file__).resolve().parent.parent / "sample_data"
SAMPLES = {
    "abnormal": "abnormal_carcinoma_in_situ.png",
    "abnormal_severe": "abnormal_severe_dysplastic.png",
    "normal": "normal_intermediate.png",
    "normal_superficial": "normal_superficial.png",
}


def sample_path(name: str = "abnormal") -> Path:
    """Path of a bundled sample cell image (``abnormal``, ``abnormal_severe``, ``normal``, ...)."""
    if name not in SAMPLES:
        raise ValueError(f"unknown sample {name!r}; choose one of {', '.join(SAMPLES)}")
    return SAMPLE_DIR / SAMPLES[name]


def load_sample(name: str = "abnormal"):
    """A bundled sample cell as an RGB uint8 array."""
    from ..io.images import read_image, to_rgb_uint8

    return to_rgb_uint8(read_image(sample_path(name)))[0]


def _layer(name: str):
    return [(load_sample(name), {"name": Path(SAMPLES[name]).stem, "rgb": True}, "image")]


def abnormal_cell():
    return _layer("abnormal")


def normal_cell():
    return _layer("normal")
