"""The ``cervseg`` command: segment, train, evaluate, self-train, models.

    cervseg segment cell.png more/*.png stack.tif --out results/ [--method gradcam++] [--workers 2]
    cervseg train --data ../shared/data/herlev --out my-model.safetensors
    cervseg self-train --corrections results/ --out my-lab.safetensors
    cervseg models
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from ._version import __version__

#: worker processes that "auto" starts at most: each holds its own torch (~0.8 GB resident)
MAX_AUTO_WORKERS = 4
#: below this many inputs "auto" stays in this process: starting workers costs seconds
MIN_INPUTS_FOR_WORKERS = 8


def auto_workers(n_inputs: int) -> int:
    """Local worker processes for ``--workers auto``: one per CPU core (at most 4), or none
    (this process) for a handful of inputs."""
    if n_inputs < MIN_INPUTS_FOR_WORKERS:
        return 1
    return max(1, min(os.cpu_count() or 1, MAX_AUTO_WORKERS, n_inputs))


def one_line(text: str) -> str:
    """``text`` with control characters escaped (a file name may hold a newline), so each report
    stays one line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))


def progress_bar(desc: str, quiet: bool = False):
    """A tqdm bar in per cent and the ``progress(stage, fraction)`` callback that moves it (the
    package's one progress protocol; the stage, "3 of 12 images: name done", shows beside the bar)."""
    from tqdm import tqdm

    bar = tqdm(total=100, desc=desc, unit="%", disable=quiet, bar_format="{desc}: {percentage:3.0f}%|{bar}| {postfix}")

    def progress(stage: str, fraction: float) -> None:
        bar.n = round(100 * fraction)
        bar.set_postfix_str(stage[-60:], refresh=False)
        bar.refresh()

    return bar, progress


def parse_workers(value, auto) -> int | None:
    """``--workers``: "auto" (or None) -> ``auto()``; a count >= 1; else None after an error."""
    if value in (None, "auto"):
        return auto()
    workers = int(value) if str(value).isdigit() else 0
    if workers < 1:
        print(f"error: --workers {value}: give a number of processes (1 or more) or 'auto'", file=sys.stderr)
        return None
    return workers


