#!/usr/bin/env sh
# Prints the Dagger engine version pinned in dagger.json: the one place it is set (pyproject.toml pins
# the same dagger-io release, and a test keeps the two together). CI installs the CLI of this version.
set -eu
cd "$(dirname "$0")/.."
python3 -c 'import json; print(json.load(open("dagger.json"))["engineVersion"])'
