"""FSDP for ``hardware.strategy: fsdp``: torch's FullyShardedDataParallel with the settings
accelerate's plugin uses for ``--use_fsdp --fsdp_sharding_strategy FULL_SHARD
--fsdp_auto_wrap_policy TRANSFORMER_BASED_WRAP --fsdp_use_orig_params true``, applied here
directly because accelerate's plugin needs CUDA (with ``cpu=True`` it silently falls back to DDP;
measured; launched with ``--use_fsdp`` on a CPU it refuses to start), so ``distill launch-cmd``
passes no FSDP flag. The planner models exactly this wrapping
(``compiler/distributed.py``) and ``runtime/train/memtrace.py`` measures it.
"""

from __future__ import annotations

import functools
from typing import Any, cast

import torch


def fsdp_wrap(model: torch.nn.Module, device: torch.device) -> Any:
    """One unit per class in ``_no_split_modules`` (the decoder layer), the root unit holding the
    rest; no backward or forward prefetch (accelerate's default), ``limit_all_gathers``, no CPU
    offload, no mixed precision. ``sync_module_states`` is off, as torch refuses it for CPU modules
    ("The module has CPU parameters or buffers when `sync_module_states=True`"): every rank builds
    the same seeded weights instead. ``device``: this rank's, from the plan's placement."""
    from torch.distributed.fsdp import FullyShardedDataParallel, ShardingStrategy
    from torch.distributed.fsdp.wrap import transformer_auto_wrap_policy

    unwrap = getattr(model, "get_base_model", None)  # a peft model's
    base = unwrap() if unwrap is not None else model
    names = set(getattr(base, "_no_split_modules", None) or ())
    layers = {type(m) for m in model.modules() if type(m).__name__ in names}
    policy = functools.partial(transformer_auto_wrap_policy, transformer_layer_cls=layers)
    return FullyShardedDataParallel(
        model, sharding_strategy=ShardingStrategy.FULL_SHARD, auto_wrap_policy=policy,
        use_orig_params=True, limit_all_gathers=True, sync_module_states=False,
        backward_prefetch=None, forward_prefetch=False, device_id=device)


def full_state(wrapped: Any, device: torch.device) -> dict[str, torch.Tensor]:
    """Every parameter of the FSDP-wrapped model whole, by its unwrapped name, on the main process
    (the others get an empty dict). Offloading to CPU is asked for on GPUs only: on CPU tensors it
    crashed torch 2.13's state-dict hook (SIGSEGV in ``param_hook``; measured)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    options = StateDictOptions(full_state_dict=True, cpu_offload=device.type == "cuda")
    # A full state dict holds plain tensors (no DTensor or ShardedTensor shards).
    state = cast(dict[str, torch.Tensor], get_model_state_dict(wrapped, options=options))
    return state if torch.distributed.get_rank() == 0 else {}