def cmd_segment(args) -> int:
    from .classify import ModelError
    from .io.images import ImageError
    from .segment.settings import SegmentationError
    from .workflows.batch import BatchConfig, run_batch
    from .workflows.inputs import expand_inputs

    options = settings_options(args)
    if args.operating_point is not None:
        options["operating_point"] = args.operating_point
    model = args.model
    if model is not None and model.lower() in ("none", ""):
        model = None
    config = BatchConfig(model=model, method=args.method, target=args.target,
                         device=args.device, options=options, pixel_size=args.pixel_size,
                         overwrite=args.overwrite, max_pixels=args.max_pixels or None, field_mode=args.field,
                         finder=args.finder, white_balance=args.white_balance)
    try:  # every value, the model, its operating point and target: refused once, before any file is touched
        config.check()
    except (SegmentationError, ModelError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    if not str(args.out).strip():
        print("error: --out is empty; name an output folder (e.g. --out results)", file=sys.stderr)
        return 2
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        print(f"error: cannot create output folder {out}: {exc}", file=sys.stderr)
        return 2
    if not os.access(out, os.W_OK):
        print(f"error: output folder {out} is not writable; choose another with --out", file=sys.stderr)
        return 2
    try:
        skipped: list = []
        inputs = list(expand_inputs(args.inputs, roi=args.roi, skipped=skipped))
    except ImageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for path, reason in skipped:
        print(one_line(f"skipped: {path}: {reason}"), file=sys.stderr)
    if not inputs:
        print("error: no input images found (give image files, folders, globs or TIFF stacks)", file=sys.stderr)
        return 2
    workers = parse_workers(args.workers, lambda: auto_workers(len(inputs)))
    if workers is None:
        return 2
    bar, progress = progress_bar("segment", args.quiet)
    try:
        summary = run_batch(inputs, out, config, workers=workers, scheduler=args.scheduler,
                            progress=progress, total=len(inputs),
                            skipped_inputs=[{"input": p, "reason": r} for p, r in skipped])
    except RuntimeError as exc:  # the scheduler cannot be reached, the folder is in use
        bar.close()
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # the table or summary could not be written (full disk)
        bar.close()
        print(f"error: {exc}", file=sys.stderr)
        return 1
    bar.close()
    for failure in summary["failed"]:
        print(one_line(f"failed: {failure['input']}: {failure['reason']}"), file=sys.stderr)
    if not args.quiet:
        t = summary["timings"]
        kept = f", {summary['skipped']} kept from an earlier run" if summary["skipped"] else ""
        print(f"{summary['done']} of {summary['inputs']} images segmented{kept} in {t['wall_seconds']:.1f} s"
              f" ({summary['execution']['mode']}) -> {out}/ (descriptors.csv, summary.json, *_labels.png,"
              " *_heatmap.png, *_overlay.png)")
        if summary.get("no_verdict"):
            print(f"{summary['no_verdict']} without a verdict: not a cell the classifier can judge (too small, no"
                  " contrast, no cell found, unlike the training cells or their colours); no class called, see"
                  " the judgeable / not_judgeable_reason columns of descriptors.csv")
    return 1 if summary["failed"] else 0


def cmd_train(args) -> int:
    from dataclasses import replace

    from .classify import ARCHITECTURES
    from .io.datasets import DatasetError
    from .workflows.train import TrainConfig, paper_recipe, train

    if args.arch not in ARCHITECTURES:
        print(f"error: unknown architecture {args.arch!r}; known: {', '.join(sorted(ARCHITECTURES))}",
              file=sys.stderr)
        return 2
    kwargs = json.loads(args.arch_kwargs) if args.arch_kwargs else {}
    cfg = TrainConfig(arch=args.arch, arch_kwargs=kwargs, seed=args.seed, split_seed=args.split_seed, keep=args.keep,
                      init=args.init, field_crop_fields=args.field_crop_fields)
    if args.init:  # fine-tuning: the initial model's architecture; its preprocessing unless --input-size / --equalise
        from .classify import ModelError, load_model

        try:
            card = load_model(args.init).card
        except ModelError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        pre = card.get("preprocess", {})
        cfg = replace(cfg, arch=card.get("architecture", cfg.arch), arch_kwargs=card.get("arch_kwargs") or {},
                      input_size=pre.get("input_size"), equalise=pre.get("equalise", cfg.equalise))
    if args.recipe == "paper":
        cfg = paper_recipe(cfg)
    given = {k: getattr(args, k) for k in ("epochs", "batch_size", "lr", "patience", "augmentation", "optimizer",
                                           "input_size", "equalise", "weight_decay", "label_smoothing",
                                           "normal_repeat", "screening_recall")
             if getattr(args, k) is not None}
    if args.max_minutes is not None:
        given["max_seconds"] = 60.0 * args.max_minutes
    cfg = replace(cfg, **given)  # explicit flags win over the recipe
    bar, progress = progress_bar(f"train {cfg.arch}")

    try:
        model = train(args.data, args.out, cfg, device=args.device, progress=progress, log=bar.write,
                      resume=args.resume, command="cervseg " + " ".join(args.argv))
    except (DatasetError, ValueError) as exc:
        bar.close()
        print(f"error: {exc}", file=sys.stderr)
        return 2
    bar.close()
    print(json.dumps(model.card["test_metrics"], indent=2))
    return 0


def cmd_evaluate(args) -> int:
    import platform

    import torch

    from .classify import ModelError, load_model
    from .io.datasets import DatasetError, read_dataset
    from .workflows.evaluate import DEFAULT_COMPARISON, evaluate, markdown_report

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
    workers = parse_workers(args.workers, lambda: auto_workers(len(samples)))
    if workers is None:
        return 2
    bar, progress = progress_bar("evaluate", args.quiet)

    t0 = time.perf_counter()
    try:
        report = evaluate(samples, args.model if workers > 1 else model, methods, n_xai=args.n_xai,
                          progress=progress, workers=workers)
    except ValueError as exc:  # a method spec or option that does not exist
        bar.close()
        print(f"error: {exc}", file=sys.stderr)
        return 2
    bar.close()
    report["model"] = {"source": model.source, "name": model.name, "architecture": model.card.get("architecture"),
                       "card_test_metrics": model.card.get("test_metrics")}
    report["settings"] = {"data": str(args.data), "split": args.split, "n_images": len(samples),
                          "methods": methods, "device": str(model.device), "n_xai": args.n_xai,
                          "command": ("cervseg " + " ".join(args.argv)
                                      if Path(sys.argv[0]).name in ("cervseg", "cli.py") else None),
                          "seconds": round(time.perf_counter() - t0, 1), "torch_threads": torch.get_num_threads(),
                          "workers": workers,
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


def cmd_learn_corrections(args) -> int:
    """``self-train --corrections DIR``: fine-tune a segmenter on the cells the user corrected in a
    ``cervseg segment --out`` folder and write it (never over an existing file)."""
    from .segment.student import SegmenterError
    from .workflows.corrections import (
        CorrectionConfig,
        CorrectionError,
        learn_from_corrections,
        read_corrections_folder,
    )
    from .workflows.selftrain import TrainingCancelled

    wrong = [flag for flag, given in (("--data", args.data), ("--teacher", args.teacher != "gradcam++"),
                                      ("--ignore-band", args.ignore_band), ("--epochs", args.epochs is not None))
             if given]
    if wrong:
        print(f"error: {wrong[0]} is for the pseudo-label route; --corrections trains on your corrected labels"
              " only (leave it out; --steps sets how long)", file=sys.stderr)
        return 2
    skipped: list = []
    defaults = CorrectionConfig()
    steps = args.steps if args.steps is not None else defaults.steps
    if steps < 1:
        print(f"error: --steps {steps}: give 1 or more optimiser steps", file=sys.stderr)
        return 2
    config = CorrectionConfig(steps=steps, seed=args.seed)
    try:
        cells = read_corrections_folder(args.corrections, skipped)
        for stem, why in skipped:
            if not args.quiet:
                print(f"left out {one_line(stem)}: {one_line(why)}")
        print(f"{len(cells)} corrected cell(s) in {args.corrections}; fine-tuning {args.segmenter!r}"
              f" for {config.steps} steps")
        t0 = time.perf_counter()
        last = [-1]

        def progress(stage, fraction):
            pct = int(fraction * 10)
            if not args.quiet and pct != last[0]:
                last[0] = pct
                print(f"  {stage} ({100 * fraction:.0f} %)", flush=True)

        path = learn_from_corrections([c.image for c in cells], [c.labels for c in cells], args.out,
                                      base=args.segmenter, config=config, sources=[c.source for c in cells],
                                      progress=progress)
    except (CorrectionError, SegmenterError) as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 2
    except TrainingCancelled as exc:  # pragma: no cover - only a callback cancels
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: nothing written", file=sys.stderr)
        return 130
    print(f"wrote {path} (+ card) from {len(cells)} corrected cell(s) in {time.perf_counter() - t0:.1f} s;"
          f" use it: cervseg segment ... --method self-trained --segmenter {path}")
    return 0


def cmd_self_train(args) -> int:
    """Pseudo-label the model card's train / validation images with the teacher pipeline (no
    masks), fit the U-Net to them, save it; the card says what it was trained on. With
    ``--corrections``: fine-tune on the user's corrected labels instead (:func:`cmd_learn_corrections`)."""
    if args.corrections:
        return cmd_learn_corrections(args)
    if not args.data:
        print("error: give --data (images for pseudo-labels) or --corrections (a `cervseg segment --out` folder"
              " with labels you corrected)", file=sys.stderr)
        return 2
    if args.steps is not None:
        print("error: --steps is for --corrections; the pseudo-label route counts --epochs", file=sys.stderr)
        return 2
    import numpy as np

    from .classify import ModelError, load_model
    from .io.datasets import DatasetError, read_dataset
    from .segment.settings import SegmentationError, settings_for
    from .segment.student import save_segmenter
    from .workflows.evaluate import parse_method_spec
    from .workflows.selftrain import SelfTrainConfig, pseudo_labels, train_segmenter

    try:
        model = load_model(args.model)
        samples = read_dataset(args.data)
    except (ModelError, DatasetError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    split = model.card.get("training", {}).get("split", {})
    if "train" in split:
        by_part = {part: [s for s in samples if s.name in set(split.get(part, []))] for part in ("train", "val")}
    else:  # a model without a saved split: hold out every tenth image for model selection
        by_part = {"train": [s for i, s in enumerate(samples) if i % 10], "val": samples[::10]}
    method, teacher_options = parse_method_spec(args.teacher)
    try:  # the full settings the teacher runs with go into the card (and a bad spec fails here)
        teacher_settings, _ = settings_for(method, **teacher_options)
    except SegmentationError as exc:
        print(f"error: --teacher {args.teacher!r}: {exc}", file=sys.stderr)
        return 2
    teacher = {"method": method, **teacher_options}
    pairs = {}
    t0 = time.perf_counter()
    for part, items in by_part.items():
        images = [s.load_image() for s in items]
        bar, progress = progress_bar(f"pseudo-labels ({part})", args.quiet)
        labels = pseudo_labels(images, model, teacher, progress=progress)
        bar.close()
        keep = [i for i, lab in enumerate(labels) if lab is not None]
        pairs[part] = ([images[i] for i in keep], [labels[i] for i in keep], [items[i].name for i in keep])
        print(f"{part}: {len(keep)} of {len(images)} images pseudo-labelled by {args.teacher}")
    label_seconds = time.perf_counter() - t0
    config = SelfTrainConfig(epochs=args.epochs if args.epochs is not None else 40, seed=args.seed, teacher=teacher,
                             ignore_band=args.ignore_band)
    seg = train_segmenter(pairs["train"][0], pairs["train"][1], config, pairs["val"][0], pairs["val"][1],
                          log=(lambda *a: None) if args.quiet else print,
                          card_extra={"teacher": teacher, "teacher_settings": teacher_settings.as_dict(),
                                      "classifier": args.model,
                                      "data": str(args.data), "train_images": pairs["train"][2],
                                      "val_images": pairs["val"][2], "pseudo_label_seconds": round(label_seconds, 1),
                                      "command": "cervseg " + " ".join(args.argv)})
    path = save_segmenter(seg, args.out)
    best = min((h.get("val_loss", np.inf) for h in seg.card["history"]), default=np.inf)
    print(f"wrote {path} (+ card); {seg.card['train_seconds']} s training, best validation loss {best:.4f}"
          " against the teacher's pseudo-labels")
    return 0


def cmd_train_finder(args) -> int:
    """Compose training fields from the model card's training-split cells, pseudo-labelled by the
    self-trained segmenter (no mask is read), and train the learned cell finder on them."""
    import numpy as np

    from .classify import ModelError, load_model
    from .io.datasets import DatasetError, read_dataset
    from .segment.finder import FINDER_DIR, FinderError, save_finder
    from .segment.student import SegmenterError
    from .workflows.finder_training import FinderTrainConfig, compose_fields, train_finder, training_cells

    out = Path(args.out)
    if out.suffix != ".safetensors" or out.is_dir():
        print(f"error: --out {args.out!r} must name a .safetensors file (its .json card is written beside it)",
              file=sys.stderr)
        return 2
    if out.resolve().parent == FINDER_DIR.resolve():
        print(f"error: {out.parent} holds the bundled finders, which are never replaced; write elsewhere",
              file=sys.stderr)
        return 2
    if (out.exists() or out.with_suffix(".json").exists()) and (args.corrections or not args.overwrite):
        print(f"error: {out} (or its card) exists; give another --out"
              f"{'' if args.corrections else ' or --overwrite'}", file=sys.stderr)
        return 2
    if args.corrections:
        return _finetune_finder_on_corrections(args, out)
    if not args.data:
        print("error: give --data (single cells to compose training fields from) or --corrections (a `cervseg"
              " segment --field` folder whose _cells.png / _nuclei.png you corrected)", file=sys.stderr)
        return 2
    if args.minutes <= 0 or args.fields < 10:
        print("error: --minutes must be > 0 and --fields at least 10", file=sys.stderr)
        return 2
    try:
        widths = tuple(int(v) for v in args.widths.split(",")) if args.widths else FinderTrainConfig.widths
    except ValueError:
        widths = ()
    if not 2 <= len(widths) <= 6 or not all(1 <= v <= 512 for v in widths):
        print(f"error: --widths {args.widths!r}: give 2-6 comma-separated channel counts in 1..512, e.g."
              f" {','.join(map(str, FinderTrainConfig.widths))} (the default)", file=sys.stderr)
        return 2
    try:
        model = load_model(args.split_from)
        samples = read_dataset(args.data)
    except (ModelError, DatasetError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    train_names = set(model.card.get("training", {}).get("split", {}).get("train", []))
    if not train_names:
        print(f"error: model {args.split_from!r} has no training split in its card; give --split-from a model"
              " trained by `cervseg train`", file=sys.stderr)
        return 2
    samples = [s for s in samples if s.name in train_names]
    if args.limit:
        samples = samples[:args.limit]
    if not samples:
        print(f"error: none of {args.data}'s images is in {args.split_from!r}'s training split", file=sys.stderr)
        return 2
    config = FinderTrainConfig(n_fields=args.fields, minutes=args.minutes, steps=args.steps or 0, seed=args.seed,
                               widths=widths, keep_cells_running_out=args.keep_cells_running_out,
                               precision=args.precision)
    t0 = time.perf_counter()
    try:
        bar, progress = progress_bar("pseudo-labels", args.quiet)
        cells = training_cells([s.load_image() for s in samples], args.segmenter, progress=progress,
                               keep_running_out=config.keep_cells_running_out)
        bar.close()
        label_seconds = time.perf_counter() - t0
        bar, progress = progress_bar("composing fields", args.quiet)
        images, targets, rays, sizes = compose_fields(cells, config, progress=progress)
        bar.close()
        compose_seconds = time.perf_counter() - t0 - label_seconds
        print(f"{len(cells)} of {len(samples)} training-split cells pseudo-labelled; {len(images)} fields composed"
              f" (median nucleus {sizes['nucleus_diameter']:.1f}, cell {sizes['cell_diameter']:.1f} working px)")
        finder = train_finder(images, targets, rays, sizes, config, log=(lambda *a: None) if args.quiet else print,
                              card_extra={"data": str(args.data), "split_from": args.split_from,
                                          "segmenter": str(args.segmenter),
                                          "train_images": sorted(s.name for s in samples),
                                          "cells_used": len(cells), "pseudo_label_seconds": round(label_seconds, 1),
                                          "compose_seconds": round(compose_seconds, 1),
                                          "command": "cervseg " + " ".join(args.argv)})
    except (SegmenterError, FinderError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: nothing written", file=sys.stderr)
        return 130
    finder.card["total_seconds"] = round(time.perf_counter() - t0, 1)
    path = save_finder(finder, out)
    best = finder.card.get("best_val_loss")
    print(f"wrote {path} (+ card); {finder.card['train_seconds']} s training, {finder.card['steps']} steps,"
          f" best loss on held-aside composed fields {np.nan if best is None else best:.4f}")
    return 0


def _finetune_finder_on_corrections(args, out: Path) -> int:
    """Fine-tune a finder on the fields a user corrected in a `cervseg segment --field` folder."""
    from .segment.finder import FinderError, load_finder, save_finder
    from .workflows.corrections import CorrectionError, read_field_corrections
    from .workflows.finder_training import FinderCorrectionConfig, finetune_finder

    skipped: list = []
    try:
        base = load_finder(args.finder)
        fields = read_field_corrections(args.corrections, skipped)
    except (FinderError, CorrectionError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for stem, why in skipped:
        print(f"left out {stem}: {why}")
    config = FinderCorrectionConfig(steps=args.steps or FinderCorrectionConfig.steps, seed=args.seed)
    try:
        tuned = finetune_finder(base, [f[0] for f in fields], [f[1] for f in fields], [f[2] for f in fields], config,
                                sources=[f[3] for f in fields], log=(lambda *a: None) if args.quiet else print)
    except KeyboardInterrupt:
        print("interrupted: nothing written", file=sys.stderr)
        return 130
    tuned.card["command"] = "cervseg " + " ".join(args.argv)
    path = save_finder(tuned, out)
    print(f"wrote {path} (+ card): {base.source} fine-tuned on {len(fields)} corrected field(s);"
          f" use it with segment_field(..., finder={str(path)!r}) or `cervseg segment --field --finder {path}`")
    return 0


def cmd_verdict_stats(args) -> int:
    from .classify import ModelError, load_model
    from .classify.applicability import statistics_from_split, store_statistics
    from .classify.models import _resolve_weights
    from .io.datasets import DatasetError

    try:
        weights = _resolve_weights(str(args.model))
        if weights.suffix.lower() != ".safetensors":
            raise ModelError(f"{weights}: statistics are stored beside a .safetensors model with its JSON card")
        model = load_model(weights, device="cpu")
        block, tensors = statistics_from_split(model, args.data, log=None if args.quiet else print)
    except (ModelError, DatasetError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    extra = {"command": f"cervseg verdict-stats {args.model} --data {args.data}",
             "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    side = store_statistics(weights, block, tensors, extra)
    if not args.quiet:
        print(f"wrote {side.name} and the card's 'applicability' block: feature distance limit"
              f" {block['features']['threshold']:.2f}, colour distance limit {block['colours']['threshold']:.2f}"
              f" ({block['rule']})")
    return 0


def cmd_ensemble(args) -> int:
    from .classify import ModelError
    from .io.datasets import DatasetError
    from .workflows.ensemble import build_ensemble

    out = Path(args.out)
    if out.with_suffix(".safetensors").exists() and not args.overwrite:
        print(f"error: {out.with_suffix('.safetensors')} exists; choose another --out or pass --overwrite",
              file=sys.stderr)
        return 2
    command = f"cervseg ensemble {' '.join(map(str, args.members))} --data {args.data} --out {args.out}"
    try:
        build_ensemble(args.members, out, args.data, screening_recall=args.screening_recall,
                       log=None if args.quiet else print, command=command)
    except (ModelError, DatasetError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def cmd_models(args) -> int:
    from .classify import ARCHITECTURES, bundled_models, load_model

    print("architectures:", ", ".join(sorted(ARCHITECTURES)))
    for name, path in bundled_models().items():
        model = load_model(name)
        tm = model.card.get("test_metrics", {})
        print(f"bundled: {name} ({model.card.get('architecture')}, {path.stat().st_size / 1e6:.1f} MB)"
              f" test accuracy {tm.get('accuracy', float('nan')):.3f}"
              f" abnormal recall {tm.get('abnormal_recall', float('nan')):.3f}"
              + (" (8-fold flip/rotation averaging)" if tm.get("tta") else " (single pass)" if "tta" in tm else "")
              + ("  [interim]" if model.card.get("interim") else ""))
        screening = model.card.get("operating_points", {}).get("screening")
        if screening:
            sm = screening["test_metrics"]
            print(f"  screening point (--operating-point screening): p(abnormal) >= {screening['abnormal_threshold']:.3f},"
                  f" test accuracy {sm['accuracy']:.3f} abnormal recall {sm['abnormal_recall']:.3f}")
        if model.card.get("members"):
            print(f"  ensemble of {len(model.card['members'])} compact networks (mean of their probabilities):"
                  f" {', '.join(str(m.get('source')) for m in model.card['members'])}")
        training = model.card.get("training", {})
        if training and "seconds" in training:
            print(f"  trained {training.get('seconds', float('nan')):.0f} s, {training.get('epochs_run', '?')} epochs on"
                  f" {training.get('where') or training.get('device', '?')}; card: {path.with_suffix('.json')}")
    return 0


def add_settings_arguments(parser) -> None:
    """One --option per setting of any method: its type, choices and help from the settings classes
    (``segment.settings.setting_specs``), with each method's default."""
    from .segment.settings import setting_specs

    for name, spec in setting_specs().items():
        by_default: dict[str, list[str]] = {}
        for algorithm, default in spec.defaults.items():
            by_default.setdefault(repr(default), []).append(algorithm)
        defaults = "; ".join(f"{value} ({', '.join(algs)})" for value, algs in by_default.items())
        help_text = f"{spec.help} [default: {defaults}]"
        flag = "--" + name.replace("_", "-")
        if spec.type is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        elif spec.choices is not None:
            parser.add_argument(flag, default=None, choices=spec.choices, help=help_text)
        else:
            parser.add_argument(flag, type=spec.type, default=None, help=help_text)


def cmd_slide(args) -> int:
    """Segment a whole slide tile by tile (resumable), then write its table, GeoJSON and report."""

    from .classify import ModelError
    from .io.slides import SlideError
    from .workflows.run_folder import OutputFolderError
    from .workflows.slides import SlideConfig, SlideRunError, segment_slide

    operating_point = args.operating_point
    if operating_point not in (None, "argmax", "screening"):
        try:
            operating_point = float(operating_point)
        except ValueError:
            print(f"error: --operating-point {args.operating_point}: argmax, screening or a number in (0, 1)",
                  file=sys.stderr)
            return 2
    try:
        config = SlideConfig(tile=args.tile, margin=args.margin, model=args.model, method=args.method,
                             finder=args.finder or SlideConfig.finder, pixel_size=args.pixel_size, skip_empty=not args.all_tiles,
                             per_cell=args.per_cell, white_balance=args.white_balance,
                             operating_point=None if operating_point == "argmax" else operating_point).check()
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from .workflows.slides import auto_slide_workers

    workers = parse_workers(args.workers, auto_slide_workers)
    if workers is None:
        return 2
    if args.workers == "auto" and not args.quiet:
        print(f"--workers auto: {workers} worker process{'es' if workers > 1 else ''} (one per core, about"
              " 1.5 GB each, as many as the free memory holds)", file=sys.stderr)
    scheduler = args.scheduler or ("sync" if workers == 1 else "processes")
    bar, progress = progress_bar("slide", args.quiet)

    try:
        result = segment_slide(args.slide, args.out, config, workers=workers, scheduler=scheduler,
                               progress=progress, gallery=args.gallery)
    except (SlideError, SlideRunError, OutputFolderError, ModelError, ValueError, OSError) as exc:
        bar.close()
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        bar.close()
        print(f"interrupted: finished tiles are kept in {args.out}/tiles; run the same command again to resume",
              file=sys.stderr)
        return 130
    bar.close()
    counts = result.summary()
    print(f"{counts['n_cells']} cells in {counts['tiles_done']} of {counts['tiles_total']} tiles:"
          f" {counts['n_abnormal']} abnormal, {counts['n_normal']} normal, {counts['n_no_verdict']} without a verdict"
          + (f", {counts['n_left_out']} found nuclei left out as not cells (points in the GeoJSON)"
             if counts.get("n_left_out") else "")
          + f" ({result.seconds:.0f} s)")
    for warning in result.warnings[:20]:
        print(f"note: {warning}")
    if result.complete:
        print(f"wrote {args.out}/cells.parquet, cells.csv, cells.geojson (QuPath), report.html")
    return 0


def settings_options(args) -> dict:
    """The settings given on the command line (those left unset keep each method's default)."""
    from .segment.settings import option_names

    return {name: getattr(args, name) for name in option_names() if getattr(args, name, None) is not None}


def _white_balance_help() -> str:
    from .workflows.fields import WHITE_BALANCE_DESCRIPTION

    return ("fields: how each found cell's crop is white-balanced before it is segmented and classified ("
            + WHITE_BALANCE_DESCRIPTION + ")")


def _add_segment_parser(sub) -> None:
    """``cervseg segment``: its options."""
    from .io.images import MAX_PIXELS
    from .segment.settings import DEFAULT_SEGMENT_METHOD, SEGMENT_METHODS
    from .workflows.fields import WHITE_BALANCE_MODES

    white_balance_help = _white_balance_help()
    seg = sub.add_parser("segment", help="segment cell images into nucleus / cytoplasm")
    seg.add_argument("inputs", nargs="+",
                     help="image files, folders, globs (quote them) or multi-page TIFF stacks (one cell per page)")
    seg.add_argument("--out", required=True, help="output folder")
    seg.add_argument("--method", default=DEFAULT_SEGMENT_METHOD, choices=SEGMENT_METHODS)
    seg.add_argument("--model", default="default",
                     help="bundled model name, a .safetensors path or a Keras .keras / .h5 path ('none' for the colour"
                          " baseline without one); 'default' is the compact network for single cells and the"
                          " three-network ensemble (ensemble3) for fields")
    seg.add_argument("--device", default=None, help="cpu, cuda, mps (default: best available)")
    seg.add_argument("--target", default=None, help="class to explain (default: the predicted one)")
    add_settings_arguments(seg)
    seg.add_argument("--pixel-size", type=float, default=None, help="µm per pixel, for µm descriptors")
    seg.add_argument("--workers", default="auto",
                     help="local worker processes: a number, or 'auto' (default: one per CPU core, at most"
                          f" {MAX_AUTO_WORKERS}, each ~0.8 GB; this process alone for fewer than"
                          f" {MIN_INPUTS_FOR_WORKERS} inputs); 1 = no extra processes")
    seg.add_argument("--scheduler", default=None,
                     help="dask.distributed scheduler address (tcp://host:8786); its workers must see the"
                          " inputs and --out at the same paths")
    seg.add_argument("--roi", default=None, metavar="X,Y,W,H",
                     help="segment only this region of each input (px; X column, Y row of the top-left corner)")
    seg.add_argument("--max-pixels", type=int, default=MAX_PIXELS,
                     help=f"refuse larger inputs (height x width; default {MAX_PIXELS}) with a"
                          " region-of-interest hint; 0 = no limit")
    seg.add_argument("--operating-point", default=None, metavar="argmax|screening|P",
                     help="how the class is called: argmax (default), screening (the model card's threshold"
                          " on p(abnormal), chosen on validation for abnormal recall >= 0.98) or a threshold P")
    seg.add_argument("--field", nargs="?", const="yes", default="no", choices=("no", "yes", "auto"),
                     help="treat each input as a field of view: find, segment, classify and measure every cell"
                          " (writes _cells.png / _nuclei.png instance labels, one descriptors row per cell, abnormal"
                          " cells boxed in the overlay); 'auto' decides per image (several nuclei of cell size)")
    seg.add_argument("--finder", default=None, metavar="learned|classic|FILE",
                     help="--field: what finds the cells: the learned finder (bundled, or a .safetensors from"
                          " `cervseg train-finder`) or the classic contrast rules (default: the package's default)")
    seg.add_argument("--white-balance", default=None, choices=WHITE_BALANCE_MODES, help=white_balance_help)
    seg.add_argument("--overwrite", action="store_true",
                     help="redo images whose outputs exist (default: keep them, e.g. corrected labels)")
    seg.add_argument("--quiet", action="store_true")
    seg.set_defaults(func=cmd_segment)


def _add_train_parser(sub) -> None:
    """``cervseg train``: its options."""
    tr = sub.add_parser("train", help="train a classifier on image-level labels")
    tr.add_argument("--data", required=True, help="Herlev-layout folder or normal/ + abnormal/ folders")
    tr.add_argument("--out", required=True, help="output .safetensors (a .json card is written beside)")
    tr.add_argument("--arch", default="compact")
    tr.add_argument("--arch-kwargs", default=None, help='JSON, e.g. \'{"widths": [24, 48, 96, 192]}\'')
    tr.add_argument("--recipe", default="default", choices=("default", "paper"),
                    help="default: AdamW one-cycle + online augmentation; paper: the paper's recipe for the"
                         " architecture (SGD step for VGG, Adam batch 16 for Xception, 8 augmentation sets x8/x24)")
    tr.add_argument("--epochs", type=int, default=None, help="default 40 (recipe paper: 50 VGG, 20 Xception)")
    tr.add_argument("--batch-size", type=int, default=None)
    tr.add_argument("--lr", type=float, default=None)
    tr.add_argument("--patience", type=int, default=None, help="early stopping on validation (epochs)")
    tr.add_argument("--augmentation", default=None, choices=("online", "paper"))
    tr.add_argument("--optimizer", default=None, choices=("adamw-onecycle", "sgd-step", "adam"))
    tr.add_argument("--input-size", type=int, default=None, help="px (default: the architecture's own)")
    tr.add_argument("--equalise", default=None, choices=("luminance", "per-channel", "none"),
                    help="histogram equalisation before the network (default luminance)")
    tr.add_argument("--weight-decay", type=float, default=None)
    tr.add_argument("--label-smoothing", type=float, default=None)
    tr.add_argument("--normal-repeat", type=int, default=None,
                    help="online augmentation: normal images per abnormal one per epoch (default 3)")
    tr.add_argument("--screening-recall", type=float, default=None,
                    help="abnormal recall the card's screening operating point must reach on the validation"
                         " split (default 0.98)")
    tr.add_argument("--max-minutes", type=float, default=None,
                    help="stop training after this long and keep the best epoch so far (as early stopping)")
    tr.add_argument("--resume", action="store_true",
                    help="continue an interrupted run from <out>.checkpoint.pt (same settings)")
    tr.add_argument("--seed", type=int, default=0, help="initialisation, augmentation and (unless --split-seed)"
                    " the train/val/test split")
    tr.add_argument("--init", default=None,
                    help="fine-tune this model (a bundled name or a .safetensors path) on its own split instead"
                         " of training from scratch; its architecture and preprocessing are used")
    tr.add_argument("--field-crop-fields", type=int, default=0,
                    help="also train on crops of cells cut from this many fields composed of the training split's"
                         " cells (pseudo-labelled by the self-trained segmenter; no mask is read): the view of a"
                         " cell on a field of view")
    tr.add_argument("--split-seed", type=int, default=None,
                    help="seed of the split alone (default: --seed); members of an ensemble share one, e.g."
                         " --split-seed 0 to train on the bundled model's split")
    tr.add_argument("--keep", default="best", choices=("best", "last"),
                    help="save the best epoch on validation (default) or the last one (the validation split"
                         " then stays free to compare models on)")
    tr.add_argument("--device", default=None)
    tr.set_defaults(func=cmd_train)


def _add_evaluate_parser(sub) -> None:
    """``cervseg evaluate``: its options."""
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
    ev.add_argument("--workers", default="auto",
                    help="local worker processes over the images (default auto: one per core, at most"
                         f" {MAX_AUTO_WORKERS}); results do not depend on it")
    ev.add_argument("--quiet", action="store_true")
    ev.set_defaults(func=cmd_evaluate)


def _add_self_train_parser(sub) -> None:
    """``cervseg self-train``: its options."""
    st = sub.add_parser("self-train", help="train the U-Net second stage on the pipeline's own pseudo-masks"
                                           " (weakly supervised: no ground-truth mask is read), or fine-tune it"
                                           " on your corrected labels (--corrections)")
    st.add_argument("--data", default=None, help="Herlev-layout folder or normal/ + abnormal/ folders (the"
                                                 " pseudo-label route)")
    st.add_argument("--corrections", default=None, metavar="DIR",
                    help="learn from your corrections instead: a `cervseg segment --out` folder in which you"
                         " corrected some _labels.png files (untouched ones are left out); fine-tunes --segmenter")
    st.add_argument("--segmenter", default="default",
                    help="--corrections: the segmenter to start from ('default' or a .safetensors file)")
    st.add_argument("--steps", type=int, default=None,
                    help="--corrections: optimiser steps (default: the recipe's, chosen on development fields)")
    st.add_argument("--out", required=True, help="output .safetensors (a .json card is written beside; an existing"
                                                 " file is never replaced with --corrections)")
    st.add_argument("--model", default="default", help="the classifier whose explanations make the pseudo-masks;"
                                                      " its card's train / val split is used")
    st.add_argument("--teacher", default="gradcam++", help="method spec of the teacher pipeline")
    st.add_argument("--epochs", type=int, default=None, help="pseudo-label route: epochs (default 40)")
    st.add_argument("--seed", type=int, default=0)
    st.add_argument("--ignore-band", type=int, default=0,
                    help="leave pixels within N px (at 128 px) of a pseudo-label boundary out of the loss")
    st.add_argument("--quiet", action="store_true")
    st.set_defaults(func=cmd_self_train)


def _add_train_finder_parser(sub) -> None:
    """``cervseg train-finder``: its options."""
    tf = sub.add_parser("train-finder", help="train the learned cell finder for fields of view on fields composed"
                                             " from pseudo-labelled training cells (no ground-truth mask is read)")
    tf.add_argument("--data", default=None, help="Herlev-layout folder of single cells (training from scratch)")
    tf.add_argument("--corrections", default=None, metavar="DIR",
                    help="learn from your corrections instead: a `cervseg segment --field` folder in which you"
                         " corrected some _cells.png / _nuclei.png files; fine-tunes --finder")
    tf.add_argument("--finder", default="default", help="--corrections: the finder to start from ('default' or"
                                                       " a .safetensors file)")
    tf.add_argument("--out", required=True, help="output .safetensors (a .json card is written beside)")
    tf.add_argument("--split-from", default="default",
                    help="the classifier whose card's training split gives the cells (default: the bundled one)")
    tf.add_argument("--segmenter", default="default", help="the self-trained segmenter that pseudo-labels the cells")
    tf.add_argument("--fields", type=int, default=1200, help="training fields to compose (default 1200)")
    tf.add_argument("--minutes", type=float, default=40.0, help="training time budget (default 40)")
    tf.add_argument("--steps", type=int, default=None, help="stop after this many steps (if sooner)")
    tf.add_argument("--limit", type=int, default=None, help="use only the first N training cells (quick tries)")
    tf.add_argument("--widths", default=None, help="the U-Net's channels per level, comma-separated (default"
                                                   " 12,24,48,96,128; one more level sees larger cells whole)")
    tf.add_argument("--keep-cells-running-out", action="store_true",
                    help="also compose with cells whose pseudo-mask runs out of their crop (carved to a"
                         " rounded outline): large abnormal cells and bare nuclei that fill their crop")
    tf.add_argument("--precision", choices=("float32", "bfloat16", "auto"), default="float32",
                    help="arithmetic of the training steps (default float32, the bundled finder's; bfloat16 or"
                         " auto, bfloat16 where the CPU has it natively: about 1.6x more steps in a time budget,"
                         " the weights stay float32)")
    tf.add_argument("--seed", type=int, default=0)
    tf.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    tf.add_argument("--quiet", action="store_true")
    tf.set_defaults(func=cmd_train_finder)


def _add_verdict_stats_parser(sub) -> None:
    """``cervseg verdict-stats``: its options."""
    vs = sub.add_parser("verdict-stats", help="store the statistics of a model's training cells (its card's split)"
                                              " that decide when an input is not a cell it can judge")
    vs.add_argument("model", help="a bundled model name or a .safetensors file (its .json card gains an"
                                  " 'applicability' block; the statistics go to <name>.applicability.safetensors)")
    vs.add_argument("--data", required=True, help="the data the model was trained on (Herlev layout)")
    vs.add_argument("--quiet", action="store_true")
    vs.set_defaults(func=cmd_verdict_stats)


def _add_ensemble_parser(sub) -> None:
    """``cervseg ensemble``: its options."""
    en = sub.add_parser("ensemble", help="combine trained compact classifiers (same split) into one model that"
                                         " averages their probabilities; measured on their validation and test splits")
    en.add_argument("members", nargs="+", help="2 or more .safetensors classifiers (or bundled names) trained with"
                                               " the same --split-seed")
    en.add_argument("--data", required=True, help="the data the members were trained on (Herlev layout)")
    en.add_argument("--out", required=True, help="output .safetensors (card .json and verdict statistics beside)")
    en.add_argument("--screening-recall", type=float, default=0.98,
                    help="abnormal recall the screening operating point must reach on validation (default 0.98)")
    en.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    en.add_argument("--quiet", action="store_true")
    en.set_defaults(func=cmd_ensemble)


def _add_slide_parser(sub) -> None:
    """``cervseg slide``: its options."""
    from .segment.settings import DEFAULT_SEGMENT_METHOD, SEGMENT_METHODS
    from .workflows.fields import WHITE_BALANCE_MODES

    sl = sub.add_parser("slide", help="find, segment and classify every cell of a whole slide (pyramidal TIFF /"
                        " OME-TIFF), tile by tile in parallel, resumable; writes a table, GeoJSON and a report")
    sl.add_argument("slide", help="a pyramidal or tiled TIFF / OME-TIFF (.svs, .ndpi too; MRXS with OpenSlide)")
    sl.add_argument("--out", required=True, help="output folder (run again with the same folder to resume)")
    sl.add_argument("--tile", type=int, default=2304,
                    help="tile side in level-0 px (default 2304: with the margin, 3072 px squares, one finder pass)")
    sl.add_argument("--margin", type=int, default=384,
                    help="context read around each tile, px; wider than the largest cell (default 384)")
    sl.add_argument("--workers", default="2",
                    help="tiles in parallel: a number (default 2: a 10,000^2 slide in about 3.5 GB; 1 = this"
                         " process only) or 'auto': one per CPU core, as many as the free memory holds"
                         " (about 1.5 GB each)")
    sl.add_argument("--scheduler", default=None, metavar="processes|threads|ADDRESS",
                    help="Dask local processes (default) or threads, or a dask.distributed scheduler address"
                         " (tcp://host:8786) whose workers see the slide and --out at the same paths")
    sl.add_argument("--model", default="default",
                    help="classifier: bundled name or a .safetensors path ('default': the field route's, ensemble3)")
    sl.add_argument("--method", default=DEFAULT_SEGMENT_METHOD, choices=SEGMENT_METHODS)
    sl.add_argument("--finder", default=None, metavar="learned|classic|FILE",
                    help="what finds the cells (default: the package's, learned)")
    sl.add_argument("--operating-point", default="screening", metavar="argmax|screening|P",
                    help="how a cell is called abnormal (default: screening, the model card's high-recall threshold)")
    sl.add_argument("--pixel-size", type=float, default=None, help="µm per pixel (default: the slide's metadata)")
    sl.add_argument("--gallery", type=int, default=24, help="most suspicious cells shown in the report (default 24)")
    sl.add_argument("--per-cell", default="segment", choices=("segment", "classify"),
                    help="segment (default): segment every cell as `segment --field` does; classify: the finder's"
                         " outline and nucleus and the classifier's verdict on each cell's crop (about twice as fast,"
                         " without the two-nuclei flags)")
    sl.add_argument("--white-balance", default=None, choices=WHITE_BALANCE_MODES, help=_white_balance_help())
    sl.add_argument("--all-tiles", action="store_true", help="also segment tiles that look empty at low resolution")
    sl.add_argument("--quiet", action="store_true")
    sl.set_defaults(func=cmd_slide)


def _add_models_parser(sub) -> None:
    """``cervseg models``: its options."""
    mo = sub.add_parser("models", help="list architectures and bundled models")
    mo.set_defaults(func=cmd_models)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cervseg", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"napari-cervseg {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_segment_parser(sub)
    _add_train_parser(sub)
    _add_evaluate_parser(sub)
    _add_self_train_parser(sub)
    _add_train_finder_parser(sub)
    _add_verdict_stats_parser(sub)
    _add_ensemble_parser(sub)
    _add_slide_parser(sub)
    _add_models_parser(sub)
    return parser


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv  # the command line as given, recorded in the cards it writes
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
