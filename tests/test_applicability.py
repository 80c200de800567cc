"""No verdict on what is not a cell the classifier can judge (issue 16, item 1)."""

import csv
import json
import shutil

import numpy as np
import pytest
from synthetic import synthetic_field

from napari_cervseg import load_model, segment_cell, segment_field
from napari_cervseg.classify import WEIGHTS_DIR, bundled_models
from napari_cervseg.classify.applicability import (
    STATISTICAL_CHECKS,
    Applicability,
    assess,
    has_statistics,
    sidecar_path,
    verdict_text,
)
from napari_cervseg.cli import main
from napari_cervseg.plugin.samples import load_sample
from napari_cervseg.workflows import fields as fields_module


def _noise(size, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def test_tiny_noise_gets_no_verdict_but_keeps_its_raw_probabilities():
    result = segment_cell(_noise(5), model="default")
    assert not result.judgeable and "too_small" in result.not_judgeable
    assert result.predicted_class is None and result.probability is None
    assert set(result.probabilities) == {"normal", "abnormal"}  # the raw answer, for the curious
    warning = [w for w in result.warnings if w.startswith("no verdict")]
    assert len(warning) == 1 and "too small" in warning[0] and "at least 24 px" in warning[0]
    summary = result.summary()
    assert summary["judgeable"] is False and "too_small" in summary["not_judgeable"]


def test_a_blank_image_gets_no_verdict_no_cell_and_no_contrast():
    result = segment_cell(np.full((64, 64, 3), 200, np.uint8), model="default")
    assert result.predicted_class is None and not result.cell_found
    assert {"no_contrast", "no_cell_found"} <= set(result.not_judgeable)


def test_a_blank_slide_with_sensor_noise_has_no_contrast():
    rng = np.random.default_rng(1)
    slide = np.clip(np.full((100, 110, 3), (226, 220, 232)) + rng.normal(0, 3, (100, 110, 3)), 0, 255)
    verdict = assess(None, slide.astype(np.uint8))  # a stat-free check: no model needed
    assert verdict.reasons == ["no_contrast"] and "pixel noise" in verdict.details[0]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_noise_is_unlike_the_training_cells_of_the_bundled_model(seed):
    result = segment_cell(_noise(64, seed), model="default")
    assert result.predicted_class is None
    assert "unlike_training_cells" in result.not_judgeable
    assert result.applicability["checks_run"][-2:] == ["unlike_training_cells", "unusual_colours"]


@pytest.mark.parametrize("name", ["abnormal", "normal", "normal_superficial", "abnormal_severe"])
def test_the_bundled_sample_cells_keep_their_verdict(name):
    result = segment_cell(load_sample(name), model="default")
    assert result.judgeable and result.not_judgeable == []
    assert result.predicted_class in ("normal", "abnormal")
    assert not any(w.startswith("no verdict") for w in result.warnings)


def test_real_herlev_test_cells_keep_their_verdict(herlev_root):
    from napari_cervseg.io.datasets import read_dataset

    model = load_model("default")
    test = set(model.card["training"]["split"]["test"])
    samples = [s for s in read_dataset(herlev_root) if s.name in test]
    for sample in samples[:: len(samples) // 4][:4]:  # four test cells spread over the classes
        verdict = assess(model, sample.load_image())
        assert verdict.judgeable, (sample.name, verdict.details)
        assert verdict.scores["feature_distance"] < verdict.scores["feature_threshold"]


def test_a_model_without_statistics_runs_the_stat_free_checks_only(trained_synthetic_model, one_cell):
    assert not has_statistics(trained_synthetic_model)
    result = segment_cell(one_cell[0], model=trained_synthetic_model)
    assert result.judgeable and result.predicted_class in ("normal", "abnormal")
    checks = result.applicability
    assert checks["checks_run"] == ["too_small", "no_contrast", "no_cell_found"]
    assert set(checks["checks_skipped"]) == set(STATISTICAL_CHECKS)
    tiny = segment_cell(_noise(6), model=trained_synthetic_model)
    assert tiny.predicted_class is None and tiny.not_judgeable[0] == "too_small"


def test_the_bundled_statistics_load_safely_and_are_no_model():
    model = load_model("default")
    assert has_statistics(model)
    block = model.card["applicability"]
    assert block["n_train"] == len(model.card["training"]["split"]["train"])
    assert block["n_val"] == len(model.card["training"]["split"]["val"])
    assert sidecar_path(WEIGHTS_DIR / "default.safetensors").exists()
    assert "default.applicability" not in bundled_models()


def test_verdict_stats_recomputes_the_bundled_thresholds(tmp_path, herlev_root):
    for suffix in (".safetensors", ".json"):
        shutil.copy(WEIGHTS_DIR / f"default{suffix}", tmp_path / f"m{suffix}")
    card = json.loads((tmp_path / "m.json").read_text())
    bundled = card.pop("applicability")
    (tmp_path / "m.json").write_text(json.dumps(card))
    assert not has_statistics(load_model(tmp_path / "m.safetensors"))
    assert main(["verdict-stats", str(tmp_path / "m.safetensors"), "--data", str(herlev_root), "--quiet"]) == 0
    block = json.loads((tmp_path / "m.json").read_text())["applicability"]
    for part in ("features", "colours"):
        assert block[part]["threshold"] == pytest.approx(bundled[part]["threshold"], rel=1e-3)
    assert block["structure"]["threshold_low"] == pytest.approx(bundled["structure"]["threshold_low"], rel=1e-3)
    assert has_statistics(load_model(tmp_path / "m.safetensors"))


def test_reasons_reach_the_csv_and_the_printed_summary(tmp_path, capsys):
    import cv2

    paths = []
    for name, image in (("noise", _noise(64)), ("tiny", _noise(8)), ("cell", load_sample("abnormal"))):
        paths.append(str(tmp_path / f"{name}.png"))
        cv2.imwrite(paths[-1], cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    assert main(["segment", *paths, "--out", str(tmp_path / "out"), "--workers", "1"]) == 0
    with open(tmp_path / "out" / "descriptors.csv") as f:
        rows = {r["image"]: r for r in csv.DictReader(f)}
    assert rows["tiny"]["judgeable"] == "False" and "too_small" in rows["tiny"]["not_judgeable_reason"]
    assert rows["noise"]["judgeable"] == "False" and rows["noise"]["predicted_class"] == ""
    assert "unlike_training_cells" in rows["noise"]["not_judgeable_reason"]
    assert rows["cell"]["judgeable"] == "True" and rows["cell"]["predicted_class"] in ("normal", "abnormal")
    assert rows["cell"]["not_judgeable_reason"] == ""
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["no_verdict"] == 2
    assert "2 without a verdict" in capsys.readouterr().out


def test_a_field_cell_without_a_verdict_gets_no_class_and_is_not_counted(trained_synthetic_model, monkeypatch):
    real = fields_module.segment_cell
    calls = []

    def first_not_judgeable(crop, **kw):
        result = real(crop, **kw)
        if not calls:  # as if the first crop were not a cell (the rest are judged as usual)
            result.assessment = Applicability(judgeable=False, reasons=["unlike_training_cells"])
            result.predicted_class = result.probability = None
        calls.append(result)
        return result

    monkeypatch.setattr(fields_module, "segment_cell", first_not_judgeable)
    result = segment_field(synthetic_field()[0], model=trained_synthetic_model, operating_point=0.0)
    first, *rest = result.table
    assert first["judgeable"] is False and first["not_judgeable"] == "unlike_training_cells"
    assert first["predicted_class"] is None and first["p_abnormal"] is not None
    assert all(r["judgeable"] and r["predicted_class"] == "abnormal" for r in rest)  # threshold 0
    assert first["cell_id"] not in result.abnormal_ids and len(result.abnormal_ids) == len(rest)


def test_verdict_text_names_the_reason_instead_of_a_class():
    assert verdict_text("abnormal", 0.912) == "abnormal (p = 0.91)"
    text = verdict_text("abnormal", 0.99, assess(None, _noise(5)))
    assert text == "no verdict: too small"  # no model: the stat-free checks alone


def test_a_newly_trained_model_carries_its_statistics(tmp_path, synthetic_cells):
    import cv2

    from napari_cervseg.workflows.train import TrainConfig, train

    for i, (rgb, _, cls) in enumerate(synthetic_cells):
        (tmp_path / "data" / cls).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(tmp_path / "data" / cls / f"c{i}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    config = TrainConfig(arch="compact", arch_kwargs={"widths": [8, 8, 16, 16]}, input_size=48, epochs=2,
                         batch_size=16, tta=False, equalise="none")
    train(tmp_path / "data", tmp_path / "m.safetensors", config, device="cpu", log=None)
    model = load_model(tmp_path / "m.safetensors")
    assert has_statistics(model) and (tmp_path / "m.applicability.safetensors").exists()
    block = model.card["applicability"]
    assert block["n_train"] == len(model.card["training"]["split"]["train"]) and block["features"]["dim"] == 16
    assert assess(model, _noise(64)).checks_run[-2:] == ["unlike_training_cells", "unusual_colours"]
