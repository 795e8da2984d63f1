"""Typed options of the learned methods: what ``selfsup`` trains with, and how a trained checkpoint runs.

:func:`medsr.inference.predict.upscale` takes them as ``learner=``; its keyword options (the public
``upscale(volume, steps=..., device=...)``) become one of them once, in :func:`learner_options`.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medsr.errors import MedsrError, MedsrWarning
from medsr.inference.selfsup.config import SelfSupConfig

#: SelfSupOptions fields that only training uses: given with a trained checkpoint, they are ignored.
SELFSUP_ONLY = ("budget_s", "steps", "save_model")


@dataclass(frozen=True)
class SelfSupOptions:
    """How ``selfsup`` learns from the scan (:func:`medsr.inference.selfsup.pipeline.selfsup_upscale`).

    A job builds one whenever the method may learn; a ``--model`` that turns out to be a trained
    checkpoint takes only its ``device`` and ``progress`` (:meth:`for_model`).
    """

    budget_s: float | None = None  # training time budget, s
    steps: int | None = None  # training steps
    device: str = "auto"
    seed: int = 0
    progress: bool = True
    profile: str | None = (
        None  # slice profile shape: gaussian, boxcar or mixed; None: the volume's, else gaussian
    )
    save_model: Path | None = None  # keep the per-scan network here
    config: SelfSupConfig | None = None  # ablations and benchmarks (config_with)

    def as_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of ``selfsup_upscale``, but ``profile``: it travels resolved, in the
        SliceProfile (:func:`medsr.inference.slice_profile.resolve_slice_profile`)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "profile"}

    def for_model(self) -> ModelOptions:
        """The options a trained checkpoint uses; training options that were given are ignored, with a warning."""
        given = [name for name in SELFSUP_ONLY if getattr(self, name) is not None]
        if given:
            warnings.warn(
                f"{', '.join(given)} apply to self-supervision; ignored with a trained --model",
                MedsrWarning,
                stacklevel=4,
            )
        return ModelOptions(device=self.device, progress=self.progress)


@dataclass(frozen=True)
class ModelOptions:
    """How a ``medsr train`` checkpoint runs (:func:`medsr.inference.checkpoint_predict.model_upscale`);
    window settings default to the checkpoint's own ``inference`` config."""

    device: str = "auto"
    progress: bool = False
    roi_size: tuple[int, int] | None = None
    overlap: float | None = None
    sw_batch_size: int | None = None

    def as_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of ``model_upscale``."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


def learner_options(method: str, options: dict[str, Any]) -> SelfSupOptions | ModelOptions | None:
    """``upscale``'s keyword options as the typed options of ``method`` (None for an interpolator, which
    takes none). Unknown names are a MedsrError; with a trained model, ``seed`` is accepted and unused
    (inference is deterministic) and self-supervision's training options are ignored with a warning."""
    if method == "selfsup":
        return _typed(SelfSupOptions, options, "selfsup")
    if method != "model":
        return None
    training = SelfSupOptions(**{k: options[k] for k in SELFSUP_ONLY if k in options})
    rest = {k: v for k, v in options.items() if k not in (*SELFSUP_ONLY, "seed")}
    model = _typed(ModelOptions, rest, "a trained model")
    training.for_model()  # the warning, when training options were given
    return model


def _typed(cls: type, options: dict[str, Any], what: str) -> Any:
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in options if k not in names]
    if unknown:
        raise MedsrError(
            f"upscale with {what} does not take option(s) {', '.join(unknown)}; it takes {', '.join(names)}"
        )
    return cls(**options)
