"""``autotune report`` and ``autotune --version``: the page's content against the profile, escaping, no network.

The page is read back with the standard library's HTML parser here; ``test_report_browser.py`` loads it in
a real headless Chromium.
"""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import autotune.cli.run
import autotune.plugins.manager
from autotune import __version__
from autotune.cli.main import main
from autotune.errors import ProfileError
from autotune.plugins.backend import Availability
from autotune.profile.reading import load_profile, profile_from_data
from autotune.profile.schema import DeploymentProfile
from autotune.report import render_report, report_path
from autotune.report.page import COLUMNS
from autotune.testing import FakeBackend, manager_with
from autotune.testing.conformance import example_hardware
from autotune.testing.profiles import DELETE, HOSTILE_TEXT, HOSTILE_VALUES, mutated, mutation_sites, sample_profile
from autotune.testing.reports import HOSTILE, hostile_profile, report_profile


class Page(HTMLParser):
    """The parts of a report a test checks: elements by id, the trial rows' cells, tags and attributes seen."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.by_id: dict[str, dict[str, str | None]] = {}
        self.rows: dict[str, list[tuple[dict[str, str | None], str]]] = {}
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self._row: str | None = None
        self._cell: dict[str, str | None] | None = None
        self._cell_text: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        self.tags.append((tag, found))
        if "id" in found:
            self.by_id[str(found["id"])] = found
        if tag == "tr" and found.get("data-trial") is not None and self._in_trials():
            self._row = str(found["data-trial"])
            self.rows[self._row] = []
        elif tag == "td" and self._row is not None:
            self._cell, self._cell_text = found, []

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._row is not None and self._cell is not None:
            self.rows[self._row].append((self._cell, " ".join("".join(self._cell_text).split())))
            self._cell = None
        elif tag == "tr":
            self._row = None

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._cell is not None:
            self._cell_text.append(data)

    def _in_trials(self) -> bool:
        return any(tag == "table" and "trials" in (attrs.get("class") or "") for tag, attrs in self.tags)


def column(name: str) -> int:
    return COLUMNS.index(name)


@pytest.fixture
def profile() -> DeploymentProfile:
    return report_profile()


def test_every_trial_is_a_row_with_the_profile_figures(profile: DeploymentProfile) -> None:
    page = Page(render_report(profile))
    assert sorted(page.rows) == sorted(str(t.number) for t in profile.trials)
    for trial in profile.trials:
        cells = page.rows[str(trial.number)]
        assert len(cells) == len(COLUMNS)
        m = trial.measured
        for name, value, spec in (("decode tok/s", m.decode_tps if m else None, ".1f"),
                                  ("p95 ms", m.worst_itl_p95_ms if m else None, ".2f"),
                                  ("TTFT ms", m.ttft_ms if m else None, ".1f"),
                                  ("peak MiB", m.peak_rss_bytes / 2**20 if m and m.peak_rss_bytes else None, ".1f")):
            attrs, text = cells[column(name)]
            if value is None:
                assert attrs.get("data-sort") is None and text == "—", (trial.number, name)
            else:  # the exact figure for sorting, the rounded one shown
                assert float(str(attrs["data-sort"])) == value and text == f"{value:{spec}}", (trial.number, name)
        kl = trial.quality.kl_divergence if trial.quality else None
        attrs, text = cells[column("quality loss (KL) [interval]")]
        if kl is None:
            assert text == "—"
        else:
            assert float(str(attrs["data-sort"])) == kl.value
            assert text == f"{kl.value:.4f} [{kl.low:.4f}, {kl.high:.4f}]"
        assert cells[column("precision")][1] == (trial.precision or "")


def test_rows_say_what_became_of_each_trial(profile: DeploymentProfile) -> None:
    page = Page(render_report(profile))

    def cell(trial: int, name: str) -> str:
        return page.rows[str(trial)][column(name)][1]

    assert cell(3, "status") == "skipped (predicted over budget)" and "predicted memory 2.3 GiB" in cell(3, "why skipped, screened or over")
    assert cell(4, "status") == "screened out (screening run)" and "cannot beat #1" in cell(4, "why skipped, screened or over")
    assert cell(5, "status") == "failed" and "SIGILL" in cell(5, "why skipped, screened or over")
    assert cell(2, "why skipped, screened or over") == "over the latency budget"
    assert cell(1, "machine while measured") == "quiet others 1%"
    assert cell(2, "machine while measured") == "busy others 50%"
    busy = page.rows["2"][column("machine while measured")][0]
    assert "stress (pid 4242" in str(busy["title"]) and float(str(busy["data-sort"])) == 0.5
    assert "(20/22 tensors fell back to Q5_0)" in cell(1, "precision")
    # The chosen row and the front are marked for the eye and for the test.
    classes = {t: str(attrs.get("class")) for t, (attrs) in
               ((tag_attrs.get("data-trial"), tag_attrs) for tag, tag_attrs in page.tags if tag == "tr")}
    assert "chosen" in classes["1"] and "front" in classes["0"] and "chosen" not in classes["0"]


def test_headline_is_the_confirmed_answer_with_its_baselines(profile: DeploymentProfile) -> None:
    page = Page(render_report(profile))
    c = profile.confirmation
    assert c is not None and c.speedup_over_untuned and c.speedup_over_rule_of_thumb
    for ident, found in (("decode-tps", c.decode_tps), ("p95-ms", c.itl_p95_ms),
                         ("speedup-untuned", c.speedup_over_untuned), ("speedup-rule", c.speedup_over_rule_of_thumb)):
        attrs = page.by_id[ident]
        assert (float(str(attrs["data-value"])), float(str(attrs["data-low"])), float(str(attrs["data-high"]))) == \
            (found.value, found.low, found.high), ident
    assert float(str(page.by_id["peak-bytes"]["data-value"])) == profile.measured.peak_rss_bytes
    text = " ".join(" ".join(page.text).split())
    assert "a tie inside the noise" in text and "n_threads=1" in text and "#0 tied with the winner" in text
    assert "llama-server -m /models/x.gguf -t 2 -fa on" in text  # the exports
    assert "measurements 40.0 s" in text and "total 114.8 s" in text  # the phases
    assert "memory ≤ 1.9 GiB, p95 inter-token latency ≤ 50 ms" in text  # the budget


def test_plot_marks_the_full_measurements_the_front_and_the_choice(profile: DeploymentProfile) -> None:
    page = Page(render_report(profile))
    points = {str(attrs["data-trial"]): str(attrs["class"]) for tag, attrs in page.tags
              if tag == "g" and attrs.get("data-trial")}
    # The screening run (#4), the skipped (#3) and the failed (#5) trials have no full figures to plot.
    assert points == {"0": "point front", "1": "point chosen", "2": "point over"}
    text = " ".join(page.text)
    assert "latency budget 50 ms" in text and "quality loss (mean KL divergence)" in text


def test_page_is_self_contained(profile: DeploymentProfile) -> None:
    text = render_report(profile)
    policy = [attrs for tag, attrs in Page(text).tags if attrs.get("http-equiv") == "Content-Security-Policy"]
    assert policy and "default-src 'none'" in str(policy[0]["content"])
    assert not re.search(r"\b(src|href)\s*=|url\(|@import", text)
    assert re.findall(r"https?://[^\s\"'<]+", text) == ["http://www.w3.org/2000/svg"]  # a namespace, never fetched


def test_hostile_strings_are_text_not_markup(profile: DeploymentProfile) -> None:
    text = render_report(hostile_profile(profile))
    page = Page(text)
    assert [tag for tag, _ in page.tags if tag in ("img", "iframe", "object", "embed")] == []
    assert [tag for tag, _ in page.tags].count("script") == 1  # ours
    assert HOSTILE not in text and "onerror=" not in text.replace("onerror=&quot;", "")
    shown = "".join(page.text)
    assert shown.count(HOSTILE) >= 8  # the title, model path, settings, trials, machine, study, exports, objective


def test_a_profile_from_before_trials_were_kept_shows_its_answer() -> None:
    old = sample_profile("llamacpp")
    page = Page(render_report(old))
    assert len(page.rows) == 1 + len(old.alternatives)
    assert "written before profiles kept every trial" in " ".join(page.text)


def test_report_command_writes_beside_the_profile_or_where_told(tmp_path: Path, profile: DeploymentProfile,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "model-machine.json"
    path.write_text(profile.to_json())
    assert main(["report", str(path)]) == 0
    assert report_path(path) == tmp_path / "model-machine.html" and report_path(path).read_text().startswith("<!DOCTYPE")
    assert capsys.readouterr().out == f"report: {report_path(path)}\n"
    assert main(["report", str(path), "--html", str(tmp_path / "elsewhere.html")]) == 0
    assert (tmp_path / "elsewhere.html").read_text() == report_path(path).read_text()


@pytest.mark.parametrize("args, expected", [
    (["nope.json"], "nope.json not found"),
    (["PROFILE", "--html", "missing-folder/page.html"], "name a file in an existing folder"),
    (["PROFILE", "--html", "."], "name a file in an existing folder"),
    (["PROFILE", "--html", "PROFILE"], "would overwrite the profile"),
])
def test_report_command_errors_are_one_line(tmp_path: Path, profile: DeploymentProfile, args: list[str],
                                            expected: str, capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("p.json").write_text(profile.to_json())
    assert main(["report", *[a.replace("PROFILE", "p.json") for a in args]]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith("autotune: error: ") and expected in err, err


class VersionRaises(FakeBackend):
    name = "brokenversion"

    def version(self) -> str | None:
        raise RuntimeError("no version here")


class AvailabilityRaises(FakeBackend):
    name = "brokenavailability"

    def availability(self) -> Availability:
        raise RuntimeError("cannot tell")


class Missing(FakeBackend):
    name = "missing"

    def availability(self) -> Availability:
        return Availability(False, "the runtime is not installed: pip install it", version=None)


def test_version_names_autotune_and_each_runtime_and_survives_broken_plugins(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    manager = manager_with(FakeBackend(version="7.7"), VersionRaises(), AvailabilityRaises(), Missing(), builtins=True)
    monkeypatch.setattr(autotune.plugins.manager, "get_plugin_manager", lambda **_: manager)
    assert main(["--version"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"slm-autotune {__version__} (the autotune command; Python ")
    by_name = {line.split()[0]: line for line in lines[2:]}
    assert by_name["fake"].split()[1] == "7.7"
    assert "version check raised RuntimeError" in by_name["brokenversion"]
    assert "availability check raised RuntimeError: cannot tell" in by_name["brokenavailability"]
    assert "not usable here: the runtime is not installed" in by_name["missing"]


def test_version_from_the_installed_distribution() -> None:
    assert __version__ != "0+unknown", "slm-autotune is not installed (make setup installs it)"


def test_run_writes_the_report_beside_the_profile(tmp_path: Path, model: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(autotune.cli.run, "get_plugin_manager", lambda **_: manager_with(FakeBackend(), builtins=True))
    monkeypatch.setattr(autotune.cli.run, "probe", lambda manager, **_: example_hardware())
    status = main(["run", "--model", str(model), "--budget", "2GB", "--latency", "50ms", "--trials", "3",
                   "--prompt-tokens", "8", "--gen-tokens", "4", "--context", "64", "--depth", "0", "--no-quality",
                   "--confirm-rounds", "0", "--out", str(tmp_path / "out")])
    captured = capsys.readouterr()
    out = captured.out + captured.err  # the console's lines go where the reporter prints
    assert status == 0, out
    [profile_file] = (tmp_path / "out").glob("*.json")
    page = Page(report_path(profile_file).read_text())
    profile = load_profile(profile_file, {})
    assert f"report:  {report_path(profile_file)}" in out
    assert sorted(page.rows) == sorted(str(t.number) for t in profile.trials) and len(page.rows) == 3


REPORT_DATA = json.loads(report_profile().to_json())
SITES = mutation_sites(REPORT_DATA)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(SITES), st.sampled_from([*HOSTILE_VALUES, *HOSTILE_TEXT, HOSTILE, DELETE])),
                min_size=1, max_size=4))
def test_any_profile_that_validates_renders_with_its_strings_as_text(changes: list[tuple[tuple[Any, ...], Any]]) -> None:
    data = REPORT_DATA
    for site, value in changes:
        data = mutated(data, site, value)
    try:
        profile = profile_from_data(data, "mutated.json", {})
    except ProfileError:
        return  # refused in one line: the report is never asked to show it
    page = Page(render_report(profile))
    assert [tag for tag, _ in page.tags if tag in ("img", "iframe", "object", "embed")] == []
    assert [tag for tag, _ in page.tags].count("script") == 1


@pytest.mark.parametrize("value", [10**400, -1, 0, HOSTILE], ids=["huge", "negative", "zero", "markup"])
def test_every_field_of_a_profile_may_hold_an_extreme_value(value: object) -> None:
    """Each site at once with the values that once broke the page (an integer beyond any float, a negative peak)."""
    rendered = 0
    for site in SITES:
        try:
            profile = profile_from_data(mutated(REPORT_DATA, site, value), "mutated.json", {})
        except ProfileError:
            continue
        assert render_report(profile).count("<script") == 1, site
        rendered += 1
    assert rendered > 100  # most sites take these values: the sweep is not vacuous
