#!/usr/bin/env bash
# Builds one libFuzzer target (clang, ASan + UBSan) and fuzzs it for SECONDS on one core,
# starting from the committed corpus fuzz/corpus/TARGET. New coverage goes to
# build-fuzz/corpus/TARGET (not committed); crashes land in build-fuzz/crashes/TARGET.
#
#   tools/fuzz.sh TARGET [SECONDS] [extra libFuzzer flags...]
#   tools/fuzz.sh list
#
# Targets: gguf safetensors config tokenizer_load tokenizer_encode template sampler schema
# request grammar.
# Needs clang and libFuzzer: clang 18 or newer (older ones reject __builtin_cpu_supports("f16c")
# in src/backend/cpu/isa.cpp). Debian 12: apt-get install clang-19 libclang-rt-19-dev.
# The newest clang++-NN on PATH is used unless CC/CXX are set.
set -euo pipefail
cd "$(dirname "$0")/.."
targets=(gguf safetensors config tokenizer_load tokenizer_encode template sampler schema request grammar)
if [ $# -lt 1 ] || [ "$1" = list ] || [ "$1" = -h ] || [ "$1" = --help ]; then
  echo "usage: tools/fuzz.sh TARGET [SECONDS] [libFuzzer flags...]"
  echo "targets: ${targets[*]}"
  exit $([ $# -lt 1 ] && echo 2 || echo 0)
fi
target=$1
seconds=${2:-60}
shift $(( $# >= 2 ? 2 : 1 ))
if [[ ! " ${targets[*]} " =~ " ${target} " ]]; then
  echo "unknown target '$target' (targets: ${targets[*]})" >&2
  exit 2
fi

BUILD=${FUZZ_BUILD:-build-fuzz}
if [ ! -f "$BUILD/build.ninja" ]; then
  if [ -z "${CXX:-}" ]; then
    v=$(compgen -c clang++- | sed -n 's/^clang++-\([0-9]*\)$/\1/p' | sort -n | tail -1)
    if [ -n "$v" ]; then CC=clang-$v CXX=clang++-$v; else CC=clang CXX=clang++; fi
  fi
  CC=${CC:-clang} CXX=$CXX cmake -S . -B "$BUILD" -G Ninja \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo -DJINX_FUZZ=ON -DJINX_BUILD_TESTS=OFF \
    -DJINX_SANITIZE=address,undefined -DCMAKE_CXX_FLAGS=-Wno-invalid-feature-combination
fi
ninja -C "$BUILD" -j "${JOBS:-2}" "jinx_fuzz_$target"

work="$BUILD/corpus/$target"
crashes="$BUILD/crashes/$target"
mkdir -p "$work" "$crashes"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:symbolize=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
dict=()
[ -f "fuzz/$target.dict" ] && dict=(-dict="fuzz/$target.dict")
# New inputs are written to the first folder ($work); the committed corpus is only read.
exec "$BUILD/bin/jinx_fuzz_$target" "$work" "fuzz/corpus/$target" "${dict[@]}" \
  -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
  -artifact_prefix="$crashes/" -print_final_stats=1 "$@"
