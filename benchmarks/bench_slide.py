"""Whole slides end to end (issue 25): a synthetic pyramidal OME-TIFF of composed Herlev fields on a
slide background, through `segment_slide` with 2 workers; cells per second, peak memory of the
whole process tree, time to resume after a kill at half way, and the same slide through a Dask
LocalCluster started outside the run (as a cluster's address).

    .venv/bin/python benchmarks/bench_slide.py --size 10000 [--per-cell segment|classify]
        [--kill-at 0.5] [--cluster] [--out benchmarks/results/slide_10000]

The slide's fields come from `data/fields-slide-bench` (made here if missing:
compose_fields.py ../shared/data/herlev data/fields-slide-bench --fields 24 --cells 8-12 --seed 11
--names <the default card's test split>), laid on a 1064 x 808 px grid (a 40 px gap), each grid
place inside a disc of 0.475 x the slide's side (a liquid-based preparation's circle) a field
chosen and flipped at random (seed 0), bare slide around it. Each field's light is re-expressed
against the slide's colour (its transmittance, as Beer-Lambert composing made it, times the slide's
colour): composed fields each have their own slide colour, and a slide has one (the first 50,000^2
run, `slide_50000_classify_untinted`, kept them: fields with a dark slide colour read as stained
matter and 25 % of the cells were lost). "cells on the slide" counts the composed cells
(masks are not read otherwise). Each run is a fresh `cervseg slide` process.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
FIELDS = ROOT / "data" / "fields-slide-bench"
PITCH = (808, 1064)
SLIDE_COLOUR = (236, 232, 238)


def compose_fields() -> None:
    if (FIELDS / "manifest.csv").exists():
        return
    card = json.loads((ROOT / "src" / "napari_cervseg" / "weights" / "default.json").read_text())
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as names:
        names.write("\n".join(card["training"]["split"]["test"]))
    subprocess.run([sys.executable, str(SHARED / "tools" / "compose_fields.py"), str(SHARED / "data" / "herlev"),
                    str(FIELDS), "--fields", "24", "--cells", "8-12", "--seed", "11", "--names", names.name], check=True)


class SlideRenderer:
    """Draws any level of the synthetic slide from the fields (downsampled once per level)."""

    def __init__(self, shape: tuple[int, int], seed: int = 0):
        # each composed field has its own slide colour; one slide has one: every field's light is
        # re-expressed against SLIDE_COLOUR (its transmittance, field / its own slide colour, times
        # the slide's), as the same cells would look on this slide
        self.fields = [self._retint(cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB))
                       for p in sorted((FIELDS / "images").glob("*.png"))]
        with open(FIELDS / "manifest.csv") as fh:
            counts = {row["field"]: int(row["cells"]) for row in csv.DictReader(fh)}
        self.counts = [counts[p.stem] for p in sorted((FIELDS / "images").glob("*.png"))]
        self.shape = shape
        rows, cols = -(-shape[0] // PITCH[0]), -(-shape[1] // PITCH[1])
        rng = np.random.default_rng(seed)
        self.choice = rng.integers(0, len(self.fields), (rows, cols))
        # cells within a disc (a liquid-based preparation's circle), bare slide around it
        yy, xx = np.indices((rows, cols))
        centre_y, centre_x = (yy * PITCH[0] + PITCH[0] / 2), (xx * PITCH[1] + PITCH[1] / 2)
        radius = 0.475 * min(shape)
        self.choice[np.hypot(centre_y - shape[0] / 2, centre_x - shape[1] / 2) > radius] = -1
        self.flip = rng.integers(0, 4, (rows, cols))
        self.cache: dict = {}

    @staticmethod
    def _retint(field: np.ndarray) -> np.ndarray:
        pixels = field.reshape(-1, 3).astype(np.float32)
        bright = pixels.mean(1) >= np.percentile(pixels.mean(1), 90)  # the field's bare slide
        own = np.median(pixels[bright], 0)
        out = field.astype(np.float32) / np.maximum(own, 1) * np.array(SLIDE_COLOUR, np.float32)
        return np.clip(out, 0, 255).astype(np.uint8)

    def n_cells(self) -> int:
        """Cells whose field lies wholly on the slide."""
        h, w = self.shape
        n = 0
        for r in range(self.choice.shape[0]):
            for c in range(self.choice.shape[1]):
                if self.choice[r, c] < 0:
                    continue
                f = self.fields[self.choice[r, c]]
                if r * PITCH[0] + f.shape[0] <= h and c * PITCH[1] + f.shape[1] <= w:
                    n += self.counts[self.choice[r, c]]
        return n

    def _field(self, k: int, flip: int, level: int) -> np.ndarray:
        key = (k, flip, level)
        if key not in self.cache:
            f = self.fields[k]
            f = f[::-1] if flip & 1 else f
            f = f[:, ::-1] if flip & 2 else f
            s = 2 ** level
            self.cache[key] = np.ascontiguousarray(
                cv2.resize(f, (max(1, round(f.shape[1] / s)), max(1, round(f.shape[0] / s))), interpolation=cv2.INTER_AREA)
                if level else f)
        return self.cache[key]

    def __call__(self, level: int, y0: int, x0: int, y1: int, x1: int) -> np.ndarray:
        s = 2 ** level
        out = np.empty((y1 - y0, x1 - x0, 3), np.uint8)
        out[:] = SLIDE_COLOUR
        h, w = self.shape
        for r in range(max(0, y0 * s // PITCH[0] - 1), min(self.choice.shape[0], y1 * s // PITCH[0] + 1)):
            for c in range(max(0, x0 * s // PITCH[1] - 1), min(self.choice.shape[1], x1 * s // PITCH[1] + 1)):
                if self.choice[r, c] < 0:
                    continue
                f = self._field(int(self.choice[r, c]), int(self.flip[r, c]), level)
                fy, fx = round(r * PITCH[0] / s), round(c * PITCH[1] / s)
                fh = min(f.shape[0], -(-h // s) - fy)
                fw = min(f.shape[1], -(-w // s) - fx)
                a0, b0 = max(fy, y0), max(fx, x0)
                a1, b1 = min(fy + fh, y1), min(fx + fw, x1)
                if a1 > a0 and b1 > b0:
                    out[a0 - y0:a1 - y0, b0 - x0:b1 - x0] = f[a0 - fy:a1 - fy, b0 - fx:b1 - fx]
        return out


def slide_path(size: int) -> Path:
    """Where the SIZE x SIZE bench slide is written (git-ignored; the dev memory checks read it)."""
    return ROOT / "data" / "slides" / f"bench_{size}_v2.ome.tif"


def make_slide(size: int) -> tuple[Path, int, float]:
    from napari_cervseg.io.slides import write_pyramid

    compose_fields()
    path = slide_path(size)
    renderer = SlideRenderer((size, size))
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        write_pyramid(path.with_suffix(".part"), renderer, (size, size), tile=512, mpp=0.25, per_level=True)
        os.replace(path.with_suffix(".part"), path)
        print(f"wrote {path} in {time.perf_counter() - t0:.0f} s", flush=True)
    return path, renderer.n_cells(), path.stat().st_size / 1e6


def _tree_rss(proc) -> float:
    import psutil

    try:
        parent = psutil.Process(proc.pid)
        procs = [parent, *parent.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += p.memory_info().rss
    return total / 1e6


def run_cli(slide: Path, out: Path, extra: list[str], kill_at: float | None = None) -> dict:
    """One `cervseg slide` process; samples its process tree's memory; kills it (and its workers)
    once `kill_at` of the tiles are on disk when asked."""
    cmd = [sys.executable, "-m", "napari_cervseg.cli", "slide", str(slide), "--out", str(out), "--quiet", *extra]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    peak, killed = 0.0, False
    total = None
    seen: dict[str, bool] = {}
    while proc.poll() is None:
        peak = max(peak, _tree_rss(proc))
        if kill_at is not None:
            if total is None and (out / "slide_run.json").exists():
                from napari_cervseg.workflows.slides import tile_grid

                card = json.loads((out / "slide_run.json").read_text())
                total = len(tile_grid(tuple(card["slide"]["shape"]), card["config"]["tile"]))
            records = list((out / "tiles").glob("r*.json")) if (out / "tiles").exists() else []
            # tiles with no stained pixel are recorded at once at the start: count the work after them
            for p in records:
                if p.name not in seen:
                    seen[p.name] = p.stat().st_size < 200 and '"empty":true' in p.read_text()
            empty = sum(seen.values())
            done = len(records) - empty
            if total and done >= kill_at * (total - empty):
                os.killpg(proc.pid, signal.SIGKILL)
                killed = True
                proc.wait()
                break
        time.sleep(0.5)
    output = proc.stdout.read() if proc.stdout else ""
    return {"seconds": round(time.perf_counter() - t0, 1), "peak_rss_mb": round(peak), "returncode": proc.returncode,
            "killed": killed, "output": output.strip()[-600:]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=10000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--per-cell", default="segment", choices=("segment", "classify"))
    parser.add_argument("--kill-at", type=float, default=None, help="also kill a run at this share of tiles, resume")
    parser.add_argument("--cluster", action="store_true", help="also run through an outside LocalCluster's address")
    parser.add_argument("--only-killed", action="store_true",
                        help="with --kill-at: skip the uninterrupted run (the killed and resumed run is timed as a whole)")
    parser.add_argument("--white-balance", default=None,
                        help="cervseg slide --white-balance for the runs (default: the package's)")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    balance = "" if args.white_balance is None else "_" + args.white_balance.replace("-", "_")
    out_base = Path(args.out or ROOT / "benchmarks" / "results" / f"slide_{args.size}_{args.per_cell}{balance}")
    slide, n_true, mb = make_slide(args.size)
    work = ROOT / "runs" / f"bench_slide_{args.size}_{args.per_cell}{balance}"
    extra = ["--workers", str(args.workers), "--per-cell", args.per_cell]
    if args.white_balance is not None:
        extra += ["--white-balance", args.white_balance]
    report = {"command": "python " + " ".join(sys.argv), "cpu": platform.processor() or platform.machine(),
              "cores": os.cpu_count(), "slide": {"size": args.size, "file_mb": round(mb), "cells_composed": n_true},
              "runs": {}}

    def finish(name: str, run: dict, folder: Path) -> None:
        summary = json.loads((folder / "summary.json").read_text()) if (folder / "summary.json").exists() else {}
        run.update({k: summary.get(k) for k in ("n_cells", "n_abnormal", "n_normal", "n_no_verdict", "tiles_total")})
        if summary.get("n_cells"):
            run["cells_per_second"] = round(summary["n_cells"] / run["seconds"], 2)
        report["runs"][name] = run
        print(name, json.dumps(run, indent=1), flush=True)

    shutil.rmtree(work, ignore_errors=True)
    if not args.only_killed:
        finish("processes", run_cli(slide, work / "processes", extra), work / "processes")
    if args.kill_at:
        folder = work / "killed"
        first = run_cli(slide, folder, extra, kill_at=args.kill_at)
        tiles_kept = len(list((folder / "tiles").glob("r*.json")))
        resumed = run_cli(slide, folder, extra)
        resumed.update(killed_after_s=first["seconds"], tiles_on_disk_at_kill=tiles_kept,
                       peak_rss_mb=max(first["peak_rss_mb"], resumed["peak_rss_mb"]), resume_seconds=resumed["seconds"])
        resumed["seconds"] = round(first["seconds"] + resumed["seconds"], 1)  # the whole slide's work
        finish("killed_and_resumed", resumed, folder)
        plain = work / "processes" / "cells.csv"
        same = (folder / "cells.csv").read_bytes() == plain.read_bytes() if plain.exists() else None
        report["runs"]["killed_and_resumed"]["table_identical_to_uninterrupted"] = same
    if args.cluster:
        from distributed import LocalCluster

        with LocalCluster(n_workers=args.workers, threads_per_worker=1, dashboard_address=None) as cluster:
            folder = work / "cluster"
            run = run_cli(slide, folder, [*extra, "--scheduler", cluster.scheduler_address])
            import psutil

            run["peak_rss_mb_cluster_workers_at_end"] = round(sum(
                p.memory_info().rss for p in psutil.Process().children(recursive=True)) / 1e6)
        finish("local_cluster", run, folder)
    out_base.parent.mkdir(parents=True, exist_ok=True)
    out_base.with_suffix(".json").write_text(json.dumps(report, indent=1))
    lines = [f"# Slide {args.size} x {args.size} px (`{report['command']}`)", "",
             (f"{report['slide']['cells_composed']} composed cells, file {mb:.0f} MB; {report['cores']} cores;"
             f" per cell: {args.per_cell}"), "",
             "| run | seconds | cells | cells / s | abnormal | no verdict | peak memory (MB, process tree) |",
             "|---|---|---|---|---|---|---|"]
    for name, run in report["runs"].items():
        lines.append(f"| {name} | {run['seconds']} | {run.get('n_cells')} | {run.get('cells_per_second')} |"
                     f" {run.get('n_abnormal')} | {run.get('n_no_verdict')} | {run['peak_rss_mb']} |")
    if "killed_and_resumed" in report["runs"]:
        run = report["runs"]["killed_and_resumed"]
        lines += ["", (f"Killed (SIGKILL to the run and its workers) after {run['killed_after_s']} s with"
                      f" {run['tiles_on_disk_at_kill']} of {run['tiles_total']} tiles on disk; the resumed run took"
                      f" {run['resume_seconds']} s (both: {run['seconds']} s); its table is identical to the"
                      " uninterrupted run's:"
                      f" {run['table_identical_to_uninterrupted']}.")]
    out_base.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out_base}.md / .json")


if __name__ == "__main__":
    main()
