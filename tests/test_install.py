"""What we ship installs and runs: the sdists and wheels of the core and every plugin, in a fresh environment.

Each distribution is built as a release is (``python -m build``: the sdist, then the wheel from the sdist, so a
file the sdist leaves out breaks the wheel), from a copy of its sources. The wheels go into a new virtual
environment with no editable install, no ``PYTHONPATH`` and the working directory outside the checkout, and the
installed ``autotune`` there must answer ``--version``, list every plugin and tune the bundled model.

llama-cpp-python is never compiled here: the set-up (``scripts/install-llama-cpp-python.sh``) keeps the wheel it
built for this CPU in its cache, and the install takes that one (``--only-binary`` makes a missing one an error,
not a six-minute build). The other plugins are installed without their runtimes (hundreds of MB each): they must
still load and say what to install. About a minute and a half on 2 cores, most of it pip.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
PLUGINS = ("llamacpp", "hf", "onnxruntime", "openvino", "mlx")
IGNORED = shutil.ignore_patterns("__pycache__", "*.egg-info", "build", "dist", ".pytest_cache", "*.pyc")


def llama_cpp_wheel_folder() -> Path | None:
    """The set-up's cache folder holding the llama-cpp-python wheel built for this CPU, if there is one."""
    plugin = tomllib.loads((ROOT / "plugins" / "autotune-llamacpp" / "pyproject.toml").read_text())
    [pin] = [d for d in plugin["project"]["dependencies"] if d.startswith("llama-cpp-python==")]
    version = pin.split("==", 1)[1]
    # The cache key is the script's own (version, CMake flags, CPU features, compiler): ask it.
    key = subprocess.run(["bash", "-c", f'. "{ROOT}/scripts/cpu-flags.sh" && build_key "$1"', "key", version],
                         capture_output=True, text=True, check=True).stdout.strip()
    base = Path(os.environ.get("AUTOTUNE_WHEEL_CACHE") or
                Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "autotune" / "wheels")
    folder = base / f"llama-cpp-python-{version}-{key}"
    return folder if any(folder.glob("llama_cpp_python-*.whl")) else None


def sources(folder: Path) -> list[Path]:
    """Copies of the core's and each plugin's project files (a build writes into its project: not the checkout's)."""
    core = folder / "slm-autotune"
    core.mkdir(parents=True)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, core / name)
    shutil.copytree(ROOT / "autotune", core / "autotune", ignore=IGNORED)
    plugins = [shutil.copytree(ROOT / "plugins" / f"autotune-{p}", folder / f"autotune-{p}", ignore=IGNORED)
               for p in PLUGINS]
    return [core, *plugins]


def build(project: Path, dist: Path) -> None:
    """Build the sdist of ``project`` and, from that sdist, its wheel, into ``dist``."""
    # --no-isolation: this environment's setuptools and build (the test extra) instead of fetching them per project.
    done = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(dist), str(project)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"building {project.name} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"


