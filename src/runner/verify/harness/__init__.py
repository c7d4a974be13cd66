"""Harness programs: run by `runner consumer` in an environment of their own holding the consumer's
pinned release (pack/_consumer/*.txt), never imported by runner.

Each program reads a JSON request on stdin and writes a JSON answer on stdout. It drives the
consumer's own code (GPUStack's backend classes and runner-source parser, gpustack-runtime's Docker
deployer and device generators, gpustack-runner's catalog API) and stands in only for what needs a
server, a device or a download. May import nothing of runner."""
