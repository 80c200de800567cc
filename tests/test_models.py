import json
import pickle

import numpy as np
import pytest
import torch

from napari_cervseg import ModelError, load_model, save_model
from napari_cervseg.classify import CompactCNN, VGG16Adapted128, bundled_models, wrap_model
from napari_cervseg.classify.predict import classify


def test_save_load_roundtrip_gives_identical_logits(tmp_path):
    torch.manual_seed(0)
    model = wrap_model(CompactCNN(widths=(8, 16, 16, 32)), cam_layer="features.block4")
    card = {"architecture": "compact", "arch_kwargs": {"widths": [8, 16, 16, 32]}}
    path = save_model(model, tmp_path / "m.safetensors", card)
    assert path.exists() and path.with_suffix(".json").exists()
    loaded = load_model(path, device="cpu")
    x = torch.randn(2, 3, 128, 128)
    with torch.no_grad():
        torch.testing.assert_close(model.net(x), loaded.net(x))
    assert loaded.cam_layer == "features.block4"
    assert json.loads(path.with_suffix(".json").read_text())["preprocess"]["input_size"] == 128


def test_missing_card_corrupt_file_and_mismatch_are_explained(tmp_path):
    model = wrap_model(CompactCNN(widths=(8, 16, 16, 32)))
    path = save_model(model, tmp_path / "m.safetensors", {"architecture": "compact",
                                                          "arch_kwargs": {"widths": [8, 16, 16, 32]}})
    # corrupt weights
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00garbage" * 10)
    bad.with_suffix(".json").write_text(path.with_suffix(".json").read_text())
    with pytest.raises(ModelError, match="not a readable safetensors"):
        load_model(bad)
    # no card
    lone = tmp_path / "lone.safetensors"
    lone.write_bytes(path.read_bytes())
    with pytest.raises(ModelError, match="no model card"):
        load_model(lone)
    # card says another architecture size
    card = json.loads(path.with_suffix(".json").read_text())
    card["arch_kwargs"] = {"widths": [16, 16, 16, 16]}
    path.with_suffix(".json").write_text(json.dumps(card))
    with pytest.raises(ModelError, match="do not match architecture"):
        load_model(path)
    with pytest.raises(ModelError, match="neither a bundled model"):
        load_model(tmp_path / "nope.safetensors")


class _Exploit:
    def __reduce__(self):
        import os

        return (os.system, ("echo pwned > /dev/null",))


def test_a_pickle_that_would_run_code_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    with path.open("wb") as fh:
        pickle.dump({"weights": _Exploit()}, fh)
    path.with_suffix(".json").write_text(json.dumps({"architecture": "compact"}))
    with pytest.raises(ModelError, match="never executed"):
        load_model(path)


def test_plain_state_dict_pt_loads_with_weights_only(tmp_path):
    net = CompactCNN(widths=(8, 16, 16, 32))
    path = tmp_path / "m.pt"
    torch.save(net.state_dict(), path)
    path.with_suffix(".json").write_text(json.dumps({"architecture": "compact",
                                                      "arch_kwargs": {"widths": [8, 16, 16, 32]}}))
    assert isinstance(load_model(path).net, CompactCNN)


@pytest.mark.parametrize("simplified", [False, True])
def test_vgg_dense_layers_convert_to_equivalent_convolutions(simplified):
    torch.manual_seed(0)
    net = VGG16Adapted128(simplified=simplified).eval()
    x = torch.randn(1, 3, 128, 128)
    with torch.no_grad():
        torch.testing.assert_close(net(x), net.to_conv_head()(x), rtol=1e-4, atol=1e-4)


def test_bundled_default_loads_and_classifies():
    assert "default" in bundled_models(), "the package must ship weights/default.safetensors"
    model = load_model("default")
    assert model.card["architecture"] == "compact"
    assert model.card["training"]["labels_used"].startswith("image-level")
    cls, prob, probs = classify(model, np.full((90, 100, 3), 180, np.uint8))
    assert cls in ("normal", "abnormal") and abs(sum(probs.values()) - 1) < 1e-5
