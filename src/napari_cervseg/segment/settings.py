"""Settings of each segmentation method, as frozen dataclasses: each setting's default, its bounds or
choices and its help are written once here (the field and its :func:`setting` metadata), shown by
``repr``, stored in every result (``dataclasses.asdict``), and what the CLI and the widgets build their
options from (:func:`setting_specs`). A wrong name or value is refused with a message naming the
valid ones.

Sizes the paper leaves open (dilation radius, smoothing) are in pixels *of a 128 px image* and are
scaled with the image.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

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


def setting(default, *, help_text: str, bounds: tuple | None = None, choices: tuple | None = None):
    """A settings dataclass field: its default, and its help and valid values, written once.

    ``bounds`` (low, high) for a number, or ``choices`` for a named value; the settings classes check
    them (:meth:`_Settings.__post_init__`), the CLI and the widgets build their options from them
    (:func:`setting_specs`).
    """
    if bounds is not None and choices is not None:
        raise ValueError("a setting has bounds or choices, not both")
    return dataclasses.field(default=default, metadata={
        "help": help_text, "bounds": tuple(bounds) if bounds is not None else None,
        "choices": tuple(choices) if choices is not None else None})


def same_setting(cls, name: str, default):
    """The setting ``name`` of ``cls`` (its help and valid values) with another default: a class
    that redeclares a setting only changes its default."""
    field = next(f for f in dataclasses.fields(cls) if f.name == name)
    return dataclasses.field(default=default, metadata=field.metadata)


class _Settings:
    """What every settings dataclass does: check each field against its metadata, and convert to a dict."""

    def __post_init__(self):
        types = _field_types(type(self))
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            kind, optional = types[f.name]
            if value is None and optional:
                continue
            if f.metadata.get("choices") is not None:
                _check_choice(f.name, value, f.metadata["choices"])
            elif f.metadata.get("bounds") is not None:
                _check_number(f.name, value, *f.metadata["bounds"], integer=kind is int)

    def as_dict(self) -> dict:
        """The settings as a JSON-friendly dict (what results and cards store)."""
        return dataclasses.asdict(self)


@functools.cache
def _field_types(cls) -> dict[str, tuple[type, bool]]:
    """Each field's value type and whether None is a value: ``(int, False)`` for ``int``,
    ``(float, True)`` for ``float | None``."""
    types = {}
    for name, hint in typing.get_type_hints(cls).items():
        args = typing.get_args(hint)
        kinds = [a for a in args if a is not type(None)] or [hint]
        types[name] = (kinds[0], len(kinds) < len(args))
    return types


@dataclass(frozen=True)
class RefineSettings(_Settings):
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

    nucleus_iterations: int = setting(5, help_text="GrabCut iterations of the nucleus pass", bounds=(0, 100))
    cytoplasm_iterations: int = setting(5, help_text="GrabCut iterations of the cell pass", bounds=(0, 100))
    work_size: int = setting(DEFAULT_WORK_SIZE, help_text="longest side (px) GrabCut works at",
                             bounds=(16, 4096))
    nucleus_seed: str = setting("colour", choices=NUCLEUS_SEEDS,
                                help_text="how the heatmap's top group becomes the nucleus seed (see README)")


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

    dilation: float = setting(12.0, help_text="radius in px of a 128 px image", bounds=(0, 128))
    inpaint_nucleus: bool = setting(True, help_text="inpaint the nucleus before the cell pass",
                                    choices=(True, False))


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

    grouping: str = setting("gmm", help_text="how the heatmap is split into background / cytoplasm / nucleus",
                            choices=GROUPINGS)
    layer: str | None = setting(None, help_text="CAM layer (default: the model card's)")
    smooth: float = setting(0.0, bounds=(0, 64),
                            help_text="Gaussian sigma (px of a 128 px image) on the heatmap before grouping")

    def __post_init__(self):
        super().__post_init__()
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

    grouping: str = same_setting(CamSettings, "grouping", "kmeans")
    smooth: float = same_setting(CamSettings, "smooth", 2.0)
    dilation: float = same_setting(CellCutSettings, "dilation", 3.0)
    log_scale_factor: float = setting(1000.0, help_text="log scaling of the LRP relevance before grouping",
                                      bounds=(1e-6, 1e12))
    inpainter: str = setting("auto", help_text="what removes the nucleus before Algorithm 2's cell pass",
                             choices=INPAINTERS)
    lama_model: str | None = setting(None, help_text="local big-lama.pt (TorchScript)")

    def __post_init__(self):
        super().__post_init__()
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

    nucleus_seed: str = same_setting(RefineSettings, "nucleus_seed", "dark")


@dataclass(frozen=True)
class SelfTrainedSettings(_Settings):
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

    segmenter: str = setting(
        "default", help_text="self-trained: 'default' or a segmenter file from `cervseg self-train`")
    explain_method: str = setting(DEFAULT_METHOD, choices=METHODS,
                                  help_text="self-trained: the explanation shown beside its labels")
    tta: str = setting("flips", choices=STUDENT_TTA,
                       help_text="self-trained: test-time augmentation (none, the 3 flips, or all 8"
                                 " flips/rotations)")
    refine: str = setting("none", choices=STUDENT_REFINE,
                          help_text="self-trained: argmax of the student's probabilities, or GrabCut seeded"
                                    " by them")
    cell_threshold: float | None = setting(
        None, bounds=(0.01, 0.99),
        help_text="self-trained: p(cytoplasm) + p(nucleus) from which a pixel is cell (unset: the segmenter"
                  " card's; the bundled one's is 0.2)")

    def __post_init__(self):
        object.__setattr__(self, "segmenter", str(self.segmenter))
        if isinstance(self.cell_threshold, str):  # a text control or CLI value; "" is unset
            text = self.cell_threshold.strip()
            try:
                object.__setattr__(self, "cell_threshold", float(text) if text else None)
            except ValueError:
                low, high = setting_spec("cell_threshold").bounds
                raise SegmentationError(f"cell_threshold must be a number from {low} to {high} or unset;"
                                        f" got {text!r}") from None
        super().__post_init__()


Settings = CamSettings | LrpSettings | BaselineSettings | SelfTrainedSettings

#: the settings class of each algorithm
SETTINGS_CLASSES = {"cam": CamSettings, "lrp": LrpSettings, "baseline": BaselineSettings,
                    "self-trained": SelfTrainedSettings}


@dataclass(frozen=True)
class SettingSpec:
    """One setting as the CLI and the widgets offer it, read from the settings dataclasses' fields.

    Attributes
    ----------
    name : str
        The option's name (``--name-with-dashes`` on the command line).
    type : type
        ``int``, ``float``, ``bool`` or ``str``: the type of a value.
    optional : bool
        None is a value too (unset: e.g. the model card's choice).
    defaults : dict
        Algorithm (a key of :data:`SETTINGS_CLASSES`) -> its default, for each algorithm that takes it.
    help : str
        What the setting does, in one line.
    bounds : (low, high) or None
        The range of a number (inclusive).
    choices : tuple or None
        The values a named setting may take.
    """

    name: str
    type: type
    optional: bool
    defaults: dict
    help: str
    bounds: tuple | None = None
    choices: tuple | None = None


@functools.cache
def setting_specs() -> Mapping[str, SettingSpec]:
    """Every setting of any method, by name, in the settings classes' order (what the CLI and the
    widgets build their options from; read-only, computed once)."""
    first: dict[str, tuple[type, dataclasses.Field]] = {}
    defaults: dict[str, dict] = {}
    for algorithm, cls in SETTINGS_CLASSES.items():
        for f in dataclasses.fields(cls):
            _, field = first.setdefault(f.name, (cls, f))
            if dict(field.metadata) != dict(f.metadata):  # a redeclared setting changes its default only
                raise TypeError(f"setting {f.name!r} of {cls.__name__} differs from its first declaration")
            defaults.setdefault(f.name, {})[algorithm] = f.default
    return MappingProxyType({name: SettingSpec(name, *_field_types(cls)[name], defaults[name], f.metadata["help"],
                                               f.metadata["bounds"], f.metadata["choices"])
                             for name, (cls, f) in first.items()})


def setting_spec(name: str) -> SettingSpec:
    """The :class:`SettingSpec` of one setting (SegmentationError for an unknown name)."""
    specs = setting_specs()
    if name not in specs:
        raise SegmentationError(f"unknown option {name!r}; valid options: {', '.join(sorted(specs))}")
    return specs[name]


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


def check_values_of_every_method(options: dict) -> None:
    """Refuse (SegmentationError) a bad value even of an option the chosen method ignores: a typo in
    ``dilation`` should not pass silently because the default method has no dilation."""
    for cls in SETTINGS_CLASSES.values():
        names = {f.name for f in dataclasses.fields(cls)}
        cls(**{k: v for k, v in options.items() if k in names})


def explanation_method(method: str, settings: Settings | None = None, **options) -> str | None:
    """The explanation a segmentation method computes (and shows beside its labels): the CAM or LRP
    method itself, the self-trained method's ``explain_method``, None for the colour baseline.
    ``options`` may hold anything a caller passes on (names that are not settings are left out)."""
    algorithm = algorithm_of(method)
    if algorithm == "baseline":
        return None
    if algorithm == "self-trained":
        names = set(option_names())
        return settings_for(method, settings, **{k: v for k, v in options.items() if k in names})[0].explain_method
    return check_method(method)


def option_names() -> list[str]:
    """Every option name any method takes (sorted)."""
    return list(_option_names())


@functools.cache
def _option_names() -> tuple[str, ...]:
    return tuple(sorted({f.name for cls in SETTINGS_CLASSES.values() for f in dataclasses.fields(cls)}))


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
    unknown = sorted(set(options) - set(_option_names()))
    if unknown:
        raise SegmentationError(f"unknown option(s) {', '.join(unknown)}; valid options: {', '.join(option_names())}")
    if settings is None:
        settings = cls()
    elif type(settings) is not cls:
        raise SegmentationError(f"settings= is a {type(settings).__name__}; method {method!r} takes {cls.__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    accepted = {k: v for k, v in options.items() if k in names}
    return dataclasses.replace(settings, **accepted), sorted(set(options) - names)
