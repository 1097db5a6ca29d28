#!/usr/bin/python3
"""Build the tokenizer fixtures under tests/fixtures/tokenizers/.

Trains a few small BPE tokenizers on the mixed-language text below, writes
them in Hugging Face tokenizer.json format, and records the token ids and
decodings that tools/tokenizer_reference.py (an independent Python
implementation of the same semantics) gives for a list of test strings.
tests/check_tokenizer.c checks the C tokenizer against these files.

    /usr/bin/python3 tools/make_tokenizer_fixtures.py [--zoo examples/zoo/base/tokenizer.json]

--zoo also snapshots that tokenizer (zoo-base.tokenizer.json) with its cases.

Deterministic: same input, same output.
"""
import collections
import json
import os
import sys

import regex

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tokenizer_reference as ref  # noqa: E402

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(TOP, "tests", "fixtures", "tokenizers")

LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                  r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")

QWEN2_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
                 r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")

CORPUS = """\
The quick brown fox jumps over the lazy dog. The dog did not mind; it was asleep.
A LoRA module adds a low-rank update to the weights of a frozen model, and the
hub composes several modules with weights found by a gradient-free optimizer.
We're testing the tokenizer: it's fine, they'll see, I've checked, you'd agree.
Numbers: 0 1 2 3 4 5 6 7 8 9 10 42 100 1234 2024 3.14159 -17 +8 1e-5 65536.
Code: for (int i = 0; i < n; i++) { sum += x[i] * w[i]; } return sum;
def encode(text): return [vocab[t] for t in text.split()]  # comment
Le café est très bon, la crème brûlée aussi. Où est la bibliothèque ? Déjà vu.
Der Bär läuft über die Straße. Größe, Fähre, schön, müde, Äpfel und Öl.
El niño comió piñata en la mañana. ¿Dónde está el baño? ¡Olé!
日本語の文章を書きます。東京は大きな都市です。中文也可以：你好，世界！
Привет, как дела? Это тест токенизатора. Ελληνικά: καλημέρα κόσμε.
Emoji: 😀 😃 🎉 👍 🚀 and tabs\tbetween\twords, new
lines, and    runs of    spaces.
The the THE tHe; the theory of the thermal thesis; there, then, these, those.
lower lowest newer newest wider widest slower slowest token tokens tokenize tokenizer.
""" * 2

STRINGS = [
    "",
    "a",
    "Hello, world!",
    "The quick brown fox jumps over the lazy dog.",
    "café naïve résumé Ångström crème brûlée",
    "日本語のテキスト、中文字符。",
    "emoji 😀 family 👨\u200d👩\u200d👧\u200d👦 flag 🇫🇷 thumbs 👍🏽",
    "  leading and trailing spaces   ",
    "tabs\tand\nnewlines\r\n\n end",
    "digits 1234567890 and 3.14159, 007",
    "I'm sure they'll've done it, isn't it? WE'RE HERE, YOU'D SEE",
    "supercalifragilisticexpialidocious" * 3,
    "x=1; y = f(x)**2 // comment\n\tif (a&&b) { return; }",
    "\u00a0nbsp and \u3000 ideographic space",
    "lorahub tokenizer lorahub",
    "    ",
    "\n\n\n",
    "Ж ж ζ λ ∑ ∫ → ™ © ½",
    "x\u00b2y \u24b6b c\u203fd e\u0301f g\u200dh i\u2160j",
    "odd spaces: a\u0085b\u2028c\u000bd\u001ce\u200bf\u1680g\u2009h",
    "a <mask> b <mask>c [SEP]  z [SEP]",
    "x tokenizer y xtokenizer tokenizer_ tokenizer. tokenizers",
    "tokenizer\u0301 tokenizer\u24b6 \u0301tokenizer tokenizer\u00b2 tokenizer\u200d 2tokenizer",
    "Hello<|endoftext|>world<|endoftext|><|endoftext|>",
    "<s><s></s> <unk>",
    "don't DON'T ſ 'S 'sup 123456789 ٣٤٥ ①②",
    # not in NFC: combining marks, reordering, singletons, Hangul jamo
    "cafe\u0301 e\u0301\u0327 \u212b \u1100\u1161\u11a8 \uf900 Tie\u0302\u0301ng Vie\u0323\u0302t",
    "नमस्ते क़ ख़ूब สวัสดี่ مُحَمَّد",
]


def special_strings(specials):
    a, b = specials[0], specials[1]
    return [
        a + "Hello" + b,
        "text " + a + " more " + b + b + " end",
        "partial <|begin <s and " + a[:-1] + " not special",
        a,
    ]


# --- training ----------------------------------------------------------------

def count_pairs(words):
    pairs = collections.Counter()
    for w, c in words.items():
        for i in range(len(w) - 1):
            pairs[(w[i], w[i + 1])] += c
    return pairs


