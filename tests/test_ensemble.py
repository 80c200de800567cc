"""Ensembles of compact classifiers: one split for every member, probabilities averaged, the
heatmap of the ensemble's own score, and the refusals that keep its figures honest."""

import json

import numpy as np
import pytest
import torch
from synthetic import write_class_folders

from napari_cervseg import classify, explain, load_model
from napari_cervseg.classify import ModelError
from napari_cervseg.cli import main as cli
from napari_cervseg.workflows.ensemble import combine
from napari_cervseg.workflows.train import TrainConfig, train


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory, synthetic_cells):
    return write_class_folders(tmp_path_factory.mktemp("ens") / "data", synthetic_cells)


def _member(tmp, data, seed, split_seed=0, widths=(8, 8, 16, 16)):
    config = TrainConfig(arch="compact", arch_kwargs={"widths": list(widths)}, input_size=48, epochs=2,
                         batch_size=16, tta=False, equalise="none", seed=seed, split_seed=split_seed, keep="last")
    return train(data, tmp / f"m{seed}_{split_seed}.safetensors", config, device="cpu", log=None)


@pytest.fixture(scope="module")
def members(tmp_path_factory, tiny_data):
    tmp = tmp_path_factory.mktemp("members")
    return [_member(tmp, tiny_data, 1), _member(tmp, tiny_data, 2, widths=(8, 12, 16, 24))]


def test_members_with_other_seeds_share_the_split_seeds_one(members, tmp_path, tiny_data):
    a, b = members
    assert a.card["training"]["split"] == b.card["training"]["split"]
    assert a.card["training"]["kept_epoch"] == "last"
    other = _member(tmp_path, tiny_data, 1, split_seed=5)
    assert other.card["training"]["split"] != a.card["training"]["split"]
    with pytest.raises(ModelError, match="another train/val/test split"):
        combine([a, other])


def test_the_ensemble_outputs_the_mean_of_its_members_probabilities(members, one_cell):
    ens = combine(members)
    x = torch.rand(3, 3, 48, 48)
    with torch.no_grad():
        mean = sum(torch.softmax(m.net.eval()(x), 1) for m in members) / len(members)
        torch.testing.assert_close(torch.softmax(ens.net(x), 1), mean)
    got = classify(ens, one_cell[0]).probabilities["abnormal"]
    want = np.mean([classify(m, one_cell[0]).probabilities["abnormal"] for m in members])
    assert got == pytest.approx(want, abs=1e-5)


def test_the_ensemble_is_explained_on_its_own_score(members, one_cell):
    ens = combine(members)
    e = explain(ens, one_cell[0], method="gradcam++")
    assert e.heatmap.shape == one_cell[0].shape[:2] and np.isfinite(e.heatmap).all()
    assert e.predicted_class == classify(ens, one_cell[0]).predicted_class


@pytest.mark.parametrize("ruleset", ["lrp-ruleset1", "lrp-ruleset2"])
def test_lrp_of_an_ensemble_is_its_members_mean_relevance(members, one_cell, ruleset):
    a = members[0]
    twice = combine([a, a])  # the same member twice: its own relevance, exactly
    torch.testing.assert_close(explain(twice, one_cell[0], method=ruleset, target="abnormal").heatmap,
                               explain(a, one_cell[0], method=ruleset, target="abnormal").heatmap,
                               rtol=1e-4, atol=1e-6)
    both = explain(combine(members), one_cell[0], method=ruleset, target="abnormal")
    assert both.heatmap.shape == one_cell[0].shape[:2] and np.isfinite(both.heatmap).all()


def test_an_ensemble_gives_back_its_members(members, one_cell):
    from napari_cervseg.workflows.ensemble import members_of

    back = members_of(combine(members))
    assert len(back) == 2
    for original, copy in zip(members, back, strict=True):
        assert classify(copy, one_cell[0]).probabilities == pytest.approx(
            classify(original, one_cell[0]).probabilities, abs=1e-6)
    assert combine(back).card["training"]["split"] == members[0].card["training"]["split"]
    with pytest.raises(ModelError, match="not an ensemble"):
        members_of(members[0])


def test_members_that_do_not_fit_together_are_refused(members):
    with pytest.raises(ModelError, match="at least 2"):
        combine(members[:1])
    from dataclasses import replace

    first = members[0]
    odd = replace(first, preprocess=type(first.preprocess).from_dict({**first.preprocess.to_dict(), "input_size": 64}))
    with pytest.raises(ModelError, match="preprocessing"):
        combine([members[0], odd])


