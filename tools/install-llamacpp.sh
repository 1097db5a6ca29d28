#!/bin/sh
# Build the pinned llama.cpp (CPU) into a local prefix, from the source that
# the npm package node-llama-cpp carries as a git bundle: no download at build
# time but the npm tarball itself. Reused while the pin is unchanged.
#
#   sh tools/install-llamacpp.sh [PREFIX]      default PREFIX: build/llamacpp
#
# Afterwards: PKG_CONFIG_PATH=PREFIX/lib/pkgconfig, or make LLAMA_PREFIX=PREFIX.
# The prefix also holds bin/llama-server and bin/llama-perplexity (tests and
# bench/ use them) and src/ with the source tree (gguf-py for tools/).
set -e
NODE_LLAMA_CPP_VERSION=3.22.1
LLAMA_COMMIT=de3ff815ea7d559ee917f063901b8986f038abc6
PREFIX=${1:-build/llamacpp}
mkdir -p "$PREFIX"
PREFIX=$(cd "$PREFIX" && pwd)
STAMP="$PREFIX/.pin"

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$LLAMA_COMMIT" ] &&
   [ -x "$PREFIX/bin/llama-server" ] && [ -f "$PREFIX/lib/pkgconfig/llama.pc" ]; then
    echo "install-llamacpp: llama.cpp $LLAMA_COMMIT already in $PREFIX"
    exit 0
fi

# npm may come from elsewhere than Debian (a Node.js install); ask apt only when it is missing.
extra="cmake git"
command -v npm >/dev/null 2>&1 || extra="$extra npm"
LORAHUB_EXTRA_PKGS="$extra $LORAHUB_EXTRA_PKGS" sh "$(dirname "$0")/install-deps.sh"

WORK="$PREFIX/work"
rm -rf "$WORK"
mkdir -p "$WORK"
echo "install-llamacpp: fetching node-llama-cpp@$NODE_LLAMA_CPP_VERSION (source bundle)"
(cd "$WORK" && npm pack --silent "node-llama-cpp@$NODE_LLAMA_CPP_VERSION" >/dev/null)
tar -xzf "$WORK/node-llama-cpp-$NODE_LLAMA_CPP_VERSION.tgz" -C "$WORK" package/llama/gitRelease.bundle
rm -rf "$PREFIX/src"
git -c advice.detachedHead=false clone -q "$WORK/package/llama/gitRelease.bundle" "$PREFIX/src"
got=$(git -C "$PREFIX/src" rev-parse HEAD)
if [ "$got" != "$LLAMA_COMMIT" ]; then
    echo "install-llamacpp: the bundle holds $got, expected $LLAMA_COMMIT" >&2
    exit 1
fi
rm -rf "$WORK"

JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}
echo "install-llamacpp: building llama.cpp $LLAMA_COMMIT with $JOBS jobs (several minutes)"
cmake -S "$PREFIX/src" -B "$PREFIX/src/build" -DCMAKE_BUILD_TYPE=Release \
      -DCMAKE_INSTALL_PREFIX="$PREFIX" -DGGML_NATIVE=ON -DBUILD_SHARED_LIBS=ON \
      -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_USE_PREBUILT_UI=OFF \
      -DLLAMA_CURL=OFF -DCMAKE_INSTALL_RPATH="$PREFIX/lib" >"$PREFIX/build.log" 2>&1
# The compiler's warnings on llama.cpp's code go to the log, not the terminal.
if ! cmake --build "$PREFIX/src/build" -j "$JOBS" --target llama llama-server llama-perplexity \
        >>"$PREFIX/build.log" 2>&1; then
    tail -n 30 "$PREFIX/build.log" >&2
    echo "install-llamacpp: the build failed (log: $PREFIX/build.log)" >&2
    exit 1
fi
cmake --install "$PREFIX/src/build" >/dev/null 2>&1 || true
# --install may stop at targets that were not built; put the pieces in place.
mkdir -p "$PREFIX/bin" "$PREFIX/lib" "$PREFIX/include"
for b in llama-server llama-perplexity; do
    cp -f "$PREFIX/src/build/bin/$b" "$PREFIX/bin/$b"
done
find "$PREFIX/src/build" -name 'lib*.so*' -exec cp -P {} "$PREFIX/lib/" \;
cp -f "$PREFIX/src/include/llama.h" "$PREFIX/src/ggml/include/"*.h "$PREFIX/include/"
if [ ! -f "$PREFIX/lib/pkgconfig/llama.pc" ]; then
    mkdir -p "$PREFIX/lib/pkgconfig"
    cat > "$PREFIX/lib/pkgconfig/llama.pc" <<EOF
prefix=$PREFIX
libdir=\${prefix}/lib
includedir=\${prefix}/include

Name: llama
Description: llama.cpp $LLAMA_COMMIT (built by lorahub's tools/install-llamacpp.sh)
Version: 0.0.0
Libs: -L\${libdir} -Wl,-rpath,\${libdir} -lllama -lggml -lggml-base
Cflags: -I\${includedir}
EOF
fi
echo "$LLAMA_COMMIT" > "$STAMP"
echo "install-llamacpp: llama.cpp installed in $PREFIX"
