#!/usr/bin/python3
"""Build tests/fixtures/tokenizers/flan-t5/cases.json: Flan-T5's token ids
for a few thousand strings, from sentencepiece (Debian's
python3-sentencepiece) on the real spiece.model, the independent reference
for the C Unigram tokenizer (tests/check_unigram.c).

    apt-get install -y python3-sentencepiece
    /usr/bin/python3 tools/make_unigram_fixture.py [DIR]

DIR holds spiece.model and tokenizer.json (default
/work/shared/data/flan-t5-tokenizer). Deterministic: same input, same output.

Each case records
  text            the string
  ids             what lorahub (as the tokenizers library reading
                  tokenizer.json) gives with special tokens matched and the
                  post-processor's </s> appended
  ids_no_special  the same with special tokens taken as text and no </s>
                  (present only where it differs from ids minus the </s>)
  spm             sentencepiece's own ids, present only where they differ
                  from ids_no_special
  decoded         sentencepiece's decoding of ids_no_special (absent when
                  those hold <unk>, which sentencepiece writes as " ⁇ ")
  hf_norm_differs the library's grapheme-cluster Precompiled normalizer and
                  sentencepiece's longest-match one give different text here
                  (lorahub follows sentencepiece; see lorahub-tokenize(1))

How ids are derived from sentencepiece, per the tokenizer.json pipeline:
the text is cut at added tokens (leftmost, longest; all of Flan-T5's are
special, normalized=false, no strip), each remaining piece is encoded by
sentencepiece on its own, and a piece whose normalized form ends in a space
gets one more "▁" (id 3): sentencepiece drops trailing whitespace, the
library's Replace(" {2,}", " ") + Metaspace keeps it as a last word "▁".
Everything else, the charsmap normalization and the Viterbi segmentation
with its unknown handling, is sentencepiece's. tools/unigram_crosscheck.mjs
checks that layout against tokenizers.js, Hugging Face's JavaScript port.
"""
import base64
import json
import os
import random
import struct
import sys

import regex
import sentencepiece as spm

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(TOP, "tests", "fixtures", "tokenizers", "flan-t5", "cases.json")
SRC = sys.argv[1] if len(sys.argv) > 1 else "/work/shared/data/flan-t5-tokenizer"

sp = spm.SentencePieceProcessor(model_file=os.path.join(SRC, "spiece.model"))
TJ = json.load(open(os.path.join(SRC, "tokenizer.json"), encoding="utf-8"))
ADDED = {a["content"]: a["id"] for a in TJ["added_tokens"]}
assert all(a["special"] and not a["normalized"] and not a["lstrip"] and not a["rstrip"]
           for a in TJ["added_tokens"])
EOS = ADDED["</s>"]
META = sp.piece_to_id("\u2581")
UNK = sp.unk_id()


def split_added(text):
    """(segment, None) and (None, id) items, added tokens cut leftmost-longest."""
    out, start, i = [], 0, 0
    by_len = sorted(ADDED, key=len, reverse=True)
    while i < len(text):
        hit = next((a for a in by_len if text.startswith(a, i)), None)
        if hit is None:
            i += 1
            continue
        if start < i:
            out.append((text[start:i], None))
        out.append((None, ADDED[hit]))
        i += len(hit)
        start = i
    if start < len(text):
        out.append((text[start:], None))
    return out


def ends_in_space(seg):
    """Whether seg's charsmap normalization ends in a space: "Y" + seg + "Z"
    then ends in a new word "▁Z" (sentencepiece strips trailing spaces, so it
    cannot be asked directly; the "Y" keeps an empty normalization from
    looking like one that is all space)."""
    if not seg:
        return False
    return "".join(sp.encode("Y" + seg + "Z", out_type=str)).endswith("\u2581Z")


def encode_segment(seg):
    ids = sp.encode(seg)
    if ends_in_space(seg):
        ids = ids + [META]
    return ids


