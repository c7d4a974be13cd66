#!/usr/bin/env sh
# Runs one `dagger call FUNCTION [selection] [rest...]` with the selection CI passes in environment
# variables (never pasted into script text): RUNNER_BACKEND, RUNNER_BACKEND_VERSION, RUNNER_SERVICE,
# RUNNER_SERVICE_VERSION, and for build and matrix RUNNER_VARIANT and RUNNER_PLATFORM. The selection
# goes right after FUNCTION, so chained calls (`images publish ...`) keep their own arguments.
# Registry credentials travel as REGISTRY_USERNAME and REGISTRY_PASSWORD; Dagger reads the password
# as env://REGISTRY_PASSWORD, a secret, never in argv or logs.
set -eu
fn="$1"; shift
n=$#  # the caller's remaining arguments; selection arguments are appended, then rotated in front
[ -n "${RUNNER_BACKEND:-}" ] && set -- "$@" --backend "$RUNNER_BACKEND"
[ -n "${RUNNER_BACKEND_VERSION:-}" ] && set -- "$@" --backend-version "$RUNNER_BACKEND_VERSION"
[ -n "${RUNNER_SERVICE:-}" ] && set -- "$@" --service "$RUNNER_SERVICE"
[ -n "${RUNNER_SERVICE_VERSION:-}" ] && set -- "$@" --service-version "$RUNNER_SERVICE_VERSION"
case "$fn" in
  build|images|matrix)
    [ -n "${RUNNER_VARIANT:-}" ] && set -- "$@" --variant "$RUNNER_VARIANT"
    [ -n "${RUNNER_PLATFORM:-}" ] && set -- "$@" --platform "$RUNNER_PLATFORM" ;;
esac
i=0
while [ "$i" -lt "$n" ]; do
  a="$1"; shift; set -- "$@" "$a"; i=$((i + 1))
done
exec dagger call "$fn" "$@"
