"""The plugin system: component kinds, the registries handed to the registration hooks, and the plugin manager.

``kinds`` (the table of component kinds), ``registry`` (:class:`~w2s_harness.Registry`: names, did-you-mean),
``manager`` (:func:`~w2s_harness.create_plugin_manager`: loads the built-ins and the ``w2s_harness`` entry points
through the same hooks). Imports only ``_contracts``.
"""
