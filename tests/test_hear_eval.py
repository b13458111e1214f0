"""HEAR downstream evaluator: scores against scikit-learn, SciPy and sed_eval; heareval's grid sampling and fold
rotation; end to end on tiny scene and event tasks embedded by a HEAR module written here."""
from __future__ import annotations

import csv
import json
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from audiocnn.hear.embeddings import HearEvalError, frame_labels, heareval_order, read_split
from audiocnn.hear.evaluate import evaluate
from audiocnn.hear.events import EventDecoder
from audiocnn.hear.frames import Frames
from audiocnn.hear.predictor import DownstreamMLP
from audiocnn.hear.protocol import GRID, fold_splits, sample_grid
from audiocnn.hear.report import markdown_table
from audiocnn.hear.scores import (aucroc, average_precision, d_prime, mean_average_precision, onset_f_measure,
                                  onset_true_positives, roc_auc, top1_acc)

SR = 16000
NARROW = {"hidden_dim": [128]}  # the protocol with a narrower predictor: the 1024-wide one is slow on a CPU

# A HEAR module whose embeddings are the log energies of 8 tones in 50 ms frames: tone classes separate.
TOY_MODULE = '''
import math
import torch

FREQS = [300.0, 500.0, 800.0, 1200.0, 1800.0, 2500.0, 3500.0, 5000.0]


class ToyModel(torch.nn.Module):
    sample_rate = 16000
    scene_embedding_size = timestamp_embedding_size = len(FREQS)

    def __init__(self):
        super().__init__()
        t = torch.arange(800) / 16000.0
        w = 2 * math.pi * torch.tensor(FREQS)[:, None] * t
        self.register_buffer("basis", torch.cat([torch.cos(w), torch.sin(w)]).T)


def load_model(model_file_path=""):
    return ToyModel()


def get_timestamp_embeddings(audio, model):
    hop = 800
    x = torch.nn.functional.pad(audio, (hop // 2, hop // 2))
    frames = x.unfold(1, hop, hop)                               # (n, frames, 800), centred on k * 50 ms
    proj = frames @ model.basis
    k = len(FREQS)
    emb = torch.log(proj[..., :k] ** 2 + proj[..., k:] ** 2 + 1e-3)
    ts = torch.arange(frames.shape[1], device=audio.device, dtype=torch.float64) * 50.0
    return emb, ts.expand(audio.shape[0], -1)


def get_scene_embeddings(audio, model):
    return get_timestamp_embeddings(audio, model)[0].mean(1)
'''


@pytest.fixture
def toy_module(tmp_path, monkeypatch):
    folder = tmp_path / "modules"
    folder.mkdir()
    (folder / "toyhear.py").write_text(TOY_MODULE)
    monkeypatch.syspath_prepend(str(folder))
    yield "toyhear"
    sys.modules.pop("toyhear", None)


