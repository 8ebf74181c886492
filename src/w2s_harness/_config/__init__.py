"""Config: the typed run configuration (TOML file < ``--set`` < flags) and its defaults (``default.toml``)."""
