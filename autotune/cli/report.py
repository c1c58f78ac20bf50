"""``autotune report PROFILE [--html FILE]``: a profile's answer and evidence as one self-contained HTML page."""

from __future__ import annotations

import argparse
from pathlib import Path

from autotune.errors import InputError
from autotune.profile.reading import load_profile
from autotune.report import report_path, write_report


def report_command(args: argparse.Namespace) -> int:
    """Write the page (default: beside the profile, ``.html``) and say where."""
    # No backends: the page only shows the params (escaped), so a profile of a runtime not installed here reports too.
    profile = load_profile(args.profile, {})
    target: Path = args.html or report_path(args.profile)
    if target.resolve() == args.profile.resolve():
        raise InputError(f"the report would overwrite the profile {str(args.profile)!r}; name the page with --html FILE")
    try:
        write_report(profile, target)
    except OSError as error:
        raise InputError(f"cannot write the report to {str(target)!r}: {error.strerror or error}; "
                         "name a file in an existing folder with --html FILE") from None
    print(f"report: {target}")
    return 0
