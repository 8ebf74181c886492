"""Typed run configuration: defaults < TOML file < CLI flags.

A config has one section per component (``dataset``, ``weak``, ``strong``, ``loss``, ``strategy``), each a
``name`` plus that component's parameters, and a ``run`` section. ``loss`` may also be a list
(``[[loss]]`` tables or ``--loss xent,logconf``): every loss gets its own experiment row and the rows are
compared pairwise per seed. ``dataset`` may be a list too (``[[dataset]]`` tables): the run repeats the whole
plan on every dataset, into one stage store and one results.json.
"""

from __future__ import annotations

import copy
import dataclasses
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._contracts.errors import ConfigError, did_you_mean
from .._plugin_system.kinds import COMPONENT_SECTIONS

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

SECTIONS = COMPONENT_SECTIONS + ("run",)

#: The embedded default experiment (offline tweets, GloVe weak, MiniLM-L6 linear-probe strong, xent + logconf,
#: naive): a config file shipped in the package, read like any other.
DEFAULT_CONFIG = Path(__file__).parent.parent / "default.toml"


@dataclass
class Component:
    """A section naming a registered component and its parameters."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, **self.params}

    @classmethod
    def from_dict(cls, section: str, data: Any) -> Component:
        if isinstance(data, str):
            return cls(data)
        if not isinstance(data, dict):
            raise ConfigError(f"[{section}] must be a table with a 'name' key, got {type(data).__name__}")
        data = dict(data)
        name = data.pop("name", None)
        if not isinstance(name, str) or not name:
            raise ConfigError(f"[{section}] needs a 'name' (a registered component; see `w2s-harness list`)")
        return cls(name, data)


def _opt(default=dataclasses.MISSING, *, help: str, flag: str, metavar: str, factory=dataclasses.MISSING):
    """A ``[run]`` field; its metadata makes it a ``run`` / ``validate`` flag (``--<flag>``)."""
    return field(default=default, default_factory=factory, metadata={"help": help, "flag": flag, "metavar": metavar})


@dataclass
class RunSection:
    """The ``[run]`` section: what to run it on and where to put it. Every field is also a CLI flag."""

    # _opt returns a dataclasses.field carrying CLI metadata (ruff's RUF009 is off for this file for that reason)
    seeds: list[int] = _opt(factory=lambda: list(range(10)), flag="seeds", metavar="0,1,2",
                            help="comma-separated seeds (run.seeds)")
    device: str = _opt("auto", flag="device", metavar="DEVICE", help="auto | cpu | cuda | cuda:N (run.device)")
    output_dir: str = _opt("runs/default", flag="output-dir", metavar="DIR",
                           help="where stages and results.json go (run.output_dir)")
    threads: int = _opt(0, flag="threads", metavar="N",
                        help="torch intra-op threads for encoders; 0 = torch's default (run.threads)")
    workers: int = _opt(0, flag="workers", metavar="N",
                        help="processes for CPU linear-head stages; 0 = one per core (max 8), 1 = in-process "
                             "(run.workers)")
    feature_chunk: int = _opt(2048, flag="feature-chunk", metavar="N",
                              help="texts per saved chunk of an encoder pass: a stopped or killed pass resumes from "
                                   "its last chunk (run.feature_chunk)")
    executor: str = _opt("local", flag="executor", metavar="NAME",
                         help="where stages run: a registered executor, e.g. local (this machine) or ray (a Ray "
                              "cluster); see `w2s-harness list executors` (run.executor)")
    ray_address: str = _opt("auto", flag="ray-address", metavar="ADDRESS",
                            help="with --executor ray: auto (the cluster `ray start` started), ray://host:port, "
                                 "host:port, or local (a Ray instance on this machine) (run.ray_address)")
    fail_fast: bool = _opt(False, flag="fail-fast", metavar="", help="stop starting stages once one failed "
                           "(default: the others run, the run ends partial with the failures listed) (run.fail_fast)")
    #: Ray resources per stage class, overriding what the executor derives from the model: ``{"head" | "finetune"
    #: | "op": {"num_cpus": float, "num_gpus": float, "memory": bytes or "16GiB"}}``. A TOML table, no flag.
    resources: dict = field(default_factory=dict)

    @staticmethod
    def parse_flag(name: str, text: str) -> Any:
        """The value of flag ``--<name>`` typed as its field: ``seeds`` a comma list of ints, ints as ints."""
        if name == "seeds":
            try:
                return [int(s) for s in str(text).split(",") if s.strip()]
            except ValueError:
                raise ConfigError(f"--seeds expects integers separated by commas, got {text!r}") from None
        kind = {f.name: f.type for f in dataclasses.fields(RunSection)}[name]
        if kind in ("bool", bool):
            return bool(text)
        if kind in ("int", int):
            try:
                return int(text)
            except ValueError:
                raise ConfigError(f"--{name.replace('_', '-')} expects an integer, got {text!r}") from None
        return str(text)

    def validate(self) -> None:
        if (not isinstance(self.seeds, list) or not self.seeds
                or not all(isinstance(s, int) and not isinstance(s, bool) for s in self.seeds)):
            raise ConfigError(f"run.seeds must be a non-empty list of integers, got {self.seeds!r}")
        if len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"run.seeds has duplicates: {self.seeds!r}")
        if not isinstance(self.device, str) or not (self.device in ("auto", "cpu") or self.device.startswith("cuda")):
            raise ConfigError(f"run.device must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        if isinstance(self.threads, bool) or not isinstance(self.threads, int) or self.threads < 0:
            raise ConfigError(f"run.threads must be an integer >= 0 (0 = torch's default), got {self.threads!r}")
        if isinstance(self.workers, bool) or not isinstance(self.workers, int) or self.workers < 0:
            raise ConfigError(
                f"run.workers must be an integer >= 0 (0 = one per core, 1 = no worker processes), got {self.workers!r}"
            )
        if isinstance(self.feature_chunk, bool) or not isinstance(self.feature_chunk, int) or self.feature_chunk < 1:
            raise ConfigError(f"run.feature_chunk must be a positive integer (texts per chunk), got {self.feature_chunk!r}")
        if not isinstance(self.output_dir, str) or not self.output_dir:
            raise ConfigError(f"run.output_dir must be a string (a directory path), got {self.output_dir!r}")
        if not isinstance(self.executor, str) or not self.executor:
            # the name is checked against the executor registry where the plugins are known (the CLI, the runner)
            raise ConfigError(f"run.executor must be the name of an executor (`w2s-harness list executors`), "
                              f"got {self.executor!r}")
        if not isinstance(self.ray_address, str) or not self.ray_address:
            raise ConfigError(f"run.ray_address must be auto, local, ray://host:port or host:port, "
                              f"got {self.ray_address!r}")
        if not isinstance(self.fail_fast, bool):
            raise ConfigError(f"run.fail_fast must be true or false, got {self.fail_fast!r}")
        check_resources(self.resources)


#: The stage classes ``run.resources`` configures: linear heads on cached features, fine-tuning, and the cheap
#: ops (label, combine, filter).
RESOURCE_CLASSES = ("head", "finetune", "op")
RESOURCE_KEYS = ("num_cpus", "num_gpus", "memory")
_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def memory_bytes(value: Any, where: str = "memory") -> int:
    """``value`` in bytes: an integer, or a string with a unit (``"16GiB"``, ``"512MB"``)."""
    import re

    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*", value) if isinstance(value, str) else None
    if m is None or m.group(2).lower() not in _UNITS or float(m.group(1)) <= 0:
        raise ConfigError(f"{where} must be a positive number of bytes or a size like \"16GiB\", got {value!r}")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def check_resources(resources: Any) -> None:
    """A one-line error unless ``resources`` is ``{class: {num_cpus / num_gpus >= 0, memory: a size}}``."""
    if not isinstance(resources, dict):
        raise ConfigError(f"run.resources must be a table of {', '.join(RESOURCE_CLASSES)}, got {resources!r}")
    for cls, spec in resources.items():
        if cls not in RESOURCE_CLASSES:
            raise ConfigError(f"unknown run.resources.{cls}.{did_you_mean(cls, RESOURCE_CLASSES)} "
                              f"Valid: {', '.join(RESOURCE_CLASSES)}")
        if not isinstance(spec, dict):
            raise ConfigError(f"run.resources.{cls} must be a table with {', '.join(RESOURCE_KEYS)}")
        for key, value in spec.items():
            where = f"run.resources.{cls}.{key}"
            if key not in RESOURCE_KEYS:
                raise ConfigError(f"unknown {where}.{did_you_mean(key, RESOURCE_KEYS)} "
                                  f"Valid: {', '.join(RESOURCE_KEYS)}")
            if key == "memory":
                memory_bytes(value, where)
            elif isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ConfigError(f"{where} must be a number >= 0, got {value!r}")


@dataclass
class RunConfig:
    """The fully resolved configuration of one run."""

    dataset: Component
    weak: Component
    strong: Component
    losses: list[Component]
    strategy: Component
    run: RunSection = field(default_factory=RunSection)
    #: every dataset of a multi-dataset run (``[[dataset]]``); empty when the run names one (``dataset``), which
    #: is then also the first of these
    datasets: list[Component] = field(default_factory=list)
    #: options added by plugins through ``w2s_add_options``: ``{dest: parsed value}``; recorded in results.json
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def default(cls) -> RunConfig:
        """The embedded default experiment, read from the packaged ``default.toml``."""
        empty = cls(Component("?"), Component("?"), Component("?"), [], Component("?"))
        return apply_mapping(empty, load_file(DEFAULT_CONFIG), "the packaged default.toml")

    def component(self, section: str):
        return self.losses if section == "loss" else getattr(self, section)

    def per_dataset(self) -> list[RunConfig]:
        """One single-dataset config per dataset of the run (``[self]`` for a one-dataset run). A dataset with
        easy-to-hard thresholds gives two: its usual split, then its easy-to-hard split (:mod:`w2s_harness._data.difficulty`)."""
        from .._data.difficulty import parts

        comps = [p for d in (self.datasets or [self.dataset]) for p in parts(d)]
        if len(comps) <= 1:
            return [self]
        return [dataclasses.replace(copy.deepcopy(self), dataset=d, datasets=[]) for d in comps]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {s: self.component(s).as_dict() for s in COMPONENT_SECTIONS if s != "loss"}
        out["loss"] = [c.as_dict() for c in self.losses]
        if len(self.datasets) > 1:
            out["dataset"] = [c.as_dict() for c in self.datasets]
        out["run"] = dataclasses.asdict(self.run)
        out["extra"] = dict(self.extra)
        return out


def _run_section_from(data: dict[str, Any], base: RunSection) -> RunSection:
    valid = [f.name for f in dataclasses.fields(RunSection)]
    merged = dataclasses.asdict(base)
    for key, value in data.items():
        if key not in valid:
            raise ConfigError(f"unknown key run.{key}.{did_you_mean(key, valid)} Valid keys: {', '.join(valid)}")
        merged[key] = value
    return RunSection(**merged)


def apply_mapping(config: RunConfig, data: dict[str, Any], source: str) -> RunConfig:
    """Overlay a parsed TOML mapping onto ``config`` (sections replace the component they name)."""
    config = copy.deepcopy(config)
    for section, value in data.items():
        if section not in SECTIONS and section != "extra":
            raise ConfigError(
                f"unknown section [{section}] in {source}.{did_you_mean(section, SECTIONS)} "
                f"Valid sections: {', '.join(SECTIONS)}"
            )
        if section == "run":
            if not isinstance(value, dict):
                raise ConfigError(f"[run] in {source} must be a table")
            config.run = _run_section_from(value, config.run)
        elif section == "extra":  # plugin options, as results.json records them
            if not isinstance(value, dict):
                raise ConfigError(f"[extra] in {source} must be a table")
            config.extra = {**config.extra, **value}
        elif section == "loss":
            items = value if isinstance(value, list) else [value]
            config.losses = [Component.from_dict("loss", v) for v in items]
        elif section == "dataset" and isinstance(value, list):
            if not value:
                raise ConfigError(f"[[dataset]] in {source} is an empty list; name at least one dataset")
            config.datasets = [Component.from_dict("dataset", v) for v in value]
            config.dataset = config.datasets[0]
        else:
            setattr(config, section, Component.from_dict(section, value))
            if section == "dataset":
                config.datasets = []
    return config


def load_file(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {str(p)!r} does not exist; pass an existing TOML file to --config")
    try:
        return tomllib.loads(p.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {str(p)!r} is not valid TOML: {exc}") from None


def parse_value(text: str) -> Any:
    """Parse a ``--set`` value as TOML (``3``, ``0.5``, ``true``, ``[1, 2]``, ``"x"``); bare words are strings."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_set(config: RunConfig, assignment: str, accepts=None) -> RunConfig:
    """Apply one ``section.key=value`` override.

    For a list of losses, ``loss.key=value`` goes to every loss whose factory accepts ``key``
    (``accepts(name, key) -> bool``), and is an error if none does.
    """
    if "=" not in assignment or "." not in assignment.split("=", 1)[0]:
        raise ConfigError(f"--set expects section.key=value (e.g. loss.aux_coef=0.3), got {assignment!r}")
    target, raw = assignment.split("=", 1)
    section, key = target.strip().split(".", 1)
    value = parse_value(raw.strip())
    if section not in SECTIONS:
        raise ConfigError(f"--set {target}: unknown section {section!r}.{did_you_mean(section, SECTIONS)}")
    config = copy.deepcopy(config)
    if section == "run":
        config.run = _run_section_from({key: value}, config.run)
        return config
    if section == "loss":
        comps = config.losses
    elif section == "dataset" and config.datasets:
        comps = config.datasets  # config.dataset is the first of them
    else:
        comps = [config.component(section)]
    targets = [c for c in comps if accepts is None or len(comps) == 1 or accepts(c.name, key)]
    if not targets:
        names = ", ".join(c.name for c in comps)
        what = "losses" if section == "loss" else "datasets"
        raise ConfigError(f"--set {target}: none of the {what} ({names}) has a parameter {key!r}")
    for comp in targets:
        if key == "name":
            comp.name = str(value)
        else:
            comp.params[key] = value
    return config


