"""tools/t5_torch.py - a small, readable PyTorch T5 written from the
transformers modeling_t5.py semantics (no transformers needed), with PEFT
seq2seq LoRA side paths, and the generator of tests/fixtures/t5/.

It is the independent reference the C model/t5/ is checked against
(tests/check_t5.c). Computation is in float64, so the fixture holds the
exact values and the C float32 forward must be within its own rounding.

Semantics (eval mode, dropout off):
  * T5LayerNorm: w * x * rsqrt(mean(x^2) + eps); no mean, no bias.
  * Embedding: shared[ids], no scaling.
  * Attention: scores = q k^T + position_bias (NO 1/sqrt(d_kv)); softmax;
    heads are head-major rows of q/k/v (row = h * d_kv + d).
  * Relative position bias: block 0 of each stack owns an Embedding
    (num_buckets, n_heads) used by every block of the stack; bucket of
    (key - query) bidirectional in the encoder, causal in the decoder
    (relative_position_bucket below, HF's _relative_position_bucket in
    float32 tensors as HF computes it).
  * Decoder block: causal self-attention with its bias, cross-attention
    (q from the decoder, k/v from the final-normed encoder output, no
    bias), FFN. FFN: relu: wo(relu(wi x)); gated-gelu: wo(gelu_new(wi_0 x) *
    wi_1 x), gelu_new the tanh approximation.
  * Head: final_layer_norm, then (tied only) * d_model^-0.5, then lm_head
    (= shared when tied).
  * Teacher forcing: decoder input = [decoder_start_token_id] + labels[:-1].
  * LoRA: y = W x + scale * B (A x), scale = lora_alpha / r; PEFT module
    names encoder.block.0.layer.0.SelfAttention.q etc.

Usage: /usr/bin/python3 tools/t5_torch.py OUTDIR   (writes tests/fixtures/t5/)
"""

import json
import math
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from llama_torch import save_safetensors  # noqa: E402

DT = torch.float64


def relative_position_bucket(rel, bidirectional, num_buckets, max_distance):
    """rel: int64 tensor of key - query positions (HF semantics, float32 log)."""
    buckets = torch.zeros_like(rel)
    if bidirectional:
        num_buckets //= 2
        buckets += (rel > 0).to(torch.long) * num_buckets
        rel = torch.abs(rel)
    else:
        rel = -torch.min(rel, torch.zeros_like(rel))
    max_exact = num_buckets // 2
    is_small = rel < max_exact
    large = max_exact + (
        torch.log(rel.float() / max_exact) / math.log(max_distance / max_exact)
        * (num_buckets - max_exact)).to(torch.long)
    large = torch.min(large, torch.full_like(large, num_buckets - 1))
    return buckets + torch.where(is_small, rel, large)


