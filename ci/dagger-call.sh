#!/usr/bin/env sh
# Runs one `dagger call ...`. A call that starts with `select` gets the selection from environment
# variables CI sets (never pasted into script text), right after `select`, where the module declares
# the filters once: RUNNER_BACKEND, RUNNER_BACKEND_VERSION, RUNNER_SERVICE, RUNNER_SERVICE_VERSION, and
# RUNNER_VARIANT and RUNNER_PLATFORM unless the chain releases (`with-registry`: merge, promote and
# discard act on whole multi-arch tags) or drives (the release workflow carries neither on). Chained
# calls keep their own arguments: `select images summary`, `select with-registry ... merge --run R`.
# Any other call is passed on as it is: a CI job (`job --key K --selection S`) carries the selection
# it was planned in, so no forwarded variable can change it.
# Registry credentials travel as REGISTRY_USERNAME and REGISTRY_PASSWORD; Dagger reads the password
# as env://REGISTRY_PASSWORD, a secret, never in argv or logs.
# RUNNER_RELEASE_BACKEND, set in the child pipeline of one backend when a GitLab release is split per
# backend, narrows RUNNER_BACKEND to it (a forwarded RUNNER_BACKEND would otherwise shadow it).
set -eu
if [ "${1:-}" != select ]; then exec dagger call "$@"; fi
RUNNER_BACKEND="${RUNNER_RELEASE_BACKEND:-${RUNNER_BACKEND:-}}"
shift
n=$#  # the chain after `select`; selection arguments are appended, then rotated in front of it
narrow=yes
for a in "$@"; do
  case "$a" in with-registry|drive) narrow=no ;; esac
done
if [ -n "${RUNNER_BACKEND:-}" ]; then set -- "$@" --backend "$RUNNER_BACKEND"; fi
if [ -n "${RUNNER_BACKEND_VERSION:-}" ]; then set -- "$@" --backend-version "$RUNNER_BACKEND_VERSION"; fi
if [ -n "${RUNNER_SERVICE:-}" ]; then set -- "$@" --service "$RUNNER_SERVICE"; fi
if [ -n "${RUNNER_SERVICE_VERSION:-}" ]; then set -- "$@" --service-version "$RUNNER_SERVICE_VERSION"; fi
if [ "$narrow" = yes ]; then
  if [ -n "${RUNNER_VARIANT:-}" ]; then set -- "$@" --variant "$RUNNER_VARIANT"; fi
  if [ -n "${RUNNER_PLATFORM:-}" ]; then set -- "$@" --platform "$RUNNER_PLATFORM"; fi
fi
i=0
while [ "$i" -lt "$n" ]; do
  a="$1"; shift; set -- "$@" "$a"; i=$((i + 1))
done
exec dagger call select "$@"
