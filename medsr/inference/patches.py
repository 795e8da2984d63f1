"""Training pairs for self-supervised super-resolution, made from a scan's own in-plane slices.

The in-plane axes of a thick-slice scan are high resolution. Degrading an in-plane slice along one
of them with the through-plane slice profile (FWHM = slice thickness, slab spacing = slice spacing,
see :func:`medsr.transforms.functional.slab_weights`) gives an (LR, HR) pair that looks like the
through-plane problem: LR row ``k`` is centred on HR row ``R * k + (R - 1) / 2``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from medsr.profiles import profile_shapes
from medsr.transforms.functional import DEFAULT_PROFILE, apply_slab_weights, slab_weights

#: Candidate patch positions kept per stack (positions are strided beyond this).
MAX_CANDIDATES = 2_000_000


@dataclass
class PairStack:
    """In-plane slices degraded along their first axis.

    Attributes:
        hr: (S, L, W) high-resolution images (float32, normalised intensities), shared between stacks.
        lr: (S, m, W) the images after the slice profile and slab sampling along axis 1; LR row ``k``
            covers HR rows ``offset + R * k`` to ``offset + R * (k + 1) - 1`` (slab 0 starts at ``offset``).
        factor: integer ratio R of HR to LR rows.
        offset: first HR row of slab 0 (0 <= offset < R: the slab grid's phase).
        valid: None (every pixel usable) or (m, W) bool, the same for every image: LR pixel ``(k, j)``
            and its HR rows hold image content only (no padding of a rotated slice reaches them).
    """

    hr: torch.Tensor
    lr: torch.Tensor
    factor: int
    offset: int = 0
    valid: torch.Tensor | None = None


def resample_rows(images: torch.Tensor, n_out: int, chunk: int = 16) -> torch.Tensor:
    """Resample (S, L, W) to (S, n_out, W) along L (cubic, antialiased when shrinking; same extent)."""
    out = torch.empty(images.shape[0], n_out, images.shape[2], dtype=torch.float32)
    for s0 in range(0, images.shape[0], chunk):
        block = images[s0 : s0 + chunk, None].float()
        size = (n_out, images.shape[2])
        out[s0 : s0 + chunk] = F.interpolate(
            block, size=size, mode="bicubic", align_corners=False, antialias=True
        )[:, 0]
    return out


def make_stacks(
    images: torch.Tensor,
    row_spacing: float,
    factor: int,
    thickness: float,
    slice_spacing: float,
    phases: bool = True,
    profile: str = DEFAULT_PROFILE,
    valid: torch.Tensor | None = None,
) -> list[PairStack]:
    """Degrade (S, L, W) images along L into (LR, HR) stacks, one per slab-grid phase and profile shape.

    Args:
        images: in-plane slices, L is the axis to degrade, ``row_spacing`` mm apart.
        factor: integer R; the HR rows are resampled to ``slice_spacing / R`` mm when they differ.
        thickness: slice profile FWHM, mm.
        slice_spacing: centre-to-centre distance of LR rows, mm.
        phases: one stack for each slab-grid offset 0..R-1 (each anatomy seen at every phase), else
            offset 0 only. The HR images are shared; LR stacks take about one HR volume in all.
        profile: slice profile shape, ``"gaussian"`` or ``"boxcar"`` (see
            :func:`medsr.transforms.functional.profile_cdf`), or ``"mixed"``: the stacks of both shapes
            (the shape is unknown; the network learns to undo either).
        valid: None, or (L, W) bool marking the pixels of every image that hold content (not padding);
            each stack then marks the LR pixels whose slab or HR rows reach an invalid pixel.
    """
    hr_spacing = slice_spacing / factor
    n_rows = images.shape[1]
    if abs(row_spacing - hr_spacing) > 0.01 * hr_spacing:
        n_rows = max(int(round(n_rows * row_spacing / hr_spacing)), factor)
        images = resample_rows(images, n_rows)
        if valid is not None:
            valid = (resample_rows(valid[None].float(), n_rows)[0] - 1.0).abs() < 1e-3
    hr = images.float().contiguous()  # contiguous: fast patch gathers
    stacks = []
    for shape in profile_shapes(profile):
        for offset in range(factor if phases else 1):
            if n_rows - offset < factor:
                break
            weights = slab_weights(n_rows - offset, hr_spacing, thickness, slice_spacing, shape)
            lr = apply_slab_weights(hr[:, offset:], weights, axis=1).contiguous()
            usable = None if valid is None else _usable(valid[offset:], weights, factor)
            stacks.append(PairStack(hr=hr, lr=lr, factor=factor, offset=offset, valid=usable))
    return stacks


def _usable(valid: torch.Tensor, weights: np.ndarray, factor: int) -> torch.Tensor:
    """(m, W) bool: LR pixels whose slab weights and own HR rows touch only valid HR pixels."""
    invalid = (~valid).float()
    reached = apply_slab_weights(invalid[None], np.abs(weights), axis=1)[0] > 1e-6
    m = weights.shape[0]
    own = invalid[: m * factor].reshape(m, factor, -1).amax(1) > 0
    return ~(reached | own)


#: Laplacian mask of Immerkaer (1996); its response to white noise of std s has std 6 s.
_LAPLACE = torch.tensor([[1.0, -2.0, 1.0], [-2.0, 4.0, -2.0], [1.0, -2.0, 1.0]])[None, None]


def estimate_noise(slices: torch.Tensor, floor: float = 0.1, max_slices: int = 32) -> float:
    """Noise std of (S, A, B) images (same units), from the median absolute Laplacian response.

    Pixels at or below ``floor`` (in normalised units: air, masked background, and MRI's Rician
    background, whose lower noise would bias the estimate low) are left out; the median keeps edges
    from inflating the estimate. Uses at most ``max_slices`` evenly spaced images.
    """
    pick = torch.linspace(0, slices.shape[0] - 1, min(max_slices, slices.shape[0])).round().long().unique()
    images = slices[pick, None].float()
    if images.shape[-1] < 3 or images.shape[-2] < 3:
        return 0.0
    # A few images per convolution: its im2col buffer for all 32 of 512 x 512 would be over 500 MB.
    response = torch.cat([F.conv2d(part, _LAPLACE)[:, 0].abs() for part in images.split(4)])
    keep = images[:, 0, 1:-1, 1:-1] > floor
    if not bool(keep.any()):
        return 0.0
    return float(response[keep].median()) / (0.6745 * 6.0)


def input_noise(
    sigma: float, factor: int, thickness: float, slice_spacing: float, profile: str = DEFAULT_PROFILE
) -> float:
    """Std of the noise to add to training LR pixels so they are as noisy as the acquired slices.

    A training LR pixel averages ``factor`` noisy in-plane pixels (std ``sigma`` each) with the slab
    weights ``w``, which leaves std ``sigma * |w|``; an acquired thick slice has std ``sigma``. The
    difference, ``sigma * sqrt(1 - |w|^2)``, is added during training so that the network learns to
    sharpen without amplifying the scan's noise. For ``"mixed"``, ``|w|^2`` is the mean over the shapes
    (one noise level for all stacks; at x4 the shapes' levels differ by about 5 %).
    """
    hr_spacing = slice_spacing / factor
    energies = []
    for shape in profile_shapes(profile):
        weights = slab_weights(8 * factor, hr_spacing, thickness, slice_spacing, shape)
        energies.append(float(np.median((weights**2).sum(axis=1))))
    return float(sigma * np.sqrt(max(0.0, 1.0 - float(np.mean(energies)))))


class PatchSampler:
    """Draws random (LR, HR) patch pairs, weighted towards edges, with random flips.

    Args:
        stacks: one stack per in-plane axis used for degradation.
        patch: LR patch size (rows along L, columns along W); clipped to the images.
        edge_mix: fraction of the sampling mass spread uniformly; the rest is proportional to the
            HR gradient magnitude inside the patch (1.0 = uniform sampling).
        flips: flip each pair along L and W at random.
        generator: the only source of randomness.
        noise: std of Gaussian noise added to each LR patch (fresh every draw), see :func:`input_noise`.
    """

    def __init__(
        self,
        stacks: list[PairStack],
        patch: tuple[int, int],
        edge_mix: float,
        flips: bool,
        generator: torch.Generator,
        noise: float = 0.0,
    ) -> None:
        self.stacks, self.flips, self.gen, self.noise = stacks, flips, generator, float(noise)
        rows = min([patch[0]] + [s.lr.shape[1] for s in stacks])
        cols = min([patch[1]] + [s.lr.shape[2] for s in stacks])
        self.patch = (rows, cols)  # common to all stacks so that batches stack
        self.tables = [self._table(s, self.patch, edge_mix) for s in stacks]

    @staticmethod
    def _table(
        stack: PairStack, patch: tuple[int, int], edge_mix: float
    ) -> tuple[torch.Tensor, tuple, tuple]:
        """Cumulative sampling mass over strided candidate positions (s, l0, w0)."""
        n, m, w = stack.lr.shape
        pl, pw = patch
        n_l, n_w = m - pl + 1, w - pw + 1
        stride = max(1, int(np.ceil(np.sqrt(n * n_l * n_w / MAX_CANDIDATES))))
        grid = (n, len(range(0, n_l, stride)), len(range(0, n_w, stride)))
        if edge_mix >= 1.0:
            mass = torch.ones(grid, dtype=torch.float64)
        else:
            mass = torch.empty(grid, dtype=torch.float64)
            r, o = stack.factor, stack.offset
            for s0 in range(0, n, 16):
                hr = stack.hr[s0 : s0 + 16, o : o + m * r]
                grad = F.pad((hr[:, 1:] - hr[:, :-1]).abs(), (0, 0, 0, 1)) + F.pad(
                    (hr[:, :, 1:] - hr[:, :, :-1]).abs(), (0, 1)
                )
                # Mean gradient per LR row, then box sums over patches via an integral image.
                g = grad.reshape(grad.shape[0], m, r, w).mean(2).double()
                integral = F.pad(g.cumsum(1).cumsum(2), (1, 0, 1, 0))
                box = (
                    integral[:, pl:, pw:]
                    - integral[:, :-pl, pw:]
                    - integral[:, pl:, :-pw]
                    + integral[:, :-pl, :-pw]
                )
                mass[s0 : s0 + 16] = box[:, ::stride, ::stride]
            mean = float(mass.mean())
            mass = (1.0 - edge_mix) * mass / mean + edge_mix if mean > 0 else torch.ones_like(mass)
        if stack.valid is not None:  # no patch may touch padding
            bad = F.pad((~stack.valid).double().cumsum(0).cumsum(1), (1, 0, 1, 0))
            box = bad[pl:, pw:] - bad[:-pl, pw:] - bad[pl:, :-pw] + bad[:-pl, :-pw]
            mass = mass * (box[::stride, ::stride] < 0.5)
            if not bool((mass > 0).any()):
                mass = torch.ones_like(mass)  # a slice too small to hold a whole patch: use it all
        return mass.flatten().cumsum(0), grid, (stride, stride)

    def sample(self, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """A batch of pairs: LR (B, 1, pl, pw) and HR (B, 1, pl * R, pw), all stacks mixed evenly."""
        which = torch.randint(len(self.stacks), (batch,), generator=self.gen)
        lrs, hrs = [], []
        for k in range(len(self.stacks)):
            count = int((which == k).sum())
            if count:
                lr, hr = self._draw(k, count)
                lrs.append(lr)
                hrs.append(hr)
        lr, hr = torch.cat(lrs), torch.cat(hrs)
        if self.noise > 0:
            lr = lr + self.noise * torch.randn(lr.shape, generator=self.gen)
        if self.flips:
            flip = (torch.rand(2, lr.shape[0], generator=self.gen) < 0.5)[:, :, None, None, None]
            for dim, mask in ((2, flip[0]), (3, flip[1])):
                lr = torch.where(mask, lr.flip(dim), lr)
                hr = torch.where(mask, hr.flip(dim), hr)
        return lr, hr

    def _draw(self, k: int, count: int) -> tuple[torch.Tensor, torch.Tensor]:
        stack, (pl, pw), (cdf, grid, stride) = self.stacks[k], self.patch, self.tables[k]
        u = torch.rand(count, generator=self.gen, dtype=torch.float64) * cdf[-1]
        idx = torch.searchsorted(cdf, u).clamp_max(cdf.numel() - 1)
        s, rest = idx // (grid[1] * grid[2]), idx % (grid[1] * grid[2])
        l0, w0 = (rest // grid[2]) * stride[0], (rest % grid[2]) * stride[1]
        r, o = stack.factor, stack.offset
        lr = torch.stack(
            [
                stack.lr[a, b : b + pl, c : c + pw]
                for a, b, c in zip(s.tolist(), l0.tolist(), w0.tolist(), strict=True)
            ]
        )
        hr = torch.stack(
            [
                stack.hr[a, o + b * r : o + (b + pl) * r, c : c + pw]
                for a, b, c in zip(s.tolist(), l0.tolist(), w0.tolist(), strict=True)
            ]
        )
        return lr[:, None].contiguous(), hr[:, None].contiguous()
