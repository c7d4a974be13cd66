#!/usr/bin/env sh
# Runs one `dagger call` with the selection CI passes in environment variables (never interpolated
# into the script text): RUNNER_BACKEND, RUNNER_BACKEND_VERSION, RUNNER_VARIANT, RUNNER_SERVICE,
# RUNNER_SERVICE_VERSION, RUNNER_PLATFORM. Usage: ci/dagger-call.sh FUNCTION [args...]
# Registry credentials travel as REGISTRY_USERNAME and REGISTRY_PASSWORD (read by Dagger as
# env://REGISTRY_PASSWORD, so the password is a Dagger secret and never in argv or logs).
set -eu
fn="$1"; shift
set -- "$fn" "$@"
[ -n "${RUNNER_BACKEND:-}" ] && set -- "$@" --backend "$RUNNER_BACKEND"
[ -n "${RUNNER_BACKEND_VERSION:-}" ] && set -- "$@" --backend-version "$RUNNER_BACKEND_VERSION"
[ -n "${RUNNER_SERVICE:-}" ] && set -- "$@" --service "$RUNNER_SERVICE"
[ -n "${RUNNER_SERVICE_VERSION:-}" ] && set -- "$@" --service-version "$RUNNER_SERVICE_VERSION"
case "$fn" in
  build|matrix)
    [ -n "${RUNNER_VARIANT:-}" ] && set -- "$@" --variant "$RUNNER_VARIANT"
    [ -n "${RUNNER_PLATFORM:-}" ] && set -- "$@" --platform "$RUNNER_PLATFORM" ;;
esac
exec dagger call "$@"
