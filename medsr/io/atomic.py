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

    With ``overwrite`` an existing file may be replaced by a file, and a folder only by a folder that
    holds nothing but a DICOM series medsr wrote (``IM_*.dcm``): a user's folder is never deleted.
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
    if not path.parent.exists():
        raise MedsrError(f"{path.parent}: output folder does not exist; create it first")


def _is_series_folder(path: Path) -> bool:
    return all(entry.is_file() and _SERIES_FILE.fullmatch(entry.name) for entry in path.iterdir())


@contextlib.contextmanager
def atomic_output(path: Path, *, overwrite: bool = False, directory: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it to ``path``, on failure remove it.

    A folder output (``directory=True``) is created empty under the temporary name. Interruption
    (KeyboardInterrupt, SIGTERM turned into an exception by the CLI) leaves no partial output behind,
    and a replaced output is restored if the rename fails. A full disk (ENOSPC, EDQUOT, EFBIG) becomes
    a MedsrError naming ``path``.
    """
    path = Path(path)
    check_output(path, overwrite=overwrite, directory=directory)
    suffix = "".join(path.suffixes) if not directory else ""
    stem = path.name[: len(path.name) - len(suffix)] if suffix else path.name
    tmp = path.with_name(f".{stem}.part-{os.getpid()}{suffix}")
    _remove(tmp)
    try:
        if directory:
            tmp.mkdir()
        yield tmp
        _commit(tmp, path)
    except OSError as err:
        _remove(tmp)
        if err.errno in _NO_SPACE:
            raise MedsrError(
                f"{path}: not enough disk space to write it ({err.strerror or os.strerror(err.errno)}); nothing "
                "was written: free some space (or raise the quota or file size limit) and run again"
            ) from None
        raise
    except BaseException:
        _remove(tmp)
        raise


def _commit(tmp: Path, path: Path) -> None:
    """Rename ``tmp`` to ``path``; an existing ``path`` is set aside first and put back if that fails."""
    if not (path.exists() or path.is_symlink()):
        os.replace(tmp, path)
        return
    old = path.with_name(f".{path.name}.old-{os.getpid()}")
    _remove(old)
    os.replace(path, old)
    try:
        os.replace(tmp, path)
    except BaseException:
        if not (path.exists() or path.is_symlink()):
            os.replace(old, path)
        raise
    _remove(old)


def discard(path: Path) -> None:
    """Remove an output (file or folder) that turned out incomplete, e.g. when its sidecar failed."""
    _remove(Path(path))


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink(missing_ok=True)


def write_json(path: Path, payload: dict[str, Any], *, overwrite: bool = True) -> None:
    """Write ``payload`` as indented JSON, atomically (used for sidecars and reports)."""
    with atomic_output(Path(path), overwrite=overwrite) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, default=str) + "\n")
