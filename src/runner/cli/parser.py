"""Every `runner` subcommand and its arguments, in one place. Handlers are named, not imported, so a
command loads only the code it runs (`runner matrix` never imports an engine)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

# What `runner rehearse` builds when no selection is given: a small real target (three stages), so the
# main job runs end to end on a fresh machine in minutes; --all rehearses the whole selection.
DEFAULT_TARGET, DEFAULT_PLATFORM = "cuda12.8-voxbox0.0.21", "linux/amd64"

DESCRIPTION = ("runner: the matrix, names, catalog, plan and Dockerfiles offline; builds, smoke tests and "
               "releases on a local Docker/BuildKit (the Dagger module runs the same flow through `dagger call`).")


MATRIX_HELP = "matrix file (default: the project's matrix.yaml)"


class Help(argparse.HelpFormatter):
    """Help that shows each option's default when it has one worth showing (not off, empty or none)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        shown = action.default not in (None, False, "", [], argparse.SUPPRESS)
        if shown and "default" not in text and action.option_strings:
            text += " (default: %(default)s)"
        return text


def version() -> str:
    """runner's installed version."""
    from importlib.metadata import PackageNotFoundError, version as installed

    try:
        return installed("runner")
    except PackageNotFoundError:  # run from a source tree without installing it
        return "unknown (not installed)"


def positive(text: str) -> int:
    """An argument that counts something at once: 1 to 64."""
    if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= 64:
        raise argparse.ArgumentTypeError(f"expected a whole number from 1 to 64, not {text!r}")
    return int(text)


def positive_count(text: str) -> int:
    """A number of runners: 1 to 10000."""
    if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= 10000:
        raise argparse.ArgumentTypeError(f"expected a whole number from 1 to 10000, not {text!r}")
    return int(text)


def selection_args(p: argparse.ArgumentParser, platform: bool = True, deprecated: bool = True) -> None:
    """The target filters every selecting command shares (the Dagger functions take the same, by the
    same names and with the same defaults: tests/test_face_parity.py)."""
    p.add_argument("--matrix", type=Path, help=MATRIX_HELP)
    p.add_argument("--backend", default="", help="only this backend, e.g. cann")
    p.add_argument("--backend-version", default="", help="backend version, exact or dotted prefix (12.8, 12)")
    p.add_argument("--variant", default="", help="backend variant, e.g. 910b")
    p.add_argument("--service", default="", help="only this service, e.g. vllm")
    p.add_argument("--service-version", default="", help="service version, exact or dotted prefix")
    p.add_argument("--backend-version-prefix", default="", metavar="PREFIX",
                   help="backend version by gpustack-runner's prefix rule (list_runners' backend_version_prefix)")
    p.add_argument("--service-version-prefix", default="", metavar="PREFIX",
                   help="service version by gpustack-runner's prefix rule (list_runners' service_version_prefix)")
    p.add_argument("--select", default="", metavar="PATTERNS",
                   help="only tags matching one of these glob patterns, space-separated, e.g. 'cuda12.*-vllm0.14*'")
    p.add_argument("--skip", default="", metavar="PATTERNS",
                   help="leave out tags matching one of these glob patterns, space-separated, e.g. '*-dev rocm*'")
    if platform:
        p.add_argument("--platform", default="", help="only this platform, e.g. linux/amd64")
    if deprecated:
        p.add_argument("--include-deprecated", action="store_true",
                       help="include deprecated service versions (left out by default, as in `dagger call`)")


def registry_args(p: argparse.ArgumentParser, catalog: bool = True, registry: str = "") -> None:
    """Where and as whom to publish; the password only ever comes from the environment. With `registry`
    (its help), publishing is optional: no --registry, no push."""
    p.add_argument("--registry", required=not registry, default="",
                   help=registry or "registry host[:port], e.g. docker.io or 127.0.0.1:5000")
    p.add_argument("--namespace", default="", help="image namespace (default: the matrix's)")
    p.add_argument("--repository", default="", help="image repository (default: the matrix's)")
    p.add_argument("--username", default=os.environ.get("REGISTRY_USERNAME", ""), help="registry user ($REGISTRY_USERNAME)")
    p.add_argument("--password-env", default="REGISTRY_PASSWORD", metavar="VAR",
                   help="environment variable holding the registry password (never pass it as an argument)")
    p.add_argument("--insecure", action="store_true", help="plain-HTTP registry, e.g. a local test registry")
    if catalog:  # one set of registry arguments serves every step: publish and merge leave the catalog as it is
        p.add_argument("--catalog", type=Path, help="catalog file to keep in step (atomically rewritten by promote, "
                                                    "discard and prune)")


