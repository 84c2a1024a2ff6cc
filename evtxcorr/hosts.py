"""Host names as logs, cluster events and `--nodes` write them: what is a host name, and how two compare.

Kept apart from correlate/ (which needs pandas) so the command line can check `--nodes` cheaply.
"""

from __future__ import annotations

import re

__all__ = ["host_key", "node_key", "split_host"]

# A NetBIOS or DNS host name as a cluster event writes it; anything else is not taken as a node.
_NODE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,62}(\.[A-Za-z0-9_-]{1,63})*")


def host_key(name: str) -> str:
    """How hosts are keyed everywhere (the event table, clusters, coverage, file-name hints): the name
    without surrounding blanks, up to the first dot, lower-case (' HV01.x' -> 'hv01')."""
    return name.strip().split(".", 1)[0].lower()  # split_host(name)[0], without the domain's work


def split_host(name: str) -> tuple[str, str]:
    """('hv01', 'contoso.local') from 'HV01.contoso.local'; ('hv01', '') from 'HV01'."""
    text = str(name).strip().rstrip(".")
    key, _, domain = text.partition(".")
    return key.lower(), domain.lower()


def node_key(value: object) -> tuple[str, str] | None:
    """(host key, domain) of a node name found in an event, or None if it is not a host name."""
    if not isinstance(value, str):  # no payload value there (NaN, None): an export without payload
        return None
    text = value.strip()
    if not _NODE_NAME.fullmatch(text):
        return None
    return split_host(text)
