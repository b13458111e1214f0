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


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_counted_multiclass_metrics_match_scikit_learn(seed):
    """The NumPy counts against scikit-learn, with classes missing from the targets and from the predictions."""
    from sklearn import metrics as skm

    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.ones(6), size=40)
    probs[:, 5] = 0.0                                  # class 5 never predicted
    y = rng.integers(0, 5, size=40)                    # nor ever true; class 4 maybe neither
    pred = probs.argmax(1)
    m = get_task("multiclass").metrics(probs, y, list("abcdef"), top_k=3)
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert m["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, pred))
    assert m["macro_f1"] == pytest.approx(skm.f1_score(y, pred, average="macro", labels=np.arange(6), zero_division=0))
    assert m["top3_accuracy"] == pytest.approx(skm.top_k_accuracy_score(y, probs, k=3, labels=np.arange(6)))
    _, cm = get_task("multiclass").confusion(probs, y, list("abcdef"))
    np.testing.assert_array_equal(cm, skm.confusion_matrix(y, pred, labels=np.arange(6)))
    rep = get_task("multiclass").report(probs, y, list("abcdef"))
    p, r, f, n = skm.precision_recall_fscore_support(y, pred, labels=np.arange(6), zero_division=0)
    for i, name in enumerate("abcdef"):
        assert [rep[name][k] for k in ("precision", "recall", "f1", "support")] == pytest.approx([p[i], r[i], f[i], n[i]])
    multi_y, multi_p = rng.random((40, 4)) < 0.4, rng.random((40, 4))
    multi_p[:, 3] = 0.0                                # a label never predicted
    rep = get_task("multilabel").report(multi_p, multi_y, list("wxyz"))
    p, r, f, n = skm.precision_recall_fscore_support(multi_y, multi_p >= 0.5, zero_division=0)
    for i, name in enumerate("wxyz"):
        assert [rep[name][k] for k in ("precision", "recall", "f1", "support")] == pytest.approx([p[i], r[i], f[i], n[i]])


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
