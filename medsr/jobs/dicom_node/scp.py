"""The storage SCP: which SOP classes the node accepts, and the pynetdicom event handlers that spool them.

Only CT Image Storage and MR Image Storage are accepted (the classic one-slice-per-file objects the infer
job reads; enhanced multi-frame objects are refused by the reader, so they are refused here at
association time), in the uncompressed transfer syntaxes (a sender then decompresses, as PACS do when a
compressed context is rejected), plus Verification (C-ECHO). Any other SOP class is rejected in
association negotiation; one that arrives anyway on an accepted context gets C-STORE status 0x0122.
"""

from __future__ import annotations

import logging
from typing import Any

from medsr.jobs.dicom_node.spool import SeriesTracker, is_uid

log = logging.getLogger("medsr.dicom_node")

#: SOP classes the node stores: CT Image Storage and MR Image Storage.
IMAGE_STORAGE = {
    "1.2.840.10008.5.1.4.1.1.2": "CT Image Storage",
    "1.2.840.10008.5.1.4.1.1.4": "MR Image Storage",
}
SUCCESS = 0x0000
SOP_CLASS_NOT_SUPPORTED = 0x0122
OUT_OF_RESOURCES = 0xA700
CANNOT_UNDERSTAND = 0xC000


def make_server_ae(ae_title: str) -> Any:
    """A pynetdicom AE that accepts the image storage contexts and Verification, addressed to ``ae_title``."""
    from pynetdicom import AE, DEFAULT_TRANSFER_SYNTAXES
    from pynetdicom.sop_class import Verification

    ae = AE(ae_title=ae_title)
    ae.require_called_aet = True  # associations addressed to another AE title are rejected
    for uid in IMAGE_STORAGE:
        ae.add_supported_context(uid, DEFAULT_TRANSFER_SYNTAXES)
    ae.add_supported_context(Verification)
    ae.maximum_associations = 10
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 60
    return ae


def handlers(tracker: SeriesTracker) -> list[tuple[Any, Any]]:
    """The (event, handler) pairs for ``ae.start_server``: C-STORE, C-ECHO and connection close."""
    from pynetdicom import evt

    def on_store(event: Any) -> int:
        return store_instance(event, tracker)

    def on_close(event: Any) -> None:
        tracker.association_closed(id(event.assoc))

    return [
        (evt.EVT_C_STORE, on_store),
        (evt.EVT_C_ECHO, lambda event: SUCCESS),
        (evt.EVT_CONN_CLOSE, on_close),
    ]


def store_instance(event: Any, tracker: SeriesTracker) -> int:
    """Spool one C-STORE request; returns its DIMSE status (0x0000 once the file is safely on disk)."""
    sop_class = str(event.request.AffectedSOPClassUID)
    if sop_class not in IMAGE_STORAGE:
        log.warning("refused an instance of SOP class %s (not CT/MR image storage)", sop_class)
        return SOP_CLASS_NOT_SUPPORTED
    try:
        ds = event.dataset
        series_uid = str(ds.get("SeriesInstanceUID", ""))
    except Exception as err:  # a dataset pydicom cannot decode: the sender learns it, the node goes on
        log.warning("refused an instance that cannot be decoded: %s", err)
        return CANNOT_UNDERSTAND
    sop_uid = str(event.request.AffectedSOPInstanceUID)
    if not (is_uid(series_uid) and is_uid(sop_uid)):
        log.warning("refused an instance with SeriesInstanceUID %r, SOPInstanceUID %r", series_uid, sop_uid)
        return CANNOT_UNDERSTAND
    try:
        tracker.receive(id(event.assoc), series_uid, sop_uid, event.encoded_dataset(include_meta=True))
    except OSError as err:
        log.error("could not spool %s of series %s: %s", sop_uid, series_uid, err)
        return OUT_OF_RESOURCES
    return SUCCESS
