"""Where the data folders (rules/, templates/) are, in a wheel install and in a source checkout, and how
the shipped YAML data is read."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import yaml

_CHECKOUT_ROOT = Path(__file__).resolve().parent.parent
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml where PyYAML has it: 10x faster


def data_dir(name: str) -> Path:
    """Folder of the shipped data set `name` ("rules" or "templates").

    A wheel carries them as the data-only packages evtxcorr.rules and evtxcorr.templates
    (pyproject's package-dir mapping); an editable install or a checkout reads the top-level folders.
    """
    # They are namespace packages (no __init__.py): importlib.resources.files() would hand back a
    # MultiplexedPath, so ask the import system for the folder itself.
    spec = importlib.util.find_spec(f"evtxcorr.{name}")
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    return _CHECKOUT_ROOT / name


def load_yaml(path: Path) -> object:
    """A shipped YAML file (data, not rules: those go through ruleset/yamlload.py, which keeps lines)."""
    with path.open(encoding="utf-8") as handle:
        return yaml.load(handle, Loader=_SAFE_LOADER)  # noqa: S506 - a safe loader, C or Python
