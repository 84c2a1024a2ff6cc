"""Where the data folders (rules/, templates/) are, in a wheel install and in a source checkout."""

from __future__ import annotations

import importlib.util
from pathlib import Path

_CHECKOUT_ROOT = Path(__file__).resolve().parent.parent


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
