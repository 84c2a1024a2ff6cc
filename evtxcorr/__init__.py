"""evtxcorr: root-cause analysis of Windows event logs from Hyper-V failover clusters."""

from __future__ import annotations

__version__ = "0.1.0"  # pyproject.toml reads it from here

__all__ = ["__version__", "analyze"]


def analyze(*args, **kwargs):  # type: ignore[no-untyped-def]
    """See evtxcorr.analyze.analyze (imported lazily so `import evtxcorr` stays cheap)."""
    from evtxcorr.analyze import analyze as _analyze

    return _analyze(*args, **kwargs)
