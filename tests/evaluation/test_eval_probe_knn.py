"""Linear probe, k-NN and feature extraction on synthetic features with known answers."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from equireg.evaluation import extract_features, knn_classify, knn_votes, linear_probe, render_table


def separable(n: int, num_classes: int, dim: int, seed: int, spread: float = 0.1) -> tuple[Tensor, Tensor]:
    """Well separated Gaussian clusters around fixed class centres (the same for every seed)."""
    centres = torch.randn(num_classes, dim, generator=torch.Generator().manual_seed(1234)) * 3
    gen = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, num_classes, (n,), generator=gen)
    return centres[labels] + spread * torch.randn(n, dim, generator=gen), labels


@pytest.mark.parametrize("optimizer", ["adamw", "lbfgs"])
def test_linear_probe_separable_reaches_full_accuracy(optimizer: str) -> None:
    xtr, ytr = separable(400, 6, 16, seed=0)
    xte, yte = separable(200, 6, 16, seed=1)
    kwargs = {"epochs": 30, "lr": 0.05, "batch_size": 64} if optimizer == "adamw" else {"epochs": 50}
    result = linear_probe(xtr, ytr, xte, yte, optimizer=optimizer, **kwargs)  # type: ignore[arg-type]
    assert result.top1 >= 99.0 and result.train_top1 >= 99.0
    assert result.top5 >= result.top1
    assert result.num_classes == 6


def test_linear_probe_random_labels_is_near_chance() -> None:
    gen = torch.Generator().manual_seed(0)
    xtr, xte = torch.randn(1000, 32, generator=gen), torch.randn(2000, 32, generator=gen)
    ytr, yte = torch.randint(0, 10, (1000,), generator=gen), torch.randint(0, 10, (2000,), generator=gen)
    result = linear_probe(xtr, ytr, xte, yte, epochs=20)
    assert abs(result.top1 - 10.0) < 4.0  # chance is 10%; 2000 test samples give a std of ~0.7 points
    assert abs(result.top5 - 50.0) < 6.0
    assert result.top5 >= result.top1


def test_linear_probe_keeps_a_reusable_classifier_with_train_statistics() -> None:
    xtr, ytr = separable(300, 4, 8, seed=0)
    xtr = xtr * 5 + 7  # standardisation must undo this with train statistics
    xte, yte = separable(100, 4, 8, seed=1)
    xte = xte * 5 + 7
    result = linear_probe(xtr, ytr, xte, yte, epochs=20)
    torch.testing.assert_close(result.classifier.mean, xtr.mean(0))
    torch.testing.assert_close(result.classifier.std, xtr.std(0, unbiased=False))
    accuracy = (result.predict(xte).argmax(1) == yte).float().mean().item() * 100
    assert accuracy == pytest.approx(result.top1)
    payload = json.loads(result.to_json())
    assert "classifier" not in payload and payload["top1"] == result.top1


def test_top5_is_everything_with_at_most_five_classes() -> None:
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(50, 4, generator=gen), torch.randint(0, 3, (50,), generator=gen)
    assert linear_probe(x, y, x, y, epochs=2).top5 == 100.0
    assert knn_classify(x, y, x, y, k=5).top5 == 100.0


def test_linear_probe_rejects_bad_input() -> None:
    x, y = torch.randn(10, 4), torch.randint(0, 2, (10,))
    with pytest.raises(ValueError, match="features"):
        linear_probe(x, y[:5], x, y)
    with pytest.raises(ValueError, match="feature sizes"):
        linear_probe(x, y, torch.randn(10, 5), y)
    with pytest.raises(ValueError, match="optimizer"):
        linear_probe(x, y, x, y, optimizer="sgd")  # type: ignore[arg-type]


def test_knn_separable_and_random() -> None:
    xtr, ytr = separable(300, 5, 16, seed=0)
    xte, yte = separable(100, 5, 16, seed=1)
    assert knn_classify(xtr, ytr, xte, yte).top1 == 100.0
    gen = torch.Generator().manual_seed(3)
    ytr_rand, yte_rand = torch.randint(0, 10, (2000,), generator=gen), torch.randint(0, 10, (2000,), generator=gen)
    result = knn_classify(torch.randn(2000, 16, generator=gen), ytr_rand, torch.randn(2000, 16, generator=gen), yte_rand)
    assert abs(result.top1 - 10.0) < 4.0
    assert result.top5 >= result.top1


def brute_force_knn(train: np.ndarray, train_y: np.ndarray, test: np.ndarray, k: int, t: float, n_cls: int) -> np.ndarray:
    """DINO's weighted vote written out with explicit loops (the reference)."""
    train = train / np.linalg.norm(train, axis=1, keepdims=True)
    test = test / np.linalg.norm(test, axis=1, keepdims=True)
    votes = np.zeros((len(test), n_cls))
    for i, q in enumerate(test):
        sims = train @ q
        for j in np.argsort(-sims)[:k]:
            votes[i, train_y[j]] += np.exp(sims[j] / t)
    return votes


