"""runner: build, smoke-test and publish GPUStack Runner inference-service images.

The consumer API is :func:`list_runners`; everything else is reached through the ``runner`` CLI or
the Dagger module ``runner``.
"""

__all__ = ["RunnerRecord", "list_runners"]
__version__ = "0.1.0"


def __getattr__(name: str):
    # Lazy, so that `runner` commands that do not need the catalog (or pydantic) start quickly.
    if name in __all__:
        from runner.model import catalog

        return getattr(catalog, name)
    raise AttributeError(name)
