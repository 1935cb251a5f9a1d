"""The ranks of a DDP run on the CPU: two forked processes that form a gloo process group."""
import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def on_two_gloo_ranks(work, tmp_path) -> dict:
    """{rank: work(rank)} for ranks 0 and 1, each computed in its own process inside a two-rank
    gloo group (one torch thread each). Forked: the workers inherit the imported modules (spawn
    would import torch and nnU-Net again), and ``work`` may be any function."""
    results = mp.Manager().dict()
    mp.start_processes(_rank, args=(work, str(tmp_path / "init"), results), nprocs=2, join=True, start_method="fork")
    return dict(results)


def _rank(rank, work, init_file, results):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        results[rank] = work(rank)
    finally:
        dist.destroy_process_group()