class T5:
    def __init__(self, cfg, sd):
        self.cfg = cfg
        self.sd = {k: torch.as_tensor(v, dtype=DT) for k, v in sd.items()}
        self.lora = {}
        self.gated = cfg["feed_forward_proj"] == "gated-gelu"
        self.tied = cfg.get("tie_word_embeddings", True)

    def W(self, name):
        return self.sd[name + ".weight"]

    def lin(self, name, x):
        y = x @ self.W(name).T
        if name in self.lora:
            A, B, s = self.lora[name]
            y = y + s * ((x @ A.T) @ B.T)
        return y

    def norm(self, name, x):
        var = (x * x).mean(-1, keepdim=True)
        return self.W(name) * (x * torch.rsqrt(var + self.cfg["layer_norm_epsilon"]))

    def bias(self, stack, q_len, k_len, q_off=0):
        c = self.cfg
        ctx = torch.arange(q_off, q_off + q_len)[:, None]
        mem = torch.arange(k_len)[None, :]
        b = relative_position_bucket(mem - ctx, stack == "encoder",
                                     c["relative_attention_num_buckets"],
                                     c.get("relative_attention_max_distance", 128))
        table = self.W(stack + ".block.0.layer.0.SelfAttention.relative_attention_bias")
        return table[b].permute(2, 0, 1)  # [H, q, k]

    def attention(self, pre, xq, xkv, bias, causal):
        c = self.cfg
        H, dk = c["num_heads"], c["d_kv"]
        q = self.lin(pre + ".q", xq).view(-1, H, dk).transpose(0, 1)
        k = self.lin(pre + ".k", xkv).view(-1, H, dk).transpose(0, 1)
        v = self.lin(pre + ".v", xkv).view(-1, H, dk).transpose(0, 1)
        s = q @ k.transpose(1, 2)
        if bias is not None:
            s = s + bias
        if causal:
            Lq, Lk = s.shape[1], s.shape[2]
            mask = torch.ones(Lq, Lk, dtype=torch.bool).tril(Lk - Lq)
            s = s.masked_fill(~mask, float("-inf"))
        p = torch.softmax(s, -1)
        o = (p @ v).transpose(0, 1).reshape(-1, H * dk)
        return self.lin(pre + ".o", o)

    def ffn(self, pre, x):
        if self.gated:
            g = self.lin(pre + ".wi_0", x)
            g = 0.5 * g * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (g + 0.044715 * g ** 3)))
            h = g * self.lin(pre + ".wi_1", x)
        else:
            h = torch.relu(self.lin(pre + ".wi", x))
        return self.lin(pre + ".wo", h)

    def encode(self, ids):
        c = self.cfg
        h = self.W("shared")[torch.as_tensor(ids)]
        bias = self.bias("encoder", len(ids), len(ids))
        for i in range(c["num_layers"]):
            p = "encoder.block.%d." % i
            h = h + self.attention(p + "layer.0.SelfAttention",
                                   self.norm(p + "layer.0.layer_norm", h),
                                   self.norm(p + "layer.0.layer_norm", h), bias, False)
            h = h + self.ffn(p + "layer.1.DenseReluDense", self.norm(p + "layer.1.layer_norm", h))
        return self.norm("encoder.final_layer_norm", h)

    def decode(self, enc, dec_ids):
        """Logits [len(dec_ids), vocab] of the decoder reading dec_ids."""
        c = self.cfg
        h = self.W("shared")[torch.as_tensor(dec_ids)]
        bias = self.bias("decoder", len(dec_ids), len(dec_ids))
        for i in range(c.get("num_decoder_layers") or c["num_layers"]):
            p = "decoder.block.%d." % i
            x = self.norm(p + "layer.0.layer_norm", h)
            h = h + self.attention(p + "layer.0.SelfAttention", x, x, bias, True)
            x = self.norm(p + "layer.1.layer_norm", h)
            h = h + self.attention(p + "layer.1.EncDecAttention", x, enc, None, False)
            h = h + self.ffn(p + "layer.2.DenseReluDense", self.norm(p + "layer.2.layer_norm", h))
        h = self.norm("decoder.final_layer_norm", h)
        if self.tied:
            return (h * c["d_model"] ** -0.5) @ self.W("shared").T
        return h @ self.W("lm_head").T

    def logits(self, src, tgt):
        start = self.cfg.get("decoder_start_token_id", 0)
        return self.decode(self.encode(src), [start] + list(tgt[:-1]))

    def greedy(self, src, max_new):
        """Greedy ids (no eos) and the smallest top-1/top-2 logit gap seen."""
        enc = self.encode(src)
        ids = [self.cfg.get("decoder_start_token_id", 0)]
        out, gap = [], float("inf")
        for _ in range(max_new):
            lg = self.decode(enc, ids)[-1]
            top = torch.topk(lg, 2).values
            gap = min(gap, float(top[0] - top[1]))
            nxt = int(torch.argmax(lg))
            if nxt == self.cfg.get("eos_token_id", 1):
                break
            out.append(nxt)
            ids.append(nxt)
        return out, gap


def lora_modules(cfg):
    """Every adaptable linear: (PEFT module name, in, out)."""
    D, I, F = cfg["d_model"], cfg["num_heads"] * cfg["d_kv"], cfg["d_ff"]
    gated = cfg["feed_forward_proj"] == "gated-gelu"
    wis = ["wi_0", "wi_1"] if gated else ["wi"]
    mods = []
    for stack, n, att in (("encoder", cfg["num_layers"], ["SelfAttention"]),
                          ("decoder", cfg.get("num_decoder_layers") or cfg["num_layers"],
                           ["SelfAttention", "EncDecAttention"])):
        for b in range(n):
            for j, a in enumerate(att):
                for p in "qkvo":
                    mods.append(("%s.block.%d.layer.%d.%s.%s" % (stack, b, j, a, p),
                                 D if p != "o" else I, I if p != "o" else D))
            j = len(att)
            for w in wis:
                mods.append(("%s.block.%d.layer.%d.DenseReluDense.%s" % (stack, b, j, w), D, F))
            mods.append(("%s.block.%d.layer.%d.DenseReluDense.wo" % (stack, b, j), F, D))
    return mods


