"""The merge stage: fold LoRA adapters into the base and save a plain Hugging Face model folder
(safetensors, tokenizer with its chat template, generation config), proven equal to what was
trained.

A quantized base (QLoRA's nf4, or 8-bit) is first dequantized: each bitsandbytes linear becomes a
float ``nn.Linear`` holding exactly the weights the adapter was trained against. Merging
into the original full-precision checkpoint instead would pair the adapter with weights it never
saw; re-quantizing after the merge (peft's default on 4-bit layers) would round the merged weights
again. Either way the merged model would not be the trained one; the logit check below would say so.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from distill.compiler.errors import DistillError, ExitCode

# Relative to the logits' scale max(1, max|logit|). fp32 on CPU: merging W + s·B·A only reorders
# float sums, measured max |diff| 3.6e-7 at scale 1.27 on the tiny test model.
MERGE_RTOL = 1e-4
# A bitsandbytes base: its CPU 4-bit kernel rounds the matmul to bf16 even with an fp32 compute
# dtype (outputs land on bf16 values; 2^-8 = 0.4% relative), which the merged fp32 model does not:
# measured 0.0028 on one layer, 0.0032 on logits at scale 1.13. 1% keeps a 3x margin and still fails
# a merge into the wrong base (the original fp32 weights differ from nf4's by ~11% of their range).
MERGE_RTOL_QUANTIZED = 1e-2


class MergeMismatch(DistillError):
    """The merged model does not compute what the adapter model computed."""

    exit_code = ExitCode.VERIFY_FAILED


@dataclass(frozen=True)
class MergeReport:
    max_abs_diff: float
    scale: float
    merged: bool


def adapter_on_dequantized_base(model: Any) -> Any:
    """The same adapter on the base dequantized to float (transformers' ``dequantize``: every
    bitsandbytes linear becomes an ``nn.Linear`` with the weights it computed with)."""
    import peft

    config = model.peft_config["default"]
    adapter = peft.get_peft_model_state_dict(model)
    base = model.unload()  # the LoRA layers removed, unmerged
    base.dequantize()
    fresh = peft.get_peft_model(base, config)
    peft.set_peft_model_state_dict(fresh, adapter)
    return fresh.eval()


def merge_adapter(model: Any, probe: dict[str, torch.Tensor]) -> tuple[Any, MergeReport]:
    """The merged plain model, checked on ``probe`` (input_ids, attention_mask) against the
    adapter model's logits (start/end logits for extractive QA)."""
    if not hasattr(model, "merge_and_unload"):
        return model.eval(), MergeReport(0.0, 1.0, merged=False)
    model.eval()
    before = _outputs(model, probe)
    quantized = bool(getattr(model.get_base_model(), "is_quantized", False))
    if quantized:
        model = adapter_on_dequantized_base(model)
    merged = model.merge_and_unload().eval()
    after = _outputs(merged, probe)
    diff = float((after - before).abs().max())
    scale = max(1.0, float(before.abs().max()))
    bound = (MERGE_RTOL_QUANTIZED if quantized else MERGE_RTOL) * scale
    if diff > bound:
        raise MergeMismatch(f"merged model's outputs differ from the adapter model's by {diff:.3g} "
                            f"(bound {bound:.3g})", hint="this is a bug; please report it")
    return merged, MergeReport(diff, scale, merged=True)


def _outputs(model: Any, probe: dict[str, torch.Tensor]) -> torch.Tensor:
    with torch.no_grad():
        out = model(**probe)
    if hasattr(out, "logits") and out.logits is not None:
        return out.logits.float()
    return torch.stack([out.start_logits, out.end_logits]).float()


def save_model(model: Any, tokenizer: Any, folder: Path, dtype: torch.dtype) -> None:
    """safetensors weights, tokenizer (with its chat template) and generation config, written
    into a temporary sibling and renamed into place."""
    from distill.compiler.fsutil import staged_folder

    with staged_folder(folder) as staging:
        model.to(dtype).save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
