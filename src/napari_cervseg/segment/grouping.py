"""Heatmap -> groups (Sec. III-E): two-threshold, k-means, GMM, inter-means; LRP log scaling.

Every function returns an integer map whose values are ordered by mean relevance:
0 = lowest-relevance group ... n-1 = highest. With 3 groups that is the paper's rough
0 background / 1 cytoplasm / 2 nucleus map.
"""

from __future__ import annotations

import numpy as np

GROUPINGS = ("threshold", "kmeans", "gmm", "intermeans")
#: pixels used to fit k-means / GMM (a random subsample; every pixel is then assigned)
FIT_SAMPLE = 4096


class GroupingError(ValueError):
    pass


def log_scale(relevance: np.ndarray, scale: float = 1000.0) -> np.ndarray:
    """Formula 8: log(r * scale + 1) / log(scale), on relevance clipped at 0 and scaled to [0, 1]."""
    r = np.maximum(np.asarray(relevance, np.float64), 0)
    peak = r.max()
    if peak > 0:
        r = r / peak
    return (np.log(r * scale + 1.0) / np.log(scale)).astype(np.float32)


def _order_by_mean(values: np.ndarray, assign: np.ndarray, n_groups: int) -> np.ndarray:
    """Relabel ``assign`` so that group means increase with the label; empty groups sort last-lowest."""
    means = np.array([values[assign == g].mean() if np.any(assign == g) else -np.inf for g in range(n_groups)])
    rank = np.empty(n_groups, int)
    rank[np.argsort(means, kind="stable")] = np.arange(n_groups)
    return rank[assign]


def threshold_groups(values: np.ndarray, thresholds) -> np.ndarray:
    """Fixed thresholds on a [0, 1] heatmap: value >= t_i puts a pixel in group i+1."""
    thresholds = np.sort(np.atleast_1d(np.asarray(thresholds, np.float64)))
    return np.searchsorted(thresholds, values, side="right").astype(np.uint8)


def intermeans_thresholds(values: np.ndarray, n_groups: int = 3, tol: float = 1e-4, max_iter: int = 100):
    """Iterative inter-means thresholds (paper Sec. III-E): start at the quartiles (Q1, Q3) for
    3 groups (the median for 2), split, move each threshold to the midpoint of the neighbouring
    group means, repeat until stable."""
    v = np.asarray(values, np.float64).ravel()
    if n_groups == 3:
        t = np.quantile(v, [0.25, 0.75])
    elif n_groups == 2:
        t = np.quantile(v, [0.5])
    else:
        raise GroupingError("inter-means supports 2 or 3 groups")
    for _ in range(max_iter):
        assign = np.searchsorted(t, v, side="right")
        means = []
        for g in range(n_groups):
            sel = v[assign == g]
            means.append(sel.mean() if sel.size else (t[min(g, len(t) - 1)]))
        new_t = np.array([(means[i] + means[i + 1]) / 2 for i in range(n_groups - 1)])
        if np.all(np.abs(new_t - t) < tol):
            t = new_t
            break
        t = new_t
    return t


