#!/usr/bin/env sh
# Prints the Dagger engine version pinned in dagger.json: the one place it is set (the tests install
# the dagger-io release of the same version). CI installs the CLI of this version.
set -eu
cd "$(dirname "$0")/.."
python3 -c 'import json; print(json.load(open("dagger.json"))["engineVersion"])'
