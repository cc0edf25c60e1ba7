#!/usr/bin/env bash
# The GPU checks of the CUDA backend in one run (made for the short leases of the project's GPU
# machine): op-parity and end-to-end tests, then benchmarks on a random Qwen2-0.5B-shaped bf16
# checkpoint: batch-1 decode next to transformers (peer, same run; with and without programmatic
# dependent launch, with and without the norms fused into the GEMVs, with an int8 KV cache),
# batch-8 greedy and sampled on the GPU, and the full-size seed workload, greedy and sampled;
# then (unless AB=0) the A/B runs of each switch (precompiled GEMVs, eager, PDL, the fusions,
# the attention merge, overlap scheduling, int8 KV, Q4_K weights); NCU=1 adds per-kernel times.
# TESTS=0 skips the tests (a second run on the same lease).
# Binaries come prebuilt in $DEV (built here with -DJINX_CUDA=ON, see README), with
# the shared libraries the GPU machine may lack in $DEV/lib. Logs go to $OUT (or ./cuda-out).
set -uo pipefail
DEV=${DEV:-.devrun}
# The binaries may come packed (the lease's transfer limit): .devpack/devrun.tar.xz.
if [ ! -x "$DEV/jinx" ] && [ -f .devpack/devrun.tar.xz ]; then
  mkdir -p "$DEV" && tar -C "$DEV" -xJf .devpack/devrun.tar.xz
fi
OUT=${OUT:-cuda-out}
mkdir -p "$OUT"
cublas=$(dirname "$(ls /usr/local/cuda/lib64/libcublas.so.13 /usr/local/cuda*/lib*/libcublas.so.13 \
  /opt/*/.venv/lib/python3*/site-packages/nvidia/cu*/lib/libcublas.so.13 2>/dev/null | head -1)")
libs="$PWD/$DEV/lib:$cublas"  # for our binaries only (python keeps the system's)
jx() { LD_LIBRARY_PATH="$libs" "$DEV/jinx" "$@"; }
# The test binary looks for fixtures where it was built.
[ -e /work/main ] || { mkdir -p /work && ln -s "$PWD" /work/main; }
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv | tee "$OUT/gpu.txt"
jx info -m tests/fixtures/models/tiny-qwen2 | grep -E "^cuda|cpu kernels" | tee -a "$OUT/gpu.txt"
[ "${TESTS:-1}" = 1 ] && LD_LIBRARY_PATH="$libs" timeout 240 "$DEV/jinx_cuda_tests" 2>&1 | tee "$OUT/cuda_tests.log" | grep -E "OK|FAILED|PASSED|SKIPPED|Failure|Expected|Which is|max \||parts at|identical|error" | head -120
# Failures: the same tests again without programmatic dependent launch, without the fused GEMV
# inputs and epilogues (and fused RoPE), without the fused RoPE alone, with the attention merged
# by the last block, without overlap scheduling, without the run-time compiled GEMVs, without
# the quantized GEMM kernel, without cuBLASLt, to tell those paths from the rest.
failed=$(grep -sE "^\[  FAILED  \] [A-Za-z]" "$OUT/cuda_tests.log" | sed 's/^\[  FAILED  \] //; s/[ ,].*//' | sort -u | paste -sd: -)
if [ -n "$failed" ]; then
  for v in JINX_PDL=0 JINX_FUSE=0 JINX_FUSE_ROPE=0 JINX_ATTN_MERGE=last-block JINX_OVERLAP=0 \
      JINX_NVRTC=0 JINX_QGEMM=0 JINX_CUBLASLT=0 "JINX_PDL=0 JINX_FUSE=0 JINX_NVRTC=0"; do
    echo "== failed tests again with $v" | tee -a "$OUT/cuda_tests.log"
    env $v LD_LIBRARY_PATH="$libs" timeout 120 "$DEV/jinx_cuda_tests" --gtest_filter="$failed" 2>&1 \
      | grep -E "^\[  (FAILED|PASSED|  OK) " | tee -a "$OUT/cuda_tests.log" | head -40
  done
