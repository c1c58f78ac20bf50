"""What ``autotune.load`` returns for an ``onnxruntime`` profile: the tuned onnxruntime-genai model, ready to generate."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autotune import Workload
from autotune.errors import BackendUnavailable

from .runner import import_genai, max_length_for
from .session import Settings, load_genai_model


@dataclass(frozen=True)
class GenaiDeployment:
    """An onnxruntime-genai model configured as its profile says, with its tokenizer and the measured context.

    ``model`` is an ``og.Model`` built from the artifact folder with the profile's session options (threads,
    spinning, graph optimization level) and execution provider overlaid, exactly as autotune measured it and
    as the ``onnxruntime-python`` export builds it. Make generators with ``generator_params()``, or call
    ``generate`` for a greedy reply.
    """

    model: Any
    """``onnxruntime_genai.Model``."""
    tokenizer: Any
    """``onnxruntime_genai.Tokenizer`` of the same folder."""
    max_length: int
    """Sequence capacity of a generator: the measured context plus the last picked token."""

    def generator_params(self) -> Any:
        """``og.GeneratorParams`` for greedy search within the measured context."""
        params = import_genai().GeneratorParams(self.model)
        params.set_search_options(do_sample=False, max_length=self.max_length)
        return params

    def generate(self, prompt: str, max_new_tokens: int = 64) -> str:
        """The greedy continuation of ``prompt``: up to ``max_new_tokens`` tokens, EOS or the end of the context."""
        generator = import_genai().Generator(self.model, self.generator_params())
        generator.append_tokens(self.tokenizer.encode(prompt))
        stream = self.tokenizer.create_stream()
        pieces: list[str] = []
        while not generator.is_done() and len(pieces) < max_new_tokens:
            generator.generate_next_token()
            pieces.append(stream.decode(generator.get_next_tokens()[0]))
        return "".join(pieces)


def load_deployment(model_dir: Path, params: Settings, workload: Workload) -> GenaiDeployment:
    """``model_dir`` loaded with ``params`` for ``workload``'s context; ``BackendUnavailable`` when it cannot load."""
    og = import_genai()
    try:
        model = load_genai_model(model_dir, params)
    except RuntimeError as error:  # onnxruntime-genai reports load failures (bad provider, bad graph) as RuntimeError
        raise BackendUnavailable(f"onnxruntime-genai could not load {model_dir} with {dict(params)}: {error}") from None
    return GenaiDeployment(model=model, tokenizer=og.Tokenizer(model), max_length=max_length_for(model_dir, workload))
