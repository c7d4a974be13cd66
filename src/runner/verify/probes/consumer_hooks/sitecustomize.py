# The site hook of a process the consumer_lines probe starts: runs the image's own sitecustomize, then,
# when the probe asks (RUNNER_INTERCEPT), installs runner_intercept. Written into the image, beside it.
import os, sys
_here = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _here]
sys.modules.pop("sitecustomize", None)
try:  # the image's own site hook still runs
    import sitecustomize  # noqa: F401
except ImportError:
    pass
sys.path.append(_here)
if os.environ.get("RUNNER_INTERCEPT"):
    import runner_intercept
    runner_intercept.install()
