#!/usr/bin/python3
"""Developer-time reference for Hugging Face tokenizer.json BPE semantics.

A deliberately plain Python re-implementation (no HF tokenizers library is
available here), used ONLY to produce the fixtures under
tests/fixtures/tokenizers/ that tests/check_tokenizer.c compares the C
tokenizer (model/tokenizer/) against.  It favours obviousness
over speed: BPE merges by rescanning every adjacent pair, added tokens by
trying every token at every position.

Covered: BPE model (vocab, merges in "a b" and [a, b] form, ignore_merges,
byte_fallback, unk_token, fuse_unk); normalizers Sequence, Prepend, Replace
(String pattern), NFC; pre-tokenizers Sequence, ByteLevel, Split (Regex or
String pattern, all behaviours, invert), Metaspace, Digits, Punctuation;
decoders Sequence, ByteLevel, Metaspace, Replace, ByteFallback, Fuse, Strip;
added tokens with lstrip/rstrip/single_word/normalized/special.

Usage as a tool:  tokenizer_reference.py tokenizer.json "text"  -> ids
"""
import json
import sys
import unicodedata

import regex

GPT2_PATTERN = (r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+"
                r"|\s+(?!\S)|\s+")


# Oniguruma (which runs the library's Split regexes) reads \w as Letter,
# Mark, Number or Connector_Punctuation; the regex module's \w differs (No,
# Other_Alphabetic, Join_Control), so patterns are rewritten before use.
# Its \s already is Unicode White_Space, as in Oniguruma.
ONIG_WORD = r"\p{L}\p{M}\p{N}\p{Pc}"


def onig_pattern(p):
    out = []
    i = 0
    in_class = False
    while i < len(p):
        c = p[i]
        if c == "\\" and i + 1 < len(p):
            d = p[i + 1]
            if d == "w":
                out.append(ONIG_WORD if in_class else "[" + ONIG_WORD + "]")
            elif d == "W" and not in_class:
                out.append("[^" + ONIG_WORD + "]")
            else:
                out.append(p[i:i + 2])
            i += 2
            continue
        if not in_class and c == "[":
            j = i + 1
            if j < len(p) and p[j] == "^":
                j += 1
            if j < len(p) and p[j] == "]":
                j += 1
            out.append(p[i:j])
            in_class = True
            i = j
            continue
        if in_class and c == "]":
            in_class = False
        out.append(c)
        i += 1
    return "".join(out)


class Unsupported(Exception):
    pass


def bytes_to_unicode():
    """GPT-2's byte -> printable character table."""
    keep = (list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1))
            + list(range(0xAE, 0xFF + 1)))
    table = {}
    extra = 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


BYTE_TO_CHAR = bytes_to_unicode()
CHAR_TO_BYTE = {c: b for b, c in BYTE_TO_CHAR.items()}


# --- splitting ---------------------------------------------------------------

def regex_matches(pattern, text):
    """[(start, end, is_match)] covering text, like HF's Pattern::find_matches."""
    if text == "":
        return [(0, 0, False)]
    out = []
    prev = 0
    pos = 0
    # Search again after each match; an empty match still cuts the text and
    # the search moves on one character (as Oniguruma's iterator does).
    while pos <= len(text):
        m = pattern.search(text, pos)
        if m is None:
            break
        s, e = m.span()
        if s != prev:
            out.append((prev, s, False))
        out.append((s, e, True))
        prev = e
        pos = e if e > s else s + 1
    if prev != len(text):
        out.append((prev, len(text), False))
    return out


def literal_matches(needle, text):
    if needle == "":
        return [(0, len(text), False)]
    return regex_matches(regex.compile(regex.escape(needle)), text)


def apply_behavior(matches, behavior):
    """Turn matches into the list of kept (start, end) spans."""
    spans = []  # [start, end, remove]
    if behavior == "Isolated":
        spans = [[s, e, False] for s, e, _ in matches]
    elif behavior == "Removed":
        spans = [[s, e, m] for s, e, m in matches]
    elif behavior == "Contiguous":
        prev = False
        for s, e, m in matches:
            if m == prev and spans:
                spans[-1][1] = e
            else:
                spans.append([s, e, False])
            prev = m
    elif behavior == "MergedWithPrevious":
        prev = False
        for s, e, m in matches:
            if m and not prev and spans:
                spans[-1][1] = e
            else:
                spans.append([s, e, False])
            prev = m
    elif behavior == "MergedWithNext":
        prev = False
        for s, e, m in reversed(matches):
            if m and not prev and spans:
                spans[-1][0] = s
            else:
                spans.append([s, e, False])
            prev = m
        spans.reverse()
    else:
        raise Unsupported("split behavior '%s'" % behavior)
    return [(s, e) for s, e, r in spans if not r and e > s]


