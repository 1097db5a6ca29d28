"""tools/zoo/train.py - training and evaluation for the bundled zoo.

Sequence convention (the C backend uses exactly this):
    ids = [bos] + encode(input) + encode(output) + [eos]
input and output are tokenized separately and concatenated; the loss is the
mean cross-entropy over the output tokens and the eos. Greedy generation
starts after [bos] + encode(input) and stops at eos.
"""

import math
import os
import random
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import llama_torch as lt  # noqa: E402
import tasks as T  # noqa: E402


class Encoded:
    """Caches token ids of example texts."""

    def __init__(self, tok):
        self.tok = tok
        self.cache = {}

    def enc(self, s):
        ids = self.cache.get(s)
        if ids is None:
            ids = self.tok.encode(s)
            if len(self.cache) < 200000:
                self.cache[s] = ids
        return ids

    def seq(self, ex):
        return lt.example_ids(self.tok.bos_id, self.enc(ex["input"]), self.enc(ex["output"]), self.tok.eos_id)

    def prefix(self, ex):
        return [self.tok.bos_id] + self.enc(ex["input"])


def lr_at(step, steps, lr, warmup):
    if step < warmup:
        return lr * (step + 1) / warmup
    p = (step - warmup) / max(1, steps - warmup)
    return lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * p)))


def pretrain(model, enc, task_list, steps, batch, lr, seed, exclude, log, warmup=100):
    """Full-parameter training on a uniform mixture of task_list."""
    torch.manual_seed(seed)
    rng = random.Random(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.98), weight_decay=0.01)
    t0 = time.time()
    run = None
    for step in range(steps):
        seqs = []
        while len(seqs) < batch:
            t = rng.choice(task_list)
            ex = t.example(rng)
            if ex["input"] in exclude:
                continue
            seqs.append(enc.seq(ex))
        for g in opt.param_groups:
            g["lr"] = lr_at(step, steps, lr, warmup)
        loss = lt.batch_loss(model, seqs)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        run = loss.item() if run is None else 0.98 * run + 0.02 * loss.item()
        if step % 200 == 0 or step == steps - 1:
            log("  pretrain step %d/%d loss %.4f (%.0f s)" % (step, steps, run, time.time() - t0))
    return time.time() - t0


def freeze(model):
    for p in model.parameters():
        p.requires_grad_(False)


def train_adapter(model, enc, task, params, set_fn, steps, batch, lr, seed, exclude, log,
                  val=None, check_every=100, target=0.92, warmup=20, other_wording=0.0, keep=None, keep_batch=0):
    """Trains the tensors in params (set_fn() installs the current adapter on
    the model before each forward). Stops early once greedy accuracy on val
    reaches target. other_wording: the share of training examples whose
    instruction line is replaced by a random neutral sentence (tasks.
    neutral_sentence), so that the module carries its skill rather than one
    wording of it, as FLAN's many templates per task do. keep: examples
    (other kinds of input, answered by the base itself) of which keep_batch
    join every batch, so that the adapter leaves the base alone where its
    skill does not apply. Returns (steps run, seconds)."""
    torch.manual_seed(seed)
    rng = random.Random(seed)
    opt = torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.98), weight_decay=0.0)
    t0 = time.time()
    run = None
    step = 0
    for step in range(steps):
        seqs = []
        while len(seqs) < batch:
            ex = task.example(rng)
            if ex["input"] in exclude:
                continue
            if other_wording and rng.random() < other_wording:
                body = ex["input"].split("\n", 1)[1]
                ex = {"input": T.neutral_sentence(rng) + "\n" + body, "output": ex["output"]}
            seqs.append(enc.seq(ex))
        if keep and keep_batch:
            seqs.extend(enc.seq(rng.choice(keep)) for _ in range(keep_batch))
        for g in opt.param_groups:
            g["lr"] = lr_at(step, steps, lr, warmup)
        set_fn()
        loss = lt.batch_loss(model, seqs)
        opt.zero_grad()
        loss.backward()
        opt.step()
        run = loss.item() if run is None else 0.95 * run + 0.05 * loss.item()
        if val is not None and (step + 1) % check_every == 0:
            with torch.no_grad():
                set_fn()
                acc = accuracy(model, enc, val)
            log("    step %d loss %.4f val acc %.2f (%.0f s)" % (step + 1, run, acc, time.time() - t0))
            if acc >= target:
                break
    return step + 1, time.time() - t0


@torch.no_grad()
def generate(model, enc, examples, max_new=None, chunk=64):
    outs = []
    for i in range(0, len(examples), chunk):
        part = examples[i:i + chunk]
        mx = max_new or (max(len(enc.enc(e["output"])) for e in part) + 4)
        ids = lt.greedy_batch(model, [enc.prefix(e) for e in part], enc.tok.eos_id, mx)
        outs.extend(enc.tok.decode(x) for x in ids)
    return outs