def fresh_env(venv: Path, home: Path) -> dict[str, str]:
    """The environment of a new shell using ``venv``: nothing pointing into the checkout or the test's venv."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(venv)
    env["AUTOTUNE_CACHE"] = str(home / "cache")
    return env


def tracked(folder: Path) -> list[str]:
    """The files git tracks under ``folder`` (and the working tree still has), relative to it."""
    listed = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z", "--", str(folder)], capture_output=True,
                            check=True).stdout.decode().split("\0")
    # Only those still in the working tree: the copy that is built is the working tree's.
    return [str((ROOT / f).relative_to(folder)) for f in listed if f and (ROOT / f).is_file()]


def run(command: list[str], cwd: Path, env: dict[str, str], timeout: float = 600) -> str:
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(command)} exited {done.returncode}:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return done.stdout


def test_the_built_distributions_install_and_tune_in_a_fresh_environment(tmp_path: Path) -> None:
    wheels = llama_cpp_wheel_folder()
    if wheels is None:
        message = ("no llama-cpp-python wheel built for this CPU in the set-up's cache; `make setup` builds it "
                   "(scripts/install-llama-cpp-python.sh)")
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    dist = tmp_path / "dist"
    for project in sources(tmp_path / "src"):
        build(project, dist)
    built = sorted(p.name for p in dist.iterdir())
    names = ["slm_autotune", *(f"slm_autotune_{p}" for p in PLUGINS)]
    for name in names:
        assert [b for b in built if b.startswith(f"{name}-") and b.endswith(".tar.gz")], (name, built)
        assert [b for b in built if b.startswith(f"{name}-") and b.endswith(".whl")], (name, built)

    def wheel(name: str) -> str:
        [found] = dist.glob(f"{name}-*.whl")
        return str(found)

    venv, home = tmp_path / "fresh", tmp_path / "home"
    home.mkdir()
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    env = fresh_env(venv, home)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    # The core with the llama.cpp extra, and the plugins that need nothing heavy, resolved as a user's pip would;
    # llama-cpp-python only as the wheel the set-up built (never compiled again).
    run([*pip, "--find-links", str(dist), "--find-links", str(wheels), "--only-binary", "llama-cpp-python",
         f"{wheel('slm_autotune')}[llamacpp]", wheel("slm_autotune_llamacpp"), wheel("slm_autotune_hf")], home, env)
    # The others without their runtimes: they must load and say what to install.
    run([*pip, "--no-deps", *(wheel(f"slm_autotune_{p}") for p in ("onnxruntime", "openvino", "mlx"))], home, env)

    autotune = str(venv / "bin" / "autotune")
    packages = {"autotune": ROOT / "autotune", **{f"autotune_{p}": ROOT / "plugins" / f"autotune-{p}" / f"autotune_{p}"
                                                  for p in PLUGINS}}
    where = run([str(venv / "bin" / "python"), "-c", "import importlib.util, sys\nfor name in sys.argv[1:]: "
                 "print(importlib.util.find_spec(name).submodule_search_locations[0])", *packages], home, env)
    for (name, source), installed in zip(packages.items(), map(Path, where.split()), strict=True):
        assert installed.is_relative_to(venv) and not installed.is_relative_to(ROOT), installed
        # Every file the checkout tracks in the package (modules, py.typed, data such as the evaluation text).
        missing = sorted(f for f in tracked(source) if not (installed / f).is_file())
        assert not missing, f"{name} installed without {missing}"

    version = run([autotune, "--version"], home, env)
    assert version.startswith("slm-autotune 0.1.0 ") and "llamacpp" in version, version
    assert run([str(venv / "bin" / "slm-autotune"), "--version"], home, env) == version

    listed = json.loads(run([autotune, "plugins", "--json"], home, env))
    plugins = {p["name"]: p for p in listed["plugins"]}
    for plugin in PLUGINS:
        assert plugins[plugin]["error"] is None and plugins[plugin]["version"] == "0.1.0", plugins[plugin]
    llamacpp = next(b for b in plugins["llamacpp"]["backends"] if b["name"] == "llamacpp")
    assert llamacpp["available"] and llamacpp["self_test"]["passed"], llamacpp
    for plugin in ("onnxruntime", "openvino", "mlx"):
        [backend] = plugins[plugin]["backends"]
        assert not backend["available"] and "install" in backend["reason"], backend

    out = home / "profiles"
    run([autotune, "run", "--budget", "2GB", "--latency", "1s", "--backend", "llamacpp", "--trials", "1",
         "--confirm-rounds", "0", "--no-quality", "--prompt-tokens", "16", "--gen-tokens", "8", "--context", "256",
         "--depth", "0", "--out", str(out)], home, env)
    [profile] = out.glob("*.json")
    data = json.loads(profile.read_text())
    assert data["backend"]["name"] == "llamacpp" and data["autotune_version"] == "0.1.0"
    assert profile.with_suffix(".html").read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert "valid autotune profile" in run([autotune, "validate", str(profile)], home, env)
