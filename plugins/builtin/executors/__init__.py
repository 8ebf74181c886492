"""Built-in executors, registered through ``w2s_register_executors`` the same way a third-party plugin would be.

``local`` (the default) runs stages on this machine, CPU linear heads in forked worker processes (``--workers``);
``ray`` runs every stage as a Ray Core task on a cluster (``--ray-address``; ``pip install 'w2s-harness[ray]'``).
Each factory takes no parameters; the executor reads its settings from ``execution.config.run``. Importing and
registering this module imports neither torch nor Ray (``w2s-harness list`` stays instant).
"""

from w2s_harness import hookimpl

__all__ = ["local", "ray", "w2s_register_executors"]


def local():
    """The local executor: a :class:`w2s_harness.LocalExecutor`."""
    from w2s_harness import LocalExecutor

    return LocalExecutor()


def ray():
    """The Ray executor: a :class:`w2s_harness.RayExecutor` (Ray itself is imported when it runs)."""
    from w2s_harness import RayExecutor

    return RayExecutor()


@hookimpl
def w2s_register_executors(registry):
    registry.add("local", local, description="this machine: CPU linear heads in forked worker processes "
                                             "(--workers), the rest in this process (the default)")
    registry.add("ray", ray, description="every stage a Ray Core task on a cluster (--ray-address; "
                                         "pip install 'w2s-harness[ray]')")
