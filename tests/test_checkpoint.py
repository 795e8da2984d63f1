"""Checkpoints: safetensors round trips, refusal of pickles, and inference with the right geometry and units."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from nibabel.affines import apply_affine

from medsr import geometry
from medsr.errors import MedsrError
from medsr.inference.checkpoint_predict import model_upscale
from medsr.io.volume import affine_of, make_volume
from medsr.models import MODELS
from medsr.runtime.checkpoint import build_model, load_trained, read_checkpoint, read_meta, save_checkpoint
from medsr.training.train_state import load_train_state, save_train_state
from tests.helpers.volumes import make_affine, slice_profile


def _meta(name: str, args: dict, **extra) -> dict:
    return {
        "kind": "trained",
        "architecture": name,
        "model_args": args,
        "factor_range": [2.0, 4.0],
        "normalisation": {"mode": "percentile", "lower": 0.5, "upper": 99.5},
        "config": {"inference": {"roi_size": [12, 12], "overlap": 0.25, "sw_batch_size": 1}},
        **extra,
    }


def _randomised(name: str, args: dict) -> torch.nn.Module:
    torch.manual_seed(0)
    model = MODELS[name](**args)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.05)
    return model


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("deepresolve3d", {"features": 4, "depth": 3}),
        ("shuffle3d", {"features": 4, "blocks": 1, "factor": 3}),
    ],
)
def test_checkpoint_round_trip_identical_weights(tmp_path: Path, name: str, args: dict) -> None:
    model = _randomised(name, args)
    path = save_checkpoint(tmp_path / "m.safetensors", model, _meta(name, args, step=7))
    tensors, meta = read_checkpoint(path)
    assert meta["step"] == 7 and meta["architecture"] == name
    again = build_model(meta, tensors)
    for (k, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
    x, pos = torch.randn(1, 1, 10, 9, 6), torch.linspace(-0.3, 5.3, 17)
    assert torch.equal(model.eval()(x, pos), again(x, pos))


def test_checkpoint_train_state_round_trip(tmp_path: Path) -> None:
    model = _randomised("deepresolve3d", {"features": 4, "depth": 2})
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.8, 0.9))
    for _ in range(2):
        opt.zero_grad()
        model(torch.randn(1, 1, 6, 6, 4), torch.linspace(0, 3, 8)).square().mean().backward()
        opt.step()
    save_train_state(tmp_path / "last.safetensors", opt, None, {"step": 2, "best": 30.5})
    assert (tmp_path / "last.state.safetensors").exists()
    fresh = torch.optim.AdamW(model.parameters(), lr=5.0)
    doc = load_train_state(tmp_path / "last.safetensors", fresh, None)
    assert doc["step"] == 2 and doc["best"] == 30.5
    a, b = opt.state_dict(), fresh.state_dict()
    assert a["param_groups"][0]["lr"] == b["param_groups"][0]["lr"] == 1e-3
    assert tuple(b["param_groups"][0]["betas"]) == (0.8, 0.9)
    for i, slots in a["state"].items():
        for key, value in slots.items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(b["state"][i][key])), (i, key)


class _Evil:
    """Unpickling this creates a marker file: proof that a pickle ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize("name", ["evil.pt", "evil.safetensors", "evil.ckpt"])
def test_checkpoint_refuses_a_crafted_pickle(tmp_path: Path, name: str) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / name
    path.write_bytes(pickle.dumps(_Evil(marker)))
    pickle.loads(path.read_bytes())  # the payload works when unpickled...
    assert marker.exists()
    marker.unlink()
    volume = make_volume(np.zeros((8, 8, 4), np.float32), np.diag([1.0, 1.0, 3.0, 1.0]))
    for attempt in (
        read_meta,
        read_checkpoint,
        load_trained,
        lambda p: model_upscale(volume, p, axis=2, factor=3.0, slice_profile=slice_profile(volume, 2)),
    ):
        with pytest.raises(MedsrError, match="never unpickles"):
            attempt(path)
    assert not marker.exists()  # ...and medsr never ran it


def test_checkpoint_refuses_torch_save_files(tmp_path: Path) -> None:
    path = tmp_path / "weights.pt"
    torch.save(MODELS["deepresolve3d"](features=2, depth=2).state_dict(), path)
    with pytest.raises(MedsrError, match="zip archive"):
        read_meta(path)


def test_checkpoint_refuses_other_kinds_and_factors(tmp_path: Path) -> None:
    args = {"features": 2, "depth": 2}
    model = MODELS["deepresolve3d"](**args)
    selfsup = save_checkpoint(
        tmp_path / "s.safetensors", model, {**_meta("deepresolve3d", args), "kind": "selfsup"}
    )
    volume = make_volume(np.random.rand(12, 12, 6).astype(np.float32), np.diag([1.0, 1.0, 3.0, 1.0]))
    with pytest.raises(MedsrError, match="'selfsup' checkpoint"):
        model_upscale(volume, selfsup, axis=2, factor=3.0, slice_profile=slice_profile(volume, 2))
    trained = save_checkpoint(tmp_path / "t.safetensors", model, _meta("deepresolve3d", args))
    with pytest.raises(MedsrError, match="trained for factors 2 to 4"):
        model_upscale(volume, trained, axis=2, factor=6.0, slice_profile=slice_profile(volume, 2))
    with pytest.raises(MedsrError, match="weights do not fit"):
        build_model(_meta("deepresolve3d", {"features": 3, "depth": 2}), read_checkpoint(trained)[0])


