"""``medsr manifest build DIR -o M.csv`` and ``medsr manifest check M.csv`` (docs/manifests.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from medsr.cli.options import MedsrCommand, MedsrSubGroup

app = typer.Typer(
    cls=MedsrSubGroup,
    name="manifest",
    help="Build and check data manifests (CSV/JSONL lists of volumes) for medsr train.",
    no_args_is_help=True,
)


@app.command("build", cls=MedsrCommand)
def build(
    folder: Annotated[
        Path,
        typer.Argument(exists=True, file_okay=False, help="Folder of NIfTI/NRRD/MHA files or DICOM series."),
    ],
    output: Annotated[Path, typer.Option("-o", "--output", help="Manifest to write (.csv or .jsonl).")],
    val: Annotated[float, typer.Option("--val", help="Fraction of subjects for validation.")] = 0.1,
    test: Annotated[float, typer.Option("--test", help="Fraction of subjects for testing.")] = 0.1,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the subject split.")] = 0,
    modality: Annotated[
        str, typer.Option("--modality", help="Modality for files without one (e.g. MR, CT).")
    ] = "",
    subject_regex: Annotated[
        str | None,
        typer.Option("--subject-regex", help="Regex on the relative path; group 1 is the subject id."),
    ] = None,
    split: Annotated[
        str | None, typer.Option("--split", help="Put every volume in this split (e.g. val) instead.")
    ] = None,
    checksum: Annotated[
        bool, typer.Option("--sha256/--no-sha256", help="Record each volume's SHA-256.")
    ] = True,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing manifest.")] = False,
) -> None:
    """Open every volume under FOLDER, split by subject, and write a manifest."""
    from medsr.io.manifest import write_manifest
    from medsr.io.manifest_build import build_manifest

    report = build_manifest(
        folder,
        val=val,
        test=test,
        seed=seed,
        modality=modality,
        subject_regex=subject_regex,
        checksum=checksum,
        split=split,
    )
    write_manifest(report.rows, output, overwrite=overwrite)
    counts = {s: sum(r.split == s for r in report.rows) for s in ("train", "val", "test")}
    subjects = len({r.subject for r in report.rows})
    typer.echo(
        f"wrote {output}: {len(report.rows)} volumes of {subjects} subjects "
        f"(train {counts['train']}, val {counts['val']}, test {counts['test']})"
    )
    for path, reason in report.failures:
        typer.echo(f"  skipped {path}: {reason}", err=True)


@app.command("check", cls=MedsrCommand)
def check(
    manifest: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, help="Manifest (.csv/.tsv/.jsonl).")
    ],
    open_volumes: Annotated[bool, typer.Option("--open/--no-open", help="Also read every volume.")] = False,
) -> None:
    """Check that every listed file exists (and matches its SHA-256); exit code 1 if any does not."""
    from medsr.errors import MedsrError
    from medsr.io.manifest import read_manifest, verify_row

    rows = read_manifest(manifest)
    bad = 0
    for row in rows:
        try:
            verify_row(row)
            if open_volumes:
                from medsr.io.readers import load_volume

                load_volume(row.path)
        except MedsrError as err:
            bad += 1
            typer.echo(f"  {row.path}: {err}", err=True)
    typer.echo(f"{manifest}: {len(rows) - bad} of {len(rows)} volumes ok")
    if bad:
        raise typer.Exit(1)
