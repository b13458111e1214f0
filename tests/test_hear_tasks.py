"""HEAR task folders: write/read round trips, validation, WAV format and resampling, yesno word
segmentation, and ``audiocnn hear make-task`` on generated data (no shared datasets needed)."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import soundfile as sf

from audiocnn.cli import main
from audiocnn.hear.make_task import make_task, word_segments
from audiocnn.hear.tasks import (
    BUILD_MARKER, HearTaskError, TaskMetadata, find_tasks, read_task, write_task,
)

SR = 8000


def _tone(freq: float, seconds: float, sr: int = SR, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(seconds * sr))) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


class Source:
    """An audio source that counts its calls: one tone per file, its frequency from the name."""

    def __init__(self, seconds: float = 0.3, fail_after: int | None = None):
        self.seconds, self.fail_after, self.calls = seconds, fail_after, []

    def __call__(self, split: str, filename: str):
        if self.fail_after is not None and len(self.calls) >= self.fail_after:
            raise KeyboardInterrupt  # an interrupted build
        self.calls.append((split, filename))
        return _tone(200.0 + 100 * (len(self.calls) % 7), self.seconds), SR


def _scene(**kw) -> TaskMetadata:
    args = dict(task_name="toy", version="test-1", embedding_type="scene", prediction_type="multiclass",
                split_mode="trainvaltest", evaluation=["top1_acc", "mAP"], sample_duration=0.25,
                extra={"mode": "full", "notes": {"why": "kept"}})
    args.update(kw)
    return TaskMetadata(**args)


SCENE_SPLITS = {"train": {"a.wav": ["cat"], "b.wav": ["dog"], "c.wav": ["cat"]},
                "valid": {"d.wav": ["dog"]}, "test": {"e.wav": ["bird"]}}
LABELS = ["cat", "dog", "bird"]


def test_scene_round_trip(tmp_path):
    source = Source()
    task_dir = write_task(tmp_path, _scene(), LABELS, SCENE_SPLITS, source, sample_rates=[16000, 22050],
                          progress="never")
    assert task_dir == tmp_path / "toy"
    task = read_task(task_dir)
    assert task.metadata == _scene()
    assert task.labels == LABELS and task.splits == SCENE_SPLITS
    assert task.split_names() == ["train", "valid", "test"] and task.sample_rates() == [16000, 22050]
    assert task.audio_path("valid", "d.wav", 22050) == task_dir / "22050" / "valid" / "d.wav"
    assert task.audio_path("valid", "d.wav", 22050).is_file()
    # every source file decoded once, whatever the number of rates
    assert sorted(source.calls) == sorted((s, f) for s, v in SCENE_SPLITS.items() for f in v)
    meta = json.loads((task_dir / "task_metadata.json").read_text())
    assert list(meta)[:5] == ["task_name", "version", "embedding_type", "prediction_type", "split_mode"]
    assert meta["mode"] == "full" and meta["notes"] == {"why": "kept"} and "nfolds" not in meta
    assert (task_dir / "labelvocabulary.csv").read_text() == "idx,label\n0,cat\n1,dog\n2,bird\n"
    assert not (task_dir / BUILD_MARKER).exists()


def test_event_kfold_round_trip(tmp_path):
    meta = _scene(task_name="ev", embedding_type="event", prediction_type="multilabel",
                  split_mode="new_split_kfold", nfolds=3, sample_duration=None,
                  evaluation=["event_onset_200ms_fms", "event_onset_50ms_fms"], extra={})
    splits = {"fold00": {"x.wav": [{"label": "yes", "start": 10.0, "end": 120.5},
                                   {"label": "no", "start": 150, "end": 150}]},
              "fold01": {"y.wav": []},
              "fold02": {"z.wav": [{"label": "no", "start": 0.0, "end": 299.0}]}}
    write_task(tmp_path, meta, ["no", "yes"], splits, Source(), sample_rates=[16000], progress="never")
    task = read_task(tmp_path / "ev")
    assert task.metadata == meta and task.splits == splits
    assert task.split_names() == ["fold00", "fold01", "fold02"]
    assert json.loads((tmp_path / "ev" / "task_metadata.json").read_text())["nfolds"] == 3


def test_wav_format_trim_and_pad(tmp_path):
    long, short = _tone(440.0, 0.4), _tone(440.0, 0.1)
    waves = {"long.wav": long, "short.wav": short}
    splits = {"train": {"long.wav": ["cat"]}, "valid": {"short.wav": ["cat"]}, "test": {}}
    write_task(tmp_path, _scene(sample_duration=0.25), ["cat"], splits, lambda s, f: (waves[f], SR),
               sample_rates=[8000, 22050], progress="never")
    for rate in (8000, 22050):
        for split, name in (("train", "long.wav"), ("valid", "short.wav")):
            path = tmp_path / "toy" / str(rate) / split / name
            info = sf.info(str(path))
            assert (info.format, info.subtype, info.channels, info.samplerate) == ("WAV", "PCM_16", 1, rate)
            assert info.frames == round(0.25 * rate)
    # 8 kHz needs no resampling: trimmed at the end, padded with zeros at the end
    got_long, _ = sf.read(str(tmp_path / "toy" / "8000" / "train" / "long.wav"), dtype="float32")
    np.testing.assert_allclose(got_long, long[:2000], atol=1 / 32767)
    got_short, _ = sf.read(str(tmp_path / "toy" / "8000" / "valid" / "short.wav"), dtype="float32")
    np.testing.assert_allclose(got_short[:800], short, atol=1 / 32767)
    assert not got_short[800:].any()


def test_resampled_tone_keeps_its_frequency_and_level(tmp_path):
    freq = 1234.5
    wave = _tone(freq, 1.0, amp=0.5)
    splits = {"train": {"t.wav": ["cat"]}, "valid": {}, "test": {}}
    rates = [16000, 22050, 44100]
    write_task(tmp_path, _scene(sample_duration=None), ["cat"], splits, lambda s, f: (wave, SR),
               sample_rates=rates, progress="never")
    for rate in rates:
        x, sr = sf.read(str(tmp_path / "toy" / str(rate) / "train" / "t.wav"), dtype="float64")
        assert sr == rate and len(x) == rate  # 1 s
        spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
        f = np.fft.rfftfreq(len(x), 1 / sr)
        assert abs(f[np.argmax(spec)] - freq) <= 1.0  # 1 Hz bins
        core = x[sr // 10: -sr // 10]  # away from the filter's edge effects
        assert np.sqrt(np.mean(core ** 2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.01)
        # nothing new above the source's Nyquist frequency (no imaging)
        assert spec[f > SR / 2 + 200].max() < 1e-3 * spec.max()


@pytest.mark.parametrize("corrupt, words", [
    (lambda d: (d / "train.json").write_text(json.dumps({"a.wav": ["cow"]})), ["train.json", "cow"]),
    (lambda d: (d / "valid.json").unlink(), ["valid.json", "missing"]),
    (lambda d: (d / "test.json").write_text(json.dumps({"a.wav": ["cat"]})), ["a.wav", "one split"]),
    (lambda d: (d / "test.json").write_text(json.dumps({"e.wav": ["cat", "dog"]})), ["test.json", "exactly one"]),
    (lambda d: (d / "labelvocabulary.csv").write_text("id,name\n0,cat\n"), ["labelvocabulary.csv", "idx,label"]),
    (lambda d: (d / "task_metadata.json").write_text(json.dumps({"task_name": "toy"})), ["task_metadata.json",
                                                                                         "version"]),
    (lambda d: shutil.rmtree(d / "16000" / "valid"), ["d.wav", "missing"]),
])
def test_read_task_reports_what_is_wrong(tmp_path, corrupt, words):
    task_dir = write_task(tmp_path, _scene(), LABELS, SCENE_SPLITS, Source(), sample_rates=[16000],
                          progress="never")
    corrupt(task_dir)
    with pytest.raises(HearTaskError) as e:
        read_task(task_dir)
    for w in words:
        assert w in str(e.value)


def test_event_end_before_start_is_refused(tmp_path):
    meta = _scene(task_name="ev", embedding_type="event", prediction_type="multilabel", sample_duration=None)
    good = {"train": {"x.wav": [{"label": "yes", "start": 10.0, "end": 20.0}]}, "valid": {}, "test": {}}
    task_dir = write_task(tmp_path, meta, ["yes"], good, Source(), sample_rates=[16000], progress="never")
    (task_dir / "train.json").write_text(json.dumps({"x.wav": [{"label": "yes", "start": 30.0, "end": 20.0}]}))
    with pytest.raises(HearTaskError, match=r"train\.json: x\.wav, event 0 .*start=30\.0 ms, end=20\.0 ms"):
        read_task(task_dir)
    # the writer refuses the same before writing anything
    bad = {"train": {"x.wav": [{"label": "yes", "start": 30.0, "end": 20.0}]}, "valid": {}, "test": {}}
    with pytest.raises(HearTaskError, match="start <= end"):
        write_task(tmp_path / "new", meta, ["yes"], bad, Source(), sample_rates=[16000], progress="never")
    assert not (tmp_path / "new").exists()
    # an event past the audio's end, or cut by sample_duration
    late = {"train": {"x.wav": [{"label": "yes", "start": 100.0, "end": 900.0}]}, "valid": {}, "test": {}}
    with pytest.raises(HearTaskError, match="after the end of its audio"):
        write_task(tmp_path / "late", meta, ["yes"], late, Source(seconds=0.3), sample_rates=[16000],
                   progress="never")
    with pytest.raises(HearTaskError, match="ends at 900.0 ms, after sample_duration 0.5"):
        write_task(tmp_path / "cut", _scene(task_name="ev", embedding_type="event", prediction_type="multilabel",
                                            sample_duration=0.5), ["yes"], late, Source(), sample_rates=[16000])


def test_write_refuses_bad_labels_and_missing_splits(tmp_path):
    with pytest.raises(HearTaskError, match="'cow' is not in labelvocabulary.csv"):
        write_task(tmp_path, _scene(), LABELS, {**SCENE_SPLITS, "test": {"e.wav": ["cow"]}}, Source(),
                   sample_rates=[16000])
    with pytest.raises(HearTaskError, match="missing test.json"):
        write_task(tmp_path, _scene(), LABELS, {"train": {}, "valid": {}}, Source(), sample_rates=[16000])
    with pytest.raises(HearTaskError, match="nfolds"):
        write_task(tmp_path, _scene(split_mode="presplit_kfold"), LABELS, {"fold00": {}}, Source(),
                   sample_rates=[16000])
    assert not any(tmp_path.iterdir())


def test_find_tasks_skips_hidden_and_unfinished(tmp_path):
    write_task(tmp_path, _scene(task_name="b"), LABELS, SCENE_SPLITS, Source(), sample_rates=[16000],
               progress="never")
    write_task(tmp_path, _scene(task_name="a"), LABELS, SCENE_SPLITS, Source(), sample_rates=[16000],
               progress="never")
    shutil.copytree(tmp_path / "a", tmp_path / ".a-backup")
    (tmp_path / "unfinished").mkdir()
    (tmp_path / "notes.txt").write_text("x")
    assert find_tasks(tmp_path) == [tmp_path / "a", tmp_path / "b"]
    assert find_tasks(tmp_path / "b") == [tmp_path / "b"]
    with pytest.raises(HearTaskError, match="no such folder"):
        find_tasks(tmp_path / "nope")


def test_rerun_refuses_overwrites_and_resumes(tmp_path):
    write_task(tmp_path, _scene(), LABELS, SCENE_SPLITS, Source(), sample_rates=[16000], progress="never")
    with pytest.raises(HearTaskError, match="already exists; pass --overwrite"):
        write_task(tmp_path, _scene(), LABELS, SCENE_SPLITS, Source(), sample_rates=[16000])
    (tmp_path / "toy" / "stale.txt").write_text("from the old build")
    write_task(tmp_path, _scene(), LABELS, SCENE_SPLITS, Source(), sample_rates=[16000], overwrite=True,
               progress="never")
    assert not (tmp_path / "toy" / "stale.txt").exists()

    # interrupted after 2 of 5 files: not a task yet; the same build again decodes only the other 3
    out = tmp_path / "second"
    with pytest.raises(KeyboardInterrupt):
        write_task(out, _scene(), LABELS, SCENE_SPLITS, Source(fail_after=2), sample_rates=[16000],
                   progress="never")
    assert find_tasks(out) == [] and (out / "toy" / BUILD_MARKER).is_file()
    with pytest.raises(HearTaskError, match="interrupted"):
        read_task(out / "toy")
    with pytest.raises(HearTaskError, match="interrupted build with other settings"):
        write_task(out, _scene(), LABELS, SCENE_SPLITS, Source(), sample_rates=[22050])
    again = Source()
    write_task(out, _scene(), LABELS, SCENE_SPLITS, again, sample_rates=[16000], progress="never")
    assert len(again.calls) == 3
    assert read_task(out / "toy").splits == SCENE_SPLITS

    # a folder that is not a task is never replaced
    (tmp_path / "third" / "toy").mkdir(parents=True)
    (tmp_path / "third" / "toy" / "mine.txt").write_text("x")
    with pytest.raises(HearTaskError, match="not a HEAR task folder"):
        write_task(tmp_path / "third", _scene(), LABELS, SCENE_SPLITS, Source(), sample_rates=[16000],
                   overwrite=True)
    assert (tmp_path / "third" / "toy" / "mine.txt").is_file()


# ----------------------------------------------------------------------------------------------
# yesno


def _words(onsets, durations, *, seconds=6.0, seed=0, lead_silence=0.4) -> np.ndarray:
    """Harmonic bursts (speech-like, 150 Hz fundamental) at various levels over low noise; the first
    ``lead_silence`` seconds are near-digital silence, as in several yesno files."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    x = 3e-4 * rng.standard_normal(n)
    x[: int(lead_silence * SR)] *= 1e-3
    ramp = int(0.005 * SR)
    for k, (on, dur) in enumerate(zip(onsets, durations)):
        t = np.arange(int(dur * SR)) / SR
        f0 = 150.0 * (1 + 0.05 * rng.standard_normal())
        burst = sum(np.sin(2 * np.pi * h * f0 * t + rng.uniform(0, 6.3)) / h for h in range(1, 20))
        env = np.ones(len(t))
        env[:ramp] = np.linspace(0, 1, ramp)
        env[-ramp:] = np.linspace(1, 0, ramp)
        level = (0.15, 0.3, 0.2, 0.25)[k % 4]  # 6 dB apart, as the words of one yesno file
        i = int(on * SR)
        x[i:i + len(t)] += level * burst / np.abs(burst).max() * env
    return x.astype(np.float32)


