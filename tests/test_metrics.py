"""Metrics against hand-computed values."""
import numpy as np
import pytest

from audiocnn.tasks import get_task


def test_multiclass_metrics_by_hand():
    probs = np.array([[.7, .2, .1], [.1, .8, .1], [.5, .4, .1], [.2, .3, .5], [.6, .3, .1]])
    y = np.array([0, 1, 1, 2, 2])
    m = get_task("multiclass").metrics(probs, y, ["a", "b", "c"], top_k=2)
    assert m["accuracy"] == pytest.approx(3 / 5)
    # recalls: a 1/1, b 1/2, c 1/2
    assert m["balanced_accuracy"] == pytest.approx((1 + .5 + .5) / 3)
    assert m["top2_accuracy"] == pytest.approx(4 / 5)  # sample 5: top-2 {0, 1}, true 2
    names, cm = get_task("multiclass").confusion(probs, y, ["a", "b", "c"])
    assert names == ["a", "b", "c"]
    assert cm.tolist() == [[1, 0, 0], [1, 1, 0], [1, 0, 1]]
    rep = get_task("multiclass").report(probs, y, ["a", "b", "c"])
    assert rep["a"]["precision"] == pytest.approx(1 / 3) and rep["c"]["recall"] == pytest.approx(0.5)


def test_multilabel_map_and_regression_pearson():
    y = np.array([[1, 0], [0, 1], [1, 1], [0, 0]])
    p = np.array([[.9, .2], [.3, .8], [.6, .4], [.1, .1]])
    m = get_task("multilabel").metrics(p, y, ["x", "y"])
    assert m["mAP"] == pytest.approx(1.0)  # every positive outranks every negative
    pred = np.array([[1.0], [2.0], [3.0], [4.0]])
    tgt = np.array([[2.0], [4.0], [6.0], [8.0]])
    r = get_task("regression").metrics(pred, tgt, ["valence"])
    assert r["pearson"] == pytest.approx(1.0) and r["mse"] == pytest.approx((1 + 4 + 9 + 16) / 4)


def test_task_losses_match_definitions():
    import torch
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    y = torch.tensor([0, 1])
    expected = -(torch.log_softmax(logits, 1)[0, 0] + torch.log_softmax(logits, 1)[1, 1]) / 2
    assert get_task("multiclass").loss(logits, y).item() == pytest.approx(expected.item())
    z = torch.tensor([[0.3], [-1.2]])
    t = torch.tensor([1.0, 0.0])
    manual = -(torch.log(torch.sigmoid(z[0, 0])) + torch.log(1 - torch.sigmoid(z[1, 0]))) / 2
    assert get_task("binary").loss(z, t).item() == pytest.approx(manual.item(), rel=1e-6)
    assert get_task("binary").outputs(z).shape == (2,)
    assert get_task("regression").loss(torch.tensor([[1.0], [3.0]]), torch.tensor([[0.0], [1.0]])).item() == pytest.approx(2.5)
