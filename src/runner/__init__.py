"""runner: build, smoke-test and publish GPUStack Runner inference-service images.

The consumer API is gpustack-runner's: :func:`list_runners` and the grouped views
:func:`list_backend_runners` and :func:`list_service_runners`; everything else is reached through the
``runner`` CLI or the Dagger module ``runner``.
"""

__all__ = ["RunnerRecord", "list_backend_runners", "list_runners", "list_service_runners"]
__version__ = "0.1.0"


def __getattr__(name: str):
    # Lazy, so that `runner` commands that do not need the catalog (or pydantic) start quickly.
    if name in __all__:
        from runner.model import catalog, catalog_query

        return getattr(catalog_query if name.startswith("list_") else catalog, name)
    raise AttributeError(name)
