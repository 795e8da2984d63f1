"""Write outputs under a temporary name and rename them into place only when complete."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from medsr.errors import MedsrError


def check_output(path: Path, *, overwrite: bool, inputs: tuple[Path, ...] = ()) -> None:
    """Refuse to replace an input, or an existing output without ``overwrite``."""
    target = path.resolve()
    for src in inputs:
        if src.exists() and src.resolve() == target:
            raise MedsrError(f"{path} is the input; choose another output path with -o")
    if path.exists() and not overwrite:
        raise MedsrError(
            f"{path} already exists; pass --overwrite to replace it or choose another path with -o"
        )
    if not path.parent.exists():
        raise MedsrError(f"{path.parent}: output folder does not exist; create it first")


@contextlib.contextmanager
def atomic_output(path: Path, *, overwrite: bool = False, directory: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it to ``path``, on failure remove it.

    A folder output (``directory=True``) is created empty under the temporary name. Interruption
    (KeyboardInterrupt, SIGTERM turned into SystemExit) leaves no partial output behind.
    """
    path = Path(path)
    check_output(path, overwrite=overwrite)
    suffix = "".join(path.suffixes) if not directory else ""
    stem = path.name[: len(path.name) - len(suffix)] if suffix else path.name
    tmp = path.with_name(f".{stem}.part-{os.getpid()}{suffix}")
    _remove(tmp)
    try:
        if directory:
            tmp.mkdir()
        yield tmp
        if path.exists():
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.replace(path, old)
            os.replace(tmp, path)
            _remove(old)
        else:
            os.replace(tmp, path)
    except OSError as err:
        _remove(tmp)
        if err.errno == errno.ENOSPC:
            raise MedsrError(f"{path}: no space left on the device; free some space and run again") from None
        raise
    except BaseException:
        _remove(tmp)
        raise


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink(missing_ok=True)


def write_json(path: Path, payload: dict[str, Any], *, overwrite: bool = True) -> None:
    """Write ``payload`` as indented JSON, atomically (used for sidecars and reports)."""
    with atomic_output(Path(path), overwrite=overwrite) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, default=str) + "\n")
