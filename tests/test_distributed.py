"""Cross-rank correctness on a real 2-process gloo group.

Every loss that crosses ranks must give, under DDP's gradient averaging, the single-process gradient of the loss on
the concatenated global batch. Concretely (see ``equireg.distributed``): the mean over ranks of the per-rank loss
values equals the single-process loss, and the gradient reaching a rank's inputs equals ``world_size`` times the
single-process gradient of those rows. The ranks hold different batch sizes (3 and 5 rows) on purpose.

One launch runs every check; the tests then compare its saved results. Workers are forked where the platform can
(0.2 s here, against 13 s for spawn, which re-imports torch in each child on the shared 2-core machine); each child
sets one intra-op thread before touching a tensor, and a deadline turns a hung worker into a failure.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from equireg import distributed as ed
from equireg.backbones import SplitOutput
from equireg.equivariance import EquivBatch, SERLoss
from equireg.groups import create_group
from equireg.objectives import BarlowTwinsLoss, DINOLoss, MoCoV3Loss, NTXentLoss

pytestmark = pytest.mark.distributed

SIZES = (3, 5)  # rows held by rank 0 and rank 1
WORLD = len(SIZES)
TOL = 1e-5


def _global_inputs() -> dict[str, torch.Tensor]:
    """The global batch, generated identically in every process."""
    g = torch.Generator().manual_seed(1234)
    n = sum(SIZES)

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g, dtype=torch.float64)

    return {
        "gather_x": randn(n, 3), "gather_w": randn(WORLD, n, 3),
        "mean_x": randn(WORLD, 4), "mean_w": randn(WORLD, 4),
        "moco_q1": randn(n, 6), "moco_q2": randn(n, 6), "moco_k1": randn(n, 6), "moco_k2": randn(n, 6),
        "simclr_z1": randn(n, 6), "simclr_z2": randn(n, 6),
        "barlow_z1": randn(n, 5), "barlow_z2": randn(n, 5),
        "dino_s1": randn(n, 7), "dino_s2": randn(n, 7), "dino_t1": randn(n, 7), "dino_t2": randn(n, 7),
        "dino_c0": randn(1, 7),
        "ser_a": randn(n, 3, 2, 2), "ser_b": randn(n, 3, 2, 2),
        "ser_g": torch.randint(0, 8, (n,), generator=g),
    }


def _rows(r: int) -> slice:
    return slice(sum(SIZES[:r]), sum(SIZES[: r + 1]))


def _losses_on(rows: slice) -> dict[str, torch.Tensor]:
    """Every gathering loss on ``rows`` of the global batch: loss values and gradients w.r.t. the inputs."""
    x = _global_inputs()
    out: dict[str, torch.Tensor] = {}

    def leaves(*keys: str) -> list[torch.Tensor]:
        return [x[k][rows].clone().requires_grad_() for k in keys]

    def record(name: str, loss: torch.Tensor, inputs: list[torch.Tensor], keys: tuple[str, ...]) -> None:
        out[f"{name}_loss"] = loss.detach()
        for k, grad in zip(keys, torch.autograd.grad(loss, inputs)):
            out[f"{k}_grad"] = grad

    keys = ("moco_q1", "moco_q2", "moco_k1", "moco_k2")  # keys with gradient too: the gather must carry it
    inputs = leaves(*keys)
    record("moco", MoCoV3Loss(temperature=0.2)(*inputs), inputs, keys)

    keys = ("simclr_z1", "simclr_z2")
    inputs = leaves(*keys)
    record("simclr", NTXentLoss(temperature=0.2)(*inputs), inputs, keys)

    keys = ("barlow_z1", "barlow_z2")
    inputs = leaves(*keys)
    record("barlow", BarlowTwinsLoss()(*inputs), inputs, keys)

    dino = DINOLoss(7, teacher_temp=0.07, warmup_teacher_temp=0.04, warmup_frac=0.5).double()
    dino.center.copy_(x["dino_c0"])
    keys = ("dino_s1", "dino_s2")
    inputs = leaves(*keys)
    record("dino", dino(inputs, [x["dino_t1"][rows], x["dino_t2"][rows]], 0.2), inputs, keys)
    out["dino_center"] = dino.center.clone()

    torch.manual_seed(0)  # the same projector weights in every process
    ser = SERLoss(3, proj_dim=5, temperature=0.4).double()
    p4m = create_group("p4m")
    keys = ("ser_a", "ser_b")
    a, b = inputs = leaves(*keys)
    pair = (SplitOutput(None, a, None), SplitOutput(None, b, None))  # type: ignore[arg-type]
    batch = EquivBatch(group=p4m, g=p4m.wrap(x["ser_g"][rows]), online=pair, target=pair)
    record("ser", ser(batch), inputs, keys)
    return out


def _worker(rank: int, port: int, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD)
    try:
        assert ed.is_distributed() and ed.world_size() == WORLD and ed.rank() == rank
        x = _global_inputs()
        res = _losses_on(_rows(rank))

        local = x["gather_x"][_rows(rank)].clone().requires_grad_()
        gathered, sizes = ed.gather_with_sizes(local)
        (gathered * x["gather_w"][rank]).sum().backward()
        res.update(gather_out=gathered.detach(), gather_grad=local.grad, gather_sizes=torch.tensor(sizes))

        local = x["mean_x"][rank].clone().requires_grad_()
        mean = ed.all_reduce_mean(local)
        (mean * x["mean_w"][rank]).sum().backward()
        res.update(mean_out=mean.detach(), mean_grad=local.grad)

        q, k = x["moco_q1"][_rows(rank)], x["moco_k2"][_rows(rank)]
        res["moco_local_only"] = MoCoV3Loss(gather_distributed=False).contrastive(q, k)
        torch.save(res, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def per_rank(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, torch.Tensor]]:
    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")
    out_dir: Path = tmp_path_factory.mktemp("dist")
    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    ctx = mp.start_processes(_worker, args=(_free_port(), str(out_dir)), nprocs=WORLD, join=False,
                             start_method=method)
    deadline = time.monotonic() + 120
    while not ctx.join(timeout=1):  # re-raises a worker's exception
        if time.monotonic() > deadline:
            for proc in ctx.processes:
                proc.kill()
            pytest.fail("distributed workers did not finish within 120 s")
    return [torch.load(out_dir / f"rank{r}.pt") for r in range(WORLD)]


@pytest.fixture(scope="module")
def single() -> dict[str, torch.Tensor]:
    assert not ed.is_distributed()
    return _losses_on(slice(None))


def test_helpers_without_process_group() -> None:
    t = torch.randn(4, 2, requires_grad=True)
    assert (ed.world_size(), ed.rank(), ed.is_distributed()) == (1, 0, False)
    assert ed.gather(t) is t and ed.all_reduce_sum(t) is t and ed.all_reduce_mean(t) is t
    assert ed.gather_sizes(4) == [4]
    with pytest.raises(ValueError, match="0-d"):
        ed.gather(torch.tensor(1.0))


def test_gather_concatenates_and_carries_gradient(per_rank: list[dict[str, torch.Tensor]]) -> None:
    x = _global_inputs()
    for r, res in enumerate(per_rank):
        assert res["gather_sizes"].tolist() == list(SIZES)
        torch.testing.assert_close(res["gather_out"], x["gather_x"], atol=0, rtol=0)
        # L_s = <gather(x), w_s> on every rank s, so dL/dx_r sums w_s over ranks on rank r's rows
        expected = x["gather_w"].sum(0)[_rows(r)]
        torch.testing.assert_close(res["gather_grad"], expected, atol=TOL, rtol=0)


def test_all_reduce_mean_carries_gradient(per_rank: list[dict[str, torch.Tensor]]) -> None:
    x = _global_inputs()
    for res in per_rank:
        torch.testing.assert_close(res["mean_out"], x["mean_x"].mean(0), atol=TOL, rtol=0)
        torch.testing.assert_close(res["mean_grad"], x["mean_w"].sum(0) / WORLD, atol=TOL, rtol=0)


@pytest.mark.parametrize(
    "name,inputs",
    [
        ("moco", ("moco_q1", "moco_q2", "moco_k1", "moco_k2")),
        ("simclr", ("simclr_z1", "simclr_z2")),
        ("barlow", ("barlow_z1", "barlow_z2")),
        ("dino", ("dino_s1", "dino_s2")),
        ("ser", ("ser_a", "ser_b")),
    ],
)
def test_loss_matches_single_process(per_rank: list[dict[str, torch.Tensor]], single: dict[str, torch.Tensor],
                                     name: str, inputs: tuple[str, ...]) -> None:
    rank_mean = torch.stack([res[f"{name}_loss"] for res in per_rank]).mean()
    torch.testing.assert_close(rank_mean, single[f"{name}_loss"], atol=TOL, rtol=0)
    for r, res in enumerate(per_rank):
        for key in inputs:
            diff = (res[f"{key}_grad"] / WORLD - single[f"{key}_grad"][_rows(r)]).abs().max().item()
            assert diff <= TOL, f"{name}: gradient of {key} on rank {r} differs by {diff}"


def test_barlow_loss_is_global_on_every_rank(per_rank: list[dict[str, torch.Tensor]],
                                             single: dict[str, torch.Tensor]) -> None:
    for res in per_rank:
        torch.testing.assert_close(res["barlow_loss"], single["barlow_loss"], atol=TOL, rtol=0)


def test_dino_centre_uses_the_global_batch(per_rank: list[dict[str, torch.Tensor]],
                                          single: dict[str, torch.Tensor]) -> None:
    for res in per_rank:
        torch.testing.assert_close(res["dino_center"], single["dino_center"], atol=TOL, rtol=0)


def test_gather_distributed_false_stays_local(per_rank: list[dict[str, torch.Tensor]]) -> None:
    x = _global_inputs()
    for r, res in enumerate(per_rank):
        q, k = x["moco_q1"][_rows(r)], x["moco_k2"][_rows(r)]
        torch.testing.assert_close(res["moco_local_only"], MoCoV3Loss().contrastive(q, k), atol=TOL, rtol=0)
