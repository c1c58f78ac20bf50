"""``autotune verify PROFILE``: start the profile's deployment again and say whether its figures still hold.

Exit status 0 when every figure holds (and speculation, where the deployment uses it, left greedy text unchanged),
1 when one does not, 2 when the profile cannot be verified here (the main command's one-line errors).
"""

from __future__ import annotations

import argparse
import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from autotune.errors import InputError, one_line
from autotune.numbers import parse_whole

if TYPE_CHECKING:
    from autotune.serve.verify import Verification

MAX_ROUNDS = 10
MAX_REQUESTS = 10_000
PROBE_PORT = 8080
"""Any port: asking an exporter for its command at one says whether it has one for the profile."""


def rounds(text: str) -> int:
    """``--rounds``: measurement rounds."""
    return parse_whole(text, at_least=1, at_most=MAX_ROUNDS, example="3")


def requests(text: str) -> int:
    """``--requests``: requests a round of a served profile's load."""
    return parse_whole(text, at_least=1, at_most=MAX_REQUESTS, example="16")


def _binary_here(argv: Sequence[str]) -> None:
    """A served command whose program is not here is a one-line error saying what to do, not a failed start."""
    program = argv[0]
    if shutil.which(program) is None and not Path(program).is_file():
        raise InputError(f"the server the profile was measured with, {program!r}, is not on this machine; build it "
                          "again (make setup) or tune again (autotune run) to measure the server you have")


def verify_command(args: argparse.Namespace) -> int:
    """Verify the profile ``args.profile``: through its served command where it has one, else in-process."""
    from autotune.plugins.manager import get_plugin_manager
    from autotune.probe.machine import probe
    from autotune.profile.reading import load_profile
    from autotune.serve.verify import ServeSettings, remeasure, serve

    manager = get_plugin_manager()
    backends = manager.backends()
    profile = load_profile(args.profile, backends)
    command = None
    for exporter in manager.exporters().values():
        if exporter.command is not None and exporter.applies_to(profile.backend.name):
            if exporter.command(profile, PROBE_PORT) is not None:
                command = exporter.command
                break
    notes = []
    here = probe(manager).fingerprint
    made_on = str(profile.hardware.get("fingerprint", ""))
    if made_on and made_on != here:
        notes.append(f"this machine ({here[:12]}) is not the one the profile was made on ({made_on[:12]}): its "
                     "figures are that machine's, so a difference here says more about the machines than the profile")
    if command is not None:
        found = command
        _binary_here(found(profile, PROBE_PORT) or ["llama-server"])
        verification = serve(profile, lambda port: found(profile, port) or [],
                                           ServeSettings(rounds=args.rounds, requests=args.requests,
                                                         speculation_check=not args.no_speculation_check))
    else:
        backend = backends.get(profile.backend.name)
        if backend is None:
            raise InputError(f"the profile's backend {profile.backend.name!r} is not installed here; install its "
                              "plugin to verify it (autotune plugins lists what is)")
        availability = backend.availability()
        if not availability.available:
            raise InputError(f"the profile's backend {profile.backend.name!r} cannot run here: {availability.reason}")
        verification = remeasure(profile, backend, args.rounds)
    verification.notes = notes + verification.notes
    if args.json:
        print(json.dumps(as_json(verification), indent=2))
    else:
        print(f"verify {one_line(str(args.profile))}")
        for line in verification.lines():
            print(f"  {one_line(line)}")
    return 0 if verification.holds else 1


def as_json(verification: Verification) -> dict[str, object]:
    """The verification as JSON: each figure claimed and observed, whether it holds, and the verdict."""
    check = verification.speculation
    return {
        "how": verification.how,
        "holds": verification.holds,
        "figures": [{"name": c.claim.name, "unit": c.claim.unit, "claimed": c.claim.value, "low": c.claim.low,
                     "high": c.claim.high, "basis": c.claim.basis, "observed": c.observed, "rounds": list(c.per_round),
                     "samples": c.samples, "holds": c.holds, "shortfall": c.shortfall}
                    for c in verification.checks],
        "speculation": None if check is None else {
            "requests": check.requests, "identical": check.identical, "drafted": check.drafted,
            "accepted": check.accepted, "exact": check.exact, "vacuous": check.vacuous, "summary": check.summary()},
        "notes": verification.notes,
    }
