"""The ``w2s-harness`` command line: run, list, plugins, validate, report.

``main(argv, plugins=[...])`` is the in-process entry point (tests call it); it returns an exit code and never
lets a user error escape as a traceback. Heavy libraries load only inside ``run``/``report``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import __version__
from ._errors import W2SError
from ._kinds import BY_NAME, BY_PLURAL, KINDS


def _console(stderr: bool = True):
    from rich.console import Console

    # rich honours NO_COLOR and disables animation/colour when the stream is not a TTY.
    console = Console(stderr=stderr, highlight=False)
    if not console.is_terminal:
        console.width = max(console.width, 150)  # logs and pipes: keep the results table readable
    return console


def _add_config_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", "-c", metavar="FILE", help="TOML config file (see README 'Config')")
    p.add_argument("--strategy", help="strategy name (sets [strategy] name)")
    p.add_argument("--dataset", help="dataset name (sets [dataset] name)")
    p.add_argument("--weak", help="weak model name (sets [weak] name)")
    p.add_argument("--strong", help="strong model name (sets [strong] name)")
    p.add_argument("--loss", help="loss name, or several comma-separated (each gets a row): xent,logconf")
    p.add_argument("--seeds", help="comma-separated seeds, e.g. 0,1,2")
    p.add_argument("--output-dir", "-o", help="where stages and results.json go (run.output_dir)")
    p.add_argument("--device", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--workers", type=int, metavar="N",
                   help="processes for CPU linear-head stages (run.workers; 0 = one per core, 1 = in-process)")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override any parameter; VALUE is parsed as TOML (repeatable)")


def build_parser(pm=None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="w2s-harness",
        description="Weak-to-strong generalization experiments: train a strong model on a weak model's labels "
                    "and report the performance gap recovered (PGR).",
    )
    parser.add_argument("--version", action="version", version=f"w2s-harness {__version__}")
    parser.add_argument("--strict-plugins", action="store_true",
                        help="fail if any installed plugin cannot be imported (env W2S_STRICT_PLUGINS=1)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", help="run an experiment (default: the embedded offline experiment)")
    _add_config_options(run)
    run.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                     help="reuse finished stages from the output directory (default: on)")
    run.add_argument("--dry-run", action="store_true", help="resolve config and print the stage graph; run nothing")
    run.add_argument("--json", action="store_true", help="print results.json to stdout")
    if pm is not None:
        pm.hook.w2s_add_options(parser=run)

    lst = sub.add_parser("list", help="list registered components")
    lst.add_argument("kind", nargs="?", choices=sorted(BY_PLURAL), help="only this kind")

    sub.add_parser("plugins", help="list loaded plugins with their distribution, version and components")

    val = sub.add_parser("validate", help="resolve and check a config without running it")
    _add_config_options(val)

    rep = sub.add_parser("report", help="re-render a run's table and write plots")
    rep.add_argument("run_dir", help="a run's output directory (or its results.json)")
    rep.add_argument("--json", action="store_true", help="print results.json to stdout")
    rep.add_argument("--no-plots", action="store_true", help="do not write PNG plots")
    return parser


def _resolve_config(args, pm):
    from ._config import resolve

    def accepts(name: str, key: str) -> bool:
        try:
            entry, _ = pm.registry("loss").resolve(name)
        except W2SError:
            return False
        params = entry.parameters()
        return params is None or key in params

    shortcuts = {"strategy": args.strategy, "dataset": args.dataset, "weak": args.weak, "strong": args.strong,
                 "loss": args.loss, "seeds": args.seeds, "output_dir": args.output_dir, "device": args.device,
                 "workers": args.workers}
    config = resolve(args.config, shortcuts=shortcuts, sets=args.sets, accepts=accepts)
    config.extra = {k: v for k, v in vars(args).items() if k not in shortcuts and k not in (
        "config", "sets", "command", "resume", "dry_run", "json", "strict_plugins")}
    pm.hook.w2s_configure(config=config)
    return config


def cmd_list(args, pm) -> int:
    console = _console(stderr=False)
    kinds = [BY_PLURAL[args.kind]] if args.kind else list(KINDS)
    for kind in kinds:
        console.print(f"[bold]{kind.plural}[/]")
        for entry in pm.registry(kind.name):
            shown = entry.name + ("<name-or-path>" if entry.is_prefix else "")
            console.print(f"  {shown:<28} {entry.description}  [dim]({entry.plugin})[/]", soft_wrap=True)
    return 0


def cmd_plugins(args, pm) -> int:
    console = _console(stderr=False)
    for info in pm.plugins:
        comps = pm.registered_by(info.name)
        parts = [f"{BY_NAME[k].plural}: {', '.join(v)}" for k, v in comps.items()]
        hooks = pm.other_hooks(info.name)
        if hooks:
            parts.append(f"hooks: {', '.join(hooks)}")
        what = "; ".join(parts) or "(no hooks)"
        console.print(f"{info.name}  [dim]{info.distribution} {info.version}[/]  {what}", soft_wrap=True)
    for err in pm.load_errors:
        console.print(f"[red]{err.name}  failed to load (skipped): {err.error}[/]")
    return 0


def cmd_validate(args, pm) -> int:
    from ._runner import make_plan

    config = _resolve_config(args, pm)
    plan = make_plan(config, pm)
    console = _console(stderr=False)
    console.print(f"config OK: {len(plan.stages)} stages over {len(config.run.seeds)} seeds; "
                  f"experiments: {', '.join(e.name for e in next(iter(plan.experiments.values())))}")
    return 0


def _progress_hooks(console):
    """A rich progress display: one bar for stages, one per long inner loop (embedding)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        console=console, transient=False)
    stage_task = {}

    def inner(description: str, total: int):
        # The bar appears on the first advance only: a cache hit never calls it and so shows nothing.
        task: list = []

        def advance(n: int = 1) -> None:
            if not task:
                task.append(progress.add_task(description, total=total))
            progress.advance(task[0], n)

        return advance

    def on_stage(stage, record, done, total):
        if "id" not in stage_task:
            stage_task["id"] = progress.add_task("stages", total=total)
        progress.update(stage_task["id"], completed=done,
                        description=f"stages ({'cached' if record['cached'] else 'ran'} {stage.name})")

    return progress, inner, on_stage