def random_model(cfg, g):
    """A random state dict with T5's initialization scales (LN weights
    perturbed around 1 so that they matter)."""
    D, H, dk, F, V = cfg["d_model"], cfg["num_heads"], cfg["d_kv"], cfg["d_ff"], cfg["vocab_size"]
    I = H * dk
    nb = cfg["relative_attention_num_buckets"]
    sd = {}

    def rnd(*shape, std):
        return torch.randn(*shape, generator=g, dtype=torch.float32) * std

    sd["shared.weight"] = rnd(V, D, std=1.0)
    for name, din, dout in lora_modules(cfg):
        std = din ** -0.5
        if name.endswith(".q"):
            std = (D * dk) ** -0.5 * 2
        sd[name + ".weight"] = rnd(dout, din, std=std)
    for stack, n, k in (("encoder", cfg["num_layers"], 2),
                        ("decoder", cfg.get("num_decoder_layers") or cfg["num_layers"], 3)):
        sd[stack + ".block.0.layer.0.SelfAttention.relative_attention_bias.weight"] = rnd(nb, H, std=1.0)
        for b in range(n):
            for j in range(k):
                sd["%s.block.%d.layer.%d.layer_norm.weight" % (stack, b, j)] = 1 + rnd(D, std=0.2)
        sd[stack + ".final_layer_norm.weight"] = 1 + rnd(D, std=0.2)
    if not cfg.get("tie_word_embeddings", True):
        sd["lm_head.weight"] = rnd(V, D, std=D ** -0.5 * 2)
    return sd


def random_lora(cfg, g, r, alpha):
    ad = {}
    for name, din, dout in lora_modules(cfg):
        A = torch.randn(r, din, generator=g, dtype=torch.float32) * (0.5 / math.sqrt(din))
        B = torch.randn(dout, r, generator=g, dtype=torch.float32) * (0.5 / math.sqrt(r))
        ad[name] = (A, B)
    return ad


