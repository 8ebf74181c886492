"""Built-in losses."""

from w2s_harness.hookspecs import hookimpl


@hookimpl
def w2s_register_losses(registry):
    pass
