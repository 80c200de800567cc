"""The output folder a run writes into: the names of its files, its lock, its journal, its
temporary files, and how a labels file is read back as the user left it.

Shared by the batch engine (``cervseg segment``), learning from corrections and slides; it
imports nothing else of the workflows, so each of them can use it without importing the others.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import socket
import time
from pathlib import Path

import cv2
import numpy as np

from ..io.images import ImageError, OutputError, is_own_output

#: what one input writes; the labels come last so that their presence means "complete"
OUTPUT_SUFFIXES = ("_heatmap.png", "_overlay.png", "_labels.png")
#: a field of view's instance labels (uint16 PNG, ids shared), written before its _labels.png
FIELD_SUFFIXES = ("_cells.png", "_nuclei.png")
LABELS_SUFFIX = "_labels.png"
JOURNAL = ".cervseg-journal.jsonl"


def labels_digest(labels) -> str:
    """SHA-256 of a labels array's bytes and shape: what ``cervseg segment`` wrote, to tell later
    whether the user changed the file."""
    arr = np.ascontiguousarray(np.asarray(labels, dtype=np.uint8))
    return hashlib.sha256(arr.tobytes() + str(arr.shape).encode()).hexdigest()


def instances_digest(labels) -> str:
    """SHA-256 of instance labels (any integer type, read back as written: uint16 PNG) and shape."""
    arr = np.ascontiguousarray(np.asarray(labels).astype(np.int64))
    return hashlib.sha256(arr.tobytes() + str(arr.shape).encode()).hexdigest()


def damaged_output(path: Path) -> bool:
    """A labels file that cannot be anyone's work: empty, or written by us and not decodable (a
    full disk under an earlier version). It is redone; any other unreadable file is reported."""
    try:
        if path.stat().st_size == 0:
            return True
    except OSError:
        return False
    return is_own_output(path) and cv2.imread(str(path), cv2.IMREAD_UNCHANGED) is None


def labels_as_saved(labels: np.ndarray, path: Path) -> tuple[np.ndarray, list[str]]:
    """A labels file as a 2D array: one saved as grey RGB(A) (three equal channels) is read from its
    first channel, with a note; a colour picture is refused by name."""
    labels = np.asarray(labels)
    if labels.ndim == 3 and labels.shape[-1] in (2, 3, 4):
        colour = labels[..., :3] if labels.shape[-1] >= 3 else labels[..., :1]
        if (colour == colour[..., :1]).all():
            return np.ascontiguousarray(labels[..., 0]), [
                f"{path.name} was saved with {labels.shape[-1]} channels; its first channel is the labels"]
        raise ImageError(f"{path}: a colour image, not labels; save labels as a single-channel PNG with"
                         " 0 background, 1 cytoplasm, 2 nucleus (or delete it to segment the image again)")
    return labels, []


CLASS_KEYS = ("method", "predicted_class", "probability", "cell_found", "judgeable", "not_judgeable_reason")


def missing(value) -> bool:
    return value is None or value == "" or (isinstance(value, float) and value != value)


LOCK = ".cervseg.lock"
#: a lock file that cannot be read (its run was killed while writing it) is stale after this long
LOCK_UNREADABLE_STALE_S = 30.0


class OutputFolderError(RuntimeError):
    """The output folder cannot take this run's outputs (its table or summary are someone else's)."""


class FolderInUseError(OutputFolderError):
    """Another run is writing into the output folder."""


def _is_our_table(path: Path) -> bool:
    try:
        with path.open(newline="") as fh:
            first = fh.readline(4096)
    except (OSError, UnicodeDecodeError):
        return False
    return first.strip() in ("", "image") or first.startswith("image,")


def _is_our_summary(path: Path) -> bool:
    try:
        if path.stat().st_size > 16 * 1024 * 1024:
            return False
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return path.exists() and path.stat().st_size == 0
    return isinstance(data, dict) and "versions" in data and "inputs" in data


def check_output_folder(out: Path) -> None:
    """Refuse an output folder whose ``descriptors.csv`` or ``summary.json`` this package did not
    write (the run would replace them), before any input is processed."""
    for name, ours in (("descriptors.csv", _is_our_table), ("summary.json", _is_our_summary)):
        path = out / name
        if path.exists() and not (path.is_file() and ours(path)):
            raise OutputFolderError(f"{path}: exists and is not a cervseg {name}; the run would replace it."
                                    " Move it, or choose another --out")


def _read_lock(path: Path) -> dict | None:
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def _pid_alive(pid) -> bool:
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError, TypeError):
        return True  # someone else's process, or not a pid we can check: assume alive
    return True


def _lock_is_stale(path: Path, info: dict | None) -> bool:
    if info is None:
        try:
            return time.time() - path.stat().st_mtime > LOCK_UNREADABLE_STALE_S
        except FileNotFoundError:
            return True
    return info.get("host") == socket.gethostname() and not _pid_alive(info.get("pid"))


@contextlib.contextmanager
def folder_lock(out: Path):
    """Hold ``out/.cervseg.lock`` (pid, host, start time; created exclusively) while a run writes
    into ``out``; a second run is refused with :class:`FolderInUseError`. A lock whose process is
    gone (on this host) is stale and taken over. The lock is removed at the end, errors included."""
    path = out / LOCK
    mine = {"pid": os.getpid(), "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "token": os.urandom(8).hex()}
    for _ in range(5):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            info = _read_lock(path)
            if _lock_is_stale(path, info):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                continue
            who = (f"pid {info.get('pid')} on {info.get('host')}, since {info.get('started')}" if info
                   else "a run that is starting")
            raise FolderInUseError(
                f"{out} is in use by another cervseg run ({who}); wait for it to finish or choose"
                f" another --out. If no run is going on, delete {path}") from None
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(json.dumps(mine))
        except OSError as exc:
            with contextlib.suppress(OSError):
                path.unlink()
            raise OutputError(f"could not write the lock file {path}: {exc.strerror or exc}") from exc
        break
    else:
        raise FolderInUseError(f"{out}: could not take the lock {path}; delete it if no run is going on")
    try:
        yield path
    finally:
        if (_read_lock(path) or {}).get("token") == mine["token"]:
            with contextlib.suppress(OSError):
                path.unlink()


def _is_temporary(name: str) -> bool:
    m = re.fullmatch(r"\.(.+)\.tmp[0-9-]*(?:\.png)?", name)
    return bool(m) and (m.group(1).endswith(OUTPUT_SUFFIXES + FIELD_SUFFIXES)
                        or m.group(1) in ("descriptors.csv", "summary.json"))


def clean_temporary_files(out: Path) -> int:
    """Remove the temporary files a killed run left in ``out`` (called under the folder lock, so no
    other run is writing them). Returns how many were removed."""
    n = 0
    for path in out.iterdir():
        if path.name.startswith(".") and _is_temporary(path.name) and path.is_file():
            with contextlib.suppress(OSError):
                path.unlink()
                n += 1
    return n


class Journal:
    """Append-only JSON-lines record of finished inputs; read back to resume."""

    def __init__(self, path: Path):
        self.path = path
        self.fh = None
        self.error: str | None = None

    def read(self) -> dict[str, dict]:
        rows: dict[str, dict] = {}
        if not self.path.exists():
            return rows
        with self.path.open() as fh:
            for line in fh:
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut by a killed run
                if not isinstance(rec, dict) or not isinstance(rec.get("row"), dict):
                    continue
                row = rec["row"]
                earlier = rows.get(rec.get("image"), {})
                # a kept row re-measures labels; its class comes from the run that made them
                for key in CLASS_KEYS:
                    if missing(row.get(key)) and not missing(earlier.get(key)):
                        row[key] = earlier[key]
                rows[rec["image"]] = row
        return rows

    def append(self, record: dict) -> None:
        """Append one record; a failed write (full disk) is remembered in ``error``, not raised: the
        input's outputs are on disk and complete, and the run goes on."""
        try:
            if self.fh is None:
                self.fh = self.path.open("a")
            self.fh.write(json.dumps(record, default=json_default) + "\n")
            self.fh.flush()
        except OSError as exc:
            self.error = f"could not append to {self.path}: {exc.strerror or exc}"
            self.close()

    def close(self) -> None:
        if self.fh is not None:
            fh, self.fh = self.fh, None
            try:
                fh.close()
            except OSError as exc:
                self.error = f"could not append to {self.path}: {exc.strerror or exc}"


def json_default(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return str(value)
