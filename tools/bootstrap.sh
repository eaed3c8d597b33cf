#!/usr/bin/env bash
# Create (or update) the project's virtual environment and install the package into it.
#
#   tools/bootstrap.sh VENV_DIR [EXTRAS]      e.g. tools/bootstrap.sh .venv dev
#
# torch is the one dependency that needs care: on PyPI a plain `torch` (or an open range such as the
# package's own `torch>=2.4`) resolves to the newest build, which on Linux drags in several GB of CUDA
# packages. So torch is settled *before* the package is installed:
#   1. a torch already importable in the venv is kept as it is;
#   2. a torch importable by the Python that creates the venv (a GPU user's conda/system install) is kept
#      as it is: the venv is created with --system-site-packages so it sees that torch;
#   3. otherwise TORCH_SPEC (default: the pinned CPU-capable release, torch==2.13.0) is installed, with
#      TORCH_PIP_ARGS passed to pip (e.g. `--index-url https://download.pytorch.org/whl/cpu` where the
#      public CPU index is reachable, or a CUDA index on a GPU machine).
# After that, `pip install -e .[EXTRAS]` finds `torch>=2.4` satisfied and installs no other torch.
set -euo pipefail

venv=${1:?usage: tools/bootstrap.sh VENV_DIR [EXTRAS]}
extras=${2:-}
python=${PYTHON:-python3}
torch_spec=${TORCH_SPEC:-torch==2.13.0}
read -r -a torch_pip_args <<< "${TORCH_PIP_ARGS:-}"

here=$(cd "$(dirname "$0")/.." && pwd)

if [ ! -x "$venv/bin/python" ]; then
    venv_flags=()
    if "$python" -c "import torch" >/dev/null 2>&1; then
        echo "bootstrap: using the torch already installed for $python ($("$python" -c 'import torch; print(torch.__version__)'))"
        venv_flags+=(--system-site-packages)
    fi
    "$python" -m venv "${venv_flags[@]}" "$venv"
fi

vpy="$venv/bin/python"
if "$vpy" -c "import torch" >/dev/null 2>&1; then
    echo "bootstrap: keeping torch $("$vpy" -c 'import torch; print(torch.__version__)')"
else
    echo "bootstrap: installing $torch_spec ${torch_pip_args[*]}"
    "$vpy" -m pip install --quiet "${torch_pip_args[@]}" "$torch_spec"
fi

target="$here"
[ -n "$extras" ] && target="$here[$extras]"
"$vpy" -m pip install --quiet -e "$target"
