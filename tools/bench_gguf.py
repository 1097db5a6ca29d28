#!/usr/bin/python3
"""The llama.cpp benchmark's model and data (bench/llamacpp.sh runs it once).

    /usr/bin/python3 tools/bench_gguf.py OUTDIR [--gguf-py DIR]

Writes into OUTDIR (under build/, never committed):
  hf/          a random LLaMA of bench/forward.c's shape (dim 768, 12 layers,
               12 heads, 4 KV heads, ffn 2048, vocab 32000; about 110M
               parameters) in Hugging Face layout, F32, with a byte-level
               tokenizer.json (256 byte tokens, <s>, </s>, no merges): one
               letter is one token for lorahub and for llama.cpp alike;
  f32.gguf, f16.gguf, q8_0.gguf   the same model through tools/zoo_gguf.py;
  text.txt     4096 random lowercase letters (llama-perplexity's input);
  examples.jsonl   8 examples cut from the same text, input 255 letters and
               output 256 (with BOS: 512 tokens each, 4096 in all, the
               token count llama-perplexity -c 512 --chunks 8 processes).
Debian's python3-numpy and the gguf-py of the llama.cpp source; seeded.
"""
import argparse
import json
import os
import struct
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import zoo_gguf  # noqa: E402

DIM, LAYERS, HEADS, KV, FFN, VOCAB = 768, 12, 12, 4, 2048, 32000


def byte_level_vocab():
    """GPT-2's bytes_to_unicode: the printable stand-in of every byte."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


def write_tokenizer(path):
    added = [{"id": 256 + i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": True} for i, t in enumerate(["<s>", "</s>"])]
    tok = {"version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
           "normalizer": None,
           "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                             "use_regex": True},
           "post_processor": None,
           "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                       "use_regex": True},
           "model": {"type": "BPE", "dropout": None, "unk_token": None,
                     "continuing_subword_prefix": None, "end_of_word_suffix": None,
                     "fuse_unk": False, "byte_fallback": False, "vocab": byte_level_vocab(),
                     "merges": []}}
    json.dump(tok, open(path, "w"))


def write_model(d, rng):
    os.makedirs(d, exist_ok=True)
    hd = DIM // HEADS
    cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": VOCAB,
           "hidden_size": DIM, "intermediate_size": FFN, "num_hidden_layers": LAYERS,
           "num_attention_heads": HEADS, "num_key_value_heads": KV, "head_dim": hd,
           "hidden_act": "silu", "max_position_embeddings": 2048, "rms_norm_eps": 1e-5,
           "rope_theta": 10000.0, "tie_word_embeddings": False, "bos_token_id": 256,
           "eos_token_id": 257, "torch_dtype": "float32"}
    json.dump(cfg, open(os.path.join(d, "config.json"), "w"), indent=1)
    write_tokenizer(os.path.join(d, "tokenizer.json"))
    shapes = {"model.embed_tokens.weight": (VOCAB, DIM), "model.norm.weight": (DIM,),
              "lm_head.weight": (VOCAB, DIM)}
    for l in range(LAYERS):
        p = f"model.layers.{l}."
        shapes.update({p + "input_layernorm.weight": (DIM,),
                       p + "post_attention_layernorm.weight": (DIM,),
                       p + "self_attn.q_proj.weight": (HEADS * hd, DIM),
                       p + "self_attn.k_proj.weight": (KV * hd, DIM),
                       p + "self_attn.v_proj.weight": (KV * hd, DIM),
                       p + "self_attn.o_proj.weight": (DIM, HEADS * hd),
                       p + "mlp.gate_proj.weight": (FFN, DIM), p + "mlp.up_proj.weight": (FFN, DIM),
                       p + "mlp.down_proj.weight": (DIM, FFN)})
    header, off = {}, 0
    for name, shape in shapes.items():
        n = int(np.prod(shape)) * 4
        header[name] = {"dtype": "F32", "shape": list(shape), "data_offsets": [off, off + n]}
        off += n
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(os.path.join(d, "model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for name, shape in shapes.items():
            if len(shape) == 1:
                t = np.ones(shape, dtype=np.float32)
            else:
                t = rng.normal(0.0, 0.02, size=shape).astype(np.float32)
            f.write(t.astype("<f4").tobytes())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("outdir")
    ap.add_argument("--gguf-py", default=zoo_gguf.GGUF_PY)
    a = ap.parse_args()
    rng = np.random.default_rng(20261206)
    hf = os.path.join(a.outdir, "hf")
    write_model(hf, rng)
    for t in ("f32", "f16", "q8_0"):
        zoo_gguf.convert(hf, os.path.join(a.outdir, f"{t}.gguf"), t, a.gguf_py)
    letters = "".join(chr(ord("a") + int(c)) for c in rng.integers(0, 26, size=4096))
    open(os.path.join(a.outdir, "text.txt"), "w").write(letters + "\n")
    with open(os.path.join(a.outdir, "examples.jsonl"), "w") as f:
        for i in range(8):
            chunk = letters[i * 512:(i + 1) * 512]
            f.write(json.dumps({"input": chunk[1:256], "output": chunk[256:]}) + "\n")


if __name__ == "__main__":
    main()
