"""Check that a file can hold the voxel data its header declares, before any voxel memory is allocated.

A damaged or hostile header can declare far more voxels than the bytes behind it; reading such a file
allocates the declared size first and fails (or exhausts memory) afterwards. These checks use only the
header, the file size and, for ``.nii.gz``, one pass of decompression in constant memory.

Rules (docs/robustness.md):

* uncompressed data must hold exactly the declared bytes; a shortfall is a truncated file or a wrong
  header, and a surplus of a whole slice or more means the header dimensions disagree with the data
  (a smaller tail is ignored, as nibabel and ITK do);
* deflate (gzip/zlib) expands by at most 1032:1, so a compressed file declaring more than 1032 times
  its size is refused without decompressing it; a ``.nii.gz`` whose gzip trailer (ISIZE) matches the
  declared size is intact at its end, otherwise its stream is counted exactly (the one case that costs a
  decompression pass: truncated, padded or multi-member files).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from medsr.errors import MedsrError
from medsr.io.formats import NIFTI_SUFFIXES

#: Largest volume (voxels) medsr agrees to allocate; a header declaring more is refused before reading.
MAX_VOXELS = 2_000_000_000
#: Largest expansion of a deflate stream (zlib technical details): a bound on what a .gz can hold.
DEFLATE_MAX_RATIO = 1032
_HEADER_PROBE = 1 << 16  # bytes of a text header (MetaImage, NRRD) scanned for its keys
_BLOCK = 1 << 22


def check_size(path: Path, shape: Sequence[int]) -> None:
    """Refuse a header declaring an empty volume, a negative dimension or more than MAX_VOXELS voxels."""
    if any(int(s) == 0 for s in shape):
        raise MedsrError(
            f"{path}: header declares an empty volume {tuple(int(s) for s in shape)} (a dimension of 0 "
            "voxels); the file holds no image"
        )
    n = int(np.prod([int(s) for s in shape], dtype=np.float64))
    if n > MAX_VOXELS or any(int(s) < 0 for s in shape):
        raise MedsrError(
            f"{path}: header declares dimensions {tuple(int(s) for s in shape)} ({n:.3g} voxels), beyond what "
            f"medsr will allocate ({MAX_VOXELS:.0e}); the header is probably corrupt"
        )


def check_nifti_data(
    path: Path, shape: tuple[int, ...], dtype: np.dtype, offset: int, header_bytes: int = 0
) -> None:
    """Refuse a NIfTI file whose voxel data does not match its header (``shape`` x ``dtype`` at ``offset``).

    ``header_bytes`` (348 for NIfTI-1, 540 for NIfTI-2): a single-file NIfTI's data cannot start inside it.
    """
    single = path.name.lower().endswith(NIFTI_SUFFIXES)
    if single and offset < header_bytes:
        raise MedsrError(
            f"{path}: the header's vox_offset {offset} points inside the {header_bytes}-byte header, so the "
            "voxel data would be read from the header itself; the header is damaged"
        )
    itemsize = np.dtype(dtype).itemsize
    nbytes = int(np.prod(shape, dtype=np.float64)) * itemsize
    what = f"{tuple(int(s) for s in shape)} {np.dtype(dtype).name}"
    compressed = path.name.lower().endswith(".gz")
    _check_bytes(
        path, path, offset, nbytes, _slice_bytes(shape, itemsize), "gzip" if compressed else "raw", what
    )


def check_itk_data(path: Path, fmt: str, size: tuple[int, ...], pixel_bytes: int) -> None:
    """Same for MetaImage (.mha/.mhd) and NRRD (.nrrd/.nhdr); headers it cannot follow are left to ITK."""
    header = _text_header(path, fmt)
    if header is None:
        return
    keys, data_start = header
    nbytes = int(np.prod(size, dtype=np.float64)) * pixel_bytes
    what = f"{tuple(int(s) for s in size)} ({pixel_bytes} bytes per voxel)"
    if fmt in ("mha", "mhd"):
        source = keys.get("elementdatafile", "")
        encoding = "zlib" if keys.get("compresseddata", "false").lower() == "true" else "raw"
        attached = source.upper() == "LOCAL"
    else:
        source = keys.get("data file", keys.get("datafile", ""))
        encoding = {"raw": "raw", "gzip": "zlib", "gz": "zlib"}.get(keys.get("encoding", "").lower(), "")
        attached = not source
    if not encoding or (
        not attached and (source.upper().startswith("LIST") or "%" in source or " " in source)
    ):
        return  # text/bzip2 encodings, file lists and patterns: SimpleITK checks those itself
    data_file = path if attached else path.parent / source
    if not data_file.is_file():
        raise MedsrError(
            f"{path}: its header names the data file {source!r}, which is missing (looked for {data_file}); "
            "copy the header together with its data file"
        )
    try:
        skip = int(keys.get("byte skip", "0") or 0) if keys.get("line skip", "0") in ("", "0") else -1
    except ValueError:
        return
    if attached and skip >= 0:
        offset = data_start + skip
    elif encoding == "raw":  # data at the end of its file (detached, HeaderSize or byte skip -1)
        offset = max(0, data_file.stat().st_size - nbytes)
    else:
        offset = 0
    _check_bytes(path, data_file, offset, nbytes, _slice_bytes(size, pixel_bytes), encoding, what)


def _slice_bytes(shape: tuple[int, ...], itemsize: int) -> int:
    return int(np.prod(shape[:2], dtype=np.float64)) * itemsize if len(shape) >= 2 else itemsize


def _check_bytes(
    path: Path, data_file: Path, offset: int, nbytes: int, slice_bytes: int, encoding: str, what: str
) -> None:
    """``encoding``: ``raw`` (exact size check), ``gzip`` (bound, then exact count), ``zlib`` (bound only)."""
    size = data_file.stat().st_size
    if encoding in ("gzip", "zlib") and offset + nbytes > size * DEFLATE_MAX_RATIO + _HEADER_PROBE:
        raise MedsrError(
            f"{path}: header declares {what} voxels ({nbytes:.3g} bytes) but the {size}-byte compressed "
            f"file cannot hold that much (deflate expands at most {DEFLATE_MAX_RATIO}:1); the header is corrupt "
            "or the file is truncated"
        )
    if encoding == "zlib":
        return
    if encoding == "gzip" and _gzip_trailer_size(data_file) == (offset + nbytes) % 2**32:
        return  # the usual single-member file, intact: nibabel's own read will see any damage inside
    have, ended_early = (
        (size, False) if encoding == "raw" else _gzip_length(path, offset + nbytes + slice_bytes)
    )
    if have < offset + nbytes:
        cut = "its compressed stream ends early; " if ended_early else ""
        raise MedsrError(
            f"{path}: truncated: the header declares {what} voxels ({nbytes} bytes from byte {offset}) but "
            f"the file holds only {max(0, have - offset)} bytes of voxel data; {cut}copy the file again "
            "or fix its header dimensions"
        )
    extra = have - offset - nbytes
    if extra >= slice_bytes:
        raise MedsrError(
            f"{path}: the header dimensions disagree with the data: the file holds {extra} bytes "
            f"({extra / slice_bytes:.3g} slices) more voxel data than the {what} the header declares; "
            "fix the header dimensions"
        )


def _gzip_trailer_size(path: Path) -> int | None:
    """ISIZE, the last 4 bytes of a gzip file: the uncompressed length mod 2**32 of its last member."""
    with open(path, "rb") as handle:
        handle.seek(0, 2)
        if handle.tell() < 18:  # smaller than an empty gzip member
            return None
        handle.seek(-4, 2)
        return int.from_bytes(handle.read(4), "little")


def _gzip_length(path: Path, limit: int) -> tuple[int, bool]:
    """Decompressed length of a gzip file, counted up to ``limit`` in constant memory.

    Returns ``(count, ended_early)``; ``ended_early`` is True when the stream stops before its end
    marker. Several gzip members are followed; zero padding or other bytes after a member end the
    count (gzip readers ignore them too); a damaged stream (bad data or CRC) is refused.
    """
    count = 0
    stream = zlib.decompressobj(zlib.MAX_WBITS | 16)
    try:
        with open(path, "rb") as handle:
            data = b""
            while count < limit:
                if len(data) < 2:
                    more = handle.read(_BLOCK)
                    if not more and not data:
                        return count, not stream.eof
                    data += more
                if stream.eof:  # one member ended: another may follow, anything else ends the data
                    data = data.lstrip(b"\0")
                    if not data.startswith(b"\x1f\x8b"):
                        if data:
                            return count, False
                        continue
                    stream = zlib.decompressobj(zlib.MAX_WBITS | 16)
                count += len(stream.decompress(data, _BLOCK))
                data = stream.unused_data if stream.eof else stream.unconsumed_tail
    except zlib.error as err:
        raise MedsrError(f"{path}: damaged compressed data ({err}); copy the file again") from None
    return count, False


def _text_header(path: Path, fmt: str) -> tuple[dict[str, str], int] | None:
    """Lower-cased keys of a MetaImage or NRRD header and the byte where attached data starts."""
    with open(path, "rb") as handle:
        probe = handle.read(_HEADER_PROBE)
    keys: dict[str, str] = {}
    pos = 0
    nrrd = fmt in ("nrrd", "nhdr")
    if nrrd and not probe.startswith(b"NRRD"):
        return None
    for raw in probe.splitlines(keepends=True):
        pos += len(raw)
        line = raw.decode("latin-1").strip()
        if nrrd:
            if not line:
                return keys, pos  # a blank line ends a NRRD header
            if line.startswith("#") or ":" not in line or ":=" in line:
                continue
            key, value = line.split(":", 1)
        else:
            if "=" not in line:
                return None
            key, value = line.split("=", 1)
        keys[key.strip().lower()] = value.strip()
        if not nrrd and key.strip().lower() == "elementdatafile":
            return keys, pos
    return (keys, pos) if nrrd and fmt == "nhdr" else None
