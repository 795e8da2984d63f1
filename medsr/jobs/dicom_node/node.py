"""The DICOM node: storage SCP in the background, infer worker in the main thread, sender in a thread.

Received series wait in incoming/ until complete (see :class:`SeriesTracker`), then the worker renames
each into work/, runs the infer job on it (:func:`medsr.jobs.infer.infer_one`: DICOM series folder
in, derived DICOM series folder out) and renames the result into outbox/. The sender C-STOREs outbox
series to ``--forward`` with backoff; without ``--forward`` they stay in outbox/. On start the node
resumes what a stopped or killed run left: incoming series are tracked again, work/ jobs are redone
from their input (a half-written output is discarded), and outbox series are sent.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medsr.errors import MedsrError
from medsr.jobs.dicom_node.forward import Backoff, Destination, send_series
from medsr.jobs.dicom_node.spool import Layout, SeriesTracker, fsync_folder, remove_temporaries
from medsr.jobs.options import InferOptions

log = logging.getLogger("medsr.dicom_node")

#: The node's record of a series, kept beside the derived files in outbox/<job>/.
RECORD = "medsr.json"


@dataclass(frozen=True)
class NodeConfig:
    """Where the node listens, where it keeps its files, and where it sends results."""

    workdir: Path
    port: int
    ae_title: str = "MEDSR"
    host: str = "127.0.0.1"
    idle_seconds: float = 10.0
    forward: Destination | None = None
    retry_max_seconds: float = 60.0
    poll_seconds: float = 0.2


def recover(layout: Layout) -> list[Path]:
    """Tidy what a killed run left and return the work/ jobs to redo (their input kept, output discarded)."""
    remove_temporaries(layout.incoming)
    redo = []
    for job in sorted(p for p in layout.work.iterdir() if p.is_dir()):
        if (layout.outbox / job.name).exists() or not (job / "input").is_dir():
            shutil.rmtree(job)  # finished (killed before tidying) or never claimed (input still incoming)
            continue
        for leftover in job.iterdir():
            if leftover.name != "input":
                shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink()
        redo.append(job)
    return redo


def process(
    job: Path, layout: Layout, received: int, opts: InferOptions, forward: Destination | None
) -> None:
    """Run the infer job on ``job``/input; the result goes to outbox/, a failure to failed/ with reason.txt."""
    from medsr.jobs.infer import infer_one, reason_of

    start = time.perf_counter()
    series = _series_uid(job)
    try:
        written = infer_one(job / "input", job / "output", opts)
    except Exception as err:  # one bad series must not stop the node
        reason = reason_of(err)
        target = layout.failed / job.name
        os.replace(job, target)
        (target / "reason.txt").write_text(reason + "\n")
        log.error(
            "series %s: %d instances received, failed after %.1f s: %s; kept in %s",
            series, received, time.perf_counter() - start, reason, target,
        )  # fmt: skip
        return
    seconds = time.perf_counter() - start
    outputs = len(list(written.glob("*.dcm")))
    record = json.loads((job / "output.json").read_text())
    record.update(source_series=series, received_instances=received, output_instances=outputs)
    record["node_seconds"] = round(seconds, 3)
    (written / RECORD).write_text(json.dumps(record, indent=2) + "\n")
    os.replace(written, layout.outbox / job.name)
    fsync_folder(layout.outbox)
    shutil.rmtree(job)
    if forward is None:
        log.info(
            "series %s: %d instances received, %d output instances, %.1f s, kept in %s",
            series, received, outputs, seconds, layout.outbox / job.name,
        )  # fmt: skip


def _series_uid(job: Path) -> str:
    name = job.name
    head, _, tail = name.rpartition("_")
    return head if head and tail.isdigit() else name


class Sender(threading.Thread):
    """Sends outbox series to ``dest`` until ``stop`` is set; each series backs off on its own."""

    def __init__(self, layout: Layout, dest: Destination, config: NodeConfig, stop: threading.Event) -> None:
        super().__init__(name="medsr-dicom-node-sender", daemon=True)
        self.layout, self.dest, self.config, self.stop = layout, dest, config, stop
        self._waits: dict[str, tuple[Backoff, float]] = {}

    def run(self) -> None:
        while not self.stop.is_set():
            for folder in self._due():
                if self.stop.is_set():
                    return
                self._send(folder)
            self.stop.wait(self.config.poll_seconds)

    def _due(self) -> list[Path]:
        now = time.monotonic()
        ready = [
            p
            for p in self.layout.outbox.iterdir()
            if p.is_dir() and not (self.layout.work / p.name).exists()
            and self._waits.get(p.name, (None, 0.0))[1] <= now
        ]  # fmt: skip
        return sorted(ready, key=lambda p: p.stat().st_mtime)

    def _send(self, folder: Path) -> None:
        dest = self.dest
        try:
            stored, reason = send_series(folder, dest, self.config.ae_title)
        except Exception as err:  # e.g. an unreadable file: retried like a refused association
            stored, reason = 0, f"{type(err).__name__}: {err}"
        if reason is None:
            record = _read_record(folder)
            log.info(
                "series %s: %s instances received, %s output instances, %s s, sent to %s",
                record.get("source_series", folder.name), record.get("received_instances", "?"),
                record.get("output_instances", "?"), record.get("node_seconds", "?"), dest,
            )  # fmt: skip
            shutil.rmtree(folder)
            self._waits.pop(folder.name, None)
            return
        backoff = self._waits.get(folder.name, (Backoff(limit=self.config.retry_max_seconds), 0.0))[0]
        if stored:
            backoff.reset()
        wait = backoff.failed()
        self._waits[folder.name] = (backoff, time.monotonic() + wait)
        left = len(list(folder.glob("*.dcm")))
        log.warning(
            "series %s: %d instances left in outbox (%s); retrying in %.0f s", folder.name, left, reason, wait
        )


def _read_record(folder: Path) -> dict[str, Any]:
    try:
        return json.loads((folder / RECORD).read_text())
    except (OSError, ValueError):
        return {}


def run_node(config: NodeConfig, opts: InferOptions) -> None:
    """Serve until interrupted (KeyboardInterrupt, or SIGTERM raised as one by the CLI).

    ``opts`` are the :class:`medsr.jobs.options.InferOptions` each complete series is processed with.
    """
    from medsr.jobs.dicom_node.scp import handlers, make_server_ae

    layout = Layout(config.workdir)
    layout.create()
    redo = recover(layout)
    tracker = SeriesTracker(layout, config.idle_seconds)
    spooled = tracker.requeue_spooled()
    waiting = sum(1 for p in layout.outbox.iterdir() if p.is_dir())
    ae = make_server_ae(config.ae_title)
    try:
        server = ae.start_server((config.host, config.port), block=False, evt_handlers=handlers(tracker))
    except OSError as err:
        raise MedsrError(
            f"cannot listen on {config.host}:{config.port}: {err.strerror or err}; choose another --port "
            "or stop the program using it"
        ) from None
    log.info(
        "listening on %s:%d as %s; work folder %s; results %s",
        config.host, config.port, config.ae_title, config.workdir,
        f"sent to {config.forward}" if config.forward else "kept in outbox/",
    )  # fmt: skip
    if redo or spooled or waiting:
        log.info("resuming: %d series to redo, %d incoming, %d in outbox", len(redo), len(spooled), waiting)
    stop = threading.Event()
    sender = Sender(layout, config.forward, config, stop) if config.forward else None
    if sender is not None:
        sender.start()
    try:
        for job in redo:
            process(job, layout, len(list((job / "input").glob("*.dcm"))), opts, config.forward)
        while True:
            claimed = tracker.claim_complete()
            if claimed is None:
                time.sleep(config.poll_seconds)
                continue
            _, job, received = claimed
            process(job, layout, received, opts, config.forward)
    finally:
        stop.set()
        server.shutdown()
        if sender is not None:
            sender.join(timeout=10)
        log.info("stopped; unfinished series resume on the next start")
