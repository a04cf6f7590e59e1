"""Making the views of a step never waits for the device: on a GPU a view policy that reads a device tensor's
value (``.item()``, ``bool(t.any())``, boolean-mask indexing) stalls until all queued work is done. Run on the meta
device, such a read has no value to give; the probe records every one (with where it happened) and answers with a
dummy, so the test lists each read instead of failing at the first."""

from __future__ import annotations

import traceback

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from equireg.augment import SSLViewPolicy, create_view_policy
from equireg.groups import create_group

READS = {"aten::_local_scalar_dense", "aten::nonzero", "aten::masked_select", "aten::equal", "aten::is_nonzero",
         "aten::_unique2", "aten::unique_dim", "aten::bincount"}


class DeviceReads(TorchDispatchMode):
    """Records value reads of meta tensors (stand-ins for device tensors) and answers them with dummies."""

    def __init__(self) -> None:
        super().__init__()
        self.reads: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        kwargs = kwargs or {}
        tensors = [a for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor)]
        name = func._schema.name
        if name in READS and any(t.device.type == "meta" for t in tensors):
            frame = next((f for f in reversed(traceback.extract_stack()) if "/equireg/" in f.filename), None)
            self.reads.append(f"{name} at {frame.filename.split('/equireg/')[-1]}:{frame.lineno}" if frame else name)
            if name == "aten::_local_scalar_dense":
                return True if tensors[0].dtype == torch.bool else 1
            if name == "aten::equal":
                return True
            return torch.zeros(0, max(1, tensors[0].dim()), dtype=torch.long, device="meta")
        return func(*args, **kwargs)


def _images(n: int = 8, side: int = 32) -> torch.Tensor:
    return torch.rand(n, 3, side, side).to("meta")  # parameters are drawn on the host, images live "on the device"


def test_ssl_views_read_nothing_from_the_device() -> None:
    with DeviceReads() as probe:
        SSLViewPolicy()(_images(), generator=torch.Generator().manual_seed(0))
    assert probe.reads == []


@pytest.mark.parametrize(("policy", "group"), [("ser", "p4m"), ("ser", "p4m*scale"), ("uniform", "p4m"),
                                               ("uniform", "p4m*scale"), ("uniform", "c4")])
def test_equivariant_views_and_their_group_action_read_nothing_from_the_device(policy: str, group: str) -> None:
    pair_policy = create_view_policy(policy, {"group": create_group(group), "token_stride": 4})
    with DeviceReads() as probe:
        pair = pair_policy(_images(), generator=torch.Generator().manual_seed(0))
        fmap = torch.zeros(8, 16, pair.view1.shape[-2] // 4, pair.view1.shape[-1] // 4, device="meta")
        moved = pair.group.act(fmap, pair.g, out_size=(pair.view2.shape[-2] // 4, pair.view2.shape[-1] // 4))
    assert probe.reads == [] and moved.shape[-2:] == (pair.view2.shape[-2] // 4, pair.view2.shape[-1] // 4)
    assert pair.g.tensor.device.type == "cpu"  # elements stay on the host


def test_the_probe_sees_a_read() -> None:
    with DeviceReads() as probe:
        bool(torch.ones(3, device="meta").any())
    assert len(probe.reads) == 1
