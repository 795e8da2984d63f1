"""The self-supervised training loop: Adam + L1 on patches from the scan, over steps or a time budget."""

from __future__ import annotations

import copy
import math
import time

import torch

from medsr.inference.selfsup.config import SelfSupConfig
from medsr.inference.selfsup.sampler import PatchSampler
from medsr.runtime.device import cpu_has_native_bf16, precision_for


def train_network(
    net: torch.nn.Module,
    sampler: PatchSampler,
    *,
    steps: int | None,
    budget_s: float | None,
    config: SelfSupConfig,
    device: torch.device,
    advance=None,
) -> tuple[torch.nn.Module, int]:
    """Adam + L1 over steps or time (whichever ends first); returns (network to use, steps done).

    The learning rate follows ``config.schedule``; with ``config.ema`` > 0 the returned network holds
    the exponential moving average of the weights (a copy; ``net`` keeps the last weights).
    """
    net.train()
    opt = torch.optim.Adam(net.parameters(), lr=config.lr)
    params = list(net.parameters())
    average = copy.deepcopy(net) if config.ema > 0 else None
    avg_params = list(average.parameters()) if average is not None else []
    precision = precision_for(device, amp=config.amp, training=True, cpu_bf16=cpu_has_native_bf16())
    scaler = precision.grad_scaler()
    start, done = time.perf_counter(), 0
    channels_last = device.type == "cpu"
    while True:
        frac = done / steps if steps else 0.0
        if budget_s:
            frac = max(frac, (time.perf_counter() - start) / budget_s)
        if frac >= 1.0:
            return (average if average is not None else net), done
        if config.schedule == "cosine":
            for group in opt.param_groups:
                group["lr"] = config.lr * (0.02 + 0.98 * 0.5 * (1.0 + math.cos(math.pi * frac)))
        lr_patch, hr_patch = sampler.sample(config.batch)
        lr_patch, hr_patch = lr_patch.to(device), hr_patch.to(device)
        if channels_last:
            lr_patch = lr_patch.contiguous(memory_format=torch.channels_last)
        with precision.autocast():
            pred = net(lr_patch)
        loss = torch.nn.functional.l1_loss(pred.float(), hr_patch)
        opt.zero_grad(set_to_none=True)
        if scaler is None:
            loss.backward()
            opt.step()
        else:  # float16 on a GPU without bfloat16
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        done += 1
        if average is not None:  # warm-started decay so early averages are not dominated by the init
            with torch.no_grad():
                torch._foreach_lerp_(avg_params, params, 1.0 - min(config.ema, (1 + done) / (10 + done)))
        if advance is not None:
            advance(done, steps, frac, loss.item())
