"""tools/zoo_t5/spm_export.py - trains the T5 zoo's Unigram tokenizer with
Debian's python3-sentencepiece and writes it as the tokenizer.json that the
tokenizers library's T5 converter writes for Flan-T5 (the layout of
/work/shared/data/flan-t5-tokenizer/tokenizer.json):

  added_tokens    <pad> = 0, </s> = 1, <unk> = 2 (special, not normalized)
  normalizer      Sequence[Precompiled{the model's precompiled_charsmap},
                           Replace(" {2,}" -> " ")]
  pre_tokenizer   Metaspace(replacement "▁", prepend_scheme always, split)
  model           Unigram(vocab = [[piece, score]...] in id order, unk_id 2)
  post_processor  TemplateProcessing: $A </s>
  decoder         Metaspace

The .model file is a protobuf (sentencepiece_model.proto); Debian ships no
protobuf runtime for python3-sentencepiece's generated module, so the few
fields needed are read here by hand: ModelProto.pieces (1) = {piece (1),
score (2), type (3)} and ModelProto.normalizer_spec (3).precompiled_charsmap (2).
"""

import base64
import io
import json
import struct

import sentencepiece as spm

PAD, EOS, UNK = 0, 1, 2


def _varint(b, i):
    x = s = 0
    while True:
        c = b[i]
        i += 1
        x |= (c & 0x7F) << s
        s += 7
        if c < 0x80:
            return x, i


def _fields(b):
    """(field number, wire type, value) of a protobuf message; value is an int
    (varint), bytes (length-delimited) or 4/8 raw bytes."""
    i = 0
    while i < len(b):
        key, i = _varint(b, i)
        f, wt = key >> 3, key & 7
        if wt == 0:
            v, i = _varint(b, i)
        elif wt == 2:
            n, i = _varint(b, i)
            v, i = b[i:i + n], i + n
        elif wt == 5:
            v, i = b[i:i + 4], i + 4
        elif wt == 1:
            v, i = b[i:i + 8], i + 8
        else:
            raise ValueError("sentencepiece model: wire type %d not expected" % wt)
        yield f, wt, v


def read_model(blob):
    """([(piece, score, type)], precompiled_charsmap bytes) of a .model blob."""
    pieces, charsmap = [], b""
    for f, _, v in _fields(blob):
        if f == 1:
            piece, score, typ = "", 0.0, 1
            for g, _, w in _fields(v):
                if g == 1:
                    piece = w.decode("utf-8")
                elif g == 2:
                    score = struct.unpack("<f", w)[0]
                elif g == 3:
                    typ = w
            pieces.append((piece, score, typ))
        elif f == 3:
            for g, _, w in _fields(v):
                if g == 2:
                    charsmap = bytes(w)
    return pieces, charsmap


def train(sentences, vocab_size):
    """Trains a Unigram model (T5's special ids, nmt_nfkc normalization) on
    sentences; returns the serialized .model."""
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences), model_writer=buf, model_type="unigram",
        vocab_size=vocab_size, pad_id=PAD, eos_id=EOS, unk_id=UNK, bos_id=-1,
        character_coverage=1.0, normalization_rule_name="nmt_nfkc", num_threads=1,
        split_digits=True, hard_vocab_limit=False, minloglevel=2)
    return buf.getvalue()


def tokenizer_json(blob):
    pieces, charsmap = read_model(blob)
    assert [p for p, _, _ in pieces[:3]] == ["<pad>", "</s>", "<unk>"], pieces[:3]
    special = ["<pad>", "</s>", "<unk>"]
    meta = {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always", "split": True}
    return {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": [{"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
                          "normalized": False, "special": True} for i, t in enumerate(special)],
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Precompiled", "precompiled_charsmap": base64.b64encode(charsmap).decode("ascii")},
            {"type": "Replace", "pattern": {"Regex": " {2,}"}, "content": " "}]},
        "pre_tokenizer": meta,
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "</s>", "type_id": 0}}],
            "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "</s>", "type_id": 0}},
                     {"Sequence": {"id": "B", "type_id": 0}}, {"SpecialToken": {"id": "</s>", "type_id": 0}}],
            "special_tokens": {"</s>": {"id": "</s>", "ids": [EOS], "tokens": ["</s>"]}}},
        "decoder": meta,
        "model": {"type": "Unigram", "unk_id": UNK,
                  "vocab": [[p, 0.0 if t != 1 else s] for p, s, t in pieces], "byte_fallback": False},
    }


def save(blob, model_path, json_path):
    with open(model_path, "wb") as f:
        f.write(blob)
    with open(json_path, "w", encoding="utf-8") as f:
        json.dump(tokenizer_json(blob), f, ensure_ascii=False)
        f.write("\n")


class Tok:
    """sentencepiece on the .model: ids without </s>, and decoding."""

    def __init__(self, blob):
        self.sp = spm.SentencePieceProcessor(model_proto=blob)
        self.vocab_size = self.sp.get_piece_size()
        self.cache = {}

    def encode(self, s):
        ids = self.cache.get(s)
        if ids is None:
            ids = self.sp.encode(s)
            self.cache[s] = ids
        return ids

    def decode(self, ids):
        return self.sp.decode([i for i in ids if i > UNK])
