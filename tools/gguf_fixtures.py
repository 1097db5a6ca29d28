#!/usr/bin/python3
"""Independent checks of lorahub's GGUF LoRA files with llama.cpp's own gguf-py.

Developer-time only (make check never runs it). Needs Debian's python3-numpy
and the llama.cpp source that tools/install-llamacpp.sh unpacks:

    /usr/bin/python3 tools/gguf_fixtures.py check LORAHUB    # (a)
    /usr/bin/python3 tools/gguf_fixtures.py write OUTDIR      # (b)

(a) check: every zoo module (examples/zoo/modules/*) is converted by LORAHUB
    (build/lorahub) to GGUF, F32 and F16, and read back with gguf-py's
    GGUFReader: keys and their types, tensor names from gguf-py's own
    TensorNameMap, shapes, and values against the PEFT safetensors, with
    lora_B of q/k permuted by llama.cpp's LlamaModel.permute formula.
(b) write: small GGUF adapters made with gguf-py's GGUFWriter (llama F32 and
    F16, qwen2, a gated T5 with encoder, decoder and cross-attention targets,
    one without alpha), each beside the PEFT directory it must read back as
    (the expected HF-layout tensors, written here from the same arrays), and
    the base (config.json, and a GGUF model header) the llama ones need for
    their head counts. These
    are the fixtures tests/check_gguf.c loads (tests/fixtures/gguf/).
"""
import json
import os
import struct
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from zoo_gguf import GGUF_PY  # noqa: E402
sys.path.insert(0, GGUF_PY)
import gguf  # noqa: E402  (llama.cpp's gguf-py)


# ---- safetensors, read and written by hand (no extra package) ----

ST_DTYPES = {"F32": np.float32, "F16": np.float16}


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        b, e = info["data_offsets"]
        arr = np.frombuffer(data[b:e], dtype=ST_DTYPES[info["dtype"]])
        out[name] = arr.reshape(info["shape"])
    return out


def write_safetensors(path, tensors):
    header, blobs, off = {"__metadata__": {"format": "pt"}}, [], 0
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name], dtype=np.float32)
        header[name] = {"dtype": "F32", "shape": list(a.shape),
                        "data_offsets": [off, off + a.nbytes]}
        blobs.append(a.tobytes())
        off += a.nbytes
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


# ---- llama.cpp's q/k permutation (conversion/llama.py LlamaModel.permute) ----

def llama_permute(w, n_head, n_head_kv):
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
            .swapaxes(1, 2).reshape(w.shape))


def gguf_base_name(tmap, hf_module):
    name = tmap.get_name(hf_module + ".weight", try_suffixes=(".weight",))
    if name is None:
        raise SystemExit(f"gguf-py has no name for {hf_module}")
    return name


# ---- (a) check what lorahub writes ----

def field_value(field):
    return field.contents()


