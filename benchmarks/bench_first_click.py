"""The first click on Segment cell in a real napari viewer: seconds from the click to the labels
layer, in a fresh process each time, with and without the background warm-up (issue 23 item 7).

    xvfb-run -a .venv/bin/python benchmarks/bench_first_click.py [--repeats 3] [--think 5]

The user opens the sample cell and docks Segment cell, then takes ``--think`` seconds before
clicking (finding the button); the warm-up runs in that time. Writes
benchmarks/results/first_click.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

ONE_RUN = r"""
import sys, time
import napari
from qtpy.QtWidgets import QApplication
from napari_cervseg.plugin.samples import load_sample
from napari_cervseg.plugin.widgets import SegmentCellWidget

think = float(sys.argv[1])
viewer = napari.Viewer(show=False)
viewer.add_image(load_sample("abnormal"), name="cell", rgb=True)
widget = SegmentCellWidget(viewer)
viewer.window.add_dock_widget(widget)
app = QApplication.instance()
end = time.perf_counter() + think
while time.perf_counter() < end:
    app.processEvents()
    time.sleep(0.01)
t0 = time.perf_counter()
widget.run()
while not any(layer.name.startswith("cell regions") for layer in viewer.layers):
    app.processEvents()
    time.sleep(0.005)
    if time.perf_counter() - t0 > 120:
        raise SystemExit("no labels layer after 120 s")
print(time.perf_counter() - t0)
viewer.close()
"""


def first_click(think: float, warm_up: bool) -> float:
    env = dict(os.environ, CERVSEG_NO_WARMUP="0" if warm_up else "1")
    out = subprocess.run([sys.executable, "-c", ONE_RUN, str(think)], capture_output=True, text=True, env=env,
                         check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--think", type=float, default=5.0, help="seconds between docking and clicking")
    args = parser.parse_args()
    report = {"command": "python " + " ".join(sys.argv), "cpu": platform.processor() or platform.machine(),
              "think_seconds": args.think, "runs": {}}
    for warm_up in (False, True):
        key = "warm-up" if warm_up else "no warm-up"
        report["runs"][key] = [first_click(args.think, warm_up) for _ in range(args.repeats)]
        print(key, report["runs"][key], flush=True)
    out = ROOT / "benchmarks" / "results" / "first_click"
    out.with_suffix(".json").write_text(json.dumps(report, indent=2))
    lines = [f"# First click on Segment cell (`{report['command']}`)", "",
             (f"Fresh process per run; the widget docked, {args.think:g} s before the click; seconds from the"
              " click to the labels layer."), "", "| | runs (s) | median (s) |", "|---|---|---|"]
    for key, runs in report["runs"].items():
        lines.append(f"| {key} | {', '.join(f'{v:.2f}' for v in runs)} | {statistics.median(runs):.2f} |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
