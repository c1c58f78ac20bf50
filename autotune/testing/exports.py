"""Running exported Python snippets and the load example in a fresh interpreter, for the plugins' export tests."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from autotune.profile.schema import DeploymentProfile

PROMPT = "The quick brown fox"
LOAD_ANY_PROFILE = Path(__file__).parents[2] / "examples" / "load_any_profile.py"
"""The example every backend's load test runs (present in a source checkout, not in an installed wheel)."""


def snippet_generates(script: Path, prompt: str = PROMPT, tokens: int = 8, timeout_s: float = 180) -> Any:
    """Run an exported snippet as pasted (its usage line must answer), then its ``generate(prompt, tokens)``.

    Both in fresh interpreters, as a user would; returns what ``generate`` returned (JSON round-tripped).
    """
    usage = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=timeout_s,
                           check=False)
    assert usage.returncode == 0, usage.stderr[-2000:]
    assert usage.stdout.strip(), "the snippet's usage line printed no reply"
    driver = ("import json, runpy, sys; snippet = runpy.run_path(sys.argv[1]); "
              f"print(json.dumps(snippet['generate']({prompt!r}, {tokens})))")
    done = subprocess.run([sys.executable, "-c", driver, str(script)], capture_output=True, text=True,
                          timeout=timeout_s, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def load_example_generates(profile: DeploymentProfile, folder: Path, prompt: str = PROMPT,
                           tokens: int = 8) -> tuple[str, str]:
    """Run ``examples/load_any_profile.py`` on ``profile``; return its first line (runtime: type) and the text.

    Skips where the example is not beside the package (an installed plugin outside the repository).
    """
    if not LOAD_ANY_PROFILE.is_file():
        pytest.skip(f"{LOAD_ANY_PROFILE} is not here (an installed plugin, outside the repository)")
    path = folder / "profile.json"
    path.write_text(profile.to_json())
    done = subprocess.run([sys.executable, str(LOAD_ANY_PROFILE), str(path), prompt, str(tokens)],
                          capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    first, _, text = done.stdout.partition("\n")
    return first, text.strip("\n")
