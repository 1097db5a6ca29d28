#!/usr/bin/python3
"""Write a Hugging Face LLaMA model directory as a GGUF file llama.cpp loads.

Developer-time tool (Debian's python3-numpy and the gguf-py that the
llama.cpp source carries; no torch, no transformers):

    /usr/bin/python3 tools/zoo_gguf.py MODEL_DIR OUT.gguf [--type f16|f32|q8_0] \
        [--gguf-py DIR (default build/llamacpp/src/gguf-py, or $GGUF_PY)]

It does what llama.cpp's convert_hf_to_gguf.py does for a LlamaForCausalLM
with a ByteLevel BPE tokenizer.json (the zoo base, the test fixtures):
  - tensors renamed (model.layers.N.self_attn.q_proj.weight ->
    blk.N.attn_q.weight, ...), the rows of q and k (weights and biases)
    permuted into llama.cpp's rope layout: for head h and 0 <= p < hd,
    row h*hd + p of the GGUF is row h*hd + (p % 2) * hd/2 + p // 2 of HF
    (conversion/llama.py permute);
  - llama3 rope scaling as the rope_freqs tensor (conversion/llama.py
    generate_extra_tensors);
  - the vocabulary as tokenizer.ggml.model "gpt2" with the pre-tokenizer
    "gpt-2" (the GPT-2 regex the zoo's ByteLevel pre-tokenizer uses), the
    merges, BOS/EOS from config.json, add_bos_token true, and rows past the
    tokenizer's vocabulary as unused [PADn] tokens;
  - 2-D weights in the chosen type (Q8_0 by gguf-py's own quantizer), 1-D
    tensors (norms, biases, rope_freqs) in F32, as the converter keeps them.

tools/bench_gguf.py imports convert() for the llama.cpp benchmark.

The safetensors file is read with numpy alone (F32, F16, BF16).
"""
import argparse
import json
import math
import os
import struct
import sys

import numpy as np

# llama.cpp's gguf-py: where tools/install-llamacpp.sh puts the pinned source
# (its default prefix, build/llamacpp), or GGUF_PY
GGUF_PY = os.environ.get("GGUF_PY", os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                                 "build", "llamacpp", "src", "gguf-py"))


