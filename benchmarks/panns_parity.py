"""PANNs parity against the reference (panns_inference + torchlibrosa, test-only): one markdown table.

    PYTHONPATH=. python benchmarks/panns_parity.py

Random weights (batch-norm statistics included) saved in the official layout from the reference model, loaded
by audiocnn's loader; generated audio, and two ESC-10 recordings when /work/shared/datasets/esc10 is there.
The helpers (references, random weights, the log-mel check) are those of tests/test_panns.py.
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import test_panns as T  # noqa: E402

from audiocnn.audio import load_audio  # noqa: E402
from audiocnn.build import build_released  # noqa: E402


def main() -> None:
    tmp = Path(tempfile.mkdtemp())
    print("| check | input | max deviation |")
    print("|---|---|---|")
    for name in ["panns_cnn6", "panns_cnn10", "panns_cnn14", "panns_cnn14_16k"]:
        path, net = T.official_file(tmp, name)
        ours, entry = build_released(name, path)
        secs = 1.0 if "cnn14" in name else 2.0
        wave = T.generated(entry.sample_rate, secs)
        with torch.no_grad():
            want, probs, emb = net(wave), torch.sigmoid(ours(wave)), ours.embed(wave)
        print(f"| {name} clip-wise outputs (relative) | 2 x {secs:g} s generated | "
              f"{T.rel(probs, want['clipwise_output']):.2e} |")
        print(f"| {name} embedding (relative) | 2 x {secs:g} s generated | {T.rel(emb, want['embedding']):.2e} |")
        path.unlink()
    for rate in (32000, 16000):
        vs_ref, vs_exact = T._check_logmel(T.generated(rate, 3.0, n=3, seed=1), rate)
        print(f"| log-mel vs torchlibrosa / vs float64 librosa (dB) | 3 x 3 s generated, {rate} Hz | "
              f"{vs_ref:.2e} / {vs_exact:.2e} |")
    clips = sorted(T.ESC10.rglob("*.flac"))[:2] if T.ESC10.is_dir() else []
    if clips:
        waves = [load_audio(c, 32000) for c in clips]
        n = min(len(w) for w in waves)
        vs_ref, vs_exact = T._check_logmel(torch.from_numpy(np.stack([w[:n] for w in waves])).float(), 32000)
        print(f"| log-mel vs torchlibrosa / vs float64 librosa (dB, within 80 dB of the peak) | ESC-10 "
              f"{', '.join(c.name for c in clips)} | {vs_ref:.2e} / {vs_exact:.2e} |")


if __name__ == "__main__":
    main()
