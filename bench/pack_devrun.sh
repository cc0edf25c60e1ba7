#!/usr/bin/env bash
# Packs what bench/cuda_device_check.sh needs on a lent GPU machine into .devpack/devrun.tar.xz
# (the device tool carries at most 64 MiB with the repository): jinx and jinx_cuda_tests from
# build-cuda (built here if needed, stripped) and the shared libraries they load that are not
# the C library's or CUDA's (the GPU machine has its own driver and, as before, cuBLAS).
# Then: the device tool's `run` with carry [".devpack"] and `NCU=1 bash bench/cuda_device_check.sh`.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f build-cuda/build.ninja ] || cmake -S . -B build-cuda -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DJINX_CUDA=ON -DCMAKE_CUDA_COMPILER=/usr/local/cuda/bin/nvcc > /dev/null
ninja -C build-cuda jinx jinx_cuda_tests
rm -rf .devrun && mkdir -p .devrun/lib .devpack
cp build-cuda/bin/jinx build-cuda/tests/jinx_cuda_tests .devrun/
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