def learn_merges(words, n_merges):
    """Classic BPE: repeatedly merge the most frequent pair (ties: smallest pair)."""
    words = dict(words)
    merges = []
    for _ in range(n_merges):
        pairs = count_pairs(words)
        if not pairs:
            break
        best = min(pairs.items(), key=lambda kv: (-kv[1], kv[0]))
        if best[1] < 2:
            break
        a, b = best[0]
        merges.append((a, b))
        new = {}
        for w, c in words.items():
            out = []
            i = 0
            while i < len(w):
                if i + 1 < len(w) and w[i] == a and w[i + 1] == b:
                    out.append(a + b)
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            t = tuple(out)
            new[t] = new.get(t, 0) + c
        words = new
    return merges


def byte_level_words(pattern):
    words = collections.Counter()
    for m in regex.finditer(pattern, CORPUS):
        words[tuple(ref.to_byte_chars(m.group(0)))] += 1
    return words


def byte_level_vocab(merges, extra_words=()):
    vocab = {}
    for b in range(256):
        vocab[ref.BYTE_TO_CHAR[b]] = len(vocab)
    for a, b in merges:
        if a + b not in vocab:
            vocab[a + b] = len(vocab)
    # Whole words that no merge builds: only ignore_merges can emit them.
    for w in extra_words:
        vocab.setdefault(w, len(vocab))
    return vocab


def added(content, id_, special=True, **kw):
    d = {"id": id_, "content": content, "single_word": False, "lstrip": False,
         "rstrip": False, "normalized": not special, "special": special}
    d.update(kw)
    return d


def llama3_style():
    merges = learn_merges(byte_level_words(LLAMA3_PATTERN), 320)
    vocab = byte_level_vocab(merges, [ref.to_byte_chars(" lorahub"), ref.to_byte_chars("lorahub")])
    names = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>",
             "<|end_header_id|>", "<|eot_id|>"]
    n = len(vocab)
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [added(s, n + i) for i, s in enumerate(names)],
        "normalizer": None,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": LLAMA3_PATTERN}, "behavior": "Isolated",
             "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
             "use_regex": False}]},
        "post_processor": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False,
                           "use_regex": True},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                    "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None,
                  "continuing_subword_prefix": None, "end_of_word_suffix": None,
                  "fuse_unk": False, "byte_fallback": False, "ignore_merges": True,
                  "vocab": vocab, "merges": [[a, b] for a, b in merges]},
    }, names


def gpt2_style():
    merges = learn_merges(byte_level_words(ref.GPT2_PATTERN), 300)
    vocab = byte_level_vocab(merges)
    n = len(vocab)
    toks = [added("<|endoftext|>", n), added("<mask>", n + 1, lstrip=True),
            added("tokenizer", n + 2, special=False, single_word=True),
            added("[SEP]", n + 3, rstrip=True)]
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": toks,
        "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                          "use_regex": True},
        "post_processor": None,
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                    "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None,
                  "continuing_subword_prefix": "", "end_of_word_suffix": "",
                  "fuse_unk": False, "byte_fallback": False,
                  "vocab": vocab, "merges": ["%s %s" % (a, b) for a, b in merges]},
    }, ["<|endoftext|>", "<mask>", "[SEP]"]


def sp_vocab_and_merges():
    text = "\u2581" + CORPUS.replace(" ", "\u2581")
    chars = collections.Counter(text)
    # Rare characters (emoji, most CJK) stay out, so byte_fallback is exercised.
    kept = sorted((c for c, k in chars.items() if k >= 4 and c not in "\n\t"),
                  key=lambda c: (-chars[c], c))
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for b in range(256):
        vocab["<0x%02X>" % b] = len(vocab)
    for c in kept:
        vocab[c] = len(vocab)
    words = collections.Counter()
    for w in regex.findall(r"\u2581?[^\u2581]+|\u2581", text):
        if all(c in vocab for c in w):
            words[tuple(w)] += 1
    merges = learn_merges(words, 300)
    for a, b in merges:
        vocab.setdefault(a + b, len(vocab))
    return vocab, merges


SP_DECODER = {"type": "Sequence", "decoders": [
    {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
    {"type": "ByteFallback"}, {"type": "Fuse"},
    {"type": "Strip", "content": " ", "start": 1, "stop": 0}]}


def sp_added():
    return [added("<unk>", 0), added("<s>", 1), added("</s>", 2)]


def llama2_style():
    vocab, merges = sp_vocab_and_merges()
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": sp_added(),
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": "\u2581"},
            {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]},
        "pre_tokenizer": None,
        "post_processor": {"type": "TemplateProcessing",
                           "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                                      {"Sequence": {"id": "A", "type_id": 0}}],
                           "pair": [], "special_tokens": {}},
        "decoder": SP_DECODER,
        "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>",
                  "continuing_subword_prefix": None, "end_of_word_suffix": None,
                  "fuse_unk": True, "byte_fallback": True,
                  "vocab": vocab, "merges": ["%s %s" % (a, b) for a, b in merges]},
    }, ["<s>", "</s>"]


