"""Image -> palette-id grid (spec section 4), including bad inputs."""

import time

import cv2
import numpy as np
import pytest
from PIL import Image

from pxby_lib import pixels as px
from pxby_lib.tokenizer import PALETTE_RGB

BLUE, GREEN = 66, 97  # palette ids of 0000fc and 00b800


def rgb_of(token_id: int) -> tuple[int, int, int]:
    return tuple(int(v) for v in PALETTE_RGB[token_id - 58])


def sprite(h: int = 90, w: int = 80, margin: int = 7) -> np.ndarray:
    """RGBA: transparent margin around an h x w block, top half blue, bottom half green."""
    a = np.zeros((h + 2 * margin, w + 2 * margin + 5, 4), dtype=np.uint8)
    block = a[margin : margin + h, margin : margin + w]
    block[: h // 2] = (*rgb_of(BLUE), 255)
    block[h // 2 :] = (*rgb_of(GREEN), 255)
    return a


def test_target_size_rule():
    assert px.target_size(90, 80, 25) == (25, 22)  # the published Bulbasaur
    assert px.target_size(80, 90, 25) == (22, 25)
    assert px.target_size(60, 60, 25) == (25, 25)
    assert px.target_size(1, 4000, 25) == (1, 25)  # never 0
    assert px.target_size(10, 3, 25) == (25, 7)


def test_nearest_resize_is_opencv_inter_nearest_not_pil():
    col = np.arange(5).reshape(5, 1)
    assert px.nearest_resize(col, 3, 1).ravel().tolist() == [0, 1, 3]  # PIL gives [0, 2, 4]
    for src, dst in [(90, 50), (50, 25), (80, 44), (7, 25), (61, 50), (4000, 44), (3, 10)]:
        img = np.arange(src, dtype=np.float32).reshape(src, 1).repeat(3, axis=1)
        ref = cv2.resize(img, (3, dst), interpolation=cv2.INTER_NEAREST)
        assert np.array_equal(px.nearest_resize(img, dst, 3), ref), (src, dst)


def test_synthetic_sprite_hand_computed():
    grid = px.image_to_grid(Image.fromarray(sprite()))
    assert grid.shape == (25, 22) and grid.dtype == np.uint8
    # final row d <- big row 2d <- content row floor(2d * 90 / 50): rows 0..12 are < 45
    expected = np.full((25, 22), GREEN, dtype=np.uint8)
    expected[:13] = BLUE
    assert np.array_equal(grid, expected)


def test_detached_speck_is_dropped():
    a = sprite()
    a[-1, -1] = (0, 0, 0, 255)  # a one-pixel speck far from the sprite
    grid = px.image_to_grid(Image.fromarray(a))
    assert grid.shape == (25, 22) and set(np.unique(grid)) == {BLUE, GREEN}


def test_white_inside_the_box_maps_to_near_white():
    a = sprite()
    a[30:40, 20:30, 3] = 0  # a transparent hole inside the sprite -> composited white
    grid = px.image_to_grid(Image.fromarray(a))
    assert 59 in grid  # fcfcfc is the nearest palette colour to pure white


def test_gray_uses_reference_bgr_weights():
    # pale yellow: gray 238.6 with the reference's swapped weights (content), 248 with the
    # standard ones; pale cyan: the reverse. The quirk decides what is cropped.
    yellow = np.zeros((20, 20, 4), np.uint8)
    yellow[5:15, 5:15] = (255, 255, 200, 255)
    assert px.image_to_grid(Image.fromarray(yellow)).shape == (25, 25)
    cyan = yellow.copy()
    cyan[5:15, 5:15] = (200, 255, 255, 255)
    with pytest.raises(px.ImageError, match="no content"):
        px.image_to_grid(Image.fromarray(cyan), name="cyan")


def test_lab_and_palette_match():
    lab = px.srgb_to_lab(np.array([[255, 255, 255], [0, 0, 0], [255, 0, 0]], np.uint8))
    np.testing.assert_allclose(lab, [[100, 0, 0], [0, 0, 0], [53.24, 80.09, 67.20]], atol=0.02)
    ids = px.nearest_palette_ids(PALETTE_RGB[None])  # every palette colour is its own match
    assert ids.ravel().tolist() == list(range(58, 113))
    assert px.nearest_palette_ids(np.array([[[250, 250, 250], [5, 0, 3]]], np.uint8)).tolist() == [[59, 58]]


def test_kmeans_only_above_55_colours_and_seeded():
    rng = np.random.default_rng(0)
    noisy = rng.integers(0, 256, (60, 50, 3), dtype=np.uint8)  # thousands of colours
    a = px.image_to_grid(Image.fromarray(noisy), seed=3)
    b = px.image_to_grid(Image.fromarray(noisy), seed=3)
    assert np.array_equal(a, b) and a.shape == (25, 20)
    assert ((a >= 58) & (a <= 112)).all()
    # 40 colours: no k-means, so the grid is the plain nearest-palette map of the resize
    few = PALETTE_RGB[rng.integers(0, 40, (50, 50))]
    grid = px.image_to_grid(Image.fromarray(few))
    assert np.array_equal(grid, px.nearest_palette_ids(px.nearest_resize(few, 25, 25)))


def test_grid_to_rgb():
    grid = np.array([[58, 59], [112, 66]], np.uint8)
    rgb = px.grid_to_rgb(grid)
    assert rgb.shape == (2, 2, 3) and rgb[1, 1].tolist() == [0, 0, 0xFC]
    with pytest.raises(ValueError, match="not palette colours"):
        px.grid_to_rgb(np.array([[58, 3]]))
    assert px.grid_to_rgb(np.array([[58, 3]]), fill=(9, 9, 9))[0, 1].tolist() == [9, 9, 9]


# ----------------------------------------------------------------------------- bad input


def test_corrupt_file_names_item_and_reason(tmp_path):
    bad = tmp_path / "042.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    with pytest.raises(px.ImageError, match=r"042\.png: cannot read image file"):
        px.image_to_grid(bad)
    with pytest.raises(px.ImageError, match="pokemon 042: cannot read"):
        px.image_to_grid(bad, name="pokemon 042")


def test_one_by_one_images():
    dark = Image.new("RGB", (1, 1), (0, 0, 250))
    assert np.array_equal(px.image_to_grid(dark), np.full((25, 25), BLUE))  # upscaled
    with pytest.raises(px.ImageError, match="no content"):
        px.image_to_grid(Image.new("RGBA", (1, 1), (0, 0, 0, 0)))


def test_fully_transparent_image():
    with pytest.raises(px.ImageError, match="tiny: no content"):
        px.image_to_grid(Image.new("RGBA", (64, 64), (10, 10, 10, 0)), name="tiny")


def test_huge_image_is_fast():
    a = np.zeros((4000, 4000, 4), np.uint8)
    a[500:3500, 1000:3000] = (*rgb_of(GREEN), 255)
    a[500:1000, 1000:3000] = (*rgb_of(BLUE), 255)
    im = Image.fromarray(a)
    t0 = time.perf_counter()
    grid = px.image_to_grid(im)
    assert time.perf_counter() - t0 < 5.0
    assert grid.shape == (25, 16)  # 3000 x 2000 content
    assert set(np.unique(grid[:4])) == {BLUE} and set(np.unique(grid[5:])) == {GREEN}


def test_grayscale_l_mode(tmp_path):
    a = np.full((30, 30), 255, np.uint8)
    a[5:25, 10:20] = 0x7C
    path = tmp_path / "gray.png"
    Image.fromarray(a, mode="L").save(path)
    grid = px.image_to_grid(path)
    assert grid.shape == (25, 12) and set(np.unique(grid)) == {62}  # 7c7c7c


def test_16_bit_png_is_scaled_not_clipped(tmp_path):
    a16 = np.full((30, 30), 65535, np.uint16)
    a16[5:25, 10:20] = 0x7C * 257  # 16-bit version of 0x7c
    path = tmp_path / "gray16.png"
    Image.fromarray(a16).save(path)
    assert Image.open(path).mode.startswith("I")
    grid = px.image_to_grid(path)
    assert grid.shape == (25, 12) and set(np.unique(grid)) == {62}


def test_palette_png_with_transparency(tmp_path):
    rgba = sprite()
    reference = px.image_to_grid(Image.fromarray(rgba))
    pal = Image.fromarray(rgba).quantize(colors=3, method=Image.Quantize.FASTOCTREE)
    path = tmp_path / "pal.png"
    pal.save(path)
    with Image.open(path) as im:
        assert im.mode == "P"
    assert np.array_equal(px.image_to_grid(path), reference)


def test_not_an_image():
    with pytest.raises(px.ImageError, match="expected a PIL image"):
        px.image_to_grid(np.zeros((3, 3)), name="array")


@pytest.mark.slow
def test_real_sprites_sample(raw_data):
    for i in (1, 25, 150, 649):
        grid = px.image_to_grid(raw_data / "sprites" / f"{i:03d}.png", name=f"pokemon {i}")
        assert max(grid.shape) == 25 and ((grid >= 58) & (grid <= 112)).all()
