"""tools/zoo/tokenizer.py - a byte-level BPE tokenizer in the Hugging Face
tokenizers format (GPT-2 style), with its trainer and an encoder that follows
HF's BPE exactly:

  1. pre-split the text with GPT-2's regex (ByteLevel pre-tokenizer,
     use_regex true, add_prefix_space false);
  2. map each pre-token's UTF-8 bytes to characters with GPT-2's
     bytes_to_unicode table;
  3. inside each pre-token, repeatedly merge the adjacent pair with the
     lowest merge rank (all its non-overlapping occurrences, left to right)
     until no pair has a rank;
  4. look the pieces up in the vocabulary.

Vocabulary layout of the zoo: ids 0..255 are the 256 byte tokens in byte
order (id = byte value), then one id per merge in rank order, then the
special tokens <s> (bos) and </s> (eos). The trainer never merges two digits,
so numbers stay one token per digit.
"""

import json

import regex

GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
_PRE = regex.compile(GPT2_PATTERN)

BOS, EOS = "<s>", "</s>"


def bytes_to_unicode():
    """GPT-2's reversible map from bytes to printable unicode characters:
    printable Latin-1 bytes map to themselves, the other 68 to U+0100 onwards."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1)) + list(range(0xAE, 0xFF + 1))
    out = {}
    n = 0
    for b in range(256):
        if b in keep:
            out[b] = chr(b)
        else:
            out[b] = chr(256 + n)
            n += 1
    return out


B2U = bytes_to_unicode()
U2B = {v: k for k, v in B2U.items()}


def pretokenize(text):
    return [m.group(0) for m in _PRE.finditer(text)]


def to_units(piece):
    return [B2U[b] for b in piece.encode("utf-8")]


def train_bpe(texts, n_merges):
    """texts: iterable of strings. Returns the merges list [(a, b)] in rank
    order. Ties in pair frequency are broken by the pair itself (lexicographic),
    so training is deterministic."""
    words = {}
    for t in texts:
        for p in pretokenize(t):
            k = tuple(to_units(p))
            words[k] = words.get(k, 0) + 1
    words = [(list(k), c) for k, c in words.items()]
    merges = []
    for _ in range(n_merges):
        counts = {}
        for w, c in words:
            for a, b in zip(w, w[1:]):
                if a.isdigit() and b.isdigit():
                    continue  # keep numbers one digit per token
                counts[(a, b)] = counts.get((a, b), 0) + c
        if not counts:
            break
        best = min(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        if best[1] < 2:
            break
        a, b = best[0]
        merges.append((a, b))
        ab = a + b
        for w, _ in words:
            i = 0
            while i < len(w) - 1:
                if w[i] == a and w[i + 1] == b:
                    w[i:i + 2] = [ab]
                i += 1
    return merges


class Tokenizer:
    def __init__(self, merges):
        self.merges = [tuple(m) for m in merges]
        self.ranks = {m: i for i, m in enumerate(self.merges)}
        self.vocab = {B2U[b]: b for b in range(256)}
        for a, b in self.merges:
            if a + b not in self.vocab:
                self.vocab[a + b] = len(self.vocab)
        self.bos_id = len(self.vocab)
        self.vocab[BOS] = self.bos_id
        self.eos_id = len(self.vocab)
        self.vocab[EOS] = self.eos_id
        self.id_to_token = {i: t for t, i in self.vocab.items()}
        self._cache = {}

    @property
    def vocab_size(self):
        return len(self.vocab)

    def _bpe(self, piece):
        if piece in self._cache:
            return self._cache[piece]
        w = to_units(piece)
        while len(w) > 1:
            best = None
            for a, b in zip(w, w[1:]):
                r = self.ranks.get((a, b))
                if r is not None and (best is None or r < best[0]):
                    best = (r, a, b)
            if best is None:
                break
            _, a, b = best
            out = []
            i = 0
            while i < len(w):
                if i < len(w) - 1 and w[i] == a and w[i + 1] == b:
                    out.append(a + b)
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            w = out
        ids = [self.vocab[u] for u in w]
        self._cache[piece] = ids
        return ids

    def encode(self, text):
        """No bos/eos; special tokens in text are NOT recognised (the zoo's
        texts never contain them)."""
        ids = []
        for p in pretokenize(text):
            ids.extend(self._bpe(p))
        return ids

    def decode(self, ids, skip_special=True):
        bs = bytearray()
        for i in ids:
            t = self.id_to_token[int(i)]
            if t in (BOS, EOS):
                if skip_special:
                    continue
                bs.extend(t.encode("utf-8"))
                continue
            bs.extend(U2B[u] for u in t)
        return bs.decode("utf-8", errors="replace")

    def to_json(self):
        added = [{"id": self.vocab[t], "content": t, "single_word": False, "lstrip": False,
                  "rstrip": False, "normalized": False, "special": True} for t in (BOS, EOS)]
        return {
            "version": "1.0",
            "truncation": None,
            "padding": None,
            "added_tokens": added,
            "normalizer": None,
            "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                              "use_regex": True},
            "post_processor": None,
            "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                        "use_regex": True},
            "model": {
                "type": "BPE",
                "dropout": None,
                "unk_token": None,
                "continuing_subword_prefix": None,
                "end_of_word_suffix": None,
                "fuse_unk": False,
                "byte_fallback": False,
                "ignore_merges": False,
                "vocab": dict(sorted(self.vocab.items(), key=lambda kv: kv[1])),
                "merges": ["%s %s" % m for m in self.merges],
            },
        }

    def save(self, path):
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.to_json(), f, ensure_ascii=False, indent=1)
            f.write("\n")

    @classmethod
    def load(cls, path):
        with open(path, encoding="utf-8") as f:
            j = json.load(f)
        merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in j["model"]["merges"]]
        tok = cls(merges)
        if tok.vocab != j["model"]["vocab"]:
            raise ValueError("%s: vocabulary is not the zoo layout" % path)
        return tok
