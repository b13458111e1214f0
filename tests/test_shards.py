"""``data.name: shards``: streaming WebDataset shards from a folder or over HTTP on loopback.

Identity data: every clip of the ``ids`` shard set is a constant wave whose value names it (float32 WAV, exact),
so a batch says which examples it holds. Training data: the synthetic quickstart dataset, sharded.
"""
from __future__ import annotations

import csv
import functools
import json
import http.server
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from audiocnn.config import load_config
from audiocnn.core.errors import DataError
from audiocnn.data.shard_writer import write_shards
from audiocnn.data.shards import load_shards, shard_loaders
from audiocnn.pipelines import train

sys.path.insert(0, str(Path(__file__).parent))
from test_distributed import (  # noqa: E402
    EXACT, RECIPE, TINY, _free_port, assert_close_rows, metrics, the_run, torchrun,
)

N_TRAIN, N_VAL, N_TEST = 48, 10, 6
SR = 8000


def _ids(batch) -> list[int]:
    return (batch.wave[:, 0] * 256 - 1).round().long().tolist()


@pytest.fixture(scope="module")
def ids_set(tmp_path_factory) -> Path:
    """48/10/6 constant clips (value (i + 1) / 256 names clip i), about 5 per shard."""
    base = tmp_path_factory.mktemp("ids")
    rows = []
    for i in range(N_TRAIN + N_VAL + N_TEST):
        split = "train" if i < N_TRAIN else "val" if i < N_TRAIN + N_VAL else "test"
        sf.write(base / f"c{i:03d}.wav", np.full(SR // 2, (i + 1) / 256, np.float32), SR, subtype="FLOAT")
        rows.append({"path": f"c{i:03d}.wav", "label": "abcd"[i % 4], "split": split})
    with open(base / "manifest.csv", "w", newline="") as f:
        w = csv.DictWriter(f, ["path", "label", "split"])
        w.writeheader()
        w.writerows(rows)
    out = base / "shards"
    write_shards("manifest", out, overrides=[f"data.manifest={base / 'manifest.csv'}"], audio_format="wav",
                 shard_size=5 * 16_800, progress="never")
    return out


def _data_cfg(root, *extra):
    return load_config(RECIPE, ["data.name=shards", f"data.root={root}", "data.duration=0.5", "data.batch_size=8",
                                "data.streams=4", "data.shuffle_buffer=3", *extra]).data


def _epoch(loader, epoch: int) -> list[list[int]]:
    loader.dataset.set_epoch(epoch)
    return [sorted(_ids(b)) for b in loader]


@pytest.mark.parametrize("workers", [0, 2])
def test_every_example_once_per_epoch_and_the_same_batches_with_two_ranks(ids_set, workers):
    cfg = _data_cfg(ids_set, f"data.num_workers={workers}")
    shard_set = load_shards(str(ids_set))
    assert len(shard_set.splits["train"]) > 4  # several shards, several per stream
    single = shard_loaders(cfg, shard_set, seed=0)["train"]
    one = _epoch(single, 1)
    assert len(one) == len(single) == N_TRAIN // 8
    assert sorted(i for b in one for i in b) == list(range(N_TRAIN))  # each example once
    ranks = [single.for_rank(r, 2) for r in range(2)]
    parts = [_epoch(r, 1) for r in ranks]
    assert all(len(p) == len(one) for p in parts)
    assert [sorted(a + b) for a, b in zip(*parts)] == one  # step k of both ranks = the single process's step k
    assert not set(i for b in parts[0] for i in b) & set(i for b in parts[1] for i in b)
    two = _epoch(single, 2)
    assert two != one and sorted(i for b in two for i in b) == list(range(N_TRAIN))  # another order, all again


def test_start_at_skips_the_steps_taken(ids_set):
    loader = shard_loaders(_data_cfg(ids_set), load_shards(str(ids_set)), seed=0)["train"]
    full = _epoch(loader, 3)
    loader.start_at(2)
    assert _epoch(loader, 3) == full[2:]
    assert _epoch(loader, 3) == full  # only the next pass


def test_evaluation_in_index_order_and_shared_out_for_gather(ids_set):
    cfg = _data_cfg(ids_set, "data.num_workers=2")
    val = shard_loaders(cfg, load_shards(str(ids_set)), seed=0)["val"]
    assert [i for b in val for i in _ids(b)] == list(range(N_TRAIN, N_TRAIN + N_VAL))
    for r in range(2):
        got = [i for b in val.for_rank(r, 2) for i in _ids(b)]
        assert got == list(range(N_TRAIN + r, N_TRAIN + N_VAL, 2))


def test_stream_settings_are_checked(ids_set):
    shard_set = load_shards(str(ids_set))
    with pytest.raises(DataError, match="data.batch_size=6 must be a multiple of data.streams=4"):
        shard_loaders(_data_cfg(ids_set, "data.batch_size=6"), shard_set, seed=0)
    loader = shard_loaders(_data_cfg(ids_set, "data.streams=2", "data.num_workers=2"), shard_set, seed=0)["train"]
    with pytest.raises(DataError, match="data.streams=2 must be a multiple of the processes x loader workers"):
        loader.for_rank(0, 2)
    with pytest.raises(DataError, match="index.json"):
        load_shards(str(ids_set.parent / "nowhere"))


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def http_root(ids_set):
    """The ids set's folder's parent over HTTP on loopback (``<url>/shards``)."""
    handler = functools.partial(_Quiet, directory=str(ids_set.parent.parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_http_and_brace_patterns_read_what_the_folder_holds(ids_set, http_root):
    url = f"{http_root}/{ids_set.parent.name}/{ids_set.name}"
    folder = _epoch(shard_loaders(_data_cfg(ids_set), load_shards(str(ids_set)), seed=0)["train"], 1)
    over_http = shard_loaders(_data_cfg(url, "data.num_workers=2"), load_shards(url), seed=0)["train"]
    assert _epoch(over_http, 1) == folder
    twice = load_shards("{%s,%s}" % (url, ids_set.as_uri()))  # a brace pattern: two sets read as one
    assert twice.examples("train") == 2 * N_TRAIN
    with pytest.raises(DataError, match="HTTP 404"):
        load_shards(f"{http_root}/missing")


def test_two_gloo_processes_with_workers_see_each_example_once_over_http(ids_set, http_root, tmp_path):
    """Two torchrun processes (gloo), 2 loader workers each, streaming over HTTP: every training example once
    per epoch, no example on both ranks, and step k of both ranks together is the single process's step k."""
    url = f"{http_root}/{ids_set.parent.name}/{ids_set.name}"
    out = tmp_path / "seen.json"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
           f"--master_port={_free_port()}", str(Path(__file__).parent / "shard_ranks.py"), url, str(out), "2", RECIPE]
    proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout
    ranks = json.loads(out.read_text())
    single = shard_loaders(_data_cfg(ids_set), load_shards(str(ids_set)), seed=0)["train"]
    for epoch in ("1", "2"):
        a, b = ranks[0][epoch], ranks[1][epoch]
        assert len(a) == len(b) == N_TRAIN // 8
        assert sorted(i for batch in a + b for i in batch) == list(range(N_TRAIN))
        assert [sorted(x + y) for x, y in zip(a, b)] == _epoch(single, int(epoch))


def test_normaliser_sample_is_bounded(ids_set):
    from audiocnn.data.shards import fit_loader
    cfg = _data_cfg(ids_set, "data.fit_examples=11")
    got = [i for b in fit_loader(cfg, load_shards(str(ids_set)), seed=0) for i in _ids(b)]
    assert got == list(range(11))


def test_a_bad_example_follows_on_error(ids_set, tmp_path):
    import tarfile
    bad = tmp_path / "bad"
    bad.mkdir()
    for f in ids_set.iterdir():
        (bad / f.name).write_bytes(f.read_bytes())
    first = sorted(bad.glob("train-*.tar"))[0]
    with tarfile.open(first) as t:
        members = [(m, t.extractfile(m).read()) for m in t.getmembers()]
    import io
    with tarfile.open(first, "w") as t:
        for m, data in members:
            if m.name.endswith(".wav") and m.name.startswith("train-0000001"):
                data = b"RIFF not audio" + bytes(40)
                m.size = len(data)
            t.addfile(m, io.BytesIO(data))
    shard_set = load_shards(str(bad))
    loader = shard_loaders(_data_cfg(bad, "data.shuffle_buffer=1"), shard_set, seed=0)["train"]
    with pytest.raises(DataError, match=r"train-0000001.*data.on_error=skip"):
        _epoch(loader, 1)
    loader = shard_loaders(_data_cfg(bad, "data.on_error=skip"), shard_set, seed=0)["train"]
    with pytest.warns(UserWarning, match="train-0000001"):
        batches = _epoch(loader, 1)
    assert len(batches) == N_TRAIN // 8 and 1 not in {i for b in batches for i in b}


# --- training on shards ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("synth")
    overrides = [f"data.root={base / 'src'}", "data.num_classes=4", "data.num_per_class=12", "data.duration=0.5",
                 "data.sample_rate=8000"]
    write_shards("synthetic", base / "shards", overrides=overrides, shard_size=20_000, progress="never")
    return base


def _train_overrides(synth: Path, out: str, *extra: str, source: str = "shards") -> list[str]:
    data = ["data.name=shards", f"data.root={synth / 'shards'}", "data.streams=2"] if source == "shards" else \
        [f"data.root={synth / 'src'}", f"data.cache_dir={synth / 'cache'}"]
    return [*TINY, *data, f"trainer.output_dir={synth / out}", *EXACT, *extra]


@pytest.fixture(scope="module")
def one_thread():
    threads, env = torch.get_num_threads(), os.environ.get("AUDIOCNN_NUM_THREADS")
    torch.set_num_threads(1)
    os.environ["AUDIOCNN_NUM_THREADS"] = "1"  # what training in this process resolves
    yield
    torch.set_num_threads(threads)
    if env is None:
        os.environ.pop("AUDIOCNN_NUM_THREADS")
    else:
        os.environ["AUDIOCNN_NUM_THREADS"] = env


class _Crash(Exception):
    pass


@pytest.mark.parametrize("source", ["shards", "files"])
def test_killed_mid_epoch_and_resumed_gives_the_uninterrupted_metrics(synth, one_thread, monkeypatch, source):
    ref = train(load_config(RECIPE, _train_overrides(synth, f"ref-{source}", "trainer.epochs=3", source=source)),
                quiet=True)
    import audiocnn.engine.loop as loop
    real = loop.save_checkpoint
    saved = []

    def crash_after_first_mid_epoch_save(path, **state):
        real(path, **state)
        saved.append((state["epoch"], state.get("step", 0)))
        if state.get("step") and state["epoch"] == 1:
            raise _Crash
    monkeypatch.setattr(loop, "save_checkpoint", crash_after_first_mid_epoch_save)
    with pytest.raises(_Crash):
        train(load_config(RECIPE, _train_overrides(synth, f"cut-{source}", "trainer.epochs=3",
                                                   "trainer.checkpoint_every_steps=2", source=source)), quiet=True)
    monkeypatch.setattr(loop, "save_checkpoint", real)
    assert saved[-1] == (1, 2)  # killed in epoch 2, after its second step
    run = the_run(synth, f"cut-{source}")
    train(None, resume=run, quiet=True)
    assert "resumed at epoch 1, step 2" in (run / "log.txt").read_text()
    got, want = metrics(run), metrics(ref)
    assert [r["epoch"] for r in got] == [1, 2, 3]
    for g, w in zip(got, want):
        for k in w:
            assert abs(g[k] - w[k]) < 1e-6, (k, g, w)


def test_two_processes_over_http_match_one(synth, one_thread):
    handler = functools.partial(_Quiet, directory=str(synth))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/shards"
        ref = train(load_config(RECIPE, _train_overrides(synth, "ref1", "trainer.epochs=2",
                                                         f"data.root={url}")), quiet=True)
        torchrun(synth, "train", RECIPE, *_train_overrides(synth, "ddp", "trainer.epochs=2", f"data.root={url}",
                                                           "data.num_workers=1"))
        worst = assert_close_rows(metrics(the_run(synth, "ddp")), metrics(ref))
        print("2 processes (1 worker each) over HTTP vs 1 process, largest differences:", worst)
    finally:
        server.shutdown()


def _children(pid: int) -> list[int]:
    out = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if int((p / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(p.name))
            except (OSError, IndexError, ValueError):
                pass
    return out


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds torchrun's workers through /proc")
def test_elastic_restart_resumes_the_run_after_a_rank_is_killed(synth):
    """``torchrun --max-restarts=1`` (c10d rendezvous, as elastic jobs use; the static ``--master-addr`` store
    cannot reconnect gloo after a restart): rank 1 is killed (SIGKILL) mid-run; the restarted processes resume
    the same run folder from its last checkpoint and finish with the metrics of an uninterrupted run."""
    common = ["trainer.epochs=4", "trainer.checkpoint_every_steps=1"]
    torchrun(synth, "train", RECIPE, *_train_overrides(synth, "el_ref", *common))
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--max-restarts=1",
           "--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{_free_port()}", "--rdzv-id=elastic-test",
           "-m", "audiocnn", "train", RECIPE,
           *_train_overrides(synth, "el", *common)]
    proc = subprocess.Popen(cmd, cwd=synth, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    killed = None
    while time.time() < deadline and killed is None and proc.poll() is None:
        last = list((synth / "el").glob("quickstart/*/checkpoints/last.pt"))
        if last:
            workers = sorted(_children(proc.pid))
            if len(workers) == 2:
                killed = workers[1]
                os.kill(killed, signal.SIGKILL)
        time.sleep(0.05)
    out, _ = proc.communicate(timeout=240)
    assert killed is not None, f"the run ended before a rank could be killed:\n{out}"
    assert proc.returncode == 0, out
    run = the_run(synth, "el")
    log = (run / "log.txt").read_text()
    assert "resumed at epoch" in log, log
    worst = assert_close_rows(metrics(run), metrics(the_run(synth, "el_ref")))
    print("killed and restarted vs uninterrupted, largest differences:", worst)
