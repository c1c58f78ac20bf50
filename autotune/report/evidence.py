"""What the report shows, read from a profile: plain data for ``page`` to render, no markup here.

Every trial becomes a ``Row`` (the table and the plot), the machine each figure was measured on becomes a
``MachineState`` (quiet or busy, where the measurement recorded it), and the loosely typed parts of a profile
(``hardware``, ``study``) become lists of labelled text. A profile is untrusted input: anything in its free-form
dictionaries is turned into text here and escaped by ``page``; numbers that are not numbers are left out.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass

from autotune.budget import format_bytes
from autotune.profile.schema import Alternative, DeploymentProfile, Interval, Quality, Trial

STATUS_WORDS = {
    "measured": "measured",
    "predicted-infeasible": "skipped (predicted over budget)",
    "screened-out": "screened out",
    "failed": "failed",
}
"""How each trial status reads in the table."""


@dataclass(frozen=True)
class MachineState:
    """Whether other programs took the cores while a figure was measured, as far as the measurement recorded it."""

    label: str
    """``quiet``, ``busy`` or ``not recorded``."""
    others_share: float | None = None
    """The share of the measurement's cores other processes (and the hypervisor) took, 0..1."""
    detail: str = ""
    short: str = ""
    """What the table shows beside the label (the detail goes into its tooltip)."""


@dataclass(frozen=True)
class Row:
    """One trial as the table and the plot show it."""

    number: int | None
    backend: str
    configuration: str
    precision: str
    status: str
    chosen: bool
    feasible: bool
    on_front: bool
    decode_tps: float | None
    itl_p95_ms: float | None
    """The worse of the p95 at the start of the context and at depth: the figure the latency budget applies to."""
    ttft_ms: float | None
    peak_bytes: int | None
    kl: Interval | None
    bits_per_weight: float | None
    machine: MachineState
    why: str
    screening: bool
    """The figures are those of a short screening run, not a full measurement."""

    @property
    def quality_loss(self) -> float | None:
        """Mean KL divergence where measured, else the bits-per-weight proxy (16 − bits) the search used."""
        if self.kl is not None:
            return self.kl.value
        return None if self.bits_per_weight is None else 16.0 - self.bits_per_weight


@dataclass(frozen=True)
class Evidence:
    """Everything the page shows, in the order it shows it."""

    profile: DeploymentProfile
    title: str
    rows: list[Row]
    complete: bool
    """False for a profile written before profiles kept every trial: the rows are the answer and its alternatives."""
    machine: list[tuple[str, str]]
    phases: list[tuple[str, float]]
    study: list[tuple[str, str]]
    exports: list[tuple[str, str]]


def gather(profile: DeploymentProfile) -> Evidence:
    """The report's content for ``profile``."""
    rows = [_row(trial, profile) for trial in profile.trials]
    complete = bool(rows)
    if not complete:  # an older profile: the chosen configuration and its alternatives are all it kept
        rows = [_chosen_row(profile), *(_alternative_row(a) for a in profile.alternatives)]
    model = profile.model.path.replace("\\", "/").rsplit("/", 1)[-1]
    cpu = profile.hardware.get("cpu")
    title = f"{model} on {text_of(cpu)}" if cpu is not None else model
    study = {k: v for k, v in profile.study.items() if k != "seconds"}
    return Evidence(profile=profile, title=title, rows=rows, complete=complete,
                    machine=flatten(profile.hardware), phases=phases(profile.study.get("seconds")),
                    study=flatten(study), exports=sorted(profile.exports.items()))


def _row(trial: Trial, profile: DeploymentProfile) -> Row:
    measured = trial.measured
    chosen = trial.backend == profile.backend.name and trial.params == profile.params
    why = trial.reason or ""
    if trial.status == "measured" and not trial.feasible:
        over = [name for name, excess in trial.violations.items() if excess > 0]
        if over and not why:
            why = f"over the {', '.join(over)} budget"
    return Row(number=trial.number, backend=trial.backend, configuration=trial.configuration or params_text(trial.params),
               precision=trial.precision or "", status=STATUS_WORDS.get(trial.status, trial.status), chosen=chosen,
               feasible=trial.feasible, on_front=trial.on_front or chosen,
               decode_tps=measured.decode_tps if measured else None,
               itl_p95_ms=measured.worst_itl_p95_ms if measured else None,
               ttft_ms=measured.ttft_ms if measured else None,
               peak_bytes=_peak(measured.peak_rss_bytes) if measured else None,
               kl=_kl(trial.quality), bits_per_weight=trial.bits_per_weight,
               machine=machine_state(measured.context) if measured else MachineState("—"),
               why=why, screening=trial.status == "screened-out" and measured is not None)


