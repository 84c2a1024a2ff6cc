"""Shared test fixtures: where the repo, the shared corpus and the committed forge bundles are."""

from __future__ import annotations

import os
import re
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BUNDLES = REPO / "tests" / "fixtures" / "bundles"


def _corpus_dir() -> Path:
    env = os.environ.get("EVTXCORR_CORPUS")
    return Path(env) if env else REPO.parent / "shared" / "corpus" / "omerbenamram-evtx"


def corpus_counts(corpus: Path) -> dict[str, int]:
    """File name -> the larger of the two parsers' record counts, read from the corpus README table."""
    counts: dict[str, int] = {}
    for line in (corpus.parent / "README.md").read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 8 and cells[0].endswith(".evtx") and re.fullmatch(r"\d+", cells[3]):
            counts[cells[0]] = max(int(cells[3]), int(cells[5]))
    return counts


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def corpus_dir() -> Path:
    corpus = _corpus_dir()
    if not corpus.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"the shared corpus is missing at {corpus}")
        pytest.skip(f"shared corpus not found at {corpus} (set EVTXCORR_CORPUS)")
    return corpus


@pytest.fixture(scope="session")
def corpus_expected(corpus_dir: Path) -> dict[str, int]:
    counts = corpus_counts(corpus_dir)
    assert len(counts) >= 19, "the corpus README table could not be read"
    return counts


@pytest.fixture(scope="session")
def committed_bundles() -> Path:
    """The committed fixture bundles: one .zip per bundle (small in git, as customers send them)."""
    return BUNDLES


@pytest.fixture(scope="session")
def bundles_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The committed bundles unpacked once per run: `bundles_dir / "<scenario>" / "HV01" / "System.evtx"`."""
    root = tmp_path_factory.mktemp("bundles")
    archives = sorted(BUNDLES.glob("*.zip"))
    assert archives, f"no fixture bundles in {BUNDLES} (run `evtxcorr forge fixtures`)"
    for archive in archives:
        with zipfile.ZipFile(archive) as bundle:
            bundle.extractall(root)  # our own archives, written by the forge
    return root