def check_module(lorahub, mod_dir, base_dir, dtype, tmp):
    out = os.path.join(tmp, os.path.basename(mod_dir) + "-" + dtype + ".gguf")
    subprocess.run([lorahub, "convert", mod_dir, out, "--base", base_dir, "--dtype", dtype],
                   check=True)
    cfg = json.load(open(os.path.join(base_dir, "config.json")))
    acfg = json.load(open(os.path.join(mod_dir, "adapter_config.json")))
    n_head, n_kv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    r = gguf.GGUFReader(out)
    f = r.fields
    want = {"general.architecture": (gguf.GGUFValueType.STRING, "llama"),
            "general.type": (gguf.GGUFValueType.STRING, "adapter"),
            "adapter.type": (gguf.GGUFValueType.STRING, "lora"),
            "adapter.lora.alpha": (gguf.GGUFValueType.FLOAT32, None)}
    for k, (t, v) in want.items():
        assert k in f, f"{out}: no {k}"
        assert f[k].types == [t], f"{out}: {k} has type {f[k].types}"
        assert v is None or field_value(f[k]) == v, f"{out}: {k} = {field_value(f[k])}, want {v}"
    # llama.cpp applies alpha / r (r of each lora_b); PEFT applies lora_alpha / r,
    # or lora_alpha / sqrt(r) with rsLoRA: they must agree (the zoo has one rank
    # and one alpha per module, so no B is rescaled)
    rank = acfg["r"]
    peft_scale = acfg["lora_alpha"] / (np.sqrt(rank) if acfg.get("use_rslora") else rank)
    llama_scale = field_value(f["adapter.lora.alpha"]) / rank
    assert abs(llama_scale - peft_scale) <= 1e-6 * abs(peft_scale), \
        f"{out}: llama.cpp scale {llama_scale}, PEFT scale {peft_scale}"
    peft = read_safetensors(os.path.join(mod_dir, "adapter_model.safetensors"))
    tmap = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, cfg["num_hidden_layers"])
    tensors = {t.name: t for t in r.tensors}
    expected = set()
    for key, a in peft.items():
        mod = key[len("base_model.model."):].rsplit(".lora_", 1)[0]
        kind = "a" if ".lora_A." in key else "b"
        name = gguf_base_name(tmap, mod) + ".lora_" + kind
        expected.add(name)
        assert name in tensors, f"{out}: no tensor {name}"
        t = tensors[name]
        ref = a.astype(np.float32)
        if kind == "b" and mod.endswith("q_proj"):
            ref = llama_permute(ref, n_head, n_head)
        if kind == "b" and mod.endswith("k_proj"):
            ref = llama_permute(ref, n_head, n_kv)
        got = np.asarray(t.data).astype(np.float32)
        assert got.shape == ref.shape, f"{out}: {name} shape {got.shape}, want {ref.shape}"
        assert t.tensor_type.name == dtype.upper(), f"{out}: {name} is {t.tensor_type.name}"
        assert np.array_equal(got, ref), f"{out}: {name} values differ"
    assert set(tensors) == expected, f"{out}: extra tensors {set(tensors) - expected}"
    return len(expected)


def cmd_check(lorahub):
    zoo = os.path.join(ROOT, "examples", "zoo")
    base = os.path.join(zoo, "base")
    mods = sorted(os.path.join(zoo, "modules", m) for m in os.listdir(os.path.join(zoo, "modules")))
    n = 0
    with tempfile.TemporaryDirectory() as tmp:
        for m in mods:
            for dt in ("f32", "f16"):
                n += check_module(lorahub, m, base, dt, tmp)
    print(f"gguf-py agrees with lorahub on {len(mods)} zoo modules x 2 dtypes ({n} tensors)")


# ---- (b) write fixtures with gguf-py ----