def build_args(p: argparse.ArgumentParser, job: bool = False) -> None:
    """How the Docker engine builds and tests (a CI `job` builds one stage and prints its JSON)."""
    p.add_argument("--engine", choices=("docker",), default="docker",
                   help="docker: the local daemon's BuildKit (the Dagger engine is used through `dagger call`)")
    if not job:
        p.add_argument("--concurrency", type=positive, default=2, help="images built and tested at once")
        p.add_argument("--report", type=Path, help="write the JSON report here")
    p.add_argument("--gpu", action="store_true", help="also run the backend's device check (host needs the accelerator)")
    p.add_argument("--source-url", default="https://github.com/gpustack/runner", help="org.opencontainers.image.source")
    p.add_argument("--revision", default=os.environ.get("GITHUB_SHA", ""), help="org.opencontainers.image.revision")
    p.add_argument("--no-smoke-cache", action="store_true",
                   help="run every smoke check, even those remembered for an unchanged image (the new results are remembered)")
    p.add_argument("--build-cache", default="", metavar="HOST/NAMESPACE/REPOSITORY",
                   help="start from the shared stages other jobs pushed there, and push the ones built here")
    p.add_argument("--reproducible", action="store_true",
                   help="rewrite each image with timestamps clamped to the recipe commit's time and a fixed file "
                        "order, so two builds give one digest (a save and load of each image: bench/layer_diff.py)")


def engine_args(p: argparse.ArgumentParser) -> None:
    """The embedded engine: a private dockerd runner starts when no daemon is reachable."""
    p.add_argument("--keep-engine", action="store_true",
                   help="when runner started its own dockerd (no daemon on $DOCKER_HOST or the default socket), "
                        "leave it running for the next run instead of stopping it at the end")


def signing_args(p: argparse.ArgumentParser) -> None:
    """How published images' provenance is signed (the key itself never on the command line)."""
    p.add_argument("--sign-key", type=Path, metavar="FILE",
                   help="sign provenance with this PEM private key (or put the PEM in $RUNNER_SIGNING_KEY)")
    p.add_argument("--keyless", action="store_true",
                   help="sign keyless with Sigstore and the CI system's OIDC identity ($SIGSTORE_ID_TOKEN or ambient)")


def run_arg(p: argparse.ArgumentParser, required: bool = False) -> None:
    """The release run a step belongs to: its jobs record what they tested under it, merge and promote
    act on those records only."""
    p.add_argument("--run", default="", required=required, metavar="ID",
                   help="the release run (CI: GitHub's run_id, GitLab's pipeline ID): record results under it, "
                        "or act only on what it recorded")


def _command(sub, name: str, handler: str, help: str) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=help, description=help, formatter_class=Help)
    p.set_defaults(handler=handler)
    return p


