"""Training a classifier on image-level labels only (normal / abnormal).

Masks are never read here: weak supervision is the point. The preprocessing is the same
:func:`~napari_cervseg.classify.preprocess.enhance` / :func:`normalise` used at inference.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from ..classify import (
    ARCHITECTURES,
    CLASS_NAMES,
    CellClassifier,
    build_architecture,
    pick_device,
    save_model,
)
from ..classify.preprocess import PreprocessConfig, enhance, normalise, resize
from ..io.datasets import Sample, read_dataset, stratified_split
from ..measure.scores import classification_metrics
from ..stages import report_count


@dataclass
class TrainConfig:
    arch: str = "compact"
    arch_kwargs: dict = field(default_factory=dict)
    epochs: int = 40
    batch_size: int = 32
    lr: float = 3e-3
    weight_decay: float = 5e-4
    normal_repeat: int = 3  # the paper's x24 / x8 class balancing, as a ratio
    patience: int = 15
    seed: int = 0
    #: the seed of the train / val / test split; None: ``seed`` (so that the members of an ensemble,
    #: which differ in ``seed``, can share one split and none is scored on another's training cells)
    split_seed: int | None = None
    split_fractions: tuple = (0.7, 0.1, 0.2)
    tta: bool = True
    input_size: int | None = None  # None: the architecture's own
    equalise: str = "luminance"
    label_smoothing: float = 0.05
    #: "online": a fresh random geometric + photometric augmentation per batch, normals repeated
    #: ``normal_repeat`` times; "paper": the paper's 8 sets, abnormal x8 / normal x24, fixed per run
    augmentation: str = "online"
    #: "adamw-onecycle" (ours), "sgd-step" (the paper's VGG recipe: SGD, momentum 0.9, lr x0.1
    #: every ``step_epochs``), "adam" (the paper's Xception recipe: constant lr)
    optimizer: str = "adamw-onecycle"
    step_epochs: int = 7
    #: stop after this many seconds of training (the best epoch so far is kept, as with early
    #: stopping); None: no limit
    max_seconds: float | None = None
    #: the "screening" operating point: the threshold on p(abnormal) that keeps at least this
    #: abnormal recall on the validation split (recorded in the card with its test figures)
    screening_recall: float = 0.98
    #: which epoch's weights are saved: "best" on validation balanced accuracy (early stopping), or
    #: "last" (the end of the schedule: the validation split is then left free to compare models on)
    keep: str = "best"
    #: start from this model's weights (a bundled name or a .safetensors path) and train on its
    #: split: fine-tuning, e.g. on field crops; None: from scratch
    init: str | None = None
    #: add crops of cells cut from this many fields composed of the training split's cells (and a
    #: seventh as many from the validation split's, for choosing the epoch): the view of a cell on a
    #: field of view (issue 22, item 3); 0: the single-cell images alone
    field_crop_fields: int = 0


#: the paper's recipe per architecture (Sec. III-C, Table 6), applied by ``cervseg train --recipe paper``
PAPER_RECIPES = {
    "vgg16-adapted128": {"optimizer": "sgd-step", "lr": 1e-3, "epochs": 50, "step_epochs": 7, "patience": 10,
                         "augmentation": "paper", "label_smoothing": 0.0},
    "vgg16-adapted128-simplified": {"optimizer": "sgd-step", "lr": 1e-3, "epochs": 50, "step_epochs": 7,
                                    "patience": 10, "augmentation": "paper", "label_smoothing": 0.0},
    "xception-256": {"optimizer": "adam", "lr": 1e-3, "batch_size": 16, "epochs": 20, "augmentation": "paper",
                     "label_smoothing": 0.0},
    "xception-1024": {"optimizer": "adam", "lr": 1e-3, "batch_size": 16, "epochs": 20, "augmentation": "paper",
                      "label_smoothing": 0.0},
    "compact": {"optimizer": "sgd-step", "lr": 1e-2, "epochs": 50, "step_epochs": 7, "patience": 10,
                "augmentation": "paper", "label_smoothing": 0.0},
}


def paper_recipe(config: TrainConfig) -> TrainConfig:
    """``config`` with the paper's optimiser, schedule, epochs and augmentation for its architecture
    (the compact net, not in the paper, gets the VGG recipe with a 10x larger learning rate)."""
    from dataclasses import replace

    return replace(config, **PAPER_RECIPES.get(config.arch, PAPER_RECIPES["compact"]))


def random_augment(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Geometric + photometric augmentation of a square RGB uint8 image (label-preserving)."""
    size = img.shape[0]
    if rng.random() < 0.5:
        img = img[:, ::-1]
    img = np.rot90(img, int(rng.integers(4)))
    angle = rng.uniform(-30, 30)
    scale = rng.uniform(0.85, 1.15)
    tx, ty = rng.uniform(-0.08, 0.08, 2) * size
    mat = cv2.getRotationMatrix2D((size / 2, size / 2), angle, scale)
    mat[:, 2] += (tx, ty)
    img = cv2.warpAffine(np.ascontiguousarray(img), mat, (size, size), borderMode=cv2.BORDER_REFLECT101)
    x = img.astype(np.float32) / 255.0
    if rng.random() < 0.8:  # gamma
        x = x ** rng.uniform(0.7, 1.4)
    if rng.random() < 0.8:  # per-channel colour gain and brightness
        x = x * rng.uniform(0.85, 1.15, 3)[None, None] + rng.uniform(-0.08, 0.08)
    if rng.random() < 0.3:
        x = x + rng.normal(0, rng.uniform(0.005, 0.03), x.shape).astype(np.float32)
    img = np.clip(x * 255.0, 0, 255).astype(np.uint8)
    if rng.random() < 0.2:
        img = cv2.GaussianBlur(img, (3, 3), 0)
    return img


