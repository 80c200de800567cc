"""The ``cervseg`` command: segment, train, models.

    cervseg segment cell.png more/*.png --out results/ [--method gradcam++] [--model default]
    cervseg train --data ../shared/data/herlev --out my-model.safetensors
    cervseg models
"""

from __future__ import annotations

import argparse
import csv
import glob
import json
import os
import sys
import time
from pathlib import Path

from ._version import __version__

IMAGE_SUFFIXES = (".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff")
OUTPUT_SUFFIXES = ("_labels.png", "_heatmap.png", "_overlay.png")


def _expand_inputs(items: list[str]) -> list[Path]:
    paths: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            paths += sorted(q for q in p.iterdir() if q.suffix.lower() in IMAGE_SUFFIXES
                            and not q.name.endswith(OUTPUT_SUFFIXES))
        elif not p.exists() and any(c in item for c in "*?["):
            paths += sorted(Path(q) for q in glob.glob(item, recursive=True))
        else:
            paths.append(p)
    return paths


def _read_previous_rows(path: Path) -> dict[str, dict]:
    if not path.exists():
        return {}
    with path.open(newline="") as fh:
        return {row["image"]: row for row in csv.DictReader(fh) if row.get("image")}


def cmd_segment(args) -> int:
    import numpy as np
    from tqdm import tqdm

    from .core.descriptors import measure, write_rows_csv
    from .core.imageio import ImageError, read_image, to_rgb_uint8, write_png_atomic
    from .core.models import ModelError, load_model
    from .core.pipeline import heatmap_rgb, overlay, segment_cell

    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        print(f"error: cannot create output folder {out}: {exc}", file=sys.stderr)
        return 2
    if not os.access(out, os.W_OK):
        print(f"error: output folder {out} is not writable; choose another with --out", file=sys.stderr)
        return 2
    inputs = _expand_inputs(args.inputs)
    if not inputs:
        print("error: no input images found (give image files, folders or globs)", file=sys.stderr)
        return 2
    try:
        model = load_model(args.model, device=args.device)
    except ModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    options = {}
    for key in ("nucleus_iterations", "cytoplasm_iterations", "dilation", "inpainter", "lama_model",
                "nucleus_seed"):
        value = getattr(args, key, None)
        if value is not None:
            options[key] = value
    csv_path = out / "descriptors.csv"
    previous = _read_previous_rows(csv_path)
    rows, failures, seen = [], [], {}
    t0 = time.perf_counter()
    bar = tqdm(inputs, desc="segment", unit="cell", disable=args.quiet)
    for path in bar:
        stem = path.stem
        bar.set_postfix_str(path.name[-30:])
        if stem in seen:
            failures.append((path, f"same file stem as {seen[stem]}; outputs would collide"))
            continue
        seen[stem] = path
        targets = [out / f"{stem}{s}" for s in OUTPUT_SUFFIXES]
        if not args.overwrite and all(t.exists() for t in targets):
            # resumable, and never overwrite labels a user may have corrected: re-measure them
            row = previous.get(stem)
            if row is None:
                try:
                    labels = read_image(targets[0])
                    row = {"image": stem, "source": str(path), "status": "kept existing labels",
                           **measure(labels, pixel_size=args.pixel_size)}
                except (ImageError, ValueError) as exc:
                    failures.append((path, f"existing {targets[0].name} unreadable: {exc}"))
                    continue
            rows.append(row)
            continue
        try:
            image = read_image(path)
            result = segment_cell(image, model=model, method=args.method, grouping=args.grouping,
                                  target=args.target, **options)
            rgb, _ = to_rgb_uint8(image)
            write_png_atomic(targets[0], result.labels)
            heat = result.heatmap if result.heatmap is not None else np.zeros(result.labels.shape, np.float32)
            write_png_atomic(targets[1], heatmap_rgb(heat))
            write_png_atomic(targets[2], overlay(rgb, result.labels))
            row = {"image": stem, "source": str(path), "status": "segmented", "method": result.method,
                   "predicted_class": result.predicted_class,
                   "probability": result.probability if result.probability is not None else float("nan"),
                   "cell_found": result.cell_found,
                   **measure(result.labels, rgb, pixel_size=args.pixel_size),
                   "seconds": result.timings.get("total", float("nan")),
                   "warnings": " | ".join(result.warnings)}
            rows.append(row)
        except (ImageError, ValueError, OSError, RuntimeError) as exc:
            failures.append((path, f"{type(exc).__name__}: {exc}"))
    write_rows_csv(csv_path, rows)
    elapsed = time.perf_counter() - t0
    summary = {"inputs": len(inputs), "done": len(rows), "failed": [{"input": str(p), "reason": r} for p, r in failures],
               "method": args.method, "model": model.source, "version": __version__, "seconds": round(elapsed, 3)}
    tmp = out / ".summary.json.tmp"
    tmp.write_text(json.dumps(summary, indent=2))
    tmp.replace(out / "summary.json")
    for path, reason in failures:
        print(f"failed: {path}: {reason}", file=sys.stderr)
    if not args.quiet:
        print(f"{len(rows)} of {len(inputs)} images segmented in {elapsed:.1f} s -> {out}/"
              f" (descriptors.csv, *_labels.png, *_heatmap.png, *_overlay.png)")
    return 1 if failures else 0


