"""Faults: signals during a write (real subprocesses), a full disk (simulated and real), batch failures.

Each row of :data:`FAULTS` names the test that proves it; docs/robustness.md is rendered from them.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from typer.testing import CliRunner

import medsr.inference.predict as predict
import medsr.io.writers as writers
from medsr.cli.main import app
from tests.helpers.dicom import DATA, copy_ct5n
from tests.helpers.robustness import BY_ID, FAULTS
from tests.helpers.volumes import blob_volume, make_affine

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def _scan(path: Path, shape=(24, 20, 8), seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    nib.save(nib.Nifti1Image(blob_volume(shape, rng), make_affine((0.9, 0.9, 3.0), rng=rng)), str(path))
    return path


def _listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# ---------------------------------------------------------------- signals

#: Runs the real CLI entry point (medsr.cli.main.main, which installs the SIGTERM handler) with the
#: NIfTI writer stalled after it has put the temporary file on disk, so a signal lands mid-write.
STALLED_CLI = textwrap.dedent(
    """
    import signal, sys, time
    from pathlib import Path
    import medsr.io.writers as writers

    marker = Path(sys.argv[1])
    signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal, even if started in background
    real_nifti = writers._write_nifti

    def write_nifti(*args, **kwargs):
        real_nifti(*args, **kwargs)
        marker.write_text("writing")
        time.sleep(120)

    writers._write_nifti = write_nifti
    from medsr.cli.main import main
    sys.argv = ["medsr", *sys.argv[2:]]
    main()
    """
)


@dataclass
class Run:
    """One real ``medsr`` process: what it was given and how it ended."""

    proc: subprocess.Popen
    out_dir: Path
    marker: Path | None = None  # written by STALLED_CLI when the write stalls
    signal: int | None = None
    at_signal: list[str] = field(default_factory=list)  # the output folder when the signal was sent
    stdout: str = ""
    stderr: str = ""
    after: list[str] = field(default_factory=list)


SIGNALS = {"SIGTERM": (signal.SIGTERM, 143), "SIGINT": (signal.SIGINT, 130)}


def _start(args: list[str], out_dir: Path, wrapper: list[str] | None = None) -> Run:
    proc = subprocess.Popen(
        [*(wrapper or []), sys.executable, *args],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    return Run(proc, out_dir)


def _noise_scan(path: Path) -> Path:
    """Incompressible voxels, so the output is far larger than the limits below."""
    data = np.random.default_rng(0).normal(size=(48, 48, 12)).astype(np.float32)
    nib.save(nib.Nifti1Image(data, np.diag([0.8, 0.8, 4.0, 1.0])), str(path))
    return path


def _unshare() -> str | None:
    tool = shutil.which("unshare")
    if tool is None or subprocess.run([tool, "-r", "-m", "true"], capture_output=True).returncode:
        return None
    return tool


@pytest.fixture(scope="module")
def real_runs(tmp_path_factory) -> dict[str, Run]:
    """The real-process scenarios, started together (each pays Python + torch start-up, a few seconds)."""
    runs: dict[str, Run] = {}
    for name, (sig, _) in SIGNALS.items():
        base = tmp_path_factory.mktemp(name)
        src = _scan(base / "scan.nii.gz")
        out_dir = base / "out"
        out_dir.mkdir()
        args = ["infer", str(src), "--method", "nearest", "--factor", "2", "-o", str(out_dir / "up.nii.gz")]
        runs[name] = _start(["-c", STALLED_CLI, str(base / "marker"), *args], out_dir)
        runs[name].marker, runs[name].signal = base / "marker", sig
    base = tmp_path_factory.mktemp("chatty")
    runs["chatty"] = _start(["-c", CHATTY_CLI, *map(str, _chatty_inputs(base))], base)
    tool = _unshare()
    if tool is not None:
        base = tmp_path_factory.mktemp("tmpfs")
        out_dir = base / "out"
        out_dir.mkdir()
        src = _noise_scan(base / "scan.nii.gz")
        args = ["-c", CLI, "infer", str(src), "--method", "linear", "-o", str(out_dir / "up.nii.gz")]
        script = 'mount -t tmpfs -o size=256k tmpfs "$0" || exit 99; "$@"; echo "rc=$?"; ls -A "$0"'
        runs["tmpfs"] = _start(args, out_dir, wrapper=[tool, "-r", "-m", "sh", "-c", script, str(out_dir)])
    deadline = time.monotonic() + 240
    waiting = {name: run for name, run in runs.items() if run.marker is not None}
    while waiting and time.monotonic() < deadline:
        for name, run in list(waiting.items()):
            if run.marker.exists():
                run.at_signal = _listing(run.out_dir)
                run.proc.send_signal(run.signal)
                del waiting[name]
            elif run.proc.poll() is not None:
                del waiting[name]  # ended before the write stalled: its test reports it
        time.sleep(0.05)
    for run in runs.values():
        try:
            run.stdout, run.stderr = run.proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            run.proc.kill()
            run.stdout, run.stderr = run.proc.communicate()
        run.after = _listing(run.out_dir)
    return runs


CLI = "from medsr.cli.main import main; main()"


#: Several `medsr info` runs in one real process, each after a marker line on stderr.
CHATTY_CLI = textwrap.dedent(
    """
    import sys
    from medsr.cli.main import app

    for path in sys.argv[1:]:
        print("@@", path, file=sys.stderr, flush=True)
        try:
            app(["info", path])
        except SystemExit as done:
            print("@@ exit", done.code, file=sys.stderr, flush=True)
    """
)


def _chatty_inputs(folder: Path) -> list[Path]:
    """Files that make ITK print on fd 2, nibabel log header fixes, and pydicom warn."""
    import SimpleITK as sitk

    data = np.random.default_rng(0).random((6, 5, 4)).astype(np.float32)
    sitk.WriteImage(sitk.GetImageFromArray(data.transpose(2, 1, 0)), str(folder / "good.mha"))
    (folder / "bad.mha").write_bytes((folder / "good.mha").read_bytes().replace(b"DimSize", b"DimSixe"))
    hdr = nib.Nifti1Header()
    hdr.set_data_shape(data.shape)
    hdr.set_data_dtype(np.float32)
    hdr.set_zooms((1.0, 1.0, 3.0))
    hdr.set_sform(np.diag([1.0, 1.0, 3.0, 1.0]), code=1)
    (folder / "offset0.nii").write_bytes(hdr.binaryblock + b"\0" * 4 + data.tobytes("F"))
    hdr["vox_offset"], hdr["qform_code"] = 352, 99  # an invalid code nibabel logs and resets: still readable
    (folder / "qcode99.nii").write_bytes(hdr.binaryblock + b"\0" * 4 + data.tobytes("F"))
    shutil.copy(DATA / "rtstruct.dcm", folder / "rtstruct.dcm")  # no preamble: pydicom warns on read
    return [folder / n for n in ("bad.mha", "offset0.nii", "qcode99.nii", "rtstruct.dcm")]


@pytest.mark.slow
@pytest.mark.parametrize("name", SIGNALS)
def test_signal_during_write_in_a_real_process(real_runs: dict[str, Run], name: str) -> None:
    run = real_runs[name]
    assert run.at_signal, f"medsr ended before the write stalled: {run.stderr}"
    parts = [entry for entry in run.at_signal if entry.startswith(".up.part-")]
    assert len(parts) == 1, run.at_signal  # a partial output was on disk when the signal arrived
    assert run.proc.returncode == SIGNALS[name][1], run.stderr
    assert run.stderr.strip().splitlines()[-1].endswith("no partial output was kept"), run.stderr
    assert run.after == []


@contextmanager
def _sigterm_handler() -> Iterator[None]:
    """The handler :func:`medsr.cli.main.main` installs, in this process for the duration."""
    from medsr.cli.main import _on_sigterm

    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _sigterm_self() -> None:
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(30)  # the handler raises long before this ends


@pytest.mark.parametrize("kind", ["dicom", "overwrite"])
def test_sigterm_mid_write_in_this_process(tmp_path: Path, monkeypatch, kind: str) -> None:
    """A real SIGTERM to this process while a DICOM series is half written, or while --overwrite replaces."""
    seen: list[str] = []
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    if kind == "dicom":
        src = tmp_path / "series"
        copy_ct5n(src)
        out, extra = out_dir / "up", []
        real, calls = pydicom.dcmwrite, []

        def dcmwrite(*args, **kwargs):
            real(*args, **kwargs)
            calls.append(1)
            if len(calls) == 3:
                seen.extend(_listing(out_dir))
                _sigterm_self()

        monkeypatch.setattr(pydicom, "dcmwrite", dcmwrite)
    else:
        src = _scan(tmp_path / "scan.nii.gz")
        out, extra = out_dir / "up.nii.gz", ["--overwrite"]
        out.write_bytes(b"earlier output")
        real_write = writers._write_nifti

        def write_nifti(*args):
            real_write(*args)
            seen.extend(_listing(out_dir))
            _sigterm_self()

        monkeypatch.setattr(writers, "_write_nifti", write_nifti)
    with _sigterm_handler():
        args = ["infer", str(src), "--method", "nearest", "--factor", "2", "-o", str(out), *extra]
        result = runner.invoke(app, args)
    assert result.exit_code == 143, result.output
    assert result.stderr.strip() == "medsr: terminated (SIGTERM); no partial output was kept"
    assert any(name.startswith(".up.part-") for name in seen), seen
    if kind == "dicom":
        assert len(list((out_dir / next(n for n in seen if n.startswith(".up"))).glob("*"))) == 0  # gone
        assert _listing(out_dir) == []
    else:
        assert _listing(out_dir) == ["up.nii.gz"] and out.read_bytes() == b"earlier output"


@pytest.mark.slow
def test_one_line_even_when_libraries_talk_in_a_real_process(real_runs: dict[str, Run]) -> None:
    """ITK's C++ messages on fd 2, nibabel's header-fix log and pydicom's warnings stay out of the output."""
    blocks: dict[str, list[str]] = {}
    current = "(before the first run)"
    for line in real_runs["chatty"].stderr.splitlines():
        if line.startswith("@@ exit"):
            blocks.setdefault(current, []).append(line)
        elif line.startswith("@@ "):
            current = Path(line[3:]).name
            blocks[current] = []
        else:
            blocks.setdefault(current, []).append(line)
    assert set(blocks) == {"bad.mha", "offset0.nii", "qcode99.nii", "rtstruct.dcm"}, real_runs[
        "chatty"
    ].stderr
    for name in ("bad.mha", "offset0.nii", "rtstruct.dcm"):
        assert len(blocks[name]) == 2 and blocks[name][1] == "@@ exit 2", blocks[name]
        assert blocks[name][0].startswith("medsr: error: ") and name in blocks[name][0], blocks[name]
    assert "DimSize required and not defined" in blocks["bad.mha"][0]  # ITK's words, in the one line
    assert blocks["qcode99.nii"] == ["@@ exit 0"], blocks["qcode99.nii"]  # read fine, nothing printed


