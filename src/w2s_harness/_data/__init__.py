"""Data: the dataset base classes, choice tasks, difficulty splits, the feature cache and hub/file helpers.

``datasets`` (:class:`~w2s_harness.BaseDataset`, row selection), ``choice`` (:class:`~w2s_harness.ChoiceDataset`),
``difficulty`` (easy/hard splits and the dataset factory), ``features`` (the on-disk feature cache), ``hub`` and
``filehash`` (offline-aware hub access and file digests, public through :mod:`w2s_harness.utils`).
"""
