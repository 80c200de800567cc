"""Classifier figures from the cards of a `benchmarks/gpu/train_zoo.sh` run; picks the bundled default.

    DATA=runs/devdata/herlev OUT=runs/zoo-out bash benchmarks/gpu/train_zoo.sh     # on a GPU machine
    python benchmarks/summarise_zoo.py runs/zoo [--install-default]
        # -> benchmarks/results/classifiers.{json,md}

Test figures are each card's own (the held-out test split that training never saw; TTA). The
default is chosen among the compact candidates by validation balanced accuracy alone (ties: the
smaller file); the test split plays no part in it. For the compact models, whose weights come back
from the GPU machine, the screening operating point is chosen on the validation split and its test
figures added. ``--install-default`` copies the chosen model into the package as ``default``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import RESULTS  # noqa: E402

from napari_cervseg.classify import CLASS_NAMES, WEIGHTS_DIR, load_model  # noqa: E402
from napari_cervseg.io.datasets import default_data_root, read_dataset  # noqa: E402
from napari_cervseg.workflows.train import load_resized, screening_operating_point  # noqa: E402

PAPER_TABLE6 = ("paper (Table 6, ImageNet-pretrained): VGG16-Adapted128 accuracy 0.94, -Simplified 0.92,"
                " XceptionNet-256 0.81, XceptionNet-1024 0.88")


def split_arrays(model, data_root, part):
    by_name = {s.name: s for s in read_dataset(data_root)}
    samples = [by_name[n] for n in model.card["training"]["split"][part]]
    return (load_resized(samples, model.preprocess.input_size),
            np.array([CLASS_NAMES.index(s.label) for s in samples]))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("zoo", nargs="+", help="folders with a run's cards (*.json), logs and compact weights")
    p.add_argument("--data", default=None, help="Herlev-layout folder (default: ../shared/data/herlev)")
    p.add_argument("--install-default", action="store_true")
    p.add_argument("--out", default=str(RESULTS / "classifiers.json"))
    args = p.parse_args()
    torch.set_num_threads(2)
    folders = [Path(z) for z in args.zoo]
    zoo = folders[0]  # the train_zoo.sh run: compact candidates, GPU timing
    data_root = Path(args.data) if args.data else default_data_root()
    rows = {}
    for card_path in sorted(p for folder in folders for p in folder.glob("*.json")):
        card = json.loads(card_path.read_text())
        if "training" not in card:
            continue
        t, m = card["training"], card["test_metrics"]
        weights = card_path.with_suffix(".safetensors")
        row = {"architecture": card["architecture"], "arch_kwargs": card.get("arch_kwargs", {}),
               "input_size": card["input_size"], "recipe": {k: t["config"].get(k) for k in
                                                            ("optimizer", "lr", "augmentation", "epochs", "batch_size")},
               "epochs_run": t["epochs_run"], "stopped_by": t.get("stopped_by"), "train_seconds": t["seconds"],
               "device": t["device"], "best_val_balanced_accuracy": t["best_val_balanced_accuracy"],
               "test": dict(m.items()),
               "weights_here": weights.exists(), "operating_points": card.get("operating_points")}
        log = card_path.with_suffix(".log")
        if log.exists():
            row["command"] = log.read_text().splitlines()[0].lstrip("+ ")
        if weights.exists() and card["architecture"] == "compact":
            model = load_model(weights, device="cpu")
            val = split_arrays(model, data_root, "val")
            test = split_arrays(model, data_root, "test")
            points = screening_operating_point(model.net, model.preprocess, "cpu", val, test)
            card["operating_points"] = points
            card_path.write_text(json.dumps(card, indent=2))
            s = points["screening"]
            row["screening"] = {"abnormal_threshold": s["abnormal_threshold"],
                                **dict(s["test_metrics"].items())}
        if "screening" not in row and card.get("operating_points"):
            s = card["operating_points"]["screening"]
            row["screening"] = {"abnormal_threshold": s["abnormal_threshold"],
                                **dict(s["test_metrics"].items())}
        row.pop("operating_points")
        rows[card_path.stem] = row
        print(card_path.stem, row["test"]["accuracy"], row["test"]["abnormal_recall"], flush=True)

    compact = {k: r for k, r in rows.items() if r["architecture"] == "compact" and r["weights_here"]}
    chosen = max(compact, key=lambda k: (compact[k]["best_val_balanced_accuracy"], -compact[k]["input_size"]))
    meta = {"command": f"python benchmarks/summarise_zoo.py {' '.join(args.zoo)}"
                       + (" --install-default" if args.install_default else ""),
            "trained_by": [("DATA=runs/devdata/herlev MINUTES=5.75 WORK=/dev/shm/zoo bash benchmarks/gpu/train_zoo.sh"
                           " (-> runs/zoo: the compact candidates, vgg16-paper, vgg16s-paper, vgg16-ours, xception256-paper)"),
                           ("DATA=runs/devdata/herlev MINUTES=3.5 WORK=/dev/shm/vgg bash benchmarks/gpu/train_vgg_eval.sh"
                           " (-> runs/vgg: vgg16-lr1e-4, vgg16-lr3e-4, xception256-paper-full)")],
            "default_chosen": chosen, "chosen_by": "validation balanced accuracy (test split not used)",
            "paper": PAPER_TABLE6}
    gpu = zoo / "gpu.txt"
    if gpu.exists():
        meta["gpu"] = gpu.read_text().strip().splitlines()[-1]
    Path(args.out).write_text(json.dumps({"meta": meta, "models": rows}, indent=2))
    lines = ["# Classifiers trained from scratch on the development data (image-level labels only)\n",
             (f"Trained on {meta.get('gpu', 'a GPU')} by two scripts: `{meta['trained_by'][0]}`, nine runs side by"
             f" side; `{meta['trained_by'][1]}`, three runs side by side. Each run stopped by its time limit"
             " (5.75 / 3.5 min: 'time limit'), its recipe's epochs or early stopping; its exact command is the"
             " first line of its log in `benchmarks/results/zoo/`. Summarised by"
             f" `{meta['command']}`. Test split: 146 images (39 normal, 107 abnormal) that training never saw;"
             " test-time augmentation (8 flips / rotations). Precision, recall and F1 are support-weighted as in"
             f" the paper's Table 6. {PAPER_TABLE6}.\n"),
             ("| run | architecture | input | recipe | epochs (stopped by) | train s | val bal. acc | accuracy |"
             " precision | recall | F1 | abnormal recall | confusion [[TN, FP], [FN, TP]] |"),
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in rows.items():
        rec, te = r["recipe"], r["test"]
        widths = r["arch_kwargs"].get("widths")
        arch = r["architecture"] + (f" {widths}" if widths else "")
        lines.append(f"| {name}{' **(default)**' if name == chosen else ''} | {arch} | {r['input_size']} |"
                     f" {rec['optimizer']} lr {rec['lr']}, {rec['augmentation']} aug | {r['epochs_run']}/{rec['epochs']}"
                     f" ({r['stopped_by']}) | {r['train_seconds']:.0f} | {r['best_val_balanced_accuracy']:.3f} |"
                     f" {te['accuracy']:.3f} | {te['precision']:.3f} | {te['recall']:.3f} | {te['f1']:.3f} |"
                     f" {te['abnormal_recall']:.3f} | {te['confusion']} |")
    lines += ["", ("Screening operating point (threshold on p(abnormal) chosen on the validation split for abnormal"
              " recall >= 0.98; `--operating-point screening`), test figures. For the compact models the"
              " probabilities are single-pass, as at inference; the others' cards (computed on the GPU machine"
              " by the code of that time) used flip/rotation averaging:\n"),
              "| run | probabilities | threshold | accuracy | precision | recall | F1 | abnormal recall | confusion |",
              "|---|---|---|---|---|---|---|---|---|"]
    for name, r in rows.items():
        if "screening" in r:
            s = r["screening"]
            how = "TTA" if s.get("tta") else "single pass"
            lines.append(f"| {name} | {how} | {s['abnormal_threshold']:.3f} | {s['accuracy']:.3f} | {s['precision']:.3f} |"
                         f" {s['recall']:.3f} | {s['f1']:.3f} | {s['abnormal_recall']:.3f} | {s['confusion']} |")
    Path(args.out).with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))

    if args.install_default:
        card = json.loads((zoo / f"{chosen}.json").read_text())
        card["name"] = "default"
        card["training"]["data"] = "../shared/data/herlev (copied to the GPU machine as runs/devdata/herlev)"
        card["training"]["where"] = f"{meta.get('gpu', 'GPU')}, next to eight other runs"
        log = (zoo / f"{chosen}.log").read_text().splitlines()
        card["training"]["command"] = log[0].lstrip("+ ") + f"  (run {chosen} of benchmarks/gpu/train_zoo.sh)"
        card["training"]["chosen_by"] = meta["chosen_by"]
        card["file_mb"] = round((zoo / f"{chosen}.safetensors").stat().st_size / 1e6, 1)
        timing = {}
        for where, result in (("cpu", RESULTS / "models.json"), ("gpu", zoo / "models_gpu.json")):
            if result.exists():
                bench = json.loads(result.read_text())
                row = bench["models"].get("default (compact, bundled)", {})
                timing[where] = {"device": bench["meta"].get("device", where), "command": bench["meta"]["command"],
                                 "ms_per_cell_batch_1": row.get("ms_per_cell_batch_1"),
                                 "ms_per_cell_batch_32": row.get("ms_per_cell_batch_32")}
        card["inference_time"] = timing
        shutil.copyfile(zoo / f"{chosen}.safetensors", WEIGHTS_DIR / "default.safetensors")
        (WEIGHTS_DIR / "default.json").write_text(json.dumps(card, indent=2) + "\n")
        print(f"installed {chosen} as the bundled default")


if __name__ == "__main__":
    main()
