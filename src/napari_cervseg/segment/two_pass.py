"""The two GrabCut passes every algorithm ends with: the nucleus from its seed, then the cell
seeded with that nucleus (on the nucleus-inpainted image)."""

from __future__ import annotations

import numpy as np

from ..stages import Stages
from .colour import background_like, colour_nucleus_seed, dark_part
from .inpaint import inpaint
from .refine import dilate, erode, grabcut, seed_map
from .settings import CellCutSettings, RefineSettings

#: the probable-nucleus zone reaches this fraction of the seed's equivalent radius beyond it
NUCLEUS_GROW = 0.3


def scaled(pixels_at_128: float, shape) -> int:
    """A size given in pixels of a 128 px image, in pixels of an image of ``shape``."""
    return max(1, int(round(pixels_at_128 * max(shape[:2]) / 128.0)))


def nucleus_seed(rgb: np.ndarray, candidate: np.ndarray, how: str) -> np.ndarray:
    """The nucleus seed from the explanation's candidate region (see ``RefineSettings.nucleus_seed``)."""
    if how == "colour":
        return colour_nucleus_seed(rgb, candidate)
    if how == "dark":
        return dark_part(rgb, candidate)
    return np.asarray(candidate, bool)


def refine_nucleus(rgb: np.ndarray, candidate: np.ndarray, far_bg: np.ndarray, settings: RefineSettings,
                   stages: Stages | None = None) -> np.ndarray:
    """GrabCut the nucleus from a candidate region (the heatmap's top group).

    Parameters
    ----------
    rgb : ndarray (H, W, 3) uint8
    candidate : ndarray (H, W) bool
        The explanation's nucleus candidate.
    far_bg : ndarray (H, W) bool
        Sure background.
    settings : RefineSettings
        ``nucleus_seed``: "dark" keeps the candidate's darker colour class (a stained nucleus is
        darker than cytoplasm: a coarse heatmap's top group often spills over the cytoplasm, and
        GrabCut would then learn cytoplasm colours as nucleus); "colour" the darkest colour blobs it
        touches; "rough" the candidate as is (the paper). ``nucleus_iterations``, ``work_size``.
    stages : Stages, optional
        Receives the ``nucleus_seed`` and ``grabcut_nucleus`` timings.

    Returns
    -------
    ndarray (H, W) bool
        The (eroded) seed is sure nucleus and a zone around it (NUCLEUS_GROW of the seed's
        equivalent radius: a wider zone fills GrabCut's nucleus model with cytoplasm colours)
        probable nucleus, so the cut can both trim a spilled seed and grow a partial one.
    """
    stages = stages or Stages()
    with stages("nucleus_seed"):
        seed = nucleus_seed(rgb, candidate, settings.nucleus_seed)
    with stages("grabcut_nucleus"):
        if not seed.any():
            return seed
        core = erode(seed, 1)
        zone = dilate(seed, max(1, int(round(NUCLEUS_GROW * np.sqrt(seed.sum() / np.pi)))))
        return grabcut(rgb, seed_map(rgb.shape, zone, sure_fg=core if core.any() else None,
                                     sure_bg=far_bg & ~zone), settings.nucleus_iterations, settings.work_size)


def refine_rough(rgb: np.ndarray, rough: np.ndarray, settings: CellCutSettings | None = None,
                 stages: Stages | None = None) -> tuple[np.ndarray, np.ndarray]:
    """GrabCut the rough nucleus (rough == 2), then the cell (rough >= 1) seeded with that nucleus.

    Seeds: see :func:`refine_nucleus` for the nucleus (pixels farther than ``settings.dilation``
    from the rough cell are sure background there). For the cell, the rough cell is probable
    foreground, the refined nucleus sure foreground; sure background only where a pixel is both far
    from the rough cell and of the image's brightest colour class (:func:`background_like`): a
    heatmap often covers only part of the cytoplasm, and a sure background drawn from it alone would
    cut the cell. Everything else is probable background.

    Parameters
    ----------
    rgb : ndarray (H, W, 3) uint8
    rough : ndarray (H, W) uint8
        0 background, 1 cytoplasm, 2 nucleus.
    settings : CellCutSettings, optional
        Algorithm 1's defaults when None.
    stages : Stages, optional
        Receives the timings of each step.

    Returns
    -------
    nucleus, cell : ndarray (H, W) bool
    """
    settings = settings or CellCutSettings()
    stages = stages or Stages()
    r = scaled(settings.dilation, rgb.shape)
    cell_rough = rough >= 1
    far_bg = ~dilate(cell_rough, r)
    nucleus = refine_nucleus(rgb, rough == 2, far_bg, settings, stages)
    image_for_cell, sure_cell = rgb, erode(nucleus, 1)
    if settings.inpaint_nucleus:
        with stages("inpainting"):
            if nucleus.any():
                # Algorithm 2's idea: without the dark nucleus in its colour model, GrabCut's cell
                # model is the cytoplasm's own colours
                sure_cell = dilate(nucleus, r)
                image_for_cell, _ = inpaint(rgb, sure_cell, "opencv")
    with stages("grabcut_cytoplasm"):
        cell = grabcut(image_for_cell, seed_map(rgb.shape, cell_rough, sure_fg=sure_cell,
                                                sure_bg=far_bg & background_like(rgb)),
                       settings.cytoplasm_iterations, settings.work_size)
    return nucleus, cell
