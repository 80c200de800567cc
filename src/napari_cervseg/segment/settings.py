"""Settings of each segmentation method, as frozen dataclasses: each default is written once here,
shown by ``repr``, stored in every result (``dataclasses.asdict``), and what the CLI and the widgets
build their controls from. A wrong name or value is refused with a message naming the valid ones.

Sizes the paper leaves open (dilation radius, smoothing) are in pixels *of a 128 px image* and are
scaled with the image.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass

from ..explain import CAM_METHODS, DEFAULT_METHOD, LRP_METHODS, METHODS
from .grouping import GROUPINGS
from .inpaint import INPAINTERS
from .refine import DEFAULT_WORK_SIZE
from .student import STUDENT_REFINE, STUDENT_TTA

#: the non-XAI baseline: colour k-means rough map + the same GrabCut refinement
BASELINE = "colour-baseline"
#: the weakly supervised second stage: a U-Net trained on Algorithm 1's pseudo-masks
SELF_TRAINED = "self-trained"
SEGMENT_METHODS = CAM_METHODS + LRP_METHODS + (BASELINE, SELF_TRAINED)
#: the segmentation method a user gets by default (``segment_cell``, ``segment_field``, ``cervseg
#: segment``, the widgets), chosen on the validation split by the rule: the highest mean of nucleus
#: and cytoplasm Dice among the methods that take at most 0.25 s per cell on a CPU
#: (benchmarks/val_default.py -> benchmarks/results/default_method_val.md). Not the explanation
#: default (``explain.DEFAULT_METHOD``), which the self-trained method still shows beside its labels.
DEFAULT_SEGMENT_METHOD = SELF_TRAINED
#: where the nucleus GrabCut is seeded: darkest colour blob the heatmap touches, the heatmap's
#: darker half, or the heatmap's top group as is (the paper)
NUCLEUS_SEEDS = ("colour", "dark", "rough")


class SegmentationError(ValueError):
    """A segmentation request that cannot be met (unknown method, option or value)."""


def _check_choice(name, value, choices):
    if value not in choices:
        raise SegmentationError(f"unknown {name} {value!r}; choose one of {', '.join(map(str, choices))}")


def _check_number(name, value, low, high, integer=False):
    kind = "an integer" if integer else "a number"
    ok_type = isinstance(value, numbers.Integral if integer else numbers.Real)
    if isinstance(value, bool) or not ok_type or not math.isfinite(value) or not low <= value <= high:
        raise SegmentationError(f"{name} must be {kind} from {low} to {high}; got {value!r}")


@dataclass(frozen=True)
class RefineSettings:
    """The GrabCut refinement every algorithm ends with (Sec. III-F).

    Attributes
    ----------
    nucleus_iterations, cytoplasm_iterations : int
        GrabCut iterations of the nucleus pass and of the cell pass.
    work_size : int
        Longest side (px) GrabCut works at; masks are resized back smoothly.
    nucleus_seed : {"colour", "dark", "rough"}
        What seeds the nucleus pass: see :data:`NUCLEUS_SEEDS`.
    """

    nucleus_iterations: int = 5
    cytoplasm_iterations: int = 5
    work_size: int = DEFAULT_WORK_SIZE
    nucleus_seed: str = "colour"

    def __post_init__(self):
        _check_number("nucleus_iterations", self.nucleus_iterations, 0, 100, integer=True)
        _check_number("cytoplasm_iterations", self.cytoplasm_iterations, 0, 100, integer=True)
        _check_number("work_size", self.work_size, 16, 4096, integer=True)
        _check_choice("nucleus_seed", self.nucleus_seed, NUCLEUS_SEEDS)

    def as_dict(self) -> dict:
        """The settings as a JSON-friendly dict (what results and cards store)."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class CellCutSettings(RefineSettings):
    """Refinement whose cell pass runs on the nucleus-inpainted image (Algorithm 1, baseline).

    Attributes
    ----------
    dilation : float
        Radius (px at 128 px) beyond the rough cell where pixels are sure background.
    inpaint_nucleus : bool
        Inpaint the nucleus before the cell pass, so GrabCut's cell model holds cytoplasm colours.
    """

    dilation: float = 12.0
    inpaint_nucleus: bool = True

    def __post_init__(self):
        super().__post_init__()
        _check_number("dilation", self.dilation, 0, 128)
        _check_choice("inpaint_nucleus", self.inpaint_nucleus, (True, False))