def read_safetensors(path):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        raw = data[a:b]
        dt = info["dtype"]
        if dt == "F32":
            arr = np.frombuffer(raw, dtype="<f4")
        elif dt == "F16":
            arr = np.frombuffer(raw, dtype="<f2").astype(np.float32)
        elif dt == "BF16":
            arr = (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            sys.exit(f"{path}: tensor {name}: dtype {dt} not handled")
        out[name] = arr.reshape(info["shape"]).astype(np.float32)
    return out


def permute(w, n_head):
    """HF q/k rows -> llama.cpp's rope layout (weights [out, in] or biases [out])."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


NAMES = {
    "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down", "input_layernorm": "attn_norm",
    "post_attention_layernorm": "ffn_norm",
}


def gguf_name(hf):
    if hf == "model.embed_tokens.weight":
        return "token_embd.weight"
    if hf == "model.norm.weight":
        return "output_norm.weight"
    if hf == "lm_head.weight":
        return "output.weight"
    parts = hf.split(".")
    if parts[:2] != ["model", "layers"]:
        sys.exit(f"tensor {hf}: no GGUF name for it")
    layer, rest = parts[2], ".".join(parts[3:])
    for k, v in NAMES.items():
        if rest.startswith(k + "."):
            return f"blk.{layer}.{v}.{rest[len(k) + 1:]}"
    sys.exit(f"tensor {hf}: no GGUF name for it")


def rope_factors(cfg, head_dim):
    rs = cfg.get("rope_scaling") or {}
    if rs.get("rope_type", rs.get("type", "")).lower() != "llama3":
        return None
    base = cfg.get("rope_theta", 10000.0)
    freqs = 1.0 / (base ** (np.arange(0, head_dim, 2, dtype=np.float32) / head_dim))
    factor = rs.get("factor", 8.0)
    lo, hi = rs.get("low_freq_factor", 1.0), rs.get("high_freq_factor", 4.0)
    old = rs.get("original_max_position_embeddings", 8192)
    lo_wl, hi_wl = old / lo, old / hi
    out = []
    for f in freqs:
        wl = 2 * math.pi / f
        if wl < hi_wl:
            out.append(1.0)
        elif wl > lo_wl:
            out.append(factor)
        else:
            smooth = (old / wl - lo) / (hi - lo)
            out.append(1 / ((1 - smooth) / factor + smooth))
    return np.array(out, dtype=np.float32)


def add_vocab(w, gguf, model_dir, cfg):
    tok = json.load(open(os.path.join(model_dir, "tokenizer.json")))
    if tok["model"]["type"] != "BPE" or (tok.get("pre_tokenizer") or {}).get("type") != "ByteLevel":
        sys.exit(f"{model_dir}/tokenizer.json: only ByteLevel BPE is written")
    n_vocab = cfg["vocab_size"]
    ids = dict(tok["model"]["vocab"])
    special = set()
    for t in tok.get("added_tokens", []):
        ids[t["content"]] = t["id"]
        if t.get("special"):
            special.add(t["id"])
    tokens = [f"[PAD{i}]" for i in range(n_vocab)]
    types = [gguf.TokenType.UNUSED] * n_vocab
    for text, i in ids.items():
        if i >= n_vocab:
            sys.exit(f"{model_dir}: token id {i} is past vocab_size {n_vocab}")
        tokens[i] = text
        types[i] = gguf.TokenType.CONTROL if i in special else gguf.TokenType.NORMAL
    merges = [m if isinstance(m, str) else " ".join(m) for m in tok["model"].get("merges", [])]
    if not merges:
        # llama.cpp requires the key and gguf-py drops an empty array: one
        # merge of two special tokens, which never occur as symbols of
        # pre-tokenized text (those are single characters), changes nothing.
        sp = sorted(special)
        if len(sp) < 2:
            sys.exit(f"{model_dir}: no merges and fewer than two special tokens")
        merges = [f"{tokens[sp[0]]} {tokens[sp[1]]}"]
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("gpt-2")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    if cfg.get("bos_token_id") is not None:
        w.add_bos_token_id(cfg["bos_token_id"])
    eos = cfg.get("eos_token_id")
    if isinstance(eos, list):
        eos = eos[0]
    if eos is not None:
        w.add_eos_token_id(eos)
    w.add_add_bos_token(cfg.get("bos_token_id") is not None)
    w.add_add_eos_token(False)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model_dir")
    ap.add_argument("out")
    ap.add_argument("--type", choices=["f16", "f32", "q8_0"], default="f16")
    ap.add_argument("--gguf-py", default=GGUF_PY)
    args = ap.parse_args()
    convert(args.model_dir, args.out, args.type, args.gguf_py)


def convert(model_dir, out, wtype, gguf_py):
    sys.path.insert(0, gguf_py)
    import gguf

    class Args:
        pass
    args = Args()
    args.model_dir, args.out, args.type = model_dir, out, wtype
    cfg = json.load(open(os.path.join(args.model_dir, "config.json")))
    if cfg.get("model_type") != "llama":
        sys.exit(f"{args.model_dir}: model_type {cfg.get('model_type')}: only llama is written")
    n_head, n_kv = cfg["num_attention_heads"], cfg.get("num_key_value_heads", cfg["num_attention_heads"])
    head_dim = cfg.get("head_dim") or cfg["hidden_size"] // n_head
    tensors = read_safetensors(os.path.join(args.model_dir, "model.safetensors"))
    if cfg.get("tie_word_embeddings") and "lm_head.weight" not in tensors:
        pass  # llama.cpp uses token_embd when output is absent

    w = gguf.GGUFWriter(args.out, "llama")
    w.add_name(cfg.get("_name_or_path") or os.path.basename(os.path.abspath(args.model_dir)))
    w.add_context_length(cfg.get("max_position_embeddings", 2048))
    w.add_embedding_length(cfg["hidden_size"])
    w.add_block_count(cfg["num_hidden_layers"])
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_head_count(n_head)
    w.add_head_count_kv(n_kv)
    w.add_rope_freq_base(cfg.get("rope_theta", 10000.0))
    w.add_layer_norm_rms_eps(cfg.get("rms_norm_eps", 1e-5))
    w.add_rope_dimension_count(head_dim)
    if head_dim * n_head != cfg["hidden_size"]:
        w.add_key_length(head_dim)
        w.add_value_length(head_dim)
    w.add_vocab_size(cfg["vocab_size"])
    w.add_file_type({"f16": gguf.LlamaFileType.MOSTLY_F16, "f32": gguf.LlamaFileType.ALL_F32,
                     "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[args.type])
    add_vocab(w, gguf, args.model_dir, cfg)

    factors = rope_factors(cfg, head_dim)
    if factors is not None:
        w.add_tensor("rope_freqs.weight", factors)
    for hf in sorted(tensors):
        t = tensors[hf]
        if hf.endswith("q_proj.weight") or hf.endswith("q_proj.bias"):
            t = permute(t, n_head)
        elif hf.endswith("k_proj.weight") or hf.endswith("k_proj.bias"):
            t = permute(t, n_kv)
        if t.ndim >= 2 and args.type == "q8_0":
            q = gguf.quants.quantize(np.ascontiguousarray(t), gguf.GGMLQuantizationType.Q8_0)
            w.add_tensor(gguf_name(hf), q, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
            continue
        if t.ndim >= 2 and args.type == "f16":
            t = t.astype(np.float16)
        w.add_tensor(gguf_name(hf), np.ascontiguousarray(t))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


if __name__ == "__main__":
    main()
