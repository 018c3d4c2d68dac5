"""A student cut from its teacher: the teacher's architecture with only some decoder layers kept,
initialised from the teacher's own weights (DistilBERT's initialisation, Minitron's depth pruning).

Declared here once, without torch: which architectures can be cut, which layers a
``student.from_teacher`` keeps, and the student's config.json. The compiler resolves the student
from these (``compiler/resolve.py``); the runtime writes its weights with the same ``LAYER_PREFIX``
(``runtime/models.py``).
"""

from __future__ import annotations

from typing import Any

from distill.compiler.spec import EveryLayer

# Decoders whose layer i is stored as ``model.layers.<i>.`` and counted by num_hidden_layers, so a
# cut is a renaming of tensors and a smaller count.
CUTTABLE = ("llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text", "phi3")
LAYER_PREFIX = "model.layers."
# Top-level lists that are no per-layer setting even when as long as the layer count.
_NOT_PER_LAYER = frozenset({"architectures", "bos_token_id", "eos_token_id", "pad_token_id"})
# Qwen2Config's and Qwen3Config's default sliding_window (transformers 4.57), used when
# use_sliding_window is on and config.json names no window.
_QWEN_WINDOW = 4096


def refusal(config: dict[str, Any]) -> str | None:
    """Why a teacher with this config.json cannot be cut, or ``None``."""
    family = config.get("model_type")
    if family not in CUTTABLE:
        return (f"its model_type {family!r} is not one whose decoder layers distill can cut "
                f"({', '.join(CUTTABLE)})")
    count = config.get("num_hidden_layers")
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        return f"its config.json gives no layer count (num_hidden_layers is {count!r})"
    return None


def kept_layers(layers: tuple[int, ...] | EveryLayer, count: int) -> tuple[int, ...]:
    """The teacher layers a ``from_teacher.layers`` keeps, of ``count``: a list as written, or every
    n-th from 0 and always the last, whose output the teacher's final norm and head were trained on
    (``every: 2`` of 6 layers keeps 0, 2, 4, 5)."""
    if not isinstance(layers, EveryLayer):
        return tuple(layers)
    kept = tuple(range(0, count, layers.every))
    return kept if kept[-1] == count - 1 else (*kept, count - 1)


def cut_config(config: dict[str, Any], kept: tuple[int, ...]) -> dict[str, Any]:
    """The student's config.json: the teacher's, with ``num_hidden_layers`` the number kept and every
    per-layer list (one entry per teacher layer, like ``layer_types``) cut to the kept layers. A
    family whose attention kind depends on the layer's index (gemma2, gemma3, qwen with a sliding
    window) gets the kinds the teacher's layers had written out, so a kept layer keeps its kind at
    its new index."""
    count = config["num_hidden_layers"]
    cut = {key: [value[i] for i in kept] if _per_layer(key, value, count) else value
           for key, value in config.items()}
    implied = _implied_layer_types(config)
    if "layer_types" not in config and implied is not None:
        cut["layer_types"] = [implied[i] for i in kept]
    cut["num_hidden_layers"] = len(kept)
    return cut


def _per_layer(key: str, value: Any, count: int) -> bool:
    return isinstance(value, list) and len(value) == count and key not in _NOT_PER_LAYER


def _implied_layer_types(config: dict[str, Any]) -> list[str] | None:
    """The attention kind of each teacher layer as transformers' config classes derive it when
    config.json lists none (as ``compiler/arch.py`` reads them); ``None`` where it does not
    depend on the layer's index."""
    family, count = config["model_type"], config["num_hidden_layers"]
    period = {"gemma2": 2, "gemma3_text": config.get("sliding_window_pattern", 6)}.get(family)
    if period is not None:  # every period-th layer attends globally, the rest in a window
        return ["full_attention" if (i + 1) % period == 0 else "sliding_attention" for i in range(count)]
    windowed = config.get("use_sliding_window") and config.get("sliding_window", _QWEN_WINDOW) is not None
    if family in ("qwen2", "qwen3") and windowed:  # layers from max_window_layers on are windowed
        first = config.get("max_window_layers", 28)
        return ["sliding_attention" if i >= first else "full_attention" for i in range(count)]
    return None


def describe(teacher_ref: str, kept: tuple[int, ...]) -> str:
    """What the student is, as messages, the plan and the lock name it: ``teacher.gguf, layers 0,2``."""
    return f"{teacher_ref}, layers {','.join(map(str, kept))}"
