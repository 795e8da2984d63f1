"""User-facing errors: the CLI prints them as one line and exits with code 2."""

from __future__ import annotations


class MedsrError(ValueError):
    """A problem with the user's input (file, value or option), with what to do about it.

    The message names the file or value and the fix, e.g.
    ``scan.nii.gz is 4-D (256, 256, 40, 3); pass one volume with --volume-index``.
    """


class MedsrWarning(UserWarning):
    """Something medsr repaired or assumed about the input (NaN voxels, sform/qform disagreement...).

    The CLI prints it as one line ``medsr: warning: ...``; the message names the file and what was done.
    """
