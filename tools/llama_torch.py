"""tools/llama_torch.py - a small, readable re-implementation of Hugging Face's
LlamaForCausalLM forward pass in PyTorch, with PEFT-style LoRA side paths.

Only torch + numpy (and the standard library) are needed. It is the reference
the C native backend is checked against (fixtures) and the trainer of the
bundled zoo (tools/zoo/).

Semantics follow transformers' modeling_llama.py:
  * RMSNorm: x * rsqrt(mean(x^2) + eps), computed in float32, then * weight.
  * RoPE, rotate-half layout: inv_freq[i] = 1 / theta^(2i/d) (i < d/2);
    angles = pos * inv_freq; cos/sin of cat(angles, angles);
    q' = q*cos + rotate_half(q)*sin with rotate_half(x) = cat(-x2, x1).
    rope_scaling: "linear" divides inv_freq by factor; "llama3" applies the
    wavelength-dependent smoothing of Llama 3.1 (factor, low_freq_factor,
    high_freq_factor, original_max_position_embeddings). Either key
    "rope_type" or the older "type" names the kind.
  * Attention: causal, scaled by head_dim^-0.5, softmax in float32,
    grouped-query (each kv head serves num_heads/num_kv_heads query heads,
    repeat_kv layout: query head h uses kv head h // (heads/kv_heads)).
  * MLP: down(silu(gate(x)) * up(x)).
  * Final RMSNorm, lm_head (tied to embed_tokens if tie_word_embeddings).

Biases:
  * config "attention_bias": true puts a bias on q, k, v AND o_proj (this is
    what HF LlamaAttention does: o_proj uses bias=config.attention_bias).
  * Qwen2-style models have bias on q/k/v only. Model this with the extra
    (non-HF) keys "qkv_bias" / "o_bias", which override attention_bias for
    their projections; our loader also sets qkv_bias when model_type is
    "qwen2" and neither key is present.
  * "mlp_bias": true puts biases on gate/up/down (HF LlamaMLP).

State-dict names are exactly HF's (model.embed_tokens.weight,
model.layers.{i}.self_attn.{q,k,v,o}_proj.weight(+.bias),
model.layers.{i}.mlp.{gate,up,down}_proj.weight,
model.layers.{i}.input_layernorm.weight,
model.layers.{i}.post_attention_layernorm.weight, model.norm.weight,
lm_head.weight (absent when tied)).

LoRA: any of the seven linear layers can carry one side path,
y = W x (+ b) + scale * B (A x), A [r, in], B [out, r]; scale = alpha/r or
alpha/sqrt(r) with use_rslora. PEFT layout on disk: adapter_config.json +
adapter_model.safetensors with keys base_model.model.<module>.lora_A.weight
and .lora_B.weight.

safetensors is written by hand: 8-byte little-endian header length, compact
JSON header with "__metadata__" first then tensors sorted by name, padded with
spaces to a multiple of 8, then the raw little-endian data in the same order.
"""

import json
import math
import os
import struct

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")

# ---------------------------------------------------------------------------
# safetensors


_ST_DTYPES = {
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "F64": np.dtype("<f8"),
    "I32": np.dtype("<i4"),
    "I64": np.dtype("<i8"),
    "U8": np.dtype("u1"),
    "I8": np.dtype("i1"),
}


def _st_dtype_name(a):
    for name, dt in _ST_DTYPES.items():
        if a.dtype == dt or a.dtype == dt.newbyteorder("="):
            return name
    raise ValueError("unsupported dtype for safetensors: %s" % a.dtype)


