"""tools/zoo_t5/t5train.py - a batched, trainable float32 T5 v1.1 (Flan-T5
architecture) for building the T5 zoo, with PEFT seq2seq LoRA side paths.

The semantics are tools/t5_torch.py's (written from transformers'
modeling_t5.py): T5LayerNorm, no 1/sqrt(d_kv), relative position bias of
block 0 shared by the stack, gated-gelu (gelu_new), untied lm_head without
rescale, cross-attention on the final-normed encoder output. That module is
the unbatched float64 reference; the build checks this one against it on the
saved base and a saved module (build.py, check_against_reference).

Sequences, as lorahub's native T5 path scores them: encoder ids =
encode(input) + [</s>]; labels = encode(output) + [</s>]; decoder input =
[decoder_start = 0] + labels[:-1]; loss = mean cross-entropy over the label
tokens (all logits rows). Greedy generation starts from [0], stops at </s>.
"""

import math
import random
import time

import torch
import torch.nn.functional as F

PAD, EOS, START = 0, 1, 0


def bucket_table(n, bidirectional, num_buckets, max_distance):
    """[n, n] bucket of (key - query) as HF's _relative_position_bucket."""
    ctx = torch.arange(n)[:, None]
    mem = torch.arange(n)[None, :]
    rel = mem - ctx
    b = torch.zeros_like(rel)
    nb = num_buckets
    if bidirectional:
        nb //= 2
        b += (rel > 0).long() * nb
        rel = rel.abs()
    else:
        rel = -torch.clamp(rel, max=0)
    exact = nb // 2
    large = exact + (torch.log(rel.float().clamp(min=1) / exact) / math.log(max_distance / exact)
                     * (nb - exact)).long()
    large = torch.clamp(large, max=nb - 1)
    return b + torch.where(rel < exact, rel, large)


def linear_names(cfg):
    """(module name, d_in, d_out) of every linear layer, HF names."""
    D, I, Fd = cfg["d_model"], cfg["num_heads"] * cfg["d_kv"], cfg["d_ff"]
    out = []
    for stack, n, atts in (("encoder", cfg["num_layers"], ["SelfAttention"]),
                           ("decoder", cfg["num_decoder_layers"], ["SelfAttention", "EncDecAttention"])):
        for b in range(n):
            for j, a in enumerate(atts):
                for p in "qkvo":
                    out.append(("%s.block.%d.layer.%d.%s.%s" % (stack, b, j, a, p),
                                D if p != "o" else I, I if p != "o" else D))
            j = len(atts)
            for w in ("wi_0", "wi_1"):
                out.append(("%s.block.%d.layer.%d.DenseReluDense.%s" % (stack, b, j, w), D, Fd))
            out.append(("%s.block.%d.layer.%d.DenseReluDense.wo" % (stack, b, j), Fd, D))
    return out


