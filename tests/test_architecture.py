"""The house: imports run one way, down the layers, function-level imports included.

Each module of the package belongs to the first layer whose prefix it starts with. A module may import its own
package (``audiocnn.data.loader`` -> ``audiocnn.data.splits``) and anything in a lower layer; never a higher one,
and never another package of its own layer.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "audiocnn"

LAYERS: list[tuple[str, ...]] = [  # bottom first
    ("audiocnn.core",),                        # errors, atomic files, checkpoints, the registry, runtime settings
    ("audiocnn.audio", "audiocnn.tasks"),      # reading and resampling audio; task kinds, losses, metrics
    ("audiocnn.features",),                    # front-ends, normalisers, augmentation (typed keyword arguments)
    ("audiocnn.config", "audiocnn.plots"),     # recipes as dataclasses; figures
    ("audiocnn.data", "audiocnn.models"),      # datasets, splits, loaders; the zoo over one backbone
    ("audiocnn.modalities",),                  # audio and image input pipelines, the classifier
    ("audiocnn.build",),                       # recipe -> typed calls
    ("audiocnn.runs", "audiocnn.inference"),   # run folders as a service; the shared forward pass
    ("audiocnn.engine", "audiocnn.evaluation"),
    ("audiocnn.pipelines", "audiocnn.embed"),
    ("audiocnn.hear", "audiocnn.probe", "audiocnn.deploy", "audiocnn.cv"),  # HEAR; probes; deploy; cross-validation
    ("audiocnn.commands",),
    ("audiocnn.cli",),
    ("audiocnn.__main__",),
]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _place(module: str) -> tuple[int, str] | None:
    """``(layer, package)`` of a module; the package face ``audiocnn`` itself (its version) is the ground."""
    if module == "audiocnn":
        return -1, "audiocnn"
    for i, layer in enumerate(LAYERS):
        for prefix in layer:
            if module == prefix or module.startswith(prefix + "."):
                return i, prefix
    return None


def _imports(path: Path, module: str) -> list[tuple[int, str]]:
    """``(line, imported module)`` for every import of the package in the file, at any depth."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "audiocnn"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "audiocnn":
                continue
            # `from audiocnn.data import images` imports a submodule: place it by the submodule
            for a in node.names:
                sub = f"{target}.{a.name}"
                out.append((node.lineno, sub if (PACKAGE.parent / (sub.replace(".", "/") + ".py")).exists()
                            or (PACKAGE.parent / sub.replace(".", "/")).is_dir() else target))
    return out


def violations(root: Path = PACKAGE) -> list[str]:
    found = []
    for path in sorted(root.rglob("*.py")):
        module = _module_name(path)
        here = _place(module)
        if here is None:
            found.append(f"{module}: in no layer (add it to LAYERS)")
            continue
        for line, target in _imports(path, module):
            there = _place(target)
            if there is None:
                found.append(f"{module}:{line} imports {target}, which is in no layer")
            elif there[1] != here[1] and there[0] >= here[0]:
                found.append(f"{module}:{line} imports {target} (layer {there[0]} {there[1]}) from layer "
                             f"{here[0]} {here[1]}")
    return found


def test_imports_run_down_the_layers():
    assert violations() == []


def test_a_lower_layer_importing_a_higher_one_is_caught(tmp_path):
    fake = tmp_path / "audiocnn"
    (fake / "models").mkdir(parents=True)
    (fake / "engine").mkdir()
    for f in ("__init__.py", "models/__init__.py", "engine/__init__.py", "engine/loop.py"):
        (fake / f).write_text("")
    (fake / "models" / "pretrained.py").write_text("def load():\n    from audiocnn.engine.loop import train\n")
    global PACKAGE
    real, PACKAGE = PACKAGE, fake
    try:
        found = violations(fake)
    finally:
        PACKAGE = real
    assert found == ["audiocnn.models.pretrained:2 imports audiocnn.engine.loop (layer 8 audiocnn.engine) from layer "
                     "4 audiocnn.models"]


@pytest.mark.parametrize("concept, pattern", [
    ("task kinds", '"multiclass", "binary", "multilabel", "regression"'),
    ("audio extensions", '".wav", ".flac"'),
    ("front-end kinds", '"stft", "mel", "logmel"'),
])
def test_each_concept_is_defined_once(concept, pattern):
    where = [str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py") if pattern in p.read_text()]
    assert len(where) <= 1, f"{concept} listed in {where}"


def test_only_the_modalities_branch_on_the_image_kind():
    found = [str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
             if not str(p.relative_to(PACKAGE)).startswith("modalities")
             and any(s in p.read_text() for s in ('kind == "image"', "kind == 'image'", 'kind != "image"'))]
    assert found == []
