"""The merge stage: fold LoRA adapters into the base and save a plain Hugging Face model folder
(safetensors, tokenizer with its chat template, generation config), proven equal to what was
trained.

A quantized base (QLoRA's nf4, or 8-bit) is first dequantized: each bitsandbytes linear becomes a
float ``nn.Linear`` holding exactly the weights the adapter was trained against. Merging
into the original full-precision checkpoint instead would pair the adapter with weights it never
saw; re-quantizing after the merge (peft's default on 4-bit layers) would round the merged weights
again. Either way the merged model would not be the trained one; the checks below would say so.

Each check compares like with like. Whole-model logits are compared in float32 only: measured on
an H200 with random weights from real configs, the same weights run two ways in bf16 (bitsandbytes'
kernel against its dequantized copy; merged against unmerged) differed by 6-30% of the largest
logit (QLoRA Phi-3-mini 0.344 at scale 5.6, LoRA Llama-3.2-1B 2.0 at 6.8): deep random networks
amplify bf16 rounding (here, a 0.1% weight perturbation moved Qwen2.5-0.5B's logits by 1.4%), so
no bound on bf16 logits separates rounding from a wrong merge. Hence: the dequantization is checked
layer by layer (the same input through the kernel and through the dequantized weight, nothing to
amplify it), and the merge in float32 (bf16 weights convert to float32 exactly).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from distill.compiler.errors import DistillError, ExitCode
from distill.runtime.placement import Placement

# Merging W + s·B·A in float32 only reorders float sums: measured 3.6e-7 at logit scale 1.27 on the
# tiny test model. Relative to the logits' scale max(1, max|logit|).
MERGE_RTOL = 1e-4
# One quantized linear against its dequantized weight, max |y - x·Ŵᵀ| relative to max(|x|·|Ŵ|ᵀ),
# the same seeded input through the layer's kernel and through Ŵ in float32. 4-bit: the kernel
# multiplies the same bf16 weights in its compute dtype; measured 0.0023 on CPU (bf16 compute)
# and 0.00037 on an H200 (QLoRA Phi-3-mini, every layer; benchmarks/gpu_build.py); a wrongly read
# weight gave 0.5. 8-bit: LLM.int8 also rounds every activation to int8 (row
# absmax / 127: up to 1/254 of the row's largest input, ~1.7% of |x|·|Ŵ|ᵀ for Gaussian rows at
# worst); measured 0.0015 on CPU. Both bounds keep a margin of 3x or more over what was measured.
LAYER_RTOL = {"4bit": 2**-7, "8bit": 2**-5}


class MergeMismatch(DistillError):
    """The merged model does not compute what the adapter model computed."""

    exit_code = ExitCode.VERIFY_FAILED


@dataclass(frozen=True)
class MergeReport:
    """The merge's checks: ``max_abs_diff`` of the merged model's logits against the adapter
    model's (float32; ``scale`` is their max(1, max|logit|)) and, for a quantized base,
    ``base_diff``: the largest relative error of a quantized layer against its dequantized weight."""

    max_abs_diff: float
    scale: float
    merged: bool
    base_diff: float | None = None

    @classmethod
    def unmerged(cls) -> MergeReport:
        return cls(0.0, 1.0, merged=False)


def adapter_on_dequantized_base(model: Any) -> Any:
    """The same adapter on the base dequantized to float (transformers' ``dequantize``: every
    bitsandbytes linear becomes an ``nn.Linear`` holding the weights it computed with)."""
    import peft

    config = model.peft_config["default"]
    adapter = peft.get_peft_model_state_dict(model)
    base = model.unload()  # the LoRA layers removed, unmerged
    base.dequantize()
    fresh = peft.get_peft_model(base, config)
    peft.set_peft_model_state_dict(fresh, adapter)
    return fresh.eval()


def merge_adapter(model: Any, probe: dict[str, torch.Tensor], placement: Placement) -> tuple[Any, MergeReport]:
    """The merged plain model in float32 on ``placement``'s device, the plan's merge device (the
    caller saves it in the planned dtype), checked on ``probe`` (input_ids, attention_mask) against
    the adapter model's logits (start/end logits for extractive QA); a quantized base is checked
    layer by layer against its dequantized weights first."""
    if not hasattr(model, "merge_and_unload"):
        return model.eval(), MergeReport.unmerged()
    # The plan merges in the host's memory when the float32 model does not fit the GPU.
    model = model.to(placement.torch_device).eval()
    base_diff = None
    quant = _quantization(model.get_base_model())
    if quant is not None:
        base_diff = _checked_layers(model.get_base_model(), quant, placement)
        model = adapter_on_dequantized_base(model)
    model = model.float()  # exact: the merge and its check run in float32
    reference = _outputs(model, probe)
    scale = max(1.0, float(reference.abs().max()))
    merged = model.merge_and_unload().eval()
    diff = float((_outputs(merged, probe) - reference).abs().max())
    if not diff <= MERGE_RTOL * scale:  # NaN fails too
        raise MergeMismatch(f"the merged model's outputs differ from the adapter model's by {diff:.3g} "
                            f"(bound {MERGE_RTOL * scale:.3g})", hint="this is a bug; please report it")
    return merged, MergeReport(diff, scale, merged=True, base_diff=base_diff)


def _quantization(base: Any) -> str | None:
    """"4bit" or "8bit" for a bitsandbytes base (the flags transformers sets when it quantizes)."""
    if getattr(base, "is_loaded_in_4bit", False):
        return "4bit"
    return "8bit" if getattr(base, "is_loaded_in_8bit", False) else None


def _checked_layers(base: Any, quant: str, placement: Placement) -> float:
    """The largest relative error of a quantized linear against its dequantized weight (see
    ``LAYER_RTOL``); raises ``MergeMismatch`` naming the layer past the bound."""
    import bitsandbytes as bnb
    import torch.nn.functional as F
    from transformers.integrations.bitsandbytes import dequantize_bnb_weight

    worst = 0.0
    for name, layer in base.named_modules():
        if not isinstance(layer, (bnb.nn.Linear4bit, bnb.nn.Linear8bitLt)):
            continue
        device = layer.weight.device
        generator = torch.Generator(device).manual_seed(0)
        x = torch.randn(8, layer.in_features, generator=generator, device=device).to(placement.torch_dtype)
        weight = dequantize_bnb_weight(layer.weight, x.dtype,  # type: ignore[arg-type]  # torch: Linear.weight a Tensor
                                       getattr(layer, "state", None))
        # The training kernel: make_trainable turned bitsandbytes' CPU eval-mode repacking off.
        with torch.no_grad():
            kernel = layer(x).float()
        exact = F.linear(x.float(), weight.float(), None if layer.bias is None else layer.bias.float())
        scale = float((x.abs().float() @ weight.abs().float().T).max())
        error = float((kernel - exact).abs().max()) / max(scale, torch.finfo(torch.float32).tiny)
        if not error <= LAYER_RTOL[quant]:
            raise MergeMismatch(f"{name}: the {quant} layer computes {error:.3g} away from its dequantized weight "
                                f"(relative to max |x|·|W|; bound {LAYER_RTOL[quant]:.3g})",
                                hint="this is a bug; please report it")
        worst = max(worst, error)
    return worst


def _outputs(model: Any, probe: dict[str, torch.Tensor]) -> torch.Tensor:
    """The model's logits on ``probe`` in float32 (start and end logits for extractive QA)."""
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
