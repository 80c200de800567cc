"""The CAM family through pytorch-grad-cam (``grad-cam`` on PyPI), the field's reference code.

Used by :func:`napari_cervseg.explain.explain` for ``gradcam``, ``gradcam++``, ``scorecam``,
``layercam``, ``eigencam`` (and the ensemble of them) when the package is installed; the
built-in implementations on our own hooks are the fallback and are tested against it.

A dependency since grad-cam 1.5.7, which requires ``opencv-python-headless`` (older releases
required the non-headless OpenCV, which ships its own Qt and fights napari's); the built-in
fallback stays for environments without it.

Two deliberate departures, both in subclasses, neither touching the library's own classes:

- Eigen-CAM: the sign of a principal component is arbitrary (SVD), so pytorch-grad-cam's map is
  inverted for some images. We flip the projection to correlate positively with the mean
  activation, as our built-in Eigen-CAM does.
- Score-CAM: pytorch-grad-cam shows a tqdm bar per image; ours runs it in batches of 64 masked
  images without the bar.
"""

from __future__ import annotations

import numpy as np
import torch

#: our method names -> pytorch-grad-cam classes
PGC_CLASSES = {"gradcam": "GradCAM", "gradcam++": "GradCAMPlusPlus", "scorecam": "ScoreCAM",
               "layercam": "LayerCAM", "eigencam": "EigenCAM"}


def available() -> bool:
    try:
        import pytorch_grad_cam  # noqa: F401
    except ImportError:
        return False
    return True


def version() -> str | None:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as _version

    try:
        return _version("grad-cam")
    except PackageNotFoundError:
        return None


def _classes():
    import pytorch_grad_cam as pgc
    from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection

    class SignedEigenCAM(pgc.EigenCAM):
        """Eigen-CAM with the principal component's sign fixed by the mean activation."""

        def get_cam_image(self, input_tensor, target_layer, target_category, activations, grads,
                          eigen_smooth):
            acts = np.asarray(activations, np.float32)
            proj = get_2d_projection(acts.copy())
            mean_map = acts.mean(1)
            for i in range(len(proj)):
                a = proj[i].ravel() - proj[i].mean()
                b = mean_map[i].ravel() - mean_map[i].mean()
                if float(a @ b) < 0:
                    proj[i] = -proj[i]
            return proj

    class QuietScoreCAM(pgc.ScoreCAM):
        """Score-CAM without the per-image progress bar (same weights as pytorch-grad-cam's)."""

        batch_size = 64

        def get_cam_weights(self, input_tensor, target_layer, targets, activations, grads):
            import pytorch_grad_cam.score_cam as score_cam

            real_tqdm = score_cam.tqdm
            score_cam.tqdm = _NoBar
            try:
                return super().get_cam_weights(input_tensor, target_layer, targets, activations, grads)
            finally:
                score_cam.tqdm = real_tqdm

    return {"gradcam": pgc.GradCAM, "gradcam++": pgc.GradCAMPlusPlus, "scorecam": QuietScoreCAM,
            "layercam": pgc.LayerCAM, "eigencam": SignedEigenCAM}


class _NoBar:
    @staticmethod
    def tqdm(iterable, *args, **kwargs):
        return iterable


def cam_maps(net: torch.nn.Module, x: torch.Tensor, layer_module: torch.nn.Module, method: str,
             target: int | None = None):
    """Maps (N, S, S) in [0, 1] at the input size S (pytorch-grad-cam's ReLU, min-max scaling and
    resize), the probabilities (N, C) and the explained class indices (N,)."""
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    cls = _classes()[method]
    targets = None if target is None else [ClassifierOutputTarget(int(target))] * x.shape[0]
    was_training = net.training
    cam = cls(model=net, target_layers=[layer_module])
    try:
        with torch.enable_grad():
            maps = cam(input_tensor=x.detach().requires_grad_(True), targets=targets)
        logits = cam.outputs.detach()
    finally:
        cam.activations_and_grads.release()
        net.train(was_training)
    probs = torch.softmax(logits, 1)
    idx = probs.argmax(1) if target is None else torch.full((x.shape[0],), int(target), device=probs.device)
    return torch.from_numpy(np.ascontiguousarray(maps, np.float32)), probs, idx