def load_resized(samples: list[Sample], size: int) -> np.ndarray:
    return np.stack([resize(s.load_image(), size) for s in samples])


def _normalise_on(images: np.ndarray, config: PreprocessConfig, device) -> torch.Tensor:
    """Enhanced uint8 NHWC images -> the standardised float NCHW batch, computed on ``device``
    (the same arithmetic as :func:`normalise`; uint8 travels to a GPU at a quarter of the bytes)."""
    x = torch.from_numpy(np.ascontiguousarray(images)).to(device).permute(0, 3, 1, 2).float() / 255.0
    mean = torch.tensor(config.mean, dtype=torch.float32, device=x.device)[None, :, None, None]
    std = torch.tensor(config.std, dtype=torch.float32, device=x.device)[None, :, None, None]
    return ((x - mean) / std).contiguous()


def _to_batch(images: np.ndarray, config: PreprocessConfig) -> torch.Tensor:
    return torch.from_numpy(np.stack([normalise(enhance(im, config), config) for im in images]))


@torch.no_grad()
def predict_proba(net: nn.Module, images: np.ndarray, config: PreprocessConfig, device, tta: bool = True,
                  batch_size: int = 64) -> np.ndarray:
    """Class probabilities for resized RGB uint8 images; ``tta`` averages the 8 flips/rotations."""
    net.eval()
    out = []
    for start in range(0, len(images), batch_size):
        x = _to_batch(images[start:start + batch_size], config).to(device)
        if tta:
            logits = 0
            for k in range(4):
                for flip in (False, True):
                    v = torch.rot90(x, k, (2, 3))
                    logits = logits + torch.softmax(net(v.flip(3) if flip else v), 1)
            out.append((logits / 8).cpu().numpy())
        else:
            out.append(torch.softmax(net(x), 1).cpu().numpy())
    return np.concatenate(out)


