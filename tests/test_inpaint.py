import numpy as np
import pytest
import torch

from napari_cervseg.segment.inpaint import InpaintError, inpaint


def test_opencv_inpainting_removes_a_dark_nucleus(one_cell):
    rgb, truth, _ = one_cell
    nucleus = truth == 2
    out, used = inpaint(rgb, nucleus, "opencv")
    assert used == "opencv-telea"
    assert out[nucleus].mean() > rgb[nucleus].mean() + 30  # filled with the lighter surroundings
    np.testing.assert_array_equal(out[~nucleus], rgb[~nucleus])


class FakeLama(torch.nn.Module):
    """Stands in for big-lama.pt with LaMa's interface: (image [0,1] N3HW, mask N1HW) -> image.
    It fills the hole with the mean colour outside it, and checks the padding contract."""

    def forward(self, image, mask):
        assert image.shape[-1] % 8 == 0 and image.shape[-2] % 8 == 0
        keep = 1 - mask
        mean = (image * keep).sum(dim=(2, 3), keepdim=True) / keep.sum(dim=(2, 3), keepdim=True)
        return image * keep + mean * mask


def test_lama_torchscript_is_used_when_given(tmp_path, one_cell, monkeypatch):
    rgb, truth, _ = one_cell  # 110 x 124: not a multiple of 8
    path = tmp_path / "big-lama.pt"
    torch.jit.script(FakeLama()).save(str(path))
    out, used = inpaint(rgb, truth == 2, "auto", lama_model=path)
    assert used == "lama" and out.shape == rgb.shape
    assert out[truth == 2].std() < rgb[truth == 2].std()
    monkeypatch.setenv("LAMA_MODEL", str(path))
    assert inpaint(rgb, truth == 2, "auto")[1] == "lama"
    monkeypatch.delenv("LAMA_MODEL")
    assert inpaint(rgb, truth == 2, "auto")[1] == "opencv-telea"


def test_lama_errors_are_clear(tmp_path, one_cell):
    rgb, truth, _ = one_cell
    with pytest.raises(InpaintError, match="needs a local big-lama.pt"):
        inpaint(rgb, truth == 2, "lama")
    with pytest.raises(InpaintError, match="does not exist"):
        inpaint(rgb, truth == 2, "lama", lama_model=tmp_path / "missing.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"nope")
    with pytest.raises(InpaintError, match="not a loadable TorchScript"):
        inpaint(rgb, truth == 2, "lama", lama_model=bad)
