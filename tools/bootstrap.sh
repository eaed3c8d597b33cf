#!/usr/bin/env bash
# Create (or update) the project's virtual environment and install the package into it.
#
#   tools/bootstrap.sh VENV_DIR [EXTRAS]      e.g. tools/bootstrap.sh .venv dev
#
# torch is the one dependency that needs care: a plain `torch` (or an open range such as this package's
# own `torch>=2.4`) resolves on PyPI to the newest release, whose Linux wheels pull in several GB of CUDA
# packages. So torch is settled *before* the package is installed:
#   1. a torch already importable in the venv is kept as it is;
#   2. a torch importable by the Python that creates the venv (a GPU user's conda, system or venv
#      install) is kept as it is: the new venv is given that environment's site-packages through a
#      .pth file, so it imports that torch and pip sees it installed;
#   3. otherwise TORCH_SPEC (default torch==2.13.0) is installed, with TORCH_PIP_ARGS passed to pip. On
#      a machine without an NVIDIA GPU, pip is first asked (dry run) what TORCH_SPEC would bring; if
#      that includes CUDA packages, the CPU build is taken from TORCH_CPU_INDEX instead, and nothing
#      CUDA is ever installed.
# After that, `pip install -e .[EXTRAS]` finds `torch>=2.4` satisfied and leaves torch alone.
set -euo pipefail

venv=${1:?usage: tools/bootstrap.sh VENV_DIR [EXTRAS]}
extras=${2:-}
python=${PYTHON:-python3}
torch_spec=${TORCH_SPEC:-torch==2.13.0}
torch_cpu_index=${TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}
read -r -a torch_pip_args <<< "${TORCH_PIP_ARGS:-}"
here=$(cd "$(dirname "$0")/.." && pwd)
say() { echo "bootstrap: $*"; }

has_torch() { "$1" -c "import torch" >/dev/null 2>&1; }
torch_version() { "$1" -c "import torch; print(torch.__version__)"; }

if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
    if has_torch "$python"; then
        purelib=$("$venv/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
        "$python" -c "import site; print('\n'.join(site.getsitepackages()))" > "$purelib/_maskrcnn_parent_env.pth"
        say "using the torch $(torch_version "$python") installed for $python (its site-packages are linked into $venv)"
    fi
fi
vpy="$venv/bin/python"

gpu_present() { command -v nvidia-smi >/dev/null 2>&1 || [ -e /dev/nvidia0 ] || [ -e /proc/driver/nvidia/version ]; }

if has_torch "$vpy"; then
    version=$(torch_version "$vpy")
    say "keeping torch $version"
    if ! "$vpy" -c "import sys, torch; v = tuple(int(p) for p in torch.__version__.split('+')[0].split('.')[:2]); sys.exit(v < (2, 4))"; then
        say "torch $version is older than 2.4, which maskrcnn needs; upgrade it (or remove $venv and use another Python)" >&2
        exit 1
    fi
else
    args=("${torch_pip_args[@]}")
    if [ ${#args[@]} -eq 0 ] && ! gpu_present; then
        # Ask pip what it would install; CUDA packages on a machine without a GPU mean the wrong build.
        report=$("$vpy" -m pip install --quiet --dry-run --report - "$torch_spec")
        if echo "$report" | "$vpy" -c "import json, sys; names = [i['metadata']['name'].lower() for i in json.load(sys.stdin)['install']]; sys.exit(not any(n.startswith('nvidia') or n == 'triton' for n in names))"; then
            say "no NVIDIA GPU here: taking the CPU build of torch from $torch_cpu_index"
            args=(--index-url "$torch_cpu_index")
        fi
    fi
    say "installing $torch_spec ${args[*]}"
    "$vpy" -m pip install --quiet "${args[@]}" "$torch_spec"
fi

target="$here"
[ -n "$extras" ] && target="$here[$extras]"
"$vpy" -m pip install --quiet -e "$target"
say "ready: $("$vpy" -c 'import maskrcnn, torch; print(f"maskrcnn {maskrcnn.__version__}, torch {torch.__version__}")')"
