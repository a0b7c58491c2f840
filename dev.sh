#!/bin/sh
# dev.sh - the two commands of README.md, for a fresh Debian machine:
#
#   sh dev.sh demo   set everything up, then run the demo (make demo)
#   sh dev.sh test   set everything up, then run every test (make test)
#
# A minimal Debian image may lack even make, a C compiler or python3: as
# root, this installs them with apt-get first; everything else (the other
# Debian packages, the Python packages in .venv/, the build) is done by the
# Makefile's targets.  Other arguments are passed to make as targets.
set -eu
cd "$(dirname "$0")"

if [ $# -eq 0 ]; then
    echo "usage: sh dev.sh demo|test|<make target>..." >&2
    exit 2
fi

need=""
command -v make >/dev/null 2>&1 || need="$need make"
command -v cc >/dev/null 2>&1 || need="$need build-essential"
command -v python3 >/dev/null 2>&1 || need="$need python3 python3-venv python3-dev"
if [ -n "$need" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "dev.sh: apt-get install:$need"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $need
    else
        echo "dev.sh: missing:$need (run as root on Debian to install them, or install them yourself)" >&2
        exit 1
    fi
fi

exec make "$@"
