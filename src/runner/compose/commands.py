"""Commands GPUStack runs that a service release lacks, provided in the image so that it starts.

GPUStack 2.3.0 starts every SGLang image with `sglang serve ARGS` (pack/_consumer/gpustack.json), and
SGLang only has that command from 0.5.5 on: before it, `sglang.launch_server` takes the same server
arguments. An image whose release lacks the command gets a small one that runs the launcher; an image
that has a `sglang` of its own (a vendor's build) keeps it."""

from __future__ import annotations

from packaging.version import Version

from runner.compose.stages import StageBuilder
from runner.model.targets import Target

SGLANG_CLI_SINCE = Version("0.5.5")  # the first release whose wheel has the `sglang` console script


def needs_sglang_command(t: Target) -> bool:
    """Whether the row's SGLang release has no `sglang` command of its own."""
    return t.service == "sglang" and Version(t.service_version) < SGLANG_CLI_SINCE


def consumer_commands(b: StageBuilder, t: Target) -> StageBuilder:
    """Add the commands GPUStack runs that the row's service release lacks (none for most rows)."""
    if not needs_sglang_command(t):
        return b
    return b.run("""
        if ! command -v sglang >/dev/null; then
            # shellcheck disable=SC2016  # the command's own arguments expand when it runs, not in the build
            printf '%s\\n' '#!/bin/sh' \\
                '# SGLang before 0.5.5 has no sglang command: `sglang serve ARGS` runs its launcher with ARGS' \\
                'if [ "$1" = serve ]; then shift; exec python3 -m sglang.launch_server "$@"; fi' \\
                'echo "sglang: this SGLang release has only the launcher; use: sglang serve ARGS" >&2' \\
                'exit 2' > /usr/local/bin/sglang
            chmod +x /usr/local/bin/sglang
        fi
        """, title="the sglang command GPUStack runs, where this SGLang release has none")
