"""Device and mixed-precision choice for every medsr method, in one place (docs/devices.md).

:func:`resolve_device` turns a user's ``--device`` into a :class:`torch.device` or a one-line
:class:`~medsr.errors.MedsrError`; :func:`amp_policy` is the pure precision rule (unit-tested without a
GPU) and :func:`precision_for` applies it to the machine it runs on.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from medsr.errors import MedsrError

#: The names ``--device`` takes (``cuda:N`` picks the N-th GPU).
DEVICE_CHOICES = ("auto", "cpu", "cuda")


def resolve_device(name: str | torch.device | None) -> torch.device:
    """``auto``/None -> CUDA when torch sees a GPU, else CPU; ``cpu``, ``cuda`` or ``cuda:N`` as given.

    Raises MedsrError naming the value and the fix for any other name and for CUDA without a GPU.
    """
    text = str(name) if isinstance(name, torch.device) else (name or "auto").strip().lower()
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(text)
    except (RuntimeError, ValueError):
        dev = None
    if dev is None or dev.type not in ("cpu", "cuda"):
        raise MedsrError(f"--device {name!r} is not a device medsr runs on; use --device auto, cpu or cuda")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise MedsrError(
                f"--device {name!r} asks for CUDA but torch sees no GPU here; use --device cpu or auto"
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise MedsrError(
                f"--device {name!r}: torch sees {torch.cuda.device_count()} GPU(s) (cuda:0 to "
                f"cuda:{torch.cuda.device_count() - 1}); pick one of them, or --device auto"
            )
    return dev


@dataclass(frozen=True)
class Precision:
    """How a step computes: autocast to ``dtype`` (None: plain float32), loss scaling for fp16 training."""

    device_type: str
    dtype: torch.dtype | None = None
    scale: bool = False

    @property
    def name(self) -> str:
        return {None: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}[self.dtype]

    def autocast(self) -> contextlib.AbstractContextManager:
        """``torch.autocast`` to ``dtype``, or a no-op context in float32."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def grad_scaler(self) -> torch.amp.GradScaler | None:
        """A fresh GradScaler when fp16 training needs one, else None."""
        return torch.amp.GradScaler(self.device_type) if self.scale else None


def amp_policy(
    device_type: str, *, amp: bool, training: bool, cuda_bf16: bool, cpu_bf16: bool = False
) -> Precision:
    """The precision rule, a pure function of the device and what it supports.

    CUDA: bfloat16 where the GPU supports it, else float16 (with a GradScaler when ``training``).
    CPU: bfloat16 only when ``cpu_bf16`` (callers pass True for self-supervised training on CPUs with
    native bfloat16, :func:`cpu_has_native_bf16`), else float32. ``amp`` False: float32 everywhere.
    """
    if not amp:
        return Precision(device_type)
    if device_type == "cuda":
        if cuda_bf16:
            return Precision(device_type, torch.bfloat16)
        return Precision(device_type, torch.float16, scale=training)
    if device_type == "cpu" and cpu_bf16:
        return Precision(device_type, torch.bfloat16)
    return Precision(device_type)


def precision_for(device: torch.device, *, amp: bool, training: bool, cpu_bf16: bool = False) -> Precision:
    """:func:`amp_policy` for ``device`` on this machine (asks torch whether the GPU has bfloat16)."""
    cuda_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
    return amp_policy(device.type, amp=amp, training=training, cuda_bf16=cuda_bf16, cpu_bf16=cpu_bf16)


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX); False on older torch."""
    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:
        return False
