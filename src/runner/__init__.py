"""runner: build, smoke-test and publish GPUStack Runner inference-service images.

The consumer API is :func:`list_runners`; everything else is reached through the ``runner`` CLI or
the Dagger module ``runner``.
"""

from runner.catalog import RunnerRecord, list_runners

__all__ = ["RunnerRecord", "list_runners"]
__version__ = "0.1.0"