fi
M=/tmp/qwen2-0.5b-bf16
[ -d $M ] || jx make-random-model --like qwen2-0.5b --out $M --dtype bf16 > /dev/null
bench() { LD_LIBRARY_PATH="$libs" timeout 150 "$DEV/jinx" bench -m $M --device cuda "$@" 2>&1 | tr '\r' '\n' | grep -v "^\[jinx bench\]"; }
echo "== batch-1 decode, bf16 KV, CUDA graphs" | tee "$OUT/bench.txt"
bench --num-seqs 1 --min-input 32 --max-input 32 --min-output 512 --max-output 512 | tee -a "$OUT/bench.txt"
echo "== batch-8 decode (graphs)" | tee -a "$OUT/bench.txt"
bench --num-seqs 8 --min-input 32 --max-input 32 --min-output 512 --max-output 512 | tee -a "$OUT/bench.txt"
echo "== batch-8 decode, sampled on the GPU (temperature 0.8, top-k 50, top-p 0.9)" | tee -a "$OUT/bench.txt"
bench --num-seqs 8 --min-input 32 --max-input 32 --min-output 512 --max-output 512 \
  --temperature 0.8 --top-k 50 --top-p 0.9 | tee -a "$OUT/bench.txt"
echo "== peer: transformers" | tee -a "$OUT/bench.txt"
timeout 120 python3 bench/hf_decode_peer.py $M --prompt-len 32 --new-tokens 256 2>&1 | grep -v Warning | tail -2 | tee -a "$OUT/bench.txt"
echo "== seed workload: 256 seqs, input and output in [100, 1024]" | tee -a "$OUT/bench.txt"
bench --num-seqs 256 --min-input 100 --max-input 1024 --min-output 100 --max-output 1024 \
  --max-num-seqs 256 --max-num-batched-tokens 8192 | tee -a "$OUT/bench.txt"
echo "== seed workload, sampled (temperature 0.8, top-p 0.95)" | tee -a "$OUT/bench.txt"
bench --num-seqs 256 --min-input 100 --max-input 1024 --min-output 100 --max-output 1024 \
  --max-num-seqs 256 --max-num-batched-tokens 8192 --temperature 0.8 --top-p 0.95 | tee -a "$OUT/bench.txt"
# Prefill-bound runs (64 prompts of 1024 tokens, one output token each: TTFT and input tok/s)
# of the GEMMs past the GEMV: quantized weights on the tensor-core GEMM that dequantizes in
# shared memory (default) against expand-to-bf16 + cuBLAS (JINX_QGEMM=0); BF16 weights on
# cuBLASLt (default) against cuBLAS (JINX_CUBLASLT=0) and against that GEMM (JINX_QGEMM=all).
prefill() { bench --num-seqs 64 --min-input 1024 --max-input 1024 --min-output 1 --max-output 1 \
  --max-num-seqs 64 --max-num-batched-tokens 8192 "$@"; }
if [ "${PREFILL:-1}" = 1 ]; then
  for v in "" JINX_QGEMM=0 ""; do
    echo "== prefill, Q4_K at load (Q4A), ${v:-defaults}" | tee -a "$OUT/bench.txt"
    ( [ -z "$v" ] || export "${v?}"; prefill --quantize q4_k ) | tee -a "$OUT/bench.txt"
  done
  for v in "" JINX_CUBLASLT=0 JINX_QGEMM=all ""; do
    echo "== prefill, bf16, ${v:-defaults}" | tee -a "$OUT/bench.txt"
    ( [ -z "$v" ] || export "${v?}"; prefill ) | tee -a "$OUT/bench.txt"
  done
