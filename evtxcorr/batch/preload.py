"""Imported once by the fork server that forks the cases: loads what every case would otherwise load
again (evtxcorr and its libraries, the compiled report templates, the message tables).

Importing this module has those side effects and nothing else; forked cases share the result.
"""

from __future__ import annotations

from evtxcorr.batch import child  # noqa: F401  (analyze, render, pandas, the parsers)
from evtxcorr.render.env import environment
from evtxcorr.render.messages import LANGS, event_templates, messages

for _html, _name in ((True, "report.html.j2"), (False, "report.md.j2")):
    environment(_html).get_template(_name)
for _lang in LANGS:
    messages(_lang)
    event_templates(_lang)
