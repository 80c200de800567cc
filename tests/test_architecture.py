"""The layout's rules: the core runs without Qt / napari, and imports run one way only."""

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import napari_cervseg

PACKAGE = Path(napari_cervseg.__file__).parent
#: each part of the package and its layer: a module may import its own part or a lower layer only
LAYERS = {
    "_version": 0, "_gl_safety": 0, "stages": 0,
    "io": 1,
    "classify": 2,
    "explain": 3,
    "segment": 4, "measure": 4,
    "workflows": 5,
    "cli": 6, "plugin": 6,
}
UI_ONLY = {"qtpy", "napari", "magicgui", "superqt", "vispy", "PyQt5", "PyQt6", "PySide2", "PySide6"}


def _part(module: str) -> str:
    return module.split(".")[0]


def _imports(path: Path):
    """(imported module relative to the package or the top-level name of a third-party one, line)."""
    here = path.relative_to(PACKAGE).with_suffix("").parts
    package = here[:-1] if here[-1] != "__init__" else here[:-1]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(package[: len(package) - (node.level - 1)])
                target = ".".join(base + ([node.module] if node.module else []))
                names = [target] if node.module else [".".join(base + [a.name]) for a in node.names]
                for name in names:
                    yield "internal", name, node.lineno
            elif node.module and node.module.startswith("napari_cervseg"):
                yield "internal", node.module.partition(".")[2], node.lineno
            elif node.module:
                yield "external", node.module.split(".")[0], node.lineno
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("napari_cervseg"):
                    yield "internal", alias.name.partition(".")[2], node.lineno
                else:
                    yield "external", alias.name.split(".")[0], node.lineno


def test_every_module_belongs_to_a_layer():
    parts = {_part(".".join(p.relative_to(PACKAGE).with_suffix("").parts)) for p in PACKAGE.rglob("*.py")}
    assert parts - {"__init__"} <= set(LAYERS), sorted(parts - set(LAYERS))


def test_imports_run_one_way_and_the_core_never_imports_qt_or_napari():
    wrong = []
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE).with_suffix("").parts
        if rel == ("__init__",):
            continue  # the public API re-exports from every layer
        part = rel[0]
        for kind, name, line in _imports(path):
            where = f"{path.relative_to(PACKAGE)}:{line}"
            if kind == "internal" and name and LAYERS[_part(name)] > LAYERS[part]:
                wrong.append(f"{where} imports {name} (layer {LAYERS[_part(name)]} > {LAYERS[part]})")
            if kind == "external" and name in UI_ONLY and part != "plugin":
                wrong.append(f"{where} imports {name}: only plugin/ may use Qt or napari")
    assert not wrong, "\n".join(wrong)


def test_the_layer_rule_catches_an_upward_import(tmp_path, monkeypatch):
    """The check above must fail when a lower layer imports a higher one."""
    fake = tmp_path / "napari_cervseg"
    (fake / "io").mkdir(parents=True)
    (fake / "io" / "bad.py").write_text("from ..segment.pipeline import segment_cell\nimport qtpy\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", fake)
    found = list(_imports(fake / "io" / "bad.py"))
    assert ("internal", "segment.pipeline", 1) in found and ("external", "qtpy", 2) in found
    try:
        test_imports_run_one_way_and_the_core_never_imports_qt_or_napari()
    except AssertionError as exc:
        assert "imports segment.pipeline" in str(exc) and "imports qtpy" in str(exc)
    else:
        raise AssertionError("an upward import was not caught")


def test_core_and_api_import_and_run_without_qt_or_napari():
    """Block every Qt binding and napari at import time: the library must still work."""
    code = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split('.')[0] in {sorted(UI_ONLY)!r}:
                    raise ImportError('blocked ' + name)
        sys.meta_path.insert(0, Block())
        import numpy as np
        import napari_cervseg
        import napari_cervseg.workflows.batch, napari_cervseg.workflows.evaluate, napari_cervseg.cli
        from napari_cervseg import segment_cell, measure
        from synthetic import synthetic_cell
        rgb, truth, _ = synthetic_cell(seed=1)
        r = segment_cell(rgb, model=None, method='colour-baseline')
        assert measure(r.labels)['nucleus_area'] > 0
        bad = [m for m in sys.modules if m.split('.')[0] in {sorted(UI_ONLY)!r}]
        assert not bad, bad
        print('ok')
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("ok")


def test_every_exported_name_has_a_numpy_style_docstring():
    import inspect

    missing = []
    for name in napari_cervseg.__all__:
        obj = getattr(napari_cervseg, name)
        if not (inspect.isfunction(obj) or inspect.isclass(obj)):
            continue  # constants are described in the README's API table
        doc = inspect.getdoc(obj) or ""
        if inspect.isclass(obj) and issubclass(obj, Exception):
            ok = bool(doc)
        elif inspect.isclass(obj):
            ok = "Attributes\n----------" in doc or "Parameters\n----------" in doc
        else:
            ok = "Parameters\n----------" in doc and "Returns\n-------" in doc
        if not ok:
            missing.append(name)
    assert not missing, f"exported without a numpy-style docstring: {missing}"


def test_docstring_examples_run():
    import doctest
    import importlib

    for module in ("napari_cervseg.stages", "napari_cervseg.segment.pipeline", "napari_cervseg.measure.scores",
                   "napari_cervseg.measure.descriptors", "napari_cervseg.workflows.fields",
                   "napari_cervseg.classify.models", "napari_cervseg.classify.classifier",
                   "napari_cervseg.classify.applicability"):
        result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
        assert result.failed == 0, module
