"""Image -> grid of palette ids (spec section 4, `max_size` 25 made the published data).

Pipeline: load -> composite RGBA on white -> crop to the largest content region ->
nearest resize to twice the target size -> k-means to 55 colours in Lab (only when the
image has more than 55 colours) -> nearest resize to the target size -> nearest palette
colour in CIELAB.

Decisions, all deliberate:
- Content mask: the reference calls OpenCV's BGR->gray on an RGB array, so its gray value
  weights R by 0.114 and B by 0.299 (swapped). We keep that quirk (it decides which light
  pixels count as content, hence the crop of the published data); content = gray <= 240.
- Crop: bounding box of OpenCV's largest external contour by `cv2.contourArea`, as the
  reference, so detached specks are dropped (ties, e.g. all areas 0, take the first).
- Sizing uses the CROPPED content (h, w): longer side = max_size, shorter =
  floor(short * max_size / long), at least 1. The reference code at the preprint commit
  measures h, w before the crop and doubles the height when h <= w; those bugs are NOT
  copied (an earlier version without them made the published dataset).
- Nearest resize is OpenCV's INTER_NEAREST rule, destination d <- source
  floor(d * src / dst), done by numpy indexing (not PIL's NEAREST, which samples pixel
  centres). The product is evaluated in double precision exactly as OpenCV does, so at
  exact integers it can land one lower than integer arithmetic (90 -> 50: d = 15 takes
  26, not 27); we match OpenCV bit for bit, as the published data was made with it.
- K-means (OpenCV 8-bit Lab, 100 iterations or eps 0.2, 10 attempts, random centres,
  centres cast to uint8) runs only when there are more than 55 distinct colours: pixel art
  with fewer gains nothing from it. Where it runs it is seeded with `cv2.setRNGSeed(seed)`
  (the reference is unseeded). Both are deviations of this project.
- Palette match: Euclidean distance in CIELAB computed in float from sRGB with the D65
  white point (IEC 61966-2-1 linearisation, the standard sRGB->XYZ matrix, CIE 1976 Lab).
- RGBA is composited on white with integer rounding: (c*a + 255*(255-a) + 127) // 255.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from pxby_lib.tokenizer import FIRST_COLOR_ID, PALETTE_RGB, is_color

CONTENT_MAX_GRAY = 240
N_KMEANS_COLORS = 55


class ImageError(ValueError):
    """An image that cannot become a pixel grid; the message names the item and why."""


def _load_rgba(image: Image.Image | str | Path, name: str) -> np.ndarray:
    """Any PIL mode -> (H, W, 4) uint8; 16-bit grays are scaled, not clipped."""
    if isinstance(image, (str, Path)):
        try:
            with Image.open(image) as im:
                im.load()
                return _load_rgba(im, name)
        except ImageError:
            raise
        except Exception as exc:  # PIL raises several types for unreadable files
            raise ImageError(f"{name}: cannot read image file ({exc})") from exc
    if not isinstance(image, Image.Image):
        raise ImageError(f"{name}: expected a PIL image or a path, got {type(image).__name__}")
    if image.width < 1 or image.height < 1:
        raise ImageError(f"{name}: empty image ({image.width}x{image.height})")
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        gray = np.asarray(image).astype(np.float64) / 257.0  # 0..65535 -> 0..255
        gray = np.clip(np.rint(gray), 0, 255).astype(np.uint8)
        return np.dstack([gray, gray, gray, np.full_like(gray, 255)])
    if image.mode == "F":
        raise ImageError(f"{name}: float images (mode F) are not supported; save as 8-bit")
    try:
        return np.asarray(image.convert("RGBA"))
    except Exception as exc:
        raise ImageError(f"{name}: cannot convert mode {image.mode} to RGBA ({exc})") from exc


def composite_on_white(rgba: np.ndarray) -> np.ndarray:
    """(H, W, 4) uint8 -> (H, W, 3) uint8 over a white background."""
    alpha = rgba[..., 3]
    out = np.where((alpha == 0)[..., None], np.uint8(255), rgba[..., :3])  # (H, W, 3)
    partial = (alpha > 0) & (alpha < 255)  # blend only these: a big image stays fast
    if partial.any():
        a = alpha[partial][:, None].astype(np.uint16)  # (n, 1)
        out[partial] = (out[partial] * a + 255 * (255 - a) + 127) // 255
    return out


def content_box(rgb: np.ndarray) -> tuple[int, int, int, int] | None:
    """(y, x, h, w) of the largest content region, or None when there is no content."""
    gray = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_BGR2GRAY)  # quirk: see docstring
    mask = (gray <= CONTENT_MAX_GRAY).astype(np.uint8) * 255
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return None
    x, y, w, h = cv2.boundingRect(max(contours, key=cv2.contourArea))
    return y, x, h, w


def target_size(h: int, w: int, max_size: int) -> tuple[int, int]:
    """Longer side -> max_size, shorter -> floor(short * max_size / long), at least 1."""
    if h >= w:
        return max_size, max(1, w * max_size // h)
    return max(1, h * max_size // w), max_size


def nearest_indices(src: int, dst: int) -> np.ndarray:
    """OpenCV's INTER_NEAREST source index of each destination index: floor(d * src / dst),
    evaluated as OpenCV does, in double precision as d * (1 / (dst / src)); at exact
    integers that can land one lower (90 -> 50: d = 15 takes 26, not 27)."""
    scale = 1.0 / (dst / src)
    return np.minimum(np.floor(np.arange(dst) * scale).astype(np.int64), src - 1)


def nearest_resize(img: np.ndarray, height: int, width: int) -> np.ndarray:
    """cv2.resize(..., INTER_NEAREST) by numpy indexing (same pixels, bit for bit)."""
    rows = nearest_indices(img.shape[0], height)
    cols = nearest_indices(img.shape[1], width)
    return img[rows[:, None], cols[None, :]]


def kmeans_colors(rgb: np.ndarray, k: int = N_KMEANS_COLORS, seed: int = 0) -> np.ndarray:
    """Reduce (H, W, 3) uint8 RGB to k colours by k-means in OpenCV 8-bit Lab (seeded)."""
    lab = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2LAB)
    data = lab.reshape(-1, 3).astype(np.float32)  # (N, 3)
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 100, 0.2)
    cv2.setRNGSeed(seed)
    _, labels, centers = cv2.kmeans(data, k, None, criteria, 10, cv2.KMEANS_RANDOM_CENTERS)
    centers_lab = np.clip(centers, 0, 255).astype(np.uint8)  # the reference casts to uint8
    centers_rgb = cv2.cvtColor(centers_lab[None], cv2.COLOR_LAB2RGB)[0]  # (k, 3)
    return centers_rgb[labels.ravel()].reshape(rgb.shape)


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) uint8 sRGB -> (..., 3) float64 CIELAB, D65 white."""
    c = rgb.astype(np.float64) / 255.0
    lin = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    m = np.array([[0.4124564, 0.3575761, 0.1804375],
                  [0.2126729, 0.7151522, 0.0721750],
                  [0.0193339, 0.1191920, 0.9503041]])
    xyz = lin @ m.T / np.array([0.95047, 1.0, 1.08883])  # normalised by the D65 white
    eps = (6 / 29) ** 3
    f = np.where(xyz > eps, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]),
                     200 * (f[..., 1] - f[..., 2])], axis=-1)