def metaspace_style():
    vocab, merges = sp_vocab_and_merges()
    return {
        "version": "1.0",
        "added_tokens": sp_added(),
        "normalizer": None,
        "pre_tokenizer": {"type": "Metaspace", "replacement": "\u2581",
                          "prepend_scheme": "first", "split": True},
        "post_processor": None,
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "ByteFallback"},
            {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "first",
             "split": True}]},
        "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>",
                  "fuse_unk": True, "byte_fallback": True,
                  "vocab": vocab, "merges": [[a, b] for a, b in merges]},
    }, ["<s>", "</s>"]


def tiny_unk():
    """Characters outside a-z, digits and some punctuation become <unk>;
    exercises Split(invert, Removed), Split with \\w, Digits (Contiguous),
    Punctuation (MergedWithPrevious), no byte fallback and no decoder."""
    vocab = {"<unk>": 0, "<pad>": 1}
    for c in "abcdefghijklmnopqrstuvwxyz0123456789.,!?;:'":
        vocab[c] = len(vocab)
    words = collections.Counter(tuple(w) for w in regex.findall(r"[a-z]+", CORPUS.lower()))
    merges = learn_merges(words, 60)
    for a, b in merges:
        vocab.setdefault(a + b, len(vocab))
    return {
        "version": "1.0",
        "added_tokens": [added("<unk>", 0), added("<pad>", 1)],
        "normalizer": None,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": r"\S+"}, "behavior": "Removed", "invert": True},
            {"type": "Split", "pattern": {"Regex": r"\w+|[^\w\s]+"}, "behavior": "Isolated",
             "invert": False},
            {"type": "Digits", "individual_digits": False},
            {"type": "Punctuation", "behavior": "MergedWithPrevious"}]},
        "post_processor": None,
        "decoder": None,
        "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>", "fuse_unk": False,
                  "byte_fallback": False, "vocab": vocab,
                  "merges": ["%s %s" % (a, b) for a, b in merges]},
    }, ["<pad>", "<unk>"]


def qwen2_style():
    merges = learn_merges(byte_level_words(QWEN2_PATTERN), 300)
    vocab = byte_level_vocab(merges)
    names = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    n = len(vocab)
    return {
        "version": "1.0",
        "added_tokens": [added(s, n + i) for i, s in enumerate(names)],
        "normalizer": {"type": "NFC"},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": QWEN2_PATTERN}, "behavior": "Isolated",
             "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False,
             "use_regex": False}]},
        "post_processor": None,
        "decoder": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False,
                    "use_regex": False},
        "model": {"type": "BPE", "dropout": None, "unk_token": None,
                  "continuing_subword_prefix": "", "end_of_word_suffix": "",
                  "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": vocab, "merges": [[a, b] for a, b in merges]},
    }, names


def write_fixture(name, spec, specials, tok_path=None):
    if tok_path is None:
        tok_path = os.path.join(OUT, name + ".tokenizer.json")
        with open(tok_path, "w", encoding="utf-8") as f:
            json.dump(spec, f, ensure_ascii=False, separators=(",", ":"))
            f.write("\n")
    tok = ref.Tokenizer(tok_path)
    cases = []
    for s in STRINGS + special_strings(specials):
        ids = tok.encode(s, allow_special=True)
        ids_plain = tok.encode(s, allow_special=False)
        dec = tok.decode(ids, skip_special=False)
        case = {"text": s, "ids": ids, "decoded": dec,
                "decoded_skip_special": tok.decode(ids, skip_special=True),
                "lossless": dec == s}
        if ids_plain != ids:
            case["ids_no_special"] = ids_plain
        cases.append(case)
    exp = {"tokenizer": os.path.relpath(tok_path, OUT),
           "generated_by": "tools/make_tokenizer_fixtures.py via tools/tokenizer_reference.py",
           "cases": cases}
    with open(os.path.join(OUT, name + ".expected.json"), "w", encoding="utf-8") as f:
        json.dump(exp, f, ensure_ascii=False, indent=0)
        f.write("\n")


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, fn in [("llama3-style", llama3_style), ("gpt2-style", gpt2_style),
                     ("llama2-style", llama2_style), ("metaspace-style", metaspace_style),
                     ("qwen2-style", qwen2_style),
                     ("tiny-unk", tiny_unk)]:
        spec, specials = fn()
        write_fixture(name, spec, specials)
    if len(sys.argv) == 3 and sys.argv[1] == "--zoo":
        zoo = sys.argv[2]
        with open(zoo, encoding="utf-8") as f:
            spec = json.load(f)
        specials = [a["content"] for a in spec.get("added_tokens", []) if a.get("special")]
        specials = (specials + ["<|endoftext|>", "<|endoftext|>"])[:2]
        # A snapshot, so the fixture stays valid if the zoo is rebuilt.
        write_fixture("zoo-base", spec, specials)


if __name__ == "__main__":
    main()