def save_lora(d, ad, r, alpha, targets):
    os.makedirs(d, exist_ok=True)
    t = {}
    for name, (A, B) in ad.items():
        t["base_model.model.%s.lora_A.weight" % name] = A
        t["base_model.model.%s.lora_B.weight" % name] = B
    save_safetensors(os.path.join(d, "adapter_model.safetensors"), t)
    cfg = {"peft_type": "LORA", "task_type": "SEQ_2_SEQ_LM", "base_model_name_or_path": None,
           "r": r, "lora_alpha": alpha, "target_modules": targets, "lora_dropout": 0.0,
           "bias": "none", "fan_in_fan_out": False, "inference_mode": True}
    with open(os.path.join(d, "adapter_config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")


def make_case(out, name, cfg, seed, pairs_spec, r=4, alpha=8):
    g = torch.Generator().manual_seed(seed)
    sd = random_model(cfg, g)
    mdir = os.path.join(out, name)
    os.makedirs(mdir, exist_ok=True)
    with open(os.path.join(mdir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")
    save_safetensors(os.path.join(mdir, "model.safetensors"), sd)
    ad = random_lora(cfg, g, r, alpha)
    targets = sorted({n.rsplit(".", 1)[1] for n, _, _ in lora_modules(cfg)})
    save_lora(os.path.join(out, name + "-lora"), ad, r, alpha, targets)

    V, eos = cfg["vocab_size"], cfg.get("eos_token_id", 1)
    pairs = []
    for n_src, n_tgt in pairs_spec:
        src = torch.randint(2, V, (n_src - 1,), generator=g).tolist() + [eos]
        tgt = torch.randint(2, V, (n_tgt - 1,), generator=g).tolist() + [eos]
        pairs.append((src, tgt))
    model = T5(cfg, sd)
    result = {"pairs": [{"src": s, "tgt": t} for s, t in pairs]}
    tensors = {}
    for tag, lora in (("base", {}), ("lora", ad)):
        model.lora = {k: (A.to(DT), B.to(DT), alpha / r) for k, (A, B) in lora.items()}
        rows, nll = [], 0.0
        for s, t in pairs:
            lg = model.logits(s, t)
            rows.append(lg)
            nll += float(-torch.log_softmax(lg, -1)[torch.arange(len(t)), torch.as_tensor(t)].sum())
        tensors["logits_" + tag] = torch.cat(rows).float()
        result["nll_" + tag] = nll
        gens = []
        for s, _ in pairs:
            ids, gap = model.greedy(s, 12)
            assert gap > 1e-4, "near-tie in greedy decoding (gap %g): pick another seed" % gap
            gens.append(ids)
        result["greedy_" + tag] = gens
    result["n_tokens"] = sum(len(t) for _, t in pairs)
    text_case(mdir, cfg, model, ad, alpha / r, result)
    save_safetensors(os.path.join(out, name + "-expected.safetensors"), tensors)
    with open(os.path.join(out, name + "-expected.json"), "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")
    print("%s: nll base %.6f lora %.6f over %d tokens" % (name, result["nll_base"],
                                                          result["nll_lora"], result["n_tokens"]))


# A character-level tokenizer.json (BPE without merges, no normalizer or
# pre-tokenizer) so the native backend can run on these models: each
# character is one id, which Python can reproduce without a tokenizer.
CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,?!:()+"
EXAMPLES = [("Translate to French: the cat sleeps.", "le chat dort"),
            ("Q: 2+2? A:", "4"),
            ("Is the sky green? Answer yes or no.", "no"),
            ("", "empty input")]


def text_case(mdir, cfg, model, ad, scale, result):
    specials = ["<pad>", "</s>", "<unk>"]
    vocab = {t: i for i, t in enumerate(specials + list(CHARS))}
    assert len(vocab) <= cfg["vocab_size"]
    tok = {"version": "1.0", "truncation": None, "padding": None,
           "added_tokens": [{"id": i, "content": t, "single_word": False, "lstrip": False,
                             "rstrip": False, "normalized": False, "special": True}
                            for i, t in enumerate(specials)],
           "normalizer": None, "pre_tokenizer": None, "post_processor": None, "decoder": None,
           "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>",
                     "continuing_subword_prefix": None, "end_of_word_suffix": None,
                     "fuse_unk": False, "byte_fallback": False, "vocab": vocab, "merges": []}}
    with open(os.path.join(mdir, "tokenizer.json"), "w") as f:
        json.dump(tok, f, ensure_ascii=False)
        f.write("\n")
    # The native backend's convention for T5: prompt = input + </s>,
    # target = output + </s>, loss = total nll / scored tokens.
    eos = cfg.get("eos_token_id", 1)
    with open(os.path.join(os.path.dirname(mdir), "examples.jsonl"), "w") as f:
        for i, o in EXAMPLES:
            f.write(json.dumps({"input": i, "output": o}) + "\n")
    for tag, lora in (("base", {}), ("lora", ad)):
        model.lora = {k: (A.to(DT), B.to(DT), scale) for k, (A, B) in lora.items()}
        nll, n = 0.0, 0
        for i, o in EXAMPLES:
            src = [vocab[c] for c in i] + [eos]
            tgt = [vocab[c] for c in o] + [eos]
            lg = model.logits(src, tgt)
            nll += float(-torch.log_softmax(lg, -1)[torch.arange(len(tgt)), torch.as_tensor(tgt)].sum())
            n += len(tgt)
        result["text_loss_" + tag] = nll / n
    result["text_tokens"] = n


def main():
    torch.set_num_threads(1)
    out = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/t5"
    os.makedirs(out, exist_ok=True)
    # Flan-T5-shaped: gated-gelu, untied head, more decoder than encoder
    # blocks would be unusual, so 3 + 2; inputs of 150 and targets of 130
    # tokens reach every bucket (encoder |rel| >= 91, decoder n >= 113).
    flan = {"model_type": "t5", "architectures": ["T5ForConditionalGeneration"],
            "d_model": 32, "d_kv": 8, "d_ff": 48, "num_heads": 4, "num_layers": 3,
            "num_decoder_layers": 2, "vocab_size": 96, "feed_forward_proj": "gated-gelu",
            "dense_act_fn": "gelu_new", "is_gated_act": True,
            "relative_attention_num_buckets": 32, "relative_attention_max_distance": 128,
            "layer_norm_epsilon": 1e-6, "tie_word_embeddings": False, "is_encoder_decoder": True,
            "decoder_start_token_id": 0, "pad_token_id": 0, "eos_token_id": 1}
    make_case(out, "flan", flan, 1234, [(150, 130), (7, 3), (40, 18), (1, 1)])
    # Original T5: relu, tied head (tie_word_embeddings absent: true), and
    # other bucket settings.
    orig = {"model_type": "t5", "d_model": 24, "d_kv": 6, "d_ff": 40, "num_heads": 3,
            "num_layers": 2, "vocab_size": 80, "feed_forward_proj": "relu",
            "relative_attention_num_buckets": 16, "relative_attention_max_distance": 40,
            "layer_norm_epsilon": 1e-6, "decoder_start_token_id": 0, "eos_token_id": 1}
    make_case(out, "orig", orig, 99, [(60, 50), (5, 4), (2, 9)])
    save_bin_copy(out, "orig")


def save_bin_copy(out, name):
    """NAME-bin/: the same model as a pytorch_model.bin the way
    T5ForConditionalGeneration.state_dict() saves it: shared,
    encoder.embed_tokens, decoder.embed_tokens and (tied) lm_head all one
    storage."""
    from llama_torch import load_safetensors
    arrays, _ = load_safetensors(os.path.join(out, name, "model.safetensors"))
    sd = {k: torch.from_numpy(np.array(v)) for k, v in arrays.items()}
    for alias in ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight", "lm_head.weight"):
        sd[alias] = sd["shared.weight"]
    d = os.path.join(out, name + "-bin")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(out, name, "config.json")) as f:
        cfg = f.read()
    with open(os.path.join(d, "config.json"), "w") as f:
        f.write(cfg)
    torch.save(sd, os.path.join(d, "pytorch_model.bin"))


if __name__ == "__main__":
    main()
