"""The batched downstream trainer against the sequential one (audiocnn.hear.predictor.fit) and torch.optim.Adam:
stacked forward and gradients per member, Adam per member, and whole trainings (grid on one split, one grid point
on splits of different lengths, an event task) that keep the same epochs with the same scores."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from audiocnn.hear.batched import fit_batched
from audiocnn.hear.frames import Frames
from audiocnn.hear import predictor
from audiocnn.hear.predictor import DownstreamMLP, fit, new_model
from audiocnn.hear.protocol import GRID, TaskSpec, sample_grid
from audiocnn.hear.stacked import StackedAdam, StackedMLP

CPU = torch.device("cpu")
SCENE = TaskSpec("t", "scene", "multiclass", ["a", "b", "c"], ["top1_acc", "mAP"])


def _scene(n: int, seed: int, dim: int = 12) -> Frames:
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    x = torch.randn(n, dim, generator=g) + 0.9 * F.one_hot(y, dim).float()
    return Frames(x, torch.eye(3)[y])


def _small(conf: dict, **over) -> dict:
    return {**conf, "hidden_dim": 24, "max_epochs": 45, "patience": 4, "batch_size": 16, **over}


def _no_dropout(models: list[DownstreamMLP]) -> list[DownstreamMLP]:
    for m in models:
        for layer in m.modules():
            if isinstance(layer, torch.nn.Dropout):
                layer.p = 0.0
    return models


def _same_training(seq, bat, tests: list[Frames], spec: TaskSpec = SCENE):
    for s, b, test in zip(seq, bat, tests):
        assert (b.epoch, b.epochs, b.postprocessing) == (s.epoch, s.epochs, s.postprocessing)
        assert b.validation_score == pytest.approx(s.validation_score, abs=1e-6)
        ts, tb = predictor.test_scores(spec, s, test), predictor.test_scores(spec, b, test)
        # one step agrees to float rounding (test above); over hundreds of Adam steps the weights drift apart by
        # ~1e-3 relative, which can swap two near-tied ranks in mAP
        assert tb == pytest.approx(ts, abs=2e-3)


# --- the pieces ----------------------------------------------------------------------------------------------------

def test_stacked_forward_and_gradients_are_each_members():
    torch.manual_seed(0)
    models = _no_dropout([DownstreamMLP(10, 4, hidden_layers=2, hidden_dim=16, initialization=i)
                          for i in ("xavier_uniform", "xavier_normal", "xavier_uniform")])
    stack = StackedMLP(copy.deepcopy(models))
    lengths = [9, 14, 6]                                    # members with their own rows, padded to 14
    xs = [torch.randn(n, 10) for n in lengths]
    ys = [torch.randint(0, 4, (n,)) for n in lengths]
    x = torch.zeros(3, 14, 10)
    for i, xi in enumerate(xs):
        x[i, :len(xi)] = xi
    rows = torch.arange(14) < torch.tensor(lengths)[:, None]
    logits = stack.forward(x, training=True, rows=rows)
    sum(F.cross_entropy(logits[i, :n], ys[i]) for i, n in enumerate(lengths)).backward()
    for i, m in enumerate(models):
        m.train()
        out = m(xs[i])
        F.cross_entropy(out, ys[i]).backward()
        torch.testing.assert_close(logits[i, :lengths[i]], out, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(stack.weight[0].grad[i], m.hidden[0].weight.grad, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(stack.weight[1].grad[i], m.hidden[4].weight.grad, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(stack.gamma[1].grad[i], m.hidden[5].weight.grad, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(stack.bias[-1].grad[i], m.head.bias.grad, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(stack.running_var[1][i], m.hidden[5].running_var, rtol=1e-5, atol=1e-6)
        m.eval()
        torch.testing.assert_close(stack.forward(xs[i], training=False)[i], m(xs[i]), rtol=1e-5, atol=1e-5)
        restored = stack.load_member(copy.deepcopy(m), stack.member(i))
        for (k, a), b in zip(m.state_dict().items(), restored.state_dict().values()):
            torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6, msg=k)


def test_stacked_adam_is_torch_adam_per_member():
    torch.manual_seed(1)
    lrs = [3.2e-3, 1e-3, 1e-4]
    start = torch.randn(3, 5, 7)
    stacked = start.clone().requires_grad_(True)
    mine = StackedAdam([stacked], torch.tensor(lrs))
    refs = [start[i].clone().requires_grad_(True) for i in range(3)]
    theirs = [torch.optim.Adam([p], lr=lr) for p, lr in zip(refs, lrs)]
    for step in range(40):
        grad = torch.randn(3, 5, 7) * (10.0 ** -(step % 4))   # small gradients too, where eps matters
        active = None if step % 5 else torch.tensor([True, step % 10 != 0, False])
        stacked.grad = grad.clone()
        mine.step(active)
        for i, (p, opt) in enumerate(zip(refs, theirs)):
            if active is None or active[i]:
                p.grad = grad[i].clone()
                opt.step()
        for i, p in enumerate(refs):
            torch.testing.assert_close(stacked.detach()[i], p.detach(), rtol=1e-6, atol=1e-7)
    assert mine.steps.tolist() == [40, 36, 32]


# --- whole trainings -----------------------------------------------------------------------------------------------

def test_grid_batched_equals_sequential():
    train, valid, test = _scene(70, 0), _scene(40, 1), _scene(40, 2)
    confs = [_small(c, dropout=0.0) for c in sample_grid(GRID)]
    assert {c["hidden_layers"] for c in confs} == {1, 2}
    torch.manual_seed(3)
    models = _no_dropout([new_model(SCENE, c, 12, CPU) for c in confs])
    seq = [fit(SCENE, c, train, valid, model=copy.deepcopy(m)) for c, m in zip(confs, models)]
    bat = fit_batched(SCENE, confs, [train] * 8, [valid] * 8, models=copy.deepcopy(models))
    assert len({s.epochs for s in seq}) > 2                   # members stop at different epochs
    _same_training(seq, bat, [test] * 8)


def test_one_member_with_dropout_draws_as_the_sequential_one():
    train, valid = _scene(50, 4), _scene(30, 5)
    conf = _small(sample_grid(GRID)[1])
    assert conf["dropout"] == 0.1
    torch.manual_seed(6)
    model = new_model(SCENE, conf, 12, CPU)
    torch.manual_seed(7)
    seq = fit(SCENE, conf, train, valid, model=copy.deepcopy(model))
    torch.manual_seed(7)
    bat = fit_batched(SCENE, [conf], [train], [valid], models=[copy.deepcopy(model)])
    _same_training([seq], bat, [valid])


def test_splits_of_different_lengths_batched_equal_sequential():
    # 49 rows = 3 batches of 16 and one of 1 (dropped); 40 = 2 x 16 + 8; 20 = 16 + 4: masks and idle members
    lengths = [49, 40, 20]
    trains = [_scene(n, 10 + i) for i, n in enumerate(lengths)]
    valids = [_scene(n, 20 + i) for i, n in enumerate([30, 21, 25])]
    conf = _small(sample_grid(GRID)[4], dropout=0.0, patience=3)
    torch.manual_seed(8)
    models = _no_dropout([new_model(SCENE, conf, 12, CPU) for _ in lengths])
    seq = [fit(SCENE, conf, t, v, model=copy.deepcopy(m)) for t, v, m in zip(trains, valids, models)]
    bat = fit_batched(SCENE, [conf] * 3, trains, valids, models=copy.deepcopy(models))
    _same_training(seq, bat, valids)
    assert [f.model.hidden[1].num_batches_tracked.item() for f in bat] == [
        f.model.hidden[1].num_batches_tracked.item() for f in seq]


def _events(files: int, seed: int) -> Frames:
    """Files of 30 frames at 50 ms with label a active in one run of 8-14 frames; embeddings see it noisily."""
    rng = np.random.default_rng(seed)
    x, y, file, time_, events, names = [], [], [], [], {}, []
    for f in range(files):
        start = int(rng.integers(2, 12))
        length = int(rng.integers(8, 15))
        on = np.zeros(30, np.float32)
        on[start:start + length] = 1
        x.append(rng.standard_normal((30, 6)).astype(np.float32) + 1.5 * on[:, None])
        y.append(np.stack([on, np.zeros(30, np.float32)], 1))
        file.append(np.full(30, f))
        time_.append(np.arange(30) * 50.0)
        names.append(f"f{f}.wav")
        events[names[-1]] = [{"label": "a", "start": 50.0 * start, "end": 50.0 * (start + length - 1)}]
    return Frames(torch.from_numpy(np.concatenate(x)), torch.from_numpy(np.concatenate(y)),
                  file=np.concatenate(file), time=np.concatenate(time_), names=names, events=events)


def test_event_task_batched_equals_sequential():
    spec = TaskSpec("ev", "event", "multilabel", ["a", "b"], ["event_onset_200ms_fms", "event_onset_50ms_fms"],
                    postprocessing_grid={"median_filter_ms": [100, 250], "min_duration": [125, 250]})
    train, valid, test = _events(8, 0), _events(4, 1), _events(4, 2)
    confs = [_small(c, dropout=0.0, batch_size=64, patience=3, max_epochs=30) for c in sample_grid(GRID)[:4]]
    torch.manual_seed(9)
    models = _no_dropout([new_model(spec, c, 6, CPU) for c in confs])
    seq = [fit(spec, c, train, valid, model=copy.deepcopy(m)) for c, m in zip(confs, models)]
    bat = fit_batched(spec, confs, [train] * 4, [valid] * 4, models=copy.deepcopy(models))
    assert any(s.validation_score > 0.5 for s in seq)
    _same_training(seq, bat, [test] * 4, spec)
