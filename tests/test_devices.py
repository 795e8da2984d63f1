"""Device and precision policy (medsr/runtime/device.py, docs/devices.md): one rule, refused early."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import medsr
from medsr.cli.main import app
from medsr.errors import MedsrError
from medsr.models import MODELS
from medsr.runtime.checkpoint import save_checkpoint
from medsr.runtime.device import amp_policy, precision_for, resolve_device
from tests.helpers.train import tiny_overrides, write_tiny_set
from tests.helpers.volumes import blob_volume, make_affine

runner = CliRunner()
no_gpu = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: cuda is usable")


# ---------------------------------------------------------------- the precision rule (pure)


@pytest.mark.parametrize(
    ("device", "amp", "training", "cuda_bf16", "cpu_bf16", "dtype", "scale"),
    [
        ("cuda", True, True, True, False, torch.bfloat16, False),  # Ampere and later
        ("cuda", True, False, True, False, torch.bfloat16, False),
        ("cuda", True, True, False, False, torch.float16, True),  # no bf16: fp16 needs loss scaling
        ("cuda", True, False, False, False, torch.float16, False),  # inference: fp16, nothing to scale
        ("cuda", False, True, True, False, None, False),  # amp off: float32
        ("cpu", True, True, False, True, torch.bfloat16, False),  # selfsup training on native-bf16 CPUs
        ("cpu", True, True, False, False, None, False),
        ("cpu", True, False, True, False, None, False),  # a GPU's bf16 says nothing about the CPU
        ("cpu", False, True, False, True, None, False),
    ],
)
@pytest.mark.filterwarnings("ignore:torch.cuda.amp.GradScaler is enabled, but CUDA is not available")
def test_amp_policy(device, amp, training, cuda_bf16, cpu_bf16, dtype, scale) -> None:
    policy = amp_policy(device, amp=amp, training=training, cuda_bf16=cuda_bf16, cpu_bf16=cpu_bf16)
    assert (policy.dtype, policy.scale) == (dtype, scale)
    assert (policy.grad_scaler() is not None) == scale


def test_cpu_precision_is_float32_for_inference_and_train_loop() -> None:
    """Today's CPU behaviour: only selfsup training (cpu_bf16=True) may autocast on a CPU."""
    cpu = torch.device("cpu")
    for training in (True, False):
        p = precision_for(cpu, amp=True, training=training)
        assert p.dtype is None and p.name == "float32" and p.grad_scaler() is None
    x = torch.ones(2, 2)
    with p.autocast():
        assert (x @ x).dtype == torch.float32
    bf16 = precision_for(cpu, amp=True, training=True, cpu_bf16=True)
    with bf16.autocast():
        assert (x @ x).dtype == torch.bfloat16


# ---------------------------------------------------------------- resolving names


def test_resolve_device_names() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(" CPU ") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected and resolve_device(None).type == expected
    for bad in ("gpu", "mps", "cuda:x", "", "tpu"):
        if bad == "":
            continue  # empty means auto
        with pytest.raises(MedsrError, match="use --device auto, cpu or cuda"):
            resolve_device(bad)


@no_gpu
@pytest.mark.parametrize("name", ["cuda", "cuda:0", "CUDA"])
def test_cuda_without_a_gpu_is_refused(name: str) -> None:
    with pytest.raises(MedsrError, match=f"--device '{name}' asks for CUDA.*use --device cpu or auto"):
        resolve_device(name)


# ---------------------------------------------------------------- refused before anything happens


def _scan(path: Path) -> Path:
    affine = make_affine((1.0, 1.1, 3.0), rng=np.random.default_rng(3), flips=(1, -1, 1))
    nib.save(nib.Nifti1Image(blob_volume((12, 10, 6)), affine), str(path))
    return path


