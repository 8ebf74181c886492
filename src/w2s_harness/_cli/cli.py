"""The ``w2s-harness`` command line: run, list, plugins, validate, report, compare.

``main(argv, plugins=[...])`` is the in-process entry point (tests call it); it returns an exit code and never
lets a user error escape as a traceback. Heavy libraries load only inside ``run``/``report``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .. import __version__
from .._contracts.errors import W2SError
from .._plugin_system.kinds import BY_NAME, BY_PLURAL, COMPONENT_SECTIONS, KINDS, SECTION_KIND


def _console(stderr: bool = True):
    from rich.console import Console

    # rich honours NO_COLOR and disables animation/colour when the stream is not a TTY.
    console = Console(stderr=stderr, highlight=False)
    if not console.is_terminal and not os.environ.get("COLUMNS"):
        # logs and pipes: rich would assume 80 columns; wide enough for the results table, whose long cells fold
        # onto the next line rather than end in an ellipsis (see _export.to_rich)
        console.width = max(console.width, 200)
    return console


def _add_config_options(p: argparse.ArgumentParser, pm=None) -> None:
    """The options ``run`` and ``validate`` share: config file, one flag per component section, one per ``[run]``
    field (generated from :class:`RunSection`), ``--set``, and every plugin's ``w2s_add_options``."""
    import dataclasses

    from .._config.config import RunSection

    p.add_argument("--config", "-c", metavar="FILE", help="TOML config file (overlays the packaged default)")
    for section in COMPONENT_SECTIONS:
        if section == "loss":
            p.add_argument("--loss", metavar="NAME[,NAME...]",
                           help="loss name, or several comma-separated (each gets a row): xent,logconf")
        else:
            kind = SECTION_KIND[section]
            p.add_argument(f"--{section}", metavar="NAME", help=f"{kind} name (sets [{section}] name)")
    for f in dataclasses.fields(RunSection):
        if "flag" not in f.metadata:  # a table (run.resources): config file or --set only
            continue
        flags = [f"--{f.metadata['flag']}"] + (["-o"] if f.name == "output_dir" else [])
        if f.type in ("bool", bool):  # a switch; absent leaves the config's value
            p.add_argument(*flags, dest=f"run__{f.name}", action="store_const", const=True, help=f.metadata["help"])
            continue
        p.add_argument(*flags, dest=f"run__{f.name}", metavar=f.metadata["metavar"], help=f.metadata["help"])
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override any parameter; VALUE is parsed as TOML (repeatable)")
    if pm is not None:
        before = {a.dest for a in p._actions}
        pm.hook.w2s_add_options(parser=p)
        p.set_defaults(_plugin_dests=tuple(sorted({a.dest for a in p._actions} - before)))


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
    _add_config_options(run, pm)
    run.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                     help="reuse finished stages from the output directory (default: on)")
    run.add_argument("--dry-run", action="store_true",
                     help="print every stage as cached / new / changed (and what changed); run nothing")
    run.add_argument("--json", action="store_true", help="print results.json to stdout")

    lst = sub.add_parser("list", help="list registered components")
    lst.add_argument("kind", nargs="?", choices=sorted(BY_PLURAL), help="only this kind")

    sub.add_parser("plugins", help="list loaded plugins with their distribution, version and components")

    val = sub.add_parser("validate", help="resolve and check a config without running it")
    _add_config_options(val, pm)
    val.add_argument("--offline", action="store_true",
                     help="check names, parameters and the stage graph without reading data or checkpoints")

    rep = sub.add_parser("report", help="re-render a run's table and write plots")
    rep.add_argument("run_dir", help="a run's output directory (or its results.json)")
    rep.add_argument("--json", action="store_true", help="print results.json to stdout")
    rep.add_argument("--no-plots", action="store_true", help="do not write figures")
    rep.add_argument("--fig-format", choices=("png", "svg", "pdf"), default="png",
                     help="file format of the figures (default: png)")
    rep.add_argument("--html", nargs="?", const="", default=None, metavar="FILE",
                     help="also write one self-contained HTML page (tables, figures, config, environment, stage "
                          "timings; default FILE: RUN_DIR/report.html)")
    rep.add_argument("--metrics", metavar="NAME[,NAME...]",
                     help="add analysis columns: agreement, misfit, auroc (comma-separated, or all)")
    _add_export_options(rep)

    cmp_ = sub.add_parser("compare", help="one table of the rows of several runs, with paired differences")
    cmp_.add_argument("runs", nargs="+", metavar="RUN",
                      help="run output directories (or their results.json); the first is the baseline")
    cmp_.add_argument("--label", action="append", default=[], metavar="NAME",
                      help="a run's label, once per run in order (default: the run's folder name)")
    _add_export_options(cmp_)
    return parser