ONSETS = [0.70, 1.25, 1.80, 2.50, 3.05, 3.70, 4.20, 4.90]
DURATIONS = [0.30, 0.42, 0.25, 0.45, 0.35, 0.28, 0.40, 0.33]


def test_word_segments_find_known_bursts():
    found = word_segments(_words(ONSETS, DURATIONS), SR)
    assert len(found) == 8
    for (start, end), on, dur in zip(found, ONSETS, DURATIONS):
        assert abs(start - on) <= 0.020 and abs(end - (on + dur)) <= 0.020
    assert word_segments(np.zeros(SR, np.float32), SR) == []


def test_yesno_task_from_a_generated_folder(tmp_path):
    root = tmp_path / "yesno" / "waves_yesno"
    root.mkdir(parents=True)
    names = ["0_0_1_1_0_1_0_1", "0_1_1_0_0_1_1_0", "1_0_0_0_1_1_1_1", "1_1_0_1_0_0_1_0"]
    for i, name in enumerate(names):
        n = 7 if i == 1 else 8  # one file with a word missing, as 0_1_0_1_0_0_0_0.wav in OpenSLR's copy
        sf.write(str(root / f"{name}.wav"), _words(ONSETS[:n], DURATIONS[:n], seed=i), SR, subtype="PCM_16")
    result = make_task("yesno", tmp_path / "tasks", root=tmp_path / "yesno", sample_rates=[16000],
                       overrides=["data.val_fraction=0.5"], progress="never")
    task = result.task
    assert task.metadata.embedding_type == "event" and task.metadata.sample_duration is None
    assert task.labels == ["no", "yes"]
    assert len(result.left_out) == 1 and "0_1_1_0_0_1_1_0.wav: 7 words found" in result.left_out[0]
    # Kaldi's split: first half by name train (one of the two drawn to valid), second half test
    assert set(task.splits["test"]) == {f"{n}.wav" for n in names[2:]}
    assert len(task.splits["train"]) + len(task.splits["valid"]) == 1
    events = task.splits["test"]["1_0_0_0_1_1_1_1.wav"]
    assert [e["label"] for e in events] == ["yes", "no", "no", "no", "yes", "yes", "yes", "yes"]
    assert [round(e["start"] / 1000, 2) for e in events] == pytest.approx(ONSETS, abs=0.021)
    info = sf.info(str(task.audio_path("test", "1_0_0_0_1_1_1_1.wav", 16000)))
    assert info.samplerate == 16000 and info.frames == 6 * 16000  # own length kept


