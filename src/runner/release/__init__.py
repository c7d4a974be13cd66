"""The release's steps both engines share (runner.flow strings them together for the faces): build-all with smoke tests, publish, merge, promote,
discard and prune, registry operations, reports and the CI fan-out, and what published images prove
(SBOM and signed provenance as OCI referrers, verify, mirrors, the catalog's digests). Talks to engines only through
the protocols it defines; may import runner.model, runner.compose and runner.verify."""
