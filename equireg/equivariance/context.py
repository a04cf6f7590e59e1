"""One training step's views and their forward passes, shared by the objective and the equivariance loss.

The recipe fills a :class:`StepContext` with the step's named views (:class:`View`: ``v1``/``v2``, the T pair of the
b1 images; ``eq_a``/``eq_b``, the T_eq pair of the b2 images; a loss's extra views) and asks for the passes the
invariant objective needs; the equivariance loss then reads whatever else it needs. Each view is forwarded at most
once by the online backbone and once by the teacher, and views that share a spatial size and are requested together
run in one backbone call (SER's b2 views join the b1 views' call when T_eq keeps the grid), so SER's extra cost is a
fixed share of one pass rather than extra small passes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from equireg.backbones import SplitOutput
from equireg.equivariance.base import EquivBatch, View


@dataclass
class StepContext:
    """Views of one step and cached online / teacher outputs.

    Attributes:
        backbone: the online backbone (split at the equivariance layer).
        teacher: the objective's teacher backbone, or None.
        views: name -> image batch.
        split_views: names whose passes return the layer-k outputs the loss reads.
        reads: ``"map"`` or ``"vector"`` (what the loss reads at layer k), None without a loss.
        teacher_maps: whether teacher passes of split views return maps (a loss with teacher targets).
        ssl_pair: the T policy's output for the b1 images (``params1``/``params2`` are the recorded parameters).
        pair: the T_eq policy's output for the b2 images (group and relative elements), or None.
    """

    backbone: nn.Module
    teacher: nn.Module | None
    views: dict[str, Tensor]
    split_views: frozenset[str] = frozenset()
    reads: str | None = None
    teacher_maps: bool = False
    ssl_pair: Any = None
    pair: Any = None
    _online: dict[str, SplitOutput] = field(default_factory=dict, repr=False)
    _teacher: dict[str, SplitOutput] = field(default_factory=dict, repr=False)

    def view(self, name: str) -> Tensor:
        if name not in self.views:
            raise ValueError(f"this step has no view {str(name)!r}; it has {sorted(map(str, self.views))}")
        return self.views[name]

    @property
    def final_layer(self) -> bool:
        """True when the split layer is the last one (the coupled setting: losses read the final embedding)."""
        return int(self.backbone.split_layer) == int(self.backbone.num_layers)

    # --- passes ---------------------------------------------------------------------------------------------
    def forward(self, names: Sequence[str], teacher: bool = False) -> None:
        """Run the online (or teacher) backbone on the views ``names`` that are present and not yet computed;
        views of equal spatial size share one call (in the order given)."""
        cache = self._teacher if teacher else self._online
        todo = [n for n in names if n in self.views and n not in cache]
        while todo:
            size = self.views[todo[0]].shape[-2:]
            run = [n for n in todo if self.views[n].shape[-2:] == size]
            todo = [n for n in todo if n not in run]
            cache.update(self._pass(run, teacher))

    def _pass(self, names: list[str], teacher: bool) -> dict[str, SplitOutput]:
        module = self.teacher if teacher else self.backbone
        assert module is not None
        batch = [self.views[n] for n in names]
        x = batch[0] if len(batch) == 1 else torch.cat(batch)
        split = any(n in self.split_views for n in names)
        with_map = split and self.reads == "map" and (self.teacher_maps or not teacher)
        with_pooled = split and self.reads == "vector" and not teacher and not self.final_layer
        with torch.no_grad() if teacher else contextlib.nullcontext():
            if with_map or with_pooled:
                out = module.forward_split(x, with_map=with_map, with_pooled=with_pooled)
            else:
                out = SplitOutput(embedding=module(x), feature_map=None, pooled=None)
        return dict(zip(names, _split(out, [len(b) for b in batch])))

    def online(self, name: str) -> SplitOutput:
        """The online pass of view ``name`` (with layer-k outputs when ``name`` is a split view)."""
        self.forward([name])
        return self._online[name]

    def teacher_out(self, name: str) -> SplitOutput | None:
        """The no-grad teacher pass of view ``name`` (None without a teacher)."""
        if self.teacher is None:
            return None
        self.forward([name], teacher=True)
        return self._teacher[name]

    def target(self, name: str) -> SplitOutput:
        """The teacher output when there is a teacher, else the online output."""
        out = self.teacher_out(name)
        return out if out is not None else self.online(name)

    def embeddings(self, names: Sequence[str], teacher: bool = False) -> Tensor | None:
        """Final embeddings of the present views ``names``, concatenated (None for a missing teacher)."""
        if teacher and self.teacher is None:
            return None
        present = [n for n in names if n in self.views]
        self.forward(present, teacher)
        cache = self._teacher if teacher else self._online
        return torch.cat([cache[n].embedding for n in present])

    # --- what losses read -------------------------------------------------------------------------------------
    def representation(self, name: str) -> Tensor:
        """The layer-k vector of view ``name``: the split layer's pooled vector / intermediate [CLS] through its
        own LayerNorm, or the final embedding when the split layer is the last (coupled) one."""
        out = self.online(name)
        rep = out.embedding if self.final_layer else out.pooled
        if rep is None:
            raise ValueError(f"view {str(name)!r} was not forwarded with its layer-k vector; list it in split_views")
        return rep

    def equiv_batch(self) -> EquivBatch:
        """The T_eq pair (views ``eq_a``/``eq_b``, their group and relative elements)."""
        if self.pair is None:
            raise ValueError("this step has no equivariant pair (the loss does not use T_eq views)")
        on = (self.online(View.EQ_A), self.online(View.EQ_B))
        return EquivBatch(group=self.pair.group, g=self.pair.g, online=on,
                          target=(self.target(View.EQ_A), self.target(View.EQ_B)))


def _split(out: SplitOutput, sizes: list[int]) -> list[SplitOutput]:
    """A fused pass's output cut back into the views it was made of."""
    if len(sizes) == 1:
        return [out]
    parts = [t.split(sizes) if t is not None else [None] * len(sizes) for t in (out.embedding, out.feature_map, out.pooled)]
    return [SplitOutput(e, m, p) for e, m, p in zip(*parts)]
