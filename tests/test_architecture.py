"""scripts/check_architecture.py: medsr's one-way layout (issue #18), and the checker proven on tiny packages."""

from __future__ import annotations

import ast
import importlib.util
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location(
    "check_architecture", ROOT / "scripts" / "check_architecture.py"
)
arch = importlib.util.module_from_spec(_spec)
sys.modules["check_architecture"] = arch  # dataclasses look their module up here
_spec.loader.exec_module(arch)

FACE = """
_LAZY = {"load_volume": "medsr.io.readers"}
def __getattr__(name):
    from importlib import import_module
    return getattr(import_module(_LAZY[name]), name)
"""


def make_package(root: Path, files: dict[str, str]) -> Path:
    """Write a fake ``medsr`` under ``root``: ``files`` maps paths inside medsr/ to source; packages get __init__."""
    files = {"__init__.py": FACE, "io/readers.py": "def load_volume(): ...\n", **files}
    for rel, source in files.items():
        path = root / "medsr" / rel
        for parent in reversed(path.relative_to(root).parents[:-1]):
            (root / parent).mkdir(exist_ok=True)
            (root / parent / "__init__.py").touch()
        path.write_text(textwrap.dedent(source), encoding="utf-8")
    return root


def rules(root: Path) -> list[tuple[str, int, str]]:
    return [(v.path, v.line, v.rule) for v in arch.check(root)]


def test_medsr_packages_import_one_way_without_cycles_or_long_functions(capsys):
    """The real tree: no upward or sibling import, no cycle, no function over 100 lines (issue #18)."""
    code = arch.main(["--root", str(ROOT)])
    assert code == 0, "architecture violations:\n" + capsys.readouterr().out


def test_clean_package_passes(tmp_path, capsys):
    make_package(
        tmp_path,
        {
            "geometry.py": "import numpy as np\n",
            "io/writers.py": "from medsr import geometry\nfrom medsr.io.readers import load_volume\n",
            "transforms/array.py": "from ..io import readers\nimport medsr.geometry as g\n",
            "runtime/device.py": "def pick():\n    from medsr.transforms import array\n",
            "training/loop.py": "from medsr.runtime.device import pick\nfrom medsr import __version__\n",
            "inference/predict.py": "from medsr.runtime import device\n",
            "jobs/infer.py": "from medsr.inference.predict import x\nfrom medsr.training import loop\n",
            "cli/main.py": "def infer():\n    from medsr.jobs import infer\n",
            "__main__.py": "from medsr.cli.main import infer\n",
        },
    )
    assert arch.main(["--root", str(tmp_path)]) == 0
    assert capsys.readouterr().out == ""


SPELLINGS = {
    "from": ("from medsr.cli.main import app\n", "module"),
    "import-as": ("import medsr.cli.main as m\n", "module"),
    "import": ("import medsr.cli.main\n", "module"),
    "from-package": ("from medsr.cli import main\n", "module"),
    "relative": ("from ..cli import main\n", "module"),
    "in-function": ("def f():\n    from medsr.cli.main import app\n", "function"),
    "type-checking": (
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import medsr.cli.main\n",
        "type-checking",
    ),
    "dynamic": (
        "import importlib\ndef f():\n    return importlib.import_module('medsr.cli.main')\n",
        "dynamic",
    ),
}


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_upward_import_is_caught_in_every_spelling(tmp_path, spelling):
    source, kind = SPELLINGS[spelling]
    make_package(tmp_path, {"io/naming.py": source, "cli/main.py": "app = 1\n"})
    line = source.count("\n", 0, source.index("medsr.cli" if "medsr.cli" in source else "..cli")) + 1
    (violation,) = arch.check(tmp_path)
    assert (violation.path, violation.line, violation.rule) == ("medsr/io/naming.py", line, "upward")
    suffix = "" if kind == "module" else f" ({kind} import)"
    assert violation.detail == f"medsr.io.naming (layer 1) imports medsr.cli.main (layer 6){suffix}"


def test_lower_layer_importing_the_cli_through_the_public_face_is_upward(tmp_path):
    make_package(
        tmp_path, {"transforms/upscale.py": "from medsr import upscale\n", "cli/x.py": "def upscale(): ...\n"}
    )
    face = FACE.replace('"load_volume": "medsr.io.readers"', '"upscale": "medsr.cli.x"')
    (tmp_path / "medsr" / "__init__.py").write_text(face, encoding="utf-8")
    assert rules(tmp_path) == [("medsr/transforms/upscale.py", 1, "upward")]


def test_siblings_may_not_import_each_other_but_may_import_themselves(tmp_path):
    make_package(
        tmp_path,
        {
            "training/loop.py": "from medsr.training import checkpoint\n\ndef f():\n    from medsr.inference import predict\n",
            "training/checkpoint.py": "",
            "inference/predict.py": "from medsr.evaluation.metrics import psnr\n",
            "evaluation/metrics.py": "psnr = 1\n",
        },
    )
    assert rules(tmp_path) == [
        ("medsr/inference/predict.py", 1, "sibling"),
        ("medsr/training/loop.py", 4, "sibling"),
    ]


def test_cycle_closed_by_a_function_level_import_is_caught(tmp_path):
    make_package(
        tmp_path,
        {
            "io/naming.py": "from medsr.io.readers import load_volume\n",
            "io/slice_facts.py": "from medsr.io.naming import x\n",
            "io/readers.py": "def load_volume():\n    from . import slice_facts\n",
        },
    )
    (violation,) = arch.check(tmp_path)
    assert (violation.path, violation.line, violation.rule) == ("medsr/io/naming.py", 1, "cycle")
    assert violation.detail == (
        "medsr.io.naming:1 -> medsr.io.readers:2(function) -> medsr.io.slice_facts:1 -> medsr.io.naming"
    )


