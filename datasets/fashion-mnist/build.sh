#!/bin/sh
# Builds datasets/fashion-mnist/data/ (train/val/test IDX files + classes.txt) from Debian's
# dataset-fashion-mnist package, installing the package first if it is missing (as root).
# Options go to build.py; see `build.sh --help`.
set -eu
if ! dpkg-query -W -f='${Status}\n' dataset-fashion-mnist 2>/dev/null | grep -q '^install ok installed'; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "dataset-fashion-mnist is not installed: run \`sudo apt-get install dataset-fashion-mnist\`" >&2
        exit 1
    fi
    echo "installing dataset-fashion-mnist"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null
fi
exec python3 "$(dirname "$0")/build.py" "$@"
