"""Distributed data parallel helpers (torchrun).

Cox partial likelihood couples every patient of a risk set, so with DDP each rank's outputs are
gathered -- with gradients -- before the loss: the loss over the gathered set equals the loss over
the whole global batch. ``torch.distributed.nn.functional.all_gather`` sums the incoming gradients
of each rank's slice in backward; since every rank computes the same loss, each local output
receives ``world_size`` times its true gradient, and DDP's gradient averaging divides that by
``world_size`` again. The result is the exact full-batch gradient.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

__all__ = ["gather_cat", "init_distributed", "is_main", "rank", "world_size"]


def init_distributed(device: torch.device) -> bool:
    """Join the process group torchrun set up (no-op when not launched by torchrun)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
        if device.type == "cuda":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    return True


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_main() -> bool:
    return rank() == 0


def gather_cat(tensor: torch.Tensor, with_grad: bool = False) -> torch.Tensor:
    """Concatenate ``tensor`` from every rank along dim 0 (ranks may hold different lengths)."""
    if world_size() == 1:
        return tensor
    n = torch.tensor([tensor.shape[0]], device=tensor.device)
    sizes = [torch.zeros_like(n) for _ in range(world_size())]
    dist.all_gather(sizes, n)
    sizes = [int(s.item()) for s in sizes]
    pad = max(sizes) - tensor.shape[0]
    padded = torch.cat([tensor, tensor.new_zeros((pad, *tensor.shape[1:]))]) if pad else tensor
    if with_grad:
        import warnings

        from torch.distributed.nn.functional import all_gather

        with warnings.catch_warnings():  # deprecated in favour of a private API; still correct
            warnings.simplefilter("ignore", FutureWarning)
            parts = all_gather(padded)
    else:
        parts = [torch.zeros_like(padded) for _ in range(world_size())]
        dist.all_gather(parts, padded)
    return torch.cat([p[:s] for p, s in zip(parts, sizes)])
