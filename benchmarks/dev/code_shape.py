"""The package's shape, for issue 24's before / after report: the longest modules and functions,
imports made inside functions, import cycles between modules, and the walk of one image through
``segment_field`` (which package files it enters, in order, and how often a call climbs from a
lower layer back up to a higher one).

Run it against any checkout (the tree it measures is the one Python imports):

    PYTHONPATH=SRC python benchmarks/dev/code_shape.py --src SRC --out benchmarks/results/dev/code_shape_NAME

Layers, lowest first: io and stages (0), classify and explain (1), segment and measure (2),
workflows (3), cli and plugin (4); a "climb" is a call from a module into one of a higher layer.
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from collections import Counter
from pathlib import Path

LAYERS = {"io": 0, "stages": 0, "classify": 1, "explain": 1, "segment": 2, "measure": 2, "workflows": 3,
          "cli": 4, "plugin": 4}
PACKAGE = "napari_cervseg"


def layer_of(module: str) -> int | None:
    parts = module.split(".")
    if parts[0] != PACKAGE or len(parts) < 2:
        return None
    return LAYERS.get(parts[1])


def modules(src: Path) -> dict[str, Path]:
    root = src / PACKAGE
    found = {}
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(src).with_suffix("")
        name = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        found[name] = path
    return found


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".")
    if not is_package:
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def static_shape(src: Path) -> dict:
    mods = modules(src)
    lines, functions, inner_imports, edges, all_edges = {}, [], Counter(), {}, {}
    for name, path in mods.items():
        text = path.read_text()
        tree = ast.parse(text)
        lines[name] = len(text.splitlines())
        top: set[str] = set()
        anywhere: set[str] = set()
        is_package = path.name == "__init__.py"
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                functions.append((node.end_lineno - node.lineno + 1, f"{name}.{node.name}"))
                for inner in ast.walk(node):
                    if isinstance(inner, (ast.Import, ast.ImportFrom)):
                        inner_imports[name] += 1
            if isinstance(node, ast.ImportFrom):  # the import graph with imports inside functions too
                target = _resolve(name, is_package, node)
                anywhere.add(target)
                anywhere.update(f"{target}.{alias.name}" for alias in node.names)
        for node in tree.body:  # module-level imports only: the import graph
            if isinstance(node, ast.ImportFrom):
                target = _resolve(name, is_package, node)
                if target.startswith(PACKAGE):
                    top.add(target)
                    for alias in node.names:
                        if f"{target}.{alias.name}" in mods:
                            top.add(f"{target}.{alias.name}")
            elif isinstance(node, ast.Import):
                top.update(a.name for a in node.names if a.name.startswith(PACKAGE))
        edges[name] = {t for t in top if t in mods and t != name}
        all_edges[name] = {t for t in anywhere | top if t in mods and t != name and not name.startswith(t + ".")}
    cycles = _cycles(edges)
    hidden = [c for c in _cycles(all_edges) if c not in cycles]
    upward = sorted((a, b) for a, targets in edges.items() for b in targets
                    if layer_of(a) is not None and layer_of(b) is not None and layer_of(b) > layer_of(a))
    return {"modules": len(mods), "lines": sum(lines.values()), "tree": lines,
            "longest_modules": sorted(((v, k) for k, v in lines.items()), reverse=True)[:12],
            "longest_functions": sorted(functions, reverse=True)[:12],
            "functions_over_80_lines": sum(n > 80 for n, _ in functions),
            "imports_inside_functions": sum(inner_imports.values()),
            "imports_inside_functions_by_module": inner_imports.most_common(8),
            "module_level_import_cycles": cycles, "cycles_through_imports_inside_functions": hidden,
            "upward_module_imports": upward}


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in edges:
        if v not in index:
            visit(v)
    return out


def walk_segment_field(src: Path, image_path: Path) -> dict:
    """The package files one segment_field call enters, in order of first entry, and the climbs."""
    import cv2

    from napari_cervseg import load_model, segment_field

    image = cv2.cvtColor(cv2.imread(str(image_path)), cv2.COLOR_BGR2RGB)
    model = load_model("default", device="cpu")
    root = str((src / PACKAGE).resolve())
    entered: list[str] = []
    calls = Counter()
    climbs = Counter()

    def name_of(filename: str) -> str | None:
        if not filename.startswith(root):
            return None
        rel = Path(filename).resolve().relative_to(src.resolve()).with_suffix("")
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        return ".".join(parts)

    def tracer(frame, event, arg):
        if event != "call":
            return None
        callee = name_of(frame.f_code.co_filename)
        if callee is None:
            return None
        calls[callee] += 1
        if callee not in entered:
            entered.append(callee)
        back = frame.f_back
        while back is not None and name_of(back.f_code.co_filename) is None:
            back = back.f_back  # through numpy, torch, scipy ... to the package code that called
        caller = None if back is None else name_of(back.f_code.co_filename)
        if caller and layer_of(caller) is not None and layer_of(callee) is not None \
                and layer_of(callee) > layer_of(caller):
            climbs[f"{caller} -> {callee}"] += 1
        return None

    segment_field(image, model=model)  # warm: imports and first-call caches are not the walk
    sys.setprofile(None)
    sys.settrace(tracer)
    try:
        result = segment_field(image, model=model)
    finally:
        sys.settrace(None)
    return {"image": image_path.name, "cells": result.n_cells, "files_entered": len(entered),
            "order": entered, "package_calls": sum(calls.values()), "climbs": sum(climbs.values()),
            "climbs_by_edge": climbs.most_common()}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--src", required=True, help="the src folder measured (and imported: put it on PYTHONPATH)")
    p.add_argument("--field", default="../shared/data/fields-herlev-dev/images", help="a field image, or a folder")
    p.add_argument("--out", required=True)
    args = p.parse_args()
    src = Path(args.src).resolve()
    import napari_cervseg

    if not Path(napari_cervseg.__file__).resolve().is_relative_to(src):
        sys.exit(f"napari_cervseg is imported from {napari_cervseg.__file__}, not from {src}: set PYTHONPATH")
    images = sorted(Path(args.field).glob("*.png")) if Path(args.field).is_dir() else [Path(args.field)]
    shape = static_shape(src)
    shape["walk"] = walk_segment_field(src, images[0])
    shape["command"] = " ".join(["python", *sys.argv])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(shape, indent=1))
    md = [f"# Code shape of {src}", "", f"`{shape['command']}`", "",
          (f"{shape['modules']} modules, {shape['lines']} lines; {shape['functions_over_80_lines']} functions over 80"
          f" lines; {shape['imports_inside_functions']} imports inside functions;"
          f" module-level import cycles: {shape['module_level_import_cycles'] or 'none'};"
          f" cycles through imports inside functions: {shape['cycles_through_imports_inside_functions'] or 'none'};"
          f" upward module-level imports: {len(shape['upward_module_imports'])}"), "",
          "| longest modules | lines |", "|---|---|", *[f"| {m} | {n} |" for n, m in shape["longest_modules"]], "",
          "| longest functions | lines |", "|---|---|", *[f"| {m} | {n} |" for n, m in shape["longest_functions"]], "",
          (f"Walk of one field ({shape['walk']['image']}, {shape['walk']['cells']} cells) through segment_field:"
          f" {shape['walk']['files_entered']} package files entered, {shape['walk']['package_calls']} calls into"
          f" package code, {shape['walk']['climbs']} climbs from a lower layer to a higher one."), "",
          "Files in order of first entry: " + " -> ".join(m.removeprefix(PACKAGE + ".") for m in shape["walk"]["order"]),
          "", "Climbs: " + (", ".join(f"{e} ({n})" for e, n in shape["walk"]["climbs_by_edge"]) or "none")]
    md += ["", "The tree (module: lines):", "", "```"]
    md += [f"{m.removeprefix(PACKAGE + '.') if m != PACKAGE else PACKAGE}: {n}" for m, n in shape["tree"].items()]
    md += ["```"]
    out.with_suffix(".md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
