"""The 3-D model families: shapes, parameter counts and receptive fields as documented, untrained = cubic."""

from __future__ import annotations

import pytest
import torch

from medsr.models import MODELS, DeepResolve3d, Shuffle3d
from medsr.models.interp import cubic_weights, linear_weights, resample_last, upscale_positions
from medsr.models.shuffle3d import shuffle_last
from medsr.runtime.sliding import halo

CASES = [
    ("deepresolve3d", {"features": 6, "depth": 4}),
    ("shuffle3d", {"features": 6, "blocks": 2, "factor": 4}),
    ("shuffle3d", {"features": 6, "blocks": 0, "factor": 2}),
]


def _noisy(name: str, args: dict) -> torch.nn.Module:
    torch.manual_seed(1)
    model = MODELS[name](**args)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.1)
    return model.eval()


@pytest.mark.parametrize(("name", "args"), CASES)
@pytest.mark.parametrize(
    ("batch", "size", "m", "n"), [(1, (9, 7), 5, 20), (2, (8, 8), 6, 15), (1, (5, 11), 4, 4)]
)
def test_train_models_shapes(name: str, args: dict, batch: int, size: tuple, m: int, n: int) -> None:
    model = _noisy(name, args)
    out = model(torch.randn(batch, 1, *size, m), upscale_positions(m, n))
    assert out.shape == (batch, 1, *size, n) and torch.isfinite(out).all()


def test_train_models_parameter_counts_match_docstrings() -> None:
    def count(model: torch.nn.Module) -> int:
        return sum(p.numel() for p in model.parameters())

    assert count(DeepResolve3d()) == 167_841
    assert count(Shuffle3d()) == 225_796
    for f, d in ((8, 3), (16, 5)):
        assert count(DeepResolve3d(f, d)) == 28 * f + (d - 2) * (27 * f * f + f) + 27 * f + 1
    for r, f, b in ((2, 8, 1), (5, 12, 3)):
        assert count(Shuffle3d(r, f, b)) == 28 * f + b * (54 * f * f + 2 * f) + 27 * f * r + r


@pytest.mark.parametrize(
    ("name", "args", "radius"),
    [
        ("deepresolve3d", {"features": 4, "depth": 5}, 5),
        ("shuffle3d", {"features": 4, "blocks": 2, "factor": 3}, 6),
    ],
)
def test_train_models_receptive_field(name: str, args: dict, radius: int) -> None:
    """One changed input voxel changes outputs at most ``radius`` voxels away in-plane (docstring claims
    2 depth + 1 and 2 (2 blocks + 2) + 1 voxels), and reaches exactly that far with random weights."""
    model = _noisy(name, args)
    assert halo(model) == radius
    x = torch.randn(1, 1, 25, 25, 8)
    pos = upscale_positions(8, 24)
    y = x.clone()
    y[0, 0, 12, 12, 4] += 5.0
    with torch.no_grad():
        changed = (model(y, pos) - model(x, pos)).abs().amax(dim=(0, 1, 3, 4)) > 1e-6
    reach = torch.nonzero(changed).flatten()
    assert int(reach.min()) == 12 - radius and int(reach.max()) == 12 + radius


@pytest.mark.parametrize(("name", "args"), CASES)
def test_train_models_untrained_is_cubic(name: str, args: dict) -> None:
    model = MODELS[name](**args)
    x = torch.randn(2, 1, 6, 5, 7)
    pos = torch.linspace(-0.4, 6.4, 23)
    with torch.no_grad():
        torch.testing.assert_close(model(x, pos), resample_last(x, cubic_weights(pos, 7)))


def test_train_models_shuffle_order_and_exact_placement() -> None:
    x = torch.arange(2 * 3 * 4, dtype=torch.float32).reshape(1, 3, 1, 2, 4)  # factor 3, 4 slices
    out = shuffle_last(x, 3)
    assert out.shape == (1, 1, 1, 2, 12)
    assert out[0, 0, 0, 0].tolist() == [
        0,
        8,
        16,
        1,
        9,
        17,
        2,
        10,
        18,
        3,
        11,
        19,
    ]  # sub-slice c of slice k -> k*3+c
    pos = upscale_positions(4, 12)
    sub = (pos + 0.5) * 3 - 0.5  # the network's own sub-slice grid: linear placement is the identity
    torch.testing.assert_close(linear_weights(sub, 12), torch.eye(12))


def test_train_models_cubic_reproduces_quadratics_inside() -> None:
    pos = torch.linspace(1.0, 8.0, 41)
    values = torch.arange(10, dtype=torch.float32) ** 2 - 3.0
    got = resample_last(values[None], cubic_weights(pos, 10))[0]
    torch.testing.assert_close(got, pos**2 - 3.0, atol=1e-4, rtol=1e-5)
    edge = resample_last(values[None], cubic_weights(torch.tensor([-3.0, 12.0]), 10))[0]
    torch.testing.assert_close(edge, values[[0, -1]])  # beyond the end slices: the edge value
