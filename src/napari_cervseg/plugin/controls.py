"""The method and settings controls of the Segment widgets, made from the settings dataclasses.

One control per setting of any method (``segment.settings.setting_specs``): its type, default,
choices or bounds and its help (the tooltip) are those the settings classes check and the CLI
offers, written once, in ``segment.settings``.
"""

from __future__ import annotations

import dataclasses
import math

from magicgui.widgets import ComboBox, LineEdit, create_widget

from ..segment.settings import (
    BASELINE,
    DEFAULT_SEGMENT_METHOD,
    SEGMENT_METHODS,
    Settings,
    SettingSpec,
    setting_specs,
    settings_for,
)

MODEL_TIP = ("'default' or 'ensemble3' (bundled: the compact network, or three averaged; 'default' on a field"
             " is ensemble3; see the README's Models), or the path of a .safetensors model (with its .json card) or of a Keras .keras / .h5 model"
             " (needs the keras extra)")


def model_edit() -> LineEdit:
    """The model control: ``default`` (the bundled model) or a model file's path."""
    return LineEdit(value="default", label="model", tooltip=MODEL_TIP)


#: the Segment widget's "call abnormal at" choices -> segment_cell's operating_point
CALL_CHOICES = {"most probable class": None, "screening point": "screening"}
def method_defaults(method: str) -> dict:
    """The settings ``method`` runs with by default, by name (from its settings dataclass)."""
    return dataclasses.asdict(settings_for(method)[0])


def _shown(value):
    """A setting's value as its control holds it (an unset optional text is empty)."""
    return "" if value is None else value


def _setting_control(spec: SettingSpec):
    """A magicgui control for one setting: its type, choices or bounds, help and (first method's) default.

    An optional number (None: unset) is a text control, where empty is unset.
    """
    value = _shown(next(iter(spec.defaults.values())))
    kind = str if spec.optional else spec.type
    options = {}
    if spec.choices is not None and kind is not bool:
        options["choices"] = list(spec.choices)
    if spec.bounds is not None and kind in (int, float):
        options["min"], options["max"] = spec.bounds
    if kind is float:
        options["step"] = 0.5
    control = create_widget(value=value, annotation=kind, name=spec.name,
                            widget_type="ComboBox" if "choices" in options else None, options=options)
    if kind is float and spec.bounds is not None:
        # a spin box rounds its bounds to its decimals (2): show enough of them to hold the low bound
        low = spec.bounds[0]
        decimals = max(2, math.ceil(-math.log10(low)) if 0 < low < 1 else 0)
        if decimals > control.native.decimals():
            control.native.setDecimals(decimals)
            control.min = low
    control.tooltip = spec.help
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
        self.setting_controls = {name: _setting_control(spec) for name, spec in setting_specs().items()}
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
        optional = {name for name, spec in setting_specs().items() if spec.optional}
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