def _chosen_row(profile: DeploymentProfile) -> Row:
    m = profile.measured
    return Row(number=None, backend=profile.backend.name, configuration=params_text(profile.params),
               precision=profile.artifact.label, status="measured", chosen=True, feasible=True, on_front=True,
               decode_tps=m.decode_tps, itl_p95_ms=m.worst_itl_p95_ms, ttft_ms=m.ttft_ms, peak_bytes=_peak(m.peak_rss_bytes),
               kl=_kl(profile.quality), bits_per_weight=profile.artifact.bits_per_weight,
               machine=machine_state(m.context), why="", screening=False)


def _alternative_row(alternative: Alternative) -> Row:
    m = alternative.measured
    return Row(number=alternative.trial, backend=alternative.backend, configuration=params_text(alternative.params),
               precision=alternative.precision, status="measured", chosen=False, feasible=True, on_front=True,
               decode_tps=m.decode_tps, itl_p95_ms=m.worst_itl_p95_ms, ttft_ms=m.ttft_ms, peak_bytes=_peak(m.peak_rss_bytes),
               kl=_kl(alternative.quality), bits_per_weight=None, machine=machine_state(m.context), why="",
               screening=False)


def _kl(quality: Quality | None) -> Interval | None:
    return quality.kl_divergence if quality is not None else None


def machine_state(context: Mapping[str, object]) -> MachineState:
    """Quiet or busy while measured: the measurement's own record of other processes' share of its cores.

    Older measurements only list busy processes (and the load average, which the tuner's own worker raises).
    """
    busy = context.get("busy")
    if isinstance(busy, Mapping):
        others = _number(busy.get("others_share"))
        steal = _number(busy.get("steal_share")) or 0.0
        names = busy.get("busy_processes")
        named = ", ".join(text_of(n) for n in names) if isinstance(names, list) and names else ""
        if others is not None:
            share = others + steal
            disturbed = busy.get("disturbed") is True
            detail = f"others took {others:.0%} of its cores" + (f", the hypervisor {steal:.0%}" if steal else "")
            return MachineState("busy" if disturbed else "quiet", share, detail + (f" ({named})" if named else ""),
                                f"others {share:.0%}")
    processes = context.get("busy_processes")
    load = _number(context.get("loadavg_1m"))
    load_text = f"load average {load:g}" if load is not None else ""
    if isinstance(processes, list) and processes:
        return MachineState("busy", None, "busy: " + ", ".join(text_of(p) for p in processes)
                            + (f"; {load_text}" if load_text else ""), text_of(processes[0]))
    return MachineState("not recorded", None, load_text, load_text)


def phases(seconds: object) -> list[tuple[str, float]]:
    """``study.seconds`` as (phase, seconds) in the order the run met them; anything not a number is left out."""
    if not isinstance(seconds, Mapping):
        return []
    found = [(text_of(name), _number(raw)) for name, raw in seconds.items()]
    return [(name, value) for name, value in found if value is not None and value >= 0]


def flatten(data: Mapping[str, object], prefix: str = "") -> list[tuple[str, str]]:
    """Nested JSON objects as (dotted key, text) pairs, sizes in bytes also in binary units."""
    pairs: list[tuple[str, str]] = []
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            pairs += flatten(value, f"{name}.")
        elif name.endswith("_bytes") and (number := _number(value)) is not None:
            pairs.append((name, f"{size_text(number)} ({text_of(value)})"))
        elif name.endswith("_bytes_per_s") and (number := _number(value)) is not None:
            pairs.append((name, f"{number / 1e9:.1f} GB/s"))
        else:
            pairs.append((name, text_of(value)))
    return pairs


def params_text(params: Mapping[str, object]) -> str:
    """``n_threads=2 flash_attn=true``: the settings as one line."""
    return " ".join(f"{key}={text_of(value)}" for key, value in params.items())


def text_of(value: object) -> str:
    """A JSON value as text: strings as they are, lists joined, everything else as JSON spells it."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return ", ".join(text_of(item) for item in value) if value else "none"
    if value is None:
        return "—"
    if isinstance(value, Mapping) and not value:
        return "none"
    return json.dumps(value, ensure_ascii=False, default=str)


def size_text(value: object) -> str:
    """Bytes in a binary unit (``370.2 MiB``); a size no float can hold is shown as its digits."""
    number = _number(value)
    return format_bytes(number) if number is not None else f"{text_of(value)} B"


def _peak(value: int | None) -> int | None:
    """A peak memory figure the table and the plot can compute with (None: none, or beyond any float)."""
    return value if _number(value) is not None else None


def _number(value: object) -> float | None:
    """A finite int or float (never a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:  # an integer beyond any float: no figure, not a crash
        return None
    return number if math.isfinite(number) else None