def _training_data(data_root, config: TrainConfig, pconf: PreprocessConfig, log, split: dict | None = None):
    """Samples, the stratified split (or ``split``, e.g. the fine-tuned model's), the resized
    images of each part (with field crops added to train and val when asked), and the training
    set's images, labels and epoch index (class-balanced by the augmentation recipe)."""
    samples = read_dataset(data_root)
    by_name = {s.name: s for s in samples}
    if split is None:
        split_seed = config.seed if config.split_seed is None else config.split_seed
        split = stratified_split(samples, config.split_fractions, split_seed)
    else:
        missing = [n for part in ("train", "val", "test") for n in split.get(part, []) if n not in by_name]
        if missing:
            raise ValueError(f"{len(missing)} images of the initial model's split are not in {data_root}"
                             f" (e.g. {missing[0]}): fine-tune on the data it was trained on")
    parts = {}
    for part in ("train", "val", "test"):
        ss = [by_name[n] for n in split[part]]
        parts[part] = (load_resized(ss, pconf.input_size),
                       np.array([CLASS_NAMES.index(s.label) for s in ss]), ss)
    if config.field_crop_fields:
        parts = _with_field_crops(parts, config, pconf, log)
    x_train, y_train, _ = parts["train"]
    if config.augmentation == "paper":
        from ..classify.augment import paper_augment

        x_train, y_train, _ = paper_augment(x_train, y_train, seed=config.seed)
        index = np.arange(len(x_train))
        if log:
            log(f"paper augmentation: {len(index)} training images (abnormal x8, normal x24)")
        # a fixed augmented set: enhance every image once, not once per epoch
        x_train = np.stack([enhance(im, pconf) for im in x_train])
    elif config.augmentation == "online":
        index = np.concatenate([np.where(y_train == 1)[0]] + [np.where(y_train == 0)[0]] * config.normal_repeat)
    else:
        raise ValueError(f"augmentation must be 'online' or 'paper', got {config.augmentation!r}")
    return samples, split, parts, x_train, y_train, index


