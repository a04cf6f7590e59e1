"""Check the group laws and the action laws of a Group on samples, naming the first violated law.

Exact groups (index-permutation actions) must satisfy the action laws bit for bit on random maps.
Interpolated groups are checked on smooth test fields (a few Gaussian bumps near the centre), comparing only
inside the central disk where no content can leave the grid, relative to the field's peak; their
``action_tolerance`` is the bound that is asserted.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from equireg.groups.base import Group, GroupLawError
from equireg.groups.finite import FiniteGroup

EXHAUSTIVE_ORDER = 16  # finite groups up to this order are checked on all pairs and triples


@dataclass(frozen=True)
class LawCheck:
    """Outcome of one law: ``error`` is 0/1 for algebraic laws and the max (relative) deviation for actions."""

    law: str
    passed: bool
    error: float
    tolerance: float
    counterexample: str = ""


def smooth_fields(n: int, channels: int, size: int, generator: torch.Generator) -> Tensor:
    """Sums of Gaussian bumps centred within 0.15·size of the grid centre: smooth and away from the border."""
    coords = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    bumps = 3
    radius = 0.15 * size * torch.rand(n, channels, bumps, generator=generator, dtype=torch.float64).sqrt()
    angle = 2 * torch.pi * torch.rand(n, channels, bumps, generator=generator, dtype=torch.float64)
    cx, cy = radius * torch.cos(angle), radius * torch.sin(angle)
    amp = torch.rand(n, channels, bumps, generator=generator, dtype=torch.float64) * 2 - 1
    sigma = 0.1 * size
    d2 = (xx - cx[..., None, None]) ** 2 + (yy - cy[..., None, None]) ** 2
    return (amp[..., None, None] * torch.exp(-d2 / (2 * sigma**2))).sum(2).float()


def _central_disk(size: int, radius_frac: float = 0.25) -> Tensor:
    coords = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    return (xx**2 + yy**2) <= (radius_frac * size) ** 2


class _Checker:
    def __init__(self, group: Group, samples: int, seed: int, size: int) -> None:
        self.g = group
        gen = self.gen = torch.Generator().manual_seed(seed)
        finite_small = isinstance(group, FiniteGroup) and group.order <= EXHAUSTIVE_ORDER
        if finite_small:
            n = group.order
            idx = torch.arange(n)
            self.pairs = (idx.repeat_interleave(n), idx.repeat(n))
            self.triples = (
                idx.repeat_interleave(n * n),
                idx.repeat_interleave(n).repeat(n),
                idx.repeat(n * n),
            )
        else:
            a, b, c = (group.sample(samples, generator=gen).tensor for _ in range(3))
            self.pairs, self.triples = (a, b), (a, b, c)
        m = self.pairs[0].shape[0]
        self.x = torch.empty(m, 2, size, size)
        self.x = self.fields(2)
        self.mask = torch.ones(size, size, dtype=torch.bool) if group.is_exact else _central_disk(size)
        self.tol = group.action_tolerance
        self.results: list[LawCheck] = []

    def _describe(self, *elems: Tensor, index: int) -> str:
        return ", ".join(f"{n}={self.g.describe(e[index : index + 1])[0]}" for n, e in zip("abc", elems))

    def algebraic(self, law: str, ok: Tensor, *elems: Tensor) -> None:
        bad = (~ok).nonzero()
        if bad.numel():
            i = int(bad[0, 0])
            self.results.append(LawCheck(law, False, 1.0, 0.0, self._describe(*elems, index=i)))
        else:
            self.results.append(LawCheck(law, True, 0.0, 0.0))

    def fields(self, channels: int) -> Tensor:
        m, size = self.x.shape[0], self.x.shape[-1]
        if self.g.is_exact:
            return torch.randn(m, channels, size, size, generator=self.gen)
        return smooth_fields(m, channels, size, self.gen)

    def close(self, law: str, got: Tensor, want: Tensor, *elems: Tensor) -> None:
        if got.shape != want.shape:
            self.results.append(LawCheck(law, False, float("inf"), self.tol, f"shape {tuple(got.shape)} != {tuple(want.shape)}"))
            return
        diff = (got - want).abs() * self.mask
        scale = want.abs().amax(dim=(1, 2, 3)).clamp_min(1e-12)
        per_sample = diff.amax(dim=(1, 2, 3)) / (1.0 if self.g.is_exact else scale)
        worst = int(per_sample.argmax())
        err = float(per_sample[worst])
        ok = err <= self.tol
        self.results.append(LawCheck(law, ok, err, self.tol, "" if ok else self._describe(*elems, index=worst)))

    def run(self) -> list[LawCheck]:
        g = self.g
        a, b = self.pairs
        ta, tb, tc = self.triples
        try:
            ab = g._compose(a, b)
            g.check_elements(ab)
            self.algebraic("closure", torch.ones(a.shape[0], dtype=torch.bool), a, b)
        except ValueError as exc:
            self.results.append(LawCheck("closure", False, 1.0, 0.0, str(exc)))
            return self.results
        e = g.identity.tensor
        self.algebraic("identity", g.equal(g._compose(e, a), a) & g.equal(g._compose(a, e), a), a)
        inv_a = g._inverse(a)
        self.algebraic("inverse", g.equal(g._compose(a, inv_a), e) & g.equal(g._compose(inv_a, a), e), a)
        self.algebraic(
            "associativity",
            g.equal(g._compose(g._compose(ta, tb), tc), g._compose(ta, g._compose(tb, tc))),
            ta, tb, tc,
        )
        x = self.x
        self.close("action identity", g.act(x, g.wrap(e)), x, e.expand(a.shape[0], *e.shape))
        self.close("action homomorphism", g.act(x, g.wrap(ab)), g.act(g.act(x, g.wrap(b)), g.wrap(a)), a, b)
        self.close("action inverse", g.act(g.act(x, g.wrap(a)), g.wrap(inv_a)), x, a)
        if isinstance(g, FiniteGroup):
            rep = g.representation("regular")
            ok = (rep(ab) == rep(a) @ rep(b)).flatten(1).all(1)
            self.algebraic("representation homomorphism", ok, a, b)
            n = g.order
            z = self.fields(2 * n)
            self.close(
                "fibre action homomorphism",
                g.act(z, g.wrap(ab), fibre="regular"),
                g.act(g.act(z, g.wrap(b), fibre="regular"), g.wrap(a), fibre="regular"),
                a, b,
            )
        return self.results


def verify_group(
    group: Group, *, samples: int = 16, seed: int = 0, size: int = 32, raise_on_failure: bool = True
) -> list[LawCheck]:
    """Check closure, identity, inverse, associativity, the action laws and (finite groups) the regular
    representation. Returns one :class:`LawCheck` per law; with ``raise_on_failure`` the first violation
    raises :class:`GroupLawError` naming the law and a counterexample."""
    results = _Checker(group, samples, seed, size).run()
    if raise_on_failure:
        for r in results:
            if not r.passed:
                raise GroupLawError(group.name, r.law, r.counterexample, None if r.error in (0.0, 1.0) else r.error)
    return results
