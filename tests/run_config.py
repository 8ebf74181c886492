"""One writer for the tests' run configs: a ``local`` CSV dataset (a ``text`` and a ``label`` column), the two
models, the losses, the strategy and the run options as TOML table bodies, so that each test module states only
what it varies. Tests edit the written text with ``str.replace`` on whole lines (``name = "naive"``,
``epochs = 20``): keep each table's lines in the order given."""

from __future__ import annotations

from pathlib import Path

XENT = '[[loss]]\nname = "xent"'


def local_run_config(path: Path, csv: Path, *, weak: str, strong: str, losses: str = XENT,
                     strategy: str = 'name = "naive"', seeds: str = "[0]", n_test: int = 100,
                     out: Path | None = None, run: str = "workers = 1") -> Path:
    """Write the config to ``path`` and return it. ``weak``/``strong``/``strategy``/``run``: the bodies of those
    tables (TOML lines); ``losses``: whole ``[loss]`` / ``[[loss]]`` tables; ``seeds``: a TOML list; ``out``: the
    run's output directory (none: the config's default)."""
    output = "" if out is None else f'\noutput_dir = "{Path(out).as_posix()}"'
    path.write_text(f"""
[dataset]
name = "local"
path = "{Path(csv).as_posix()}"
text_columns = ["text"]
label_column = "label"
n_test = {n_test}

[weak]
{weak}

[strong]
{strong}

{losses.strip()}

[strategy]
{strategy}

[run]
seeds = {seeds}
device = "cpu"
{run}{output}
""")
    return path
