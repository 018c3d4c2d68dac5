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

from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from distill.compiler.errors import DistillError, ExitCode
from distill.runtime.placement import Placement

# Bounds on max |difference| relative to the logits' scale max(1, max|logit|), one per comparison.
# Each compares like with like; what differs is named and was measured.
# Merging W + s·B·A in float32 only reorders float sums: measured 3.6e-7 at scale 1.27 on the tiny
# test model.
MERGE_RTOL = 1e-4
# A bitsandbytes base against its dequantized float copy, both under the plan's autocast: on CPU
# the 4-bit kernel rounds its matmul output to bf16 even with an fp32 compute dtype (outputs land on
# bf16 values; 2^-8 = 0.4% relative), which the float copy does not: measured 0.0028 on one layer,
# 0.0032 on logits at scale 1.13. 1% keeps a 3x margin and still fails a merge into the wrong base
# (the original fp32 weights differ from nf4's by ~11% of their range).
MERGE_RTOL_QUANTIZED = 1e-2
# 16-bit weights merge in their own dtype (an fp32 copy would double the model's memory on the
# device): round(W + s·B·A) to bf16 replaces W·x + s·B·A·x, a rounding of up to 2^-9 of each
# weight, under the same autocast on both sides.
MERGE_RTOL_HALF = 2e-2


class MergeMismatch(DistillError):
    """The merged model does not compute what the adapter model computed."""

    exit_code = ExitCode.VERIFY_FAILED


@dataclass(frozen=True)
class MergeReport:
    """The merge's checks: ``max_abs_diff`` of the merged model against what it replaces and,
    for a quantized base, ``base_diff`` of the dequantized copy against the trained model (both
    absolute; ``scale`` is the logits' max(1, max|logit|))."""

    max_abs_diff: float
    scale: float
    merged: bool
    base_diff: float | None = None

    @classmethod
    def unmerged(cls) -> MergeReport:
        return cls(0.0, 1.0, merged=False)


def adapter_on_dequantized_base(model: Any) -> Any:
    """The same adapter on the base dequantized to float (transformers' ``dequantize``: every
    bitsandbytes linear becomes an ``nn.Linear`` holding the weights it computed with, in the
    model's dtype)."""
    import peft

    config = model.peft_config["default"]
    adapter = peft.get_peft_model_state_dict(model)
    base = model.unload()  # the LoRA layers removed, unmerged
    base.dequantize()
    fresh = peft.get_peft_model(base, config)
    peft.set_peft_model_state_dict(fresh, adapter)
    return fresh.eval()


def merge_adapter(model: Any, probe: dict[str, torch.Tensor], placement: Placement) -> tuple[Any, MergeReport]:
    """The merged plain model, checked on ``probe`` (input_ids, attention_mask) against the
    adapter model's logits (start/end logits for extractive QA), on the plan's device.

    Both sides of each check run under the plan's autocast, on the same device. A quantized base
    is first dequantized (in its compute dtype: a float32 copy of a 4-bit model would not fit
    where it trained), and that copy is checked against the trained model; the merge is then
    checked against the copy. Weights merge in their own dtype.
    """
    if not hasattr(model, "merge_and_unload"):
        return model.eval(), MergeReport.unmerged()
    model.eval()
    trained = _outputs(model, probe, placement)
    scale = max(1.0, float(trained.abs().max()))
    base_diff = None
    if getattr(model.get_base_model(), "is_quantized", False):
        model = adapter_on_dequantized_base(model)
        dequantized = _outputs(model, probe, placement)
        base_diff = _checked("the dequantized base", dequantized, trained, MERGE_RTOL_QUANTIZED * scale)
        trained = dequantized  # the merge replaces this model: compare with it
    exact = placement.precision == "fp32" and all(p.dtype == torch.float32 for p in model.parameters())
    merged = model.merge_and_unload().eval()
    diff = _checked("the merged model", _outputs(merged, probe, placement), trained,
                    (MERGE_RTOL if exact else MERGE_RTOL_HALF) * scale)
    return merged, MergeReport(diff, scale, merged=True, base_diff=base_diff)


def _checked(what: str, outputs: torch.Tensor, reference: torch.Tensor, bound: float) -> float:
    diff = float((outputs - reference).abs().max())
    if not diff <= bound:  # NaN fails too
        raise MergeMismatch(f"{what}'s outputs differ from the adapter model's by {diff:.3g} (bound {bound:.3g})",
                            hint="this is a bug; please report it")
    return diff


def _outputs(model: Any, probe: dict[str, torch.Tensor], placement: Placement | None) -> torch.Tensor:
    """The model's logits on ``probe`` in float32, computed under ``placement``'s autocast (none
    for ``None``)."""
    with torch.no_grad(), placement.autocast() if placement is not None else nullcontext():
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
