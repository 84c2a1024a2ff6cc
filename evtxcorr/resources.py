"""Where the data folders (rules/, templates/) are, in a wheel install and in a source checkout."""

from __future__ import annotations

import importlib.resources
from pathlib import Path

_CHECKOUT_ROOT = Path(__file__).resolve().parent.parent


def data_dir(name: str) -> Path:
    """Folder of the shipped data set `name` ("rules" or "templates").

    A wheel carries them as the data-only packages evtxcorr.rules and evtxcorr.templates
    (pyproject's package-dir mapping); an editable install or a checkout reads the top-level folders.
    """
    try:
        return Path(str(importlib.resources.files(f"evtxcorr.{name}")))
    except ModuleNotFoundError:
        return _CHECKOUT_ROOT / name
