"""The ``medsr`` command: one typer app, each command in its own module, heavy imports deferred.

A user mistake (:class:`medsr.errors.MedsrError`, a missing or unreadable file) prints one line
``medsr: error: ...`` and exits with code 2; ``--debug`` (or ``MEDSR_DEBUG=1``) shows the traceback.
"""

from __future__ import annotations

import os
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from medsr.cli import benchmark, demo, evaluate, infer, info, simulate


class MedsrGroup(TyperGroup):
    """Command group that turns user errors into one line and exit code 2."""

    def invoke(self, ctx: typer.Context) -> Any:
        from medsr.errors import MedsrError

        try:
            return super().invoke(ctx)
        except (MedsrError, FileNotFoundError, IsADirectoryError, PermissionError) as err:
            if _debug(ctx):
                raise
            typer.echo(f"medsr: error: {_one_line(err)}", err=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            typer.echo("medsr: interrupted; no partial output was kept", err=True)
            raise typer.Exit(130) from None


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


app.command("info")(info.info)
app.command("infer")(infer.infer)
app.command("demo")(demo.demo)
app.command("simulate")(simulate.simulate)
app.command("evaluate")(evaluate.evaluate)
app.command("benchmark")(benchmark.benchmark)


def main() -> None:
    """Console-script entry point."""
    app()
