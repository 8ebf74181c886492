"""Execution: the stage store (``store``: atomic, checksummed, locked stage writes), the executors (``local``:
in-process and process pools; ``ray``: a Ray cluster), interrupts (``interrupts``) and the runner that drives a
plan through an executor and writes ``results.json`` (``runner``).
"""
