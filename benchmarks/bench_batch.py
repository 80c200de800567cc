"""Batch throughput and memory: `cervseg segment`'s engine (core.batch.run_batch) on Herlev cells.

    python benchmarks/bench_batch.py            # -> benchmarks/results/batch.json, batch.md

1. Cells per second on the same N test-split cells (default model, Algorithm 1, Grad-CAM++):
   in this process (1 worker, torch's 2 threads), 2 local worker processes (1 torch thread each),
   and a local dask.distributed cluster of 2 worker processes (1 thread each) reached through
   --scheduler's code path. Start-up (worker processes importing torch, loading the model) is
   inside the wall time, as a user sees it.
2. Peak memory for 1,000 inputs (every Herlev image, then repeats under other names, as links):
   resident memory of the driver and of all its worker processes, sampled every 0.2 s, and the
   driver's memory after every 100 inputs (flat = memory does not grow with the number of inputs).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).parent))
from _common import RESULTS  # noqa: E402

from napari_cervseg import load_model  # noqa: E402
from napari_cervseg.io.datasets import default_data_root, read_dataset  # noqa: E402
from napari_cervseg.workflows.batch import BatchConfig, expand_inputs, run_batch  # noqa: E402


class MemorySampler:
    """Peak resident memory of this process and of this process + its children."""

    def __init__(self, every: float = 0.2):
        self.every, self.peak_self, self.peak_tree = every, 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        me = psutil.Process()
        while not self._stop.is_set():
            try:
                own = me.memory_info().rss
                tree = own + sum(c.memory_info().rss for c in me.children(recursive=True))
            except psutil.Error:
                continue
            self.peak_self, self.peak_tree = max(self.peak_self, own), max(self.peak_tree, tree)
            time.sleep(self.every)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def link_inputs(paths: list[Path], n: int, folder: Path) -> Path:
    """n inputs in ``folder``: the given images, then repeats under new names (symbolic links)."""
    folder.mkdir(parents=True)
    for i in range(n):
        src = paths[i % len(paths)]
        os.symlink(src.resolve(), folder / f"{i:05d}_{src.stem}{src.suffix}")
    return folder


def timed_run(inputs_dir: Path, out: Path, config: BatchConfig, **kwargs) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    rss_every_100 = []

    finished = []

    def on_record(record):
        finished.append(record["image"])
        if len(finished) % 100 == 0:
            rss_every_100.append(round(psutil.Process().memory_info().rss / 2**20, 1))

    with MemorySampler() as mem:
        t0 = time.perf_counter()
        summary = run_batch(expand_inputs([inputs_dir]), out, config, on_record=on_record, **kwargs)
        wall = time.perf_counter() - t0
    return {"cells": summary["done"], "failed": len(summary["failed"]), "wall_seconds": round(wall, 2),
            "cells_per_second": round(summary["done"] / wall, 2),
            "median_seconds_per_cell_in_worker": summary["timings"]["seconds_per_cell_median"],
            "peak_rss_driver_mb": round(mem.peak_self / 2**20, 1),
            "peak_rss_all_processes_mb": round(mem.peak_tree / 2**20, 1),
            "driver_rss_mb_every_100_inputs": rss_every_100,
            "execution": summary["execution"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=None)
    p.add_argument("--n", type=int, default=120, help="cells for the throughput runs")
    p.add_argument("--n-memory", type=int, default=1000, help="inputs for the memory run")
    p.add_argument("--memory-workers", type=int, default=2)
    p.add_argument("--out", default=str(RESULTS / "batch.json"))
    args = p.parse_args()
    root = Path(args.data) if args.data else default_data_root()
    model = load_model("default")
    test_names = set(model.card["training"]["split"]["test"])
    samples = read_dataset(root)
    test_paths = [s.image_path for s in samples if s.name in test_names]
    all_paths = [s.image_path for s in samples]
    config = BatchConfig(model="default", method="gradcam++")
    work = Path(tempfile.mkdtemp(prefix="cervseg-bench-"))
    results = {"command": "python benchmarks/bench_batch.py " + " ".join(sys.argv[1:]),
               "machine": {"cpus": os.cpu_count(), "total_memory_gb": round(psutil.virtual_memory().total / 2**30, 1)},
               "throughput": {}, "memory": {}}
    try:
        cells = link_inputs(test_paths, args.n, work / "cells")
        runs = {"1 worker (in-process)": {"workers": 1}, "2 worker processes": {"workers": 2}}
        for name, kwargs in runs.items():
            results["throughput"][name] = timed_run(cells, work / "out", config, **kwargs)
            print(name, results["throughput"][name], flush=True)
        try:
            from distributed import LocalCluster

            with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
                name = "dask.distributed LocalCluster, 2 workers x 1 thread"
                results["throughput"][name] = timed_run(cells, work / "out", config, scheduler=cluster.scheduler_address)
                print(name, results["throughput"][name], flush=True)
        except ImportError:
            results["throughput"]["dask.distributed"] = "not installed"
        many = link_inputs(all_paths, args.n_memory, work / "many")
        results["memory"] = {"inputs": args.n_memory,
                             **timed_run(many, work / "out", config, workers=args.memory_workers)}
        print("memory", results["memory"], flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    out = Path(args.out)
    out.write_text(json.dumps(results, indent=2))
    lines = [(f"# Batch throughput and memory\n\n`{results['command']}` on {os.cpu_count()} CPUs; default model,"
             f" Algorithm 1 (Grad-CAM++), {args.n} Herlev test-split cells; wall time includes worker start-up.\n"),
             "| execution | cells | wall s | cells/s | median s/cell in worker | peak RSS driver MB | peak RSS all MB |",
             "|---|---|---|---|---|---|---|"]
    for name, r in results["throughput"].items():
        if isinstance(r, dict):
            lines.append(f"| {name} | {r['cells']} | {r['wall_seconds']} | {r['cells_per_second']} |"
                         f" {r['median_seconds_per_cell_in_worker']} | {r['peak_rss_driver_mb']} |"
                         f" {r['peak_rss_all_processes_mb']} |")
    m = results["memory"]
    lines += ["", f"## {m['inputs']} inputs, {m['execution']['mode']}", "",
              (f"{m['cells']} segmented, {m['failed']} failed, {m['wall_seconds']} s ({m['cells_per_second']} cells/s);"
              f" peak resident memory: driver {m['peak_rss_driver_mb']} MB, driver + workers"
              f" {m['peak_rss_all_processes_mb']} MB. Driver memory after every 100 inputs (MB):"
              f" {m['driver_rss_mb_every_100_inputs']}.")]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
