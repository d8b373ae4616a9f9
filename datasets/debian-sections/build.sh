#!/bin/sh
# Builds datasets/debian-sections/data/{train,val,test}.jsonl from `apt-cache dumpavail`
# (short description -> Section, 10 sections, 80/10/10). All options go to build.py; see
# `build.sh --help`. Needs only python3 and apt; runs `apt-get update` if the lists are empty.
set -eu
exec python3 "$(dirname "$0")/build.py" "$@"
