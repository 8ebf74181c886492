"""Registries: add / resolve / prefixes / did-you-mean / collisions / parameter checks."""

from __future__ import annotations

import pytest

import w2s_harness
from w2s_harness import hookimpl
from w2s_harness._contracts.errors import ConfigError, PluginError, UnknownComponentError, W2SError
from w2s_harness._plugin_system.manager import create_plugin_manager
from w2s_harness._plugin_system.registry import Registry


class Smooth:
    def __init__(self, smoothing: float = 0.1, *, warmup: int = 0):
        self.smoothing, self.warmup = smoothing, warmup


class HFModel:
    def __init__(self, target: str, layers: int | None = None):
        self.target, self.layers = target, layers


def anything(**kwargs):
    return kwargs


@pytest.fixture
def reg() -> Registry:
    r = Registry("loss")
    r.current_plugin = "plugin-a"
    r.add("smooth-xent", Smooth, description="  label smoothing  ")
    r.add("kitchen-sink", anything)
    return r


def test_add_and_resolve(reg):
    entry, implicit = reg.resolve("smooth-xent")
    assert entry.factory is Smooth and entry.plugin == "plugin-a" and implicit == {}
    assert entry.description == "label smoothing"
    assert reg.names() == ["kitchen-sink", "smooth-xent"]
    assert [e.name for e in reg] == ["kitchen-sink", "smooth-xent"]
    assert len(reg) == 2 and "smooth-xent" in reg and "nope" not in reg


def test_create_passes_params(reg):
    loss = reg.create("smooth-xent", smoothing=0.3, warmup=5)
    assert (loss.smoothing, loss.warmup) == (0.3, 5)
    assert reg.create("kitchen-sink", a=1, b=[2]) == {"a": 1, "b": [2]}


def test_prefix_resolution_passes_target():
    r = Registry("model")
    r.add("hf:", HFModel, description="any HF checkpoint")
    entry, implicit = r.resolve("hf:sentence-transformers/all-MiniLM-L6-v2")
    assert entry.name == "hf:" and entry.is_prefix
    assert implicit == {"target": "sentence-transformers/all-MiniLM-L6-v2"}
    m = r.create("hf:/models/bert", layers=3)
    assert (m.target, m.layers) == ("/models/bert", 3)
    # the bare prefix is not a model, and target is implied by the name, not a settable parameter
    with pytest.raises(ConfigError, match=r"cannot create model 'hf:': .*target"):
        r.create("hf:")
    with pytest.raises(ConfigError, match=r"model 'hf:bert' has no parameter 'target'\. .*Valid parameters: layers$"):
        r.check_params("hf:bert", {"target": "x"})


def test_exact_name_wins_over_prefix():
    r = Registry("model")
    r.add("hf:", HFModel)
    r.add("hf:special", anything)
    assert r.resolve("hf:special")[0].factory is anything
    assert r.resolve("hf:other")[1] == {"target": "other"}


def test_unknown_name_did_you_mean(reg):
    with pytest.raises(UnknownComponentError) as info:
        reg.resolve("smooth-xnet")
    msg = str(info.value)
    assert msg.startswith("unknown loss 'smooth-xnet'. Did you mean: smooth-xent?")
    assert "Available: kitchen-sink, smooth-xent" in msg
    assert isinstance(info.value, W2SError) and isinstance(info.value, KeyError)


def test_unknown_name_without_close_match_lists_available(reg):
    with pytest.raises(UnknownComponentError) as info:
        reg.resolve("zzz")
    assert "Did you mean" not in str(info.value)
    assert "Available: kitchen-sink, smooth-xent" in str(info.value)


def test_empty_registry_says_none():
    with pytest.raises(UnknownComponentError, match=r"Available: \(none\)"):
        Registry("strategy").resolve("naive")


def test_check_params_rejects_unknown_keys_naming_valid_ones(reg):
    reg.check_params("smooth-xent", {"smoothing": 0.2, "warmup": 1})
    with pytest.raises(ConfigError) as info:
        reg.check_params("smooth-xent", {"smothing": 0.2})
    assert str(info.value) == (
        "loss 'smooth-xent' has no parameter 'smothing'. Did you mean: smoothing? "
        "Valid parameters: smoothing, warmup"
    )
    # create() checks too, before calling the factory
    with pytest.raises(ConfigError, match="has no parameter 'bogus'"):
        reg.create("smooth-xent", bogus=1)


