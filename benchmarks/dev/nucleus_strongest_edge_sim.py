"""Development simulation (issue 22, session 16): nuclei matched (IoU >= 0.5) and false if each
reported nucleus were redrawn along the strongest edge near it: among the reported nucleus and
the grey level sets around it (the dark component at each of LEVELS grey levels between the
nucleus's core and its cytoplasm, inside its cell's extent, that overlaps the reported nucleus
most), the outline with the highest mean grey gradient is kept, when it beats the reported
nucleus's by a factor MARGIN. Masks read only to score.

    python benchmarks/dev/nucleus_strongest_edge_sim.py SET [SET ...]   # [matched, false] per setting

segment_field's output is cached per set under data/cache/ (git-ignored) so settings rerun fast.
The figures in benchmarks/results/finder_rule.md (session 16) came from a cache made before rule 7;
with a fresh cache the route's own figures (None) are today's.
"""
import pickle
import sys
from pathlib import Path

import cv2
import numpy as np
from scipy import ndimage as ndi

sys.path.insert(0, "benchmarks")
from bench_fields import field_set, match_nuclei

from napari_cervseg import segment_field

CACHE = Path("data/cache")


def reported(name):
    """[(rgb, pages, nuclei labels, [(box, extent mask)] per cell)] of a set, cached."""
    path = CACHE / f"strongest_edge_{Path(name).name}.pkl"
    if path.exists():
        return pickle.loads(path.read_bytes())
    out = []
    for _path, rgb, pages in field_set(name):
        r = segment_field(rgb, operating_point="screening")
        out.append((rgb, pages, r.nuclei.copy(), [r.extent(k) for k in range(1, r.n_cells + 1)]))
    CACHE.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(out))
    return out


def edge_strength(mask, gradient):
    rim = mask & ~ndi.binary_erosion(mask)
    return float(gradient[rim].mean()) if rim.any() else 0.0


def strongest(nuc, ext, grey, gradient, levels, margin):
    core = ndi.binary_erosion(nuc, iterations=2)
    ring = ndi.binary_dilation(nuc, iterations=8) & ~ndi.binary_dilation(nuc, iterations=3) & ext
    if core.sum() < 10 or ring.sum() < 10:
        return nuc
    inside, outside = np.median(grey[core]), np.median(grey[ring])
    if outside <= inside:
        return nuc
    window = ndi.binary_dilation(nuc, iterations=max(3, int(np.sqrt(nuc.sum() / np.pi)))) & ext
    best, best_score = nuc, edge_strength(nuc, gradient) * margin
    area = nuc.sum()
    for share in np.linspace(0.1, 0.9, levels):
        dark = window & (grey <= inside + share * (outside - inside))
        parts, n = ndi.label(dark)
        if n == 0:
            continue
        overlap = np.bincount(parts[nuc], minlength=n + 1)
        overlap[0] = 0
        cand = ndi.binary_fill_holes(parts == int(np.argmax(overlap)))
        if not 0.25 * area <= cand.sum() <= 4 * area:
            continue
        score = edge_strength(cand, gradient)
        if score > best_score:
            best, best_score = cand, score
    return best


def score_redraws(names, confs, redraw, prepare=lambda rgb: rgb):
    """Print each set's [matched, false] cells with the reported nuclei as they are (None) and
    redrawn by ``redraw(window, nucleus, cell, field, *conf)`` for each conf of ``confs``:
    ``field`` is ``prepare(rgb)`` (made once per field), ``window`` the cell's box grown by 12 px
    (the nucleus may reach past the extent), ``nucleus`` and ``cell`` bool masks of it."""
    for name in names:
        tot = {c: [0, 0] for c in [None] + confs}
        for rgb, pages, nuclei, extents in reported(name):
            field = prepare(rgb)
            for c in [None] + confs:
                lab = np.zeros(nuclei.shape, np.int32)
                for k, ((r0, c0, r1, c1), m) in enumerate(extents, start=1):
                    y0, x0 = max(0, r0 - 12), max(0, c0 - 12)
                    y1, x1 = min(lab.shape[0], r1 + 12), min(lab.shape[1], c1 + 12)
                    window = (slice(y0, y1), slice(x0, x1))
                    ext = np.zeros((y1 - y0, x1 - x0), bool)
                    ext[r0 - y0:r1 - y0, c0 - x0:c1 - x0] = m
                    nuc = nuclei[window] == k
                    if c is not None and nuc.any():
                        nuc = redraw(window, nuc, ext | nuc, field, *c)
                    view = lab[window]
                    view[nuc & (view == 0)] = k
                pairs = match_nuclei(lab, pages)
                tot[c][0] += len(pairs)
                tot[c][1] += len(extents) - len(pairs)
        print(name, {str(c): v for c, v in tot.items()}, flush=True)


def grey_and_gradient(rgb):
    grey = cv2.GaussianBlur(rgb.astype(np.float32).mean(2), (0, 0), 1.0)
    return grey, np.hypot(ndi.sobel(grey, 0), ndi.sobel(grey, 1))


def main():
    confs = [(levels, margin) for levels in (9, 17) for margin in (1.0, 1.1, 1.25)]
    score_redraws(sys.argv[1:], confs, lambda window, nuc, cell, field, *c: strongest(
        nuc, cell, field[0][window], field[1][window], *c), prepare=grey_and_gradient)


if __name__ == "__main__":
    main()