def save_safetensors(path, tensors, metadata=None):
    """tensors: {name: numpy array or torch tensor}. Written atomically.
    metadata: {str: str}; {"format": "pt"} is always present and first."""
    meta = {"format": "pt"}
    if metadata:
        for k, v in metadata.items():
            if not isinstance(v, str):
                raise TypeError("safetensors metadata values must be strings (%s)" % k)
            meta[k] = v
    arrays = {}
    for name, t in tensors.items():
        if isinstance(t, torch.Tensor):
            t = t.detach().cpu()
            if t.dtype == torch.bfloat16:
                raise ValueError("BF16 writing is not supported here: %s" % name)
            t = t.numpy()
        a = np.ascontiguousarray(t)
        dn = _st_dtype_name(a)
        arrays[name] = np.ascontiguousarray(a.astype(_ST_DTYPES[dn], copy=False))
    header = {"__metadata__": meta}
    off = 0
    order = sorted(arrays)
    for name in order:
        a = arrays[name]
        header[name] = {"dtype": _st_dtype_name(a), "shape": list(a.shape),
                        "data_offsets": [off, off + a.nbytes]}
        off += a.nbytes
    hj = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    hj += b" " * ((8 - len(hj) % 8) % 8)
    tmp = path + ".tmp%d" % os.getpid()
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(hj)))
        f.write(hj)
        for name in order:
            f.write(arrays[name].tobytes())
    os.replace(tmp, path)


