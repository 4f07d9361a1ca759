"""pull_push_fill: exact known pixels, hole invariance, exact on what a harmonic fill reproduces."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from pconv.baselines import fill
from pconv.fill import pull_push_fill


def _holes(seed: int, b: int = 2, size: int = 64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    mask = (torch.rand(b, 1, size, size, generator=g) > 0.15).float()
    mask[:, :, 10:30, 20:28] = 0
    return mask


@pytest.mark.parametrize("biharmonic", [False, True])
def test_known_pixels_exact_and_holes_do_not_matter(biharmonic):
    image = torch.rand(2, 3, 64, 64)
    mask = _holes(0)
    out = pull_push_fill(image, mask, biharmonic=biharmonic)
    assert torch.equal(out * mask, image * mask)
    for junk in (torch.zeros_like(image), torch.full_like(image, 1e6), torch.randn_like(image)):
        assert torch.equal(pull_push_fill(torch.where(mask > 0, image, junk), mask, biharmonic=biharmonic), out)


def test_constant_and_linear_images_are_filled_exactly_in_thin_holes():
    """A harmonic fill reproduces a constant everywhere, and a linear ramp in one-pixel holes
    (the mean of the four neighbours of a linear function is its value)."""
    mask = _holes(1)
    const = torch.full((2, 3, 64, 64), 0.3)
    torch.testing.assert_close(pull_push_fill(const, mask), const)
    yy, xx = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    ramp = (0.2 + 0.01 * xx + 0.005 * yy).expand(1, 3, 64, 64)
    specks = torch.ones(1, 1, 64, 64)
    specks[0, 0, 5:60:6, 5:60:7] = 0  # isolated one-pixel holes, away from the border
    torch.testing.assert_close(pull_push_fill(ramp, specks), ramp, atol=1e-5, rtol=0)


def test_all_hole_and_multichannel_masks():
    image = torch.rand(1, 3, 32, 32)
    out = pull_push_fill(image, torch.zeros(1, 1, 32, 32))
    assert torch.isfinite(out).all()
    m3 = (torch.rand(1, 3, 32, 32) > 0.3).float()
    out3 = pull_push_fill(image, m3)
    assert torch.equal(out3 * m3, image * m3)
    for c in range(3):  # each channel is the one-channel fill under its own mask
        torch.testing.assert_close(out3[:, c:c + 1], pull_push_fill(image[:, c:c + 1], m3[:, c:c + 1]))


@pytest.mark.parametrize("method", ["pullpush", "pullpush-bh"])
def test_pullpush_baseline_is_exact_outside_and_bounded(method):
    rng = np.random.default_rng(0)
    image = (rng.random((48, 40, 3)) * 255).astype(np.uint8)
    hole = np.zeros((48, 40), bool)
    hole[10:20, 5:15] = True
    out = fill(method, image, hole)
    assert out.dtype == np.uint8 and np.array_equal(out[~hole], image[~hole])
    inside = out[hole].astype(float)
    if method == "pullpush":  # a weighted mean: no overshoot (biharmonic steps may overshoot a little)
        assert inside.min() >= image[~hole].min() and inside.max() <= image[~hole].max()
    else:
        assert not np.array_equal(out, fill("pullpush", image, hole))


def test_fixed_levels_and_their_error():
    from pconv.errors import PConvError

    image, mask = torch.rand(1, 3, 32, 48), _holes(2, 1, 32)[..., :32].repeat(1, 1, 1, 2)[..., :48]
    full = pull_push_fill(image, mask)  # pools while it can: 32x48 -> 1x... stops at an odd side
    assert torch.equal(pull_push_fill(image, mask, levels=4), full)  # 32x48 -> 2x3: all it can do
    out = pull_push_fill(image, mask, levels=2)
    assert torch.equal(out * mask, image * mask)
    with pytest.raises(PConvError, match="multiples of 2\\*\\*levels"):
        pull_push_fill(image, mask, levels=5)


def _laplace_step(f):
    p = torch.nn.functional.pad(f, (1, 1, 1, 1), mode="replicate")
    return (p[..., :-2, 1:-1] + p[..., 2:, 1:-1] + p[..., 1:-1, :-2] + p[..., 1:-1, 2:]) * 0.25


def _lap(f):
    return 4 * _laplace_step(f) - 4 * f


@pytest.mark.parametrize("shape, mask_channels, hole_fraction",
                         [((2, 3, 37, 53), 1, 0.1), ((1, 3, 24, 24), 3, 0.1), ((1, 2, 1, 9), 1, 0.3),
                          ((1, 1, 5, 1), 1, 0.3), ((2, 3, 16, 20), 1, 0.9), ((1, 3, 6, 6), 3, 1.0)])
@pytest.mark.parametrize("biharmonic", [False, True])
def test_sparse_steps_equal_the_dense_stencil(shape, mask_channels, hole_fraction, biharmonic):
    """A level's steps run as sparse products over the free pixels; they must give what the
    stencils written out here give (edges replicated), to float rounding, for one-channel and
    per-channel masks, sparse and dense holes, one-pixel-wide images; fixed pixels exactly."""
    import pconv.fill as fl

    g = torch.Generator().manual_seed(3)
    f = torch.rand(*shape, generator=g)
    fixed = torch.rand(shape[0], mask_channels, *shape[2:], generator=g) >= hole_fraction
    fixed[..., 0, 0] = False  # a free corner pixel
    free = (~fixed).expand_as(f)
    dense = f
    for _ in range(7):
        dense = torch.where(free, _laplace_step(dense), dense)
    if biharmonic:
        for _ in range(7):
            dense = torch.where(free, dense - fl._BIHARMONIC_OMEGA / 20 * _lap(_lap(dense)), dense)
    sparse = fl._relax_sparse(f, fixed, 7, biharmonic)
    torch.testing.assert_close(sparse, dense, atol=2e-6, rtol=0)
    assert torch.equal(sparse[~free], f[~free])
    stencil = fl._relax(f, fixed, 7)  # the dense path (a traced graph runs it as convolutions)
    torch.testing.assert_close(fl._relax_biharmonic(stencil, fixed, 7) if biharmonic else stencil, dense,
                               atol=2e-6, rtol=0)


def test_dense_path_above_the_free_pixel_limit(monkeypatch):
    """Too many free values for the sparse matrices: the level falls back to the dense stencil."""
    import pconv.fill as fl

    image, mask = torch.rand(1, 3, 32, 32), _holes(5, 1, 32)
    sparse = pull_push_fill(image, mask, biharmonic=True)
    monkeypatch.setattr(fl, "_MAX_FREE", 0)
    assert fl._relax_sparse(image, mask > 0.5, 3, True) is None
    torch.testing.assert_close(pull_push_fill(image, mask, biharmonic=True), sparse, atol=2e-6, rtol=0)


def test_biharmonic_steps_reproduce_a_quadratic_in_one_pixel_holes():
    """Δ² of a quadratic is 0, so the biharmonic steps fill one-pixel holes in x² + y² exactly; the
    Laplace fill alone misses by the quadratic's curvature (Δ(x²+y²) = 4: 1/4 of it per pixel)."""
    yy, xx = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    quad = (((xx - 30) ** 2 + (yy - 25) ** 2) / 4096).expand(1, 1, 64, 64)
    specks = torch.ones(1, 1, 64, 64)
    specks[0, 0, 5:60:6, 5:60:7] = 0
    holes = specks == 0
    laplace = pull_push_fill(quad, specks)
    torch.testing.assert_close(laplace[holes], quad[holes] + 1 / 4096, atol=1e-6, rtol=0)
    torch.testing.assert_close(pull_push_fill(quad, specks, biharmonic=True)[holes], quad[holes], atol=1e-6, rtol=0)