# ---------------------------------------------------------------- a full disk


def _enospc(path: object = None) -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))


@pytest.mark.parametrize("target", ["nifti", "dicom", "sidecar"])
def test_disk_full_is_one_clear_line(tmp_path: Path, monkeypatch, target: str) -> None:
    if target == "dicom":
        src = tmp_path / "series"
        copy_ct5n(src)
        out = tmp_path / "out" / "up"
        real, calls = pydicom.dcmwrite, []

        def dcmwrite(filename, *args, **kwargs):
            calls.append(filename)
            if len(calls) == 4:
                Path(filename).write_bytes(b"DICM partial")
                raise _enospc(filename)
            return real(filename, *args, **kwargs)

        monkeypatch.setattr(pydicom, "dcmwrite", dcmwrite)
    else:
        src = _scan(tmp_path / "scan.nii.gz")
        out = tmp_path / "out" / "up.nii.gz"
        if target == "nifti":

            def write_nifti(data, affine, volume, tmp):
                Path(tmp).write_bytes(b"\x1f\x8b partial")
                raise _enospc(tmp)

            monkeypatch.setattr(writers, "_write_nifti", write_nifti)
        else:
            real_write_text = Path.write_text

            def write_text(self, text, *args, **kwargs):
                if self.name.endswith(".json"):
                    real_write_text(self, text[:10], *args, **kwargs)
                    raise _enospc(self)
                return real_write_text(self, text, *args, **kwargs)

            monkeypatch.setattr(Path, "write_text", write_text)
    out.parent.mkdir()
    result = runner.invoke(app, ["infer", str(src), "--method", "nearest", "--factor", "2", "-o", str(out)])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "not enough disk space" in lines[0] and "nothing was written" in lines[0], (
        lines
    )
    assert _listing(out.parent) == []  # no partial file, and no output without its sidecar


