"""Hostile plugins, storages and files: each is named in one line and skipped; the profile is always written."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from optuna.trial import TrialState

from autotune import SilentReporter, hookimpl
from autotune.cli.main import main
from autotune.errors import StorageError
from autotune.measure.artifacts import prepare_artifact
from autotune.plugins.backend import Artifact, Params, precision_label
from autotune.plugins.exporter import Exporter
from autotune.search.study import open_storage, open_study
from autotune.store.storage import redact_url
from autotune.testing import FakeBackend
from autotune.testing.inline_plugin import InlineBackends, manager_with
from autotune.testing.tuning import tune_with_plugins


def tune(model: Path, *plugins: object, reporter: SilentReporter | None = None, **options: Any) -> Any:
    return tune_with_plugins(model, *plugins, reporter=reporter, **options)


class MisspeltHook:
    @hookimpl
    def autotune_backend(self) -> Iterator[FakeBackend]:  # the spec is autotune_backends
        yield FakeBackend(name="misspelt")


class WrongArguments:
    @hookimpl
    def autotune_backends(self, colour: str) -> Iterator[FakeBackend]:  # the spec has no such argument
        yield FakeBackend(name="wrongargs")


class RaisingExporter:
    @hookimpl
    def autotune_exporters(self) -> Iterator[Exporter]:
        def render(profile: object) -> str:
            raise RuntimeError("template on fire")

        yield Exporter(name="broken-export", description="raises", render=render)


class RaisingSearchSpace(FakeBackend):
    def search_space(self, *args: Any) -> Any:
        raise KeyError("n_threads")


class RaisingPredict(FakeBackend):
    def predict(self, *args: Any) -> Any:
        raise ZeroDivisionError("bits")


def test_a_misspelt_or_mistyped_hook_names_the_plugin_and_the_rest_loads() -> None:
    manager = manager_with(FakeBackend(), builtins=True)
    manager.register(MisspeltHook(), "misspelt")
    manager.register(WrongArguments(), "wrongargs")
    assert list(manager.backends()) == ["fake"]
    assert "autotune_backend, which autotune does not have" in (manager.records["misspelt"].error or "")
    assert "autotune_backends" in (manager.records["misspelt"].error or "")  # the known hooks are listed
    assert "cannot be registered" in (manager.records["wrongargs"].error or "")
    assert sum("'misspelt'" in w for w in manager.warnings) == 1 and sum("'wrongargs'" in w for w in manager.warnings) == 1


def test_an_exporter_that_raises_costs_its_export_not_the_profile(model: Path) -> None:
    reporter = SilentReporter()
    result = tune(model, InlineBackends(FakeBackend()), RaisingExporter(), reporter=reporter)
    assert "json" in result.profile.exports and "broken-export" not in result.profile.exports
    assert any("'broken-export' failed" in w and "template on fire" in w for w in reporter.warnings)


def test_export_with_a_raising_exporter_is_one_line(model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    profile = tmp_path / "profile.json"
    profile.write_text(tune(model, InlineBackends(FakeBackend())).profile.to_json())
    manager = manager_with(builtins=True)
    manager.register(RaisingExporter(), "raising")
    monkeypatch.setattr("autotune.plugins.manager.get_plugin_manager", lambda **_: manager)
    assert main(["export", str(profile), "--format", "broken-export"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "'broken-export' could not render" in err and "Traceback" not in err


def test_a_backend_raising_in_its_declarations_or_predictions_is_skipped_not_fatal(model: Path) -> None:
    reporter = SilentReporter()
    result = tune(model, InlineBackends(RaisingSearchSpace(name="nospace"), RaisingPredict(name="nopredict"),
                                        FakeBackend()), reporter=reporter, trials=6)
    assert any("'nospace' skipped" in w and "KeyError" in w for w in reporter.warnings)
    unpredictable = [r for r in result.records if r.backend == "nopredict"]
    assert unpredictable and all(r.status == "failed" and "ZeroDivisionError" in (r.reason or "") for r in unpredictable)
    assert result.profile.backend.name == "fake"


@pytest.mark.parametrize("url, expected", [
    ("not a url", "cannot read --storage"),
    ("mysql://user:hunter2@127.0.0.1:1/db", "driver"),
    ("nosuchdb://host/db", "unknown database kind"),
])
def test_storage_errors_are_one_line_without_the_password(url: str, expected: str) -> None:
    with pytest.raises(StorageError) as caught:
        open_storage(url)
    assert expected in str(caught.value) and "hunter2" not in str(caught.value)


def test_an_unwritable_sqlite_location_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(StorageError, match="cannot create the storage file|cannot open --storage"):
        open_storage(f"sqlite:///{blocker}/studies.db")


def test_bad_storage_fails_before_any_measurement(model: Path, capsys: pytest.CaptureFixture[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("autotune.plugins.manager.get_plugin_manager",
                        lambda **_: manager_with(FakeBackend(), builtins=True))
    status = main(["run", "--model", str(model), "--budget", "1GB", "--latency", "50ms",
                   "--storage", "postgresql+nosuchdriver://u:secret@localhost:1/x"])
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1 and "secret" not in err and "measuring" not in err


def test_passwords_never_reach_the_profile() -> None:
    assert redact_url("postgresql+psycopg://alice:s3cret@db:5432/tune") == "postgresql+psycopg://alice:***@db:5432/tune"
    assert redact_url("sqlite:////tmp/x.db") == "sqlite:////tmp/x.db"


class SourceAsIs(FakeBackend):
    """Uses the source file itself as the f16 artifact (as llama.cpp does with a GGUF tuned at its own type)."""

    def prepare(self, source: Any, params: Params, workdir: Path) -> Artifact:
        if params["quant"] == "f16":
            return Artifact(path=source.path, format="gguf", precision="f16", bits_per_weight=16.0, size_bytes=68)
        return super().prepare(source, params, workdir)


def test_the_artifact_is_the_file_tuned_this_time_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    backend = SourceAsIs()
    first_home, second_home = tmp_path / "one", tmp_path / "two"
    (first_home / "stale").mkdir(parents=True)
    (first_home / "stale" / "a.gguf").write_bytes(b"GGUF" + bytes(64))
    monkeypatch.chdir(first_home)
    artifact, built = prepare_artifact(backend, backend.inspect(Path("stale/a.gguf")), {"quant": "f16"})
    assert built and artifact.path == (first_home / "stale" / "a.gguf").resolve()

    # The same content under another name, given by an absolute path, from another folder; the first file moved.
    second_home.mkdir()
    copy = second_home / "renamed.gguf"
    shutil.move(first_home / "stale" / "a.gguf", copy)
    monkeypatch.chdir(second_home)
    artifact, built = prepare_artifact(backend, backend.inspect(copy), {"quant": "f16"})
    assert not built and artifact.path == copy.resolve() and artifact.path.exists()


def test_fallbacks_show_wherever_the_precision_shows() -> None:
    details = {"fallback": "24/30 tensors fell back to Q4_0/Q5_0"}
    assert precision_label("Q2_K", details) == "Q2_K (24/30 tensors fell back to Q4_0/Q5_0)"
    assert precision_label("Q4_K_M", {}) == "Q4_K_M"
    artifact = Artifact(path=Path("x"), format="gguf", precision="Q2_K", bits_per_weight=4.6, size_bytes=1, details=details)
    assert artifact.label == precision_label("Q2_K", details)


def test_the_profile_does_not_count_a_trial_an_interrupted_run_left_as_failed(model: Path) -> None:
    first = tune(model, InlineBackends(FakeBackend()))
    study = open_study(first.study_name, None, 0)
    orphan = study.ask()  # a trial an interrupted run left behind, failed, with no record
    study.tell(orphan, state=TrialState.FAIL)
    again = tune(model, InlineBackends(FakeBackend()))
    assert again.profile.study["failed"] == first.profile.study["failed"]  # an interruption is no result