fi
# A/B runs of the switches (AB=0 skips them: a quicker first run on a short lease).
if [ "${AB:-1}" = 1 ]; then
  echo "== batch-1 decode, CUDA graphs, precompiled GEMVs (JINX_NVRTC=0)" | tee -a "$OUT/bench.txt"
  JINX_NVRTC=0 bench --num-seqs 1 --min-input 32 --max-input 32 --min-output 512 --max-output 512 | tee -a "$OUT/bench.txt"
  echo "== batch-1 decode, no warm-up at start (JINX_WARMUP=0: the first request pays kernel loading, cuBLAS's first GEMM, graph capture)" | tee -a "$OUT/bench.txt"
  JINX_WARMUP=0 bench --num-seqs 1 --min-input 32 --max-input 32 --min-output 512 --max-output 512 | tee -a "$OUT/bench.txt"
  echo "== batch-1 decode, bf16 KV, --enforce-eager" | tee -a "$OUT/bench.txt"
  bench --num-seqs 1 --min-input 32 --max-input 32 --min-output 512 --max-output 512 --enforce-eager | tee -a "$OUT/bench.txt"
  echo "== batch-1 decode, CUDA graphs, programmatic dependent launch off (JINX_PDL=0)" | tee -a "$OUT/bench.txt"
  JINX_PDL=0 bench --num-seqs 1 --min-input 32 --max-input 32 --min-output 512 --max-output 512 | tee -a "$OUT/bench.txt"
  echo "== batch-1 decode, CUDA graphs, norms, SiLU and RoPE as kernels of their own (JINX_FUSE=0)" | tee -a "$OUT/bench.txt"
  JINX_FUSE=0 bench --num-seqs 1 --min-input 32 --max-input 32 --min-output 512 --max-output 512 | tee -a "$OUT/bench.txt"
  echo "== batch-1 decode, CUDA graphs, SiLU x up as a kernel of its own (JINX_FUSE=norm)" | tee -a "$OUT/bench.txt"
  JINX_FUSE=norm bench --num-seqs 1 --min-input 32 --max-input 32 --min-output 512 --max-output 512 | tee -a "$OUT/bench.txt"
  echo "== batch-1 decode, CUDA graphs, SiLU x up staged as the down GEMV's input (JINX_FUSE=silu-input)" | tee -a "$OUT/bench.txt"
  JINX_FUSE=silu-input bench --num-seqs 1 --min-input 32 --max-input 32 --min-output 512 --max-output 512 | tee -a "$OUT/bench.txt"
  echo "== batch-1 decode, CUDA graphs, only RoPE fused (JINX_FUSE=rope)" | tee -a "$OUT/bench.txt"
  JINX_FUSE=rope bench --num-seqs 1 --min-input 32 --max-input 32 --min-output 512 --max-output 512 | tee -a "$OUT/bench.txt"
  echo "== batch-1 decode, CUDA graphs, precompiled GEMVs, SiLU x up a kernel of its own (JINX_NVRTC=0 JINX_FUSE=norm)" | tee -a "$OUT/bench.txt"
  JINX_NVRTC=0 JINX_FUSE=norm bench --num-seqs 1 --min-input 32 --max-input 32 --min-output 512 --max-output 512 | tee -a "$OUT/bench.txt"
  echo "== batch-8 decode, CUDA graphs, SiLU x up a kernel of its own (JINX_FUSE=norm)" | tee -a "$OUT/bench.txt"
  JINX_FUSE=norm bench --num-seqs 8 --min-input 32 --max-input 32 --min-output 512 --max-output 512 | tee -a "$OUT/bench.txt"
  echo "== seed workload, SiLU x up a kernel of its own (JINX_FUSE=norm)" | tee -a "$OUT/bench.txt"
  JINX_FUSE=norm bench --num-seqs 256 --min-input 100 --max-input 1024 --min-output 100 --max-output 1024 \
    --max-num-seqs 256 --max-num-batched-tokens 8192 | tee -a "$OUT/bench.txt"
  echo "== batch-1 decode, CUDA graphs, attention splits merged by the last block (JINX_ATTN_MERGE=last-block)" | tee -a "$OUT/bench.txt"
  JINX_ATTN_MERGE=last-block bench --num-seqs 1 --min-input 32 --max-input 32 --min-output 512 --max-output 512 | tee -a "$OUT/bench.txt"
  echo "== batch-1 decode, CUDA graphs, RoPE + KV store as a kernel of its own (JINX_FUSE_ROPE=0)" | tee -a "$OUT/bench.txt"
  JINX_FUSE_ROPE=0 bench --num-seqs 1 --min-input 32 --max-input 32 --min-output 512 --max-output 512 | tee -a "$OUT/bench.txt"
  echo "== batch-1 decode, CUDA graphs, overlap scheduling off (--overlap off)" | tee -a "$OUT/bench.txt"
  bench --num-seqs 1 --min-input 32 --max-input 32 --min-output 512 --max-output 512 --overlap off | tee -a "$OUT/bench.txt"
  echo "== batch-1 decode, int8 KV cache" | tee -a "$OUT/bench.txt"
  bench --num-seqs 1 --min-input 32 --max-input 32 --min-output 512 --max-output 512 --kv-cache-dtype int8 | tee -a "$OUT/bench.txt"
  echo "== batch-1 decode, weights quantized to Q4_K at load (Q4A on the GPU, head Q8_0)" | tee -a "$OUT/bench.txt"
  bench --num-seqs 1 --min-input 32 --max-input 32 --min-output 512 --max-output 512 --quantize q4_k | tee -a "$OUT/bench.txt"
  echo "== batch-1 decode, precompiled GEMVs (JINX_NVRTC=0), two rows per warp (JINX_GEMV_ROW_PAIRS=1)" | tee -a "$OUT/bench.txt"
  JINX_NVRTC=0 JINX_GEMV_ROW_PAIRS=1 bench --num-seqs 1 --min-input 32 --max-input 32 --min-output 512 --max-output 512 | tee -a "$OUT/bench.txt"
  echo "== batch-1 decode, Q4_K at load, precompiled GEMVs (JINX_NVRTC=0)" | tee -a "$OUT/bench.txt"
  JINX_NVRTC=0 bench --num-seqs 1 --min-input 32 --max-input 32 --min-output 512 --max-output 512 --quantize q4_k | tee -a "$OUT/bench.txt"
  echo "== batch-1 decode, Q4_K at load, precompiled GEMVs, two rows per warp (JINX_NVRTC=0 JINX_GEMV_ROW_PAIRS=1)" | tee -a "$OUT/bench.txt"
  JINX_NVRTC=0 JINX_GEMV_ROW_PAIRS=1 bench --num-seqs 1 --min-input 32 --max-input 32 --min-output 512 --max-output 512 --quantize q4_k | tee -a "$OUT/bench.txt"
  echo "== seed workload, overlap scheduling off (--overlap off)" | tee -a "$OUT/bench.txt"
  bench --num-seqs 256 --min-input 100 --max-input 1024 --min-output 100 --max-output 1024 \
    --max-num-seqs 256 --max-num-batched-tokens 8192 --overlap off | tee -a "$OUT/bench.txt"
