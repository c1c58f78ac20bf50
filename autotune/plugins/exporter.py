"""Exporters turn a deployment profile into something another tool consumes."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import PurePath
from typing import TYPE_CHECKING

from autotune.errors import one_line
from autotune.plugins.boundary import PluginFault, checked
from autotune.reporting import Reporter

if TYPE_CHECKING:
    from autotune.profile.schema import DeploymentProfile


@dataclass(frozen=True)
class Exporter:
    """A named output format, e.g. ``llama-server`` (a shell command) or ``ollama`` (a Modelfile).

    ``backends`` lists the backends whose profiles it can render; empty means every backend.
    ``render`` returns the text; it must quote paths so the result is safe to paste into a shell. It reads
    ``profile.params`` through the backend's ``params_model`` (``autotune.profile.params.validate_params``), never as a
    raw dict, so it renders every profile ``autotune validate`` accepts and refuses others with a ``ProfileError``.
    """

    name: str
    description: str
    render: Callable[[DeploymentProfile], str]
    backends: tuple[str, ...] = ()
    command: Callable[[DeploymentProfile, int], list[str] | None] | None = None
    """For an exporter whose text starts a server: the argv serving ``profile`` on 127.0.0.1:``port`` when the
    profile was measured through exactly that command (None for a profile measured otherwise). ``autotune verify``
    starts it to check the profile's figures, so the export and what verify runs are one command."""

    def applies_to(self, backend: str) -> bool:
        """True when this exporter can render a profile of ``backend``."""
        return not self.backends or backend in self.backends


def decode_claim(profile: DeploymentProfile) -> str:
    """The decode speed a profile claims, with where it comes from: the confirmed median and its interval when
    the finalists were confirmed (``71.1 tok/s [62.4, 77.3] confirmed in 5 rounds``), else the one search trial."""
    confirmation = profile.confirmation
    if confirmation is not None:
        tps = confirmation.decode_tps
        return f"{tps.value:.1f} tok/s [{tps.low:.1f}, {tps.high:.1f}] confirmed in {confirmation.rounds} rounds"
    return f"{profile.measured.decode_tps:.1f} tok/s in its search trial (not confirmed)"


def evidence(profile: DeploymentProfile) -> list[str]:
    """The lines that tie an export to the profile and figures it came from, without comment markers.

    Every exporter puts them at the top of its text as comments (``#`` for shells, Modelfiles, Python
    and YAML), so a pasted command stays traceable to what was measured and under which budget. The figures
    claimed are the confirmed ones with their intervals (the interleaved rounds); the search trial's single
    measurement follows, labelled as such. The precision is the written one, with its fallbacks.
    """
    measured = profile.measured
    search = [f"decode {measured.decode_tps:.1f} tok/s", f"p95 {measured.worst_itl_p95_ms:.1f} ms/token",
              f"TTFT {measured.ttft_ms:.0f} ms"]
    if measured.peak_rss_bytes is not None:
        search.append(f"peak {measured.peak_rss_bytes // 2**20} MiB")  # integer: a profile's int may exceed a float
    figures: list[str] = []
    confirmation = profile.confirmation
    if confirmation is not None:
        tps, p95 = confirmation.decode_tps, confirmation.itl_p95_ms
        figures.append(f"confirmed in {confirmation.rounds} interleaved rounds: decode {tps.value:.1f} tok/s "
                       f"[{tps.low:.1f}, {tps.high:.1f}], p95 {p95.value:.1f} ms/token [{p95.low:.1f}, {p95.high:.1f}]")
        figures.append(f"search trial: {', '.join(search)}")
    else:
        figures.append(f"search trial (not confirmed): {', '.join(search)}")
    quality = profile.quality
    if quality is not None and quality.kl_divergence is not None:
        kl = quality.kl_divergence
        figures.append(f"KL {kl.value:.4f} [{kl.low:.4f}, {kl.high:.4f}] vs {quality.reference or 'the reference'}")
    elif quality is not None and quality.bits_per_weight is not None:
        figures.append(f"quality not measured ({quality.bits_per_weight:.2f} bits/weight)")
    budget = profile.budget
    limits = [f"{budget.memory_bytes // 2**20} MiB", *budget.terms()]  # integer: a profile's int may exceed a float
    fingerprint = str(profile.hardware.get("fingerprint", "unknown"))[:12]
    version = profile.backend.version or "unknown version"
    return [
        f"autotune {profile.autotune_version} profile of {profile.created_at:%Y-%m-%d %H:%M} UTC: "
        f"{PurePath(profile.model.path).name} on {profile.backend.name} {version}, {profile.artifact.label}, "
        f"machine {fingerprint}",
        f"measured: {'; '.join(figures)}; budget: {', '.join(limits)}",
    ]


def evidence_comment(profile: DeploymentProfile, marker: str = "#") -> str:
    """``evidence(profile)`` as comment lines starting with ``marker``, each ending in a newline.

    The lines carry the profile's own strings (the model's file name, versions, precision): whitespace runs become
    one space and other unprintable characters their escapes (``one_line``), since a line break would end the
    comment and turn the rest into code, a NUL makes a Python export unparseable and a lone surrogate cannot be
    written as UTF-8.
    """
    return "".join(f"{marker} {one_line(' '.join(line.split()))}\n" for line in evidence(profile))


def render_exports(exporters: Iterable[Exporter], profile: DeploymentProfile, reporter: Reporter) -> dict[str, str]:
    """Every applicable exporter's text for ``profile``; an exporter that raises is named in a warning and left out.

    A broken third-party exporter must never cost the profile the whole search produced.
    """
    rendered: dict[str, str] = {}
    for exporter in exporters:
        try:
            if exporter.applies_to(profile.backend.name):
                rendered[exporter.name] = checked(exporter.render(profile), str, f"exporter {exporter.name!r} render()")
        except Exception as error:  # noqa: BLE001 - any plugin failure is reported, never fatal
            shown = str(error) if isinstance(error, PluginFault) else repr(error)
            reporter.warn(f"exporter {exporter.name!r} failed and was left out of the profile: {shown}")
    return rendered