def test_file_size_limit_is_a_real_kernel_error(tmp_path: Path) -> None:
    """A real EFBIG from the kernel: this process may write at most 64 kB per file for the duration."""
    resource = pytest.importorskip("resource")
    if not hasattr(signal, "SIGXFSZ"):
        pytest.skip("no file size limit signal here")
    src = _noise_scan(tmp_path / "scan.nii.gz")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails, not kills
    resource.setrlimit(resource.RLIMIT_FSIZE, (min(1 << 16, hard) if hard >= 0 else 1 << 16, hard))
    try:
        result = runner.invoke(
            app, ["infer", str(src), "--method", "linear", "-o", str(out_dir / "up.nii.gz")]
        )
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "not enough disk space to write it (File too large)" in lines[0], lines
    assert _listing(out_dir) == []


@pytest.mark.slow
def test_full_tmpfs_in_a_real_process(real_runs: dict[str, Run]) -> None:
    run = real_runs.get("tmpfs")
    if run is None or "rc=" not in run.stdout:
        pytest.skip("unprivileged user and mount namespaces (for a small tmpfs) are not available here")
    assert run.stdout.split() == ["rc=2"], run.stdout  # exit 2, and nothing left in the full file system
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "not enough disk space to write it (No space left on device)" in lines[0], (
        lines
    )