PALETTE_LAB = srgb_to_lab(PALETTE_RGB)  # (55, 3)


def nearest_palette_ids(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 -> (H, W) uint8 palette ids (58..112), nearest in CIELAB."""
    colors, inverse = np.unique(rgb.reshape(-1, 3), axis=0, return_inverse=True)
    dist = np.linalg.norm(srgb_to_lab(colors)[:, None] - PALETTE_LAB[None], axis=-1)
    ids = (FIRST_COLOR_ID + dist.argmin(axis=1)).astype(np.uint8)  # (n_colors,)
    return ids[inverse.ravel()].reshape(rgb.shape[:2])


def image_to_grid(image: Image.Image | str | Path, max_size: int = 25, seed: int = 0,
                  *, name: str | None = None) -> np.ndarray:
    """Image (or path) -> (H, W) uint8 palette ids, max(H, W) == max_size."""
    if name is None:
        name = str(image) if isinstance(image, (str, Path)) else (
            getattr(image, "filename", "") or "<image>")
    if int(max_size) < 1:
        raise ValueError(f"{name}: max_size must be >= 1, got {max_size}")
    rgb = composite_on_white(_load_rgba(image, name))  # (H0, W0, 3)
    box = content_box(rgb)
    if box is None:
        raise ImageError(f"{name}: no content (every pixel is transparent or near-white, "
                         f"gray > {CONTENT_MAX_GRAY})")
    y, x, h, w = box
    height, width = target_size(h, w, int(max_size))
    big = nearest_resize(rgb[y : y + h, x : x + w], 2 * height, 2 * width)  # (2H, 2W, 3)
    packed = big[..., 0].astype(np.uint32) << 16 | big[..., 1].astype(np.uint32) << 8 | big[..., 2]
    if len(np.unique(packed)) > N_KMEANS_COLORS:
        big = kmeans_colors(big, N_KMEANS_COLORS, seed)
    return nearest_palette_ids(nearest_resize(big, height, width))  # (H, W)


def grid_to_rgb(grid: np.ndarray, fill: tuple[int, int, int] | None = None) -> np.ndarray:
    """(H, W) colour ids -> (H, W, 3) uint8. Non-colour ids raise, or take `fill` if given."""
    grid = np.asarray(grid)
    ok = is_color(grid)
    if not ok.all() and fill is None:
        bad = sorted({int(v) for v in grid[~ok]})[:5]
        raise ValueError(f"grid_to_rgb: ids {bad} are not palette colours (58..112)")
    rgb = np.empty((*grid.shape, 3), dtype=np.uint8)
    rgb[ok] = PALETTE_RGB[grid[ok].astype(np.int64) - FIRST_COLOR_ID]
    rgb[~ok] = fill if fill is not None else 0
    return rgb