def build_parser() -> argparse.ArgumentParser:
    """The whole `runner` command line."""
    ap = argparse.ArgumentParser(prog="runner", description=DESCRIPTION, formatter_class=Help)
    ap.add_argument("--version", action="version", version=f"runner {version()}", help="print runner's version and exit")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = _command(sub, "matrix", "runner.cli.inspect:matrix", "list the targets of the matrix")
    selection_args(p)
    p.add_argument("--format", choices=("table", "json", "tags", "github", "gitlab"), default="table",
                   help="github: the CI jobs (see `runner plan --ci`); gitlab: the child pipelines by file name, "
                        "one per backend when the selection spans several")

    p = _command(sub, "parse", "runner.cli.inspect:parse", "read runner image references into their fields (JSON lines)")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image references or bare tags, e.g. cuda12.8-vllm0.14.1")
    p.add_argument("--matrix", type=Path, help=MATRIX_HELP)

    p = _command(sub, "catalog", "runner.cli.inspect:catalog", "the consumer catalog: one record per target and platform")
    selection_args(p)
    p.add_argument("--file", type=Path, help="read this catalog file instead of the matrix")
    p.add_argument("--write", type=Path, help="write the whole catalog to this file (atomically)")
    p.add_argument("--format", choices=("table", "json"), default="table", help="json: every field of each record")
    p.add_argument("--history", metavar="TAG", default="",
                   help="every recorded digest change of TAG (from the digests file beside --file's catalog)")
    p.add_argument("--diff", nargs=2, metavar=("OLD", "NEW"),
                   help="what changed from OLD to NEW per backend (markdown; --format json): each a catalog "
                        "file, a gpustack-runner wheel, or a git revision (REV or REV:PATH)")

    p = _command(sub, "outdated", "runner.cli.outdated:outdated",
                 "newer service releases on the package index, proposed as matrix lines (exit 1: some)")
    p.add_argument("--matrix", type=Path, help=MATRIX_HELP)
    p.add_argument("--service", action="append", choices=("vllm", "sglang", "voxbox"),
                   help="only this service (repeatable; default: every service the index has)")
    p.add_argument("--write", action="store_true", help="write the proposed lines into the matrix file, "
                   "comments and layout kept (only when the edited matrix validates)")
    p.add_argument("--no-resolve", action="store_true", help="skip `runner resolve` of the proposed images")
    p.add_argument("--jobs", type=positive, default=4, help="uv resolves at once")
    p.add_argument("--format", choices=("markdown", "json"), default="markdown",
                   help="markdown: pull request text; json: everything, the matrix diff included")

    p = _command(sub, "schema", "runner.cli.inspect:schema", "print the JSON Schema of matrix.yaml")
    p.add_argument("--pack", type=Path, help="pack folder whose recipes name the backends")

    p = _command(sub, "official", "runner.cli.official:official",
                 "the official images the selected rows layer and the digests they build from")
    selection_args(p)
    p.add_argument("--lock", action="store_true", help="ask each image's registry for the digest its tag names and "
                   "record it in pack/<backend>/official.lock.yaml (a change to review)")
    p.add_argument("--refresh", action="store_true", help="with --lock: ask again for images already pinned")
    p.add_argument("--format", choices=("text", "json"), default="text",
                   help="json: every image with its digest (null: not pinned), its rows, and what was not checked")

    p = _command(sub, "plan", "runner.cli.inspect:plan", "the stage DAG shared across the selected targets")
    selection_args(p)
    p.add_argument("--format", choices=("tree", "json"), default="tree",
                   help="json: the stages, the checks' findings and the patches' results")
    p.add_argument("--ci", action="store_true",
                   help="the CI jobs instead: each stage built once, the figures that show it, and the release's "
                        "modelled time on --runners runners")
    p.add_argument("--runners", type=positive_count, default=20, help="runners for the modelled release time (--ci)")

    p = _command(sub, "components", "runner.cli.inspect:components",
                 "what each image contains, with versions, and what its recipe leaves out on purpose")
    selection_args(p)
    p.add_argument("--format", choices=("table", "json", "markdown"), default="table",
                   help="markdown: the committed pack/<backend>/components.md")

    p = _command(sub, "resolve", "runner.cli.resolve:resolve",
                 "resolve every install step of the selected images with uv, before any build (exit 2 on a conflict)")
    selection_args(p)
    p.add_argument("--format", choices=("table", "json"), default="table",
                   help="json: every install step, the unchecked ones too")
    p.add_argument("--jobs", type=positive, default=4, help="uv resolves at once")
    p.add_argument("--refresh", action="store_true", help="ask uv again, even for answers remembered for this content")
    p.add_argument("--verbose", action="store_true", help="list resolved steps too, with their versions")
    p.add_argument("--per-step", action="store_true",
                   help="resolve each install step only, not also each image's steps as one set (faster)")

    p = _command(sub, "dockerfile", "runner.cli.inspect:dockerfile", "render one target's stages as a multi-stage Dockerfile")
    p.add_argument("tag", metavar="TAG", help="the target's tag, e.g. cuda12.8-vllm0.14.1")
    p.add_argument("--platform", default="", help="platform, e.g. linux/arm64 (default: the target's first)")
    p.add_argument("--form", choices=("heredoc", "compat"), default="heredoc",
                   help="compat: no heredocs, for built-in frontends such as Docker 20.10's")
    p.add_argument("--matrix", type=Path, help=MATRIX_HELP)

    p = _command(sub, "profile", "runner.cli.inspect:profile", "the device profile of a backend: devices, mounts, variables, runtime")
    p.add_argument("--backend", required=True, help="the backend, e.g. cann")
    p.add_argument("--format", choices=("yaml", "json"), default="yaml", help="how to print the profile")
    p.add_argument("--gpustack", action="store_true",
                   help="compare with gpustack-runtime's own profile instead (exit 1 on a difference the profile does not explain)")
    p.add_argument("--matrix", type=Path, help=MATRIX_HELP)

    p = _command(sub, "consumer", "runner.cli.consumer:consumer",
                 "start every declared deployment through GPUStack's own code (pinned in pack/_consumer) and "
                 "compare what it starts, and gpustack-runtime's device profiles, with the committed record")
    p.add_argument("--write", action="store_true", help="write the record anew instead of comparing (review its diff)")
    p.add_argument("--matrix", type=Path, help=MATRIX_HELP)

    p = _command(sub, "run-command", "runner.cli.inspect:run_command",
                 "the docker run lines GPUStack's deployment of a target comes to, on a host with its accelerator")
    p.add_argument("tag", metavar="TAG", help="the target's tag, e.g. cuda12.8-vllm0.14.1")
    p.add_argument("--deployment", default="single", help="a deployment of pack/_consumer/deployments.yaml (default single)")
    p.add_argument("--devices", default="", help="host device indices to expose, e.g. 2,3 (default 0)")
    p.add_argument("--worker-ip", default="", help="this worker's address, for the one GPUStack filled in")
    p.add_argument("--leader-ip", default="", help="the leading worker's address, for a follower's lines")
    p.add_argument("--files", type=Path, help="write the files GPUStack puts into the container here, and mount them")
    p.add_argument("--device-check", action="store_true", help="run the tiny accelerator check instead of serving")
    p.add_argument("--registry", default="", help="registry host the image is pulled from (default: Docker Hub)")
    p.add_argument("--matrix", type=Path, help=MATRIX_HELP)

    p = _command(sub, "build", "runner.cli.engine:build",
                 "build and smoke-test the selection on the local Docker daemon (or runner's own, when none answers)")
    selection_args(p)
    build_args(p)
    engine_args(p)

    p = _command(sub, "smoke", "runner.cli.release:smoke",
                 "smoke-test existing images (a -dev index before promotion, any runner image) on the local Docker daemon")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image references; their tags name their targets")
    p.add_argument("--target", default="", help="the target to test them as, when the tag is not a runner tag")
    p.add_argument("--platform", default="", help="only this platform (default: the tag's, a local image's, or all)")
    p.add_argument("--matrix", type=Path, help=MATRIX_HELP)
    p.add_argument("--report", type=Path, help="write the JSON report here")
    p.add_argument("--gpu", action="store_true", help="also run the backend's device check (host needs the accelerator)")
    p.add_argument("--no-smoke-cache", action="store_true", help="run every check, even those remembered for the image (the new results are remembered)")

    p = _command(sub, "rehearse", "runner.cli.rehearse:rehearse",
                 "build the selected images here as the release would, with declared substitutions only (stand-in "
                 "bases and official images, a local source mirror, published artifacts for device compiles), and "
                 "smoke-test them")
    selection_args(p)
    p.add_argument("--format", choices=("table", "json"), default="table", help="json: the whole report on stdout")
    p.add_argument("--report", type=Path, help="write the JSON report here")
    p.add_argument("--keep", action="store_true", help="keep the images and build cache the rehearsal made")
    engine_args(p)
    p.add_argument("--all", action="store_true",
                   help="rehearse the whole selection (without filters: the whole matrix); default without filters: "
                        f"{DEFAULT_TARGET} on {DEFAULT_PLATFORM}, a small real target")
    p.add_argument("--cover", action="store_true",
                   help="rehearse only the fewest target-platforms of the selection (without filters: the matrix) that "
                        "together run every distinct recipe script, amd64 first")

    p = _command(sub, "job", "runner.cli.jobs:job",
                 "run one CI job of `runner plan --ci`: build its stage from the build cache and push it there; "
                 "a target's job also smoke-tests its image, pushes its single-arch tag and records it for the run")
    p.add_argument("key", metavar="KEY", help="the job's key (its stage key, 16 characters suffice)")
    p.add_argument("--matrix", type=Path, help=MATRIX_HELP)
    p.add_argument("--selection", default="", metavar="JSON",
                   help="the selection the job was planned in, as `matrix --format github|gitlab` emits it (default: all)")
    build_args(p, job=True)
    run_arg(p)
    p.add_argument("--dry-run", action="store_true",
                   help="build and smoke-test only: read the build cache, push and record nothing, need no credentials")
    p.add_argument("--emulate", action="store_true",
                   help="build another platform's job under emulation (CI never does: arm64 jobs run on arm64)")
    registry_args(p, catalog=False, registry="push the target's single-arch tag to this registry")
    signing_args(p)

    p = _command(sub, "publish", "runner.cli.release:publish",
                 "build (cached), smoke-test and publish single-arch tags and -dev indexes")
    selection_args(p)
    build_args(p)
    registry_args(p)
    p.add_argument("--single-arch", action="store_true", help="push single-arch images only (`merge` makes the indexes)")
    signing_args(p)
    run_arg(p)

    for name, help in (("merge", "write -dev indexes from single-arch tags by digest, for tags whose platforms all passed"),
                       ("promote", "point each final tag at its tested -dev index by digest, no rebuild"),
                       ("discard", "delete every tag of the selected targets and drop them from the catalog")):
        p = _command(sub, name, f"runner.cli.release:{name}", help)
        selection_args(p, deprecated=name != "discard")  # discard reaches deprecated tags too, as in Dagger
        registry_args(p)
        if name != "discard":
            p.add_argument("--skip-missing", action="store_true",
                           help="list and skip targets an earlier step left nothing for, instead of failing")
            run_arg(p, required=name == "merge")
        if name == "promote":
            p.add_argument("--reason", default="", help="why a final tag changes digest (kept in the tag history)")

    p = _command(sub, "cache", "runner.cli.cache:cache",
                 "this project's cache: what each kind holds and its size, or remove it whole with --clear")
    p.add_argument("--info", action="store_true", help="sizes per kind (the default)")
    p.add_argument("--clear", action="store_true",
                   help="stop a kept embedded engine and remove runner's cache of this project (asks nothing)")

    p = _command(sub, "release-report", "runner.cli.release:release_report",
                 "the report of one release run: per target and platform tested or not (and why), digest, size, "
                 "time, -dev index, promoted")
    selection_args(p)
    registry_args(p)
    run_arg(p, required=True)
    p.add_argument("--format", choices=("markdown", "junit", "json"), default="markdown",
                   help="markdown: a GitHub step summary; junit: a GitLab test report")

    p = _command(sub, "prune", "runner.cli.release:prune",
                 "delete tags the matrix no longer has (and, with --intermediates, -dev/single-arch tags)")
    p.add_argument("--matrix", type=Path, help=MATRIX_HELP)
    p.add_argument("--intermediates", action="store_true", help="also -dev and single-arch tags of promoted targets")
    registry_args(p)
    supply_chain_commands(sub)
    return ap


