"""Where this process stands in a multi-process run (torchrun / accelerate launch): its rank, the
process count, and a barrier. Alone, it is rank 0 of 1 and the barrier does nothing."""

from __future__ import annotations


def ranks() -> tuple[int, int]:
    """This process's rank and the number of processes."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def barrier() -> None:
    """Wait for every process of the run."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()