# --- components --------------------------------------------------------------

class Piece:
    """A substring under processing; orig0 says it starts the original text."""
    def __init__(self, text, orig0):
        self.text = text
        self.orig0 = orig0


def split_piece(piece, matches, behavior):
    out = []
    for s, e in apply_behavior(matches, behavior):
        out.append(Piece(piece.text[s:e], piece.orig0 and s == 0))
    return out


class _Steps:
    """A component that may be a "Sequence" of others: their steps, flattened
    in order. Subclasses name the Sequence's list key and add one step."""
    SEQUENCE_KEY = None

    def __init__(self, spec):
        self.steps = []
        self._add(spec)

    def _add(self, spec):
        if spec is None:
            return
        t = spec.get("type")
        if t == "Sequence":
            for sub in spec[self.SEQUENCE_KEY]:
                self._add(sub)
        else:
            self._add_one(t, spec)


def metaspace_scheme(spec):
    """prepend_scheme, or what the legacy add_prefix_space meant."""
    scheme = spec.get("prepend_scheme")
    if scheme is None:
        scheme = "always" if spec.get("add_prefix_space", True) else "never"
    return scheme


class Normalizer(_Steps):
    SEQUENCE_KEY = "normalizers"

    def _add_one(self, t, spec):
        if t == "Prepend":
            self.steps.append(("prepend", spec["prepend"]))
        elif t == "Replace":
            pat = spec["pattern"]
            if "String" not in pat:
                raise Unsupported("normalizer 'Replace' with a Regex pattern")
            self.steps.append(("replace", pat["String"], spec["content"]))
        elif t == "NFC":
            self.steps.append(("nfc",))
        else:
            raise Unsupported("normalizer '%s'" % t)

    def __call__(self, s):
        for st in self.steps:
            if st[0] == "prepend":
                if s:
                    s = st[1] + s
            elif st[0] == "replace":
                s = s.replace(st[1], st[2])
            elif st[0] == "nfc":
                s = unicodedata.normalize("NFC", s)
        return s


def to_byte_chars(s):
    return "".join(BYTE_TO_CHAR[b] for b in s.encode("utf-8"))


class PreTokenizer(_Steps):
    SEQUENCE_KEY = "pretokenizers"

    def _add_one(self, t, spec):
        if t == "ByteLevel":
            self.steps.append(("bytelevel", spec.get("add_prefix_space", True),
                               spec.get("use_regex", True)))
        elif t == "Split":
            pat = spec["pattern"]
            if "Regex" in pat:
                matcher = ("regex", regex.compile(onig_pattern(pat["Regex"])))
            else:
                matcher = ("string", pat["String"])
            self.steps.append(("split", matcher, spec["behavior"], spec.get("invert", False)))
        elif t == "Metaspace":
            scheme = metaspace_scheme(spec)
            self.steps.append(("metaspace", spec.get("replacement", "\u2581"), scheme,
                               spec.get("split", True)))
        elif t == "Digits":
            self.steps.append(("split", ("regex", regex.compile(r"\p{N}")),
                               "Isolated" if spec.get("individual_digits") else "Contiguous",
                               False))
        elif t == "Punctuation":
            self.steps.append(("split", ("regex", regex.compile(
                r"[\p{P}!-/:-@\[-`{-~]")), spec.get("behavior", "Isolated"), False))
        else:
            raise Unsupported("pre-tokenizer '%s'" % t)

    def __call__(self, pieces):
        for st in self.steps:
            out = []
            for p in pieces:
                out.extend(self._one(st, p))
            pieces = out
        return pieces

    def _one(self, st, p):
        kind = st[0]
        if kind == "bytelevel":
            _, prefix, use_regex = st
            text = p.text
            if prefix and not text.startswith(" "):
                text = " " + text
            q = Piece(text, p.orig0)
            if use_regex:
                subs = split_piece(q, regex_matches(regex.compile(GPT2_PATTERN), text), "Isolated")
            else:
                subs = [q] if text else []
            return [Piece(to_byte_chars(s.text), s.orig0) for s in subs]
        if kind == "split":
            _, (mk, m), behavior, invert = st
            ms = regex_matches(m, p.text) if mk == "regex" else literal_matches(m, p.text)
            if invert:
                ms = [(s, e, not x) for s, e, x in ms]
            return split_piece(p, ms, behavior)
        if kind == "metaspace":
            _, rep, scheme, do_split = st
            text = p.text.replace(" ", rep)
            if not text.startswith(rep) and (scheme == "always" or
                                             (scheme == "first" and p.orig0)):
                text = rep + text
            q = Piece(text, p.orig0)
            if not do_split:
                return [q] if text else []
            return split_piece(q, literal_matches(rep, text), "MergedWithNext")
        raise AssertionError(kind)