# ---------------------------------------------------------------- batches


def test_batch_records_every_failure_and_carries_on(tmp_path: Path, monkeypatch) -> None:
    scans = tmp_path / "scans"
    scans.mkdir()
    for name in ("good", "bug", "full"):
        _scan(scans / f"{name}.nii.gz")
    bad = {
        "nifti-truncated-gz": "truncated",
        "nifti-4d": "--volume-index",
        "nifti-all-nan": "every voxel is NaN",
        "nrrd-junk": "not a readable NRRD file",
        "dicom-missing-slice": "non-uniform slice spacing",
    }
    for case_id in bad:
        built = BY_ID[case_id].build(tmp_path)
        shutil.move(built, scans / f"{case_id}{''.join(built.suffixes)}")
    real_upscale = predict.upscale

    def upscale(volume, **kwargs):
        if str(volume.meta["filename_or_obj"]).endswith("bug.nii.gz"):
            raise ZeroDivisionError("a bug")
        return real_upscale(volume, **kwargs)

    real_write = writers._write_nifti

    def write_nifti(data, affine, volume, tmp):
        if "full_medsr" in Path(tmp).name:
            raise _enospc(tmp)
        return real_write(data, affine, volume, tmp)

    monkeypatch.setattr(predict, "upscale", upscale)
    monkeypatch.setattr(writers, "_write_nifti", write_nifti)
    out = tmp_path / "out"
    result = runner.invoke(app, ["infer", str(scans), "-o", str(out), "--method", "linear", "--no-progress"])
    assert result.exit_code == 1, result.output
    assert "1 written, 0 skipped (already done), 7 failed" in result.stdout
    report = json.loads((out / "medsr_batch.json").read_text())
    assert [Path(p).name for p in report["done"]] == ["good_medsr.nii.gz"]
    reasons = {Path(f["input"]).name.split(".")[0]: f["error"] for f in report["failed"]}
    assert reasons["bug"] == "internal error ZeroDivisionError: a bug (please report it)"
    assert "not enough disk space" in reasons["full"]
    for case_id, fragment in bad.items():
        assert fragment in reasons[case_id], reasons[case_id]
    assert report["interrupted"] is False
    assert _listing(out) == ["good_medsr.json", "good_medsr.nii.gz", "medsr_batch.json"]


