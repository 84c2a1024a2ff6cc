"""Parsing never needs pandas (nor python-evtx, unless a chunk is read with it), so `analyze` starts its parse workers before importing it (issue 12):
the import order is part of the speed, and a stray top-level `import pandas` would undo it silently."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BUNDLES = Path(__file__).parent / "fixtures" / "bundles"

LIGHT_PATH = """
import sys, tempfile, zipfile
from pathlib import Path
import evtxcorr.cli, evtxcorr.analyze, evtxcorr.progress, evtxcorr.output, evtxcorr.hosts
from evtxcorr.analyze import Options, _plan, _wanted, read_all
from evtxcorr.discover import discover
from evtxcorr.ledger import Ledger
from evtxcorr.ruleset import load_ruleset, with_builtin

ruleset = load_ruleset(with_builtin([]))
ledger = Ledger()
with tempfile.TemporaryDirectory() as work:
    sources = discover([Path(sys.argv[1])], ledger, work_dir=Path(work))
    wanted = _wanted(ruleset, sources, _plan(sources, Options()), ledger)
    assert wanted is not None
    records = list(read_all(sources, ledger, Options(jobs=1), wanted=wanted))
    assert records and any(entry.records_undecoded for entry in ledger.entries)
print("pandas" in sys.modules, "jinja2" in sys.modules, "Evtx" in sys.modules)
"""

# Up to the planning child's start, pySigma is not imported either: the rules load while it plans.
BEFORE_RULES = """
import sys
import evtxcorr.cli, evtxcorr.analyze, evtxcorr.progress, evtxcorr.output, evtxcorr.discover
print("sigma" in sys.modules, "pyparsing" in sys.modules, "pandas" in sys.modules)
"""


def test_loading_rules_and_parsing_selectively_never_import_pandas() -> None:
    bundle = BUNDLES / "shared-nic-link-restored.zip"
    done = subprocess.run(
        [sys.executable, "-c", LIGHT_PATH, str(bundle)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "False", "False"]  # python-evtx: only for chunks read with it


def test_the_python_evtx_backend_name_is_known_without_importing_it() -> None:
    from evtxcorr.parse import BACKENDS, PURE, pure

    assert pure.NAME == PURE
    assert PURE in BACKENDS


def test_the_written_out_pandas_limits_are_pandas_limits() -> None:
    import pandas as pd

    from evtxcorr.parse import _EARLIEST, _LATEST

    earliest = (pd.Timestamp.min.ceil("s").tz_localize("UTC") + pd.Timedelta(days=1)).to_pydatetime()
    latest = (pd.Timestamp.max.floor("s").tz_localize("UTC") - pd.Timedelta(days=1)).to_pydatetime()
    assert (earliest, latest) == (_EARLIEST, _LATEST)


def test_the_rules_are_imported_only_once_planning_has_started() -> None:
    done = subprocess.run([sys.executable, "-c", BEFORE_RULES], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "False", "False"]
