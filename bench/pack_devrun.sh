#!/usr/bin/env bash
# Packs what bench/cuda_device_check.sh needs on a lent GPU machine into .devpack/devrun.tar.xz
# (the device tool carries at most 64 MiB with the repository): jinx and jinx_cuda_tests from
# build-cuda (built here if needed, stripped) and the shared libraries they load that are not
# the C library's or CUDA's (the GPU machine has its own driver and, as before, cuBLAS).
# Then: the device tool's `run` with carry [".devpack"] and `NCU=1 bash bench/cuda_device_check.sh`.
# The pack plus the tracked files must stay under 64 MiB (session 7: 25.7 + 38 MB). PACK_ARCH=90a
# builds build-cuda-sm90 with H100/H200 code only (half the size; a full CUDA build, ~10 min here).
set -euo pipefail
cd "$(dirname "$0")/.."
B=build-cuda
ARCH_FLAG=()
if [ -n "${PACK_ARCH:-}" ]; then
  B=build-cuda-sm${PACK_ARCH%a}
  ARCH_FLAG=(-DCMAKE_CUDA_ARCHITECTURES="$PACK_ARCH")
fi
[ -f $B/build.ninja ] || cmake -S . -B $B -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DJINX_CUDA=ON -DCMAKE_CUDA_COMPILER=/usr/local/cuda/bin/nvcc "${ARCH_FLAG[@]}" > /dev/null
ninja -C $B jinx jinx_cuda_tests
rm -rf .devrun && mkdir -p .devrun/lib .devpack
cp $B/bin/jinx $B/tests/jinx_cuda_tests .devrun/
strip .devrun/jinx .devrun/jinx_cuda_tests
for bin in .devrun/jinx .devrun/jinx_cuda_tests; do
  ldd "$bin" | awk '/=> \//{print $3}' | while read -r lib; do
    case "$(basename "$lib")" in
      libc.so*|libm.so*|libpthread.so*|libdl.so*|librt.so*|ld-linux*|libgcc_s.so*) ;;
      libcuda.so*|libcublas*|libcudart*) ;;  # the GPU machine's own
      *) cp -n "$lib" .devrun/lib/ ;;
    esac
  done
done
# -9: a 64 MiB window, so the two binaries' identical CUDA code is stored once.
XZ_OPT=-9 tar -C .devrun -cJf .devpack/devrun.tar.xz .
du -sh .devpack/devrun.tar.xz
ls .devrun/lib
