"""The fixture forge: scenario definitions (YAML) -> events -> .evtx bundles. Never imports parse/.

list_scenarios()                       ids of the shipped scenarios (scenarios/*.yaml)
load_scenario(path_or_id)              validated Scenario; ScenarioError names file, line and key
expand(scenario, seed=, scale=)        {(host fqdn, channel): [ForgedEvent, ...]} sorted by time
truth(scenario, seed=)                 the injected incidents: cause, host, true start/end (UTC)
forge_bundle(scenario, out_dir, ...)   write a bundle folder or zip in a layout (plain/tss/privatecloud)
regenerate_fixtures(dest)              every committed fixture bundle, byte-identical each run
forge_large_bundle(out_dir, size_mb)   a benchmark bundle of about size_mb MB (never committed)
"""

from __future__ import annotations

from evtxcorr.forge.bundle import FIXTURES, LAYOUTS, forge_bundle, forge_large_bundle, regenerate_fixtures
from evtxcorr.forge.scenario import CAUSES, Scenario, list_scenarios, load_scenario
from evtxcorr.forge.timeline import CHANNELS, expand, truth
from evtxcorr.forge.yamlcheck import ScenarioError

__all__ = [
    "CAUSES",
    "CHANNELS",
    "FIXTURES",
    "LAYOUTS",
    "Scenario",
    "ScenarioError",
    "expand",
    "forge_bundle",
    "forge_large_bundle",
    "list_scenarios",
    "load_scenario",
    "regenerate_fixtures",
    "truth",
]