def test_every_elementary_cycle_is_reported_once(tmp_path):
    """Two cycles sharing readers (as dicom <-> readers and naming -> readers -> slice_facts did)."""
    make_package(
        tmp_path,
        {
            "io/dicom.py": "from medsr.io.readers import load_volume\n",
            "io/naming.py": "from medsr.io.readers import load_volume\n",
            "io/slice_facts.py": "from medsr.io.naming import x\n",
            "io/readers.py": "from medsr.io import dicom, slice_facts\ndef load_volume(): ...\n",
        },
    )
    assert rules(tmp_path) == [("medsr/io/dicom.py", 1, "cycle"), ("medsr/io/naming.py", 1, "cycle")]


def test_package_init_reexports_are_not_cycles(tmp_path):
    """transforms/__init__ imports array; array imports a sibling submodule: Python runs this fine."""
    make_package(
        tmp_path,
        {
            "transforms/__init__.py": "from medsr.transforms.array import f\n",
            "transforms/array.py": "from medsr.transforms.functional import g\ndef f(): ...\n",
            "transforms/functional.py": "def g(): ...\n",
        },
    )
    assert rules(tmp_path) == []


def test_functions_longer_than_the_limit_are_caught_nested_ones_too(tmp_path):
    """From the def line (decorators excluded) to the last line; a nested def counts in its outer one too."""
    ok = "def ok():\n" + "    x = 1\n" * 99  # 100 lines: allowed
    outer = (
        "@staticmethod\ndef outer():\n" + "    x = 1\n" * 90 + "    def inner():\n" + "        y = 2\n" * 101
    )
    make_package(tmp_path, {"geometry.py": ok + outer})
    found = [(v.line, v.detail) for v in arch.check(tmp_path)]
    assert found == [(102, "outer is 193 lines (max 100)"), (193, "inner is 102 lines (max 100)")]


def test_long_module_unmapped_package_and_unresolved_import_are_caught(tmp_path):
    make_package(
        tmp_path,
        {
            "errors.py": "x = 1\n" * 401,
            "plugins/thing.py": "",
            "io/atomic.py": "def f():\n    from medsr.io.gone import g\n",
        },
    )
    assert rules(tmp_path) == [
        ("medsr/errors.py", 1, "long-module"),
        ("medsr/io/atomic.py", 2, "unresolved"),
        ("medsr/plugins/__init__.py", 1, "unmapped"),
        ("medsr/plugins/thing.py", 1, "unmapped"),
    ]


def test_a_file_that_does_not_parse_is_one_violation_not_a_traceback(tmp_path, capsys):
    make_package(tmp_path, {"io/naming.py": "x = 1\n<<<<<<< Updated upstream\n"})
    assert arch.main(["--root", str(tmp_path)]) == 1
    assert capsys.readouterr().out == "medsr/io/naming.py:2: syntax: does not parse: invalid syntax\n"


def test_lazy_table_targets_must_exist_and_define_the_name(tmp_path):
    make_package(tmp_path, {"io/readers.py": "def read(): ...\n"})
    face = FACE.replace('"medsr.io.readers"}', '"medsr.io.readers", "upscale": "medsr.inference.predict"}')
    (tmp_path / "medsr" / "__init__.py").write_text(face, encoding="utf-8")
    details = [(v.rule, v.detail) for v in arch.check(tmp_path)]
    assert details == [
        ("lazy-target", "'load_volume' is not defined in medsr.io.readers"),
        ("lazy-target", "'upscale' -> 'medsr.inference.predict': no such module"),
    ]


def test_list_shows_layers_and_imports_and_exits_zero(tmp_path, capsys):
    make_package(tmp_path, {"cli/main.py": "def f():\n    from medsr.io import readers\n", "io/x.py": ""})
    assert arch.main(["--root", str(tmp_path), "--list"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "medsr/cli/main.py [6 medsr.cli]" in out
    assert out[out.index("medsr/cli/main.py [6 medsr.cli]") + 1] == "    :2 -> medsr.io.readers [1] function"
    assert "    :2 -> medsr.io.readers [1] lazy" in out  # the face's lazy table


def test_violations_print_one_line_each_and_exit_one(tmp_path, capsys):
    make_package(tmp_path, {"io/x.py": "import medsr.jobs.y\n", "jobs/y.py": ""})
    assert arch.main(["--root", str(tmp_path)]) == 1
    assert capsys.readouterr().out == (
        "medsr/io/x.py:1: upward: medsr.io.x (layer 1) imports medsr.jobs.y (layer 5)\n"
    )


def test_no_test_module_imports_another_test_module() -> None:
    """Shared test code lives in tests/helpers/ (issue #18); a test module imports no test module or conftest."""
    found = []
    for path in sorted((ROOT / "tests").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            if any(
                n.split(".")[:2][-1].startswith(("test_", "conftest"))
                for n in names
                if n.startswith("tests.")
            ):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert found == [], found


def test_docs_architecture_shows_every_layer_of_the_checker() -> None:
    """docs/architecture.md's layer table names each package of LAYERS in the row of its layer."""
    rows = [line for line in (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8").splitlines()]
    for prefix, layer in arch.LAYERS.items():
        assert any(row.startswith(f"| {layer} |") and f"`{prefix}`" in row for row in rows), (prefix, layer)
