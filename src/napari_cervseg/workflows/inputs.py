"""The inputs of a batch run: files, folders and globs streamed as :class:`BatchInput` items, one per
page of a multi-page TIFF (read from the header; no pixels are loaded), each with its region of
interest; and reading one input's pixels.

Imports nothing else of the workflows but :mod:`.run_folder` (the output names an input must not
have).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ..io.images import (
    MAX_PIXELS,
    TIFF_SUFFIXES,
    ImageError,
    image_info,
    is_own_output,
    parse_roi,
    read_image,
)
from .run_folder import FIELD_SUFFIXES, OUTPUT_SUFFIXES

IMAGE_SUFFIXES = (".png", ".bmp", ".jpg", ".jpeg") + TIFF_SUFFIXES


@dataclass(frozen=True)
class BatchInput:
    """One image to segment: a file, or one page (``frame``) of a multi-page TIFF."""

    source: str
    frame: int | None = None
    n_frames: int = 1
    roi: tuple | None = None

    @property
    def stem(self) -> str:
        """The output file stem: ``name``, ``name_f0003`` for a TIFF page, plus ``_x.._y.._w.._h..``
        for a region of interest."""
        stem = Path(self.source).stem
        if self.frame is not None:
            stem += f"_f{self.frame:0{max(4, len(str(self.n_frames - 1)))}d}"
        if self.roi is not None:
            x, y, w, h = self.roi
            stem += f"_x{x}_y{y}_w{w}_h{h}"
        return stem

    @property
    def label(self) -> str:
        return self.source + (f" [frame {self.frame}]" if self.frame is not None else "")


def _glob_regex(pattern: str):
    """A compiled regex for a glob pattern relative to its walk root: ``*``, ``?``, ``[...]`` within
    one path part, ``**`` across parts (as :func:`glob.glob` with ``recursive=True``)."""
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:[^/]*/)*")
            i += 3
            continue
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            j = pattern.find("]", i + 2)
            if j < 0:
                out.append(re.escape(c))
            else:
                body = pattern[i + 1:j]
                out.append("[" + ("^" + body[1:] if body.startswith("!") else body) + "]")
                i = j
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out) + r"\Z")


def _walk_glob(pattern: str) -> list[Path]:
    """The files a glob names, found by walking from its fixed prefix without following folder
    links: a link loop (``sub -> .``, ``up -> ..``) cannot make the walk endless, and a link cannot
    lead it out of the folder or back into what it already walked. Sorted."""
    parts = Path(pattern).parts
    fixed = 0
    while fixed < len(parts) - 1 and not any(c in parts[fixed] for c in "*?["):
        fixed += 1
    root = Path(*parts[:fixed]) if fixed else Path(".")
    rest = "/".join(parts[fixed:])
    regex = _glob_regex(rest)
    recursive = "**" in rest
    depth = rest.count("/")
    found = []
    if not root.is_dir():
        return found
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        rel_dir = os.path.relpath(dirpath, root)
        level = 0 if rel_dir == "." else rel_dir.count(os.sep) + 1
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        if not recursive and level >= depth:
            dirnames[:] = []
        for name in filenames:
            if name.startswith("."):
                continue
            rel = name if rel_dir == "." else f"{rel_dir.replace(os.sep, '/')}/{name}"
            if regex.match(rel):
                path = Path(dirpath) / name
                if path.is_file():
                    found.append(path)
    return sorted(found)


def expand_inputs(items: Iterable[str], roi=None, skipped: list | None = None) -> Iterator[BatchInput]:
    """Stream the inputs named by files, folders (their images, sorted) and globs.

    A TIFF with several pages yields one input per page. Files that cannot be opened still yield
    one input, so that the run reports them as failed by name. Each file is visited once (by its
    real path: two names or links for one file make one input), and globs never follow folder
    links. Files in a folder or glob that are named like our outputs (``*_labels.png`` ...) are
    not inputs; those that this package did not write are listed in ``skipped`` (``(path,
    reason)`` pairs), so the run can say so.
    """
    box = parse_roi(roi) if roi is not None else None
    visited: dict[str, str] = {}
    for item in items:
        item = str(item)
        p = Path(item)
        listed = True
        if p.is_dir():
            paths = sorted(q for q in p.iterdir() if q.suffix.lower() in IMAGE_SUFFIXES and q.is_file())
        elif not p.exists() and any(c in item for c in "*?["):
            paths = [q for q in _walk_glob(item) if q.suffix.lower() in IMAGE_SUFFIXES]
        else:
            paths, listed = [p], False
        for path in paths:
            if listed and path.name.endswith(OUTPUT_SUFFIXES + FIELD_SUFFIXES):
                if skipped is not None and not is_own_output(path):
                    why = f"named like an output of cervseg (*{_output_suffix(path.name)}); rename it to segment it"
                    skipped.append((str(path), why))
                continue
            real = os.path.realpath(path)
            if real in visited:
                if skipped is not None and visited[real] != str(path):
                    skipped.append((str(path), f"the same file as {visited[real]}"))
                continue
            visited[real] = str(path)
            n_frames = 1
            if path.suffix.lower() in TIFF_SUFFIXES:
                try:
                    n_frames = image_info(path)[0]
                except ImageError:
                    n_frames = 1  # reported when it is processed
            if n_frames > 1:
                for frame in range(n_frames):
                    yield BatchInput(str(path), frame, n_frames, box)
            else:
                yield BatchInput(str(path), None, 1, box)


def _output_suffix(name: str) -> str:
    return next(s for s in OUTPUT_SUFFIXES + FIELD_SUFFIXES if name.endswith(s))


def read_input(item: BatchInput, max_pixels: int | None = MAX_PIXELS):
    """The pixels of one input: its file, or its TIFF page, cut to its region of interest."""
    return read_image(item.source, frame=item.frame, roi=item.roi, max_pixels=max_pixels)
