"""One place for each setting (issue 24): a settings dataclass field's metadata (default, bounds or
choices, help) is what the settings classes check, what the CLI offers and what the widgets show."""

import argparse

import pytest

from napari_cervseg.cli import build_parser, main
from napari_cervseg.segment.grouping import GROUPINGS
from napari_cervseg.segment.settings import (
    SETTINGS_CLASSES,
    LrpSettings,
    SegmentationError,
    SelfTrainedSettings,
    option_names,
    setting_spec,
    setting_specs,
    settings_for,
)


def _segment_option(name: str) -> argparse.Action:
    """The ``cervseg segment`` option of setting ``name``."""
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    flag = "--" + name.replace("_", "-")
    return next(a for a in sub.choices["segment"]._actions if flag in a.option_strings)


def _refused(name: str, value) -> str:
    """The message a settings class that takes ``name`` refuses ``value`` with."""
    cls = next(SETTINGS_CLASSES[a] for a in setting_spec(name).defaults)
    with pytest.raises(SegmentationError) as refused:
        cls(**{name: value})
    return str(refused.value)


def _controls(method: str):
    pytest.importorskip("magicgui")
    from napari_cervseg.plugin.controls import MethodControls

    return MethodControls(method)


def test_every_setting_has_one_spec_with_help_and_its_valid_values():
    specs = setting_specs()
    assert list(specs) == list(dict.fromkeys(f for cls in SETTINGS_CLASSES.values()
                                             for f in cls.__dataclass_fields__))
    assert set(specs) == set(option_names())
    for spec in specs.values():
        assert spec.help and spec.type in (int, float, bool, str), spec
        assert spec.bounds is None or spec.choices is None, spec
        if spec.type in (int, float):  # every number has bounds; every named value its choices
            assert spec.bounds is not None, spec
        for algorithm, default in spec.defaults.items():  # each method's default passes its own check
            assert getattr(SETTINGS_CLASSES[algorithm](), spec.name) == default
    assert setting_spec("grouping").defaults == {"cam": "gmm", "lrp": "kmeans"}
    assert setting_spec("log_scale_factor").bounds == (1e-6, 1e12)  # the library's bound, not the widget's 0.01
    with pytest.raises(SegmentationError, match="unknown option 'dilaton'"):
        setting_spec("dilaton")


@pytest.mark.parametrize("name", [n for n, s in setting_specs().items() if s.bounds is not None])
def test_the_check_of_a_number_is_its_spec_bounds(name):
    spec = setting_spec(name)
    low, high = spec.bounds
    cls = next(SETTINGS_CLASSES[a] for a in spec.defaults)
    assert getattr(cls(**{name: low}), name) == low and getattr(cls(**{name: high}), name) == high
    kind = "an integer" if spec.type is int else "a number"
    for bad in (low - 1, high * 2 + 1, float("nan")):
        assert _refused(name, bad) == f"{name} must be {kind} from {low} to {high}; got {bad!r}"


@pytest.mark.parametrize("name", [n for n, s in setting_specs().items() if s.choices is not None])
def test_the_check_of_a_named_value_is_its_spec_choices(name):
    spec = setting_spec(name)
    cls = next(SETTINGS_CLASSES[a] for a in spec.defaults)
    for choice in spec.choices:
        assert getattr(cls(**{name: choice}), name) == choice
    assert _refused(name, "bogus") == (f"unknown {name} 'bogus'; choose one of"
                                       f" {', '.join(map(str, spec.choices))}")


def test_each_cli_option_is_built_from_its_spec():
    for name, spec in setting_specs().items():
        option = _segment_option(name)
        assert option.default is None and option.help.startswith(spec.help), name
        if spec.type is bool:
            assert isinstance(option, argparse.BooleanOptionalAction), name
        elif spec.choices is not None:
            assert tuple(option.choices) == spec.choices, name
        else:
            assert option.type is spec.type and option.choices is None, name
    grouping = _segment_option("grouping")  # no longer an option of its own: one like the others
    assert grouping.dest == "grouping" and tuple(grouping.choices) == GROUPINGS
    assert "'gmm' (cam); 'kmeans' (lrp)" in grouping.help


def test_each_widget_control_is_built_from_its_spec(qapp):
    controls = _controls("lrp-ruleset1")
    for name, spec in setting_specs().items():
        control = controls.setting_controls[name]
        assert control.tooltip == spec.help, name
        if spec.choices is not None and spec.type is not bool:
            assert tuple(control.choices) == spec.choices, name
        if spec.bounds is not None and not spec.optional:
            assert (control.min, control.max) == spec.bounds, name


def test_log_scale_factor_one_bound_and_one_message_for_api_cli_and_widget(tmp_path, capsys, qapp):
    spec = setting_spec("log_scale_factor")
    message = _refused("log_scale_factor", 0.0)
    assert message == "log_scale_factor must be a number from 1e-06 to 1000000000000.0; got 0.0"
    # the CLI refuses it with the same message, before any file is read or written
    out = tmp_path / "out"
    assert main(["segment", str(tmp_path / "cell.png"), "--out", str(out), "--quiet",
                 "--log-scale-factor", "0"]) == 2
    assert capsys.readouterr().err.strip() == f"error: {message}" and not out.exists()
    # the widget's control holds the spec's range: its low bound is a value the settings accept, 0 is refused
    controls = _controls("lrp-ruleset1")
    control = controls.setting_controls["log_scale_factor"]
    assert (control.min, control.max) == spec.bounds
    control.value = spec.bounds[0]
    assert controls.settings() == LrpSettings(log_scale_factor=1e-6)
    with pytest.raises(ValueError):
        control.value = 0.0


def test_grouping_one_set_of_choices_for_api_cli_and_widget(tmp_path, capsys, qapp):
    spec = setting_spec("grouping")
    assert spec.choices == GROUPINGS
    message = _refused("grouping", "bogus")
    assert message == f"unknown grouping 'bogus'; choose one of {', '.join(GROUPINGS)}"
    with pytest.raises(SegmentationError, match=message):
        settings_for("gradcam++", grouping="bogus")
    # the CLI: argparse refuses it by the same choices
    with pytest.raises(SystemExit) as stop:
        main(["segment", str(tmp_path / "cell.png"), "--out", str(tmp_path / "out"), "--grouping", "bogus"])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "--grouping: invalid choice: 'bogus'" in err and all(repr(g) in err for g in GROUPINGS)
    # the widget: a combo box of the same choices
    controls = _controls("gradcam++")
    assert tuple(controls.setting_controls["grouping"].choices) == GROUPINGS
    controls.setting_controls["grouping"].value = "kmeans"
    assert controls.settings().grouping == "kmeans"
    with pytest.raises(ValueError):
        controls.setting_controls["grouping"].value = "bogus"


def test_a_bad_cell_threshold_has_one_message_through_api_cli_and_widget(tmp_path, capsys, qapp):
    """A value each route can carry to the dataclass check (the widget's control is text)."""
    message = _refused("cell_threshold", 5.0)
    assert message == "cell_threshold must be a number from 0.01 to 0.99; got 5.0"
    assert main(["segment", str(tmp_path / "cell.png"), "--out", str(tmp_path / "out"), "--quiet",
                 "--cell-threshold", "5"]) == 2
    assert capsys.readouterr().err.strip() == f"error: {message}"
    controls = _controls("self-trained")
    controls.setting_controls["cell_threshold"].value = "5"
    with pytest.raises(SegmentationError) as refused:
        controls.settings()
    assert str(refused.value) == message
    controls.setting_controls["cell_threshold"].value = ""  # empty: unset
    assert controls.settings() == SelfTrainedSettings()
