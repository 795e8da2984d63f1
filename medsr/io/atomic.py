"""Write outputs under a temporary name and rename them into place only when complete."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from medsr.errors import MedsrError

#: errno values that mean "the disk (or quota, or file size limit) is full".
_NO_SPACE = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
#: The files of a derived DICOM series written by medsr (medsr.io.dicom_write): the only folders it replaces.
_SERIES_FILE = re.compile(r"IM_\d{4,}\.dcm")


def check_output(
    path: Path, *, overwrite: bool, inputs: tuple[Path, ...] = (), directory: bool | None = None
) -> None:
    """Refuse to replace an input, or an existing output without ``overwrite``.

    The same holds for the output's :func:`companions` (an MHD header's data file). With ``overwrite``
    an existing file may be replaced by a file, and a folder only by a folder that holds nothing but a
    DICOM series medsr wrote (``IM_*.dcm``): a user's folder is never deleted.
    ``directory`` says whether the new output is a folder (None: either).
    """
    path = Path(path)
    for src in inputs:
        src = Path(src)
        if src.exists() and path.exists() and os.path.samefile(src, path):
            raise MedsrError(f"{path} is the input; choose another output path with -o")
        if src.exists() and path.exists() and path.is_dir() and path.resolve() in src.resolve().parents:
            raise MedsrError(f"{path} holds the input {src}; choose another output path with -o")
    if path.exists() or path.is_symlink():
        if not overwrite:
            raise MedsrError(
                f"{path} already exists; pass --overwrite to replace it or choose another path with -o"
            )
        if path.is_dir() and not path.is_symlink():
            if directory is False or not _is_series_folder(path):
                raise MedsrError(
                    f"{path} is a folder that is not a DICOM series written by medsr; medsr does not replace "
                    "folders of other files, even with --overwrite: choose another output path with -o"
                )
        elif directory:
            raise MedsrError(
                f"{path} is a file; a DICOM series output is a folder: choose another path with -o"
            )
    for other in companions(path):
        if other.is_dir() and not other.is_symlink():
            raise MedsrError(
                f"{other} is a folder, where {path.name} would keep its data file; choose another path with -o"
            )
        if (other.exists() or other.is_symlink()) and not overwrite:
            raise MedsrError(
                f"{other} already exists (it would be the data file of {path.name}); pass --overwrite to "
                "replace it or choose another path with -o"
            )
    if not path.parent.exists():
        raise MedsrError(f"{path.parent}: output folder does not exist; create it first")


def _is_series_folder(path: Path) -> bool:
    return all(entry.is_file() and _SERIES_FILE.fullmatch(entry.name) for entry in path.iterdir())


def companions(path: Path) -> tuple[Path, ...]:
    """Files that belong to the output ``path`` besides itself: an MHD header's data file, ``x.raw`` or
    ``x.zraw`` (SimpleITK writes ``x.zraw`` when compressing, as medsr does); none for other outputs.
    """
    path = Path(path)
    if not path.name.lower().endswith(".mhd"):
        return ()
    stem = path.name[: -len(".mhd")]
    return path.with_name(f"{stem}.raw"), path.with_name(f"{stem}.zraw")


def _stale_data_file(header: Path) -> Path | None:
    """The data file an existing MHD ``header`` names, if it is a medsr temporary beside it.

    Earlier medsr versions left the pixel data of ``x.mhd`` in ``.x.part-<pid>.zraw``; replacing such
    an output removes that file too. Files of other names are left alone (they may not be medsr's).
    """
    if not header.name.lower().endswith(".mhd") or not header.is_file():
        return None
    try:
        text = header.read_text(encoding="ascii", errors="replace")[:4096]
    except OSError:
        return None
    found = re.search(r"^ElementDataFile\s*=\s*(\S+)\s*$", text, re.MULTILINE)
    stem = re.escape(header.name[: -len(".mhd")])
    if found and re.fullmatch(rf"\.{stem}\.part-\d+\.z?raw", found.group(1)):
        return header.with_name(found.group(1))
    return None


@contextlib.contextmanager
def atomic_output(path: Path, *, overwrite: bool = False, directory: bool = False) -> Iterator[Path]:
    """Yield a path with the final name inside a hidden staging folder beside ``path``; on success move
    what was written there into place, on failure remove it.

    The staging folder ``.<stem>.part-<pid><suffix>/`` lets a writer that makes several files (an MHD
    header and its ``.zraw`` data, :func:`companions`) name them as they will be named; the data goes
    into place first and ``path`` last, so the output appears only when complete. A folder output
    (``directory=True``) is created empty. Interruption (KeyboardInterrupt, SIGTERM turned into an
    exception by the CLI) leaves no partial output behind, and a replaced output is restored if a move
    fails. A full disk (ENOSPC, EDQUOT, EFBIG) becomes a MedsrError naming ``path``.
    """
    path = Path(path)
    check_output(path, overwrite=overwrite, directory=directory)
    suffix = "".join(path.suffixes) if not directory else ""
    stem = path.name[: len(path.name) - len(suffix)] if suffix else path.name
    staging = path.with_name(f".{stem}.part-{os.getpid()}{suffix}")
    _remove(staging)
    try:
        staging.mkdir()
        tmp = staging / path.name
        if directory:
            tmp.mkdir()
        yield tmp
        if not (tmp.exists() or tmp.is_symlink()):
            raise RuntimeError(f"{path}: the writer left no {tmp.name} to move into place")
        _commit(staging, path)
    except OSError as err:
        if err.errno in _NO_SPACE:
            raise MedsrError(
                f"{path}: not enough disk space to write it ({err.strerror or os.strerror(err.errno)}); nothing "
                "was written: free some space (or raise the quota or file size limit) and run again"
            ) from None
        raise
    finally:
        _remove(staging)


def _commit(staging: Path, path: Path) -> None:
    """Move the files staged in ``staging`` to ``path`` and its companions, ``path`` last.

    What they replace (and a companion not written this time, e.g. an old ``x.raw`` next to a new
    ``x.zraw``) is first set aside inside ``staging``, the output (``path``) first, and put back if a
    move fails; the caller removes ``staging`` and with it what was replaced.
    """
    stale = _stale_data_file(path)
    targets = [*companions(path), *([stale] if stale else []), path]
    aside = staging / ".replaced"
    aside.mkdir()
    replaced: list[Path] = []
    placed: list[Path] = []
    try:
        for target in reversed(targets):  # the visible output disappears first
            if target.exists() or target.is_symlink():
                os.replace(target, aside / target.name)
                replaced.append(target)
        for target in targets:  # ... and appears last, once its data is in place
            new = staging / target.name
            if target != stale and (new.exists() or new.is_symlink()):
                os.replace(new, target)
                placed.append(target)
    except BaseException:
        for target in placed:
            _remove(target)
        for target in replaced:
            if not (target.exists() or target.is_symlink()):
                os.replace(aside / target.name, target)
        raise


def discard(path: Path) -> None:
    """Remove an output (file or folder, with its companions) that turned out incomplete, e.g. when
    its sidecar failed."""
    for target in (*companions(Path(path)), Path(path)):
        _remove(target)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink(missing_ok=True)


def write_json(path: Path, payload: dict[str, Any], *, overwrite: bool = True) -> None:
    """Write ``payload`` as indented JSON, atomically (used for sidecars and reports)."""
    with atomic_output(Path(path), overwrite=overwrite) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, default=str) + "\n")
