"""Built-in plugins. Each module implements registration hooks exactly as a third-party plugin would."""

BUILTIN_PLUGINS = (
    "w2s_harness.plugins.datasets",
    "w2s_harness.plugins.models",
    "w2s_harness.plugins.losses",
    "w2s_harness.plugins.strategies",
    "w2s_harness.plugins.executors",
    "w2s_harness.plugins.observers",
)
