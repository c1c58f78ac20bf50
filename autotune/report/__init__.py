"""The report: one self-contained HTML page of a profile's answer and its evidence (``autotune report``).

``evidence`` reads what to show from a profile, ``plot`` draws the feasible front as inline SVG, ``page`` renders
the page (escaping every string the profile holds). ``autotune run`` writes the page next to the profile.
"""

from __future__ import annotations

from pathlib import Path

from autotune.profile.schema import DeploymentProfile
from autotune.report.evidence import Evidence, gather
from autotune.report.page import render


def render_report(profile: DeploymentProfile) -> str:
    """The HTML page of ``profile``."""
    return render(gather(profile))


def report_path(profile_path: Path) -> Path:
    """Where the page of a profile file goes by default: beside it, ``.html`` for ``.json``."""
    return profile_path.with_suffix(".html")


def write_report(profile: DeploymentProfile, path: Path) -> Path:
    """Write the page of ``profile`` to ``path`` (UTF-8) and return the path."""
    path.write_text(render_report(profile), encoding="utf-8")
    return path


__all__ = ["Evidence", "gather", "render_report", "report_path", "write_report"]