def _tone(freq: float, seconds: float, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (0.3 * np.sin(2 * np.pi * freq * t + rng.uniform(0, 6.28))).astype(np.float32)


def _write_task(root: Path, name: str, metadata: dict, labels: list[str], splits: dict[str, dict],
                audio: dict[str, dict[str, np.ndarray]], rate: int = SR) -> Path:
    """A HEAR task folder written file by file (independent of audiocnn.hear.tasks)."""
    task = root / name
    task.mkdir(parents=True)
    (task / "task_metadata.json").write_text(json.dumps({"task_name": name, "version": "test", **metadata}))
    with open(task / "labelvocabulary.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["idx", "label"])
        w.writerows(enumerate(labels))
    for split, entries in splits.items():
        (task / f"{split}.json").write_text(json.dumps(entries))
        (task / str(rate) / split).mkdir(parents=True)
        for filename, wave in audio[split].items():
            sf.write(task / str(rate) / split / filename, wave, rate, subtype="PCM_16")
    return task


def _scene_task(root: Path, name: str, split_names: list[str], per_class: int, seed: int = 0, **metadata) -> Path:
    rng = np.random.default_rng(seed)
    labels = ["low", "mid", "high"]
    freqs = {"low": 300.0, "mid": 1200.0, "high": 3500.0}
    splits, audio = {}, {}
    for split in split_names:
        splits[split], audio[split] = {}, {}
        for label in labels:
            for i in range(per_class):
                name_ = f"{split}-{label}-{i}.wav"
                wave = _tone(freqs[label] * rng.uniform(0.97, 1.03), 0.5, rng)
                audio[split][name_] = wave + 0.05 * rng.standard_normal(len(wave)).astype(np.float32)
                splits[split][name_] = [label]
    meta = {"embedding_type": "scene", "prediction_type": "multiclass", "sample_duration": 0.5,
            "evaluation": ["top1_acc", "mAP", "d_prime", "aucroc"], **metadata}
    return _write_task(root, name, meta, labels, splits, audio)


def _event_task(root: Path, name: str, files: dict[str, int], seed: int = 0) -> Path:
    """2 s files with one or two tone bursts (label a: 500 Hz, b: 2500 Hz) of 300-500 ms."""
    rng = np.random.default_rng(seed)
    splits, audio = {}, {}
    for split, n in files.items():
        splits[split], audio[split] = {}, {}
        for i in range(n):
            wave = 0.02 * rng.standard_normal(2 * SR).astype(np.float32)
            events = []
            for label, freq, lo, hi in (("a", 500.0, 0.1, 0.6), ("b", 2500.0, 1.0, 1.4)):
                if i % 3 == 1 and label == "b":
                    continue
                start = rng.uniform(lo, hi)
                length = rng.uniform(0.3, 0.5)
                a, b = int(start * SR), int((start + length) * SR)
                wave[a:b] += _tone(freq, (b - a) / SR, rng)
                events.append({"label": label, "start": round(1000 * start, 1),
                               "end": round(1000 * (start + length), 1)})
            splits[split][f"{split}-{i}.wav"] = events
            audio[split][f"{split}-{i}.wav"] = wave
    meta = {"embedding_type": "event", "prediction_type": "multilabel", "sample_duration": 2.0,
            "split_mode": "trainvaltest", "evaluation": ["event_onset_200ms_fms", "event_onset_50ms_fms"]}
    return _write_task(root, name, meta, ["a", "b"], splits, audio)


# --- scores --------------------------------------------------------------------------------------------------------

def test_scene_scores_match_sklearn_and_scipy():
    from scipy.stats import norm
    from sklearn.metrics import average_precision_score, roc_auc_score

    rng = np.random.default_rng(0)
    for _ in range(50):
        n, k = int(rng.integers(4, 40)), int(rng.integers(1, 6))
        y = (rng.random((n, k)) < 0.4).astype(np.float32)
        y[rng.integers(n), :] = 1 - y[rng.integers(n), :]
        p = np.round(rng.random((n, k)), 1).astype(np.float32)          # many ties
        assert average_precision(p, y).numpy() == pytest.approx(
            np.atleast_1d(average_precision_score(y, p, average=None)), abs=1e-12)
        both = (y.sum(0) > 0) & (y.sum(0) < n)
        if both.all():
            ref = roc_auc_score(y, p, average=None)
            assert roc_auc(p, y).numpy() == pytest.approx(np.atleast_1d(ref), abs=1e-12)
            assert aucroc(p, y) == pytest.approx(roc_auc_score(y, p, average="macro"), abs=1e-12)
            assert d_prime(p, y) == pytest.approx(np.mean(norm.ppf(ref) * np.sqrt(2)), abs=1e-9)
        else:
            assert np.isnan(aucroc(p, y)) and np.isnan(d_prime(p, y))
    # a label without positives counts 0 in mAP, as scikit-learn does
    y = np.array([[1, 0, 0], [0, 1, 0], [1, 0, 0], [0, 1, 0]], np.float32)
    p = np.array([[.6, .3, .1], [.2, .7, .1], [.4, .5, .1], [.3, .3, .4]], np.float32)
    with pytest.warns(UserWarning):
        ref = average_precision_score(y, p, average="macro")
    assert mean_average_precision(p, y) == pytest.approx(ref)
    assert top1_acc(p, y) == pytest.approx(2 / 4)  # rows 3 and 4 wrong: 0.4 < 0.5, 0.3 < 0.4


def _max_matching(ref, est, collar):
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import maximum_bipartite_matching

    hits = np.array([[r[0] == e[0] and abs(r[1] - e[1]) <= collar for e in est] for r in ref], bool)
    if not hits.size:
        return 0
    return int((maximum_bipartite_matching(csr_matrix(hits), perm_type="column") >= 0).sum())


def test_onset_matching_is_a_maximum_matching():
    rng = np.random.default_rng(1)
    for _ in range(300):
        ref = [(int(rng.integers(3)), float(np.round(rng.uniform(0, 3), 2))) for _ in range(rng.integers(0, 12))]
        est = [(int(rng.integers(3)), float(np.round(rng.uniform(0, 3), 2))) for _ in range(rng.integers(0, 12))]
        arr = lambda ev: (np.array([e[0] for e in ev], np.int64), np.array([e[1] for e in ev]))  # noqa: E731
        assert onset_true_positives(*arr(ref), *arr(est), 0.2) == _max_matching(ref, est, 0.2)


def test_onset_f_measure_by_hand():
    ref = {"f1": [{"label": "a", "start": 1000, "end": 2000}, {"label": "b", "start": 1000, "end": 1500}],
           "f2": [{"label": "a", "start": 500, "end": 900}],
           "f3": [{"label": "a", "start": 0, "end": 100}]}               # not scored: f3 has no estimate entry
    est = {"f1": [{"label": "a", "start": 1150, "end": 1900},          # hit at 200 ms, miss at 50 ms
                  {"label": "a", "start": 1190, "end": 1300},          # second estimate for one reference
                  {"label": "b", "start": 1020, "end": 1400}],         # hit at both collars
           "f2": []}
    f, p, r = onset_f_measure(ref, est, collar=0.2)
    assert (p, r) == (pytest.approx(2 / 3), pytest.approx(2 / 3)) and f == pytest.approx(2 / 3)
    f50, p50, r50 = onset_f_measure(ref, est, collar=0.05)
    assert p50 == pytest.approx(1 / 3) and r50 == pytest.approx(1 / 3)
    # sed_eval's conventions: no estimates -> precision NaN -> F NaN
    assert np.isnan(onset_f_measure(ref, {"f1": []}, collar=0.2)[0])


def test_onset_f_measure_matches_sed_eval():
    sed_eval = pytest.importorskip("sed_eval")
    from dcase_util.containers import MetaDataContainer

    rng = np.random.default_rng(2)
    files = [f"f{i}.wav" for i in range(6)]

    def events(n):
        return {f: [{"label": str(rng.choice(["x", "y"])), "start": float(s), "end": float(s) + 200.0}
                    for s in np.round(rng.uniform(0, 4000, rng.integers(0, n)), 0)] for f in files}

    for _ in range(10):
        ref, est = events(8), events(10)
        for collar in (0.2, 0.05):
            metric = sed_eval.sound_event.EventBasedMetrics(event_label_list=["x", "y"], evaluate_onset=True,
                                                            evaluate_offset=False, t_collar=collar)
            cont = lambda d: MetaDataContainer([{"event_label": e["label"], "event_onset": e["start"] / 1000,  # noqa
                                                 "event_offset": e["end"] / 1000, "file": f}
                                                for f, ev in d.items() for e in ev])
            r, e = cont(ref), cont(est)
            for f in est:
                metric.evaluate(reference_event_list=r.filter(filename=f), estimated_event_list=e.filter(filename=f))
            expected = metric.results_overall_metrics()["f_measure"]
            got = onset_f_measure(ref, est, collar=collar)
            assert got[0] == pytest.approx(expected["f_measure"], nan_ok=True)
            assert got[1] == pytest.approx(expected["precision"], nan_ok=True)


# --- protocol pieces -----------------------------------------------------------------------------------------------

def test_grid_sampling_is_heareval_s():
    # heareval 2021.1.3: seed_everything(42); confs = list(ParameterGrid(PARAM_GRID)); random.shuffle(confs)
    expected = [(1, "xavier_normal", 1e-4), (2, "xavier_uniform", 1e-3), (1, "xavier_normal", 1e-3),
                (1, "xavier_normal", 3.2e-4), (2, "xavier_normal", 3.2e-4), (2, "xavier_uniform", 3.2e-4),
                (2, "xavier_normal", 3.2e-3), (2, "xavier_uniform", 3.2e-3)]
    got = [(c["hidden_layers"], c["initialization"], c["lr"]) for c in sample_grid(GRID)]
    assert got == expected
    assert sample_grid(GRID) == sample_grid(GRID)
    assert all(c["patience"] == 20 and c["max_epochs"] == 500 and c["check_val_every_n_epoch"] == 3
               and c["batch_size"] == 1024 and c["hidden_dim"] == 1024 for c in sample_grid(GRID))


def test_fold_rotation():
    folds = ["fold02", "fold00", "fold01", "fold03"]
    got = fold_splits("presplit_kfold", folds)
    assert got == [{"train": ["fold02", "fold03"], "valid": ["fold01"], "test": ["fold00"]},
                   {"train": ["fold00", "fold03"], "valid": ["fold02"], "test": ["fold01"]},
                   {"train": ["fold00", "fold01"], "valid": ["fold03"], "test": ["fold02"]},
                   {"train": ["fold01", "fold02"], "valid": ["fold00"], "test": ["fold03"]}]
    assert fold_splits("trainvaltest", ["train", "valid", "test"]) == [
        {"train": ["train"], "valid": ["valid"], "test": ["test"]}]
    with pytest.raises(HearEvalError):
        fold_splits("new_split_kfold", ["fold00", "fold01"])


def test_predictor_layers_and_init():
    torch.manual_seed(0)
    m = DownstreamMLP(512, 7, hidden_layers=2, hidden_dim=1024, initialization="xavier_normal")
    kinds = [type(layer).__name__ for layer in m.hidden] + [type(m.head).__name__]
    assert kinds == ["Linear", "BatchNorm1d", "Dropout", "ReLU"] * 2 + ["Linear"]
    assert m.hidden[2].p == 0.1
    # Xavier normal: std = gain * sqrt(2 / (fan_in + fan_out)); gain 1 first, sqrt(2) after a ReLU
    assert m.hidden[0].weight.std().item() == pytest.approx(np.sqrt(2 / (512 + 1024)), rel=0.02)
    assert m.hidden[4].weight.std().item() == pytest.approx(np.sqrt(2) * np.sqrt(2 / 2048), rel=0.02)
    assert m.head.weight.std().item() == pytest.approx(np.sqrt(2) * np.sqrt(2 / (1024 + 7)), rel=0.05)


def _reference_events(probs, times, median_ms, min_ms):
    """heareval's create_events_from_prediction for one file, written plainly with SciPy."""
    from scipy.ndimage import median_filter

    width = int(round(median_ms / np.mean(np.diff(times))))
    p = median_filter(probs, size=(width, 1)) if width else probs
    active = p > 0.5
    out = []
    for label in range(active.shape[1]):
        idx = np.flatnonzero(active[:, label])
        if not len(idx):
            continue
        for run in np.split(idx, np.flatnonzero(np.diff(idx) > 1) + 1):
            start, end = times[run[0]], times[run[-1]]
            if end - start >= min_ms:
                out.append((label, start, end))
    return sorted(out)


def test_event_decoding_matches_scipy_median_filter():
    rng = np.random.default_rng(3)
    lengths = [1 + int(rng.integers(2, 40)) for _ in range(12)] + [2, 3]
    steps = rng.choice([20.0, 40.0, 50.0, 62.5, 100.0], len(lengths))
    names = [f"f{i}" for i in range(len(lengths))]
    file = np.concatenate([np.full(n, i) for i, n in enumerate(lengths)])
    time_ = np.concatenate([np.arange(n) * s for n, s in zip(lengths, steps)])
    smooth = np.repeat(rng.random((len(file) // 4 + 1, 2)), 4, axis=0)[:len(file)]
    probs = np.clip(smooth + 0.3 * rng.standard_normal((len(file), 2)), 0, 1).astype(np.float32)
    perm = rng.permutation(len(file))                                   # rows in any order
    frames = Frames(torch.zeros(len(file), 1), torch.zeros(len(file), 2), file=file[perm], time=time_[perm],
                    names=names)
    decoder = EventDecoder(frames, ["a", "b"], {"median_filter_ms": [0, 100, 250], "min_duration": [0, 125]})
    decoded = decoder.decode(torch.from_numpy(probs[perm]))
    for conf, (fi, label, start, end) in decoded.items():
        c = dict(conf)
        for i, n in enumerate(lengths):
            rows = file == i
            expected = _reference_events(probs[rows], time_[rows], c["median_filter_ms"], c["min_duration"])
            mine = sorted(zip(label[fi == i].tolist(), start[fi == i].tolist(), end[fi == i].tolist()))
            assert mine == expected, (conf, i)


def test_frame_labels_and_row_order():
    events = [{"label": "a", "start": 100.0, "end": 300.0}, {"label": "b", "start": 250.0, "end": 250.0}]
    assert frame_labels(events, np.array([50.0, 100.0, 250.0, 300.0, 300.00009, 300.0002])) == [
        [], ["a"], ["a", "b"], ["a"], ["a"], []]
    import random
    prng = random.Random(0)
    a, b = ["x1", "x2", "x3"], ["y1", "y2"]
    prng.shuffle(a)
    prng.shuffle(b)
    assert heareval_order(["s1", "s2"], {"s1": ["x1", "x2", "x3"], "s2": ["y1", "y2"]}) == {"s1": a, "s2": b}


# --- end to end ----------------------------------------------------------------------------------------------------

def test_scene_task_end_to_end_and_cache(tmp_path, toy_module, capsys):
    tasks = tmp_path / "tasks"
    _scene_task(tasks, "tones", ["train", "valid", "test"], per_class=6, split_mode="trainvaltest")
    _scene_task(tasks, "tones3", ["fold00", "fold01", "fold02"], per_class=4, seed=1,
                split_mode="presplit_kfold", nfolds=3)
    out = tmp_path / "results"
    entry = evaluate(toy_module, tasks, out=out, device="cpu", progress="never", grid=NARROW)
    assert entry["name"] == toy_module and not entry["errors"]
    rec = entry["tasks"]["tones"]
    assert rec["primary"] == "top1_acc" and rec["scores"]["top1_acc"]["mean"] >= 0.9
    assert set(rec["scores"]) == {"top1_acc", "mAP", "d_prime", "aucroc"}
    assert rec["scores"]["top1_acc"]["std"] is None and len(rec["grid"]) == 8
    assert rec["grid_point"]["lr"] in GRID["lr"] and rec["seconds"]["embedding"] > 0
    k = entry["tasks"]["tones3"]
    assert [s["test"] for s in k["splits"]] == [["fold00"], ["fold01"], ["fold02"]]
    assert [s["valid"] for s in k["splits"]] == [["fold01"], ["fold02"], ["fold00"]]
    values = list(k["scores"]["top1_acc"]["splits"].values())
    assert k["scores"]["top1_acc"]["mean"] == pytest.approx(np.mean(values))
    assert k["scores"]["top1_acc"]["std"] == pytest.approx(np.std(values, ddof=1))
    assert all(s["conf"] == k["splits"][0]["conf"] for s in k["splits"])   # the best point, retrained
    md = (out / "scores.md").read_text()
    assert f"| {toy_module} |" in md and "tones (top1_acc)" in md
    doc = json.loads((out / "scores.json").read_text())
    assert doc["models"][toy_module]["tasks"] == entry["tasks"]

    # the embedding folder is heareval's layout and reads back; a re-run reuses it and gives the same scores
    folder = out / "embeddings" / toy_module / "tones"
    split = read_split(folder, "train")
    assert split.x.shape == (18, 8) and split.files is None and all(len(v) == 1 for v in split.labels)
    assert json.loads((folder / "task_metadata.json").read_text())["splits"] == ["train", "valid", "test"]
    again = evaluate(toy_module, tasks, out=out, device="cpu", progress="never", tasks=["tones"], grid=NARROW)
    rec2 = again["tasks"]["tones"]
    assert rec2["embedding_cached"] and rec2["seconds"]["embedding"] == 0.0
    assert rec2["scores"] == rec["scores"]
    assert "tones3" in json.loads((out / "scores.json").read_text())["models"][toy_module]["tasks"]  # kept


def test_event_task_end_to_end(tmp_path, toy_module):
    tasks = tmp_path / "tasks"
    _event_task(tasks, "bursts", {"train": 24, "valid": 6, "test": 6})
    entry = evaluate(toy_module, tasks, out=tmp_path / "out", device="cpu", progress="never", grid=NARROW)
    rec = entry["tasks"]["bursts"]
    assert rec["scores"]["event_onset_200ms_fms"]["mean"] >= 0.8
    assert rec["scores"]["event_onset_50ms_fms"]["mean"] <= rec["scores"]["event_onset_200ms_fms"]["mean"]
    assert rec["grid_point"]["postprocessing"]["median_filter_ms"] == 250
    assert rec["grid_point"]["postprocessing"]["min_duration"] in (125, 250)
    split = read_split(tmp_path / "out" / "embeddings" / toy_module / "bursts", "test")
    assert split.timestamps is not None and len(split.files) == len(split.x) == 6 * 41


def test_embeddings_folder_input_and_errors(tmp_path, toy_module):
    tasks = tmp_path / "tasks"
    _scene_task(tasks, "tones", ["train", "valid", "test"], per_class=3, split_mode="trainvaltest")
    _scene_task(tasks, "tones22k", ["train", "valid", "test"], per_class=1, split_mode="trainvaltest")
    (tasks / "tones22k" / "16000").rename(tasks / "tones22k" / "22050")
    out = tmp_path / "out"
    small = {"max_epochs": [6], "patience": [1]}
    entry = evaluate(toy_module, tasks, out=out, device="cpu", progress="never", grid=small)
    assert "22050" in entry["errors"]["tones22k"] and "16000" in entry["errors"]["tones22k"]
    # the embedding folders alone (as heareval's runner reads them) give the same scores
    again = evaluate(embeddings=out / "embeddings" / toy_module, out=tmp_path / "out2", device="cpu", grid=small)
    assert again["name"] == toy_module and again["tasks"]["tones"]["scores"] == entry["tasks"]["tones"]["scores"]
    assert "| model | tones (top1_acc) |" in markdown_table(json.loads((tmp_path / "out2" / "scores.json").read_text()))
    # a labels pickle that would run code is refused
    folder = out / "embeddings" / toy_module / "tones"
    (folder / "train.target-labels.pkl").write_bytes(pickle.dumps([Path("x")] * 9))
    with pytest.raises(HearEvalError, match="refusing"):
        read_split(folder, "train")
    with pytest.raises(HearEvalError, match="import"):
        evaluate("no_such_hear_module_xyz", tasks, out=out)


def test_cli_hear_eval(tmp_path, toy_module, capsys):
    from audiocnn.cli import main

    tasks = tmp_path / "tasks"
    _scene_task(tasks, "tones", ["train", "valid", "test"], per_class=3, split_mode="trainvaltest")
    assert main(["hear-eval", toy_module, "--tasks-dir", str(tasks), "--out", str(tmp_path / "r"),
                 "--device", "cpu", "--grid-points", "2"]) == 0
    doc = json.loads((tmp_path / "r" / "scores.json").read_text())
    assert len(doc["models"][toy_module]["tasks"]["tones"]["grid"]) == 2
    assert main(["hear-eval", str(tmp_path), "--tasks-dir", str(tasks)]) == 2
    assert "not an audiocnn run" in capsys.readouterr().err


def test_early_stopping_counts_validations_and_keeps_the_first_best(monkeypatch):
    from audiocnn.hear import predictor
    from audiocnn.hear.protocol import TaskSpec

    def scripted(scores):
        it = iter(scores)
        monkeypatch.setattr(predictor._Validator, "__call__", lambda self, logits: (next(it), ()))

    spec = TaskSpec("t", "scene", "multiclass", ["a", "b"], ["top1_acc"])
    x = torch.randn(8, 3)
    data = Frames(x, torch.eye(2)[torch.arange(8) % 2])
    conf = {**sample_grid(GRID)[0], "hidden_dim": 8, "patience": 2}
    scripted([0.5, 0.7, 0.7, 0.6, 0.9])              # validations after epochs 3, 6, 9, 12 (0-based 2, 5, 8, 11)
    fitted = predictor.fit(spec, conf, data, data)
    assert (fitted.epoch, fitted.epochs, fitted.validation_score) == (5, 12, pytest.approx(0.7))
    scripted([float("nan")])                          # a non-finite score stops at once; that model is kept
    fitted = predictor.fit(spec, conf, data, data)
    assert (fitted.epoch, fitted.epochs, fitted.validation_score) == (2, 3, -np.inf)
    scripted([0.5, float("nan")])
    fitted = predictor.fit(spec, conf, data, data)
    assert (fitted.epoch, fitted.epochs, fitted.validation_score) == (2, 6, 0.5)


def test_batched_and_sequential_evaluations_agree(tmp_path, toy_module):
    """Without dropout (the only random draw after the initial weights) both trainers see the same run: the
    same kept epochs per grid point and split, the same chosen point and scores within float drift."""
    from audiocnn.cli import main

    tasks = tmp_path / "tasks"
    _scene_task(tasks, "tones4", ["fold00", "fold01", "fold02", "fold03"], per_class=3, seed=2,
                split_mode="presplit_kfold", nfolds=4)
    grid = {**NARROW, "dropout": [0.0], "max_epochs": [60], "patience": [5]}
    runs = {}
    for batched in (True, False):
        entry = evaluate(toy_module, tasks, out=tmp_path / str(batched), device="cpu", progress="never", grid=grid,
                         batched=batched, log=None)
        runs[batched] = entry["tasks"]["tones4"]
    a, b = runs[True], runs[False]
    assert a["batched"] and not b["batched"]
    assert [g["epoch"] for g in a["grid"]] == [g["epoch"] for g in b["grid"]]
    assert [g["epochs_run"] for g in a["grid"]] == [g["epochs_run"] for g in b["grid"]]
    assert a["grid_point"] == b["grid_point"]
    assert [s["epoch"] for s in a["splits"]] == [s["epoch"] for s in b["splits"]]
    for metric in ("top1_acc", "mAP"):
        assert a["scores"][metric]["mean"] == pytest.approx(b["scores"][metric]["mean"], abs=2e-3)
    # the flags reach the evaluator
    assert main(["hear-eval", "--embeddings", str(tmp_path / "True" / "embeddings" / toy_module), "--out",
                 str(tmp_path / "cli"), "--device", "cpu", "--grid-points", "1", "--no-batched",
                 "--precision", "bf16"]) == 0
    rec = json.loads((tmp_path / "cli" / "scores.json").read_text())["models"][toy_module]["tasks"]["tones4"]
    assert (rec["batched"], rec["precision"]) == (False, "bf16")
