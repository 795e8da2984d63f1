"""The ``medsr`` command: one typer app, each command in its own module, heavy imports deferred.

A user mistake (:class:`medsr.errors.MedsrError`, a missing or unreadable file, a full disk) prints one
line ``medsr: error: ...`` and exits with code 2; anything unexpected prints ``medsr: internal error:
...`` and exits with 1; ``--debug`` (or ``MEDSR_DEBUG=1``) shows the traceback instead.
:class:`medsr.errors.MedsrWarning` prints as ``medsr: warning: ...``; other libraries' warnings are
shown only with ``--debug``. Ctrl-C exits with 130 and SIGTERM with 143, after temporary outputs are
removed (:func:`main` turns SIGTERM into an exception so that cleanup runs).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
import warnings
from collections.abc import Iterator
from typing import Annotated, Any

import typer
from typer.core import TyperGroup
from typer.exceptions import TyperException

from medsr.cli import benchmark, bids, demo, dicom_node, evaluate, infer, info, manifest, simulate, train
from medsr.cli.options import FlagsWithoutType, MedsrCommand


class MedsrGroup(FlagsWithoutType, TyperGroup):
    """Command group that turns user errors into one line and exit code 2."""

    def invoke(self, ctx: typer.Context) -> Any:
        from medsr.errors import MedsrError

        try:
            with _library_chatter(quiet=not _debug(ctx)):
                return super().invoke(ctx)
        except (typer.Exit, typer.Abort, TyperException):
            raise
        except BrokenPipeError:  # e.g. `medsr info scan | head`: the reader left, nothing to report
            _silence_stdout()
            raise typer.Exit(141) from None
        except (MedsrError, OSError) as err:
            if _debug(ctx):
                raise
            typer.echo(f"medsr: error: {_one_line(err)}", err=True)
            raise typer.Exit(2) from None
        except MemoryError:
            if _debug(ctx):
                raise
            typer.echo(
                "medsr: error: out of memory; try a smaller volume or a machine with more memory", err=True
            )
            raise typer.Exit(2) from None
        except KeyboardInterrupt as err:
            what, code = (
                ("terminated (SIGTERM)", 143) if isinstance(err, Terminated) else ("interrupted", 130)
            )
            typer.echo(f"medsr: {what}; no partial output was kept", err=True)
            raise typer.Exit(code) from None
        except Exception as err:
            if _debug(ctx):
                raise
            typer.echo(
                f"medsr: internal error: {type(err).__name__}: {_one_line(err)} (run with --debug for the "
                "traceback and please report it)",
                err=True,
            )
            raise typer.Exit(1) from None


@contextlib.contextmanager
def _library_chatter(quiet: bool) -> Iterator[None]:
    """MedsrWarning as one line each; other libraries' warnings and nibabel's header-fix log only if not quiet."""
    from medsr.errors import MedsrWarning

    nibabel_log = logging.getLogger("nibabel")
    level = nibabel_log.level
    with warnings.catch_warnings():
        if quiet:
            warnings.simplefilter("ignore")
            nibabel_log.setLevel(logging.CRITICAL)
        warnings.simplefilter("always", MedsrWarning)
        warnings.showwarning = _show_warning
        try:
            yield
        finally:
            nibabel_log.setLevel(level)


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush does not fail again (Python docs, SIGPIPE)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # no real file descriptor (e.g. a test runner)
        pass


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised as an exception so that ``finally`` blocks remove temporary outputs."""


def _on_sigterm(signum: int, frame: Any) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM during cleanup kills at once
    raise Terminated()


def _show_warning(
    message: Any, category: type, filename: str, lineno: int, file: Any = None, line: Any = None
) -> None:
    from medsr.errors import MedsrWarning

    prefix = "medsr: warning" if issubclass(category, MedsrWarning) else f"medsr: note: {category.__name__}"
    typer.echo(f"{prefix}: {' '.join(str(message).split())}", err=True)


def _debug(ctx: typer.Context) -> bool:
    return bool(ctx.meta.get("medsr.debug")) or os.environ.get("MEDSR_DEBUG", "") not in ("", "0")


def _one_line(err: BaseException) -> str:
    if isinstance(err, OSError) and err.filename and err.strerror:
        return f"{err.filename}: {err.strerror}"
    return " ".join(str(err).split()) or type(err).__name__


app = typer.Typer(
    cls=MedsrGroup,
    name="medsr",
    help="Through-plane super-resolution for thick-slice MRI and CT, with exact geometry.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        from medsr import __version__

        typer.echo(f"medsr {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """Through-plane super-resolution for thick-slice MRI and CT, with exact geometry."""
    ctx.meta["medsr.debug"] = debug


app.command("info", cls=MedsrCommand)(info.info)
app.command("infer", cls=MedsrCommand)(infer.infer)
app.command("demo", cls=MedsrCommand)(demo.demo)
app.command("simulate", cls=MedsrCommand)(simulate.simulate)
app.command("evaluate", cls=MedsrCommand)(evaluate.evaluate)
app.command("benchmark", cls=MedsrCommand)(benchmark.benchmark)
app.command("train", cls=MedsrCommand)(train.train)
app.command("bids", cls=bids.ManyValuesCommand)(bids.bids)
app.command("dicom-node", cls=MedsrCommand)(dicom_node.dicom_node)
app.add_typer(manifest.app, name="manifest")


def main() -> None:
    """Console-script entry point; SIGTERM raises :class:`Terminated` so outputs are cleaned up."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_sigterm)
    app()
