"""The method and settings controls of the Segment widgets, made from the settings dataclasses.

One control per field of any method's settings class (``segment.settings``), typed and with its
default from the dataclass, so a default exists once, for the CLI and the widgets alike.
"""

from __future__ import annotations

import dataclasses

from magicgui.widgets import ComboBox, LineEdit, create_widget

from ..cli import SETTING_HELP
from ..explain import METHODS as EXPLAIN_METHODS
from ..segment.grouping import GROUPINGS
from ..segment.inpaint import INPAINTERS
from ..segment.settings import (
    BASELINE,
    DEFAULT_SEGMENT_METHOD,
    NUCLEUS_SEEDS,
    SEGMENT_METHODS,
    SETTINGS_CLASSES,
    Settings,
    settings_for,
)
from ..segment.student import STUDENT_REFINE, STUDENT_TTA

MODEL_TIP = ("'default' or 'ensemble3' (bundled: the compact network, or three averaged; see the README's"
             " Models), or the path of a .safetensors model (with its .json card) or of a Keras .keras / .h5 model"
             " (needs the keras extra)")


def model_edit() -> LineEdit:
    """The model control: ``default`` (the bundled model) or a model file's path."""
    return LineEdit(value="default", label="model", tooltip=MODEL_TIP)


#: the Segment widget's "call abnormal at" choices -> segment_cell's operating_point
CALL_CHOICES = {"most probable class": None, "screening point": "screening"}
#: the named values a setting may take (the settings classes refuse others)
SETTING_CHOICES = {"grouping": GROUPINGS, "nucleus_seed": NUCLEUS_SEEDS, "inpainter": INPAINTERS,
                   "explain_method": EXPLAIN_METHODS, "tta": STUDENT_TTA, "refine": STUDENT_REFINE}
#: the bounds of the number controls (the settings classes refuse values outside theirs)
SETTING_LIMITS = {"nucleus_iterations": (0, 100), "cytoplasm_iterations": (0, 100), "work_size": (16, 4096),
                  "dilation": (0, 128), "smooth": (0, 64), "log_scale_factor": (0.01, 1e12)}
_TYPES = {"int": int, "float": float, "bool": bool, "str": str, "str | None": str, "float | None": str}


def setting_fields() -> dict[str, dataclasses.Field]:
    """Every setting of any method, as its dataclass field, in the settings classes' order."""
    fields: dict[str, dataclasses.Field] = {}
    for cls in SETTINGS_CLASSES.values():
        for f in dataclasses.fields(cls):
            fields.setdefault(f.name, f)
    return fields


def method_defaults(method: str) -> dict:
    """The settings ``method`` runs with by default, by name (from its settings dataclass)."""
    return dataclasses.asdict(settings_for(method)[0])


def _shown(value):
    """A setting's value as its control holds it (an unset optional text is empty)."""
    return "" if value is None else value


def _setting_control(f: dataclasses.Field):
    """A magicgui control for one setting: its type, choices and bounds, the default of ``f``."""
    value = _shown(f.default)
    options = {}
    if f.name in SETTING_CHOICES:
        options["choices"] = list(SETTING_CHOICES[f.name])
    if f.name in SETTING_LIMITS:
        options["min"], options["max"] = SETTING_LIMITS[f.name]
    if f.type == "float":
        options["step"] = 0.5
    control = create_widget(value=value, annotation=_TYPES[str(f.type)], name=f.name,
                            widget_type="ComboBox" if "choices" in options else None, options=options)
    control.tooltip = SETTING_HELP.get(f.name)
    return control


class MethodControls:
    """Model, method, the method's settings and the operating point, as one set of controls.

    The settings controls are made from the settings dataclasses (one per field of any method,
    its default written once, in ``segment.settings``); those of other methods are disabled and hidden, and
    choosing a method sets each control the user left at the old method's default to the new one's.

    Parameters
    ----------
    method : str
        The method chosen at first.

    Attributes
    ----------
    widgets : list of magicgui widgets
        The controls, in order, to put in a widget's Container (so they line up with its labels).
    """

    def __init__(self, method: str = DEFAULT_SEGMENT_METHOD):
        self.model_edit = model_edit()
        self.method_combo = ComboBox(label="method", choices=list(SEGMENT_METHODS), value=method)
        self.setting_controls = {name: _setting_control(f) for name, f in setting_fields().items()}
        # screening: the model card's threshold on p(abnormal), chosen for a high abnormal recall
        self.call_combo = ComboBox(label="call abnormal at", choices=list(CALL_CHOICES), value="most probable class")
        self.widgets = [self.model_edit, self.method_combo, *self.setting_controls.values(), self.call_combo]
        self._method = None
        self._follow_method(method)
        self.method_combo.changed.connect(self._follow_method)

    def _follow_method(self, method: str) -> None:
        old = method_defaults(self._method) if self._method is not None else {}
        new = method_defaults(method)
        for name, control in self.setting_controls.items():
            if name in new and (name not in old or control.value == _shown(old[name])):
                control.value = _shown(new[name])
            control.enabled = name in new
            # what does not apply is hidden, not greyed out (13 greyed controls buried the few that
            # matter); a control not yet in a widget is never shown on its own (it would be a window)
            if name not in new:
                control.visible = False
            elif control.native.parent() is not None:
                control.visible = True
        classifier = method != BASELINE
        self.model_edit.enabled = self.call_combo.enabled = classifier
        self._method = method

    def settings(self) -> Settings:
        """The chosen method's settings dataclass from the enabled controls (SegmentationError if
        a value is refused)."""
        optional = {name for name, f in setting_fields().items() if f.default is None}
        values = {name: None if name in optional and control.value == "" else control.value
                  for name, control in self.setting_controls.items() if control.enabled}
        return settings_for(self.method_combo.value, **values)[0]

    def options(self) -> dict:
        """``model``, ``method``, ``settings`` and (if chosen) ``operating_point``: segment_cell's arguments."""
        method = self.method_combo.value
        opts = {"model": None if method == BASELINE else (self.model_edit.value.strip() or "default"),
                "method": method, "settings": self.settings()}
        if method != BASELINE and CALL_CHOICES[self.call_combo.value] is not None:
            opts["operating_point"] = CALL_CHOICES[self.call_combo.value]
        return opts

    def config(self):
        """The options as the core's BatchConfig (what ``segment_frames`` / ``segment_boxes`` take)."""
        from ..workflows.batch import BatchConfig

        opts = self.options()
        return BatchConfig(model=opts.pop("model"), method=opts.pop("method"), options=opts)