def supply_chain_commands(sub) -> None:
    """verify, mirror and keygen: what a published image proves, and copies of it elsewhere."""
    p = _command(sub, "verify", "runner.cli.supply:verify",
                 "check published images' signed provenance and SBOM (exit 2 on any mismatch); with --mirror, "
                 "check that every mirror serves each final tag at the same digest")
    p.add_argument("images", nargs="*", metavar="IMAGE", help="HOST/NAMESPACE/REPOSITORY:TAG references")
    p.add_argument("--key", type=Path, action="append", default=[], metavar="PUBLIC.pem",
                   help="trust provenance signed by this key (repeatable)")
    p.add_argument("--identity", default="", help="trust Sigstore keyless signatures of this identity (the CI workflow)")
    p.add_argument("--issuer", default="", help="the OIDC issuer of --identity, e.g. https://token.actions.githubusercontent.com")
    p.add_argument("--catalog", type=Path, help="also check each tag against the digest this catalog pins")
    p.add_argument("--mirror", action="append", default=[], metavar="HOST/NAMESPACE",
                   help="check the selection's final tags on this mirror against --registry (repeatable)")
    _credentials(p)
    selection_args(p, platform=False)
    p.add_argument("--format", choices=("table", "json"), default="table", help="json: every check's result")

    p = _command(sub, "mirror", "runner.cli.supply:mirror",
                 "copy the selection's final tags by digest, with their SBOMs and provenance, to another registry")
    p.add_argument("--to", required=True, metavar="HOST/NAMESPACE", help="where the copies go")
    _credentials(p)
    selection_args(p, platform=False)

    p = _command(sub, "keygen", "runner.cli.supply:keygen",
                 "make an Ed25519 key pair for signing provenance without Sigstore (air-gapped sites)")
    p.add_argument("folder", type=Path, metavar="DIR", help="writes DIR/signing.key (0600) and DIR/signing.pub")


def _credentials(p: argparse.ArgumentParser) -> None:
    p.add_argument("--registry", default="", help="the source registry host[:port] (default: IMAGE's own)")
    p.add_argument("--namespace", default="", help="image namespace (default: the matrix's)")
    p.add_argument("--repository", default="", help="image repository (default: the matrix's)")
    p.add_argument("--username", default=os.environ.get("REGISTRY_USERNAME", ""), help="registry user ($REGISTRY_USERNAME)")
    p.add_argument("--password-env", default="REGISTRY_PASSWORD", metavar="VAR",
                   help="environment variable holding the registry password (empty: anonymous)")
    p.add_argument("--mirror-username", default=os.environ.get("MIRROR_USERNAME", ""),
                   help="user on the mirrors ($MIRROR_USERNAME)")
    p.add_argument("--mirror-password-env", default="MIRROR_PASSWORD", metavar="VAR",
                   help="environment variable holding the mirrors' password")
    p.add_argument("--insecure", action="store_true", help="plain-HTTP registries, e.g. local test registries")