fi
# GPU time per kernel name from an `ncu --csv --print-summary per-kernel` file, largest first,
# with the number of launches (the tail of the file when it holds no table: ncu's error).
ncu_summary() {
  python3 - "$1" <<'PY'
import csv, sys, collections
rows = [r for r in csv.reader(open(sys.argv[1])) if len(r) > 5]
hdr = next((r for r in rows if "Kernel Name" in r), None)
if hdr is None:
    print(open(sys.argv[1]).read()[-2000:]); sys.exit()
ki, vi = hdr.index("Kernel Name"), len(hdr) - 1
for c in ("Average", "Sum", "Metric Value"):
    if c in hdr: vi = hdr.index(c)
tot, cnt = collections.Counter(), collections.Counter()
for r in rows:
    if r is hdr or len(r) <= vi: continue
    try: tot[r[ki][:60]] += float(r[vi].replace(",", "")); cnt[r[ki][:60]] += 1
    except ValueError: pass
for k, v in tot.most_common(15): print(f"{v:12.1f}  x{cnt[k]:<4d} {k}")
PY
}
# Optional: per-kernel GPU times of a few batch-1 decode steps (Nsight Compute), eager launches
# so each kernel is seen; NCU=1 to run it.
if [ "${NCU:-0}" = 1 ] && command -v ncu > /dev/null; then
  echo "== ncu: per-kernel time, batch-1 decode (eager)" | tee -a "$OUT/bench.txt"
  LD_LIBRARY_PATH="$libs" timeout 200 ncu --csv --print-summary per-kernel --metrics gpu__time_duration.sum \
    --cache-control none --clock-control none \
    --launch-skip 600 --launch-count 300 "$DEV/jinx" bench -m $M --device cuda --num-seqs 1 \
    --min-input 32 --max-input 32 --min-output 16 --max-output 16 --enforce-eager > "$OUT/ncu.csv" 2>&1
  ncu_summary "$OUT/ncu.csv" | tee -a "$OUT/bench.txt"
