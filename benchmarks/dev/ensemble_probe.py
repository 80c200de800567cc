"""Would a second compact network, averaged with the bundled one, classify better? (issue 15, item 3)

    PYTHONPATH=src .venv/bin/python benchmarks/dev/ensemble_probe.py runs/compact_seed1_cpu.safetensors

The second network is trained on this CPU by `cervseg train` with the bundled model's recipe and
split but seed 1 and a CPU time limit (its exact command is in its card). p(abnormal) of each
network (single pass) and of their mean on the bundled card's validation and test splits:
accuracy (most probable class), abnormal recall, ROC AUC. A probe, not a shipped model: the
explanations of an ensemble are not wired in. Writes benchmarks/results/dev/ensemble_probe.md.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from napari_cervseg import classify, load_model
from napari_cervseg.io.datasets import default_data_root, read_dataset
from napari_cervseg.measure.scores import roc_auc

ROOT = Path(__file__).resolve().parents[2]


def p_abnormal(model, samples) -> np.ndarray:
    return np.array([classify(model, s.load_image()).probabilities["abnormal"] for s in samples])


def figures(y, p) -> dict:
    call = p >= 0.5
    return {"accuracy": float((call == y).mean()), "abnormal_recall": float(call[y].mean()),
            "normal_recall": float((~call[~y]).mean()), "auc": roc_auc(y, p)}


def main() -> None:
    second_path = sys.argv[1]
    bundled, second = load_model("default"), load_model(second_path)
    samples = {s.name: s for s in read_dataset(default_data_root())}
    split = bundled.card["training"]["split"]
    lines = ["# Ensemble probe: the bundled classifier + a second compact network trained on this CPU", "",
             (f"`PYTHONPATH=src .venv/bin/python benchmarks/dev/ensemble_probe.py {second_path}` "
             f"({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}). Second network: "
             f"{second.card['training'].get('epochs_run')} epochs in {second.card['training'].get('seconds')} s "
             f"on the CPU (stopped by {second.card['training'].get('stopped_by')}); the bundled one: 222 epochs, "
             "345 s on an H100. Same split; single-pass probabilities; class = most probable."), "",
             "| split | classifier | accuracy | abnormal recall | normal recall | ROC AUC |", "|---|---|---|---|---|---|"]
    for part in ("val", "test"):
        chosen = [samples[n] for n in split[part] if n in samples]
        y = np.array([s.label == "abnormal" for s in chosen])
        pa, pb = p_abnormal(bundled, chosen), p_abnormal(second, chosen)
        for name, p in (("bundled", pa), ("second (CPU)", pb), ("mean of both", (pa + pb) / 2)):
            f = figures(y, p)
            lines.append(f"| {part} ({len(chosen)}) | {name} | {f['accuracy']:.3f} | {f['abnormal_recall']:.3f} |"
                         f" {f['normal_recall']:.3f} | {f['auc']:.3f} |")
    out = ROOT / "benchmarks" / "results" / "dev" / "ensemble_probe.md"
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