def _with_field_crops(parts: dict, config: TrainConfig, pconf: PreprocessConfig, log) -> dict:
    """The train and val parts with crops cut from fields composed of their own cells added."""
    from .field_crops import field_crops
    from .finder_training import training_cells

    out = dict(parts)
    for part, n_fields, seed in (("train", config.field_crop_fields, config.seed),
                                 ("val", max(10, config.field_crop_fields // 7), config.seed + 1)):
        images, labels, ss = parts[part]
        if not ss:
            continue
        cells = training_cells([s.load_image() for s in ss])  # pseudo-labels: no mask is read
        crops, classes = field_crops(cells, labels, n_fields, pconf.input_size, seed=seed)
        if log:
            log(f"{part}: {len(crops)} field crops ({int((classes == 1).sum())} abnormal) from {n_fields} fields"
                f" composed of {len(cells)} pseudo-labelled cells")
        out[part] = (np.concatenate([images, crops]), np.concatenate([labels, classes]), ss)
    return out


def _train_epoch(net, opt, sched, per_batch, loss_fn, x_train, y_train, index, rng, config, pconf, device) -> float:
    """One epoch over ``index`` in a random order; returns the mean loss."""
    online = config.augmentation == "online"
    net.train()
    order = rng.permutation(index)
    total = 0.0
    for start in range(0, len(order), config.batch_size):
        idx = order[start:start + config.batch_size]
        if online:
            batch = np.stack([enhance(random_augment(x_train[i], rng), pconf) for i in idx])
        else:
            batch = x_train[idx]
        x = _normalise_on(batch, pconf, device)
        y = torch.from_numpy(y_train[idx]).to(device)
        opt.zero_grad()
        loss = loss_fn(net(x), y)
        loss.backward()
        opt.step()
        if per_batch:
            sched.step()
        total += loss.item() * len(idx)
    if not per_batch:
        sched.step()
    return total / len(order)


def _stop_reason(config: TrainConfig, history: list, since_best: int) -> str | None:
    if since_best >= config.patience:
        return "early stopping"
    if config.max_seconds is not None and history and history[-1]["seconds"] >= config.max_seconds:
        return "time limit"
    return None


def train(data_root, out_path, config: TrainConfig | None = None, device=None, progress=None,
          log=print, resume: bool = False, command: str | None = None) -> CellClassifier:
    """Train ``config.arch`` on a data folder's image-level labels and save weights + card.

    Stratified train/val/test split (saved in the card); the best epoch on validation balanced
    accuracy is kept; test metrics and the screening operating point go into the card. After every
    epoch the state is saved to ``<out>.checkpoint.pt``; ``resume=True`` continues an interrupted
    run with the same settings from there (the same epochs, batches and figures as an
    uninterrupted run).

    Parameters
    ----------
    data_root : str or Path
        A Herlev-layout folder (``manifest.csv``, ``images/``); masks are never read.
    out_path : str or Path
        Where the ``.safetensors`` weights and ``.json`` card go.
    config : TrainConfig, optional
    device : str, optional
    progress : callable, optional
        ``progress(stage, fraction)`` after every epoch (``"epoch 3 of 40: loss 0.31, val accuracy
        0.91, val abnormal recall 0.95"``, the fraction of epochs run): the package's one protocol.
    log : callable or None
    resume : bool
    command : str, optional
        The command line that started the run, kept in the card (how to make the model again).

    Returns
    -------
    CellClassifier
        The best epoch's model, saved.
    """
    config = config or TrainConfig()
    if config.keep not in ("best", "last"):
        raise ValueError(f"keep must be 'best' or 'last', got {config.keep!r}")
    device = pick_device(device)
    if torch.device(device).type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input size: let cuDNN pick its fastest kernels
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    info = ARCHITECTURES[config.arch]
    pconf = PreprocessConfig(input_size=config.input_size or info["input_size"], equalise=config.equalise)
    init = _initial_model(config, pconf)
    samples, split, parts, x_train, y_train, index = _training_data(
        data_root, config, pconf, log, split=None if init is None else init.card["training"]["split"])

    net = build_architecture(config.arch, **config.arch_kwargs).to(device)
    if init is not None:
        net.load_state_dict(init.net.state_dict())
    steps_per_epoch = math.ceil(len(index) / config.batch_size)
    opt, sched, per_batch = _optimiser(net, config, steps_per_epoch)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    history, best, best_state, since_best = [], -1.0, None, 0
    Path(out_path).parent.mkdir(parents=True, exist_ok=True)  # the checkpoint is written after epoch 1
    checkpoint = Path(out_path).with_suffix(".checkpoint.pt")
    start_epoch = 0
    if resume and checkpoint.exists():
        state = _load_checkpoint(checkpoint, config)
        net.load_state_dict(state["net"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        rng.bit_generator.state = json.loads(state["numpy_rng"])
        torch.set_rng_state(state["torch_rng"])
        history, best, since_best = json.loads(state["history"]), float(state["best"]), int(state["since_best"])
        best_state, start_epoch = state["best_state"], int(state["epoch"])
        if log:
            log(f"resumed from {checkpoint.name} after epoch {start_epoch}")
    t0 = time.perf_counter() - (history[-1]["seconds"] if history else 0.0)
    stopped_by = "epochs"
    for epoch in range(start_epoch, config.epochs):
        reason = _stop_reason(config, history, since_best)
        if reason:
            stopped_by = reason
            break
        loss = _train_epoch(net, opt, sched, per_batch, loss_fn, x_train, y_train, index, rng, config, pconf,
                            device)
        x_val, y_val, _ = parts["val"]
        m = classification_metrics(y_val, predict_proba(net, x_val, pconf, device, tta=False).argmax(1))
        score = m["balanced_accuracy"]
        row = {"epoch": epoch + 1, "loss": loss, "val_accuracy": m["accuracy"],
               "val_balanced_accuracy": score, "val_abnormal_recall": m["abnormal_recall"],
               "seconds": time.perf_counter() - t0}
        history.append(row)
        if score >= best:
            best, since_best = score, 0
            best_state = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
        else:
            since_best += 1
        _save_checkpoint(checkpoint, config, epoch + 1, net, opt, sched, rng, history, best, since_best, best_state)
        if log:
            log(f"epoch {epoch + 1}/{config.epochs} loss {row['loss']:.4f} val acc {m['accuracy']:.3f}"
                f" bal {score:.3f} abn-recall {m['abnormal_recall']:.3f} ({row['seconds']:.0f}s)")
        report_count(progress, epoch + 1, config.epochs, "epochs",
                     f"loss {row['loss']:.3f}, val accuracy {m['accuracy']:.3f},"
                     f" val abnormal recall {m['abnormal_recall']:.3f}")
    train_seconds = time.perf_counter() - t0
    if config.keep == "best":
        net.load_state_dict(best_state)
    net.eval()
    x_test, y_test, _ = parts["test"]
    proba = predict_proba(net, x_test, pconf, device, tta=config.tta)
    test_metrics = classification_metrics(y_test, proba.argmax(1))
    # single pass, as classify() and the pipeline call the model at inference
    operating_points = screening_operating_point(net, pconf, device, parts["val"][:2], (x_test, y_test),
                                                 config.screening_recall, tta=False)
    card = {
        "name": Path(out_path).stem,
        "architecture": config.arch,
        "arch_kwargs": config.arch_kwargs,
        "input_size": pconf.input_size,
        "preprocess": pconf.to_dict(),
        "class_names": list(CLASS_NAMES),
        "cam_layer": info["cam_layer"],
        "pretrained": ("none: trained from scratch (no ImageNet weights can be downloaded here)" if init is None
                       else f"fine-tuned from {config.init} ({Path(init.source).name})"),
        "training": {
            "data": str(data_root), "n_images": len(samples), "config": asdict(config), "split": split,
            "device": str(device), "seconds": round(train_seconds, 1), "epochs_run": len(history),
            "stopped_by": stopped_by, "best_val_balanced_accuracy": best, "kept_epoch":
                config.keep if config.keep == "last" else "best on validation", "history": history,
            "labels_used": "image-level normal/abnormal only; no masks", "command": command,
        },
        "test_metrics": {**test_metrics, "tta": config.tta, "n": int(len(y_test))},
        "operating_points": operating_points,
    }
    model = CellClassifier(net=net.cpu(), card=card, preprocess=pconf, cam_layer=info["cam_layer"],
                           lrp_applicable=info["lrp"])
    weights = save_model(model, out_path, card)
    if len(parts["val"][0]):
        # the statistics that tell a cell the model can judge from anything else (one forward pass
        # over the training and validation cells; thresholds on the validation cells)
        from ..classify.applicability import CARD_KEY, fit_statistics, store_statistics

        block, tensors = fit_statistics(model, list(parts["train"][0]), parts["train"][1], list(parts["val"][0]))
        store_statistics(weights, block, tensors, {"command": "cervseg train (at the end of training)"})
        model.card[CARD_KEY] = {**block, "sidecar": weights.stem + ".applicability.safetensors"}
        model.source = str(weights)
    checkpoint.unlink(missing_ok=True)  # the run is complete: nothing left to resume
    return model


def _initial_model(config: TrainConfig, pconf: PreprocessConfig):
    """The model to fine-tune (None: train from scratch); it must match the run's architecture and
    preprocessing, and carry the split it was trained on (so that no test cell is trained on)."""
    if config.init is None:
        return None
    from ..classify import load_model

    model = load_model(config.init)
    card = model.card
    theirs = {"architecture": card.get("architecture"), "arch_kwargs": card.get("arch_kwargs") or {},
              "preprocess": card.get("preprocess")}
    ours = {"architecture": config.arch, "arch_kwargs": config.arch_kwargs or {}, "preprocess": pconf.to_dict()}
    differ = [k for k in ours if json.dumps(ours[k], sort_keys=True) != json.dumps(theirs[k], sort_keys=True)]
    if differ:
        raise ValueError(f"the initial model {config.init!r} differs in {', '.join(differ)}: it has"
                         f" {', '.join(f'{k}={theirs[k]}' for k in differ)}; train with the same (`cervseg train"
                         " --init` takes them from its card unless given)")
    if not card.get("training", {}).get("split"):
        raise ValueError(f"the initial model {config.init!r} has no training split in its card: fine-tune a model"
                         " trained by `cervseg train`")
    return model


def screening_threshold(p_abnormal: np.ndarray, y: np.ndarray, target_recall: float = 0.98) -> float:
    """The largest threshold on p(abnormal) at which at least ``target_recall`` of the abnormal
    cells (``y == 1``) are called abnormal (``p >= threshold``)."""
    positives = np.sort(np.asarray(p_abnormal)[np.asarray(y) == 1])
    if len(positives) == 0:
        raise ValueError("no abnormal cell to choose an operating point on")
    allowed_misses = int(np.floor((1.0 - target_recall) * len(positives) + 1e-9))
    return float(positives[allowed_misses])


def screening_operating_point(net, pconf, device, val, test, target_recall=0.98, tta=False,
                              test_proba=None) -> dict:
    """The card's ``operating_points``: the screening threshold chosen on ``val`` = (images,
    labels) and the test figures at it (the test split plays no part in choosing it)."""
    x_val, y_val = val
    x_test, y_test = test
    val_proba = predict_proba(net, x_val, pconf, device, tta=tta)
    if test_proba is None:
        test_proba = predict_proba(net, x_test, pconf, device, tta=tta)
    return screening_point(val_proba[:, 1], y_val, test_proba[:, 1], y_test, target_recall, tta)


def screening_point(val_p_abnormal, y_val, test_p_abnormal, y_test, target_recall=0.98, tta=False) -> dict:
    """The card's ``operating_points`` from p(abnormal) on the validation and test splits: the
    threshold is chosen on validation only, the test figures are taken at it."""
    y_val, y_test = np.asarray(y_val), np.asarray(y_test)
    threshold = screening_threshold(val_p_abnormal, y_val, target_recall)
    val_called = np.asarray(val_p_abnormal) >= threshold
    return {"screening": {
        "abnormal_threshold": threshold,
        "target_abnormal_recall": target_recall,
        "chosen_on": "validation split (the largest threshold on p(abnormal) reaching the target recall there)",
        "probabilities": "single pass, as at inference" if not tta else "8-fold flip/rotation averaging",
        "val_abnormal_recall": float(val_called[y_val == 1].mean()),
        "test_metrics": {**classification_metrics(y_test, (np.asarray(test_p_abnormal) >= threshold).astype(int)),
                         "tta": tta, "n": int(len(y_test))},
    }}


def _optimiser(net: nn.Module, config: TrainConfig, steps_per_epoch: int):
    """``(optimizer, scheduler, scheduler steps per batch?)`` for ``config.optimizer``."""
    if config.optimizer == "adamw-onecycle":
        opt = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        return opt, torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, epochs=config.epochs,
                                                        steps_per_epoch=steps_per_epoch), True
    if config.optimizer == "sgd-step":
        opt = torch.optim.SGD(net.parameters(), lr=config.lr, momentum=0.9, weight_decay=config.weight_decay)
        return opt, torch.optim.lr_scheduler.StepLR(opt, step_size=config.step_epochs, gamma=0.1), False
    if config.optimizer == "adam":
        opt = torch.optim.Adam(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        return opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda _epoch: 1.0), False
    raise ValueError(f"optimizer must be 'adamw-onecycle', 'sgd-step' or 'adam', got {config.optimizer!r}")


def _config_key(config: TrainConfig) -> str:
    return json.dumps(asdict(config), sort_keys=True, default=str)


def _save_checkpoint(path: Path, config, epoch, net, opt, sched, rng, history, best, since_best, best_state):
    """Everything needed to continue after ``epoch``, written atomically; only tensors, numbers and
    strings, so it loads with ``torch.load(weights_only=True)``."""
    state = {"config": _config_key(config), "epoch": epoch, "net": net.state_dict(), "opt": opt.state_dict(),
             "sched": sched.state_dict(), "numpy_rng": json.dumps(rng.bit_generator.state),
             "torch_rng": torch.get_rng_state(), "history": json.dumps(history), "best": float(best),
             "since_best": int(since_best), "best_state": best_state}
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def _load_checkpoint(path: Path, config: TrainConfig) -> dict:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a damaged or foreign file
        raise ValueError(f"{path}: not a readable training checkpoint ({type(exc).__name__}: {exc});"
                         " delete it to start afresh") from exc
    if state.get("config") != _config_key(config):
        raise ValueError(f"{path} was written by a run with other settings; resume with the same"
                         " settings, or delete it to start afresh")
    return state