class T5:
    def __init__(self, cfg, sd=None, seed=0):
        self.cfg = cfg
        if sd is None:
            sd = self.init(seed)
        self.p = {k: torch.as_tensor(v, dtype=torch.float32).clone() for k, v in sd.items()}
        self.lora = {}   # module name -> (A [r, in], B [out, r], scale)
        self._buckets = {}

    def init(self, seed):
        """T5's initialization scales (modeling_t5.py _init_weights, factor 1)."""
        c = self.cfg
        g = torch.Generator().manual_seed(seed)
        D, H, dk, Fd, V = c["d_model"], c["num_heads"], c["d_kv"], c["d_ff"], c["vocab_size"]

        def rnd(*shape, std):
            return torch.randn(*shape, generator=g) * std
        sd = {"shared.weight": rnd(V, D, std=1.0), "lm_head.weight": rnd(V, D, std=D ** -0.5)}
        for name, din, dout in linear_names(c):
            p = name.rsplit(".", 1)[1]
            std = {"q": (D * dk) ** -0.5, "o": (H * dk) ** -0.5, "wo": Fd ** -0.5}.get(p, D ** -0.5)
            sd[name + ".weight"] = rnd(dout, din, std=std)
        for stack, n, k in (("encoder", c["num_layers"], 2), ("decoder", c["num_decoder_layers"], 3)):
            sd[stack + ".block.0.layer.0.SelfAttention.relative_attention_bias.weight"] = \
                rnd(c["relative_attention_num_buckets"], H, std=D ** -0.5)
            for b in range(n):
                for j in range(k):
                    sd["%s.block.%d.layer.%d.layer_norm.weight" % (stack, b, j)] = torch.ones(D)
            sd[stack + ".final_layer_norm.weight"] = torch.ones(D)
        return sd

    def parameters(self):
        return list(self.p.values())

    def state_dict(self):
        return {k: v.detach().clone() for k, v in self.p.items()}

    # -- blocks ---------------------------------------------------------------

    def lin(self, name, x):
        y = x @ self.p[name + ".weight"].t()
        ad = self.lora.get(name)
        if ad is not None:
            A, B, s = ad
            y = y + s * ((x @ A.t()) @ B.t())
        return y

    def norm(self, name, x):
        var = (x * x).mean(-1, keepdim=True)
        return self.p[name + ".weight"] * (x * torch.rsqrt(var + self.cfg["layer_norm_epsilon"]))

    def bias(self, stack, n):
        key = (stack, n)
        if key not in self._buckets:
            c = self.cfg
            self._buckets[key] = bucket_table(n, stack == "encoder", c["relative_attention_num_buckets"],
                                              c["relative_attention_max_distance"])
        table = self.p[stack + ".block.0.layer.0.SelfAttention.relative_attention_bias.weight"]
        return table[self._buckets[key]].permute(2, 0, 1).unsqueeze(0)  # [1, H, n, n]

    def attention(self, pre, xq, xkv, add):
        """xq [B, Tq, D], xkv [B, Tk, D], add broadcastable to [B, H, Tq, Tk]."""
        c = self.cfg
        B, Tq, _ = xq.shape
        Tk = xkv.shape[1]
        H, dk = c["num_heads"], c["d_kv"]
        q = self.lin(pre + ".q", xq).view(B, Tq, H, dk).transpose(1, 2)
        k = self.lin(pre + ".k", xkv).view(B, Tk, H, dk).transpose(1, 2)
        v = self.lin(pre + ".v", xkv).view(B, Tk, H, dk).transpose(1, 2)
        s = q @ k.transpose(2, 3) + add
        o = (torch.softmax(s, -1) @ v).transpose(1, 2).reshape(B, Tq, H * dk)
        return self.lin(pre + ".o", o)

    def ffn(self, pre, x):
        g = F.gelu(self.lin(pre + ".wi_0", x), approximate="tanh")
        return self.lin(pre + ".wo", g * self.lin(pre + ".wi_1", x))

    # -- stacks ---------------------------------------------------------------

    def encode(self, src, smask):
        """src [B, S] ids, smask [B, S] bool -> [B, S, D] final-normed."""
        h = self.p["shared.weight"][src]
        pad = (~smask)[:, None, None, :].float() * -1e9
        add = self.bias("encoder", src.shape[1]) + pad
        for i in range(self.cfg["num_layers"]):
            p = "encoder.block.%d." % i
            x = self.norm(p + "layer.0.layer_norm", h)
            h = h + self.attention(p + "layer.0.SelfAttention", x, x, add)
            h = h + self.ffn(p + "layer.1.DenseReluDense", self.norm(p + "layer.1.layer_norm", h))
        return self.norm("encoder.final_layer_norm", h)

    def decode(self, enc, smask, dec):
        """Logits [B, T, V] of the decoder reading dec [B, T]."""
        T = dec.shape[1]
        h = self.p["shared.weight"][dec]
        causal = torch.full((T, T), -1e9).triu(1)
        add = self.bias("decoder", T) + causal
        cross = (~smask)[:, None, None, :].float() * -1e9
        for i in range(self.cfg["num_decoder_layers"]):
            p = "decoder.block.%d." % i
            x = self.norm(p + "layer.0.layer_norm", h)
            h = h + self.attention(p + "layer.0.SelfAttention", x, x, add)
            x = self.norm(p + "layer.1.layer_norm", h)
            h = h + self.attention(p + "layer.1.EncDecAttention", x, enc, cross)
            h = h + self.ffn(p + "layer.2.DenseReluDense", self.norm(p + "layer.2.layer_norm", h))
        h = self.norm("decoder.final_layer_norm", h)
        return h @ self.p["lm_head.weight"].t()


# ---------------------------------------------------------------------------
# batches


def pad(rows, value):
    n = max(len(r) for r in rows)
    return torch.tensor([r + [value] * (n - len(r)) for r in rows], dtype=torch.long)