def lorahub_ids(text, special):
    if not special:
        return encode_segment(text)
    ids = []
    for seg, tok in split_added(text):
        ids += [tok] if seg is None else encode_segment(seg)
    return ids


# ---- the library's Precompiled normalizer, to find where it differs ----

def load_charsmap():
    norms = TJ["normalizer"]["normalizers"]
    blob = base64.b64decode(next(n for n in norms if n["type"] == "Precompiled")["precompiled_charsmap"])
    n = struct.unpack("<I", blob[:4])[0]
    return struct.unpack("<%dI" % (n // 4), blob[4:4 + n]), blob[4 + n:]


UNITS, POOL = load_charsmap()


def prefix_matches(key):
    """[(length, replacement)] of every trie key that prefixes key (bytes)."""
    def off(u):
        return (u >> 10) << ((u & (1 << 9)) >> 6)
    p, res = off(UNITS[0]), []
    for i, c in enumerate(key):
        p ^= c
        if p >= len(UNITS) or (UNITS[p] & 0x800000FF) != c:
            break
        u = UNITS[p]
        p ^= off(u)
        if (u >> 8) & 1:
            v = UNITS[p] & 0x7FFFFFFF
            res.append((i + 1, POOL[v:POOL.index(0, v)].decode("utf-8")))
    return res


def norm_longest(text):
    b, out, i = text.encode("utf-8"), [], 0
    while i < len(b):
        m = prefix_matches(b[i:])
        if m:
            out.append(m[-1][1])
            i += m[-1][0]
        else:
            ch = b[i:].decode("utf-8", "ignore")[:1] or b[i:i + 1].decode("utf-8", "replace")
            out.append(ch)
            i += len(ch.encode("utf-8"))
    return "".join(out)


def norm_hf(text):
    """tokenizers' Precompiled: by extended grapheme cluster, the first
    (shortest) match replaces a cluster under 6 bytes; else per code point."""
    out = []
    for g in regex.findall(r"\X", text):
        gb = g.encode("utf-8")
        if len(gb) < 6:
            m = prefix_matches(gb)
            if m:
                out.append(m[0][1])
                continue
        for c in g:
            m = prefix_matches(c.encode("utf-8"))
            out.append(m[0][1] if m else c)
    return "".join(out)


# ---- the strings ----

WORDS = ("the quick brown fox jumps over lazy dog a LoRA module adds low-rank update to weights of "
         "frozen model and hub composes several modules with found by gradient-free optimizer "
         "question answer premise hypothesis translate summarize sentiment positive negative neutral "
         "Paris London Tokyo Berlin New York what is who when where why how don't can't it's "
         "they'll I've 1 2 3 10 42 100 2024 3.14 -7 +8 1e-5 50% $12.50 #hashtag @user e-mail "
         "http://example.com/path?q=1 foo_bar CamelCase snake_case UPPER lower (parens) [brackets] "
         "{braces} <angle> \"quotes\" 'single' ... ; : ! ? , .").split()
ACCENTED = ("café naïve résumé Ångström crème brûlée façade jalapeño über Straße Größe Fähre "
            "déjà señor São Paulo Zürich Kraków Dvořák Łódź İstanbul ğüşıöç Ærø Þór ñandú "
            "Việt Nam tiếng Việt Ελληνικά καλημέρα Привет мир Українська עברית العربية हिन्दी "
            "ภาษาไทย ქართული Հայերեն").split()
NFKC = ("Ｈｅｌｌｏ ＷＯＲＬＤ １２３４ ｆｕｌｌ－ｗｉｄｔｈ ！？ ﬁne ﬂow ﬀ ﬃ ﬄ ﬅ ﬆ x² H₂O ½ ¼ ¾ ① ② ⑩ Ⅻ ⅷ "
        "™ ℃ ℉ № ㎏ ㎞ ㍻ ｶﾀｶﾅ ﾊﾝｶｸ ㌀ ㈱ µ Å K ǅ ĳ ŉ ſ ẛ ︙ ﹏ ＿ ～ ￥ ￡ ℌ 𝐀𝐁𝐂 𝔘𝔫𝔦 𝟙𝟚 "
        "e\u0301 a\u0308 n\u0303 o\u0302\u0323 A\u030a \u1100\u1161\u11a8 \u00a8 \u00b4 \u02dc").split()
CJK = ("日本語の文章を書きます 東京は大きな都市です 中文也可以 你好世界 한국어 텍스트 안녕하세요 "
       "ひらがな カタカナ 漢字 简体中文 繁體中文 「引用」 『二重』 、。・ 〜 ー").split()
EMOJI = ["😀", "😃", "🎉", "👍", "🚀", "👍🏽", "👨\u200d👩\u200d👧\u200d👦", "🇫🇷", "🇯🇵", "❤️", "☃", "✨",
         "🏳️\u200d🌈", "1️⃣", "©️", "🤖", "🧑🏿\u200d💻", "👋🏻"]
SPACES = [" ", "  ", "   ", "\t", "\n", "\r\n", "\n\n", " \t ", "\u00a0", "\u3000", "\u2009", "\u200b",
          "\u2028", "\x0b", "\x0c", "\u0085", "\u1680", "\u202f", "\ufeff"]
SPECIAL = ["<extra_id_0>", "<extra_id_1>", "<extra_id_17>", "<extra_id_99>", "</s>", "<pad>", "<unk>",
           "<extra_id_100>", "<extra_id_>", "</s", "<s>", "<extra_id_0", "extra_id_0>"]

HAND = [
    "", " ", "a", "A", "Hello", "Hello ", " Hello", "  Hello  ", "Hello, world!", "Hello world",
    "The quick brown fox jumps over the lazy dog.", "tabs\tand\nnewlines\r\n\n end",
    "  leading and trailing spaces   ", "\t\t", "\n", "    ", "a  b   c    d", "a \t b",
    "digits 1234567890 and 3.14159, 007", "supercalifragilisticexpialidocious" * 3,
    "x=1; y = f(x)**2 // comment\n\tif (a&&b) { return; }", "{ } < > ~ ^ ` \\ |",
    "translate English to German: How old are you?", "summarize: studies have shown that owning a dog is good for you",
    "Question: What is the capital of France?\nAnswer:", "Premise: A man is playing.\nHypothesis: Someone plays.\n",
    "<extra_id_0> is <extra_id_1> of <extra_id_2>", "Hello <extra_id_0> world", "Hello<extra_id_0>world",
    "a</s>b", "</s></s>", "</s> </s>", "<pad><unk></s>", " <extra_id_0> ", "<extra_id_0>", "<extra_id_00>",
    "<extra_id_0><extra_id_1>", "<extra_id_0> <extra_id_1>", "x <unk> y", "<<extra_id_5>>",
    "ﬁ ﬂ ﬀ ﬃ", "Ｈｅｌｌｏ　Ｗｏｒｌｄ", "１２３", "x²+y²=z²", "e\u0301", "Ａ\u0301", "ﬁ\u0301", "a\u0301\u0302",
    "\u1100\u1161\u11a8", "각", "😀😀😀", "👨\u200d👩\u200d👧", "🇫🇷🇯🇵", "☃☃ x", "a▁b", "▁", "▁▁ a", "▁hello",
    "\u200b", "a\u200bb", "\ufeffBOM", "\u00adsoft\u00adhyphen", "\x01\x02\x03 ctrl", "\x7f", "a\x1fb",
    "\U0010fffd private", "\ue000", "\U0001f9ff", "\ufffd", "I'm sure they'll've done it, isn't it?",
]


def rand_unicode(rng, n):
    out = []
    for _ in range(n):
        r = rng.random()
        if r < 0.5:
            cp = rng.randrange(0x20, 0x3000)
        elif r < 0.8:
            cp = rng.randrange(0x3000, 0x10000)
        else:
            cp = rng.randrange(0x10000, 0x30000)
        if 0xD800 <= cp <= 0xDFFF:
            cp = 0x41
        out.append(chr(cp))
    return "".join(out)


def make_strings():
    rng = random.Random(20231006)
    pools = [WORDS, ACCENTED, NFKC, CJK, EMOJI]
    out = list(HAND)

    def sentence(pool_weights, n):
        parts = []
        for _ in range(n):
            pool = rng.choices(pools, pool_weights)[0]
            parts.append(rng.choice(pool))
            parts.append(rng.choice(SPACES) if rng.random() < 0.15 else " ")
        if parts and rng.random() < 0.6:
            parts.pop()
        return "".join(parts)

    for _ in range(500):   # mostly English
        out.append(sentence([20, 2, 1, 1, 1], rng.randrange(1, 14)))
    for _ in range(250):   # accents and scripts
        out.append(sentence([4, 10, 1, 1, 1], rng.randrange(1, 10)))
    for _ in range(250):   # NFKC cases
        out.append(sentence([3, 1, 10, 1, 1], rng.randrange(1, 8)))
    for _ in range(150):   # CJK
        out.append(sentence([1, 1, 1, 10, 1], rng.randrange(1, 6)).replace(" ", rng.choice(["", " ", "\u3000"])))
    for _ in range(100):   # emoji
        out.append(sentence([5, 1, 1, 1, 8], rng.randrange(1, 8)))
    for _ in range(100):   # digits
        out.append(" ".join(str(rng.randrange(10 ** rng.randrange(1, 12))) + rng.choice(["", ".", ",", "%", ".5"])
                            for _ in range(rng.randrange(1, 6))))
    for _ in range(150):   # whitespace runs, leading and trailing
        out.append(rng.choice(SPACES) * rng.randrange(0, 3) + sentence([10, 2, 2, 1, 1], rng.randrange(1, 6))
                   + rng.choice(SPACES) * rng.randrange(0, 4))
    for _ in range(200):   # special tokens in text
        parts = [sentence([10, 2, 2, 1, 1], rng.randrange(0, 4)) for _ in range(3)]
        s = ""
        for p in parts:
            s += p + rng.choice(["", " "]) + rng.choice(SPECIAL) + rng.choice(["", " "])
        out.append(s)
    for _ in range(60):    # long words
        letters = "abcdefghijklmnopqrstuvwxyzéü" if rng.random() < 0.7 else "漢字かなカナ한국"
        out.append("".join(rng.choice(letters) for _ in range(rng.randrange(40, 300))))
    for _ in range(250):   # random unicode
        out.append(rand_unicode(rng, rng.randrange(1, 25)))
    seen, uniq = set(), []
    for s in out:
        if "\x00" not in s and s not in seen:
            seen.add(s)
            uniq.append(s)
    return uniq


def main():
    strings = make_strings()
    cases = []
    for text in strings:
        ids_ns = lorahub_ids(text, False)
        ids = lorahub_ids(text, True) + [EOS]
        c = {"text": text, "ids": ids}
        if ids_ns != ids[:-1]:
            c["ids_no_special"] = ids_ns
        spm_ids = sp.encode(text)
        if spm_ids != ids_ns:
            c["spm"] = spm_ids
        if UNK not in ids_ns:
            c["decoded"] = sp.decode(ids_ns)
        if norm_hf(text) != norm_longest(text):
            c["hf_norm_differs"] = True
        cases.append(c)
    doc = {
        "about": "Flan-T5 ids from sentencepiece (tools/make_unigram_fixture.py); tokenizer: tokenizer.json beside",
        "sentencepiece": spm.__version__,
        "cases": cases,
    }
    with open(OUT, "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")
    n_sp = sum("spm" in c for c in cases)
    n_hf = sum("hf_norm_differs" in c for c in cases)
    n_dec = sum("decoded" in c and c["decoded"] == c["text"] for c in cases)
    print(f"{OUT}: {len(cases)} cases, {n_sp} where sentencepiece alone differs, "
          f"{n_hf} where the library's normalizer would differ, {n_dec} decode back to the text")


if __name__ == "__main__":
    main()