def _kmeans_pp_init(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    centres = [x[rng.integers(len(x))]]
    for _ in range(1, k):
        d = np.min(((x[:, None, :] - np.asarray(centres)[None]) ** 2).sum(-1), axis=1)
        total = d.sum()
        centres.append(x[rng.choice(len(x), p=d / total)] if total > 0 else x[rng.integers(len(x))])
    return np.asarray(centres)


def _lloyd(x, centres, max_iter, tol):
    for _ in range(max_iter):
        assign = ((x[:, None, :] - centres[None]) ** 2).sum(-1).argmin(1)
        new = np.array([x[assign == j].mean(0) if np.any(assign == j) else centres[j]
                        for j in range(len(centres))])
        shift = np.abs(new - centres).max()
        centres = new
        if shift < tol:
            break
    assign = ((x[:, None, :] - centres[None]) ** 2).sum(-1).argmin(1)
    inertia = ((x - centres[assign]) ** 2).sum()
    return centres, assign, inertia


def kmeans(samples: np.ndarray, k: int, init: np.ndarray | None = None, n_init: int = 3, seed: int = 0,
           max_iter: int = 50, tol: float = 1e-6) -> tuple[np.ndarray, np.ndarray]:
    """Lloyd's k-means on (n, d) samples: k-means++ seeding (seeded, ``n_init`` restarts, lowest
    inertia kept) or the given ``init``. Returns (centres (k, d), assignment (n,)).

    A few lines of numpy instead of scikit-learn: on the 4096 samples of one cell it is an order
    of magnitude faster (no thread-pool start-up), which matters at 0.25 s per cell.
    """
    x = np.asarray(samples, np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if init is not None:
        centres, assign, _ = _lloyd(x, np.asarray(init, np.float64).reshape(k, -1), max_iter, tol)
        return centres, assign
    rng = np.random.default_rng(seed)
    best = None
    for _ in range(n_init):
        result = _lloyd(x, _kmeans_pp_init(x, k, rng), max_iter, tol)
        if best is None or result[2] < best[2]:
            best = result
    return best[0], best[1]


def _fit_sample(v: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return v if v.size <= FIT_SAMPLE else v[rng.choice(v.size, FIT_SAMPLE, replace=False)]


def group(values: np.ndarray, n_groups: int = 3, method: str = "gmm", thresholds=None,
          seed: int = 0) -> np.ndarray:
    """Group a heatmap's pixels into ``n_groups`` ordered by mean relevance (uint8 map, same shape).

    ``method``: "threshold" (``thresholds`` given, default 1/3 and 2/3 for 3 groups, 0.5 for 2),
    "kmeans" (k = n_groups), "gmm" (n_groups Gaussian components), "intermeans".
    A constant heatmap returns all zeros (no structure to group).
    """
    if method not in GROUPINGS:
        raise GroupingError(f"unknown grouping {method!r}; choose one of {', '.join(GROUPINGS)}")
    if n_groups not in (2, 3):
        raise GroupingError("n_groups must be 2 or 3")
    values = np.nan_to_num(np.asarray(values, np.float32))
    shape = values.shape
    v = values.ravel().astype(np.float64)
    if v.size == 0:
        raise GroupingError("empty heatmap")
    if np.ptp(v) <= 1e-12:
        return np.zeros(shape, np.uint8)
    rng = np.random.default_rng(seed)
    if method == "threshold":
        if thresholds is None:
            thresholds = (1 / 3, 2 / 3) if n_groups == 3 else (0.5,)
        if len(np.atleast_1d(thresholds)) != n_groups - 1:
            raise GroupingError(f"{n_groups} groups need {n_groups - 1} thresholds")
        return threshold_groups(values, thresholds).reshape(shape)
    if method == "intermeans":
        t = intermeans_thresholds(v, n_groups)
        return np.searchsorted(t, values, side="right").astype(np.uint8)
    n_distinct = np.unique(_fit_sample(v, rng)).size
    k = min(n_groups, n_distinct)
    sample = _fit_sample(v, rng)[:, None]
    # k-means++ restarts, not quantile starts: a small nucleus (a few % of the pixels) would
    # otherwise get no centre of its own
    centres, _ = kmeans(sample, k, seed=seed, n_init=4)
    if method == "kmeans":
        # 1D: assign each pixel to the nearest centre
        assign = np.abs(v[:, None] - centres.ravel()[None]).argmin(1)
    else:  # gmm, started from the k-means centres
        from sklearn.mixture import GaussianMixture

        gmm = GaussianMixture(n_components=k, covariance_type="full", means_init=np.sort(centres, 0),
                              random_state=seed, reg_covar=1e-5).fit(sample)
        assign = gmm.predict(v[:, None])
    ordered = _order_by_mean(v, assign, k)
    if k < n_groups:  # fewer distinct values than groups: keep the top group on top
        ordered = ordered + (n_groups - k)
    return ordered.reshape(shape).astype(np.uint8)