def cmd_train(args) -> int:
    from .core.train import TrainConfig, train

    kwargs = json.loads(args.arch_kwargs) if args.arch_kwargs else {}
    cfg = TrainConfig(arch=args.arch, arch_kwargs=kwargs, epochs=args.epochs, batch_size=args.batch_size,
                      lr=args.lr, seed=args.seed, patience=args.patience)
    model = train(args.data, args.out, cfg, device=args.device)
    print(json.dumps(model.card["test_metrics"], indent=2))
    return 0


def cmd_evaluate(args) -> int:
    import platform

    import torch
    from tqdm import tqdm

    from .core.datasets import DatasetError, read_dataset
    from .core.evaluate import DEFAULT_COMPARISON, evaluate, markdown_report
    from .core.models import ModelError, load_model

    try:
        model = load_model(args.model, device=args.device)
        samples = read_dataset(args.data)
    except (ModelError, DatasetError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.split:
        split = model.card.get("training", {}).get("split", {})
        if args.split not in split:
            print(f"error: the model card has no {args.split!r} split (it has {sorted(split)})", file=sys.stderr)
            return 2
        names = set(split[args.split])
        samples = [s for s in samples if s.name in names]
    if args.limit:
        samples = samples[: args.limit]
    if not samples:
        print("error: no images to evaluate", file=sys.stderr)
        return 2
    methods = args.methods or list(DEFAULT_COMPARISON)
    bar = tqdm(total=len([s for s in samples if s.mask_path]) * len(methods), desc="evaluate", unit="cell",
               disable=args.quiet)

    def progress(done, total):
        bar.update(1)

    t0 = time.perf_counter()
    report = evaluate(samples, model, methods, n_xai=args.n_xai, progress=progress)
    bar.close()
    report["model"] = {"source": model.source, "name": model.name, "architecture": model.card.get("architecture"),
                       "card_test_metrics": model.card.get("test_metrics")}
    report["settings"] = {"data": str(args.data), "split": args.split, "n_images": len(samples),
                          "methods": methods, "device": str(model.device), "n_xai": args.n_xai,
                          "command": "cervseg " + " ".join(sys.argv[1:]) if sys.argv[0].endswith("cervseg") else None,
                          "seconds": round(time.perf_counter() - t0, 1), "torch_threads": torch.get_num_threads(),
                          "machine": platform.machine(), "version": __version__,
                          "masks_used_for": "scoring only"}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(json.dumps(report, indent=2, default=float))
    tmp.replace(out)
    md = markdown_report(report)
    out.with_suffix(".md").write_text(md)
    print(md)
    print(f"wrote {out} and {out.with_suffix('.md')} in {report['settings']['seconds']} s")
    return 0


def cmd_models(args) -> int:
    from .core.models import ARCHITECTURES, bundled_models, load_model

    print("architectures:", ", ".join(sorted(ARCHITECTURES)))
    for name, path in bundled_models().items():
        model = load_model(name)
        tm = model.card.get("test_metrics", {})
        print(f"bundled: {name} ({model.card.get('architecture')}, {path.stat().st_size / 1e6:.1f} MB)"
              f" test accuracy {tm.get('accuracy', float('nan')):.3f}"
              f" abnormal recall {tm.get('abnormal_recall', float('nan')):.3f}"
              + ("  [interim]" if model.card.get("interim") else ""))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from .core.grouping import GROUPINGS
    from .core.inpaint import INPAINTERS
    from .core.pipeline import NUCLEUS_SEEDS, SEGMENT_METHODS

    parser = argparse.ArgumentParser(prog="cervseg", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"napari-cervseg {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    seg = sub.add_parser("segment", help="segment cell images into nucleus / cytoplasm")
    seg.add_argument("inputs", nargs="+", help="image files, folders or globs")
    seg.add_argument("--out", required=True, help="output folder")
    seg.add_argument("--method", default="gradcam++", choices=SEGMENT_METHODS)
    seg.add_argument("--grouping", default=None, choices=GROUPINGS)
    seg.add_argument("--model", default="default", help="bundled model name or .safetensors path")
    seg.add_argument("--device", default=None, help="cpu, cuda, mps (default: best available)")
    seg.add_argument("--target", default=None, help="class to explain (default: the predicted one)")
    seg.add_argument("--nucleus-iterations", type=int, default=None)
    seg.add_argument("--cytoplasm-iterations", type=int, default=None)
    seg.add_argument("--dilation", type=float, default=None, help="radius in px of a 128 px image")
    seg.add_argument("--nucleus-seed", default=None, choices=NUCLEUS_SEEDS,
                     help="how the heatmap's top group becomes the nucleus seed (see README)")
    seg.add_argument("--inpainter", default=None, choices=INPAINTERS)
    seg.add_argument("--lama-model", default=None, help="local big-lama.pt (TorchScript)")
    seg.add_argument("--pixel-size", type=float, default=None, help="µm per pixel, for µm descriptors")
    seg.add_argument("--overwrite", action="store_true",
                     help="redo images whose outputs exist (default: keep them, e.g. corrected labels)")
    seg.add_argument("--quiet", action="store_true")
    seg.set_defaults(func=cmd_segment)

    tr = sub.add_parser("train", help="train a classifier on image-level labels")
    tr.add_argument("--data", required=True, help="Herlev-layout folder or normal/ + abnormal/ folders")
    tr.add_argument("--out", required=True, help="output .safetensors (a .json card is written beside)")
    tr.add_argument("--arch", default="compact")
    tr.add_argument("--arch-kwargs", default=None, help='JSON, e.g. \'{"widths": [24, 48, 96, 192]}\'')
    tr.add_argument("--epochs", type=int, default=40)
    tr.add_argument("--batch-size", type=int, default=32)
    tr.add_argument("--lr", type=float, default=3e-3)
    tr.add_argument("--patience", type=int, default=15)
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--device", default=None)
    tr.set_defaults(func=cmd_train)

    ev = sub.add_parser("evaluate", help="classification, segmentation and XAI figures against masks")
    ev.add_argument("--data", required=True, help="Herlev-layout folder (images without a mask: classification only)")
    ev.add_argument("--out", required=True, help="results .json (a .md table is written beside it)")
    ev.add_argument("--model", default="default")
    ev.add_argument("--methods", nargs="+", default=None,
                    help="method specs, e.g. gradcam++ 'gradcam++:grouping=kmeans' 'lrp-ruleset1:inpainter=none'")
    ev.add_argument("--split", default=None, choices=("train", "val", "test"),
                    help="only the images of this part of the model card's split")
    ev.add_argument("--limit", type=int, default=None, help="first N images only")
    ev.add_argument("--n-xai", type=int, default=60, help="images for the entropy / pixel-flipping figures")
    ev.add_argument("--device", default=None)
    ev.add_argument("--quiet", action="store_true")
    ev.set_defaults(func=cmd_evaluate)

    mo = sub.add_parser("models", help="list architectures and bundled models")
    mo.set_defaults(func=cmd_models)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
