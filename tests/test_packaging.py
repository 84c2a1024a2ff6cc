"""A normal (non-editable) install carries the rules and templates and finds them at run time."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # build from a clean copy: an in-tree build/ folder could hold stale files
    source = out / "src"
    for name in ("pyproject.toml", "README.md", "evtxcorr", "rules", "templates"):
        origin = REPO / name
        if origin.is_dir():
            # no in-place build of the extension either: the wheel must compile its own
            shutil.copytree(
                origin, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.so", "*.pyd")
            )
        else:
            source.mkdir(exist_ok=True)
            shutil.copy2(origin, source / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(source)],
        check=True,
        capture_output=True,
    )
    wheel = next(out.glob("evtxcorr-*.whl"))
    target = out / "site"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(target)
    return target


def _shipped(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def test_wheel_ships_every_rule_and_template(installed: Path) -> None:
    for name in ("rules", "templates"):
        source = {p for p in _shipped(REPO / name) if "__pycache__" not in p}
        assert source, name
        assert source <= _shipped(installed / "evtxcorr" / name), name


def test_installed_package_reads_its_own_data(installed: Path, tmp_path: Path) -> None:
    code = (
        "import evtxcorr.resources as r, evtxcorr.ruleset as rs; "
        "print(r.data_dir('rules')); print(r.data_dir('templates')); "
        "print(len(rs.load_ruleset().cause_texts()))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env={"PYTHONPATH": str(installed), "PATH": ""},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    rules_dir, templates_dir, causes = result.stdout.split()
    assert Path(rules_dir) == installed / "evtxcorr" / "rules"
    assert Path(templates_dir) == installed / "evtxcorr" / "templates"
    assert int(causes) >= 1


@pytest.mark.skipif(
    bool(os.environ.get("EVTXCORR_NO_NATIVE")), reason="EVTXCORR_NO_NATIVE: numpy path asked for"
)
def test_wheel_carries_the_compiled_scan(installed: Path, tmp_path: Path) -> None:
    """A normal install compiles evtxcorr/parse/_scanc.c (a C compiler is at hand here) and uses it."""
    assert list((installed / "evtxcorr" / "parse").glob("_scanc*"))
    result = subprocess.run(
        [sys.executable, "-c", "from evtxcorr.parse import scan; print(scan.NATIVE.__file__)"],
        cwd=tmp_path,
        env={"PYTHONPATH": str(installed), "PATH": ""},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()).parent == installed / "evtxcorr" / "parse"
