"""Print the package's modules (lines each) and its longest functions: the shape of the code.

    python scripts/code_shape.py [SRC_DIR] [--top N]
"""

from __future__ import annotations

import argparse
import ast
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("src", nargs="?", default="src/napari_cervseg")
    parser.add_argument("--top", type=int, default=12)
    args = parser.parse_args()
    root = Path(args.src)
    functions = []
    print("module | lines")
    for path in sorted(root.rglob("*.py")):
        text = path.read_text()
        print(f"{path.relative_to(root)} | {len(text.splitlines())}")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                body = node.body
                if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant):
                    body = body[1:]  # the docstring is not code
                code = (body[-1].end_lineno - body[0].lineno + 1) if body else 0
                functions.append((code, f"{path.relative_to(root)}:{node.name}"))
    print(f"\nlongest functions (lines of code, docstring excluded), top {args.top}")
    for length, name in sorted(functions, reverse=True)[: args.top]:
        print(f"{length:5d}  {name}")


if __name__ == "__main__":
    main()
