"""The Backend contract reads as a tutorial to the end: its docs walk through every member."""

from __future__ import annotations

import autotune.plugins.backend as contract
from autotune.plugins.backend import Backend


def test_the_contract_tutorial_names_every_member_of_backend() -> None:
    members = {name for name in [*vars(Backend), *Backend.__annotations__] if not name.startswith("_")}
    missing = sorted(name for name in members if f"``{name}" not in (contract.__doc__ or ""))
    assert not missing, f"autotune/plugins/backend.py's docstring does not walk through {missing}"


def test_measure_says_how_the_protocol_is_used() -> None:
    doc = Backend.measure.__doc__ or ""
    assert "measure_session" in doc and "DecodeSession" in doc