def test_check_params_accepts_anything_for_var_kwargs(reg):
    reg.check_params("kitchen-sink", {"whatever": 1, "else": 2})


def test_missing_required_parameter_is_a_config_error():
    r = Registry("model")
    r.add("needs-target", HFModel)
    with pytest.raises(ConfigError, match=r"cannot create model 'needs-target': .*target"):
        r.create("needs-target")


def test_duplicate_name_in_one_registry_names_both_plugins(reg):
    reg.current_plugin = "plugin-b"
    with pytest.raises(PluginError) as info:
        reg.add("smooth-xent", anything)
    assert str(info.value) == (
        "loss 'smooth-xent' is registered by both plugin 'plugin-a' and plugin 'plugin-b'; "
        "uninstall one of them or rename the component"
    )


def test_empty_name_is_rejected(reg):
    with pytest.raises(PluginError, match="registered a loss with an empty name"):
        reg.add("", anything)


# ---------------------------------------------------------------- through the plugin manager


class AlphaPlugin:
    @hookimpl
    def w2s_register_losses(self, registry):
        registry.add("t-shared-loss", anything, description="from alpha")
        registry.add("t-alpha-only", anything)


class BetaPlugin:
    @hookimpl
    def w2s_register_losses(self, registry):
        registry.add("t-shared-loss", Smooth, description="from beta")


class BuiltinClash:
    @hookimpl
    def w2s_register_strategies(self, registry):
        registry.add("naive", anything)


def test_collision_between_two_plugins_names_both():
    with pytest.raises(PluginError) as info:
        create_plugin_manager(plugins=[AlphaPlugin(), BetaPlugin()], entry_points=False)
    # pluggy calls the last registered plugin first, so Beta registered the name and Alpha collided
    assert str(info.value).startswith(
        "loss 't-shared-loss' is registered by both plugin 'BetaPlugin' and plugin 'AlphaPlugin'")


def test_collision_with_a_builtin_names_the_builtin():
    with pytest.raises(PluginError, match="strategy 'naive' is registered by both plugin 'BuiltinClash' "
                                          "and plugin 'builtin:strategies'"):
        create_plugin_manager(plugins=[BuiltinClash()], entry_points=False)


def test_in_process_plugin_components_are_attributed():
    pm = create_plugin_manager(plugins=[AlphaPlugin()], entry_points=False)
    entry, _ = pm.registry("loss").resolve("t-alpha-only")
    assert entry.plugin == "AlphaPlugin"
    assert pm.registered_by("AlphaPlugin") == {"loss": ["t-alpha-only", "t-shared-loss"]}
    assert pm.create("loss", "t-shared-loss", x=1) == {"x": 1}
    info = [p for p in pm.plugins if p.name == "AlphaPlugin"]
    assert len(info) == 1 and info[0].distribution == "(in-process)" and not info[0].builtin
    # the built-ins are plugins like any other
    assert {p.name for p in pm.plugins if p.builtin} >= {"builtin:datasets", "builtin:strategies"}
    assert pm.registry("strategy").resolve("naive")[0].plugin == "builtin:strategies"