class BPE:
    def __init__(self, spec):
        if spec.get("type", "BPE") != "BPE":
            raise Unsupported("model '%s'" % spec.get("type"))
        for k in ("continuing_subword_prefix", "end_of_word_suffix"):
            if spec.get(k):
                raise Unsupported("BPE %s" % k)
        if spec.get("dropout"):
            raise Unsupported("BPE dropout")
        self.vocab = dict(spec["vocab"])
        self.id_to_tok = {i: t for t, i in self.vocab.items()}
        self.ranks = {}
        for rank, m in enumerate(spec.get("merges", [])):
            if isinstance(m, str):
                parts = m.split(" ")
                if len(parts) != 2:
                    raise ValueError("bad merge %r" % m)
                a, b = parts
            else:
                a, b = m
            self.ranks[(self.vocab[a], self.vocab[b])] = (rank, self.vocab[a + b])
        self.byte_fallback = bool(spec.get("byte_fallback", False))
        self.ignore_merges = bool(spec.get("ignore_merges", False))
        self.fuse_unk = bool(spec.get("fuse_unk", False))
        self.unk = spec.get("unk_token")

    def tokenize(self, word):
        if self.ignore_merges and word in self.vocab:
            return [self.vocab[word]]
        syms = []
        pending_unk = False
        for ch in word:
            if ch in self.vocab:
                pending_unk = False
                syms.append(self.vocab[ch])
                continue
            if self.byte_fallback:
                names = ["<0x%02X>" % b for b in ch.encode("utf-8")]
                if all(n in self.vocab for n in names):
                    pending_unk = False
                    syms.extend(self.vocab[n] for n in names)
                    continue
            if self.unk is not None:
                if not (pending_unk and self.fuse_unk):
                    syms.append(self.vocab[self.unk])
                pending_unk = True
        while len(syms) > 1:
            best = None
            for i in range(len(syms) - 1):
                r = self.ranks.get((syms[i], syms[i + 1]))
                if r is not None and (best is None or r[0] < best[0]):
                    best = (r[0], i, r[1])
            if best is None:
                break
            _, i, new = best
            syms[i:i + 2] = [new]
        return syms


class Decoder(_Steps):
    SEQUENCE_KEY = "decoders"

    def __init__(self, spec):
        self.none = spec is None
        super().__init__(spec)

    def _add_one(self, t, spec):
        if t == "ByteLevel":
            self.steps.append(("bytelevel",))
        elif t == "Metaspace":
            scheme = metaspace_scheme(spec)
            self.steps.append(("metaspace", spec.get("replacement", "\u2581"), scheme))
        elif t == "Replace":
            if "String" not in spec["pattern"]:
                raise Unsupported("decoder 'Replace' with a Regex pattern")
            self.steps.append(("replace", spec["pattern"]["String"], spec["content"]))
        elif t == "ByteFallback":
            self.steps.append(("bytefallback",))
        elif t == "Fuse":
            self.steps.append(("fuse",))
        elif t == "Strip":
            self.steps.append(("strip", spec["content"], spec["start"], spec["stop"]))
        else:
            raise Unsupported("decoder '%s'" % t)

    def __call__(self, toks):
        if self.none:
            return " ".join(toks)
        for st in self.steps:
            k = st[0]
            if k == "bytelevel":
                data = bytearray()
                for t in toks:
                    if all(c in CHAR_TO_BYTE for c in t):
                        data.extend(CHAR_TO_BYTE[c] for c in t)
                    else:
                        data.extend(t.encode("utf-8"))
                toks = [data.decode("utf-8", errors="replace")]
            elif k == "metaspace":
                _, rep, scheme = st
                out = []
                for i, t in enumerate(toks):
                    if i == 0 and scheme != "never":
                        out.append(t.replace(rep, ""))
                    else:
                        out.append(t.replace(rep, " "))
                toks = out
            elif k == "replace":
                toks = [t.replace(st[1], st[2]) for t in toks]
            elif k == "bytefallback":
                out = []
                pend = []

                def flush():
                    if pend:
                        try:
                            out.append(bytes(pend).decode("utf-8"))
                        except UnicodeDecodeError:
                            out.extend(["\ufffd"] * len(pend))
                        pend.clear()
                for t in toks:
                    if (len(t) == 6 and t.startswith("<0x") and t.endswith(">")
                            and all(c in "0123456789abcdefABCDEF" for c in t[3:5])):
                        pend.append(int(t[3:5], 16))
                    else:
                        flush()
                        out.append(t)
                flush()
                toks = out
            elif k == "fuse":
                toks = ["".join(toks)]
            elif k == "strip":
                _, content, start, stop = st
                out = []
                for t in toks:
                    a, b = 0, len(t)
                    for i in range(min(start, len(t))):
                        if t[i] == content:
                            a = i + 1
                        else:
                            break
                    for i in range(min(stop, len(t))):
                        j = len(t) - i - 1
                        if j >= a and t[j] == content:
                            b = j
                        else:
                            break
                    out.append(t[a:b])
                toks = out
        return "".join(toks)


