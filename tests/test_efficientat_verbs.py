"""EfficientAT as a released model: ``frontend.kind: efficientat_mel``, ``predict`` / ``embed`` / HEAR with a file in
the official layout, and fine-tuning from it in a recipe.

The references are the ones of ``tests/test_efficientat.py``: the official layout (``ref_layout``) filled with
random tensors, and the reference forward written in ``torch.nn.functional`` on that state dict (``ref_forward``),
fed by :class:`EfficientATMel` (itself checked against NumPy there).
"""
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from audiocnn.audio import load_audio
from audiocnn.build import check_recipe
from audiocnn.cli import main
from audiocnn.config import load_config
from audiocnn.core.errors import ConfigError
from audiocnn.features import build_frontend
from audiocnn.features.efficientat_input import EfficientATMel
from audiocnn.models.efficientat import EFFICIENTAT_32K
from audiocnn.models.released import released
from audiocnn.pipelines import train
import zoo_support
from test_efficientat import ref_forward, ref_layout
from zoo_support import fill

one_thread = zoo_support.one_thread  # autouse: one thread for tiny forwards

WIDTH = 0.4  # efficientat_mn04
ROOT = Path(__file__).resolve().parents[1]


def official_file(tmp_path, seed=1):
    sd = fill(ref_layout(WIDTH), seed=seed)
    path = tmp_path / "mn04_as_mAP_432.pt"
    torch.save(sd, path)
    return path, sd


def wav(path, seconds=1.5, seed=0):
    g = np.random.default_rng(seed)
    t = np.arange(int(32000 * seconds)) / 32000
    sf.write(path, (0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * g.standard_normal(t.shape)).astype(np.float32),
             32000, subtype="FLOAT")
    return path


def test_the_kind_is_efficientat_mel_exactly():
    wave = 0.1 * torch.randn(2, 20000, generator=torch.Generator().manual_seed(0))
    fe = EFFICIENTAT_32K.build(32000)
    assert fe.n_features == 128 and fe.num_frames(20000) == 1 + 19999 // 320 and not fe.state_dict()
    torch.testing.assert_close(fe(wave), EfficientATMel()(wave), rtol=0, atol=0)
    # the settings say what it computes; settings it cannot honour are errors that name them
    bad = dataclasses.replace(EFFICIENTAT_32K, pad_mode="constant", norm="slaney")
    with pytest.raises(ConfigError, match=r"frontend.pad_mode='reflect'.*frontend.norm=None"):
        bad.build(32000)
    with pytest.raises(ConfigError, match="preemphasis"):
        build_frontend(sample_rate=16000, kind="logmel", preemphasis=0.97)
    with pytest.raises(ConfigError, match="backend=torch"):
        dataclasses.replace(EFFICIENTAT_32K, backend="nnaudio").build(32000)


def test_released_rows():
    for name, dim, file in [("efficientat_mn04", 384, "mn04_as_mAP_432.pt"),
                            ("efficientat_mn10", 960, "mn10_as_mAP_471.pt"),
                            ("efficientat_mn40", 3840, "mn40_as_mAP_484.pt")]:
        r = released(name)
        assert (r.sample_rate, r.num_classes, r.embedding_dim, r.weights_file, r.licence) == (32000, 527, dim, file,
                                                                                              "MIT")
        assert r.frontend.kind == "efficientat_mel" and len(r.label_names()) == 527 and r.task == "multilabel"


def test_predict_cli_matches_the_reference_forward(tmp_path, capsys):
    path, sd = official_file(tmp_path)
    audio = wav(tmp_path / "a.wav")
    rc = main(["predict", "efficientat_mn04", "--weights", str(path), str(audio), "--top-k", "3", "--json",
               str(tmp_path / "p.json")])
    assert rc == 0, capsys.readouterr().err
    (result,) = json.loads((tmp_path / "p.json").read_text())
    wave = torch.from_numpy(load_audio(audio, 32000))[None].float()
    with torch.no_grad():
        logits, _ = ref_forward(sd, EfficientATMel()(wave).unsqueeze(1), WIDTH)
    want = torch.sigmoid(logits[0])
    labels = released("efficientat_mn04").label_names()
    assert [label for label, _ in result["top"]] == [labels[i] for i in torch.argsort(-want)[:3]]
    np.testing.assert_allclose([p for _, p in result["top"]], torch.sort(want, descending=True)[0][:3].numpy(),
                               rtol=1e-5, atol=1e-6)