def test_module_name_plugins_are_imported(tmp_path, monkeypatch):
    (tmp_path / "t_w2s_modplugin.py").write_text(
        "from w2s_harness import hookimpl\n"
        "@hookimpl\n"
        "def w2s_register_datasets(registry):\n"
        "    registry.add('t-mod-dataset', dict, description='from a module')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    pm = create_plugin_manager(plugins=["t_w2s_modplugin"], entry_points=False)
    assert pm.registry("dataset").resolve("t-mod-dataset")[0].plugin == "t_w2s_modplugin"


def test_plugin_passed_twice_is_registered_once():
    # a module that is already loaded (as a built-in here, or through its entry point) is not an error
    pm = create_plugin_manager(plugins=["w2s_harness.plugins.strategies"], entry_points=False)
    assert pm.registry("strategy").resolve("naive")[0].plugin == "builtin:strategies"
    assert [p.name for p in pm.plugins].count("w2s_harness.plugins.strategies") == 0
    # two instances of one class are two plugins with distinct names (and so collide by component name)
    with pytest.raises(PluginError, match="both plugin 'AlphaPlugin#2' and plugin 'AlphaPlugin'"):
        create_plugin_manager(plugins=[AlphaPlugin(), AlphaPlugin()], entry_points=False)


def test_public_api_create_functions():
    pm = w2s_harness.plugin_manager()
    assert pm is w2s_harness.plugin_manager()  # process-wide, created once
    strategy = w2s_harness.create_strategy("naive")
    assert hasattr(strategy, "plan")
    with pytest.raises(UnknownComponentError, match="Did you mean: naive"):
        w2s_harness.create_strategy("naiv")
    with pytest.raises(ConfigError, match="has no parameter 'bogus'"):
        w2s_harness.create_dataset("tweets-sentiment", bogus=1)


# ----------------------------------------------------------------- pluggy semantics on registration hooks


class _Recorder:
    """Registers one loss and records the order in which registration implementations ran."""

    def __init__(self, name: str, log: list):
        self.__name__, self.log = name, log

    @hookimpl
    def w2s_register_losses(self, registry):
        self.log.append(self.__name__)
        registry.add(f"t-{self.__name__}", Smooth)


class _First(_Recorder):
    @hookimpl(tryfirst=True)
    def w2s_register_losses(self, registry):
        _Recorder.w2s_register_losses(self, registry)


class _Last(_Recorder):
    @hookimpl(trylast=True)
    def w2s_register_losses(self, registry):
        _Recorder.w2s_register_losses(self, registry)


def test_registration_hooks_run_in_pluggy_order_with_tryfirst_and_trylast():
    log: list = []
    plugins = [_Last("last", log), _Recorder("a", log), _Recorder("b", log), _First("first", log)]
    pm = create_plugin_manager(plugins=plugins, entry_points=False)
    # pluggy: tryfirst before everything, then last-registered-first, trylast at the very end (after built-ins)
    assert log == ["first", "b", "a", "last"]
    for name in ("first", "a", "b", "last"):
        entry, _ = pm.registry("loss").resolve(f"t-{name}")
        assert entry.plugin == name  # attribution survives pluggy's calling order


class _Wrapper:
    """A new-style pluggy wrapper around registration: sees the registry before and after every plugin ran."""

    def __init__(self):
        self.before: list = []
        self.after: list = []

    @hookimpl(wrapper=True)
    def w2s_register_strategies(self, registry):
        self.before = registry.names()
        result = yield
        self.after = registry.names()
        registry.current_plugin = "wrapper"
        registry.add("t-added-by-wrapper", Smooth)
        return result


class _OldWrapper:
    def __init__(self):
        self.seen = None

    @hookimpl(hookwrapper=True)
    def w2s_register_datasets(self, registry):
        outcome = yield
        outcome.get_result()
        self.seen = len(registry)


def test_hook_wrappers_work_on_registration_hooks():
    new, old = _Wrapper(), _OldWrapper()
    pm = create_plugin_manager(plugins=[new, old], entry_points=False)
    assert new.before == []  # the wrapper runs around every implementation, built-ins included
    assert "naive" in new.after and "bootstrap" in new.after
    assert "t-added-by-wrapper" in pm.registry("strategy")
    assert old.seen == len(pm.registry("dataset")) >= 2


class _ObserverWrapper:
    def __init__(self):
        self.calls: list = []

    @hookimpl(wrapper=True)
    def w2s_run_end(self, results):
        self.calls.append(("before", results["status"]))
        out = yield
        self.calls.append(("after", results["status"]))
        return out

    @hookimpl(tryfirst=True)
    def w2s_configure(self, config):
        self.calls.append(("configure", config.strategy.name))


def test_wrappers_and_tryfirst_work_on_lifecycle_hooks():
    obs = _ObserverWrapper()
    pm = create_plugin_manager(plugins=[obs], entry_points=False)
    pm.hook.w2s_configure(config=type("C", (), {"strategy": type("S", (), {"name": "naive"})(), "extra": {}})(),
                          pm=pm)
    pm.hook.w2s_run_end(results={"status": "complete"})
    assert obs.calls == [("configure", "naive"), ("before", "complete"), ("after", "complete")]