def load_config(
    file: str | Path | None = None,
    *,
    shortcuts: dict[str, Any] | None = None,
    run: dict[str, Any] | None = None,
    sets: list[str] = (),
    accepts=None,
) -> RunConfig:
    """Resolve defaults < config file < flags < ``--set`` overrides into a validated :class:`RunConfig`.

    :param file: a TOML config file.
    :param shortcuts: ``{section: name}`` from ``--dataset`` / ``--weak`` / ``--strong`` / ``--strategy`` (a new
        name drops the old component's parameters) and ``--loss`` (comma-separated names).
    :param run: ``{run field: value}`` from the ``[run]`` flags (``--seeds`` ...), already typed.
    :param sets: ``section.key=value`` strings (``--set``).
    """
    config = RunConfig.default()
    if file is not None:
        config = apply_mapping(config, load_file(file), str(file))
    for section, value in (shortcuts or {}).items():
        if value is None:
            continue
        if section == "loss":
            names = [n.strip() for n in str(value).split(",") if n.strip()]
            old = {c.name: c for c in config.losses}
            config.losses = [old.get(n, Component(n)) for n in names]
        else:
            comp = config.component(section)
            if comp.name != value or (section == "dataset" and len(config.datasets) > 1):
                # a new component: its old parameters no longer apply (--dataset NAME names the one dataset)
                setattr(config, section, Component(str(value)))
                if section == "dataset":
                    config.datasets = []
    overrides = {k: v for k, v in (run or {}).items() if v is not None}
    if overrides:
        config.run = _run_section_from(overrides, config.run)
    for assignment in sets:
        config = apply_set(config, assignment, accepts)
    config.run.validate()
    return config
