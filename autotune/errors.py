"""The one exception family autotune raises on purpose.

Every message says what happened and what to do next; the CLI prints it as one line
(the traceback only with ``AUTOTUNE_DEBUG=1``).
"""

from __future__ import annotations


class AutotuneError(Exception):
    """Base of every error autotune raises deliberately."""


class InputError(AutotuneError, ValueError):
    """A value the user typed (a number, an option, a path) is not accepted; the message says what is."""


class BudgetError(InputError):
    """A budget, size or duration could not be parsed or is out of range."""


class PluginError(AutotuneError):
    """A plugin is misconfigured (duplicate backend name, unknown backend, ...)."""


class ModelSourceError(AutotuneError):
    """The model path is missing or its format is not recognised."""


class ProfileError(AutotuneError):
    """A profile file is invalid, foreign or of an unsupported schema version."""


class BackendUnavailable(AutotuneError):
    """A backend's runtime is missing or cannot load the model."""


class NothingFits(AutotuneError):
    """No measured configuration met the budgets."""


class ForeignHardware(AutotuneError):
    """The hardware description in use is not this machine's, so nothing may be measured under it."""


class StorageError(AutotuneError):
    """The study storage (``--storage``) cannot be opened: bad URL, missing driver, unreachable, refused."""


def one_line(text: str) -> str:
    """``text`` with line breaks and other control characters escaped, so an odd input cannot split the line.

    For error messages, and for profile text (paths, labels) that exporters put in a comment or title line.
    """
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)


class ConversionFailed(AutotuneError):
    """A format conversion (gguf → hf, hf → onnx, ...) failed; the backends needing it are skipped."""