def _add_export_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", default="table", metavar="FORMAT",
                   help="table (rich, on stderr), md, csv, latex or json (on stdout unless --output)")
    p.add_argument("--output", metavar="PATH",
                   help="write the tables to this file, or one file per table into this folder (an existing "
                        "folder or a path ending in /)")


def _resolve_config(args, pm):
    """The run config from parsed ``run`` / ``validate`` arguments; plugins' options go to ``config.extra`` and
    ``w2s_configure`` runs (for both commands)."""
    from .._config.config import RunSection, load_config
    from .._data.difficulty import KEYS as DIFFICULTY_KEYS

    def accepts(name: str, key: str) -> bool:
        """Whether the loss (or dataset, for a list of datasets) ``name`` takes parameter ``key``."""
        for kind in ("loss", "dataset"):
            try:
                entry, _ = pm.registry(kind).resolve(name)
            except W2SError:
                continue
            params = entry.parameters()
            if kind == "dataset" and key in DIFFICULTY_KEYS:  # easy-to-hard settings apply to any dataset
                return True
            return params is None or key in params
        return False

    shortcuts = {section: getattr(args, section) for section in COMPONENT_SECTIONS}
    run = {}
    for key, value in vars(args).items():
        if key.startswith("run__") and value is not None:
            run[key[5:]] = RunSection.parse_flag(key[5:], value)
    config = load_config(args.config, shortcuts=shortcuts, run=run, sets=args.sets, accepts=accepts)
    config.extra = {dest: getattr(args, dest) for dest in getattr(args, "_plugin_dests", ())}
    pm.hook.w2s_configure(config=config, pm=pm)
    from .._execution.local import check_executor

    check_executor(config, pm)  # run.executor names a registered executor (did-you-mean otherwise)
    return config


def cmd_list(args, pm) -> int:
    from rich.markup import escape  # plugin descriptions are text, not markup ("[openai/...]" must show)

    console = _console(stderr=False)
    kinds = [BY_PLURAL[args.kind]] if args.kind else list(KINDS)
    for kind in kinds:
        console.print(f"[bold]{kind.plural}[/]")
        for entry in pm.registry(kind.name):
            shown = entry.name + ("<name-or-path>" if entry.is_prefix else "")
            console.print(f"  {escape(shown):<28} {escape(entry.description)}  [dim]({escape(entry.plugin)})[/]",
                          soft_wrap=True)
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
    from .._plan.planner import make_plan

    config = _resolve_config(args, pm)
    subs = config.per_dataset()
    plans = [make_plan(sub, pm, content=not args.offline) for sub in subs]
    console = _console(stderr=False)
    from rich.markup import escape

    from .._data.difficulty import EASY_TO_HARD, labels

    names = labels([sub.dataset for sub in subs])
    rows = [f"{name}:{e.name}" if len(subs) > 1 else e.name
            for name, plan in zip(names, plans) for e in next(iter(plan.experiments.values()))]
    parts = "dataset splits" if any(n.endswith(f"[{EASY_TO_HARD}]") for n in names) else "datasets"
    console.print(f"config OK: {sum(len(p.stages) for p in plans)} stages over {len(config.run.seeds)} seeds"
                  f"{f' and {len(subs)} {parts}' if len(subs) > 1 else ''}; experiments: {escape(', '.join(rows))}"
                  f"{' (offline: data and checkpoints not read)' if args.offline else ''}")
    return 0


