"""Random (LR, HR) training patches from the pair stacks, weighted towards edges (:class:`PatchSampler`)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from medsr.inference.selfsup.pairs import PairStack

#: Candidate patch positions kept per stack (positions are strided beyond this).
MAX_CANDIDATES = 2_000_000


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
