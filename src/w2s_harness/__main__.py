"""``python -m w2s_harness`` is the ``w2s-harness`` command."""

from ._cli.cli import console_main

if __name__ == "__main__":
    console_main()