def accuracy(model, enc, examples, strict=False):
    """Greedy exact match (normalized: strip, case-fold, no trailing period);
    with strict, returns (normalized, strict) where strict = exact string after strip."""
    outs = generate(model, enc, examples)
    norm = sum(T.normalize(o) == T.normalize(e["output"]) for o, e in zip(outs, examples)) / len(examples)
    if strict:
        return norm, sum(o.strip() == e["output"].strip() for o, e in zip(outs, examples)) / len(examples)
    return norm


@torch.no_grad()
def fewshot_loss(model, enc, examples):
    return lt.batch_loss(model, [enc.seq(e) for e in examples]).item()


# ---------------------------------------------------------------------------
# MoS (Mixture of Shards) with static routing


class MoSRouting:
    """Index tables shared by a family of MoS modules (mos.md §1.4): per type
    t, N = R*L*l shards; public shards [0, P0) with P0 = (R-p)*L*l; layer i's
    private block P0 + i*p*l + arange(p*l) fills its last p ranks."""

    def __init__(self, model, r, l, R, p, seed):
        cfg = model.config
        self.r, self.l, self.R, self.p = r, l, R, p
        self.L = cfg.num_hidden_layers
        self.N = R * self.L * l
        self.P0 = (R - p) * self.L * l
        assert (r - p) * l <= self.P0
        g = torch.Generator().manual_seed(seed)
        self.types = {}
        mods = dict(model.lora_modules())
        for t in lt.LORA_TARGETS:
            sub = "self_attn" if t in ("q_proj", "k_proj", "v_proj", "o_proj") else "mlp"
            lin = mods["model.layers.0.%s.%s" % (sub, t)]
            assert lin.in_features % l == 0 and lin.out_features % l == 0
            self.types[t] = {"d_in": lin.in_features, "d_out": lin.out_features,
                             "module": "model.layers.{i}.%s.%s" % (sub, t)}
        self.idx = {}  # (i, t) -> (idx_A [r, l], idx_B [r, l]) int64
        for i in range(self.L):
            for t in lt.LORA_TARGETS:
                priv = self.P0 + i * p * l + torch.arange(p * l)
                a = torch.cat([torch.randperm(self.P0, generator=g)[:(r - p) * l], priv])
                b = torch.cat([torch.randperm(self.P0, generator=g)[:(r - p) * l], priv])
                self.idx[(i, t)] = (a.view(r, l), b.view(r, l))


class MoSModule:
    def __init__(self, routing, alpha, seed):
        self.rt = routing
        self.alpha = alpha
        g = torch.Generator().manual_seed(seed)
        self.pool_A, self.pool_B = {}, {}
        for t, info in routing.types.items():
            s_in, s_out = info["d_in"] // routing.l, info["d_out"] // routing.l
            bound = 1.0 / math.sqrt(info["d_in"])
            self.pool_A[t] = torch.nn.Parameter((torch.rand(routing.N, s_in, generator=g) * 2 - 1) * bound)
            self.pool_B[t] = torch.nn.Parameter(torch.zeros(routing.N, s_out))

    def params(self):
        return list(self.pool_A.values()) + list(self.pool_B.values())

    def materialize(self):
        """{module: (A [r, d_in], B [d_out, r], alpha/r)}:
        A[j, k*s_in:(k+1)*s_in] = pool_A[idx_A[j,k]]; B[k*s_out+q, j] = pool_B[idx_B[j,k], q]."""
        rt = self.rt
        out = {}
        for (i, t), (ia, ib) in rt.idx.items():
            A = self.pool_A[t][ia].reshape(rt.r, -1)               # [r, l*s_in]
            B = self.pool_B[t][ib].reshape(rt.r, -1).t()           # [l*s_out, r]
            out[rt.types[t]["module"].replace("{i}", str(i))] = (A, B, self.alpha / rt.r)
        return out

    def save(self, path, base_model):
        import json
        rt = self.rt
        tensors = {}
        for t in rt.types:
            tensors["mos.%s.pool_A" % t] = self.pool_A[t].detach().float()
            tensors["mos.%s.pool_B" % t] = self.pool_B[t].detach().float()
        for (i, t), (ia, ib) in rt.idx.items():
            tensors["mos.L%d.%s.idx_A" % (i, t)] = ia.to(torch.int32)
            tensors["mos.L%d.%s.idx_B" % (i, t)] = ib.to(torch.int32)
        cfg = {"format": "mos", "version": 1, "base_model": base_model, "num_layers": rt.L,
               "types": rt.types, "r": rt.r, "l": rt.l, "budget_rank": rt.R, "private_rank": rt.p,
               "pool_public_size": rt.P0, "lora_alpha": self.alpha, "scaling": self.alpha / rt.r,
               "dtype": "F32"}
        lt.save_safetensors(path, tensors, {"mos_config": json.dumps(cfg, separators=(",", ":"))})
