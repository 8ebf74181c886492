"""What components are: the contracts a dataset, model, loss or strategy fulfils and the errors the harness raises.

The bottom layer: it imports no other subpackage. ``errors`` (the one-line error types), ``components`` (the
component protocols and base classes: :class:`~w2s_harness.Dataset`, :class:`~w2s_harness.FeatureModel`,
:class:`~w2s_harness.TrainConfig`, ...), ``loss_base`` (:class:`~w2s_harness.BaseLoss`) and ``checks`` (the public
validator family every component's parameters go through).
"""
