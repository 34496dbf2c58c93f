"""What the method needs from torch.distributed, and nothing when it is not in use: under
DistributedDataParallel every rank must see every rank's batch for the shared state (memory
bank, class thresholds), so those updates gather first."""

from __future__ import annotations

import torch
import torch.distributed as dist


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def gather_all(tensor: torch.Tensor) -> torch.Tensor:
    """The concatenation of `tensor` from every rank (same shape on each); itself when alone."""
    if not active():
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts)


def any_rank(flag: bool, device: torch.device) -> bool:
    """True if `flag` is true on any rank: a stop request must stop every rank at the same step."""
    if not active():
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())