def test_biharmonic_fill_stays_bounded_in_large_holes():
    """The damped steps converge: a large hole stays finite and near the range of its border."""
    image = torch.rand(1, 3, 64, 64)
    mask = torch.ones(1, 1, 64, 64)
    mask[..., 8:56, 4:60] = 0
    out = pull_push_fill(image, mask, biharmonic=True)
    assert torch.isfinite(out).all()
    assert out.min() > -0.25 and out.max() < 1.25


def test_upsampling_is_bilinear_and_the_fill_does_not_depend_on_the_thread_count():
    """The pyramid's 2× upsampling equals PyTorch's bilinear to float rounding, and the fill comes out
    bit for bit the same with 1 and 2 threads (PyTorch's CPU bilinear kernel does not: it made a
    2-process run's outputs differ from a 2-thread process's by a grey level)."""
    import torch.nn.functional as F

    from pconv.fill import _upsample2x

    for shape in [(1, 3, 64, 64), (2, 3, 5, 7), (1, 1, 1, 4)]:
        f = torch.rand(shape)
        ref = F.interpolate(f, scale_factor=2, mode="bilinear", align_corners=False)
        torch.testing.assert_close(_upsample2x(f), ref, atol=2.5e-7, rtol=0)
    image, mask = torch.rand(1, 3, 128, 128), _holes(3, b=1, size=128)
    threads = torch.get_num_threads()
    try:
        outs = []
        for n in (1, 2):
            torch.set_num_threads(n)
            outs.append(pull_push_fill(image, mask, levels=7, biharmonic=True))
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(outs[0], outs[1])


def test_an_empty_coarsest_cell_starts_from_the_mean_valid_value():
    """A hole covering a whole coarsest cell: without relaxation, a constant photo is filled exactly.

    The coarsest empty cell takes the image's mean valid value; were it 0, the fill would darken.
    """
    image = torch.full((1, 3, 64, 64), 0.7)
    mask = torch.ones(1, 1, 64, 64)
    mask[..., 32:, 32:] = 0  # exactly one cell of the 2x2 coarsest level (levels=5)
    out = pull_push_fill(image, mask, iterations=0, fine_iterations=0, levels=5)
    torch.testing.assert_close(out, image)