def _one_line_cuda_error(result) -> None:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("medsr: error: --device 'cuda'"), lines
    assert "--device cpu" in lines[0]


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@no_gpu
@pytest.mark.parametrize("method", ["bspline", "linear", "nearest", "selfsup", "model"])
def test_infer_refuses_cuda_without_a_gpu_for_every_method(tmp_path: Path, method: str) -> None:
    scan = _scan(tmp_path / "scan.nii.gz")
    args = ["infer", str(scan), "--device", "cuda", "-o", str(tmp_path / "out.nii.gz"), "--steps", "2"]
    if method == "model":
        args += ["--model", str(_checkpoint(tmp_path / "m.safetensors"))]
    else:
        args += ["--method", method]
    before = _files(tmp_path)
    _one_line_cuda_error(runner.invoke(app, args))
    assert _files(tmp_path) == before  # no output, no sidecar, no temporary


@no_gpu
def test_batch_refuses_cuda_once_before_any_scan(tmp_path: Path) -> None:
    folder = tmp_path / "scans"
    folder.mkdir()
    for i in range(3):
        _scan(folder / f"s{i}.nii.gz")
    before = _files(tmp_path)
    result = runner.invoke(
        app, ["infer", str(folder), "--method", "nearest", "--device", "cuda", "-o", str(tmp_path / "out")]
    )
    _one_line_cuda_error(result)
    assert _files(tmp_path) == before  # no output folder, no batch report


@no_gpu
def test_batch_api_refuses_cuda_once(tmp_path: Path) -> None:
    from medsr.inference.options import SelfSupOptions
    from medsr.jobs.infer import infer_batch
    from medsr.jobs.options import InferOptions

    scans = [_scan(tmp_path / f"s{i}.nii.gz") for i in range(2)]
    opts = InferOptions(method="selfsup", selfsup=SelfSupOptions(device="cuda", steps=2))
    with pytest.raises(MedsrError, match="asks for CUDA"):
        infer_batch(scans, tmp_path / "out", opts, progress=False)
    assert not (tmp_path / "out").exists()


@no_gpu
@pytest.mark.parametrize("method", ["bspline", "cubic", "nearest", "selfsup"])
def test_upscale_api_refuses_cuda_before_reading(tmp_path: Path, method: str) -> None:
    missing = tmp_path / "not_read.nii.gz"  # never opened: the device is checked first
    with pytest.raises(MedsrError, match="asks for CUDA"):
        medsr.upscale(missing, method=method, factor=2, device="cuda")


@no_gpu
def test_train_refuses_cuda_before_creating_the_run(tmp_path: Path) -> None:
    manifest = write_tiny_set(tmp_path / "data")
    sets = [x for o in (*tiny_overrides(manifest), "train.device=cuda") for x in ("--set", o)]
    result = runner.invoke(
        app,
        ["train", str(Path(__file__).parents[1] / "configs" / "default.yaml"), "-o", str(tmp_path / "run")]
        + sets,
    )
    _one_line_cuda_error(result)
    assert not (tmp_path / "run").exists()


@no_gpu
def test_benchmark_refuses_cuda_before_writing(tmp_path: Path) -> None:
    scan = tmp_path / "hr.nii.gz"
    nib.save(nib.Nifti1Image(blob_volume((12, 12, 16)), make_affine((1.0, 1.0, 1.0))), str(scan))
    args = ["--methods", "nearest", "--factor", "2", "--in-process", "--device", "cuda"]
    result = runner.invoke(app, ["benchmark", str(scan), "-o", str(tmp_path / "bench"), *args])
    _one_line_cuda_error(result)
    assert not (tmp_path / "bench").exists()


def _checkpoint(path: Path) -> Path:
    args = {"features": 4, "depth": 3}
    meta = {
        "kind": "trained",
        "architecture": "deepresolve3d",
        "model_args": args,
        "factor_range": [1.5, 4.0],
        "normalisation": {"mode": "percentile", "lower": 0.5, "upper": 99.5},
        "config": {"inference": {"roi_size": [12, 12], "overlap": 0.25, "sw_batch_size": 1}},
    }
    return save_checkpoint(path, MODELS["deepresolve3d"](**args), meta)


def test_the_runtime_layer_imports_nothing_above_it() -> None:
    """medsr/runtime/ sits below inference, training and cli (docs/devices.md)."""
    import ast

    folder = Path(medsr.__file__).parent / "runtime"
    for path in folder.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom | ast.Import):
                names = (
                    [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
                )
                for name in names:
                    assert not name.startswith(("medsr.inference", "medsr.training", "medsr.cli")), (
                        path,
                        name,
                    )
