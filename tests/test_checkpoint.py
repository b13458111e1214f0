"""Checkpoints load without executing code, are atomic, and skip front-end kernels."""
import pickle

import pytest
import torch

from audiocnn.core.checkpoint import CheckpointError, capture_rng, clean_state_dict, load_checkpoint, restore_rng, save_checkpoint


class Evil:
    def __reduce__(self):
        import os
        return (os.system, ("touch /tmp/audiocnn_pwned",))


def test_malicious_pickle_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format": "audiocnn-checkpoint", "model": {}, "x": Evil()}, path)
    with pytest.raises(CheckpointError, match="cannot be read"):
        load_checkpoint(path)
    import os
    assert not os.path.exists("/tmp/audiocnn_pwned")


def test_not_a_checkpoint(tmp_path):
    path = tmp_path / "plain.pt"
    torch.save({"weights": torch.zeros(2)}, path)
    with pytest.raises(CheckpointError, match="not an audiocnn checkpoint"):
        load_checkpoint(path)
    (tmp_path / "garbage.pt").write_bytes(b"not a zip")
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "garbage.pt")


def test_round_trip_with_rng_and_prefixes(tmp_path):
    m = torch.nn.Linear(3, 2)
    gen = torch.Generator().manual_seed(5)
    rng = capture_rng(gen)
    a = torch.rand(3), torch.randint(0, 100, (3,), generator=gen)
    save_checkpoint(tmp_path / "c.pt", model=m, config={"name": "x"}, labels=["a", "b"], task="multiclass", epoch=3,
                    rng=rng)
    state = load_checkpoint(tmp_path / "c.pt")
    restore_rng(state["rng"], gen)
    b = torch.rand(3), torch.randint(0, 100, (3,), generator=gen)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert state["labels"] == ["a", "b"] and state["epoch"] == 3
    assert set(state["model"]) == {"weight", "bias"}
    assert clean_state_dict({"_orig_mod.fc.weight": 1, "module.net.bias": 2}) == {"fc.weight": 1, "net.bias": 2}
    assert not list(tmp_path.glob("*.tmp"))


def test_failed_write_keeps_previous_file(tmp_path, monkeypatch):
    m = torch.nn.Linear(3, 2)
    path = tmp_path / "c.pt"
    save_checkpoint(path, model=m, config={}, labels=[], task="multiclass", epoch=1)
    before = path.read_bytes()

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError):
        save_checkpoint(path, model=m, config={}, labels=[], task="multiclass", epoch=2)
    assert path.read_bytes() == before
    assert not list(tmp_path.glob(".*tmp"))
