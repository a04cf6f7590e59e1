"""Each loss against an independent reference written from the paper's equation (values and gradients)."""

from __future__ import annotations

import math

import pytest
import torch

from equireg.objectives import BarlowTwinsLoss, DINOLoss, MoCoV3Loss, NTXentLoss

ATOL = 1e-5


def _leaves(*shape_lists: tuple[int, ...], dtype: torch.dtype = torch.float32) -> list[torch.Tensor]:
    return [torch.randn(*s, dtype=dtype).requires_grad_() for s in shape_lists]


def _grads(loss: torch.Tensor, inputs: list[torch.Tensor]) -> tuple[torch.Tensor, ...]:
    return torch.autograd.grad(loss, inputs)


def _cos(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a * b).sum() / (a.norm() * b.norm())


# ---------------------------------------------------------------------------------------------------- MoCo-v3
def _moco_ctr_reference(q: torch.Tensor, k: torch.Tensor, tau: float) -> torch.Tensor:
    """ctr(q, k) = 2τ · (1/N) Σ_i -log( exp(cos(q_i, k_i)/τ) / Σ_j exp(cos(q_i, k_j)/τ) )."""
    n = q.shape[0]
    total = q.new_zeros(())
    for i in range(n):
        sims = torch.stack([_cos(q[i], k[j]) / tau for j in range(n)])
        total = total - (sims[i] - torch.logsumexp(sims, dim=0))
    return 2 * tau * total / n


@pytest.mark.parametrize("tau", [0.2, 1.0])
def test_moco_matches_reference(tau: float) -> None:
    q1, q2, k1, k2 = _leaves((6, 5), (6, 5), (6, 5), (6, 5))
    ours = MoCoV3Loss(temperature=tau)(q1, q2, k1, k2)
    ref = _moco_ctr_reference(q1, k2, tau) + _moco_ctr_reference(q2, k1, tau)
    torch.testing.assert_close(ours, ref, atol=ATOL, rtol=0)
    for g_ours, g_ref in zip(_grads(ours, [q1, q2, k1, k2]), _grads(ref, [q1, q2, k1, k2])):
        torch.testing.assert_close(g_ours, g_ref, atol=ATOL, rtol=0)


def test_moco_perfect_keys_give_low_loss() -> None:
    q = torch.eye(4) * 10
    low = MoCoV3Loss(temperature=0.05)(q, q, q, q)
    high = MoCoV3Loss(temperature=0.05)(q, q, q.roll(1, 0), q.roll(1, 0))
    assert low.item() < 1e-6 < high.item()


# ---------------------------------------------------------------------------------------------------- NT-Xent
def _ntxent_reference(z1: torch.Tensor, z2: torch.Tensor, tau: float) -> torch.Tensor:
    """SimCLR eq. (1): mean over the 2N anchors k of -log(exp(s_k,k+/τ) / Σ_{j≠k} exp(s_kj/τ))."""
    z = torch.cat([z1, z2])
    n2 = z.shape[0]
    n = n2 // 2
    total = z.new_zeros(())
    for a in range(n2):
        positive = (a + n) % n2
        others = [j for j in range(n2) if j != a]
        denom = torch.logsumexp(torch.stack([_cos(z[a], z[j]) / tau for j in others]), dim=0)
        total = total - (_cos(z[a], z[positive]) / tau - denom)
    return total / n2


@pytest.mark.parametrize("tau", [0.2, 0.5])
def test_ntxent_matches_reference(tau: float) -> None:
    z1, z2 = _leaves((5, 4), (5, 4))
    ours = NTXentLoss(temperature=tau)(z1, z2)
    ref = _ntxent_reference(z1, z2, tau)
    torch.testing.assert_close(ours, ref, atol=ATOL, rtol=0)
    for g_ours, g_ref in zip(_grads(ours, [z1, z2]), _grads(ref, [z1, z2])):
        torch.testing.assert_close(g_ours, g_ref, atol=ATOL, rtol=0)


# ---------------------------------------------------------------------------------------------------- Barlow Twins
def _barlow_reference(z1: torch.Tensor, z2: torch.Tensor, lam: float, eps: float = 1e-5) -> torch.Tensor:
    """Σ_i (1 - C_ii)² + λ Σ_{i≠j} C_ij², C_ij = Σ_b ẑ1_bi ẑ2_bj / N, ẑ = (z - mean_b) / sqrt(var_b + eps)."""
    n, d = z1.shape

    def bn(z: torch.Tensor) -> torch.Tensor:
        mean = z.sum(0) / n
        var = ((z - mean) ** 2).sum(0) / n  # biased, as batch norm in training mode
        return (z - mean) / torch.sqrt(var + eps)

    a, b = bn(z1), bn(z2)
    loss = z1.new_zeros(())
    for i in range(d):
        for j in range(d):
            c_ij = sum(a[k, i] * b[k, j] for k in range(n)) / n
            loss = loss + ((1 - c_ij) ** 2 if i == j else lam * c_ij**2)
    return loss


def test_barlow_matches_reference() -> None:
    z1, z2 = _leaves((7, 5), (7, 5))
    ours = BarlowTwinsLoss(lambda_offdiag=0.0051)(z1, z2)
    ref = _barlow_reference(z1, z2, 0.0051)
    torch.testing.assert_close(ours, ref, atol=ATOL, rtol=0)
    for g_ours, g_ref in zip(_grads(ours, [z1, z2]), _grads(ref, [z1, z2])):
        torch.testing.assert_close(g_ours, g_ref, atol=ATOL, rtol=0)


