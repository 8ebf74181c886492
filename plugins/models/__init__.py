"""Built-in models."""

from w2s_harness.hookspecs import hookimpl


@hookimpl
def w2s_register_models(registry):
    pass