def _progress_hooks(console):
    """A rich progress display: one bar for stages, one per long inner loop (embedding)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        console=console, transient=False)
    stage_task = {}

    def inner(description: str, total: int, unit: str = "rows"):  # the bar counts; it names no unit
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
                        description=f"stages ({'cached' if record.cached else 'ran'} {stage.name})")

    return progress, inner, on_stage


def _resume_command(args) -> str:
    """The command that resumes this run: the same arguments (resuming is the default), without ``--no-resume``."""
    import shlex

    argv = [a for a in getattr(args, "argv", None) or ["run"] if a != "--no-resume"]
    return shlex.join(["w2s-harness", *argv])


def cmd_run(args, pm) -> int:
    import signal

    from rich.markup import escape

    from .._execution.interrupts import StopFlag, StopRequested, exit_code, graceful_signals
    from .._execution.runner import run
    from .._plan.planner import make_plan
    from .._results.report import render

    config = _resolve_config(args, pm)
    console = _console()
    if args.dry_run:
        from .._execution.store import StageStore
        from .explain import explain

        plans = [make_plan(sub, pm) for sub in config.per_dataset()]
        counts = {"cached": 0, "new": 0, "changed": 0}
        store = StageStore(Path(config.run.output_dir))
        for item in (item for plan in plans for item in explain(plan, store)):
            st = item.stage
            counts[item.status] += 1
            deps = ", ".join(d[:8] for d in st.deps) or "-"
            console.print(f"{item.status:<8} {st.id}  seed={st.seed}  {st.kind:<15} {escape(st.name)}  <- {deps}")
            for reason in item.reasons:
                console.print(f"         - {escape(reason)}")
        console.print(f"{sum(counts.values())} stages: {counts['cached']} cached, {counts['new']} new, "
                      f"{counts['changed']} changed (dry run: nothing executed; store {config.run.output_dir})")
        return 0
    on_start = None
    if console.is_terminal:
        progress, inner, on_stage = _progress_hooks(console)
    else:  # a log or a pipe: rich would draw its bars once, at the end; plain lines as the run goes instead
        from .progress_lines import LineProgress

        progress = LineProgress(console)
        inner, on_stage, on_start = progress.inner, progress.on_stage, progress.on_start
    flag = StopFlag()

    def on_first(signum: int) -> None:
        console.print(f"{signal.Signals(signum).name} received: stopping after the current unit of work "
                      f"(send it again to stop at once)")

    try:
        with graceful_signals(flag, on_first), progress:
            results = run(config, pm, resume=args.resume, progress=inner, on_stage=on_stage, on_start=on_start,
                          stop=flag,
                          warn=lambda m: console.print(f"warning: {escape(m)}", soft_wrap=True),
                          on_failure=lambda st, m: console.print(
                              f"[red]failed:[/] stage {escape(repr(st.name))} ({st.id}): {escape(m)}", soft_wrap=True))
    except (StopRequested, KeyboardInterrupt) as exc:
        signum = getattr(exc, "signum", 0) or flag.signum or signal.SIGINT
        console.print(f"stopped ({signal.Signals(signum).name}): finished stages are kept in "
                      f"{config.run.output_dir} and results.json says 'partial'. Resume with:\n"
                      f"  {_resume_command(args)}", soft_wrap=True)
        return exit_code(signum)
    render(results, console, pm=pm)
    console.print(f"results: {Path(config.run.output_dir) / 'results.json'}")
    if args.json:
        sys.stdout.write(results.to_json())
    return 0


def cmd_report(args, pm) -> int:
    from rich.markup import escape

    from .._results.cells import parse_metrics
    from .._results.export import check_export_args, report_tables, write
    from .._results.plots import write_figures
    from .._results.report import render
    from .._results.results import Results

    metrics = parse_metrics(args.metrics)
    check_export_args(args)
    path = Path(args.run_dir)
    path = path / "results.json" if path.is_dir() else path
    results = Results.read(path)
    console = _console()
    if args.format == "table" and args.output is None:
        render(results, console, metrics=metrics, pm=pm)
    else:  # the same tables, exported (render's rich tables are built from them too)
        for p in write(report_tables(results, metrics, pm=pm), args.format, args.output, console):
            console.print(f"wrote {p}", markup=False, highlight=False, soft_wrap=True)
    figures, notes = None, []
    if not args.no_plots:
        figures = write_figures(results, path.parent, pm=pm, fmt=args.fig_format, note=notes.append)
        for line in notes:  # plain text: a row name such as "d[easy-to-hard]" is not rich markup
            console.print(escape(line), soft_wrap=True)
        for p in figures:
            console.print(f"wrote {p}")
    if args.html is not None:
        from .._results.html import write_html

        page = write_html(results, Path(args.html) if args.html else path.parent / "report.html", figures=figures,
                          notes=notes, metrics=metrics, pm=pm, source=str(path))
        console.print(f"wrote {page}")
    if args.json:
        sys.stdout.write(results.to_json())
    return 0


def cmd_compare(args, pm) -> int:
    from .._results.compare import cmd_compare as compare

    return compare(args, pm, _console())


COMMANDS = {"run": cmd_run, "list": cmd_list, "plugins": cmd_plugins, "validate": cmd_validate, "report": cmd_report,
            "compare": cmd_compare}


def main(argv: Sequence[str] | None = None, plugins: Sequence[Any] = ()) -> int:
    """Run the CLI in-process; returns the exit code (0 ok, 2 user error, 130 / 143 stopped by SIGINT / SIGTERM)."""
    from .._plugin_system.manager import create_plugin_manager

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
        args.argv = argv
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
