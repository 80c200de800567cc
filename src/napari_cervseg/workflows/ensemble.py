"""An ensemble of trained compact classifiers as one model (``cervseg ensemble``).

The members' probabilities are averaged (:class:`~napari_cervseg.classify.networks.CompactEnsemble`);
the ensemble's CAM heatmap is the CAM of its own score over all members' feature maps; its LRP
relevance is the mean of the members' relevance for the ensemble's class. Members must
share the preprocessing, the classes and the train / validation / test split: a member trained
on another split has seen some of the others' test cells, and every figure of the ensemble would
be optimistic (``cervseg train --split-seed`` keeps one split across seeds).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ..classify import CLASS_NAMES, CellClassifier, ModelError, load_model, save_model
from ..classify.networks import CompactCNN, CompactEnsemble
from ..io.datasets import read_dataset
from ..measure.scores import classification_metrics, roc_auc


def combine(members: list[CellClassifier]) -> CellClassifier:
    """One classifier whose class probabilities are the mean of ``members``'.

    Parameters
    ----------
    members : list of CellClassifier
        At least 2 trained ``compact`` networks with the same preprocessing, classes and number of
        blocks.

    Returns
    -------
    CellClassifier
        Architecture ``compact-ensemble``; its card lists the members (name, file, training
        summary) and the split they share; CAM layer ``features`` (all members' channels).
    """
    if len(members) < 2:
        raise ModelError(f"an ensemble needs at least 2 members, got {len(members)}")
    first = members[0]
    for m in members:
        if m.card.get("architecture") != "compact" or not isinstance(m.net, CompactCNN):
            raise ModelError(f"{m.source}: ensemble members must be compact networks"
                             f" (architecture {m.card.get('architecture')!r}); train them with cervseg train --arch compact")
        if m.preprocess.to_dict() != first.preprocess.to_dict():
            raise ModelError(f"{m.source}: its preprocessing {m.preprocess.to_dict()} differs from"
                             f" {first.source}'s {first.preprocess.to_dict()}; members must see the same input")
        if tuple(m.class_names) != tuple(first.class_names):
            raise ModelError(f"{m.source}: classes {list(m.class_names)} differ from {list(first.class_names)}")
    splits = [m.card.get("training", {}).get("split") for m in members]
    for m, split in zip(members, splits, strict=True):
        if split != splits[0]:
            raise ModelError(
                f"{m.source} was trained on another train/val/test split than {first.source}: it has seen some of"
                " the other members' test cells and the ensemble's figures would be optimistic; train every"
                " member with the same --split-seed (cervseg train --seed N --split-seed 0)")
    kwargs = [{k: v for k, v in m.card.get("arch_kwargs", {}).items() if k != "n_classes"} for m in members]
    net = CompactEnsemble.from_members([m.net.cpu() for m in members], kwargs)
    card = {
        "name": "ensemble",
        "architecture": "compact-ensemble",
        "arch_kwargs": {"members": kwargs, "n_classes": len(first.class_names)},
        "input_size": first.preprocess.input_size,
        "preprocess": first.preprocess.to_dict(),
        "class_names": list(first.class_names),
        "cam_layer": "features",
        "pretrained": "none: every member trained from scratch (no ImageNet weights can be downloaded here)",
        "members": [_member_summary(m) for m in members],
        "training": {"data": members[0].card.get("training", {}).get("data"), "split": splits[0],
                     "labels_used": "image-level normal/abnormal only; no masks",
                     "how": "mean of the members' class probabilities (no further training)"},
    }
    return CellClassifier(net=net, card=card, preprocess=first.preprocess, class_names=first.class_names,
                          cam_layer="features", lrp_applicable=True)


def members_of(ensemble: CellClassifier) -> list[CellClassifier]:
    """The compact networks inside an ensemble, each as a classifier of its own (weights copied;
    card: the ensemble's summary of that member, its split, preprocessing and classes): how the
    bundled ``ensemble3`` gives back the networks it averages."""
    if not isinstance(ensemble.net, CompactEnsemble):
        raise ModelError(f"{ensemble.source}: not an ensemble (architecture {ensemble.card.get('architecture')!r})")
    kwargs = ensemble.card["arch_kwargs"]["members"]
    summaries = ensemble.card.get("members", [{} for _ in kwargs])
    split = ensemble.card.get("training", {}).get("split")
    out = []
    for i, (kw, summary) in enumerate(zip(kwargs, summaries, strict=True)):
        net = CompactCNN(**{"n_classes": len(ensemble.class_names), **kw})
        net.features.load_state_dict(ensemble.net.features.parts[i].state_dict())
        net.classifier.load_state_dict(ensemble.net.heads[i].classifier.state_dict())
        card = {"name": summary.get("name") or f"member{i}", "architecture": "compact", "arch_kwargs": kw,
                "preprocess": ensemble.preprocess.to_dict(), "class_names": list(ensemble.class_names),
                "cam_layer": "features.block4",
                "training": {"split": split, "config": {"seed": summary.get("seed")},
                             **{k: summary.get(k) for k in ("epochs_run", "kept_epoch", "device", "seconds", "command")}}}
        out.append(CellClassifier(net=net.eval(), card=card, preprocess=ensemble.preprocess,
                                  class_names=ensemble.class_names, cam_layer="features.block4", lrp_applicable=True,
                                  source=f"{ensemble.source}#member{i}:{summary.get('source', '')}"))
    return out


def _member_summary(m: CellClassifier) -> dict:
    t = m.card.get("training", {})
    return {"name": m.card.get("name"), "source": Path(m.source).name, "arch_kwargs": m.card.get("arch_kwargs", {}),
            "seed": t.get("config", {}).get("seed"), "epochs_run": t.get("epochs_run"),
            "kept_epoch": t.get("kept_epoch", "best on validation"), "device": t.get("device"),
            "seconds": t.get("seconds"), "command": t.get("command")}


def _p_abnormal(model: CellClassifier, images) -> np.ndarray:
    from ..classify.predict import classify

    return np.array([classify(model, im).probabilities["abnormal"] for im in images])


def split_figures(model: CellClassifier, images, y) -> dict:
    """Single-pass figures on one split: accuracy and recalls (most probable class), ROC AUC, log loss."""
    p = _p_abnormal(model, images)
    m = classification_metrics(np.asarray(y), (p >= 0.5).astype(int))
    eps = 1e-6
    y = np.asarray(y)
    log_loss = float(-np.mean(y * np.log(p + eps) + (1 - y) * np.log(1 - p + eps)))
    return {**m, "auc": roc_auc(y, p), "log_loss": log_loss, "n": int(len(y)), "p_abnormal": p}


def build_ensemble(member_paths, out_path, data_root, screening_recall: float = 0.98, log=print,
                   command: str | None = None) -> CellClassifier:
    """Combine members, measure the ensemble on their shared split and save it with its card.

    The card gets the validation and test figures (single pass), the screening operating point
    (chosen on validation) and, beside the weights, the statistics that decide which inputs get a
    verdict (fitted on the training split, thresholds on validation). Nothing is trained.
    """
    from ..classify.applicability import CARD_KEY, fit_statistics, store_statistics
    from ..workflows.train import screening_point

    members = [load_model(p, device="cpu") for p in member_paths]
    model = combine(members)
    samples = {s.name: s for s in read_dataset(data_root)}
    split = model.card["training"]["split"]
    missing = [n for part in ("train", "val", "test") for n in split[part] if n not in samples]
    if missing:
        raise ModelError(f"{data_root}: {len(missing)} cells of the members' split are missing (e.g. {missing[0]});"
                         " pass the data folder the members were trained on")
    images, labels = {}, {}
    for part in ("train", "val", "test"):
        chosen = [samples[n] for n in split[part]]
        images[part] = [s.load_image() for s in chosen]
        labels[part] = np.array([CLASS_NAMES.index(s.label) for s in chosen])
    t0 = time.perf_counter()
    figures = {}
    for part in ("val", "test"):
        figures[part] = split_figures(model, images[part], labels[part])
        if log:
            f = figures[part]
            log(f"{part}: accuracy {f['accuracy']:.3f}, abnormal recall {f['abnormal_recall']:.3f},"
                f" AUC {f['auc']:.3f}, log loss {f['log_loss']:.3f} ({f['n']} cells)")
    model.card["operating_points"] = screening_point(figures["val"]["p_abnormal"], labels["val"],
                                                     figures["test"]["p_abnormal"], labels["test"], screening_recall)
    for part in ("val", "test"):
        figures[part].pop("p_abnormal")
    model.card["val_metrics"] = {**figures["val"], "tta": False}
    model.card["test_metrics"] = {**figures["test"], "tta": False}
    model.card["name"] = Path(out_path).stem
    model.card["training"]["command"] = command
    model.card["training"]["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    weights = save_model(model, out_path, model.card)
    block, tensors = fit_statistics(model, images["train"], labels["train"], images["val"])
    store_statistics(weights, block, tensors, {"command": command or "build_ensemble"})
    model.card[CARD_KEY] = {**block, "sidecar": weights.stem + ".applicability.safetensors"}
    model.source = str(weights)
    if log:
        log(f"wrote {weights} ({weights.stat().st_size / 1e6:.1f} MB, {len(members)} members) in"
            f" {time.perf_counter() - t0:.0f} s")
    return model