def cmd_run(args, pm) -> int:
    from rich.markup import escape

    from ._report import render
    from ._runner import make_plan, run

    config = _resolve_config(args, pm)
    console = _console()
    if args.dry_run:
        plan = make_plan(config, pm)
        for st in plan.stages:
            deps = ", ".join(d[:8] for d in st.deps) or "-"
            console.print(f"{st.id}  seed={st.seed}  {st.kind:<15} {escape(st.name)}  <- {deps}")
        console.print(f"{len(plan.stages)} stages (dry run: nothing executed)")
        return 0
    progress, inner, on_stage = _progress_hooks(console)
    try:
        with progress:
            results = run(config, pm, resume=args.resume, progress=inner, on_stage=on_stage)
    except KeyboardInterrupt:
        console.print(f"interrupted: finished stages are kept in {config.run.output_dir}; "
                      f"run the same command again to resume")
        return 130
    render(results, console)
    console.print(f"results: {Path(config.run.output_dir) / 'results.json'}")
    if args.json:
        sys.stdout.write(json.dumps(results, indent=2) + "\n")
    return 0


def cmd_report(args, pm) -> int:
    from ._errors import ConfigError
    from ._plots import write_plots
    from ._report import render

    path = Path(args.run_dir)
    path = path / "results.json" if path.is_dir() else path
    if not path.is_file():
        raise ConfigError(f"no results.json at {str(path)!r}; pass a run's output directory")
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{str(path)!r} is not valid JSON ({exc}); re-run the experiment to rewrite it") from None
    console = _console()
    render(results, console)
    if not args.no_plots:
        for p in write_plots(results, path.parent):
            console.print(f"wrote {p}")
    if args.json:
        sys.stdout.write(json.dumps(results, indent=2) + "\n")
    return 0


COMMANDS = {"run": cmd_run, "list": cmd_list, "plugins": cmd_plugins, "validate": cmd_validate, "report": cmd_report}


def main(argv: Sequence[str] | None = None, plugins: Sequence[Any] = ()) -> int:
    """Run the CLI in-process; returns the exit code (0 ok, 2 user error, 130 interrupted)."""
    from ._pluginmanager import create_plugin_manager

    argv = list(sys.argv[1:] if argv is None else argv)
    strict = "--strict-plugins" in argv or None
    try:
        if not argv or argv[0] in ("-h", "--help", "--version"):
            build_parser().parse_args(argv or ["--help"])
            return 0
        pm = create_plugin_manager(plugins, strict=strict)
        args = build_parser(pm).parse_args(argv)
        if args.command is None:
            build_parser(pm).print_help()
            return 2
        for err in pm.load_errors:
            print(f"warning: plugin {err.name!r} failed to load and was skipped: {err.error} "
                  f"(use --strict-plugins to make this fatal)", file=sys.stderr)
        return COMMANDS[args.command](args, pm)
    except W2SError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # a bug or a library error: one line, traceback on request
        if os.environ.get("W2S_DEBUG"):
            raise
        first = (str(exc).splitlines() or [""])[0]
        print(f"error: {type(exc).__name__}: {first} (results.json, if any, keeps finished stages; "
              f"set W2S_DEBUG=1 for the traceback)", file=sys.stderr)
        return 1
    except SystemExit as exc:  # argparse --help / usage errors
        return int(exc.code or 0) if isinstance(exc.code, int) else 2


def console_main() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