def test_barlow_cross_correlation_uses_affine_free_batchnorm() -> None:
    z1, z2 = torch.randn(9, 4), torch.randn(9, 4)
    bn = torch.nn.BatchNorm1d(4, affine=False).train()
    expected = bn(z1).T @ bn(z2) / 9
    torch.testing.assert_close(BarlowTwinsLoss().cross_correlation(z1, z2), expected, atol=ATOL, rtol=0)


def test_barlow_rejects_single_sample() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        BarlowTwinsLoss()(torch.randn(1, 3), torch.randn(1, 3))


# ---------------------------------------------------------------------------------------------------- DINO
def _dino_reference(student: list[torch.Tensor], teacher: list[torch.Tensor], center: torch.Tensor, tau_s: float,
                    tau_t: float) -> torch.Tensor:
    """mean over pairs t ≠ s and samples of Σ_k -P_t log P_s, with explicit softmaxes."""
    terms = []
    for t_idx, t in enumerate(teacher):
        for s_idx, s in enumerate(student):
            if s_idx == t_idx:
                continue
            for i in range(t.shape[0]):
                et = torch.exp((t[i].detach() - center) / tau_t)
                p_t = et / et.sum()
                log_p_s = s[i] / tau_s - torch.log(torch.exp(s[i] / tau_s).sum())
                terms.append(-(p_t * log_p_s).sum())
    return torch.stack(terms).mean()


def test_dino_matches_reference_and_updates_centre() -> None:
    k = 6
    loss_fn = DINOLoss(k, student_temp=0.1, teacher_temp=0.07, warmup_teacher_temp=0.04, warmup_frac=0.5,
                       center_momentum=0.9)
    c0 = torch.randn(1, k) * 0.1
    loss_fn.center.copy_(c0)
    s1, s2 = _leaves((4, k), (4, k))
    t1, t2 = torch.randn(4, k), torch.randn(4, k)
    progress = 0.25  # halfway through the warm-up: τ_t = 0.055
    ours = loss_fn([s1, s2], [t1, t2], progress)
    ref = _dino_reference([s1, s2], [t1, t2], c0[0], 0.1, 0.055)
    torch.testing.assert_close(ours, ref, atol=ATOL, rtol=0)
    for g_ours, g_ref in zip(_grads(ours, [s1, s2]), _grads(ref, [s1, s2])):
        torch.testing.assert_close(g_ours, g_ref, atol=ATOL, rtol=0)
    expected_centre = 0.9 * c0 + 0.1 * torch.cat([t1, t2]).mean(0, keepdim=True)
    torch.testing.assert_close(loss_fn.center, expected_centre, atol=1e-6, rtol=0)


def test_dino_multicrop_pairs_and_eval_keeps_centre() -> None:
    k = 5
    loss_fn = DINOLoss(k, teacher_temp=0.04).eval()
    students = _leaves((3, k), (3, k), (3, k))  # 2 global + 1 local view
    teachers = [torch.randn(3, k), torch.randn(3, k)]
    ours = loss_fn(students, teachers, 0.0)
    ref = _dino_reference(students, teachers, torch.zeros(k), 0.1, 0.04)
    torch.testing.assert_close(ours, ref, atol=ATOL, rtol=0)
    assert torch.count_nonzero(loss_fn.center) == 0  # eval mode: no centre update


def test_dino_teacher_temperature_schedule() -> None:
    loss_fn = DINOLoss(3, teacher_temp=0.07, warmup_teacher_temp=0.04, warmup_frac=0.1)
    assert loss_fn.teacher_temperature(0.0) == pytest.approx(0.04)
    assert loss_fn.teacher_temperature(0.05) == pytest.approx(0.055)
    assert loss_fn.teacher_temperature(0.1) == pytest.approx(0.07)
    assert loss_fn.teacher_temperature(1.0) == pytest.approx(0.07)
    assert DINOLoss(3, teacher_temp=0.07, warmup_frac=0.0).teacher_temperature(0.0) == pytest.approx(0.07)


# ---------------------------------------------------------------------------------------------------- shared
def test_losses_upcast_half_precision_and_keep_float64() -> None:
    z1, z2 = torch.randn(4, 3), torch.randn(4, 3)
    for loss_fn in (NTXentLoss(), BarlowTwinsLoss()):
        assert loss_fn(z1.double(), z2.double()).dtype == torch.float64
        half = loss_fn(z1.bfloat16(), z2.bfloat16())
        assert half.dtype == torch.float32 and math.isfinite(half.item())


@pytest.mark.parametrize(
    "call",
    [
        lambda: MoCoV3Loss()(torch.randn(3, 4), torch.randn(3, 4), torch.randn(3, 4), torch.randn(2, 4)),
        lambda: NTXentLoss()(torch.randn(3, 4), torch.randn(3, 5)),
        lambda: BarlowTwinsLoss()(torch.randn(3), torch.randn(3)),
        lambda: DINOLoss(4)([torch.randn(2, 4)], [torch.randn(2, 4)], 0.0),
        lambda: DINOLoss(4)([torch.randn(2, 4), torch.randn(2, 3)], [torch.randn(2, 4)], 0.0),
        lambda: MoCoV3Loss(temperature=0.0),
        lambda: BarlowTwinsLoss(lambda_offdiag=-1.0),
        lambda: DINOLoss(4, warmup_frac=2.0),
    ],
)
def test_bad_inputs_raise_value_error(call) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError):
        call()
