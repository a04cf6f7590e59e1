#!/usr/bin/env bash
# Installs the system packages equireg needs, through apt, when it can.
#   gfortran              builds py3nj, a dependency of the escnn extra
#   dataset-fashion-mnist the embedded default dataset (/usr/share/datasets/fashion-mnist)
# Without root or apt it only reports what is missing; the Python install still proceeds
# (escnn tests then skip, and the fashion-mnist loader explains how to get the data).
set -u
need=()
command -v gfortran >/dev/null 2>&1 || need+=(gfortran)
[ -d /usr/share/datasets/fashion-mnist ] || need+=(dataset-fashion-mnist)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "setup: installing ${need[*]} with apt-get"
  apt-get update -qq >/dev/null 2>&1 || true
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null || \
    echo "setup: apt-get could not install ${need[*]}; continuing without them" >&2
else
  echo "setup: missing ${need[*]}; install them with: sudo apt-get install ${need[*]}" >&2
fi
exit 0