@dataclass(frozen=True)
class CamSettings(CellCutSettings):
    """Algorithm 1: CAM heatmap -> 3 groups -> GrabCut nucleus, GrabCut cell.

    Attributes
    ----------
    grouping : {"gmm", "kmeans", "intermeans", "threshold"}
        How the heatmap is split into background / cytoplasm / nucleus.
    layer : str or None
        CAM layer (None: the model card's ``cam_layer``).
    smooth : float
        Gaussian sigma (px at 128 px) applied to the heatmap before grouping (0: none).
    """

    grouping: str = "gmm"
    layer: str | None = None
    smooth: float = 0.0

    def __post_init__(self):
        super().__post_init__()
        _check_choice("grouping", self.grouping, GROUPINGS)
        _check_number("smooth", self.smooth, 0, 64)
        if self.layer is not None and not isinstance(self.layer, str):
            raise SegmentationError(f"layer must be a layer name or None; got {self.layer!r}")


@dataclass(frozen=True)
class LrpSettings(RefineSettings):
    """Algorithm 2: LRP relevance -> nucleus seed; log-scaled groups -> cytoplasm seed; inpaint; GrabCut.

    Attributes
    ----------
    grouping : {"kmeans", "gmm", "intermeans", "threshold"}
        How the relevance is split.
    smooth : float
        Gaussian sigma (px at 128 px) applied to the relevance map before grouping.
    dilation : float
        Radius (px at 128 px) of the nucleus dilation that is inpainted (and the ring around it).
    log_scale_factor : float
        ``log(1 + f * R) / log(1 + f)`` spreads the sparse relevance before the 3-group split.
    inpainter : {"auto", "lama", "opencv", "none"}
        What removes the nucleus before the cell pass (LaMa needs a local TorchScript file).
    lama_model : str or None
        Path of LaMa's ``big-lama.pt`` (else ``$LAMA_MODEL``).
    """

    grouping: str = "kmeans"
    smooth: float = 2.0
    dilation: float = 3.0
    log_scale_factor: float = 1000.0
    inpainter: str = "auto"
    lama_model: str | None = None

    def __post_init__(self):
        super().__post_init__()
        _check_choice("grouping", self.grouping, GROUPINGS)
        _check_number("smooth", self.smooth, 0, 64)
        _check_number("dilation", self.dilation, 0, 128)
        _check_number("log_scale_factor", self.log_scale_factor, 1e-6, 1e12)
        _check_choice("inpainter", self.inpainter, INPAINTERS)
        if self.lama_model is not None:
            object.__setattr__(self, "lama_model", str(self.lama_model))


@dataclass(frozen=True)
class BaselineSettings(CellCutSettings):
    """The non-XAI baseline: colour k-means rough map + Algorithm 1's refinement.

    Attributes
    ----------
    nucleus_seed : {"dark", "colour", "rough"}
        ``"dark"`` by default: the darkest k-means class's darker half.
    (the rest as :class:`CellCutSettings`)
    """

    nucleus_seed: str = "dark"


