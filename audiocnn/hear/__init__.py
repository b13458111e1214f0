"""HEAR 2021: ``audiocnn.hear`` is a HEAR module (``load_model``, ``get_timestamp_embeddings``,
``get_scene_embeddings`` from :mod:`audiocnn.hear.api`; ``hear-validator audiocnn.hear --model RUN``), and the
tools that read and write HEAR task folders and evaluate embeddings on them.

A HEAR harness imports this package first: keep it light. One import per line, so each module adds its own.
"""
from audiocnn.hear.api import get_scene_embeddings as get_scene_embeddings
from audiocnn.hear.api import get_timestamp_embeddings as get_timestamp_embeddings
from audiocnn.hear.api import load_model as load_model