# ----------------------------------------------------------------------------------------------
# command line


def test_cli_make_task_synthetic(tmp_path, capsys):
    args = ["hear", "make-task", "synthetic", "data.num_classes=3", "data.num_per_class=6", "data.sample_rate=8000",
            "data.duration=0.5", "--root", str(tmp_path / "syn"), "--out", str(tmp_path / "tasks"),
            "--sample-rates", "16000", "22050", "--progress", "never"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert out.startswith("synthetic: train 12, valid 3, test 3 (18 files) at 16000, 22050 Hz in ")
    task = read_task(tmp_path / "tasks" / "synthetic")
    assert task.labels == ["up", "down", "up_down"] and task.metadata.sample_duration == 0.5
    assert task.splits["test"]["down_0005.wav"] == ["down"]
    assert sf.info(str(task.audio_path("train", "up_0000.wav", 22050))).frames == 11025

    assert main(args) == 2
    assert "already exists; pass --overwrite" in capsys.readouterr().err
    assert main(args + ["--overwrite", "--duration", "0.3"]) == 0
    assert read_task(tmp_path / "tasks" / "synthetic").metadata.sample_duration == 0.3


def test_cli_make_task_errors(tmp_path, capsys):
    assert main(["hear", "make-task", "fsdd", "--root", str(tmp_path / "nowhere"), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "nowhere" in err and "not found" in err
    assert main(["hear", "make-task", "esc51", "--out", str(tmp_path)]) == 2
    assert "esc10" in capsys.readouterr().err  # the suggestion
    assert main(["hear", "make-task", "synthetic", "trainer.epochs=3", "--out", str(tmp_path)]) == 2
    assert "data.* settings only" in capsys.readouterr().err
