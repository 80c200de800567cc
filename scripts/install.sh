#!/usr/bin/env bash
# Set up napari-cervseg in ./.venv on a Debian/Ubuntu machine.
#   bash scripts/install.sh          the library, CLI and napari plugin
#   bash scripts/install.sh --test   plus the test tools and the X server the viewer tests need
# Idempotent: a second run only checks what is there.
set -euo pipefail
cd "$(dirname "$0")/.."

WITH_TESTS=0
[ "${1:-}" = "--test" ] && WITH_TESTS=1

apt_install() {
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  echo "installing system packages: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

if command -v apt-get >/dev/null 2>&1; then
  # python3-venv for the virtual environment; OpenGL/EGL, fontconfig and X libraries for napari's
  # Qt canvas; Xvfb + xauth so the viewer tests get a real (virtual) X server (DESIGN.md, Testing)
  pkgs=()
  python3 -c "import venv, ensurepip" 2>/dev/null || pkgs+=(python3-venv)
  if [ $WITH_TESTS -eq 1 ]; then
    pkgs+=(xvfb xauth libgl1 libegl1 libfontconfig1 libdbus-1-3 libxkbcommon-x11-0 libxcb-icccm4
           libxcb-keysyms1 libxcb-xinerama0 libxcb-image0 libxcb-randr0 libxcb-render-util0
           libxcb-shape0 libxcb-cursor0)
  fi
  [ ${#pkgs[@]} -gt 0 ] && apt_install "${pkgs[@]}"
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
# torch + torchvision first, pinned as a pair that imports together (see DESIGN.md); on machines
# that keep these wheels locally pip takes them from disk
if ! .venv/bin/python -c "import torch, torchvision" >/dev/null 2>&1; then
  .venv/bin/python -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
fi
if [ $WITH_TESTS -eq 1 ]; then
  .venv/bin/python -m pip install -q -e ".[qt,xception,test]"
else
  .venv/bin/python -m pip install -q -e ".[qt,xception]"
fi
# pytorch-grad-cam (grad-cam >= 1.5.7, a plain dependency) asks for the headless OpenCV like this
# package does: nothing is skipped, so the environment must be consistent
.venv/bin/python -m pip check
echo "napari-cervseg installed in .venv ($(.venv/bin/python -c 'import napari_cervseg; print(napari_cervseg.__version__)'))"
