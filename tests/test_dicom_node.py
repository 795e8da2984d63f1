"""``medsr dicom-node`` end to end on loopback: a pynetdicom SCU sends pydicom's CT series to the node (a
real subprocess), a pynetdicom SCP in the test receives the derived series. Every wait is bounded.
Only 127.0.0.1 and ports the OS handed out (bind to port 0) are used.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pynetdicom import AE, AllStoragePresentationContexts, evt
from pynetdicom.sop_class import CTImageStorage, RTStructureSetStorage, Verification

pytestmark = pytest.mark.slow

HOST = "127.0.0.1"
ROOT = Path(__file__).resolve().parents[1]
DIRTESTS = Path(pydicom.data.__file__).parent / "test_files" / "dicomdirtests"
CT5N = DIRTESTS / "98892001" / "CT5N"  # 5 slices, one series
CT2 = DIRTESTS / "77654033" / "CT2"  # unevenly spaced slices: the infer job refuses it
RTSTRUCT = Path(pydicom.data.get_testdata_file("rtstruct.dcm"))
INFER = ["--method", "bspline", "--factor", "2"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def wait_for(condition: Callable[[], object], timeout: float, what: str, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    detail = f"\nnode log:\n{log.read_text()}" if log is not None and log.exists() else ""
    raise AssertionError(f"timed out after {timeout} s waiting for {what}{detail}")


class Receiver:
    """A storage SCP on loopback that keeps every dataset it is sent."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.datasets: list[pydicom.Dataset] = []
        self._lock = threading.Lock()
        ae = AE(ae_title="RECEIVER")
        ae.supported_contexts = AllStoragePresentationContexts
        self.server = ae.start_server(
            (HOST, port), block=False, evt_handlers=[(evt.EVT_C_STORE, self._store)]
        )

    def _store(self, event) -> int:
        ds = event.dataset
        ds.file_meta = event.file_meta
        with self._lock:
            self.datasets.append(ds)
        return 0x0000

    def received(self) -> list[pydicom.Dataset]:
        with self._lock:
            return list(self.datasets)

    def stop(self) -> None:
        self.server.shutdown()


class Node:
    """``python -m medsr dicom-node`` as a subprocess, its log in a file."""

    def __init__(self, workdir: Path, port: int, *args: str) -> None:
        self.workdir, self.port = workdir, port
        self.log = workdir.parent / f"{workdir.name}.log"
        cmd = [sys.executable, "-m", "medsr", "dicom-node", "--host", HOST, "--port", str(port)]
        cmd += ["--ae-title", "MEDSR", "--workdir", str(workdir), *args]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        with self.log.open("a") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=log, env=env, cwd=ROOT)
        wait_for(self.echo, 60, "the node to answer C-ECHO", self.log)

    def echo(self) -> bool:
        assert self.proc.poll() is None, f"node exited with {self.proc.returncode}:\n{self.log.read_text()}"
        ae = AE(ae_title="TESTSCU")
        ae.add_requested_context(Verification)
        ae.connection_timeout = ae.acse_timeout = ae.dimse_timeout = 5
        assoc = ae.associate(HOST, self.port, ae_title="MEDSR")
        if not assoc.is_established:
            return False
        status = assoc.send_c_echo()
        assoc.release()
        return status.Status == 0x0000

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(timeout=10)


def send(port: int, folder: Path) -> list[int]:
    """C-STORE every file of ``folder`` to the node; returns the statuses."""
    ae = AE(ae_title="TESTSCU")
    ae.add_requested_context(CTImageStorage)
    ae.connection_timeout = ae.acse_timeout = ae.dimse_timeout = 10
    assoc = ae.associate(HOST, port, ae_title="MEDSR")
    assert assoc.is_established
    try:
        return [int(assoc.send_c_store(path).Status) for path in sorted(folder.iterdir())]
    finally:
        assoc.release()


def rtstruct() -> pydicom.Dataset:
    """pydicom's RT Structure Set (a file without file meta) with the transfer syntax it is stored in."""
    ds = pydicom.dcmread(RTSTRUCT, force=True)
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ImplicitVRLittleEndian
    return ds


def copy_as_new_series(source: Path, target: Path) -> Path:
    """``source``'s instances as another series of the same study (new Series and SOP Instance UIDs)."""
    target.mkdir(parents=True)
    series = pydicom.uid.generate_uid()
    for path in sorted(source.iterdir()):
        ds = pydicom.dcmread(path)
        ds.SeriesInstanceUID = series
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
        ds.save_as(target / f"{path.name}.dcm")
    return target


