"""Capturing llama.cpp's log while autotune calls it in-process.

llama-cpp-python installs a log callback that prints everything to stderr until a ``Llama`` is
created with ``verbose=False``. In-process calls (quantizing, reading a vocabulary) would spill
hundreds of lines into the tuner's output, and their errors only appear in that log. This
context manager routes the log into a list for the duration of the call, then restores
llama-cpp-python's own callback.
"""

from __future__ import annotations

import ctypes
from collections.abc import Iterator
from contextlib import contextmanager

ERROR_LEVEL = 4  # ggml.h: GGML_LOG_LEVEL_ERROR (NONE 0, DEBUG 1, INFO 2, WARN 3, ERROR 4, CONT 5)


@contextmanager
def captured_llama_log() -> Iterator[list[tuple[int, str]]]:
    """Collect (level, text) of every llama.cpp log message emitted inside the block."""
    import llama_cpp
    from llama_cpp import _logger

    messages: list[tuple[int, str]] = []

    @llama_cpp.llama_log_callback
    def collect(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        messages.append((level, text.decode("utf-8", errors="replace")))

    llama_cpp.llama_log_set(collect, ctypes.c_void_p(0))
    try:
        yield messages
    finally:
        llama_cpp.llama_log_set(_logger.llama_log_callback, ctypes.c_void_p(0))


def last_error(messages: list[tuple[int, str]], limit: int = 3) -> str:
    """llama.cpp's last error lines, oldest first and joined (the cause comes before "failed to load model"),
    or an empty string. Each line loses the function name llama.cpp prefixes it with."""
    errors = [text.strip() for level, text in messages if level == ERROR_LEVEL and text.strip()]
    shown = [line.split(": ", 1)[1] if ": " in line and " " not in line.split(": ", 1)[0] else line
             for line in errors[-limit:]]
    return "; ".join(dict.fromkeys(shown))
