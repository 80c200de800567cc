"""Model figures: weights file size and CPU inference time per cell (batch 1 and batch 32).

    .venv/bin/python benchmarks/bench_models.py      # -> benchmarks/results/models.{json,md}

The bundled default with its weights; the other architectures with freshly initialised weights
(inference time does not depend on the values; none of them is trained in this repository).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import RESULTS  # noqa: E402

from napari_cervseg.classify import ARCHITECTURES, build_architecture, load_model, save_model  # noqa: E402


def per_cell_ms(net, size: int, batch: int, repeats: int, device: str = "cpu") -> float:
    x = torch.rand(batch, 3, size, size, device=device)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    with torch.no_grad():
        net(x)  # warm-up
        net(x)
        times = []
        for _ in range(repeats):
            sync()
            t0 = time.perf_counter()
            net(x)
            sync()
            times.append(time.perf_counter() - t0)
    return 1000 * float(np.median(times)) / batch


def main():
    import argparse

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    p.add_argument("--out", default=str(RESULTS / "models.json"))
    args = p.parse_args()
    device = args.device
    torch.set_num_threads(2)
    rows = {}
    default = load_model("default")
    nets = {"default (compact, bundled)": (default.net.eval(), default.preprocess.input_size,
                                           Path(default.source).stat().st_size)}
    for arch in ARCHITECTURES:
        try:
            net = build_architecture(arch).eval()
        except Exception as exc:  # noqa: BLE001 - timm missing or any build error is reported in the table
            rows[arch] = {"error": str(exc)}
            continue
        with tempfile.TemporaryDirectory() as tmp:
            path = save_model(net, Path(tmp) / f"{arch}.safetensors", {"architecture": arch})
            size_bytes = path.stat().st_size
        nets[arch] = (net, ARCHITECTURES[arch]["input_size"], size_bytes)
    for name, (net, size, nbytes) in nets.items():
        big = sum(p.numel() for p in net.parameters()) > 20e6 and device == "cpu"
        net = net.to(device)
        ndigits = 1 if device == "cpu" else 3
        rows[name] = {"input": size, "parameters": int(sum(p.numel() for p in net.parameters())),
                      "file_mb": round(nbytes / 1e6, 1),
                      "ms_per_cell_batch_1": round(per_cell_ms(net, size, 1, 5 if big else 20, device), ndigits),
                      "ms_per_cell_batch_32": round(per_cell_ms(net, size, 32, 2 if big else 5, device), ndigits)}
        print(name, rows[name], flush=True)
    out = Path(args.out)
    command = "python benchmarks/bench_models.py" + (f" --device {device}" if device != "cpu" else "")
    meta = {"command": command, "cpus": os.cpu_count(), "torch_threads": 2, "torch": torch.__version__,
            "device": torch.cuda.get_device_name() if device.startswith("cuda") else "cpu"}
    out.write_text(json.dumps({"meta": meta, "models": rows}, indent=2))
    lines = [f"# Classifier size and inference time per cell ({meta['device']})\n",
             (f"`{meta['command']}`, {meta['cpus']} CPUs, 2 torch threads; forward pass only (no explanation),"
             " median.\n"),
             "| model | input px | parameters | weights file MB | ms / cell, batch 1 | ms / cell, batch 32 |",
             "|---|---|---|---|---|---|"]
    for name, r in rows.items():
        if "error" in r:
            lines.append(f"| {name} | – | – | – | {r['error']} | |")
        else:
            lines.append(f"| {name} | {r['input']} | {r['parameters']:,} | {r['file_mb']} | {r['ms_per_cell_batch_1']} |"
                         f" {r['ms_per_cell_batch_32']} |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