fi
# Optional: per-kernel GPU times of batch-256 decode steps at a context of ~520 (the seed
# workload's decode phase: ~7-11 ms per step in session 7, ~10x its weight + KV + FLOP bound),
# eager; NCU_SEED=1 to run it. The first ~4000 launches (warm-up, 16 prefill steps) are skipped.
if [ "${NCU_SEED:-0}" = 1 ] && command -v ncu > /dev/null; then
  echo "== ncu: per-kernel time, batch-256 decode at context ~520 (eager)" | tee -a "$OUT/bench.txt"
  LD_LIBRARY_PATH="$libs" timeout 240 ncu --csv --print-summary per-kernel --metrics gpu__time_duration.sum \
    --cache-control none --clock-control none \
    --launch-skip 4000 --launch-count 450 "$DEV/jinx" bench -m $M --device cuda --num-seqs 256 \
    --min-input 512 --max-input 512 --min-output 40 --max-output 40 --max-num-seqs 256 \
    --max-num-batched-tokens 8192 --enforce-eager > "$OUT/ncu_seed.csv" 2>&1
  ncu_summary "$OUT/ncu_seed.csv" | tee -a "$OUT/bench.txt"
fi
# Optional: Nsight Compute's full sections (throughput, occupancy, warp stall reasons) for the
# GEMVs and the decode attention kernel of one batch-1 decode step; NCU_FULL=1 to run it
# (NCU_FULL=2: also the Q4A GEMVs of --quantize q4_k, slower than bf16 in session 7).
if [ "${NCU_FULL:-0}" != 0 ] && command -v ncu > /dev/null; then
  echo "== ncu --set full: GEMVs and decode attention, batch-1 decode (eager)" | tee -a "$OUT/bench.txt"
  LD_LIBRARY_PATH="$libs" timeout 240 ncu --set full --cache-control none --clock-control none \
    -k regex:"gemv|attention_kernel" --launch-skip 300 --launch-count 6 "$DEV/jinx" bench -m $M \
    --device cuda --num-seqs 1 --min-input 32 --max-input 32 --min-output 16 --max-output 16 \
    --enforce-eager > "$OUT/ncu_full.txt" 2>&1
  grep -E "^  [a-z_]*(gemv|attention)|Duration|Memory Throughput|DRAM Throughput|Achieved Occupancy|Theoretical Occupancy|Registers Per|Block Limit|Warp Cycles Per Issued|Stall|One or More Eligible|Waves Per SM" \
    "$OUT/ncu_full.txt" | head -150 | tee -a "$OUT/bench.txt"
  if [ "${NCU_FULL}" = 2 ] || [ "${NCU_Q4:-0}" = 1 ]; then  # the Q4A GEMVs as well
    echo "== ncu --set full: Q4A GEMVs (--quantize q4_k), batch-1 decode (eager)" | tee -a "$OUT/bench.txt"
    LD_LIBRARY_PATH="$libs" timeout 240 ncu --set full --cache-control none --clock-control none \
      -k regex:"gemv" --launch-skip 300 --launch-count 4 "$DEV/jinx" bench -m $M --quantize q4_k \
      --device cuda --num-seqs 1 --min-input 32 --max-input 32 --min-output 16 --max-output 16 \
      --enforce-eager > "$OUT/ncu_full_q4.txt" 2>&1
    grep -E "^  [a-z_]*gemv|Duration|Memory Throughput|DRAM Throughput|Achieved Occupancy|Registers Per|Warp Cycles Per Issued|One or More Eligible" \
      "$OUT/ncu_full_q4.txt" | head -60 | tee -a "$OUT/bench.txt"
  fi
fi
