"""The hf → openvino conversion: a Hugging Face causal LM folder becomes a stateful OpenVINO IR.

The route: load the checkpoint with transformers (float32, SDPA attention), trace one forward
step that takes and returns the KV cache as plain tensors with ``openvino.convert_model``, then
turn the cache inputs/outputs into internal state the way optimum-intel does (without its CUDA
torch dependency): a ``beam_idx`` input reorders the cache, ``MakeStateful`` pairs each
``past_key_values.*`` input with its ``present.*`` output, and each state starts empty for the
batch at hand. The result has the inputs openvino-genai's ``LLMPipeline`` expects
(``input_ids``, ``attention_mask``, ``position_ids``, ``beam_idx``) and one output, ``logits``.

Tracing goes through transformers' own modelling code, so any decoder whose cache is made of
plain full-attention layers converts; sliding-window caches are refused with a reason.
Weights are stored as float16 (OpenVINO's default for saved IRs); NNCF compresses from there.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import logging
import shutil
import time
import warnings
from pathlib import Path
from typing import Any

from autotune.errors import AutotuneError

log = logging.getLogger("autotune.openvino")

IR_FILE = "openvino_model.xml"
TOKENIZER_IR = "openvino_tokenizer.xml"
DETOKENIZER_IR = "openvino_detokenizer.xml"
RECORD_FILE = "autotune-conversion.json"
COPIED_FILES = (
    "config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
    "special_tokens_map.json", "chat_template.jinja", "tokenizer.model",
)
"""Files copied next to the IR: what tokenizers, LLMPipeline and autotune read besides the model."""

CONVERT_MODULES = ("torch", "transformers", "openvino", "openvino_tokenizers")


def missing_modules(names: tuple[str, ...]) -> list[str]:
    """Which of ``names`` cannot be imported here (without importing them)."""
    missing = []
    for name in names:
        try:
            found = importlib.util.find_spec(name) is not None
        except ValueError:  # sys.modules[name] is None: deliberately hidden
            found = False
        if not found:
            missing.append(name)
    return missing


def conversion_unavailable() -> str | None:
    """``None`` when the hf → openvino conversion can run here, else what to install."""
    missing = missing_modules(CONVERT_MODULES)
    if missing:
        packages = " ".join(name.replace("_", "-") for name in missing)
        return f"converting HF models to OpenVINO needs {', '.join(missing)}: pip install {packages}"
    return None


def convert_hf_to_openvino(source: Path, out_dir: Path) -> Path:
    """Convert the HF folder ``source`` into a stateful OpenVINO IR folder inside ``out_dir``; return that folder.

    The folder holds ``openvino_model.xml/.bin`` (float16 weights), the tokenizer IRs when
    openvino-tokenizers can convert the tokenizer, the HF tokenizer/config files, and
    ``autotune-conversion.json`` recording versions and timings.
    """
    reason = conversion_unavailable()
    if reason:
        raise AutotuneError(reason)
    import openvino as ov

    target = out_dir / f"{source.name[:200]}-openvino"  # within 255 characters for any source name
    target.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    model = trace_stateful(source)
    traced_s = time.perf_counter() - started
    ov.save_model(model, str(target / IR_FILE), compress_to_fp16=True)
    del model
    tokenizer_error = _convert_tokenizer(source, target)
    for name in COPIED_FILES:
        if (source / name).is_file():
            shutil.copy2(source / name, target / name)
    import torch
    import transformers

    record = {
        "conversion": "hf-to-openvino",
        "source": str(source),
        "openvino": ov.get_version(),
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "trace_s": round(traced_s, 2),
        "total_s": round(time.perf_counter() - started, 2),
        "tokenizer_ir": tokenizer_error is None,
        "tokenizer_ir_error": tokenizer_error,
    }
    (target / RECORD_FILE).write_text(json.dumps(record, indent=2))
    return target


def trace_stateful(source: Path) -> Any:
    """Trace the HF model in ``source`` with its KV cache and return a stateful ``openvino.Model``."""
    import openvino as ov
    import torch
    from transformers import AutoModelForCausalLM

    try:
        model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32, attn_implementation="sdpa")
    except (OSError, ValueError) as error:
        raise AutotuneError(f"transformers cannot load {source} as a causal LM ({error}); pass an HF decoder checkpoint") from None
    model.eval()
    model.config.use_cache = True
    with torch.no_grad():
        # One real step gives the cache layout (layers, KV heads, head size) whatever the architecture.
        probe = model(input_ids=torch.ones((1, 2), dtype=torch.long), use_cache=True)
    cache = getattr(probe, "past_key_values", None) or getattr(probe, "cache", None)
    layers = list(getattr(cache, "layers", []))
    if not layers or any(_layer_kind(layer) != "DynamicLayer" for layer in layers):
        kinds = sorted({_layer_kind(layer) for layer in layers}) or ["none"]
        raise AutotuneError(
            f"{source}: only plain full-attention KV caches convert to OpenVINO here (found {', '.join(kinds)}); "
            "use the llamacpp backend for this architecture"
        )
    past = [tensor for layer in layers for tensor in (layer.keys, layer.values)]
    wrapper = _CacheWrapper.build(model)
    example = (
        torch.ones((1, 3), dtype=torch.long),                      # input_ids: 3 new tokens
        torch.ones((1, 5), dtype=torch.long),                      # attention_mask: 2 cached + 3 new
        torch.arange(2, 5, dtype=torch.long).unsqueeze(0),         # position_ids
        *past,
    )
    shapes = [ov.PartialShape([-1, -1])] * 3 + [ov.PartialShape([-1, t.shape[1], -1, t.shape[3]]) for t in past]
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings about shape-dependent Python branches
        ov_model = ov.convert_model(wrapper, example_input=example, input=shapes)
    del wrapper, model
    input_names = ["input_ids", "attention_mask", "position_ids"]
    output_names = ["logits"]
    for index in range(len(layers)):
        for kind in ("key", "value"):
            input_names.append(f"past_key_values.{index}.{kind}")
            output_names.append(f"present.{index}.{kind}")
    # strict: a traced model whose ports do not line up with the names would get every later port misnamed.
    for port, name in zip(ov_model.inputs, input_names, strict=True):
        port.get_tensor().set_names({name})
    for port, name in zip(ov_model.outputs, output_names, strict=True):
        port.get_tensor().set_names({name})
    make_stateful(ov_model)
    return ov_model


def _layer_kind(layer: Any) -> str:
    return type(layer).__name__


class _CacheWrapper:
    """Builds a torch module whose forward takes and returns the KV cache as flat tensors."""

    @staticmethod
    def build(model: Any) -> Any:
        import torch
        from transformers import DynamicCache

        cache_arg = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
        config = model.config

        class CacheWrapper(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.model = model

            def forward(self, input_ids: Any, attention_mask: Any, position_ids: Any, *past: Any) -> tuple[Any, ...]:
                cache = DynamicCache(config=config)
                for index, layer in enumerate(cache.layers):
                    # Filled directly: DynamicCache's own update would concatenate onto an empty
                    # constant, which the tracer records as a rank-1 tensor and breaks the graph.
                    layer.device, layer.dtype = past[2 * index].device, past[2 * index].dtype
                    layer.keys, layer.values = past[2 * index], past[2 * index + 1]
                    layer.is_initialized = True
                out = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                                 use_cache=True, **{cache_arg: cache})
                new_cache = getattr(out, "past_key_values", None) or getattr(out, "cache", None)
                present = [t for layer in new_cache.layers for t in (layer.keys, layer.values)]
                return (out.logits, *present)

        return CacheWrapper()


def make_stateful(model: Any) -> None:
    """Move the ``past_key_values.*`` inputs / ``present.*`` outputs into internal state, in place.

    Adds the ``beam_idx`` input (cache rows are gathered by it, as beam search and
    openvino-genai expect) and gives each state an initial value of shape
    ``[batch, kv_heads, 0, head_dim]`` so a fresh request starts with an empty cache.
    """
    import openvino as ov
    import openvino.opset13 as ops
    from openvino._offline_transformations import apply_make_stateful_transformation

    parameters = {p.output(0).get_any_name(): p for p in model.get_parameters()}
    beam_idx = ops.parameter([-1], ov.Type.i32, name="beam_idx")
    beam_idx.output(0).get_tensor().set_names({"beam_idx"})
    pairs = {}
    for name, parameter in parameters.items():
        if not name.startswith("past_key_values."):
            continue
        consumers = list(parameter.output(0).get_target_inputs())
        reordered = ops.gather(parameter, beam_idx, ops.constant(0))
        for consumer in consumers:
            consumer.replace_source_output(reordered.output(0))
        pairs[name] = "present." + name.removeprefix("past_key_values.")
    model.add_parameters([beam_idx])
    apply_make_stateful_transformation(model, pairs)
    batch = ops.gather(ops.shape_of(parameters["input_ids"], output_type="i64"), ops.constant([0]), ops.constant(0))
    for op in model.get_ops():
        if op.get_type_name() != "ReadValue":
            continue
        dims = [ops.constant([d.get_length() if d.is_static else 0], ov.Type.i64)
                for d in list(op.get_output_partial_shape(0))[1:]]
        initial = ops.broadcast(ops.constant(0.0, op.get_output_element_type(0)), ops.concat([batch, *dims], 0))
        op.set_arguments([initial.output(0)])
    model.validate_nodes_and_infer_types()


def _convert_tokenizer(source: Path, target: Path) -> str | None:
    """Write the tokenizer/detokenizer IRs LLMPipeline needs; return why not when it cannot."""
    import openvino as ov

    try:
        from openvino_tokenizers import convert_tokenizer
        from transformers import AutoTokenizer

        tokenizer, detokenizer = convert_tokenizer(AutoTokenizer.from_pretrained(source), with_detokenizer=True)
        ov.save_model(tokenizer, str(target / TOKENIZER_IR))
        ov.save_model(detokenizer, str(target / DETOKENIZER_IR))
    except Exception as error:  # noqa: BLE001 - the model IR is still usable without tokenizer IRs
        log.warning("tokenizer of %s not converted to OpenVINO (%r); LLMPipeline will need it", source, error)
        return repr(error)
    return None
