"""heareval's predictions runner with another seed (heareval 2021.1.3 calls ``seed_everything(42)``).

    python benchmarks/hear/heareval_seeded.py SEED TASK_EMBEDDING_DIR... [runner options]

Runs in heareval's environment (see ``benchmarks/hear_compare.py``). The seed replaces 42 everywhere heareval
uses it: the shuffle that samples the grid points and torch's initialisation and dropout.
"""
import sys

import heareval.predictions.task_predictions as task_predictions
from heareval.predictions.runner import runner

seed = int(sys.argv.pop(1))
_seed_everything = task_predictions.seed_everything
task_predictions.seed_everything = lambda _seed, workers=False: _seed_everything(seed, workers=workers)
runner()