def write_peft(path, r, alpha, arrays):
    os.makedirs(path, exist_ok=True)
    targets = sorted({m.rsplit(".", 1)[1] for m in arrays})
    cfg = {"peft_type": "LORA", "r": r, "lora_alpha": alpha, "target_modules": targets,
           "use_rslora": False, "bias": "none", "fan_in_fan_out": False}
    with open(os.path.join(path, "adapter_config.json"), "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
    tensors = {}
    for mod, (a, b) in arrays.items():
        tensors[f"base_model.model.{mod}.lora_A.weight"] = a
        tensors[f"base_model.model.{mod}.lora_B.weight"] = b
    write_safetensors(os.path.join(path, "adapter_model.safetensors"), tensors)


def random_pairs(rng, shapes, r):
    """HF module -> (A [r, in], B [out, r]), values exact in F16."""
    out = {}
    for mod, (d_in, d_out) in shapes.items():
        a = rng.standard_normal((r, d_in)).astype(np.float16).astype(np.float32)
        b = rng.standard_normal((d_out, r)).astype(np.float16).astype(np.float32)
        out[mod] = (a, b)
    return out


def write_gguf(path, arch, model_arch, n_blocks, alpha, pairs, dtype, heads=None, extra=None):
    w = gguf.GGUFWriter(path, arch=arch)  # writes general.architecture itself
    w.add_type(gguf.GGUFType.ADAPTER)
    w.add_string(gguf.Keys.Adapter.TYPE, "lora")
    if alpha is not None:
        w.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(alpha))
    tmap = gguf.get_tensor_name_map(model_arch, n_blocks)
    for mod, (a, b) in pairs.items():
        name = gguf_base_name(tmap, mod)
        if heads and mod.endswith("q_proj"):
            b = llama_permute(b, heads[0], heads[0])
        if heads and mod.endswith("k_proj"):
            b = llama_permute(b, heads[0], heads[1])
        w.add_tensor(name + ".lora_a", a.astype(dtype))
        w.add_tensor(name + ".lora_b", b.astype(dtype))
    for name, arr in (extra or {}).items():
        w.add_tensor(name, arr)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def cmd_write(outdir):
    os.makedirs(outdir, exist_ok=True)
    rng = np.random.default_rng(20261206)
    r = 2
    # llama: hidden 16, 4 heads of 4, 2 kv heads, ffn 24, 2 layers
    base = os.path.join(outdir, "base-llama")
    os.makedirs(base, exist_ok=True)
    with open(os.path.join(base, "config.json"), "w") as f:
        json.dump({"model_type": "llama", "num_hidden_layers": 3, "hidden_size": 16,
                   "num_attention_heads": 4, "num_key_value_heads": 2,
                   "intermediate_size": 24}, f, indent=2)
    # the same base as a GGUF model header (no weights: lorahub reads its keys only)
    w = gguf.GGUFWriter(os.path.join(outdir, "base-llama.gguf"), arch="llama")
    w.add_block_count(3)
    w.add_head_count(4)
    w.add_head_count_kv(2)
    w.add_embedding_length(16)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    llama = random_pairs(rng, {"model.layers.0.self_attn.q_proj": (16, 16),
                               "model.layers.0.self_attn.k_proj": (16, 8),
                               "model.layers.1.self_attn.k_proj": (16, 8),
                               "model.layers.1.self_attn.v_proj": (16, 8),
                               "model.layers.1.mlp.down_proj": (24, 16)}, r)
    norm = {"blk.0.attn_norm.weight": np.ones(16, dtype=np.float32)}  # llama.cpp skips it
    write_gguf(os.path.join(outdir, "llama-f32.gguf"), "llama", gguf.MODEL_ARCH.LLAMA, 2, 4.0,
               llama, np.float32, heads=(4, 2), extra=norm)
    write_gguf(os.path.join(outdir, "llama-f16.gguf"), "llama", gguf.MODEL_ARCH.LLAMA, 2, 4.0,
               llama, np.float16, heads=(4, 2))
    write_peft(os.path.join(outdir, "llama-peft"), r, 4, llama)
    qwen = random_pairs(rng, {"model.layers.0.self_attn.q_proj": (16, 16),
                              "model.layers.0.self_attn.k_proj": (16, 8),
                              "model.layers.0.mlp.gate_proj": (16, 24)}, r)
    write_gguf(os.path.join(outdir, "qwen2.gguf"), "qwen2", gguf.MODEL_ARCH.QWEN2, 1, 2.0,
               qwen, np.float32)
    write_peft(os.path.join(outdir, "qwen2-peft"), r, 2, qwen)
    t5 = random_pairs(rng, {"encoder.block.0.layer.0.SelfAttention.q": (16, 16),
                            "encoder.block.0.layer.1.DenseReluDense.wi_0": (16, 24),
                            "encoder.block.0.layer.1.DenseReluDense.wi_1": (16, 24),
                            "decoder.block.0.layer.0.SelfAttention.o": (16, 16),
                            "decoder.block.0.layer.1.EncDecAttention.k": (16, 16),
                            "decoder.block.0.layer.2.DenseReluDense.wo": (24, 16)}, r)
    # no adapter.lora.alpha: llama.cpp then applies the user scale alone
    write_gguf(os.path.join(outdir, "t5-gated.gguf"), "t5", gguf.MODEL_ARCH.T5, 1, None, t5,
               np.float16)
    write_peft(os.path.join(outdir, "t5-gated-peft"), r, r, t5)
    print(f"wrote fixtures into {outdir}")


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in ("check", "write"):
        raise SystemExit(__doc__)
    if sys.argv[1] == "check":
        cmd_check(sys.argv[2])
    else:
        cmd_write(sys.argv[2])


if __name__ == "__main__":
    main()
