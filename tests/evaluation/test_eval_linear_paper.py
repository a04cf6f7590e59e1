"""The paper's linear protocol: last-blocks [CLS] features, an lr sweep of heads trained in one pass (one frozen
forward per batch feeds every head), reproducible, best head selected."""

from __future__ import annotations

import torch
from rich.console import Console
from torch import Tensor, nn

from equireg.backbones import create_backbone
from equireg.evaluation import FrozenFeatures, LinearEvalResult, linear_eval, render_table


def test_vit_features_are_the_last_blocks_cls_through_the_final_norm() -> None:
    # SER's late [CLS] joins after block 2 of 4
    backbone = create_backbone("vit_test", split_layer=2, cls_position="after_equiv").eval()
    x = torch.rand(3, 3, 16, 16)
    features = FrozenFeatures(backbone, n_last_blocks=2)
    depth = backbone.num_layers
    with torch.no_grad():
        got = features(x)
        want = [backbone.vit.norm(backbone._run(x, tap=k, stop_at_tap=True)[0][:, 0]) for k in (depth - 1, depth)]
    assert got.shape == (3, 2 * backbone.embed_dim) == (3, features.output_dim())
    assert torch.allclose(got, torch.cat(want, dim=1), atol=1e-6)
    assert backbone.cls_insert_after == 2  # blocks 1-2 carry no [CLS]: at most the last 2 are used
    assert len(FrozenFeatures(backbone, n_last_blocks=99).blocks) == 2
    standard = create_backbone("vit_test", cls_position="input")
    assert len(FrozenFeatures(standard, n_last_blocks=99).blocks) == depth


def test_cnn_features_are_the_pooled_embedding() -> None:
    backbone = create_backbone("resnet_test").eval()
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(FrozenFeatures(backbone)(x), backbone(x))


class Flatten(nn.Module):
    """A 'backbone' whose embedding is the flattened image, counting its forward passes."""

    embed_dim = 12

    def __init__(self) -> None:
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(1))  # gives the module a device
        self.calls = 0

    def forward(self, x: Tensor) -> Tensor:
        self.calls += 1
        return x.flatten(1) + 0 * self.anchor


def _separable(n: int, seed: int) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 3
    images = torch.randn(n, 3, 2, 2, generator=g) * 0.3
    images[torch.arange(n), labels, 0, 0] += 3.0  # class k lights up channel k
    return images, labels


def _run(backbone: Flatten, lrs: list[float], epochs: int = 3) -> LinearEvalResult:
    train, test = _separable(64, 0), _separable(30, 1)

    def train_epoch(epoch: int):  # 4 batches of 16, reshuffled per epoch
        order = torch.randperm(64, generator=torch.Generator().manual_seed(epoch))
        return [(train[0][order[i : i + 16]], train[1][order[i : i + 16]]) for i in range(0, 64, 16)]

    def test_batches():
        return [(test[0][:16], test[1][:16]), (test[0][16:], test[1][16:])]

    return linear_eval(FrozenFeatures(backbone), train_epoch, test_batches, 3, epochs=epochs, batch_size=16, lrs=lrs)


def test_sweep_trains_every_head_in_one_pass_and_keeps_the_best() -> None:
    backbone = Flatten()
    result = _run(backbone, lrs=[1e-7, 0.3, 3.0])
    assert backbone.calls == 3 * 4 + 2  # one forward per training batch for all heads, plus validation
    assert result.lrs == [1e-7, 0.3, 3.0] and len(result.top1_per_lr) == 3
    assert result.top1_per_lr[0] < 70.0 and result.top1 == 100.0  # the tiny lr barely moves its head
    assert result.best_lr in (0.3, 3.0) and result.top1 == max(result.top1_per_lr)
    assert result.num_train == 64 and result.num_test == 30 and result.feature_dim == 12
    assert result.head.weight.shape == (3, 12)
    console = Console(width=120, record=True)
    console.print(render_table(result))
    assert "(best)" in console.export_text()


def test_linear_eval_is_reproducible() -> None:
    a, b = _run(Flatten(), lrs=[0.1, 1.0], epochs=2), _run(Flatten(), lrs=[0.1, 1.0], epochs=2)
    assert a.to_dict() == b.to_dict() and torch.equal(a.head.weight, b.head.weight)


def test_paper_protocol_on_in_memory_data_saves_a_reusable_head(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from equireg.config import resolve_config
    from equireg.data.splits import load_splits
    from equireg.pipeline import LoadedRun, evaluate_linear, load_classifier
    from equireg.recipe import build_backbone

    cfg = resolve_config(overrides={
        "data.name": "synthetic", "data.image_size": 16, "data.kwargs": {"num_samples": 48}, "data.train_subset": 16,
        "data.test_size": 12, "backbone.name": "vit_test", "backbone.kwargs": {"split_layer": 2},
        "objective.kwargs": {"proj_hidden_dim": 16, "proj_dim": 8, "pred_hidden_dim": 16},
        "equiv.kwargs": {"proj_dim": 8}, "train.precision": "fp32", "eval.linear_protocol": "paper",
        "eval.linear_epochs": 1, "eval.batch_size": 8, "eval.linear_last_blocks": 2,
    })  # fmt: skip
    run = LoadedRun(cfg, build_backbone(cfg).eval(), tmp_path, step=0)
    splits = load_splits(cfg)
    result = evaluate_linear(run, splits)  # the run's eval.linear_protocol: paper
    assert isinstance(result, LinearEvalResult) and result.feature_dim == 2 * 32 and result.num_train == 32
    classifier, classes = load_classifier(run)
    images, _ = next(splits.test.batches(4, shuffle=False))
    with torch.no_grad():
        want = result.head(FrozenFeatures(run.backbone, 2)(images))
        assert torch.allclose(classifier(images), want, atol=1e-5) and classes == list(splits.test.classes)
