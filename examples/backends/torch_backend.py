#!/usr/bin/python3
"""A lorahub exec backend (protocol 1, lorahub-backend(7)) running a PyTorch
forward pass: tools/llama_torch.py, an independent re-implementation of
Hugging Face's LlamaForCausalLM with LoRA side paths.

It follows the same sequence convention as the native backend, so the two
can be compared on the same inputs (tests/check_native.c does):
    ids = [bos] + encode(input) + encode(output) + [eos]
the loss is the mean cross-entropy over all output tokens (+eos) of all
examples, generation is greedy from [bos] + encode(input).

Tokenizer: byte-level BPE from tokenizer.json (GPT-2 byte map, merges by
rank, the GPT-2 pre-split regex when the `regex` module is present).
Other tokenizers are refused.

Usage: torch_backend.py --base DIR [--no-bos] [--no-eos]
Needs torch and numpy (/usr/bin/python3 on the development machine).
"""
import json
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools"))
import llama_torch as lt  # noqa: E402
from tokenizer_reference import bytes_to_unicode  # noqa: E402

torch.set_num_threads(1)

GPT2_SPLIT = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


class ByteLevelBPE:
    def __init__(self, path):
        with open(path, encoding="utf-8") as f:
            tj = json.load(f)
        model = tj.get("model") or {}
        pre = tj.get("pre_tokenizer") or {}
        if model.get("type") != "BPE" or pre.get("type") != "ByteLevel":
            raise ValueError("%s: only byte-level BPE tokenizers are supported here" % path)
        self.vocab = model["vocab"]
        self.inv = {i: t for t, i in self.vocab.items()}
        merges = model.get("merges") or []
        self.ranks = {}
        for i, m in enumerate(merges):
            pair = tuple(m.split(" ")) if isinstance(m, str) else tuple(m)
            self.ranks[pair] = i
        self.special = {t["id"] for t in tj.get("added_tokens") or [] if t.get("special")}
        self.b2u = bytes_to_unicode()
        self.u2b = {c: b for b, c in self.b2u.items()}
        try:
            import regex
            self.split = regex.compile(GPT2_SPLIT).findall if pre.get("use_regex", True) else None
        except ImportError:
            self.split = None

    def _bpe(self, word):
        parts = list(word)
        while len(parts) > 1:
            best = None
            for i in range(len(parts) - 1):
                r = self.ranks.get((parts[i], parts[i + 1]))
                if r is not None and (best is None or r < best[0]):
                    best = (r, i)
            if best is None:
                break
            i = best[1]
            parts[i:i + 2] = [parts[i] + parts[i + 1]]
        return [self.vocab[p] for p in parts]

    def encode(self, text):
        chunks = self.split(text) if self.split else ([text] if text else [])
        ids = []
        for c in chunks:
            ids += self._bpe("".join(self.b2u[b] for b in c.encode("utf-8")))
        return ids

    def decode(self, ids):
        bs = bytearray()
        for i in ids:
            if i in self.special:
                continue
            bs += bytes(self.u2b[ch] for ch in self.inv[i])
        return bs.decode("utf-8", errors="replace")


def read_examples(path):
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                o = json.loads(line)
                out.append((o.get("input", o.get("context")), o.get("output", o.get("completion"))))
    return out


class Backend:
    def __init__(self, base, add_bos, add_eos):
        self.model = lt.LlamaForCausalLM.from_pretrained(base)
        self.tok = ByteLevelBPE(os.path.join(base, "tokenizer.json"))
        cfg = self.model.config
        self.bos = cfg.bos_token_id if add_bos else None
        eos = cfg.eos_token_id
        self.eos_set = set(eos) if isinstance(eos, list) else {eos}
        self.eos = eos[0] if isinstance(eos, list) else eos
        self.add_eos = add_eos
        self.cache = {}

    def examples(self, path):
        if path not in self.cache:
            ex = []
            for i, o in read_examples(path):
                ex.append((self.tok.encode(i), self.tok.encode(o)))
            self.cache[path] = ex
        return self.cache[path]

    def set_adapter(self, d):
        if d is None:
            self.model.clear_lora()
        else:
            ad, _ = lt.load_peft(d)
            self.model.set_lora(ad)

    @torch.no_grad()
    def score(self, path, adapters):
        seqs = []
        for i, o in self.examples(path):
            ids = ([self.bos] if self.bos is not None else []) + i + o
            if self.add_eos:
                ids.append(self.eos)
            start = len(ids) - len(o) - (1 if self.add_eos else 0)
            seqs.append((ids, max(start, 1)))
        out = []
        for d in adapters:
            self.set_adapter(d)
            out.append(float(lt.batch_loss(self.model, seqs)))
        return out

    @torch.no_grad()
    def generate(self, path, adapter, max_new):
        self.set_adapter(adapter)
        outs = []
        for i, _ in self.examples(path):
            ids = ([self.bos] if self.bos is not None else []) + i
            gen = []
            for _ in range(max_new):
                t = int(torch.argmax(self.model(torch.tensor([ids]))[0, -1]))
                if t in self.eos_set:
                    break
                gen.append(t)
                ids.append(t)
            outs.append(self.tok.decode(gen))
        return outs


def main():
    args = sys.argv[1:]
    base, add_bos, add_eos = None, True, True
    while args:
        a = args.pop(0)
        if a == "--base" and args:
            base = args.pop(0)
        elif a == "--no-bos":
            add_bos = False
        elif a == "--no-eos":
            add_eos = False
        else:
            sys.stderr.write("usage: torch_backend.py --base DIR [--no-bos] [--no-eos]\n")
            return 2
    if not base:
        sys.stderr.write("torch_backend.py: --base DIR is required\n")
        return 2
    be = Backend(base, add_bos, add_eos)
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            req = json.loads(line)
            op = req.get("op")
            if op == "hello":
                rep = {"ok": True, "protocol": 1, "name": "torch-llama"}
            elif op == "score":
                rep = {"ok": True, "loss": be.score(req["examples"], req["adapters"])}
            elif op == "generate":
                rep = {"ok": True, "outputs": be.generate(req["examples"], req.get("adapter"),
                                                          int(req["max_new_tokens"]))}
            elif op == "bye":
                sys.stdout.write('{"ok":true}\n')
                sys.stdout.flush()
                return 0
            else:
                rep = {"ok": False, "error": "unsupported"}
        except Exception as e:  # report, keep serving
            rep = {"ok": False, "error": "%s: %s" % (type(e).__name__, e)}
        sys.stdout.write(json.dumps(rep) + "\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
