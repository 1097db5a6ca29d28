#!/usr/bin/python3
"""tools/make_torch_fixtures.py - torch.save files for tests/check_torchzip.c.

Developer-time only: needs Debian's python3-torch (apt-get install -y
python3-torch; run with /usr/bin/python3). Every file is written by torch
itself, so the C reader is tested on what torch really writes; the values
each file holds are dumped by torch (tensor.tolist()) into expected.json, so
the C test compares every element against an independent source.

Writes tests/fixtures/torch/:
  plain.bin        dict: F32, F16, BF16, F64, I64, bool, 1-d, 0-d, empty
                   tensors, zero-size tensors whose sizes need BININT and LONG1
  ordered.bin      a module's state_dict(): an OrderedDict with _metadata (BUILD)
  params.bin       state_dict(keep_vars=True): nn.Parameters (_rebuild_parameter),
                   one with requires_grad False
  shared.bin       views sharing one storage: rows, a slice with an offset, a
                   flat slice reshaped, a tensor stored twice under two names
  proto4.bin       plain tensors with pickle_protocol=4 (FRAME, MEMOIZE,
                   SHORT_BINUNICODE)
  noncontig.bin    a transposed view: refused (not contiguous)
  legacy.bin       _use_new_zipfile_serialization=False: refused (pre-1.6 format)
  evil.bin         an object whose __reduce__ is os.system: refused by name
  t5-lora/         a PEFT SEQ_2_SEQ_LM adapter for a 2-layer tiny T5 (d_model 16,
                   r 4, alpha 8, target_modules q and v): adapter_config.json +
                   adapter_model.bin, the keys PEFT writes (no ".default"),
                   encoder self-, decoder self- and cross-attention: 12 pairs
  t5-lora-st/      the same tensors as adapter_model.safetensors (written here
                   by a minimal writer), same config: .bin and .safetensors
                   must load and compose identically
  t5-lora-default/ BF16, keys with ".default", saved as an OrderedDict
  b-bin/           tests/fixtures/native/b (qwen2, F16) as one pytorch_model.bin
  b-binshard/      the same as two shards + pytorch_model.bin.index.json
  expected.json    {file: {tensor: {"dtype", "shape", "values"}}} for the
                   files above that load (b-bin* excepted)
"""
import collections
import json
import os
import shutil
import struct
import sys

import torch

torch.set_num_threads(1)
TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(TOP, "tests", "fixtures", "torch")
NATIVE_B = os.path.join(TOP, "tests", "fixtures", "native", "b")

DTYPE_NAMES = {
    torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
    torch.float64: "F64", torch.int64: "I64", torch.bool: "BOOL",
}


def describe(sd):
    out = {}
    for k, v in sd.items():
        t = v.detach()
        vals = t.reshape(-1).tolist()
        if t.dtype == torch.bool:
            vals = [int(x) for x in vals]
        elif t.dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
            vals = [float(x) for x in t.reshape(-1).double().tolist()]
        out[k] = {"dtype": DTYPE_NAMES[t.dtype], "shape": list(t.shape), "values": vals}
    return out


def save(name, obj, expected, **kw):
    path = os.path.join(OUT, name)
    torch.save(obj, path, **kw)
    if expected is not None:
        expected[name] = describe(obj)
    return path


class Evil:
    """Pickles as a call of os.system: what a malicious checkpoint does."""

    def __reduce__(self):
        return (os.system, ("echo this checkpoint ran code",))


def st_write(path, tensors):
    """A minimal safetensors writer: header sorted by name, data in that order."""
    names = sorted(tensors)
    header, blobs, off = {}, [], 0
    for n in names:
        t = tensors[n].contiguous()
        raw = t.view(torch.int16).numpy().tobytes() if t.dtype == torch.bfloat16 \
            else t.numpy().tobytes()
        header[n] = {"dtype": DTYPE_NAMES[t.dtype], "shape": list(t.shape),
                     "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def st_read(path):
    """Read a safetensors file into {name: tensor} (F32/F16/BF16)."""
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    base = 8 + n
    out = collections.OrderedDict()
    for name, e in header.items():
        if name == "__metadata__":
            continue
        b, end = e["data_offsets"]
        raw = bytearray(data[base + b:base + end])
        dt = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}[e["dtype"]]
        if dt == torch.bfloat16:
            t = torch.frombuffer(raw, dtype=torch.int16).view(torch.bfloat16)
        else:
            t = torch.frombuffer(raw, dtype=dt)
        out[name] = t.reshape(e["shape"]).clone()
    return out


def t5_lora(gen, dtype, default):
    """PEFT's keys for LoRA on q and v of a 2-layer T5 (d_model 16, 2 heads x 8)."""
    sd = {}
    d, r = 16, 4
    sites = []
    for i in range(2):
        sites.append(f"encoder.block.{i}.layer.0.SelfAttention")
        sites.append(f"decoder.block.{i}.layer.0.SelfAttention")
        sites.append(f"decoder.block.{i}.layer.1.EncDecAttention")
    mid = ".default" if default else ""
    for s in sites:
        for p in ("q", "v"):
            key = f"base_model.model.{s}.{p}"
            sd[f"{key}.lora_A{mid}.weight"] = (torch.randn(r, d, generator=gen) * 0.3).to(dtype)
            sd[f"{key}.lora_B{mid}.weight"] = (torch.randn(d, r, generator=gen) * 0.3).to(dtype)
    return sd