@pytest.mark.parametrize("max_elements", [2**24, 100])  # the second forces one test row per chunk
def test_knn_matches_brute_force_reference(max_elements: int) -> None:
    gen = torch.Generator().manual_seed(0)
    xtr, xte = torch.randn(120, 12, generator=gen), torch.randn(40, 12, generator=gen)
    ytr, yte = torch.randint(0, 7, (120,), generator=gen), torch.randint(0, 7, (40,), generator=gen)
    ref = brute_force_knn(xtr.double().numpy(), ytr.numpy(), xte.double().numpy(), k=80, t=0.1, n_cls=7)
    assert (ref > 0).all()  # every class gets votes, so the top-5 has no ties
    votes = knn_votes(xtr, ytr, xte, 7, k=80, temperature=0.1, max_elements=max_elements)
    np.testing.assert_allclose(votes.numpy(), ref, rtol=1e-4)
    result = knn_classify(xtr, ytr, xte, yte, k=80, temperature=0.1, max_elements=max_elements)
    order = np.argsort(-ref, axis=1)
    assert result.top1 == pytest.approx(100.0 * np.mean(order[:, 0] == yte.numpy()))
    assert result.top5 == pytest.approx(100.0 * np.mean((order[:, :5] == yte.numpy()[:, None]).any(1)))


def test_knn_caps_k_at_training_set_size() -> None:
    x, y = torch.randn(5, 3), torch.tensor([0, 1, 0, 1, 0])
    assert knn_classify(x, y, x, y, k=50).k == 5


class TinyEmbedder(nn.Module):
    """A stand-in backbone (B, 3, H, W) -> (B, 6) with dropout, to see that eval mode is used."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.drop = nn.Dropout(0.5)

    def forward(self, x: Tensor) -> Tensor:
        return self.drop(self.conv(x).mean(dim=(2, 3)))


def test_extract_features_accepts_every_data_form_in_eval_mode_without_grad() -> None:
    net = TinyEmbedder().train()
    images, labels = torch.rand(10, 3, 8, 8), torch.arange(10)
    ref = TinyEmbedder()
    ref.load_state_dict(net.state_dict())
    expected = ref.eval()(images).detach()

    batches = [(images[:4], labels[:4]), (images[4:], labels[4:])]
    for data in (batches, (images, labels)):
        feats, ys = extract_features(net, data, batch_size=3)
        torch.testing.assert_close(feats, expected)
        assert torch.equal(ys, labels) and not feats.requires_grad
    feats, ys = extract_features(net, images)
    assert feats.shape == (10, 6) and ys.numel() == 0
    assert net.training  # restored
    bf16, _ = extract_features(net, batches, amp_dtype=torch.bfloat16)
    assert bf16.dtype == torch.float32
    torch.testing.assert_close(bf16, expected, atol=0.05, rtol=0.05)
    with pytest.raises(ValueError, match="B, C, H, W"):
        extract_features(net, [torch.rand(3, 8, 8)])


def test_results_render_as_rich_tables() -> None:
    from rich.console import Console

    x, y = separable(60, 3, 4, seed=0)
    console = Console(record=True, width=120)
    console.print(render_table(linear_probe(x, y, x, y, epochs=2)))
    console.print(render_table(knn_classify(x, y, x, y)))
    text = console.export_text()
    assert "Linear probe" in text and "k-NN" in text
    with pytest.raises(ValueError, match="no table"):
        render_table(object())  # type: ignore[arg-type]
