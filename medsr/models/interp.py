"""1-D resampling along the last axis as a weight matrix (torch only).

A 3-D model in medsr sees ``(B, C, X, Y, Z)`` with ``Z`` the through-plane (slice) axis and is told
where each output slice lies: ``positions`` (n,) are float indices into the input's ``Z`` axis
(output slice ``j`` of an upscaling by ``s`` sits at ``(j + 0.5) / s - 0.5``, see docs/geometry.md).
Positions past the first and last input slice centres take the edge value (no zero padding), as in
:mod:`medsr.inference.interpolate`.
"""

from __future__ import annotations

import torch

#: Keys' cubic convolution parameter (a = -0.5 reproduces quadratics; PyTorch's bicubic uses -0.75).
CUBIC_A = -0.5


def cubic_weights(positions: torch.Tensor, n_in: int) -> torch.Tensor:
    """Keys cubic interpolation weights, shape (n, n_in); rows sum to 1."""
    p = _clamped(positions, n_in)
    i0 = torch.floor(p)
    t = (p - i0)[:, None]
    a = CUBIC_A
    u = 1.0 - t
    w1 = ((a + 2) * t - (a + 3)) * t * t + 1
    w2 = ((a + 2) * u - (a + 3)) * u * u + 1
    w0 = ((a * (t + 1) - 5 * a) * (t + 1) + 8 * a) * (t + 1) - 4 * a
    w3 = 1.0 - w0 - w1 - w2
    taps = i0.long()[:, None] + torch.arange(-1, 3, device=p.device)[None, :]
    return _scatter(torch.cat([w0, w1, w2, w3], dim=1), taps, n_in)


def linear_weights(positions: torch.Tensor, n_in: int) -> torch.Tensor:
    """Linear interpolation weights, shape (n, n_in); rows sum to 1."""
    p = _clamped(positions, n_in)
    i0 = torch.floor(p)
    t = (p - i0)[:, None]
    taps = i0.long()[:, None] + torch.arange(0, 2, device=p.device)[None, :]
    return _scatter(torch.cat([1.0 - t, t], dim=1), taps, n_in)


def resample_last(x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Apply (n, n_in) ``weights`` along the last axis of ``x`` (..., n_in) -> (..., n), in float32.

    Autocast is switched off here: the interpolated base image must keep full precision under AMP
    (float16 would put an error floor near 66 dB PSNR under every prediction).
    """
    with torch.autocast(device_type=x.device.type, enabled=False):
        return torch.matmul(x.float(), weights.to(dtype=torch.float32, device=x.device).T)


def upscale_positions(n_in: int, n_out: int, device: torch.device | None = None) -> torch.Tensor:
    """Input indices of the ``n_out`` output slices of an upscaling of ``n_in`` slices, shape (n_out,)."""
    i = torch.arange(n_out, dtype=torch.float64, device=device)
    return ((i + 0.5) * (n_in / n_out) - 0.5).float()


def _clamped(positions: torch.Tensor, n_in: int) -> torch.Tensor:
    if positions.ndim != 1:
        raise ValueError(f"positions must be 1-D (n,), got shape {tuple(positions.shape)}")
    if n_in < 1:
        raise ValueError("cannot interpolate from an empty axis")
    return positions.to(torch.float32).clamp(0.0, float(n_in - 1))


def _scatter(values: torch.Tensor, taps: torch.Tensor, n_in: int) -> torch.Tensor:
    out = torch.zeros(values.shape[0], n_in, dtype=values.dtype, device=values.device)
    return out.scatter_add_(1, taps.clamp(0, n_in - 1), values)