T5_CONFIG = {
    "alpha_pattern": {}, "auto_mapping": None, "base_model_name_or_path": "tiny-t5",
    "bias": "none", "fan_in_fan_out": False, "inference_mode": True,
    "init_lora_weights": True, "layers_pattern": None, "layers_to_transform": None,
    "lora_alpha": 8, "lora_dropout": 0.1, "modules_to_save": None, "peft_type": "LORA",
    "r": 4, "rank_pattern": {}, "revision": None, "target_modules": ["q", "v"],
    "task_type": "SEQ_2_SEQ_LM",
}


def write_adapter(sub, sd, expected, safetensors=False, ordered=False):
    d = os.path.join(OUT, sub)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "adapter_config.json"), "w") as f:
        json.dump(T5_CONFIG, f, indent=2)
        f.write("\n")
    if safetensors:
        st_write(os.path.join(d, "adapter_model.safetensors"), sd)
        return
    obj = collections.OrderedDict(sd) if ordered else sd
    save(os.path.join(sub, "adapter_model.bin"), obj, expected)


def native_b_as_bin():
    """Model b of the native fixtures as pytorch_model.bin, whole and sharded;
    the test compares them with the safetensors they were read from."""
    index = json.load(open(os.path.join(NATIVE_B, "model.safetensors.index.json")))
    tensors = collections.OrderedDict()
    for shard in sorted(set(index["weight_map"].values())):
        tensors.update(st_read(os.path.join(NATIVE_B, shard)))
    for sub in ("b-bin", "b-binshard"):
        os.makedirs(os.path.join(OUT, sub), exist_ok=True)
        shutil.copy(os.path.join(NATIVE_B, "config.json"), os.path.join(OUT, sub))
    save("b-bin/pytorch_model.bin", tensors, None)
    names = list(tensors)
    half = len(names) // 2
    weight_map = {}
    for k, part in enumerate((names[:half], names[half:])):
        fname = f"pytorch_model-0000{k + 1}-of-00002.bin"
        save(os.path.join("b-binshard", fname),
             collections.OrderedDict((n, tensors[n]) for n in part), None)
        weight_map.update({n: fname for n in part})
    size = sum(t.numel() * t.element_size() for t in tensors.values())
    with open(os.path.join(OUT, "b-binshard", "pytorch_model.bin.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": size}, "weight_map": weight_map}, f, indent=2)
        f.write("\n")


def main():
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    os.makedirs(OUT)
    gen = torch.Generator().manual_seed(20261206)
    expected = {}

    save("plain.bin", {
        "f32": torch.randn(3, 5, generator=gen),
        "f16": torch.randn(4, 3, generator=gen).half(),
        "bf16": torch.randn(2, 7, generator=gen).bfloat16(),
        "f64": torch.randn(5, generator=gen).double(),
        "i64": torch.tensor([0, -1, 2**40, -(2**35), 7]),
        "mask": torch.tensor([True, False, True]),
        "scalar": torch.tensor(2.5),
        "empty": torch.zeros(0, 4),
        "wide": torch.zeros(0, 70000),           # BININT in the size tuple
        "huge": torch.zeros(0, 3000000000),       # LONG1 in the size tuple
        "x.y.lora_A.weight": torch.randn(2, 3, generator=gen),
    }, expected)

    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(4, 3)
            self.norm = torch.nn.LayerNorm(3)
            self.emb = torch.nn.Embedding(5, 2)
            self.emb.weight.requires_grad_(False)

    torch.manual_seed(7)
    tiny = Tiny()
    sd = tiny.state_dict()
    assert isinstance(sd, collections.OrderedDict) and hasattr(sd, "_metadata")
    save("ordered.bin", sd, expected)
    save("params.bin", tiny.state_dict(keep_vars=True), expected)

    base = torch.randn(5, 6, generator=gen)
    w = torch.randn(3, 2, generator=gen).half()
    save("shared.bin", {
        "base": base,
        "row2": base[2],
        "rows13": base[1:3],
        "tail": base.view(-1)[7:19],
        "tail_2d": base.view(-1)[7:19].view(3, 4),
        "col_block": base[3:5].reshape(2, 6)[:, :],
        "tied_a": w,
        "tied_b": w,
    }, expected)
    save("proto4.bin", {"a": torch.randn(2, 3, generator=gen), "b": torch.arange(4.0)},
         expected, pickle_protocol=4)
    save("noncontig.bin", {"ok": torch.ones(2), "t": base.t()}, None)
    save("legacy.bin", {"a": torch.ones(2)}, None, _use_new_zipfile_serialization=False)
    save("evil.bin", {"a": torch.ones(2), "payload": Evil()}, None)

    lora = t5_lora(gen, torch.float32, default=False)
    write_adapter("t5-lora", lora, expected)
    write_adapter("t5-lora-st", lora, None, safetensors=True)
    write_adapter("t5-lora-default", t5_lora(gen, torch.bfloat16, default=True), expected,
                  ordered=True)
    native_b_as_bin()

    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1, sort_keys=True)
        f.write("\n")
    total = sum(os.path.getsize(os.path.join(dp, fn))
                for dp, _, fns in os.walk(OUT) for fn in fns)
    print(f"wrote {OUT} ({total} bytes)", file=sys.stderr)


if __name__ == "__main__":
    main()