def dcm_files(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.dcm")) if folder.exists() else []


@pytest.fixture(scope="module")
def node(tmp_path_factory) -> Iterator[tuple[Node, Receiver]]:
    """A node forwarding to a receiver, both on loopback, shared by the tests that only send to it."""
    receiver = Receiver(free_port())
    workdir = tmp_path_factory.mktemp("node") / "spool"
    node = Node(
        workdir, free_port(), "--idle-seconds", "0.5", "--forward", f"{HOST}:{receiver.port}:RECEIVER", *INFER
    )
    yield node, receiver
    node.stop()
    receiver.stop()


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> list[pydicom.Dataset]:
    """CT5N through ``medsr infer`` with the node's options, slices in InstanceNumber order."""
    from typer.testing import CliRunner

    from medsr.cli.main import app

    out = tmp_path_factory.mktemp("reference") / "ct5n_medsr"
    result = CliRunner().invoke(app, ["infer", str(CT5N), "-o", str(out), *INFER])
    assert result.exit_code == 0, result.output
    return sorted((pydicom.dcmread(p) for p in out.glob("*.dcm")), key=lambda ds: int(ds.InstanceNumber))


def test_series_comes_back_upscaled_with_the_geometry_of_medsr_infer(node, reference):
    node_, receiver = node
    before = len(receiver.received())
    assert send(node_.port, CT5N) == [0x0000] * 5
    wait_for(lambda: len(receiver.received()) >= before + 10, 60, "10 derived instances", node_.log)
    time.sleep(0.3)  # nothing more may come
    got = sorted(receiver.received()[before:], key=lambda ds: int(ds.InstanceNumber))
    source = pydicom.dcmread(next(CT5N.iterdir()), stop_before_pixels=True)
    assert len(got) == 2 * len(list(CT5N.iterdir())) == len(reference)
    assert {ds.StudyInstanceUID for ds in got} == {source.StudyInstanceUID}
    assert {ds.FrameOfReferenceUID for ds in got} == {source.FrameOfReferenceUID}
    assert len({ds.SeriesInstanceUID for ds in got}) == 1
    assert got[0].SeriesInstanceUID not in (source.SeriesInstanceUID, reference[0].SeriesInstanceUID)
    for ours, ref in zip(got, reference, strict=True):
        for keyword in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing"):
            np.testing.assert_array_equal(
                np.array(ours[keyword].value, float), np.array(ref[keyword].value, float)
            )
        np.testing.assert_array_equal(ours.pixel_array, ref.pixel_array)
    wait_for(lambda: not any((node_.workdir / "outbox").iterdir()), 10, "an empty outbox", node_.log)
    assert "5 instances received, 10 output instances" in node_.log.read_text()
    assert f"sent to RECEIVER@{HOST}:{receiver.port}" in node_.log.read_text()


def test_non_image_sop_class_is_refused(node):
    node_, _ = node
    ae = AE(ae_title="TESTSCU")
    ae.add_requested_context(RTStructureSetStorage)
    ae.add_requested_context(CTImageStorage)
    ae.connection_timeout = ae.acse_timeout = ae.dimse_timeout = 10
    assoc = ae.associate(HOST, node_.port, ae_title="MEDSR")
    assert assoc.is_established
    try:
        assert [cx.abstract_syntax for cx in assoc.rejected_contexts] == [RTStructureSetStorage]
        assert [cx.abstract_syntax for cx in assoc.accepted_contexts] == [CTImageStorage]
        with pytest.raises(ValueError, match="presentation context"):
            assoc.send_c_store(rtstruct())
    finally:
        assoc.release()
    rtstruct_series = rtstruct().SeriesInstanceUID
    assert not (node_.workdir / "incoming" / rtstruct_series).exists()


def test_a_series_that_fails_goes_to_failed_and_the_node_keeps_serving(node):
    node_, _ = node
    assert send(node_.port, CT2) == [0x0000] * 4
    uid = pydicom.dcmread(next(CT2.iterdir()), stop_before_pixels=True).SeriesInstanceUID
    reason = node_.workdir / "failed" / uid / "reason.txt"
    wait_for(reason.exists, 60, "failed/<series>/reason.txt", node_.log)
    assert "spac" in reason.read_text().lower()  # the reader's reason: uneven slice spacing
    assert len(dcm_files(node_.workdir / "failed" / uid / "input")) == 4
    assert node_.echo()


def docs_example() -> str:
    """The pynetdicom example of the DICOM node section of docs/pipelines.md."""
    text = (ROOT / "docs" / "pipelines.md").read_text()
    for block in (b.split("```", 1)[0] for b in text.split("```python\n")[1:]):
        if 'ae_title="MEDSR"' in block:
            return block
    raise AssertionError("no pynetdicom example of sending to medsr dicom-node in docs/")


def test_the_documented_pynetdicom_example_sends_a_series(node, capsys):
    node_, receiver = node
    code = docs_example()
    assert '"127.0.0.1", 11112' in code and 'Path("CT5N")' in code
    code = code.replace("11112", str(node_.port)).replace('Path("CT5N")', f"Path({str(CT5N)!r})")
    before = len(receiver.received())
    exec(compile(code, "docs example", "exec"), {})
    assert capsys.readouterr().out.count("0x0000") == 5
    wait_for(lambda: len(receiver.received()) >= before + 10, 60, "10 derived instances", node_.log)


def test_killed_during_processing_then_restarted_still_delivers(tmp_path):
    receiver = Receiver(free_port())
    workdir, port = tmp_path / "spool", free_port()
    forward = ("--idle-seconds", "0.5", "--forward", f"{HOST}:{receiver.port}:RECEIVER")
    # selfsup trains for its whole 60 s budget: the kill is certain to land while the series is processed
    slow = ("--method", "selfsup", "--factor", "2", "--steps", "1000000", "--budget", "60", "--device", "cpu")
    node = Node(workdir, port, *forward, *slow)
    try:
        assert send(port, CT5N) == [0x0000] * 5
        wait_for(lambda: any((workdir / "work").iterdir()), 30, "the series to be claimed", node.log)
        # while the worker is busy the node still takes associations: an echo and a second series
        assert node.echo()
        assert send(port, copy_as_new_series(CT5N, tmp_path / "second")) == [0x0000] * 5
        wait_for(lambda: len(dcm_files(workdir / "incoming")) == 5, 10, "the second series spooled", node.log)
        assert node.stop(signal.SIGKILL) == -signal.SIGKILL
        (job,) = (workdir / "work").iterdir()
        assert len(dcm_files(job / "input")) == 5  # killed mid-series: the input is kept
        assert not any((workdir / "outbox").iterdir()) and receiver.received() == []
        (job / ".output.part-99999").mkdir(exist_ok=True)  # as a kill while writing the output leaves it
        (job / ".output.part-99999" / "IM_0001.dcm").write_bytes(b"half written")

        node = Node(workdir, port, *forward, *INFER)
        wait_for(lambda: len(receiver.received()) >= 20, 90, "20 derived instances after restart", node.log)
        wait_for(lambda: not any((workdir / "outbox").iterdir()), 10, "an empty outbox", node.log)
        got = receiver.received()
        assert len(got) == 20 and len({ds.SOPInstanceUID for ds in got}) == 20
        assert len({ds.SeriesInstanceUID for ds in got}) == 2  # the killed series and the queued one
        assert not any((workdir / "work").iterdir())
        assert "resuming: 1 series to redo" in node.log.read_text()
    finally:
        node.stop()
        receiver.stop()


def test_unreachable_destination_keeps_the_result_until_it_comes_up(tmp_path):
    workdir, port, dest_port = tmp_path / "spool", free_port(), free_port()
    args = ("--idle-seconds", "0.5", "--retry-max-seconds", "1", *INFER)
    node = Node(workdir, port, "--forward", f"{HOST}:{dest_port}:RECEIVER", *args)
    receiver = None
    try:
        assert send(port, CT5N) == [0x0000] * 5
        outbox = workdir / "outbox"
        wait_for(lambda: "retrying" in node.log.read_text(), 60, "a failed send", node.log)
        (job,) = outbox.iterdir()
        assert len(dcm_files(job)) == 10  # nothing lost while the destination is down
        receiver = Receiver(dest_port)
        wait_for(lambda: len(receiver.received()) >= 10, 30, "delivery once the destination is up", node.log)
        wait_for(lambda: not any(outbox.iterdir()), 10, "an empty outbox", node.log)
        assert len(receiver.received()) == 10
        assert node.stop(signal.SIGTERM) == 143  # as every medsr command on SIGTERM
    finally:
        node.stop()
        if receiver is not None:
            receiver.stop()
