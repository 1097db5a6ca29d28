#!/usr/bin/python3
"""tools/make_native_fixtures.py - reference fixtures for the native backend.

Developer-time only (needs torch; run with /usr/bin/python3). The reference
forward pass is tools/llama_torch.py, written independently of the C code.
Writes tests/fixtures/native/:

  a/        llama: GQA (4 heads, 2 kv heads), head_dim 16, rope_theta 5e5,
            rope_scaling llama3 (all three wavelength branches hit), untied
            embeddings, attention_bias (q/k/v/o biases), F32 model.safetensors,
            tokenizer.json (byte-level BPE, no merges: one token per byte)
  a-lora/   PEFT LoRA r=4 alpha=8 (scale 2) on all seven projections
  a-lora2/  PEFT LoRA r=2 alpha=2 on q/v of layer 1 only (scale 1)
  b/        qwen2: tied embeddings, rope_scaling linear (legacy key "type"),
            q/k/v bias, F16 weights, sharded (index + 2 files)
  b-lora/   PEFT LoRA r=3 rslora on gate/up/down
  expected.safetensors  (all F32)
     <m>.seq<k>.ids     [T]        token ids of sequence k
     <m>.seq<k>.logits  [T, V]     logits under base + <m>-lora
     <m>.ex<k>.ids      [L]        [bos] + input + output + [eos]
     <m>.ex<k>.from     [1]        first scored position (predicting ids[from+1])
     <m>.loss           [3]        mean loss of all ex<k> under base, lora, lora2 (b: base, lora, base)
     <m>.gen.prompt     [P]        a prompt; <m>.gen.out [G]: greedy tokens under <m>-lora
  examples.jsonl          a few text examples for the conformance test (model a)
"""
import json
import os
import shutil
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import llama_torch as lt  # noqa: E402
from tokenizer_reference import bytes_to_unicode  # noqa: E402

torch.set_num_threads(1)
TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(TOP, "tests", "fixtures", "native")


def write_tokenizer(path):
    """Byte-level BPE without merges: token id = byte value, then <s>=256, </s>=257."""
    b2u = bytes_to_unicode()
    vocab = {b2u[b]: b for b in range(256)}
    vocab["<s>"] = 256
    vocab["</s>"] = 257
    tok = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            {"id": 256, "content": "<s>", "single_word": False, "lstrip": False,
             "rstrip": False, "normalized": False, "special": True},
            {"id": 257, "content": "</s>", "single_word": False, "lstrip": False,
             "rstrip": False, "normalized": False, "special": True},
        ],
        "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                          "use_regex": True},
        "post_processor": None,
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                    "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None,
                  "continuing_subword_prefix": None, "end_of_word_suffix": None,
                  "fuse_unk": False, "byte_fallback": False, "vocab": vocab, "merges": []},
    }
    with open(path, "w") as f:
        json.dump(tok, f, ensure_ascii=False)
        f.write("\n")