# What \w and \s mean in the Rust regex crate the library uses here.
WORD = regex.compile(r"[\p{Alphabetic}\p{M}\p{Nd}\p{Pc}\p{Join_Control}]")
SPACE = regex.compile(r"\p{White_Space}")


class Tokenizer:
    def __init__(self, path):
        with open(path, encoding="utf-8") as f:
            spec = json.load(f)
        self.normalizer = Normalizer(spec.get("normalizer"))
        self.has_normalizer = spec.get("normalizer") is not None
        self.pre = PreTokenizer(spec.get("pre_tokenizer"))
        self.model = BPE(spec["model"])
        self.decoder = Decoder(spec.get("decoder"))
        self.added = []
        for a in spec.get("added_tokens", []):
            self.added.append(dict(a))
        self.added_by_id = {a["id"]: a for a in self.added}

    # Added tokens: at each position, the longest token wins (leftmost-longest).
    def _split_added(self, piece, tokens, key, allow_special):
        text = piece.text
        out = []
        start_offset = 0
        pos = 0
        while pos < len(text):
            best = None
            for a in tokens:
                c = a[key]
                if c and text.startswith(c, pos) and (best is None or len(c) > len(best[key])):
                    best = a
            if best is None:
                pos += 1
                continue
            s, e = pos, pos + len(best[key])
            pos = e
            if best.get("special") and not allow_special:
                continue
            if best.get("single_word"):
                left_ok = s == 0 or not WORD.match(text[s - 1])
                right_ok = e == len(text) or not WORD.match(text[e])
                if not (left_ok and right_ok):
                    continue
            if best.get("lstrip"):
                ns = s
                while ns > 0 and SPACE.match(text[ns - 1]):
                    ns -= 1
                s = max(ns, start_offset)
            if best.get("rstrip"):
                while e < len(text) and SPACE.match(text[e]):
                    e += 1
                pos = e
            if start_offset < s:
                out.append((Piece(text[start_offset:s], piece.orig0 and start_offset == 0), None))
            out.append((None, best["id"]))
            start_offset = e
        if start_offset < len(text):
            out.append((Piece(text[start_offset:], piece.orig0 and start_offset == 0), None))
        return out

    def encode(self, text, allow_special=True):
        # Non-normalized tokens match the raw text first; normalized ones
        # (compared in their normalized form) then match each normalized piece.
        raw = [dict(a, ncontent=a["content"]) for a in self.added if not a.get("normalized")]
        norm = [dict(a, ncontent=self.normalizer(a["content"])) for a in self.added
                if a.get("normalized")]
        segs = self._split_added(Piece(text, True), raw, "ncontent", allow_special)
        segs2 = []
        for p, tid in segs:
            if p is None:
                segs2.append((None, tid))
                continue
            q = Piece(self.normalizer(p.text), p.orig0)
            segs2.extend(self._split_added(q, norm, "ncontent", allow_special))
        ids = []
        for p, tid in segs2:
            if p is None:
                ids.append(tid)
                continue
            for w in self.pre([p]):
                ids.extend(self.model.tokenize(w.text))
        return ids

    def decode(self, ids, skip_special=False):
        toks = []
        for i in ids:
            if i in self.added_by_id:
                a = self.added_by_id[i]
                if skip_special and a.get("special"):
                    continue
                toks.append(a["content"])
            elif i in self.model.id_to_tok:
                toks.append(self.model.id_to_tok[i])
        return self.decoder(toks)


if __name__ == "__main__":
    tok = Tokenizer(sys.argv[1])
    ids = tok.encode(sys.argv[2])
    print(ids)
    print(repr(tok.decode(ids)))