def test_interrupted_batch_reports_and_resumes(tmp_path: Path, monkeypatch) -> None:
    scans = tmp_path / "scans"
    scans.mkdir()
    for i in range(3):
        _scan(scans / f"s{i}.nii.gz", seed=i)
    real_upscale = predict.upscale

    def upscale(volume, **kwargs):
        if str(volume.meta["filename_or_obj"]).endswith("s1.nii.gz"):
            raise KeyboardInterrupt
        return real_upscale(volume, **kwargs)

    monkeypatch.setattr(predict, "upscale", upscale)
    out = tmp_path / "out"
    args = ["infer", str(scans), "-o", str(out), "--method", "nearest", "--factor", "2", "--no-progress"]
    first = runner.invoke(app, args)
    assert first.exit_code == 130, first.output
    report = json.loads((out / "medsr_batch.json").read_text())
    assert report["interrupted"] is True and [Path(p).name for p in report["done"]] == ["s0_medsr.nii.gz"]
    assert _listing(out) == ["medsr_batch.json", "s0_medsr.json", "s0_medsr.nii.gz"]
    monkeypatch.setattr(predict, "upscale", real_upscale)
    second = runner.invoke(app, args)
    assert second.exit_code == 0, second.output
    assert "2 written, 1 skipped" in second.stdout


def test_batch_redoes_an_output_without_sidecar(tmp_path: Path) -> None:
    scans = tmp_path / "scans"
    scans.mkdir()
    for i in range(2):
        _scan(scans / f"s{i}.nii.gz", seed=i)
    out = tmp_path / "out"
    args = ["infer", str(scans), "-o", str(out), "--method", "nearest", "--factor", "2", "--no-progress"]
    assert runner.invoke(app, args).exit_code == 0
    (out / "s1_medsr.json").unlink()
    (out / "s1_medsr.nii.gz").write_bytes(b"half")
    again = runner.invoke(app, args)
    assert again.exit_code == 0, again.output
    assert "1 written (1 redone), 1 skipped" in again.stdout
    assert "redone: s1.nii.gz (no sidecar, an interrupted run)" in again.stdout
    assert nib.load(str(out / "s1_medsr.nii.gz")).shape == (24, 20, 16)


# ---------------------------------------------------------------- other faults of a single run


def test_internal_error_is_one_line(tmp_path: Path, monkeypatch) -> None:
    src = _scan(tmp_path / "scan.nii.gz")

    def broken(volume, **kwargs):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(predict, "upscale", broken)
    result = runner.invoke(app, ["infer", str(src), "-o", str(tmp_path / "up.nii.gz")])
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        "medsr: internal error: ZeroDivisionError: division by zero (run with --debug for the traceback and "
        "please report it)"
    ]
    assert _listing(tmp_path) == ["scan.nii.gz"]
    debug = runner.invoke(app, ["--debug", "infer", str(src), "-o", str(tmp_path / "up.nii.gz")])
    assert isinstance(debug.exception, ZeroDivisionError)


def test_overwrite_never_deletes_a_users_folder(tmp_path: Path) -> None:
    series = tmp_path / "study" / "series"
    copy_ct5n(series)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.txt").write_text("years of work")
    for target in (mine, tmp_path / "study"):
        result = runner.invoke(
            app,
            ["infer", str(series), "--method", "nearest", "--factor", "2", "-o", str(target), "--overwrite"],
        )
        assert result.exit_code == 2, result.output
        assert len(result.stderr.strip().splitlines()) == 1
    assert (mine / "thesis.txt").read_text() == "years of work"
    assert len(list(series.iterdir())) == 5 and _listing(tmp_path / "study") == ["series"]
    # A folder medsr wrote itself may be replaced.
    out = tmp_path / "derived"
    args = ["infer", str(series), "--method", "nearest", "--factor", "2", "-o", str(out)]
    assert runner.invoke(app, args).exit_code == 0
    assert runner.invoke(app, [*args, "--overwrite"]).exit_code == 0
    assert len(list(out.iterdir())) == 10


def test_foreign_sidecar_is_not_replaced(tmp_path: Path) -> None:
    src = _scan(tmp_path / "scan.nii.gz")
    bids = tmp_path / "sub-01_T1w.json"
    bids.write_text('{"RepetitionTime": 2.3}')
    result = runner.invoke(app, ["infer", str(src), "-o", str(tmp_path / "sub-01_T1w.nii.gz")])
    assert result.exit_code == 2 and "is not a medsr sidecar" in result.stderr
    assert bids.read_text() == '{"RepetitionTime": 2.3}'
    assert _listing(tmp_path) == ["scan.nii.gz", "sub-01_T1w.json"]


def test_every_fault_row_names_a_real_test() -> None:
    for _, test, _ in FAULTS:
        assert callable(globals().get(test.split("[")[0])), test
