"""The node's folders on disk, atomic spooling of received instances, and when a series is complete.

Layout under the work folder ``DIR`` (every step is a rename, so a kill leaves each series in one place)::

    DIR/incoming/<SeriesUID>/<SOPInstanceUID>.dcm   received, waiting for the series to complete
    DIR/work/<job>/input/                            claimed by the worker (renamed from incoming/)
    DIR/work/<job>/output/, output.json              the infer job's derived series (written atomically)
    DIR/outbox/<job>/IM_*.dcm, medsr.json            waiting to be sent (or kept, without --forward)
    DIR/failed/<job>/input/, reason.txt              could not be loaded or processed

``<job>`` is the SeriesInstanceUID, with ``_2``, ``_3``... when the same series arrives again while the
first one is still in work/, outbox/ or failed/.
"""

from __future__ import annotations

import os
import re
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

#: A DICOM UID: digits and dots, at most 64 characters (PS3.5 9.1); anything else never becomes a path.
_UID = re.compile(r"[0-9][0-9.]{0,63}")


def is_uid(text: str) -> bool:
    """True when ``text`` is a syntactically valid DICOM UID (safe as a file or folder name)."""
    return bool(_UID.fullmatch(text)) and ".." not in text and not text.endswith(".")


@dataclass(frozen=True)
class Layout:
    """The node's folders under ``root``."""

    root: Path

    @property
    def incoming(self) -> Path:
        return self.root / "incoming"

    @property
    def work(self) -> Path:
        return self.root / "work"

    @property
    def outbox(self) -> Path:
        return self.root / "outbox"

    @property
    def failed(self) -> Path:
        return self.root / "failed"

    def create(self) -> None:
        for folder in (self.incoming, self.work, self.outbox, self.failed):
            folder.mkdir(parents=True, exist_ok=True)

    def job_name(self, series_uid: str) -> str:
        """A job name for ``series_uid`` not used in work/, outbox/ or failed/."""
        name, n = series_uid, 1
        while any((where / name).exists() for where in (self.work, self.outbox, self.failed)):
            n += 1
            name = f"{series_uid}_{n}"
        return name


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a hidden temporary name: write, fsync, rename, fsync the folder."""
    tmp = path.with_name(f".{path.name}.part-{os.getpid()}-{threading.get_ident()}")
    try:
        with tmp.open("wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_folder(path.parent)


def fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (a no-op where folders cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def remove_temporaries(folder: Path) -> int:
    """Delete hidden ``.*.part-*`` leftovers of a killed writer anywhere under ``folder``; returns the count."""
    count = 0
    for path in sorted(folder.rglob(".*.part-*"), reverse=True):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        count += 1
    return count


@dataclass
class _Series:
    last_event: float
    received: int = 0
    open_associations: set[int] = field(default_factory=set)


class SeriesTracker:
    """Which incoming series are still receiving, and which are complete (thread-safe).

    A series is complete when no association that sent to it is still open and nothing happened to it
    (an instance arriving, such an association closing) for ``idle_seconds``.
    """

    def __init__(self, layout: Layout, idle_seconds: float) -> None:
        self.layout = layout
        self.idle_seconds = idle_seconds
        self._lock = threading.Lock()
        self._series: dict[str, _Series] = {}

    def requeue_spooled(self) -> list[str]:
        """Series left in incoming/ by an earlier run: tracked again, complete once idle from now."""
        now = time.monotonic()
        found = sorted(p.name for p in self.layout.incoming.iterdir() if p.is_dir() and is_uid(p.name))
        with self._lock:
            for uid in found:
                count = sum(1 for f in (self.layout.incoming / uid).glob("*.dcm"))
                self._series.setdefault(uid, _Series(last_event=now, received=count))
        return found

    def receive(self, association: int, series_uid: str, sop_uid: str, data: bytes) -> None:
        """Spool one instance (``data``: a DICOM Part 10 file) as incoming/<series>/<sop>.dcm."""
        with self._lock:  # registered before writing, so the worker cannot claim the folder meanwhile
            entry = self._series.setdefault(series_uid, _Series(last_event=time.monotonic()))
            entry.open_associations.add(association)
            folder = self.layout.incoming / series_uid
            folder.mkdir(exist_ok=True)
        write_atomically(folder / f"{sop_uid}.dcm", data)
        with self._lock:
            entry.received += 1
            entry.last_event = time.monotonic()

    def association_closed(self, association: int) -> None:
        """The association ended (released, aborted or dropped): its series start their idle wait now."""
        now = time.monotonic()
        with self._lock:
            for entry in self._series.values():
                if association in entry.open_associations:
                    entry.open_associations.discard(association)
                    entry.last_event = now

    def claim_complete(self) -> tuple[str, Path, int] | None:
        """Move the oldest complete series from incoming/ to work/<job>/input; returns (uid, job, received)."""
        now = time.monotonic()
        with self._lock:
            ready = [
                (entry.last_event, uid)
                for uid, entry in self._series.items()
                if not entry.open_associations and now - entry.last_event >= self.idle_seconds
            ]
            if not ready:
                return None
            _, uid = min(ready)
            entry = self._series.pop(uid)
            if not (self.layout.incoming / uid).is_dir():  # every write of it failed: nothing to do
                return None
            job = self.layout.work / self.layout.job_name(uid)
            job.mkdir()
            os.replace(self.layout.incoming / uid, job / "input")
            fsync_folder(job)
            return uid, job, entry.received

    def pending(self) -> int:
        with self._lock:
            return len(self._series)
