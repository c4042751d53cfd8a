"""Tiled VAE decoding (models/vae.py) on a tiny AutoencoderKL with SD's layout (GroupNorm, mid-block attention).

Oracles: each tile decoded alone by diffusers' own ``vae.decode`` (a tiled decode must be made of exactly those
pixels, cross-faded where tiles overlap) and the whole-image decode (which a tiled decode approximates: each
tile has its own GroupNorm statistics and attention, so it differs smoothly, without seams).
"""

import itertools

import pytest
import torch
from diffusers import AutoencoderKL

import checkpoint_fixtures as fx
from glassforge.models import vae as vae_module
from glassforge.models.vae import _tile_starts, decode, decode_tiled

TILE, OVERLAP = 32, 8  # latent cells; the tiny VAE has 2 levels, so 2 pixels per cell


@pytest.fixture(scope="module")
def vae():
    torch.manual_seed(0)
    return AutoencoderKL(**{**fx.TINY_VAE, "norm_num_groups": 8}).eval()


@pytest.fixture(scope="module")
def latent():
    return torch.randn(1, 4, 40, 72, generator=torch.Generator().manual_seed(3))


@pytest.fixture(scope="module")
def decoded(vae, latent):
    with torch.no_grad():
        full = vae.decode(latent).sample
        tiled = decode_tiled(vae, latent, TILE, OVERLAP)
    return full, tiled


def _tiles(vae, latent):
    """Every tile decoded alone: {(y, x) latent start: pixels}, and the tile size (h, w) in cells."""
    ys, hs = _tile_starts(latent.shape[-2], TILE, OVERLAP)
    xs, ws = _tile_starts(latent.shape[-1], TILE, OVERLAP)
    with torch.no_grad():
        tiles = {(y, x): vae.decode(latent[..., y : y + hs, x : x + ws]).sample for y in ys for x in xs}
    return tiles, (hs, ws)


def test_tile_layout_covers_the_latent_with_the_asked_overlap():
    for length in (33, 40, 72, 97, 200):
        starts, size = _tile_starts(length, TILE, OVERLAP)
        assert size <= TILE and starts[0] == 0 and starts[-1] + size == length
        assert all(b - a <= size - OVERLAP for a, b in itertools.pairwise(starts))
    assert _tile_starts(30, TILE, OVERLAP) == ([0], 30)


def test_tiled_decode_is_the_tiles_own_pixels_cross_faded_in_the_overlaps(vae, latent, decoded):
    _, tiled = decoded
    tiles, (hs, ws) = _tiles(vae, latent)
    f = 2
    coverage = torch.zeros(tiled.shape[-2:], dtype=torch.int64)
    for y, x in tiles:
        coverage[y * f : (y + hs) * f, x * f : (x + ws) * f] += 1
    lo = torch.full_like(tiled, float("inf"))
    hi = torch.full_like(tiled, float("-inf"))
    for (y, x), pixels in tiles.items():
        window = (..., slice(y * f, (y + hs) * f), slice(x * f, (x + ws) * f))
        lo[window] = torch.minimum(lo[window], pixels)
        hi[window] = torch.maximum(hi[window], pixels)
        alone = (coverage[window[1:]] == 1).expand_as(pixels)
        # where one tile covers a pixel, the tiled decode is that tile's decode
        torch.testing.assert_close(tiled[window][alone], pixels[alone], rtol=0, atol=1e-5)
    # where tiles overlap, every pixel is a convex combination of the tiles covering it
    assert (coverage > 1).any()
    assert (tiled >= lo - 1e-5).all() and (tiled <= hi + 1e-5).all()
    # the cross-fade starts on the earlier tile and ends on the later one: at the first column of the
    # second tile column, the result is still the first tile's pixel; at the last shared column, the second's
    (y0, x0), (_, x1) = (0, 0), (0, sorted({x for _, x in tiles})[1])
    first, second = tiles[(y0, x0)], tiles[(y0, x1)]
    rows = slice(0, (TILE // 2) * f)  # rows covered by the first tile row only
    start, end = x1 * f, (x0 + ws) * f  # shared pixel columns [start, end)
    torch.testing.assert_close(tiled[..., rows, start], first[..., rows, start], rtol=0, atol=1e-5)
    torch.testing.assert_close(
        tiled[..., rows, end - 1], second[..., rows, end - 1 - start], rtol=0, atol=1e-5
    )


def test_tiled_decode_matches_the_whole_decode_without_seams(vae, latent, decoded):
    full, tiled = decoded
    error = tiled - full
    # close to the whole decode: the tiles' own GroupNorm statistics and attention are the only difference
    assert error.abs().mean() < 0.03 and error.abs().max() < 0.3
    # no seams: across each overlap, the error changes less from one pixel column to the next than where
    # a hard cut between the same two tiles would jump (top rows, covered by the first tile row only)
    tiles, (_, ws) = _tiles(vae, latent)
    xs = sorted({x for _, x in tiles})
    f, rows = 2, slice(0, 16 * 2)
    for left, right in itertools.pairwise(xs):
        band = slice(right * f, (left + ws) * f)  # the shared pixel columns
        cut = (band.start + band.stop) // 2
        hard = torch.cat(
            [tiles[(0, left)][..., rows, : cut - left * f], tiles[(0, right)][..., rows, cut - right * f :]],
            -1,
        )[..., band.start - left * f : band.stop - left * f]

        def worst_jump(image, band=band):
            e = image - full[..., rows, band]
            return (e[..., 1:] - e[..., :-1]).abs().mean(dim=(0, 1, 2)).max()

        assert worst_jump(tiled[..., rows, band]) < 0.9 * worst_jump(hard)


def test_auto_tiles_only_above_the_threshold(vae):
    """The real threshold (more than 128 × 128 latent cells; SD: above 1024 × 1024 pixels) and tile size."""
    assert (vae_module.AUTO_TILE_CELLS, vae_module.TILE, vae_module.OVERLAP) == (128 * 128, 96, 16)
    calls = []
    handle = vae.decoder.register_forward_hook(lambda m, a, o: calls.append(tuple(a[0].shape[-2:])))
    try:
        at = torch.randn(1, 4, 128, 128, generator=torch.Generator().manual_seed(5))
        decode(vae, at, 1.0)
        assert calls == [(128, 128)]  # at the threshold: one whole decode
        calls.clear()
        above = torch.randn(1, 4, 129, 128, generator=torch.Generator().manual_seed(6))
        pixels = decode(vae, above, 1.0)
        assert calls == [(73, 72)] * 4  # above it: 2 × 2 tiles of at most 96 cells
        assert pixels.shape == (1, 3, 258, 256)
        calls.clear()
        decode(vae, above, 1.0, tile=None)
        assert calls == [(129, 128)]
    finally:
        handle.remove()


def test_bad_overlap_is_a_clear_error(vae, latent):
    with pytest.raises(ValueError, match="overlap 12 must be between 0 and a third of the tile size 32"):
        decode_tiled(vae, latent, TILE, 12)
