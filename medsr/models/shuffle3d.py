"""3-D residual network that learns the upsampling along the slice axis (pixel shuffle along Z).

Features are computed on the thick-slice grid (cheap: ``factor`` times fewer voxels than the
output), and the last convolution emits ``factor`` channels that a one-axis pixel shuffle turns into
``factor`` sub-slices per input slice (Shi et al. 2016, ESPCN, restricted to one axis). The learned
residual is then placed on the requested output slices by linear interpolation and added to the
cubic interpolation of the input, so factors up to ``factor`` are served by one network.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from medsr.models.interp import cubic_weights, linear_weights, resample_last


class ResBlock3d(nn.Module):
    """conv-leaky ReLU-conv (3x3x3) with an identity skip and a residual scale (EDSR's 0.1 by default)."""

    def __init__(self, features: int, scale: float = 0.1) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(features, features, 3, padding=1)
        self.conv2 = nn.Conv3d(features, features, 3, padding=1)
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.scale * self.conv2(F.leaky_relu(self.conv1(x), 0.1, inplace=True))


def shuffle_last(x: torch.Tensor, factor: int) -> torch.Tensor:
    """(B, C * factor, X, Y, m) -> (B, C, X, Y, m * factor); sub-slice ``c`` of slice ``k`` is ``k*factor + c``."""
    b, cf, sx, sy, m = x.shape
    c = cf // factor
    x = x.reshape(b, c, factor, sx, sy, m).permute(0, 1, 3, 4, 5, 2)
    return x.reshape(b, c, sx, sy, m * factor)


class Shuffle3d(nn.Module):
    """Residual blocks on the thick-slice grid, pixel shuffle along Z, cubic skip (slice axis last).

    Args:
        factor: sub-slices learned per input slice (integer >= 2); output factors up to this are served.
        features: channels of the hidden layers.
        blocks: residual blocks between the head and tail convolutions.

    Shapes: ``lr`` (B, 1, X, Y, m), ``positions`` (n,) float indices into ``m`` -> (B, 1, X, Y, n).
    Sub-slice ``q`` of the shuffled output sits at input index ``(q + 0.5) / factor - 0.5``; when the
    requested positions are exactly those (output factor == ``factor``) the linear placement is the
    identity. The tail starts at zero: an untrained network reproduces cubic interpolation.

    Parameters: ``28 F + blocks (54 F^2 + 2 F) + 27 F factor + factor``; 225,796 with the defaults
    (F=32, blocks=4, factor=4). Receptive field: ``2 (2 blocks + 2) + 1`` input voxels along each axis
    (21 thick slices and 21 in-plane voxels with the defaults). Cost: about ``54 F^2 blocks``
    multiply-adds per *input* voxel (0.22 M), i.e. about ``factor`` times less per output voxel.
    """

    def __init__(self, factor: int = 4, features: int = 32, blocks: int = 4) -> None:
        super().__init__()
        if int(factor) != factor or factor < 2:
            raise ValueError(f"Shuffle3d needs an integer factor >= 2, got {factor}")
        if blocks < 0 or features < 1:
            raise ValueError(f"Shuffle3d needs blocks >= 0 and features >= 1, got {blocks}, {features}")
        self.factor = int(factor)
        self.head = nn.Conv3d(1, features, 3, padding=1)
        self.body = nn.Sequential(*[ResBlock3d(features) for _ in range(blocks)])
        self.tail = nn.Conv3d(features, self.factor, 3, padding=1)
        nn.init.zeros_(self.tail.weight)
        nn.init.zeros_(self.tail.bias)

    def forward(self, lr: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        m = lr.shape[-1]
        base = resample_last(lr, cubic_weights(positions, m))
        feats = self.head(lr)
        residual = shuffle_last(self.tail(feats + self.body(feats)), self.factor)
        # positions in input-slice units -> indices into the m * factor sub-slices
        sub = (positions.to(torch.float32) + 0.5) * self.factor - 0.5
        return base + resample_last(residual, linear_weights(sub, m * self.factor))
