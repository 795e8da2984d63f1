"""Render the generated tables of docs/robustness.md from the hostile-input corpus (tests/helpers/robustness.py).

Usage::

    python scripts/render_robustness.py            # rewrite the tables in docs/robustness.md
    python scripts/render_robustness.py --check    # exit 1 when docs/robustness.md is out of date
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "robustness.md"
START, END = "<!-- generated: corpus -->", "<!-- end generated -->"
OUTCOME = {
    "refused": "refuses it: exit 2, one line, no output",
    "repaired": "repairs it, one warning line, exit 0",
    "accepted": "upscales it, exit 0",
}


def render_table() -> str:
    """The generated part of docs/robustness.md: the corpus, faults, untrusted models, paths, properties."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))  # tests.helpers, when run as a script
    from tests.helpers.robustness import CASES, CHECKPOINTS, FAULTS, PATHS, PROPERTIES

    rows = [
        "| Bad input | Case id | What medsr does | The message says (asserted by the tests) |",
        "|---|---|---|---|",
    ]
    for case in CASES:
        said = f"`{case.message}`" if case.message else "(no message)"
        rows.append(f"| {case.input} | `{case.id}` | {OUTCOME[case.outcome]} | {said} |")
    faults = ["| Fault | Test | What medsr does |", "|---|---|---|"]
    faults += [f"| {fault} | `{test}` | {does} |" for fault, test, does in FAULTS]
    models = ["| Untrusted `--model` file | Test | What medsr does |", "|---|---|---|"]
    models += [f"| {what} | `{test}` | {does} |" for what, test, does in CHECKPOINTS]
    paths = ["| Path hazard | Test | What medsr does |", "|---|---|---|"]
    paths += [f"| {what} | `{test}` | {does} |" for what, test, does in PATHS]
    props = ["| Property (hypothesis) | Test | What holds |", "|---|---|---|"]
    props += [f"| {what} | `{test}` | {does} |" for what, test, does in PROPERTIES]
    return "\n".join([START, "", *rows, "", *faults, "", *models, "", *paths, "", *props, "", END])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if docs/robustness.md is out of date")
    args = parser.parse_args(argv)
    text = DOC.read_text(encoding="utf-8")
    if START not in text or END not in text:
        print(f"render_robustness: error: {DOC} lost its generated-table markers", file=sys.stderr)
        return 2
    head, tail = text[: text.index(START)], text[text.index(END) + len(END) :]
    current = text[len(head) : len(text) - len(tail)]
    table = render_table()
    if args.check:
        if current != table:
            print(f"{DOC} is out of date: run `python scripts/render_robustness.py`", file=sys.stderr)
            return 1
        return 0
    DOC.write_text(head + table + tail, encoding="utf-8")
    print(f"wrote {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
