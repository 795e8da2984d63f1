"""``train``: the optimisation loop behind ``medsr train`` (single process or torchrun/DDP).

A run folder holds ``config.yaml`` (the resolved config), ``metrics.csv``, ``last.safetensors`` and
``last.state.safetensors`` (for ``--resume``), ``best.safetensors`` (best validation PSNR),
``summary.json`` and, when TensorBoard is installed, ``tensorboard/``. Only rank 0 writes.

Per step: AdamW on a batch of paired patches (each forwarded on its own: their shapes differ with the
drawn slice spacing; gradients are accumulated, and DDP synchronises only on the last), L1 (+ SSIM)
loss, mixed precision on CUDA (bfloat16, or float16 + GradScaler: :func:`medsr.runtime.device.amp_policy`), gradient-norm clipping, and the learning rate of
:func:`medsr.training.losses.lr_at`. Validation every ``val_every`` steps and at the end.
"""

from __future__ import annotations

import contextlib
import math
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

from medsr.errors import MedsrError
from medsr.runtime.checkpoint import read_checkpoint, save_checkpoint
from medsr.runtime.device import Precision, precision_for, resolve_device
from medsr.training import distributed as D
from medsr.training.config import Config, config_to_dict, dump_config
from medsr.training.losses import SRLoss, lr_at
from medsr.training.records import MetricsLog
from medsr.training.run_setup import RunData, build_model, checkpoint_meta, prepare_data, prepare_run_dir
from medsr.training.train_state import load_train_state, save_train_state


class ResumableSampler(DistributedSampler):
    """A DistributedSampler that can start part-way through an epoch (``start`` samples skipped)."""

    start = 0

    def __iter__(self):  # type: ignore[override]
        return iter(list(super().__iter__())[self.start :])

    def __len__(self) -> int:
        return self.num_samples - self.start


