# Harness: gpustack-runner's own catalog API (and GPUStack's runner-source parser, where GPUStack is
# installed) on a catalog file.
#
# Request (stdin): {"catalog": path, "queries": [{filters...}], "parse": true|false}. Answer (stdout):
#   version:  the installed gpustack-runner's version;
#   packaged: its own packaged catalog (gpustack_runner/runner.py.json), as it ships;
#   runners, backend_runners, service_runners: list_runners, list_backend_runners and
#             list_service_runners on the given catalog, one answer per query (dicts, as `todict` gives);
#   parsed:   GPUStack's strict runner-source parser (normalize_runner_json) on the catalog's text,
#             or the error it raises; absent where GPUStack is not installed.
import json
import sys
from importlib import resources
from importlib.metadata import version


def main():
    import gpustack_runner
    from gpustack_runner import runner

    request = json.load(sys.stdin)
    path = request["catalog"]
    packaged = json.loads(resources.files("gpustack_runner").joinpath("runner.py.json").read_text())
    answer = {"version": version("gpustack-runner"), "packaged": packaged,
              "runners": [], "backend_runners": [], "service_runners": []}
    for query in request["queries"]:
        kw = {k: tuple(tuple(c) for c in v) if k == "dependencies" else v for k, v in query.items()}
        answer["runners"].append(gpustack_runner.list_runners(data_path=path, todict=True, **kw))
        answer["backend_runners"].append(runner.convert_backend_runners_to_dict(
            gpustack_runner.list_backend_runners(data_path=path, **kw)))
        answer["service_runners"].append(runner.convert_service_runners_to_dict(
            gpustack_runner.list_service_runners(data_path=path, **kw)))
    if request.get("parse"):
        from gpustack.schemas.runner_source import normalize_runner_json

        try:
            answer["parsed"] = json.loads(normalize_runner_json(open(path).read(), strict=True))
        except ValueError as e:
            answer["parsed"] = {"error": str(e)}
    json.dump(answer, sys.stdout)


main()
