#!/usr/bin/env sh
# Runs one `dagger call FUNCTION [selection] [rest...]`. Functions that take a selection get it from
# environment variables CI sets (never pasted into script text): RUNNER_BACKEND,
# RUNNER_BACKEND_VERSION, RUNNER_SERVICE, RUNNER_SERVICE_VERSION, and for build, images, matrix and
# resolve RUNNER_VARIANT and RUNNER_PLATFORM. The selection goes right after FUNCTION, so chained calls
# (`images publish ...`) keep their own arguments. A CI job (`job --key K --selection S`) carries the
# selection it was planned in: nothing is added to it, so no forwarded variable can change it.
# Registry credentials travel as REGISTRY_USERNAME and REGISTRY_PASSWORD; Dagger reads the password
# as env://REGISTRY_PASSWORD, a secret, never in argv or logs.
set -eu
fn="$1"; shift
case "$fn" in
  matrix|plan|build|images|merge|promote|discard|resolve|release-report|drive) ;;
  *) exec dagger call "$fn" "$@" ;;
esac
n=$#  # the caller's remaining arguments; selection arguments are appended, then rotated in front
if [ -n "${RUNNER_BACKEND:-}" ]; then set -- "$@" --backend "$RUNNER_BACKEND"; fi
if [ -n "${RUNNER_BACKEND_VERSION:-}" ]; then set -- "$@" --backend-version "$RUNNER_BACKEND_VERSION"; fi
if [ -n "${RUNNER_SERVICE:-}" ]; then set -- "$@" --service "$RUNNER_SERVICE"; fi
if [ -n "${RUNNER_SERVICE_VERSION:-}" ]; then set -- "$@" --service-version "$RUNNER_SERVICE_VERSION"; fi
case "$fn" in
  build|images|matrix|resolve)
    if [ -n "${RUNNER_VARIANT:-}" ] && [ "$fn" != resolve ]; then set -- "$@" --variant "$RUNNER_VARIANT"; fi
    if [ -n "${RUNNER_PLATFORM:-}" ]; then set -- "$@" --platform "$RUNNER_PLATFORM"; fi ;;
esac
i=0
while [ "$i" -lt "$n" ]; do
  a="$1"; shift; set -- "$@" "$a"; i=$((i + 1))
done
exec dagger call "$fn" "$@"
