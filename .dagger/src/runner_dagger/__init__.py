"""The Dagger module's source package. The functions live in runner.dagger (see pyproject.toml's entry
point); this package only gives the engine's Python runtime a source tree to install."""
