#!/usr/bin/env bash
# Sets up everything microtrain needs on a fresh Debian machine, idempotently:
# Debian packages (installed with apt-get when running as root, otherwise named),
# a virtual environment in .venv and the Python dependencies (torch 2.13.0 CPU).
set -euo pipefail
cd "$(dirname "$0")/.."

# gcc-arm-none-eabi + libnewlib-arm-none-eabi + qemu-system-arm: the Cortex-M targets;
# gcc-riscv64-unknown-elf + picolibc-riscv64-unknown-elf + qemu-system-misc (qemu-system-riscv32):
# the RISC-V targets; cmake: the library output (compile --target lib) is built out of tree with it.
DEB_PACKAGES="gcc make cmake gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm \
gcc-riscv64-unknown-elf picolibc-riscv64-unknown-elf qemu-system-misc valgrind dataset-fashion-mnist"
missing=""
for p in $DEB_PACKAGES; do
    dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
if [ -n "$missing" ]; then
    if [ "$(id -u)" = "0" ]; then
        echo "setup: installing Debian packages:$missing"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq $missing >/dev/null
    else
        echo "setup: missing Debian packages:$missing" >&2
        echo "setup: run as root, or: sudo apt-get install$missing" >&2
        exit 1
    fi
fi

PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
if ! "$PYTHON" -c 'import sys; assert sys.version_info[:2] == (3, 11)' 2>/dev/null; then
    echo "setup: this setup uses Python 3.11 (the local torch wheel is built for it); $PYTHON is $("$PYTHON" --version 2>&1)" >&2
    exit 1
fi
if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv"
    "$PYTHON" -m venv .venv
fi
stamp=.venv/.microtrain-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ scripts/setup.sh -nt "$stamp" ]; then
    echo "setup: installing Python dependencies (torch==2.13.0 CPU, numpy, ...)"
    .venv/bin/pip install -q --upgrade pip
    # torch first and pinned, so that nothing pulls a CUDA build.
    .venv/bin/pip install -q "torch==2.13.0"
    # ray: the tests check that `microtrain plan --backend ray` gives the local backend's numbers;
    # fleet: Flower, for `microtrain fleet` and its tests.
    .venv/bin/pip install -q -e ".[dev,ray,fleet]"
    touch "$stamp"
fi
