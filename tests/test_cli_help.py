"""Every command's --help, and the method names the help and the docs use (``cubic`` is ``bspline``)."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import typer
from typer.testing import CliRunner

import medsr
from medsr.cli.main import app
from medsr.errors import MedsrError
from medsr.io.volume import make_volume
from medsr.jobs.benchmark import parse_methods
from tests.helpers.volumes import blob_volume, make_affine

runner = CliRunner()


def _command_paths(command, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """``()`` for the root, then every command and sub-command, depth first."""
    found = [path]
    ctx = typer.Context(command)
    for name in getattr(command, "list_commands", lambda _ctx: [])(ctx):
        found += _command_paths(command.get_command(ctx, name), (*path, name))
    return found


COMMANDS = _command_paths(typer.main.get_command(app))


def test_the_walk_finds_every_command() -> None:
    names = {" ".join(p) for p in COMMANDS}
    expected = {
        "",
        "info",
        "infer",
        "demo",
        "simulate",
        "evaluate",
        "benchmark",
        "train",
        "bids",
        "dicom-node",
    }
    assert expected | {"manifest", "manifest build", "manifest check"} <= names


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p) or "medsr")
def test_help_shows_no_type_after_flags(path: tuple[str, ...]) -> None:
    """Flags take no value: no ``<bool>`` after --overwrite, --progress/--no-progress or --help."""
    result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "--help" in result.stdout
    assert "<bool>" not in result.stdout, result.stdout


def test_help_still_shows_value_types() -> None:
    """Only flags lose their type: options that take a value keep theirs."""
    result = runner.invoke(app, ["infer", "--help"], env={"COLUMNS": "200"})
    assert "<float>" in result.stdout and "<path>" in result.stdout
    assert "cubic" in result.stdout  # --method lists the name the docs use


def _scan(path: Path) -> Path:
    affine = make_affine((0.9, 1.1, 3.0), rng=np.random.default_rng(5), flips=(-1, 1, 1))
    nib.save(nib.Nifti1Image(blob_volume((12, 10, 6)), affine), str(path))
    return path


def test_method_cubic_is_bspline_on_the_command_line(tmp_path: Path) -> None:
    scan = _scan(tmp_path / "scan.nii.gz")
    outs = {}
    for method in ("cubic", "bspline"):
        out = tmp_path / f"{method}.nii.gz"
        result = runner.invoke(app, ["infer", str(scan), "--method", method, "--factor", "3", "-o", str(out)])
        assert result.exit_code == 0, result.output
        sidecar = json.loads(out.with_name(f"{method}.json").read_text())
        assert sidecar["method"] == "bspline"  # the canonical name is recorded
        outs[method] = np.asarray(nib.load(str(out)).dataobj)
    np.testing.assert_array_equal(outs["cubic"], outs["bspline"])


def test_method_cubic_in_the_python_api() -> None:
    volume = make_volume(blob_volume((10, 9, 5)), make_affine((1.0, 1.0, 2.5)))
    cubic = medsr.upscale(volume, method="cubic", factor=2)
    bspline = medsr.upscale(volume, method="bspline", factor=2)
    assert cubic.meta["medsr"]["method"] == "bspline"
    np.testing.assert_array_equal(cubic.numpy(), bspline.numpy())
    with pytest.raises(MedsrError, match="cubic = bspline"):
        medsr.upscale(volume, method="spline", factor=2)


def test_benchmark_methods_take_cubic() -> None:
    assert [(s.name, s.method) for s in parse_methods("nearest,cubic")] == [
        ("nearest", "nearest"),
        ("bspline", "bspline"),
    ]
    with pytest.raises(MedsrError, match="each once"):
        parse_methods("cubic,bspline")
