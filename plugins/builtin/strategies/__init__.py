"""Built-in strategies: each turns the config into a stage graph for one seed (see docs/strategies.md)."""

from w2s_harness import hookimpl

from .bootstrap import Bootstrap
from .confidence import Confidence
from .ensemble import Ensemble
from .filter import Filter
from .generative import Generative
from .grid import Grid
from .icm import ICM
from .naive import Naive
from .prompt import Prompt
from .relabel import Relabel

STRATEGIES = {
    "naive": (Naive, "weak -> strong transfer with each configured loss (the reference)"),
    "confidence": (Confidence, "naive transfer with the logconf auxiliary confidence loss, vs naive xent"),
    "bootstrap": (Bootstrap, "ladder weak -> ... -> strong (crossfit/slices/same labels) + direct and flat controls"),
    "ensemble": (Ensemble, "several weak supervisors (models x bags) averaged into one soft label"),
    "filter": (Filter, "keep the most confident / most learnable weak labels, then transfer"),
    "grid": (Grid, "every weak <= strong pair of an ordered list of models (the reference sweep), per loss"),
    "relabel": (Relabel, "strong-to-strong: the transferred model relabels train2 for a fresh one, N rounds"),
    "prompt": (Prompt, "the strong causal LM prompted, not fine-tuned: zero-shot, k-shot gold / weak demonstrations"),
    "generative": (Generative, "the strong causal LM LM-trained on the unlabelled texts, then ceiling + transfers"),
    "icm": (ICM, "the strong causal LM labels train2 by Internal Coherence Maximization (no weak labels), then trains"),
}


@hookimpl
def w2s_register_strategies(registry):
    for name, (factory, description) in STRATEGIES.items():
        registry.add(name, factory, description=description)


@hookimpl
def w2s_report_views(results):
    from .grid_view import grid_view  # numpy and matplotlib load only when a view draws

    return grid_view(results)