@dataclass(frozen=True)
class SelfTrainedSettings:
    """The self-trained second stage: a U-Net fitted to the pipeline's own pseudo-masks.

    Attributes
    ----------
    segmenter : str
        ``"default"`` (bundled) or the path of a segmenter trained by ``cervseg self-train``.
    explain_method : str
        The explanation shown beside its labels (the class and heatmap come from the classifier).
    tta : {"none", "flips", "dihedral"}
        Test-time augmentation: the student's logits averaged over one pass, the three flips, or
        the 8 flips / rotations (see :data:`~.student.STUDENT_TTA`).
    refine : {"none", "grabcut-cell", "grabcut"}
        How its probabilities become labels: argmax, or GrabCut seeded by them (the cell only, or
        cell and nucleus; see :func:`~.student.labels_from_probabilities`).
    cell_threshold : float or None
        p(cytoplasm) + p(nucleus) from which a pixel is (probably) cell. None: the segmenter
        card's ``cell_threshold``, or, where the card has none, the argmax of the three classes. The bundled segmenter's card says 0.2, chosen on the validation split among
        0.1-0.6 (that student, like its teacher, draws the cell too small:
        benchmarks/results/student_variants_val.md); a threshold is a property of one network's
        calibration, so another segmenter keeps its own.
    """

    segmenter: str = "default"
    explain_method: str = DEFAULT_METHOD
    tta: str = "flips"
    refine: str = "none"
    cell_threshold: float | None = None

    def __post_init__(self):
        object.__setattr__(self, "segmenter", str(self.segmenter))
        _check_choice("explain_method", self.explain_method, METHODS)
        _check_choice("tta", self.tta, STUDENT_TTA)
        _check_choice("refine", self.refine, STUDENT_REFINE)
        if isinstance(self.cell_threshold, str):  # a text control or CLI value; "" is unset
            text = self.cell_threshold.strip()
            try:
                object.__setattr__(self, "cell_threshold", float(text) if text else None)
            except ValueError:
                raise SegmentationError(f"cell_threshold must be a number from 0.01 to 0.99 or unset;"
                                        f" got {text!r}") from None
        if self.cell_threshold is not None:
            _check_number("cell_threshold", self.cell_threshold, 0.01, 0.99)

    def as_dict(self) -> dict:
        """The settings as a JSON-friendly dict (what results and cards store)."""
        return dataclasses.asdict(self)


Settings = CamSettings | LrpSettings | BaselineSettings | SelfTrainedSettings

#: the settings class of each algorithm
SETTINGS_CLASSES = {"cam": CamSettings, "lrp": LrpSettings, "baseline": BaselineSettings,
                    "self-trained": SelfTrainedSettings}


def check_method(method: str) -> str:
    """The method name, lower-cased; an unknown one is refused with the list of valid ones."""
    method = str(method).lower()
    if method not in SEGMENT_METHODS:
        raise SegmentationError(f"unknown method {method!r}; choose one of {', '.join(SEGMENT_METHODS)}")
    return method


def algorithm_of(method: str) -> str:
    """``"cam"`` (Algorithm 1), ``"lrp"`` (Algorithm 2), ``"baseline"`` or ``"self-trained"``."""
    method = check_method(method)
    if method == BASELINE:
        return "baseline"
    if method == SELF_TRAINED:
        return "self-trained"
    return "lrp" if method in LRP_METHODS else "cam"


def option_names() -> list[str]:
    """Every option name any method takes (sorted)."""
    return sorted({f.name for cls in SETTINGS_CLASSES.values() for f in dataclasses.fields(cls)})


def settings_for(method: str, settings: Settings | None = None, **options) -> tuple[Settings, list[str]]:
    """The settings ``method`` runs with: ``settings`` (or the method's defaults) with ``options``.

    Parameters
    ----------
    method : str
        One of :data:`SEGMENT_METHODS`.
    settings : CamSettings, LrpSettings, BaselineSettings or SelfTrainedSettings, optional
        A complete settings object of the method's class; ``options`` are applied on top.
    **options
        Single settings by name (``dilation=5``). A name that belongs to another method only is
        ignored (one CLI line can serve several methods) and returned; an unknown name is refused.

    Returns
    -------
    settings, ignored : Settings, list of str
    """
    cls = SETTINGS_CLASSES[algorithm_of(method)]
    unknown = sorted(set(options) - set(option_names()))
    if unknown:
        raise SegmentationError(f"unknown option(s) {', '.join(unknown)}; valid options: {', '.join(option_names())}")
    if settings is None:
        settings = cls()
    elif type(settings) is not cls:
        raise SegmentationError(f"settings= is a {type(settings).__name__}; method {method!r} takes {cls.__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    accepted = {k: v for k, v in options.items() if k in names}
    return dataclasses.replace(settings, **accepted), sorted(set(options) - names)
