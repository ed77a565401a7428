"""DDP with 2 CPU processes (gloo): the Cox loss over gathered risk sets gives the full-batch gradient."""

from __future__ import annotations

import pytest
import torch
import torch.multiprocessing as mp


def _worker(rank: int, world: int, x, time, event, out_dir: str) -> None:
    import torch.distributed as dist

    from multimodal.survival.losses import cox_nll
    from multimodal.training.distributed import gather_cat

    # rendezvous through a file: no TCP port to race for with other processes on a busy machine
    dist.init_process_group(
        "gloo", init_method=f"file://{out_dir}/rendezvous", rank=rank, world_size=world
    )
    torch.manual_seed(0)
    model = torch.nn.Linear(x.shape[1], 1, bias=False)
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    # uneven shards on purpose: rank 0 gets 7 rows, rank 1 the rest
    sl = slice(0, 7) if rank == 0 else slice(7, None)
    risk = ddp(x[sl]).squeeze(-1)
    loss = cox_nll(gather_cat(risk, with_grad=True), gather_cat(time[sl]), gather_cat(event[sl]))
    loss.backward()
    torch.save(
        {"loss": loss.detach(), "grad": model.weight.grad.clone()}, f"{out_dir}/rank{rank}.pt"
    )
    dist.destroy_process_group()


def test_ddp_gathered_cox_loss_equals_full_batch(tmp_path):
    from multimodal.survival.losses import cox_nll

    g = torch.Generator().manual_seed(1)
    x = torch.randn(19, 4, generator=g)
    time = torch.randint(1, 8, (19,), generator=g).float()  # ties across ranks
    event = torch.rand(19, generator=g) < 0.6
    # a gloo worker is now and then aborted with SIGABRT on a busy 2-core machine (2 of about 20
    # runs here; the cause was not found): up to three attempts, each with a fresh rendezvous; a
    # wrong result still fails below
    for attempt in range(3):
        out = tmp_path / f"attempt{attempt}"
        out.mkdir()
        try:
            mp.start_processes(
                _worker, args=(2, x, time, event, str(out)), nprocs=2, start_method="spawn"
            )
            break
        except mp.ProcessExitedException:
            if attempt == 2:
                raise
    torch.manual_seed(0)
    ref = torch.nn.Linear(4, 1, bias=False)
    full = cox_nll(ref(x).squeeze(-1), time, event)
    full.backward()
    for r in range(2):
        res = torch.load(out / f"rank{r}.pt")
        assert torch.allclose(res["loss"], full.detach(), atol=1e-6)
        assert torch.allclose(res["grad"], ref.weight.grad, atol=1e-6)


@pytest.mark.parametrize("splits", [[5, 5, 9], [1, 18], [19]])
def test_accumulated_risk_set_equals_unbatched(splits):
    """Micro-batches concatenated into one risk set (gradient accumulation) give the same loss."""
    from multimodal.survival.losses import cox_nll

    g = torch.Generator().manual_seed(2)
    x = torch.randn(19, 3, generator=g)
    time = torch.randint(1, 6, (19,), generator=g).float()
    event = torch.rand(19, generator=g) < 0.5
    w = torch.randn(3, requires_grad=True)
    parts = torch.split(x, splits)
    loss = cox_nll(torch.cat([p @ w for p in parts]), time, event)
    (grad,) = torch.autograd.grad(loss, w)
    w2 = w.detach().clone().requires_grad_(True)
    ref = cox_nll(x @ w2, time, event)
    (ref_grad,) = torch.autograd.grad(ref, w2)
    assert torch.allclose(loss, ref, atol=1e-7)
    assert torch.allclose(grad, ref_grad, atol=1e-6)
