"""The package's layers, checked: no module imports a higher layer, no import cycles (imports
inside functions count; ``if TYPE_CHECKING:`` blocks do not), no module over 400 lines, and
scoring needs neither torch nor Lightning, scikit-learn or matplotlib.

Layers, bottom to top (a module may import its own layer and those below):

0. base: audio, the audio spec, speech detection, corpora, manifests, settings, display, what
   serkit may write (safety)
1. models: PyTorch model families, the shipped encoders
2. inference: bundles, runtimes, the one scorer, the Predictor, timelines, speaker adaptation
3. data and training: datasets, splits, the pool, training, evaluation (they score through 2)
4. apps: the CLI, the web app, batch jobs, export, Ray, the model card, prepare, the package API
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "serkit"

LAYERS: list[tuple[str, ...]] = [
    ("serkit.version", "serkit.errors", "serkit.emotions", "serkit.config", "serkit.display", "serkit.audio",
     "serkit.vad", "serkit.manifest", "serkit.corpora", "serkit.features", "serkit.safety", "serkit.rooms",
     "serkit.models.configs", "serkit.bundle_schema", "serkit.settings", "serkit.inputs",
     "serkit.voices", "serkit.mel"),
    ("serkit.models", "serkit.backbones"),
    ("serkit.bundle", "serkit.runtimes", "serkit.scorer", "serkit.inference", "serkit.onnx_runtime",
     "serkit.timeline", "serkit.speaker"),
    ("serkit.data", "serkit.splits", "serkit.pool", "serkit.training", "serkit.encoder_training",
     "serkit.embeddings", "serkit.evaluation", "serkit.run_folder", "serkit.val_metrics", "serkit.callbacks",
     "serkit.ensembles"),
    ("serkit.cli", "serkit.web", "serkit.batch", "serkit.export", "serkit.ray_engine", "serkit.model_card",
     "serkit.evaluate_cmd", "serkit.prepare", "serkit.__main__", "serkit"),
]


def modules() -> dict[str, Path]:
    out = {}
    for p in PACKAGE.rglob("*.py"):
        parts = p.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = p
    return out


def layer_of(module: str) -> int:
    best = None
    for i, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if module == prefix or module.startswith(prefix + "."):
                if best is None or len(prefix) > best[1]:
                    best = (i, len(prefix))
    assert best is not None, f"{module} is in no layer: add it to LAYERS in {__file__}"
    return best[0]


def imports(path: Path, known: dict[str, Path]) -> set[str]:
    """serkit modules imported by ``path`` at run time (function-level imports included)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for n in ast.walk(node))
    out = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("serkit"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("serkit"):
            subs = [f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in known]
            out.update(subs or [node.module])
    return {m for m in out if m in known}


def test_no_module_imports_a_higher_layer():
    known = modules()
    upward = [f"{m} (layer {layer_of(m)}) imports {d} (layer {layer_of(d)})"
              for m, p in known.items() for d in imports(p, known) if layer_of(d) > layer_of(m)]
    assert not upward, "\n".join(upward)


def test_no_import_cycles():
    known = modules()
    graph = {m: imports(p, known) - {m} for m, p in known.items()}
    cycles = []

    def visit(node: str, path: list[str], done: set[str]) -> None:
        for nxt in graph[node]:
            if nxt in path:
                cycles.append(" -> ".join(path[path.index(nxt):] + [nxt]))
            elif nxt not in done:
                visit(nxt, path + [nxt], done)
        done.add(node)

    done: set[str] = set()
    for m in sorted(graph):
        if m not in done:
            visit(m, [m], done)
    assert not cycles, "\n".join(sorted(set(cycles)))


def test_modules_stay_short():
    long = {m: len(p.read_text(encoding="utf-8").splitlines()) for m, p in modules().items()}
    over = {m: n for m, n in long.items() if n > 400}
    assert not over, over


def test_scoring_imports_no_torch_lightning_sklearn_or_matplotlib():
    code = ("import sys, serkit.inference, serkit.web, serkit.batch, serkit.timeline, serkit.cli; "
            "print(sorted(m for m in ('torch', 'lightning', 'sklearn', 'matplotlib', 'transformers') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