def test_embed_cli_writes_the_pooled_feature_map(tmp_path, capsys):
    path, sd = official_file(tmp_path)
    folder = tmp_path / "audio"
    folder.mkdir()
    wav(folder / "a.wav", seconds=2.0)
    rc = main(["embed", "efficientat_mn04", "--weights", str(path), str(folder), "--out", str(tmp_path / "emb"),
               "--progress", "never"])
    assert rc == 0, capsys.readouterr().err
    clip = np.load(next((tmp_path / "emb").rglob("*.clip.npy")))
    frames = np.load(next((tmp_path / "emb").rglob("*.frames.npy")))
    assert clip.shape == (384,) and frames.shape[1] == 384 and frames.shape[0] >= 2
    # the first frame is the reference's pooled features of the first 1 s window
    wave = torch.from_numpy(load_audio(folder / "a.wav", 32000))[None, :32000].float()
    with torch.no_grad():
        _, want = ref_forward(sd, EfficientATMel()(wave).unsqueeze(1), WIDTH)
    np.testing.assert_allclose(frames[0], want[0].numpy(), rtol=1e-4, atol=1e-5)


def test_hear_module_with_efficientat(tmp_path):
    import audiocnn.hear as hear

    path, sd = official_file(tmp_path)
    model = hear.load_model(f"efficientat_mn04:{path}")
    assert model.scene_embedding_size == model.timestamp_embedding_size == 384
    audio = 0.1 * torch.randn(1, model.sample_rate, generator=torch.Generator().manual_seed(3))
    emb, ts = hear.get_timestamp_embeddings(audio, model)
    assert emb.shape[0] == 1 and emb.shape[2] == 384 and emb.shape[1] == ts.shape[1]
    assert hear.get_scene_embeddings(audio, model).shape == (1, 384)


FINETUNE = """
data: {name: synthetic, sample_rate: 32000, duration: 1.0, num_classes: 3, num_per_class: 4, batch_size: 4,
       num_workers: 0}
frontend: {kind: efficientat_mel, n_fft: 1024, win_length: 800, hop_length: 320, window: hann, center: true,
           pad_mode: reflect, power: 2.0, n_mels: 128, f_min: 0, f_max: 15000, norm: null, mel_scale: htk,
           log: log, log_offset: 1.0e-5, preemphasis: 0.97, normalize: none}
model: {name: efficientat_mn04, pretrained: WEIGHTS}
optim: {lr: 1.0e-3, backbone_lr_scale: 0.1}
trainer: {epochs: 1, max_steps_per_epoch: 2, progress: never}
"""


def test_recipe_fine_tunes_from_official_weights(tmp_path):
    path, _ = official_file(tmp_path)
    recipe = tmp_path / "ft.yaml"
    recipe.write_text(FINETUNE.replace("WEIGHTS", str(path)))
    cfg = load_config(recipe, [f"data.root={tmp_path / 'synthetic'}", f"trainer.output_dir={tmp_path / 'runs'}",
                               f"data.cache_dir={tmp_path / 'cache'}"])
    run = train(cfg, quiet=True)
    assert (run / "checkpoints" / "best.pt").is_file()
    # another front-end than the released one is refused before any work, naming the key
    wrong = load_config(recipe, ["frontend.n_mels=64"])
    with pytest.raises(ConfigError, match=r"frontend.n_mels=64 \(needs 128\)"):
        check_recipe(wrong)


def test_show_draws_the_models_input_panel():
    from audiocnn.plots import signal_figure

    cfg = load_config(ROOT / "recipes" / "esc10_efficientat.yaml")
    wave = (0.1 * torch.randn(16000, generator=torch.Generator().manual_seed(4))).numpy()
    _, arrays = signal_figure(wave, 32000, cfg.frontend)
    assert set(arrays) == {"waveform", "stft", "mel", "mfcc", "efficientat_mel"}
    np.testing.assert_allclose(arrays["efficientat_mel"], EfficientATMel()(torch.from_numpy(wave)[None])[0].numpy(),
                               rtol=0, atol=1e-6)
