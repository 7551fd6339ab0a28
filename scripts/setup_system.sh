#!/usr/bin/env bash
# Install the Debian packages the project needs (simulators, compilers, datasets), or say which
# ones are missing when this shell cannot install them.
set -euo pipefail
need=()
command -v iverilog >/dev/null 2>&1 || need+=(iverilog)
command -v perl >/dev/null 2>&1 || need+=(perl)
command -v g++ >/dev/null 2>&1 || need+=(g++)
command -v make >/dev/null 2>&1 || need+=(make)
[ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] || \
  [ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte ] || need+=(dataset-fashion-mnist)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "setup: installing Debian packages: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q "${need[@]}" >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q "${need[@]}" >/dev/null; }
else
  echo "setup: missing Debian packages: ${need[*]}" >&2
  echo "setup: install them with: sudo apt-get install ${need[*]}" >&2
  exit 1
fi