def test_cli_writes_a_card_with_figures_statistics_and_members(members, tiny_data, tmp_path, one_cell, capsys):
    out = tmp_path / "ens.safetensors"
    assert cli(["ensemble", members[0].source, members[1].source, "--data", str(tiny_data), "--out", str(out),
                "--quiet"]) == 0
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["architecture"] == "compact-ensemble" and len(card["members"]) == 2
    assert card["training"]["split"] == members[0].card["training"]["split"]
    assert {"auc", "log_loss", "accuracy"} <= set(card["val_metrics"]) and card["test_metrics"]["n"] > 0
    assert 0 <= card["operating_points"]["screening"]["abnormal_threshold"] <= 1
    assert out.with_name("ens.applicability.safetensors").exists() and "applicability" in card
    loaded = load_model(out)
    assert classify(loaded, one_cell[0]).probabilities == pytest.approx(
        classify(combine(members), one_cell[0]).probabilities, abs=1e-5)
    # never replaces a model the user has
    before = out.read_bytes()
    assert cli(["ensemble", members[0].source, members[1].source, "--data", str(tiny_data), "--out", str(out)]) == 2
    assert "exists" in capsys.readouterr().err and out.read_bytes() == before


def test_a_card_with_a_bad_members_field_is_refused(members, tmp_path):
    out = tmp_path / "e.safetensors"
    from napari_cervseg.classify import save_model

    ens = combine(members)
    save_model(ens, out, ens.card)
    card = json.loads(out.with_suffix(".json").read_text())
    card["arch_kwargs"]["members"] = [card["arch_kwargs"]["members"][0]]
    out.with_suffix(".json").write_text(json.dumps(card))
    with pytest.raises(ModelError, match="members"):
        load_model(out)
    card["arch_kwargs"]["members"] = [{"widths": [8, 8]}, {"widths": [8, 8, 16, 16]}]
    out.with_suffix(".json").write_text(json.dumps(card))
    with pytest.raises(ModelError, match="blocks"):
        load_model(out)


def test_the_bundled_ensemble_holds_the_default_and_averages_its_members(one_cell):
    """`ensemble3` (issue 15, item 3): the bundled default + two networks trained on its split."""
    ens, default = load_model("ensemble3"), load_model("default")
    assert ens.card["architecture"] == "compact-ensemble" and len(ens.card["members"]) == 3
    assert ens.card["training"]["split"] == default.card["training"]["split"]
    # member 0 is the bundled default, weight for weight
    for (name, a), b in zip(default.net.features.state_dict().items(),
                            ens.net.features.parts[0].state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, msg=name)
    x = torch.rand(2, 3, 96, 96)
    with torch.no_grad():
        mean = sum(torch.softmax(ens.net.member(i)(x), 1) for i in range(3)) / 3
        torch.testing.assert_close(torch.softmax(ens.net(x), 1), mean)
        torch.testing.assert_close(torch.softmax(ens.net.member(0)(x), 1), torch.softmax(default.net(x), 1))
    assert 0.0 < ens.card["operating_points"]["screening"]["abnormal_threshold"] < 1.0
    assert ens.card["applicability"]["sidecar"] == "ensemble3.applicability.safetensors"


@pytest.mark.parametrize("method", ["self-trained", "lrp-ruleset1"])
def test_the_bundled_ensemble_segments_and_judges_a_real_cell(method):
    from napari_cervseg import segment_cell
    from napari_cervseg.plugin.samples import load_sample

    result = segment_cell(load_sample("abnormal"), model="ensemble3", method=method)
    assert result.judgeable and result.predicted_class == "abnormal"
    assert (result.labels == 2).any() and (result.labels == 1).any()


def test_cli_train_takes_the_split_seed_and_records_its_command(members, tiny_data, tmp_path):
    out = tmp_path / "m.safetensors"
    argv = ["train", "--data", str(tiny_data), "--out", str(out), "--arch-kwargs", '{"widths": [8, 8, 16, 16]}',
            "--input-size", "48", "--epochs", "1", "--equalise", "none", "--seed", "3", "--split-seed", "0",
            "--keep", "last"]
    assert cli(argv) == 0
    training = json.loads(out.with_suffix(".json").read_text())["training"]
    assert training["split"] == members[0].card["training"]["split"]  # seed 3, the members' split
    assert training["kept_epoch"] == "last" and training["command"] == "cervseg " + " ".join(argv)
