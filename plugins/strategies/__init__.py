"""Built-in strategies: each turns the config into a stage graph for one seed."""

from w2s_harness.hookspecs import hookimpl

from .naive import Naive


@hookimpl
def w2s_register_strategies(registry):
    registry.add("naive", Naive, description="weak -> strong transfer with each configured loss (the reference)")
