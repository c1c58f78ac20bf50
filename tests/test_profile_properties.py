"""Properties of profile validation and export: what ``validate`` accepts, every applicable exporter renders.

Starting from a valid profile of each built-in backend, params and every other field are mutated with arbitrary
JSON values (and the values that once broke export). Validation either accepts the result, and then every
applicable exporter returns text of its format, or refuses it with ``ProfileError`` in one line; never another
exception. The same holds for odd files: folders, FIFOs, devices, huge, binary, deep or foreign JSON.
"""

from __future__ import annotations

import ast
import json
import math
import os
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from autotune.cli.main import main
from autotune.errors import ProfileError
from autotune.plugins.exporter import Exporter
from autotune.plugins.manager import get_plugin_manager
from autotune.profile.reading import MAX_DEPTH, MAX_PROFILE_BYTES, load_profile, profile_from_data
from autotune.testing.profiles import (
    BACKENDS,
    DELETE,
    HOSTILE_TEXT,
    HOSTILE_VALUES,
    mutated,
    mutation_sites,
    sample_data,
    sample_profile,
    schema_choices,
)

MANAGER = get_plugin_manager()
INSTALLED = MANAGER.backends()
EXPORTERS = MANAGER.exporters()
needs_backends = pytest.mark.skipif(not set(BACKENDS) <= set(INSTALLED),
                                    reason="the built-in backend plugins are not all installed")


def _python(text: str) -> None:
    ast.parse(text)


def _shell(text: str) -> None:
    # comments=True: exports start with evidence comments, which may hold a quote from the model's file name.
    assert shlex.split(text, comments=True), text


def _json(text: str) -> None:
    json.loads(text)


def _modelfile(text: str) -> None:
    for line in text.splitlines():
        assert line.startswith(("#", "FROM ", "PARAMETER ")), line


SYNTAX: dict[str, Callable[[str], None]] = {
    "llama-server": _shell, "ollama": _modelfile, "llama-cpp-python": _python, "llama-cpp-python-server": _shell,
    "vllm": _shell, "genai-config": _json,
    "onnxruntime-python": _python, "openvino-config": _json, "openvino-python": _python, "mlx-lm-generate": _shell,
    "mlx-lm-server": _shell, "mlx-python": _python, "json": _json, "openvino-genai": _python,
    "foundry-local": _python,
}
"""How to check that each exporter's text is well-formed in its own format."""


def assert_one_line(error: Exception) -> None:
    """A message the CLI prints as one line."""
    message = str(error)
    assert message and "\n" not in message, message


def applicable(backend: str) -> list[Exporter]:
    return [e for e in EXPORTERS.values() if e.applies_to(backend)]


def check_exports(data: dict[str, Any]) -> str:
    """Validate ``data``; when accepted, render it with every applicable exporter. Returns what happened."""
    try:
        profile = profile_from_data(data, "p.json", INSTALLED)
    except ProfileError as error:
        assert_one_line(error)
        return "refused"
    for exporter in applicable(profile.backend.name):
        try:
            text = exporter.render(profile)
        except ProfileError as error:
            # The one refusal left to an exporter: a path its format cannot write (Ollama: '\"\"\"', control chars).
            assert exporter.name == "ollama" and "Modelfile" in str(error), (exporter.name, error)
            assert_one_line(error)
            continue
        assert isinstance(text, str)
        SYNTAX.get(exporter.name, lambda _: None)(text)
    return "accepted"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(10**400), max_value=10**400)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=20) | st.sampled_from(HOSTILE_VALUES),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
"""Arbitrary JSON-shaped values, with the hostile ones often."""
values = st.one_of(st.sampled_from(HOSTILE_VALUES), st.sampled_from(HOSTILE_TEXT), json_values, st.just(DELETE))
CHOICES = {name: schema_choices(backend.params_model) for name, backend in INSTALLED.items() if backend.params_model}
"""Per backend and parameter, the values its schema names (mostly valid): they get mutated profiles past
validation to the exporters, where arbitrary values nearly always stop at validation."""


@st.composite
def mutated_profiles(draw: st.DrawFn, backend: str, params_only: bool = False) -> dict[str, Any]:
    """A sample profile of ``backend`` with one to three mutations (of its params only, when asked)."""
    data = sample_data(backend)
    sites = mutation_sites(data["params"], ("params",)) if params_only else mutation_sites(data)
    for _ in range(draw(st.integers(1, 3))):
        site = draw(st.sampled_from(sites))
        named = CHOICES.get(backend, {}).get(site[1]) if site[0] == "params" and len(site) == 2 else None
        value = draw(st.sampled_from(named) | values) if named else draw(values)
        data = mutated(data, site, value)
    return data


@needs_backends
@pytest.mark.parametrize("backend", BACKENDS)
def test_sample_profiles_validate_and_export(backend: str) -> None:
    assert check_exports(sample_data(backend)) == "accepted"
    assert all(isinstance(e.render(sample_profile(backend)), str) for e in applicable(backend))