@pytest.mark.parametrize("name", ["deepresolve3d", "shuffle3d"])
@pytest.mark.parametrize("factor", [3.0, 2.5])
def test_checkpoint_inference_geometry_and_units(tmp_path: Path, name: str, factor: float) -> None:
    """An untrained network is exact cubic interpolation: a linear ramp in world z (HU-like values) must
    come back as the same ramp at every interior output voxel's world position, on an oblique flipped grid."""
    args = (
        {"features": 4, "depth": 2} if name == "deepresolve3d" else {"features": 4, "blocks": 1, "factor": 3}
    )
    path = save_checkpoint(tmp_path / "m.safetensors", MODELS[name](**args), _meta(name, args))
    axis = 1
    affine = make_affine((0.9, 3.0, 1.1), rng=np.random.default_rng(3), flips=(-1, 1, 1))
    shape = (20, 9, 18)
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1)
    world = apply_affine(affine, ijk)
    ramp = lambda xyz: 2.0 * xyz[..., 0] - 7.0 * xyz[..., 1] + 5.0 * xyz[..., 2] - 1000.0  # noqa: E731
    volume = make_volume(ramp(world).astype(np.float32), affine)
    out, facts = model_upscale(
        volume, path, axis=axis, factor=factor, slice_profile=slice_profile(volume, axis)
    )
    shape_out, affine_out = geometry.upscaled_grid(shape, affine, axis, factor)
    assert tuple(out.shape[1:]) == shape_out
    np.testing.assert_allclose(affine_of(out), affine_out)
    np.testing.assert_allclose(
        geometry.extent_corners(shape_out, affine_out), geometry.extent_corners(shape, affine), atol=1e-6
    )
    ijk_out = np.stack(np.meshgrid(*[np.arange(n) for n in shape_out], indexing="ij"), axis=-1)
    expected = ramp(apply_affine(affine_out, ijk_out))
    inner = [slice(None)] * 3
    inner[axis] = slice(int(2 * factor), shape_out[axis] - int(2 * factor))  # cubic needs 2 slices each side
    np.testing.assert_allclose(out[0].numpy()[tuple(inner)], expected[tuple(inner)], atol=0.05)
    assert facts["architecture"] == name


@pytest.mark.parametrize("name", ["deepresolve3d", "shuffle3d"])
def test_checkpoint_tiled_inference_equals_one_pass(name: str) -> None:
    """In-plane tiles with a receptive-field halo reproduce a whole-volume forward pass exactly, for output
    slice counts that are not a multiple of the input's (MONAI would round a zoom of 29 / 11)."""
    from medsr.models.interp import upscale_positions
    from medsr.runtime.sliding import predict_slices

    args = (
        {"features": 4, "depth": 4} if name == "deepresolve3d" else {"features": 4, "blocks": 1, "factor": 3}
    )
    model = _randomised(name, args).eval()
    lr = torch.randn(40, 37, 11)
    for n in (29, 33):
        positions = upscale_positions(11, n)
        tiled = predict_slices(model, lr, positions, roi_size=(16, 16), sw_batch_size=3)
        with torch.no_grad():
            whole = model(lr[None, None], positions)[0, 0]
        assert tiled.shape == (40, 37, n)
        torch.testing.assert_close(tiled, whole, atol=1e-5, rtol=1e-5)


def test_upscale_options_are_typed_once_at_the_public_door(tmp_path: Path) -> None:
    """upscale(**options) becomes SelfSupOptions/ModelOptions: a misspelt option is one MedsrError line
    naming it (for selfsup it was a TypeError from deep inside), a trained model ignores training options
    with a warning, and learner= with keywords is refused."""
    import medsr
    from medsr.errors import MedsrWarning
    from medsr.inference.options import ModelOptions, SelfSupOptions

    args = {"features": 2, "depth": 2}
    path = save_checkpoint(
        tmp_path / "t.safetensors", MODELS["deepresolve3d"](**args), _meta("deepresolve3d", args)
    )
    volume = make_volume(np.random.rand(12, 12, 6).astype(np.float32), np.diag([1.0, 1.0, 3.0, 1.0]))
    with pytest.raises(MedsrError, match="selfsup does not take option.s. stepz; it takes budget_s, steps"):
        medsr.upscale(volume, factor=3, method="selfsup", stepz=2)
    with pytest.raises(MedsrError, match="a trained model does not take option.s. roi"):
        medsr.upscale(volume, factor=3, model=path, roi=(8, 8))
    with pytest.warns(MedsrWarning, match="budget_s, steps apply to self-supervision; ignored"):
        warned = medsr.upscale(volume, factor=3, model=path, budget_s=5, steps=3, seed=1)
    typed = medsr.upscale(volume, factor=3, model=path, learner=ModelOptions(roi_size=(12, 12)))
    np.testing.assert_array_equal(warned.numpy(), typed.numpy())
    with pytest.raises(MedsrError, match="learner= or keyword options, not both"):
        medsr.upscale(volume, factor=3, learner=SelfSupOptions(steps=2), steps=2)
