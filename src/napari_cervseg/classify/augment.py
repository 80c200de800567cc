"""The paper's eight augmentation sets and its class-balanced multiplication (Sec. III-B).

Sets: (1) translate / scale / random crop resized back, (2) rotation, (3) distortion, (4) CLAHE,
(5) gamma, (6) Gaussian noise or blur, (7) colour adjustment, (8) sharpening. Each abnormal
training image gets one random augmentation from every set (x8), each normal image three from
every set (x24), which balances Herlev's classes. Applied to the training split only, and
deterministic given the generator's seed.

Parameter ranges are ours (the paper names the transformations, not their strengths): strong
enough to change the image visibly, mild enough to keep a cell a cell.
"""

from __future__ import annotations

import cv2
import numpy as np

ABNORMAL_PER_SET = 1
NORMAL_PER_SET = 3


def _warp(img: np.ndarray, mat: np.ndarray) -> np.ndarray:
    h, w = img.shape[:2]
    return cv2.warpAffine(np.ascontiguousarray(img), mat, (w, h), borderMode=cv2.BORDER_REFLECT101)


def translate_scale_crop(img, rng):
    """(1) a random crop of 70-95 % of the side, resized back, shifted by up to 8 %."""
    h, w = img.shape[:2]
    frac = rng.uniform(0.7, 0.95)
    ch, cw = max(2, int(h * frac)), max(2, int(w * frac))
    y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    out = cv2.resize(img[y:y + ch, x:x + cw], (w, h), interpolation=cv2.INTER_LINEAR)
    mat = np.float32([[1, 0, rng.uniform(-0.08, 0.08) * w], [0, 1, rng.uniform(-0.08, 0.08) * h]])
    return _warp(out, mat)


def rotate(img, rng):
    """(2) a rotation by 15-345 degrees about the centre."""
    h, w = img.shape[:2]
    return _warp(img, cv2.getRotationMatrix2D((w / 2, h / 2), rng.uniform(15, 345), 1.0))


def distort(img, rng):
    """(3) a smooth random displacement field (elastic distortion) or a perspective tilt."""
    h, w = img.shape[:2]
    if rng.random() < 0.5:
        src = np.float32([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]])
        dst = src + rng.uniform(-0.08, 0.08, src.shape).astype(np.float32) * np.float32([w, h])
        return cv2.warpPerspective(np.ascontiguousarray(img), cv2.getPerspectiveTransform(src, dst), (w, h),
                                   borderMode=cv2.BORDER_REFLECT101)
    sigma, alpha = 0.08 * max(h, w), 0.04 * max(h, w)
    dx = cv2.GaussianBlur(rng.uniform(-1, 1, (h, w)).astype(np.float32), (0, 0), sigma)
    dy = cv2.GaussianBlur(rng.uniform(-1, 1, (h, w)).astype(np.float32), (0, 0), sigma)
    dx *= alpha / max(np.abs(dx).max(), 1e-6)
    dy *= alpha / max(np.abs(dy).max(), 1e-6)
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return cv2.remap(np.ascontiguousarray(img), xs + dx, ys + dy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)


def clahe(img, rng):
    """(4) CLAHE on the Lab lightness (clip limit 1.5-4, 4x4 or 8x8 tiles)."""
    tiles = int(rng.choice([4, 8]))
    op = cv2.createCLAHE(clipLimit=float(rng.uniform(1.5, 4.0)), tileGridSize=(tiles, tiles))
    lab = cv2.cvtColor(img, cv2.COLOR_RGB2Lab)
    lab[..., 0] = op.apply(lab[..., 0])
    return cv2.cvtColor(lab, cv2.COLOR_Lab2RGB)


def gamma(img, rng):
    """(5) a gamma of 0.6-0.9 or 1.1-1.6 (brighter or darker)."""
    g = rng.uniform(0.6, 0.9) if rng.random() < 0.5 else rng.uniform(1.1, 1.6)
    lut = np.clip(255.0 * (np.arange(256) / 255.0) ** g, 0, 255).astype(np.uint8)
    return cv2.LUT(img, lut)


def noise_or_blur(img, rng):
    """(6) Gaussian noise (sigma 4-15 grey levels) or Gaussian blur (sigma 0.6-1.5 px)."""
    if rng.random() < 0.5:
        noisy = img.astype(np.float32) + rng.normal(0, rng.uniform(4, 15), img.shape).astype(np.float32)
        return np.clip(noisy, 0, 255).astype(np.uint8)
    return cv2.GaussianBlur(img, (0, 0), float(rng.uniform(0.6, 1.5)))


def colour(img, rng):
    """(7) hue shift (up to 10 degrees), saturation x0.7-1.3, brightness x0.85-1.15."""
    hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV).astype(np.float32)
    hsv[..., 0] = (hsv[..., 0] + rng.uniform(-5, 5)) % 180  # OpenCV hue is 0-180
    hsv[..., 1] *= rng.uniform(0.7, 1.3)
    hsv[..., 2] *= rng.uniform(0.85, 1.15)
    return cv2.cvtColor(np.clip(hsv, 0, 255).astype(np.uint8), cv2.COLOR_HSV2RGB)


def sharpen(img, rng):
    """(8) unsharp masking (amount 0.5-1.5, radius 1-2 px)."""
    blurred = cv2.GaussianBlur(img, (0, 0), float(rng.uniform(1.0, 2.0)))
    amount = rng.uniform(0.5, 1.5)
    return cv2.addWeighted(img, 1 + amount, blurred, -amount, 0)


#: the eight sets, in the paper's order
AUGMENTATION_SETS = (translate_scale_crop, rotate, distort, clahe, gamma, noise_or_blur, colour, sharpen)


def paper_augment(images: np.ndarray, labels: np.ndarray, seed: int = 0, abnormal_label: int = 1,
                  abnormal_per_set: int = ABNORMAL_PER_SET, normal_per_set: int = NORMAL_PER_SET):
    """The augmented training set: every abnormal image ``abnormal_per_set`` times through every set
    (x8), every normal image ``normal_per_set`` times (x24). Returns ``(images, labels, set_index)``
    (uint8 RGB, same size as the input); the originals are not included, as in the paper."""
    rng = np.random.default_rng(seed)
    out_images, out_labels, out_sets = [], [], []
    for img, label in zip(images, labels, strict=False):
        repeats = abnormal_per_set if int(label) == abnormal_label else normal_per_set
        for set_index, augment in enumerate(AUGMENTATION_SETS):
            for _ in range(repeats):
                out_images.append(augment(np.ascontiguousarray(img), rng))
                out_labels.append(int(label))
                out_sets.append(set_index)
    return np.stack(out_images), np.array(out_labels), np.array(out_sets)