@needs_backends
@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_mutated_params_validate_and_export_or_are_refused(backend: str, data: st.DataObject) -> None:
    assert check_exports(data.draw(mutated_profiles(backend, params_only=True))) in ("accepted", "refused")


@needs_backends
@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_any_mutated_profile_validates_and_exports_or_is_refused(backend: str, data: st.DataObject) -> None:
    assert check_exports(data.draw(mutated_profiles(backend))) in ("accepted", "refused")


@needs_backends
@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_mutated_profile_files_load_the_same_way(backend: str, data: st.DataObject, tmp_path: Path) -> None:
    """Through a file: NaN and infinity become literals the loader refuses, the rest behaves as in memory."""
    profile = data.draw(mutated_profiles(backend))
    path = tmp_path / "p.json"
    try:
        path.write_text(json.dumps(profile), encoding="utf-8", errors="surrogatepass")
    except ValueError:  # an integer json.dumps cannot write (over 4300 digits): nothing to load
        return
    try:
        loaded = load_profile(path, INSTALLED)
    except ProfileError as error:
        assert_one_line(error)
        return
    assert check_exports(json.loads(loaded.to_json())) == "accepted"


@needs_backends
@pytest.mark.parametrize("value", ["2; touch x", [1, 2], None, math.nan, math.inf, 1e400, "4", 2.0, True, 0, 10**30])
@pytest.mark.parametrize("key", ["n_threads", "n_batch"])
def test_the_reported_llamacpp_values_are_refused_by_name(key: str, value: Any) -> None:
    data = mutated(sample_data("llamacpp"), ("params", key), value)
    if key == "n_threads" and value is None:  # null is llama-cpp-python's own default thread count
        assert check_exports(data) == "accepted"
        return
    with pytest.raises(ProfileError, match=f"p.json: the llamacpp parameter '{key}' must be an integer from 1 to"):
        profile_from_data(data, "p.json", INSTALLED)


@needs_backends
@pytest.mark.parametrize("backend", BACKENDS)
def test_exporters_refuse_what_validate_refuses(backend: str) -> None:
    """An exporter called directly (a library user, a stale profile) checks the params itself, by name."""
    profile = sample_profile(backend).model_copy(update={"params": {**sample_profile(backend).params, "bogus": 1}})
    for exporter in applicable(backend):
        if exporter.name == "json":
            continue  # the profile as it is: no parameters to interpret
        with pytest.raises(ProfileError, match=f"the {backend} backend has no parameter 'bogus'"):
            exporter.render(profile)


def test_a_backend_that_is_not_installed_is_schema_checked_only() -> None:
    data = mutated(mutated(sample_data("llamacpp"), ("backend", "name"), "elsewhere"), ("params", "x"), [1])
    assert profile_from_data(data, "p.json", INSTALLED).params["x"] == [1]


# -- odd files -----------------------------------------------------------------------------------------


def _validate(path: str | Path, capsys: pytest.CaptureFixture[str], command: str = "validate") -> str:
    """Run ``autotune validate|export PATH`` in-process; assert the one-line failure and return it."""
    argv = [command, str(path)] + (["--format", "json"] if command == "export" else [])
    status = main(argv)
    err = capsys.readouterr().err
    assert status == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("autotune: error: ") and "Traceback" not in err, err
    return lines[0]


def _write(path: Path, content: str | bytes) -> Path:
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8", errors="surrogatepass")
    return path


@pytest.mark.parametrize("command", ["validate", "export"])
@pytest.mark.parametrize("make, expected", [
    (lambda d: d, "is a folder"),
    (lambda d: _write(d / "bin.json", b"\xff\xfe\xfd\x00\x81binary"), "is not JSON"),
    (lambda d: _write(d / "latin1.json", '{"schema_version": 1, "x": "caf\xe9"}'.encode("latin-1")), "is not JSON"),
    (lambda d: _write(d / "array.json", "[1, 2]"), "a JSON array, not an object"),
    (lambda d: _write(d / "scalar.json", "3"), "a single JSON value"),
    (lambda d: _write(d / "string.json", '"profile"'), "a single JSON value"),
    (lambda d: _write(d / "empty.json", ""), "is not JSON"),
    (lambda d: _write(d / "deep.json", "[" * 100_000 + "]" * 100_000), f"deeper than {MAX_DEPTH} levels"),
    (lambda d: _write(d / "deep2.json", '{"schema_version": 1, "hardware": ' + "[" * 200 + "]" * 200 + "}"),
     f"deeper than {MAX_DEPTH} levels"),
    (lambda d: _write(d / "digits.json", '{"schema_version": ' + "9" * 5000 + "}"), "more than 4300 digits"),
    (lambda d: _write(d / "nan.json", '{"schema_version": 1, "x": NaN}'), "NaN is not a JSON number"),
    (lambda d: _write(d / "inf.json", '{"schema_version": 1, "x": 1e400}'), "too large"),
    (lambda d: _write(d / "surrogate.json", '{"schema_version": 1, "x": "\\ud800"}'), "unpaired surrogate"),
    (lambda d: _write(d / "version.json", '{"schema_version": true}'), "schema_version true"),
    (lambda d: _write(d / "version2.json", '{"schema_version": 1.0}'), "schema_version 1.0"),
    (lambda d: _write(d / "shapes.json", json.dumps({**sample_data("llamacpp"), "model": [1]})), "invalid field 'model'"),
    (lambda d: _write(d / "shapes2.json", json.dumps({**sample_data("llamacpp"), "params": "fast"})),
     "invalid field 'params'"),
    (lambda d: _write(d / "shapes3.json", json.dumps({**sample_data("llamacpp"), "workload": {"context": {}}})),
     "invalid field 'workload.context'"),
    (lambda d: d / "missing.json", "missing.json not found"),
    (lambda d: _write(d / "file", "x") / "below.json", "Not a directory"),
    (lambda d: Path("/dev/null"), "not a regular file"),
    (lambda d: Path("/dev/zero"), "not a regular file"),
], ids=["folder", "binary", "latin1", "array", "scalar", "string", "empty", "deep", "deep-inside", "digits", "nan",
        "inf", "surrogate", "version-true", "version-float", "shape-model", "shape-params", "shape-workload",
        "missing", "through-a-file", "dev-null", "dev-zero"])