def randomize(model, seed, std):
    """Random weights everywhere, norms around 1 and non-zero biases, so every
    parameter influences the logits."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g))
            elif name.endswith(".bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(std * torch.randn(p.shape, generator=g))


def random_lora(model, r, alpha, targets, seed, layers=None, rslora=False):
    g = torch.Generator().manual_seed(seed)
    s = lt.lora_scale(r, alpha, rslora)
    ad = {}
    for name, lin in model.lora_modules():
        if name.rsplit(".", 1)[1] not in targets:
            continue
        if layers is not None and int(name.split(".")[2]) not in layers:
            continue
        A = 0.3 * torch.randn(r, lin.in_features, generator=g)
        B = 0.3 * torch.randn(lin.out_features, r, generator=g)
        ad[name] = (A, B, s)
    return ad, lt.peft_config(r, alpha, targets, rslora)


def f16_round(model):
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.half().float())


def save_sharded(model, d):
    """F16 tensors split over two files with a weight_map index."""
    os.makedirs(d, exist_ok=True)
    model.config.save(os.path.join(d, "config.json"))
    sd = {k: v.half().numpy() for k, v in model.hf_state_dict().items()}
    names = sorted(sd)
    half = len(names) // 2
    parts = [("model-00001-of-00002.safetensors", names[:half]),
             ("model-00002-of-00002.safetensors", names[half:])]
    wmap = {}
    for fn, ns in parts:
        lt.save_safetensors(os.path.join(d, fn), {n: sd[n] for n in ns})
        for n in ns:
            wmap[n] = fn
    with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": 0}, "weight_map": wmap}, f, indent=2)
        f.write("\n")


@torch.no_grad()
def greedy_any(model, prefix, eos_set, max_new):
    """lt.greedy, stopping at any of several EOS ids (full re-run per step)."""
    ids, out = list(prefix), []
    for _ in range(max_new):
        t = int(torch.argmax(model(torch.tensor([ids]))[0, -1]))
        if t in eos_set:
            break
        out.append(t)
        ids.append(t)
    return out


def main():
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    os.makedirs(OUT)
    exp = {}
    rng = np.random.default_rng(7)

    # ---- model a --------------------------------------------------------
    cfg_a = lt.LlamaConfig(
        vocab_size=260, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, rms_norm_eps=1e-5,
        rope_theta=500000.0, max_position_embeddings=256,
        rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                      "high_freq_factor": 4.0, "original_max_position_embeddings": 64},
        tie_word_embeddings=False, attention_bias=True, bos_token_id=256, eos_token_id=257)
    ma = lt.LlamaForCausalLM(cfg_a)
    randomize(ma, 1, 0.15)
    ma.save_pretrained(os.path.join(OUT, "a"))
    write_tokenizer(os.path.join(OUT, "a", "tokenizer.json"))
    lora, lcfg = random_lora(ma, 4, 8, lt.LORA_TARGETS, 2)
    lt.save_peft(os.path.join(OUT, "a-lora"), lora, lcfg)
    lora2, lcfg2 = random_lora(ma, 2, 2, ("q_proj", "v_proj"), 3, layers=[1])
    lt.save_peft(os.path.join(OUT, "a-lora2"), lora2, lcfg2)

    # ---- model b --------------------------------------------------------
    cfg_b = lt.LlamaConfig(
        model_type="qwen2", vocab_size=300, hidden_size=48, intermediate_size=80,
        num_hidden_layers=3, num_attention_heads=6, num_key_value_heads=3, rms_norm_eps=1e-6,
        rope_theta=10000.0, rope_scaling={"type": "linear", "factor": 2.0},
        tie_word_embeddings=True, bos_token_id=1, eos_token_id=[2, 3])
    mb = lt.LlamaForCausalLM(cfg_b)
    randomize(mb, 11, 0.2)
    f16_round(mb)
    save_sharded(mb, os.path.join(OUT, "b"))
    lorab, lcfgb = random_lora(mb, 3, 6, ("gate_proj", "up_proj", "down_proj"), 12, rslora=True)
    lt.save_peft(os.path.join(OUT, "b-lora"), lorab, lcfgb)

    for tag, m, cfg, la, lb in (("a", ma, cfg_a, lora, lora2), ("b", mb, cfg_b, lorab, None)):
        V = cfg.vocab_size
        bos = cfg.bos_token_id
        eos = cfg.eos_token_id[0] if isinstance(cfg.eos_token_id, list) else cfg.eos_token_id
        m.set_lora(la)
        with torch.no_grad():
            for k, T in enumerate((7, 12, 3)):
                ids = rng.integers(0, V, size=T)
                logits = m(torch.tensor(ids[None], dtype=torch.long))[0]
                exp["%s.seq%d.ids" % (tag, k)] = ids.astype(np.float32)
                exp["%s.seq%d.logits" % (tag, k)] = logits.numpy().astype(np.float32)
        seqs = []
        for k, (ni, no) in enumerate(((4, 3), (9, 5), (2, 1), (6, 8))):
            ids, st = lt.example_ids(bos, rng.integers(0, 250, size=ni).tolist(),
                                     rng.integers(0, 250, size=no).tolist(), eos)
            seqs.append((ids, st))
            exp["%s.ex%d.ids" % (tag, k)] = np.array(ids, dtype=np.float32)
            exp["%s.ex%d.from" % (tag, k)] = np.array([st - 1], dtype=np.float32)
        losses = []
        with torch.no_grad():
            for ad in (None, la, lb):
                if ad is None:
                    m.clear_lora()
                else:
                    m.set_lora(ad)
                losses.append(float(lt.batch_loss(m, seqs)))
        exp["%s.loss" % tag] = np.array(losses, dtype=np.float32)
        m.set_lora(la)
        prompt = [bos] + rng.integers(0, 250, size=5).tolist()
        eos_set = set(cfg.eos_token_id) if isinstance(cfg.eos_token_id, list) else {eos}
        out = greedy_any(m, prompt, eos_set, 12)
        exp["%s.gen.prompt" % tag] = np.array(prompt, dtype=np.float32)
        exp["%s.gen.out" % tag] = np.array(out if out else [-1], dtype=np.float32)
        m.clear_lora()
    lt.save_safetensors(os.path.join(OUT, "expected.safetensors"), exp)

    with open(os.path.join(OUT, "examples.jsonl"), "w") as f:
        for i, o in (("2+2=", "4"), ("capital of France:", "Paris."), ("abc", "def"),
                     ("héllo wörld", "ünïcode ok"), ("", "empty input")):
            f.write(json.dumps({"input": i, "output": o}, ensure_ascii=False) + "\n")
    total = 0
    for root, _, files in os.walk(OUT):
        for fn in files:
            total += os.path.getsize(os.path.join(root, fn))
    print("wrote %s (%d bytes)" % (OUT, total))


if __name__ == "__main__":
    main()
