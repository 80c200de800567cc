import json

import numpy as np
import pytest

from napari_cervseg.cli import main
from napari_cervseg.explain.metrics import heatmap_entropy, pixel_flipping
from napari_cervseg.workflows.evaluate import parse_method_spec


def test_method_specs_parse_options():
    assert parse_method_spec("gradcam++") == ("gradcam++", {})
    assert parse_method_spec("gradcam++:grouping=kmeans,dilation=8,inpaint_nucleus=false") == (
        "gradcam++", {"grouping": "kmeans", "dilation": 8, "inpaint_nucleus": False})
    with pytest.raises(ValueError, match="key=value"):
        parse_method_spec("gradcam++:kmeans")


def test_entropy_is_zero_for_flat_and_eight_bits_for_uniform():
    assert heatmap_entropy(np.zeros((20, 20))) == 0.0
    ramp = np.repeat(np.arange(256)[None] / 255.0, 4, axis=0)
    assert heatmap_entropy(ramp) == pytest.approx(8.0)


def test_pixel_flipping_drops_more_for_the_real_explanation(trained_synthetic_model, synthetic_cells):
    """Flipping the nucleus first (what the synthetic classes differ in) must hurt the 'abnormal'
    probability more than flipping the background first."""
    from napari_cervseg import explain

    gains = []
    for rgb, truth, cls in synthetic_cells[:12]:
        if cls != "abnormal":
            continue
        relevant = pixel_flipping(trained_synthetic_model, rgb, (truth == 2).astype(np.float32), "abnormal")
        irrelevant = pixel_flipping(trained_synthetic_model, rgb, (truth == 0).astype(np.float32), "abnormal")
        gains.append(relevant["aopc"] - irrelevant["aopc"])
        e = explain(trained_synthetic_model, rgb, target="abnormal")
        curve = pixel_flipping(trained_synthetic_model, rgb, e.heatmap, "abnormal")
        assert len(curve["probabilities"]) == 11 and curve["fractions"][0] == 0.0
    # benchmarks/results/test_bounds.md (training seeds 0-5 x torch threads 1, 2): lowest 0.156;
    # an untrained network gives 0.006
    assert np.mean(gains) > 0.05, gains


def test_evaluate_command_writes_the_documented_json(tmp_path, herlev_root):
    out = tmp_path / "r.json"
    code = main(["evaluate", "--data", str(herlev_root), "--split", "test", "--limit", "4", "--n-xai", "2",
                 "--methods", "gradcam++", "colour-baseline", "--out", str(out), "--quiet"])
    assert code == 0
    report = json.loads(out.read_text())
    for key in ("accuracy", "precision", "recall", "f1", "abnormal_recall", "confusion", "n"):
        assert key in report["classification"]
    seg = report["segmentation"]["gradcam++"]
    for part in ("nucleus", "cytoplasm", "mean"):
        assert 0 <= seg[part]["dice"] <= 1 and 0 <= seg[part]["iou"] <= 1
    assert seg["n_images"] == 4 and seg["seconds_per_image"] > 0
    assert set(report["xai"]["gradcam++"]) >= {"entropy", "aopc"}
    assert report["best_method"]["name"] in report["segmentation"]
    assert report["settings"]["split"] == "test" and report["model"]["architecture"] == "compact"
    assert out.with_suffix(".md").read_text().startswith("## Classification")


def test_evaluate_gives_the_same_figures_with_two_worker_processes(herlev_root):
    from napari_cervseg.classify import load_model
    from napari_cervseg.io.datasets import read_dataset
    from napari_cervseg.workflows.evaluate import evaluate

    model = load_model("default")
    test = set(model.card["training"]["split"]["test"])
    samples = [s for s in read_dataset(herlev_root) if s.name in test][:4]
    methods = ["gradcam++", "gradcam++:grouping=kmeans", "colour-baseline"]
    one = evaluate(samples, model, methods, n_xai=2)
    two = evaluate(samples, "default", methods, n_xai=2, workers=2)
    for spec in methods:
        assert one["segmentation"][spec]["per_image"] == two["segmentation"][spec]["per_image"]
    assert one["classification"] == two["classification"]
    for method, values in one["xai"].items():  # torch's thread count changes the last float digits
        for key, value in values.items():
            assert two["xai"][method][key] == (value if value is None else pytest.approx(value, rel=1e-3))


def test_a_given_explanation_is_reused_and_checked(trained_synthetic_model, one_cell):
    from napari_cervseg import explain, segment_cell

    image = one_cell[0]
    e = explain(trained_synthetic_model, image)
    fresh = segment_cell(image, model=trained_synthetic_model)
    reused = segment_cell(image, model=trained_synthetic_model, explanation=e)
    np.testing.assert_array_equal(fresh.labels, reused.labels)
    with pytest.raises(ValueError, match="made by 'gradcam\\+\\+', not by method 'layercam'"):
        segment_cell(image, model=trained_synthetic_model, method="layercam", explanation=e)


def test_every_default_comparison_spec_runs_and_only_explanations_get_xai_figures(herlev_root):
    from napari_cervseg.classify import load_model
    from napari_cervseg.io.datasets import read_dataset
    from napari_cervseg.workflows.evaluate import DEFAULT_COMPARISON, evaluate

    model = load_model("default")
    test = set(model.card["training"]["split"]["test"])
    sample = [s for s in read_dataset(herlev_root) if s.name in test and s.mask_path][:1]
    report = evaluate(sample, model, DEFAULT_COMPARISON, n_xai=1)
    assert set(report["segmentation"]) == set(DEFAULT_COMPARISON)
    assert "self-trained" not in report["xai"] and "colour-baseline" not in report["xai"]
