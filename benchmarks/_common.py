"""What the benchmark scripts share: arguments, threads, and the default model's test cells."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import torch

from napari_cervseg import load_model
from napari_cervseg.io.datasets import default_data_root, read_dataset

RESULTS = Path(__file__).parent / "results"


def code_commit() -> str:
    """The checkout's short commit, for the heading of a result file."""
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=RESULTS.parent.parent, capture_output=True,
                          text=True).stdout.strip()


def in_fresh_process(code: str, *args: str, env: dict | None = None) -> str:
    """Run Python ``code`` with ``args`` (its sys.argv[1:]) in a fresh interpreter, where a peak
    RSS or a first call is its own; returns the last line it printed (its result)."""
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, check=True)
    return out.stdout.strip().splitlines()[-1]


def write_dev_result(name: str, lines: list[str]) -> Path:
    """Write a development check's markdown lines to ``results/dev/<name>.md``; returns the path."""
    path = RESULTS / "dev" / f"{name}.md"
    path.write_text("\n".join(lines) + "\n")
    print(f"wrote {path}")
    return path


def parser(description: str, out_name: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--data", default=None, help="Herlev-layout folder (default: ../shared/data/herlev)")
    p.add_argument("--n", type=int, default=60, help="test-split cells to use")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=str(RESULTS / out_name))
    return p


def default_model_and_test_cells(args, spread: bool = False):
    """Set torch threads; load the default model; its first N test-split cells (or N spread evenly
    over the split, which the manifest orders by Herlev class)."""
    torch.set_num_threads(args.threads)
    root = Path(args.data) if args.data else default_data_root()
    if root is None:
        sys.exit("no data: pass --data (a Herlev-layout folder)")
    model = load_model("default", device="cpu")
    test_names = set(model.card["training"]["split"]["test"])
    samples = [s for s in read_dataset(root) if s.name in test_names]
    samples = samples[:: max(1, len(samples) // args.n)][: args.n] if spread else samples[: args.n]
    return model, samples, [s.load_image() for s in samples]