def load_safetensors(path):
    """Returns ({name: numpy array}, metadata dict). BF16 is widened to F32."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n].decode("utf-8"))
    meta = header.pop("__metadata__", {}) or {}
    base = 8 + n
    out = {}
    for name, info in header.items():
        b, e = info["data_offsets"]
        raw = data[base + b: base + e]
        if info["dtype"] == "BF16":
            u = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
            a = u.view(np.float32)
        else:
            a = np.frombuffer(raw, dtype=_ST_DTYPES[info["dtype"]]).copy()
        out[name] = a.reshape(info["shape"])
    return out, meta


# ---------------------------------------------------------------------------
# config


class LlamaConfig:
    """The subset of HF LlamaConfig the forward pass reads. Unknown keys are
    kept in .extra and written back by to_dict()."""

    def __init__(self, **kw):
        self.vocab_size = kw.pop("vocab_size", 32000)
        self.hidden_size = kw.pop("hidden_size", 4096)
        self.intermediate_size = kw.pop("intermediate_size", 11008)
        self.num_hidden_layers = kw.pop("num_hidden_layers", 32)
        self.num_attention_heads = kw.pop("num_attention_heads", 32)
        nkv = kw.pop("num_key_value_heads", None)
        self.num_key_value_heads = nkv if nkv is not None else self.num_attention_heads
        hd = kw.pop("head_dim", None)
        self.head_dim = hd if hd is not None else self.hidden_size // self.num_attention_heads
        self.rms_norm_eps = kw.pop("rms_norm_eps", 1e-6)
        self.rope_theta = kw.pop("rope_theta", 10000.0)
        self.rope_scaling = kw.pop("rope_scaling", None)
        self.max_position_embeddings = kw.pop("max_position_embeddings", 2048)
        self.tie_word_embeddings = kw.pop("tie_word_embeddings", False)
        self.attention_bias = kw.pop("attention_bias", False)
        self.mlp_bias = kw.pop("mlp_bias", False)
        self.model_type = kw.pop("model_type", "llama")
        qkv = kw.pop("qkv_bias", None)
        ob = kw.pop("o_bias", None)
        if qkv is None:
            qkv = True if (self.model_type == "qwen2" and ob is None) else self.attention_bias
        if ob is None:
            ob = False if self.model_type == "qwen2" else self.attention_bias
        self.qkv_bias = bool(qkv)
        self.o_bias = bool(ob)
        self.bos_token_id = kw.pop("bos_token_id", 1)
        self.eos_token_id = kw.pop("eos_token_id", 2)
        self.hidden_act = kw.pop("hidden_act", "silu")
        if self.hidden_act != "silu":
            raise ValueError("only hidden_act silu is supported, not %r" % self.hidden_act)
        self.extra = kw

    @classmethod
    def from_file(cls, path):
        with open(path) as f:
            return cls(**json.load(f))

    def to_dict(self):
        d = {
            "architectures": ["LlamaForCausalLM"],
            "model_type": self.model_type,
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "num_key_value_heads": self.num_key_value_heads,
            "head_dim": self.head_dim,
            "hidden_act": self.hidden_act,
            "max_position_embeddings": self.max_position_embeddings,
            "rms_norm_eps": self.rms_norm_eps,
            "rope_theta": self.rope_theta,
            "rope_scaling": self.rope_scaling,
            "tie_word_embeddings": self.tie_word_embeddings,
            "attention_bias": self.attention_bias,
            "mlp_bias": self.mlp_bias,
            "bos_token_id": self.bos_token_id,
            "eos_token_id": self.eos_token_id,
            "torch_dtype": "float32",
        }
        # extra (unknown or overridden keys such as torch_dtype) last wins
        # Only write the non-HF bias keys when they differ from what HF would infer.
        if self.qkv_bias != self.attention_bias:
            d["qkv_bias"] = self.qkv_bias
        if self.o_bias != self.attention_bias:
            d["o_bias"] = self.o_bias
        d.update(self.extra)
        return d

    def save(self, path):
        with open(path, "w") as f:
            json.dump(self.to_dict(), f, indent=2)
            f.write("\n")


# ---------------------------------------------------------------------------
# building blocks


def rope_inv_freq(cfg):
    """inv_freq [head_dim/2] float32, after rope_scaling (HF _compute_*_parameters)."""
    d = cfg.head_dim
    inv = 1.0 / (cfg.rope_theta ** (torch.arange(0, d, 2, dtype=torch.int64).float() / d))
    rs = cfg.rope_scaling
    if not rs:
        return inv
    kind = rs.get("rope_type", rs.get("type", "default"))
    if kind == "default":
        return inv
    if kind == "linear":
        return inv / float(rs["factor"])
    if kind == "llama3":
        factor = float(rs["factor"])
        lo = float(rs["low_freq_factor"])
        hi = float(rs["high_freq_factor"])
        old = float(rs["original_max_position_embeddings"])
        lo_wavelen = old / lo
        hi_wavelen = old / hi
        wavelen = 2 * math.pi / inv
        inv_l = torch.where(wavelen > lo_wavelen, inv / factor, inv)
        smooth = (old / wavelen - lo) / (hi - lo)
        smoothed = (1 - smooth) * inv_l / factor + smooth * inv_l
        medium = ~(wavelen < hi_wavelen) * ~(wavelen > lo_wavelen)
        return torch.where(medium, smoothed, inv_l)
    raise ValueError("unsupported rope_scaling type %r" % kind)


def rope_cos_sin(cfg, positions):
    """positions [T] int -> cos, sin [T, head_dim] float32."""
    inv = rope_inv_freq(cfg)
    freqs = positions.float()[:, None] * inv[None, :]
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos(), emb.sin()


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        dt = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dt)


class LoraLinear(nn.Module):
    """nn.Linear with an optional LoRA side path: y = W x + b + scale * B (A x).
    lora_A [r, in], lora_B [out, r] are None when no adapter is attached."""

    def __init__(self, d_in, d_out, bias):
        super().__init__()
        self.in_features, self.out_features = d_in, d_out
        self.weight = nn.Parameter(torch.empty(d_out, d_in))
        self.bias = nn.Parameter(torch.zeros(d_out)) if bias else None
        self.lora_A = None
        self.lora_B = None
        self.lora_scale = 0.0

    def forward(self, x):
        y = F.linear(x, self.weight, self.bias)
        if self.lora_A is not None:
            y = y + self.lora_scale * F.linear(F.linear(x, self.lora_A), self.lora_B)
        return y


class Attention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        H, K, D, hd = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.hidden_size, cfg.head_dim
        self.q_proj = LoraLinear(D, H * hd, cfg.qkv_bias)
        self.k_proj = LoraLinear(D, K * hd, cfg.qkv_bias)
        self.v_proj = LoraLinear(D, K * hd, cfg.qkv_bias)
        self.o_proj = LoraLinear(H * hd, D, cfg.o_bias)

    def forward(self, x, cos, sin, mask):
        # x [B, T, D]; cos/sin [T, hd]; mask [B or 1, 1, T, T] additive
        cfg = self.cfg
        Bn, T, _ = x.shape
        H, K, hd = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
        q = self.q_proj(x).view(Bn, T, H, hd).transpose(1, 2)   # [B, H, T, hd]
        k = self.k_proj(x).view(Bn, T, K, hd).transpose(1, 2)   # [B, K, T, hd]
        v = self.v_proj(x).view(Bn, T, K, hd).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        rep = H // K
        if rep > 1:  # repeat_kv: kv head j serves query heads j*rep .. j*rep+rep-1
            k = k.repeat_interleave(rep, dim=1)
            v = v.repeat_interleave(rep, dim=1)
        att = torch.matmul(q, k.transpose(2, 3)) * (hd ** -0.5) + mask
        att = F.softmax(att, dim=-1, dtype=torch.float32).to(q.dtype)
        o = torch.matmul(att, v).transpose(1, 2).reshape(Bn, T, H * hd)
        return self.o_proj(o)


class MLP(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        D, I, b = cfg.hidden_size, cfg.intermediate_size, cfg.mlp_bias
        self.gate_proj = LoraLinear(D, I, b)
        self.up_proj = LoraLinear(D, I, b)
        self.down_proj = LoraLinear(I, D, b)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.self_attn = Attention(cfg)
        self.mlp = MLP(cfg)
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)

    def forward(self, x, cos, sin, mask):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask)
        return x + self.mlp(self.post_attention_layernorm(x))


class LlamaModel(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList([DecoderLayer(cfg) for _ in range(cfg.num_hidden_layers)])
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)


class LlamaForCausalLM(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.config = cfg
        self.model = LlamaModel(cfg)
        self.lm_head = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)
        if cfg.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight

    # -- init / io ---------------------------------------------------------

    def init_weights(self, seed, std=0.02):
        """HF-style init: normal(0, std) for linears and embeddings, zero biases,
        ones for norms; deterministic from seed."""
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for name, p in self.named_parameters():
                if name.endswith("layernorm.weight") or name == "model.norm.weight":
                    p.fill_(1.0)
                elif name.endswith(".bias"):
                    p.zero_()
                else:
                    p.copy_(torch.randn(p.shape, generator=g) * std)
        return self

    def hf_state_dict(self):
        """{HF name: tensor}; lm_head.weight omitted when tied."""
        out = {}
        for name, p in self.named_parameters():
            if name.endswith("lora_A") or name.endswith("lora_B"):
                continue
            out[name] = p.detach()
        if self.config.tie_word_embeddings:
            out.pop("lm_head.weight", None)
        return out

    def save_pretrained(self, d, dtype=torch.float32):
        """config.json + model.safetensors in dtype (float32 or float16)."""
        os.makedirs(d, exist_ok=True)
        self.config.extra["torch_dtype"] = {torch.float32: "float32", torch.float16: "float16"}[dtype]
        self.config.save(os.path.join(d, "config.json"))
        save_safetensors(os.path.join(d, "model.safetensors"),
                         {k: v.to(dtype) for k, v in self.hf_state_dict().items()})

    @classmethod
    def from_pretrained(cls, d):
        cfg = LlamaConfig.from_file(os.path.join(d, "config.json"))
        m = cls(cfg)
        tensors, _ = load_safetensors(os.path.join(d, "model.safetensors"))
        params = dict(m.named_parameters())
        want = set(params)
        if cfg.tie_word_embeddings:
            want.discard("lm_head.weight")
        missing = want - set(tensors)
        if missing:
            raise ValueError("%s: missing tensors %s" % (d, sorted(missing)[:5]))
        with torch.no_grad():
            for name, a in tensors.items():
                if name not in params:
                    if cfg.tie_word_embeddings and name == "lm_head.weight":
                        continue
                    raise ValueError("%s: unexpected tensor %s" % (d, name))
                p = params[name]
                if tuple(p.shape) != tuple(a.shape):
                    raise ValueError("%s: %s shape %s, expected %s" % (d, name, a.shape, tuple(p.shape)))
                p.copy_(torch.from_numpy(np.asarray(a, dtype=np.float32)))
        return m

    # -- forward -----------------------------------------------------------

    def forward(self, ids, attention_mask=None):
        """ids [B, T] int64 -> logits [B, T, V] float32. attention_mask [B, T]
        (1 = token, 0 = padding) is only needed for right padding of a batch;
        positions are 0..T-1 (so left padding is not supported)."""
        cfg = self.config
        Bn, T = ids.shape
        x = self.model.embed_tokens(ids)
        cos, sin = rope_cos_sin(cfg, torch.arange(T))
        mask = torch.full((T, T), float("-inf")).triu(1)[None, None]  # [1, 1, T, T]
        if attention_mask is not None:
            pad = (1.0 - attention_mask.float())[:, None, None, :] * -1e30  # hide padded keys
            mask = mask + pad
        for layer in self.model.layers:
            x = layer(x, cos, sin, mask)
        return self.lm_head(self.model.norm(x))

    # -- LoRA --------------------------------------------------------------

    def lora_modules(self):
        """[(module path, LoraLinear)] for every adaptable linear, in layer order."""
        out = []
        for i, layer in enumerate(self.model.layers):
            for t in LORA_TARGETS:
                parent = layer.self_attn if t in ("q_proj", "k_proj", "v_proj", "o_proj") else layer.mlp
                sub = "self_attn" if parent is layer.self_attn else "mlp"
                out.append(("model.layers.%d.%s.%s" % (i, sub, t), getattr(parent, t)))
        return out

    def clear_lora(self):
        for _, lin in self.lora_modules():
            # unregister trained nn.Parameters too, so that plain tensors fit again
            lin._parameters.pop("lora_A", None)
            lin._parameters.pop("lora_B", None)
            lin.lora_A = lin.lora_B = None
            lin.lora_scale = 0.0

    def set_lora(self, adapter):
        """adapter: {module path: (A [r,in], B [out,r], scale)}; others cleared.
        Tensors are used as given (pass nn.Parameters to train them)."""
        self.clear_lora()
        mods = dict(self.lora_modules())
        for name, (A, B, s) in adapter.items():
            if name not in mods:
                raise ValueError("no adaptable module %s" % name)
            lin = mods[name]
            if A.shape[1] != lin.in_features or B.shape[0] != lin.out_features or A.shape[0] != B.shape[1]:
                raise ValueError("%s: LoRA shapes A %s B %s do not fit [%d -> %d]"
                                 % (name, tuple(A.shape), tuple(B.shape), lin.in_features, lin.out_features))
            lin.lora_A, lin.lora_B, lin.lora_scale = A, B, float(s)


# ---------------------------------------------------------------------------
# PEFT LoRA adapters


def lora_scale(r, alpha, use_rslora):
    return alpha / math.sqrt(r) if use_rslora else alpha / r


def new_lora(model, r, targets=LORA_TARGETS, seed=0, alpha=None, use_rslora=False):
    """PEFT-style init: A kaiming-uniform(a=sqrt(5)) i.e. U(-1/sqrt(in), 1/sqrt(in)), B = 0.
    Returns ({module: (A, B, scale)} with A/B as trainable Parameters, config dict)."""
    alpha = 2 * r if alpha is None else alpha
    g = torch.Generator().manual_seed(seed)
    s = lora_scale(r, alpha, use_rslora)
    ad = {}
    for name, lin in model.lora_modules():
        if name.rsplit(".", 1)[1] not in targets:
            continue
        bound = 1.0 / math.sqrt(lin.in_features)
        A = nn.Parameter((torch.rand(r, lin.in_features, generator=g) * 2 - 1) * bound)
        B = nn.Parameter(torch.zeros(lin.out_features, r))
        ad[name] = (A, B, s)
    cfg = peft_config(r, alpha, targets, use_rslora)
    return ad, cfg


def peft_config(r, alpha, targets, use_rslora=False, base_model=None):
    return {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base_model,
        "r": r,
        "lora_alpha": alpha,
        "use_rslora": bool(use_rslora),
        "target_modules": sorted(set(targets)),
        "lora_dropout": 0.0,
        "bias": "none",
        "fan_in_fan_out": False,
        "rank_pattern": {},
        "alpha_pattern": {},
        "modules_to_save": None,
        "init_lora_weights": True,
        "use_dora": False,
        "inference_mode": True,
    }


def save_peft(d, adapter, config, dtype=torch.float32):
    """adapter {module: (A, B, scale)} -> d/adapter_config.json + adapter_model.safetensors
    (tensors stored as dtype)."""
    os.makedirs(d, exist_ok=True)
    tensors = {}
    for name, (A, B, _) in adapter.items():
        tensors["base_model.model.%s.lora_A.weight" % name] = A.detach().float().to(dtype)
        tensors["base_model.model.%s.lora_B.weight" % name] = B.detach().float().to(dtype)
    save_safetensors(os.path.join(d, "adapter_model.safetensors"), tensors)
    with open(os.path.join(d, "adapter_config.json"), "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")


def load_peft(d):
    """-> ({module: (A, B, scale)} as float32 tensors, config). Honours r,
    lora_alpha, use_rslora, rank_pattern and alpha_pattern (matched by suffix)."""
    with open(os.path.join(d, "adapter_config.json")) as f:
        cfg = json.load(f)
    tensors, _ = load_safetensors(os.path.join(d, "adapter_model.safetensors"))
    pre = "base_model.model."
    ad = {}
    for key in tensors:
        if not key.endswith(".lora_A.weight"):
            continue
        name = key[len(pre):-len(".lora_A.weight")]
        A = torch.from_numpy(np.asarray(tensors[key], dtype=np.float32))
        B = torch.from_numpy(np.asarray(tensors[pre + name + ".lora_B.weight"], dtype=np.float32))
        r, alpha = cfg["r"], cfg["lora_alpha"]
        for pat, v in (cfg.get("rank_pattern") or {}).items():
            if name == pat or name.endswith("." + pat):
                r = v
        for pat, v in (cfg.get("alpha_pattern") or {}).items():
            if name == pat or name.endswith("." + pat):
                alpha = v
        ad[name] = (A, B, lora_scale(r, alpha, cfg.get("use_rslora", False)))
    return ad, cfg


# ---------------------------------------------------------------------------
# the sequence convention shared with the C backend


def example_ids(bos, in_ids, out_ids, eos):
    """[bos] + input + output + [eos]; the scored positions are output + eos.
    Returns (ids, first scored index)."""
    return [bos] + list(in_ids) + list(out_ids) + [eos], 1 + len(in_ids)


def batch_loss(model, seqs, reduction="mean"):
    """seqs: [(ids, start)]; cross-entropy of ids[start:] given the prefix.
    reduction "mean": mean over all scored tokens of all sequences (lorahub's
    objective); "sum": total; "none": per-sequence mean [n]."""
    T = max(len(s) for s, _ in seqs)
    ids = torch.zeros(len(seqs), T, dtype=torch.long)
    tgt = torch.full((len(seqs), T), -100, dtype=torch.long)
    am = torch.zeros(len(seqs), T)
    for b, (s, st) in enumerate(seqs):
        ids[b, :len(s)] = torch.tensor(s)
        am[b, :len(s)] = 1
        tgt[b, st - 1:len(s) - 1] = torch.tensor(s[st:])
    logits = model(ids, am)
    ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1),
                         ignore_index=-100, reduction="none").view(len(seqs), T)
    n = (tgt != -100).float()
    if reduction == "mean":
        return ce.sum() / n.sum()
    if reduction == "sum":
        return ce.sum()
    return ce.sum(1) / n.sum(1)


@torch.no_grad()
def greedy(model, prefix, eos, max_new=64):
    """Greedy decoding from prefix ids (which start with bos); stops at eos
    (not included) or after max_new tokens. Recomputes the full prefix per step
    (no KV cache: simple and exact)."""
    ids = list(prefix)
    out = []
    for _ in range(max_new):
        logits = model(torch.tensor([ids]))[0, -1]
        t = int(torch.argmax(logits))
        if t == eos:
            break
        out.append(t)
        ids.append(t)
    return out


@torch.no_grad()
def greedy_batch(model, prefixes, eos, max_new=64):
    """Greedy decoding of several prefixes at once (right-padded batch; each
    row's next token is read at its own last position). Same result as greedy()."""
    seqs = [list(p) for p in prefixes]
    outs = [[] for _ in prefixes]
    live = list(range(len(prefixes)))
    for _ in range(max_new):
        if not live:
            break
        T = max(len(seqs[i]) for i in live)
        ids = torch.zeros(len(live), T, dtype=torch.long)
        am = torch.zeros(len(live), T)
        for b, i in enumerate(live):
            ids[b, :len(seqs[i])] = torch.tensor(seqs[i])
            am[b, :len(seqs[i])] = 1
        logits = model(ids, am)
        nxt = []
        for b, i in enumerate(live):
            t = int(torch.argmax(logits[b, len(seqs[i]) - 1]))
            if t == eos:
                continue
            outs[i].append(t)
            seqs[i].append(t)
            nxt.append(i)
        live = nxt
    return outs
