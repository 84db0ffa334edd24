#!/usr/bin/env bash
# Build llama.cpp's own server (`llama-server`: parallel slots, continuous batching, prompt cache)
# from the llama.cpp source vendored in the llama-cpp-python sdist of VERSION, and put it at DEST,
# with its `llama-quantize` beside it (re-encodes the packaged GGUF for this CPU: local_server).
# The binaries are cached per version under CACHE (like pip's wheel cache), so only the first
# install on a machine compiles (a few minutes on 2 cores).
#   usage: build-llama-server.sh PIP VERSION DEST [CACHE]
set -euo pipefail
pip=$1 version=$2 dest=$3
cache=${4:-${XDG_CACHE_HOME:-$HOME/.cache}/magnet-dagster/llama-server-$version-$(uname -m)}
if [[ ! -x $cache/llama-server || ! -x $cache/llama-quantize ]]; then
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    echo "building llama-server from llama-cpp-python $version's llama.cpp (first install only)"
    "$pip" download --quiet --no-deps --no-binary :all: --dest "$work" "llama-cpp-python==$version"
    tar -xzf "$work"/llama_cpp_python-"$version".tar.gz -C "$work"
    src=$work/llama_cpp_python-$version/vendor/llama.cpp
    cmake -S "$src" -B "$work/build" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF \
        -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
        -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DGGML_NATIVE=ON \
        $(command -v ninja >/dev/null && echo -G Ninja) >"$work/cmake.log" || { cat "$work/cmake.log"; exit 1; }
    cmake --build "$work/build" --target llama-server llama-quantize -j "$(nproc)" >"$work/build.log" \
        || { tail -50 "$work/build.log"; exit 1; }
    mkdir -p "$cache"
    for bin in llama-quantize llama-server; do
        cp "$work/build/bin/$bin" "$cache/$bin.tmp"
        mv "$cache/$bin.tmp" "$cache/$bin"
    done
fi
install -m 755 "$cache/llama-quantize" "$(dirname "$dest")/llama-quantize"
install -m 755 "$cache/llama-server" "$dest"