def train(
    config: Config,
    run_dir: Path,
    *,
    resume: bool = False,
    init: Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train ``config`` into ``run_dir``; returns the run summary (also written to summary.json)."""
    device = resolve_device(config.train.device)
    dist = D.setup(device)
    if device.type == "cuda" and dist.enabled:
        device = torch.device("cuda", dist.local_rank)
    try:
        summary = _train(config, Path(run_dir), dist, device, resume=resume, init=init, progress=progress)
        D.barrier(dist)  # no rank leaves the group while another still talks to it
        return summary
    finally:
        D.cleanup(dist)


def _train(
    config: Config,
    run_dir: Path,
    dist: D.DistInfo,
    device: torch.device,
    *,
    resume: bool,
    init: Path | None,
    progress: bool,
) -> dict[str, Any]:
    if resume and init is not None:
        raise MedsrError(
            "--resume continues a run and --init starts a new one from a checkpoint: give only one"
        )
    if dist.is_main:
        prepare_run_dir(run_dir, resume=resume)
        dump_config(config, run_dir / "config.yaml")  # on resume: with the new overrides
    D.barrier(dist)
    data: RunData = prepare_data(config, dist)
    model = build_model(config, init)
    opt, precision, scaler, step, best = _optimisation(config, model, device, run_dir, resume)
    net: nn.Module = model
    if dist.enabled:
        net = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    criterion = SRLoss(config.train.ssim_weight).to(device)
    sampler, loader, epoch = _loader(data, config, dist, step)
    log = MetricsLog(run_dir, resume_step=step if resume else None) if dist.is_main else None
    bar = _Bar(config.train.steps, step) if progress and dist.is_main else None
    start_time, window_start, window_steps, window_loss = time.perf_counter(), time.perf_counter(), 0, 0.0
    last_val: dict[str, float] = {}
    try:
        while step < config.train.steps:
            sampler.set_epoch(epoch)
            data.train.set_epoch(epoch)
            for batch in loader:
                loss = _step(net, batch, criterion, opt, scaler, config, step, device, dist, precision)
                step += 1
                window_steps, window_loss = window_steps + 1, window_loss + loss
                if bar is not None:
                    bar.update(step, loss)
                validate_now = step % config.train.val_every == 0 or step == config.train.steps
                if step % config.train.log_every == 0 or validate_now:
                    now = time.perf_counter()
                    mean_loss = D.mean_across(dist, window_loss / window_steps, device)
                    row: dict[str, Any] = {
                        "loss": mean_loss,
                        "lr": lr_at(step - 1, config.train),
                        "steps_per_s": window_steps / max(now - window_start, 1e-9),
                        "elapsed_s": now - start_time,
                    }
                    window_start, window_steps, window_loss = now, 0, 0.0
                    if validate_now and dist.is_main:
                        last_val = _evaluate(model, data, config, device)
                        row.update(last_val)
                        best = _save(model, opt, scaler, config, data, run_dir, step, best, last_val)
                    if log is not None:
                        log.log(step, row)
                    D.barrier(dist)
                if step >= config.train.steps:
                    break
            epoch += 1
            sampler.start = 0
    finally:
        if bar is not None:
            bar.close()
        if log is not None:
            log.close()
    summary = {
        "steps": step,
        "world_size": dist.world_size,
        "device": str(device),
        "max_weight_difference_across_ranks": D.weight_spread(dist, model, device),
        "best_val_psnr": best if math.isfinite(best) else None,
        "final_validation": last_val,
        "seconds": round(time.perf_counter() - start_time, 3),
        "factor_range": data.factor_range,
    }
    if dist.is_main:
        from medsr.io.atomic import write_json

        write_json(run_dir / "summary.json", summary)
    return summary


def _optimisation(
    config: Config, model: nn.Module, device: torch.device, run_dir: Path, resume: bool
) -> tuple[torch.optim.Optimizer, Precision, Any, int, float]:
    """(optimizer, precision, loss scaler, step, best validation PSNR), restored from the run on resume;
    the model and the optimizer state are moved to ``device``."""
    step, best = 0, -math.inf
    opt = torch.optim.AdamW(
        model.parameters(),
        lr=config.train.lr,
        betas=config.train.betas,
        weight_decay=config.train.weight_decay,
    )
    precision = precision_for(device, amp=config.train.amp, training=True)  # float32 on CPUs
    scaler = precision.grad_scaler()
    if resume:
        tensors, _ = read_checkpoint(run_dir / "last.safetensors")
        model.load_state_dict(tensors)
        doc = load_train_state(run_dir / "last.safetensors", opt, scaler)
        step, best = int(doc["step"]), float(doc.get("best", -math.inf))
    model.to(device)
    _optimizer_to(opt, device)
    return opt, precision, scaler, step, best


def _loader(
    data: RunData, config: Config, dist: D.DistInfo, step: int
) -> tuple[ResumableSampler, DataLoader, int]:
    """(sampler, loader, epoch) positioned at ``step``: a resumed run continues mid-epoch where it stopped."""
    sampler = ResumableSampler(
        data.train, num_replicas=dist.world_size, rank=dist.rank, shuffle=True, seed=config.train.seed
    )
    loader = DataLoader(
        data.train,
        batch_size=config.train.batch_size,
        sampler=sampler,
        collate_fn=list,
        num_workers=config.data.num_workers,
    )
    per_epoch = math.ceil(sampler.num_samples / config.train.batch_size)
    epoch, sampler.start = divmod(step, per_epoch)
    sampler.start *= config.train.batch_size
    return sampler, loader, epoch


def _step(
    net: nn.Module,
    batch: list[dict[str, Any]],
    criterion: nn.Module,
    opt: torch.optim.Optimizer,
    scaler: Any,
    config: Config,
    step: int,
    device: torch.device,
    dist: D.DistInfo,
    precision: Precision,
) -> float:
    """One optimisation step over ``batch``; returns the mean loss of this rank's samples."""
    net.train()
    for group in opt.param_groups:
        group["lr"] = lr_at(step, config.train)
    opt.zero_grad(set_to_none=True)
    total = 0.0
    for i, sample in enumerate(batch):
        last = i == len(batch) - 1
        sync = contextlib.nullcontext() if last or not dist.enabled else net.no_sync()  # type: ignore[operator]
        with sync:
            with precision.autocast():
                pred = net(sample["lr"][None].to(device), sample["positions"].to(device))
                loss = criterion(pred, sample["hr"][None].to(device)) / len(batch)
            (scaler.scale(loss) if scaler is not None else loss).backward()
        total += float(loss.detach())
    if scaler is not None:
        scaler.unscale_(opt)
    if config.train.grad_clip:
        nn.utils.clip_grad_norm_(net.parameters(), config.train.grad_clip)
    if scaler is not None:
        scaler.step(opt)
        scaler.update()
    else:
        opt.step()
    return total


def _evaluate(model: nn.Module, data: RunData, config: Config, device: torch.device) -> dict[str, float]:
    if not data.val_pairs:
        return {}
    from medsr.training.validate import validate

    return validate(model, data.val_pairs, config, device)


def _save(
    model: nn.Module,
    opt: Any,
    scaler: Any,
    config: Config,
    data: RunData,
    run_dir: Path,
    step: int,
    best: float,
    val: dict,
) -> float:
    """Write last (+ state) and, when validation PSNR improved, best; returns the new best."""
    score = val.get("val_psnr", -math.inf)
    improved = score > best
    best = max(best, score)
    meta = checkpoint_meta(config, data, step, val)
    save_checkpoint(run_dir / "last.safetensors", model, meta)
    save_train_state(
        run_dir / "last.safetensors",
        opt,
        scaler,
        {"step": step, "best": best, "config": config_to_dict(config)},
    )
    if improved:
        save_checkpoint(run_dir / "best.safetensors", model, meta)
    return best


def _optimizer_to(opt: torch.optim.Optimizer, device: torch.device) -> None:
    for slots in opt.state.values():
        for key, value in slots.items():
            if isinstance(value, torch.Tensor) and key != "step":
                slots[key] = value.to(device)


class _Bar:
    """Rich progress bar for the training steps (stderr, rank 0)."""

    def __init__(self, total: int, done: int) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.progress = Progress(
            TextColumn("train"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[info]}"),
            console=Console(stderr=True),
        )
        self.task = self.progress.add_task("train", total=total, completed=done, info="")
        self.progress.start()

    def update(self, step: int, loss: float) -> None:
        self.progress.update(self.task, completed=step, info=f"loss {loss:.4f}")

    def close(self) -> None:
        self.progress.stop()