def test_odd_files_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str,
                                make: Callable[[Path], Path], expected: str) -> None:
    path = make(tmp_path)
    line = _validate(path, capsys, command)
    assert expected in line and (str(path) in line or str(path.name) in line), line


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fifo = tmp_path / "profile.json"
    os.mkfifo(fifo)
    assert "not a regular file" in _validate(fifo, capsys)


def test_a_huge_file_is_refused_without_reading_it_all(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    huge = tmp_path / "huge.json"
    with huge.open("wb") as file:
        file.truncate(MAX_PROFILE_BYTES + 1)  # sparse: no disk used
    assert "larger than 16 MiB" in _validate(huge, capsys)


def test_an_unreadable_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write(tmp_path / "secret.json", json.dumps(sample_data("llamacpp")))
    real_open = os.open

    def refuse(name: Any, flags: int, *args: Any) -> int:
        if Path(name) == path:  # root reads anything, so the refusal is simulated
            raise PermissionError(13, "Permission denied", str(name))
        return real_open(name, flags, *args)

    monkeypatch.setattr(os, "open", refuse)
    assert "Permission denied" in _validate(path, capsys)


def test_utf16_and_bom_files_are_read(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Editors on Windows write a BOM or UTF-16; those are still the same JSON."""
    text = json.dumps(sample_data("llamacpp"))
    for name, content in [("bom.json", b"\xef\xbb\xbf" + text.encode()), ("utf16.json", text.encode("utf-16"))]:
        assert main(["validate", str(_write(tmp_path / name, content))]) == 0
    assert "valid autotune profile" in capsys.readouterr().out


@needs_backends
def test_validate_says_whether_params_were_checked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    checked = _write(tmp_path / "ok.json", json.dumps(sample_data("llamacpp")))
    foreign = _write(tmp_path / "foreign.json", json.dumps(mutated(sample_data("llamacpp"), ("backend", "name"), "tpu")))
    assert main(["validate", str(checked)]) == 0 and main(["validate", str(foreign)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].endswith("backend llamacpp, params checked)")
    assert out[1].endswith("backend tpu, params not checked: backend tpu not installed)")


@needs_backends
def test_validate_and_export_refuse_bad_params_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path / "p.json", json.dumps(mutated(sample_data("llamacpp"), ("params", "n_threads"), "2; touch x")))
    for command in ("validate", "export"):
        line = _validate(path, capsys, command)
        assert line == (f"autotune: error: {path}: the llamacpp parameter 'n_threads' must be an integer from 1 to 4096 "
                        'or null, not "2; touch x"')
    assert main(["export", str(path), "--format", "llama-server"]) == 2
    assert not (Path.cwd() / "x").exists()


@example(label="Q4_0\nimport os; os.system('id')")
@given(label=st.text(max_size=30))
@settings(max_examples=100, deadline=None)
def test_labels_and_paths_cannot_break_out_of_comments(label: str) -> None:
    """Profile text (the precision label, the model path) lands in comments and titles: it stays one line there."""
    for backend in BACKENDS if set(BACKENDS) <= set(INSTALLED) else ():
        data = mutated(mutated(sample_data(backend), ("artifact", "precision"), label), ("model", "path"), label)
        assert check_exports(data) in ("accepted", "refused")


def test_evidence_renders_integers_beyond_a_float() -> None:
    """A loaded profile's byte counts are unbounded ints: the evidence lines must not overflow a float."""
    from autotune import evidence
    from autotune.testing.profiles import sample_profile

    profile = sample_profile("llamacpp")
    huge = profile.model_copy(update={"measured": profile.measured.model_copy(update={"peak_rss_bytes": 10**400}),
                                      "budget": profile.budget.model_copy(update={"memory_bytes": 10**400})})
    lines = evidence(huge)
    assert f"peak {10**400 // 2**20} MiB" in lines[1] and f"budget: {10**400 // 2**20} MiB" in lines[1]
