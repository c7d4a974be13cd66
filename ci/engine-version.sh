#!/usr/bin/env sh
# Prints the Dagger engine version pinned in dagger.json: the one place it is set (the tests install
# the dagger-io release of the same version). CI installs the CLI of this version; an empty or
# missing version is an error, never "whatever is latest".
set -eu
cd "$(dirname "$0")/.."
version="$(python3 -c 'import json; print(json.load(open("dagger.json")).get("engineVersion", ""))')"
case "$version" in
  v[0-9]*.[0-9]*.[0-9]*) printf '%s\n' "$version" ;;
  *) echo "dagger.json has no engineVersion like v0.21.11 (found: '$version')" >&2; exit 1 ;;
esac