def batch(tok, examples):
    """(src [B,S], smask [B,S], dec_in [B,T], labels [B,T] with -100 at padding)."""
    srcs = [tok.encode(e["input"]) + [EOS] for e in examples]
    tgts = [tok.encode(e["output"]) + [EOS] for e in examples]
    src = pad(srcs, PAD)
    smask = pad([[1] * len(s) for s in srcs], 0).bool()
    labels = pad(tgts, -100)
    dec = pad([[START] + t[:-1] for t in tgts], PAD)
    return src, smask, dec, labels


def loss_of(model, tok, examples):
    """Mean cross-entropy over every label token of the batch (lorahub's loss:
    total nll / scored tokens)."""
    src, smask, dec, labels = batch(tok, examples)
    logits = model.decode(model.encode(src, smask), smask, dec)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100)


@torch.no_grad()
def greedy(model, tok, examples, max_new=None, chunk=100):
    outs = []
    for i in range(0, len(examples), chunk):
        part = examples[i:i + chunk]
        mx = max_new or (max(len(tok.encode(e["output"])) for e in part) + 4)
        srcs = [tok.encode(e["input"]) + [EOS] for e in part]
        src = pad(srcs, PAD)
        smask = pad([[1] * len(s) for s in srcs], 0).bool()
        enc = model.encode(src, smask)
        dec = torch.full((len(part), 1), START, dtype=torch.long)
        done = torch.zeros(len(part), dtype=torch.bool)
        gen = [[] for _ in part]
        for _ in range(mx):
            nxt = model.decode(enc, smask, dec)[:, -1].argmax(-1)
            for j in range(len(part)):
                if not done[j]:
                    if int(nxt[j]) == EOS:
                        done[j] = True
                    else:
                        gen[j].append(int(nxt[j]))
            if bool(done.all()):
                break
            dec = torch.cat([dec, nxt[:, None]], 1)
        outs.extend(tok.decode(g) for g in gen)
    return outs


def accuracy(model, tok, examples, normalize, strict=False):
    outs = greedy(model, tok, examples)
    norm = sum(normalize(o) == normalize(e["output"]) for o, e in zip(outs, examples)) / len(examples)
    if strict:
        return norm, sum(o.strip() == e["output"].strip() for o, e in zip(outs, examples)) / len(examples)
    return norm


# ---------------------------------------------------------------------------
# training


def lr_at(step, steps, lr, warmup):
    if step < warmup:
        return lr * (step + 1) / warmup
    p = (step - warmup) / max(1, steps - warmup)
    return lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * p)))


def draw(rng, task_list, n, exclude, reword=None, reword_share=0.0):
    out = []
    while len(out) < n:
        t = rng.choice(task_list)
        ex = t.example(rng)
        if ex["input"] in exclude:
            continue
        if reword_share and rng.random() < reword_share:
            ex = {"input": reword(rng) + "\n" + ex["input"].split("\n", 1)[1], "output": ex["output"]}
        out.append(ex)
    return out


def train(model, tok, params, task_list, steps, bsz, lr, seed, exclude, log, warmup=100,
          set_fn=None, val=None, normalize=None, target=None, check_every=100, reword=None,
          reword_share=0.0, weight_decay=0.0, clip=1.0):
    """AdamW on params over a uniform mixture of task_list; with val, stops
    once greedy accuracy on val reaches target. Returns (steps, seconds)."""
    torch.manual_seed(seed)
    rng = random.Random(seed)
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.98), weight_decay=weight_decay)
    t0 = time.time()
    run = None
    step = 0
    for step in range(steps):
        exs = draw(rng, task_list, bsz, exclude, reword, reword_share)
        for g in opt.param_groups:
            g["lr"] = lr_at(step, steps, lr, warmup)
        if set_fn:
            set_fn()
        loss = loss_of(model, tok, exs)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, clip)
        opt.step()
        run = loss.item() if run is None else 0.95 * run + 0.05 * loss.item()
        if (step + 1) % check_every == 0 or step == steps - 1:
            msg = "    step %d/%d loss %.4f (%.0f s)" % (step + 1, steps, run, time.time() - t0)
            if val is not None:
                with torch.no_grad():
                    acc = accuracy(model, tok, val, normalize)
                log(msg + " val acc %.2f" % acc)
                if target is not None and acc >= target:
                    break
            else:
                log(msg)
    for p in params:
        p.requires_grad_(False)
    return step + 1, time.time() - t0
