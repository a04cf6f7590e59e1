"""One training step's views and lazily computed forward passes, shared by the objective and the equivariance loss.

The recipe fills a :class:`StepContext` with the step's named views (``v1``/``v2``: the T pair of the b1 images;
``eq_a``/``eq_b``: SER's T_eq pair of the b2 images; anything a loss adds through ``extra_views``) and reads the
embeddings the invariant objective needs from it; the equivariance loss then reads whatever else it needs. Each
forward pass runs at most once per view, so a loss that reads the split outputs of ``v1`` reuses the pass that
produced the objective's embedding.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

from equireg.backbones import SplitOutput
from equireg.equivariance.base import EquivBatch


@dataclass
class StepContext:
    """Views of one step and cached online / teacher outputs.

    Attributes:
        backbone: the online backbone (split at the equivariance layer).
        objective: the invariant objective (its ``teacher_forward`` gives the teacher outputs).
        views: name -> image batch.
        split_views: names whose online pass must return the layer-k outputs.
        with_map, with_pooled: which layer-k outputs those passes return.
        ssl_pair: the T policy's output for the b1 images (``params1``/``params2`` are the recorded parameters).
        group, g: the group and the relative elements of the T_eq pair (None without one).
    """

    backbone: Any
    objective: Any
    views: dict[str, Tensor]
    split_views: frozenset[str] = frozenset()
    with_map: bool = False
    with_pooled: bool = False
    ssl_pair: Any = None
    group: Any = None
    g: Any = None
    _online: dict[str, SplitOutput] = field(default_factory=dict, repr=False)
    _teacher: dict[str, Any] = field(default_factory=dict, repr=False)

    def view(self, name: str) -> Tensor:
        if name not in self.views:
            raise ValueError(f"this step has no view {name!r}; it has {sorted(self.views)}")
        return self.views[name]

    @property
    def final_layer(self) -> bool:
        """True when the split layer is the last one (the coupled setting: losses read the final embedding)."""
        return int(self.backbone.split_layer) == int(self.backbone.num_layers)

    def online(self, name: str) -> SplitOutput:
        """The online pass of view ``name`` (with layer-k outputs when ``name`` is in ``split_views``)."""
        if name not in self._online:
            x = self.view(name)
            if name in self.split_views:
                pooled = self.with_pooled and not self.final_layer
                self._online[name] = self.backbone.forward_split(x, with_map=self.with_map, with_pooled=pooled)
            else:
                self._online[name] = SplitOutput(embedding=self.backbone(x), feature_map=None, pooled=None)
        return self._online[name]

    def teacher(self, name: str) -> Any:
        """The objective's no-grad teacher pass of view ``name`` (None when the objective has no teacher)."""
        if name not in self._teacher:
            self._teacher[name] = self.objective.teacher_forward(self.view(name))
        return self._teacher[name]

    def target(self, name: str) -> Any:
        """The teacher output when there is a teacher, else the online output."""
        out = self.teacher(name)
        return out if out is not None else self.online(name)

    def representation(self, name: str) -> Tensor:
        """The layer-k vector of view ``name``: the split layer's pooled vector / intermediate [CLS] through its
        own LayerNorm, or the final embedding when the split layer is the last (coupled) one."""
        out = self.online(name)
        rep = out.embedding if self.final_layer else out.pooled
        if rep is None:
            raise ValueError(f"view {name!r} was not forwarded with its layer-k vector; list it in split_views")
        return rep

    def equiv_batch(self) -> EquivBatch:
        """SER's equivariant pair (views ``eq_a``/``eq_b`` and relative elements ``g``)."""
        if self.group is None or self.g is None:
            raise ValueError("this step has no equivariant pair (the loss does not use T_eq views)")
        on = (self.online("eq_a"), self.online("eq_b"))
        tg = (self.teacher("eq_a"), self.teacher("eq_b"))
        target = (tg[0] if tg[0] is not None else on[0], tg[1] if tg[1] is not None else on[1])
        return EquivBatch(group=self.group, g=self.g, online=on, target=target)
