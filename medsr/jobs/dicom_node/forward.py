"""Sending a derived series onwards by C-STORE (SCU), one file at a time, with retries and backoff.

Each file is deleted only after the destination answered it with a success (0x0000) or warning
(0x0001, 0xBxxx: stored, possibly with coercion) status, so a series leaves the outbox only when every
instance has been stored; what failed stays and is sent again later.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from medsr.errors import MedsrError

log = logging.getLogger("medsr.dicom_node")


@dataclass(frozen=True)
class Destination:
    """A C-STORE SCP: host name or address, TCP port, called AE title."""

    host: str
    port: int
    ae_title: str

    @classmethod
    def parse(cls, text: str) -> Destination:
        """``HOST:PORT:AET``, e.g. ``pacs.example.org:104:PACS`` (an IPv6 host may hold colons)."""
        host, _, rest = text.rpartition(":")
        host, _, port = host.rpartition(":")
        aet = rest.strip()
        if not host or not port.isdigit() or not 0 < int(port) < 65536 or not aet:
            raise MedsrError(
                f"--forward {text!r} must look like HOST:PORT:AET, e.g. pacs.example.org:104:PACS "
                "(port 1-65535, AE title non-empty)"
            )
        check_ae_title(aet, "--forward")
        return cls(host.strip("[]"), int(port), aet)

    def __str__(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}"


def check_ae_title(title: str, option: str) -> None:
    """An AE title is 1-16 printable ASCII characters, not all spaces, without backslash (PS3.5 6.2)."""
    if not 0 < len(title) <= 16 or not title.strip() or not title.isascii() or "\\" in title:
        raise MedsrError(
            f"{option} {title!r} is not a valid AE title: use 1-16 ASCII characters without backslash"
        )
    if not title.isprintable():
        raise MedsrError(f"{option} {title!r} holds control characters; use printable ASCII only")


class Backoff:
    """Seconds to wait before the next try: ``first``, doubling after each failure, at most ``limit``."""

    def __init__(self, first: float = 1.0, limit: float = 60.0) -> None:
        self.first, self.limit = first, limit
        self.failures = 0

    def failed(self) -> float:
        self.failures += 1
        return min(self.first * 2 ** (self.failures - 1), self.limit)

    def reset(self) -> None:
        self.failures = 0


def is_stored(status: int) -> bool:
    """Success, or a warning status that still means the instance was stored."""
    return status == 0x0000 or status == 0x0001 or 0xB000 <= status <= 0xBFFF


def send_series(folder: Path, dest: Destination, calling_aet: str) -> tuple[int, str | None]:
    """C-STORE every ``*.dcm`` of ``folder`` to ``dest``, deleting each one the destination stored.

    Returns (instances stored now, None) when the folder has no DICOM file left, else (stored, reason)
    with a one-line reason for what is left (no association, a refused context, a failure status).
    """
    import pydicom
    from pynetdicom import AE

    files = sorted(folder.glob("*.dcm"))
    if not files:
        return 0, None
    syntaxes: dict[str, set[str]] = {}
    for path in files:
        meta = pydicom.dcmread(path, stop_before_pixels=True).file_meta
        syntaxes.setdefault(str(meta.MediaStorageSOPClassUID), set()).add(str(meta.TransferSyntaxUID))
    ae = AE(ae_title=calling_aet)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    ae.connection_timeout = 10
    for sop_class, transfer in syntaxes.items():
        ae.add_requested_context(sop_class, sorted(transfer))
    assoc = ae.associate(dest.host, dest.port, ae_title=dest.ae_title)
    if not assoc.is_established:
        why = "rejected" if assoc.is_rejected else "aborted" if assoc.is_aborted else "no connection"
        return 0, f"cannot associate with {dest} ({why})"
    stored, reason = 0, None
    try:
        for path in files:
            try:
                answer = assoc.send_c_store(path)
            except ValueError as err:  # no accepted presentation context for this file
                reason = f"{path.name}: {err}"
                break
            status = int(answer.Status) if "Status" in answer else None
            if status is not None and is_stored(status):
                path.unlink()
                stored += 1
            else:
                reason = f"{path.name}: " + (
                    f"status 0x{status:04X}" if status is not None else "no answer (connection lost)"
                )
                break
    finally:
        if assoc.is_established:
            assoc.release()
    return stored, reason
