#!/usr/bin/env python3
"""A complete, small lorahub exec backend (protocol 1, see lorahub-backend(7)).

It speaks the protocol with the Python standard library only and reads the
candidate adapters lorahub writes (PEFT directories, F32 safetensors). It
has no language model: its "loss" is a toy that only depends on the
adapter, so that the whole path can be tried without a runtime:

    loss = (||delta W||_F - 1)^2 + 1,   ||delta W||_F^2 = sum over layers

Replace score_one() with a forward pass of your runtime (mean token
cross-entropy of the expected outputs given the inputs) to make it real.

Usage: lorahub adapt --backend-cmd 'python3 toy_backend.py' ...
"""
import json
import math
import struct
import sys


def read_safetensors(path):
    """name -> (shape, flat list of floats); F32 only, as lorahub writes."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] != "F32":
            raise ValueError("%s: %s is %s, not F32" % (path, name, info["dtype"]))
        a, b = info["data_offsets"]
        out[name] = (info["shape"], struct.unpack("<%df" % ((b - a) // 4), data[a:b]))
    return out


def delta_norm2(adapter_dir):
    """sum over layers of ||scale * B @ A||_F^2, via the r x r Gram matrices."""
    with open(adapter_dir + "/adapter_config.json") as f:
        cfg = json.load(f)
    tensors = read_safetensors(adapter_dir + "/adapter_model.safetensors")
    total = 0.0
    for name, (shape_a, a) in tensors.items():
        if not name.endswith(".lora_A.weight"):
            continue
        shape_b, b = tensors[name.replace(".lora_A.", ".lora_B.")]
        r, d_in = shape_a
        d_out = shape_b[0]
        scale = cfg["lora_alpha"] / cfg["r"]  # lorahub writes alpha = r: scale 1
        # ||B A||^2 = sum_ij (A A^T)_ij (B^T B)_ij
        aat = [[sum(a[i * d_in + k] * a[j * d_in + k] for k in range(d_in))
                for j in range(r)] for i in range(r)]
        btb = [[sum(b[o * r + i] * b[o * r + j] for o in range(d_out))
                for j in range(r)] for i in range(r)]
        total += scale * scale * sum(aat[i][j] * btb[i][j] for i in range(r) for j in range(r))
    return total


def score_one(examples_path, adapter_dir):
    if adapter_dir is None:  # null: the base model without an adapter
        return 2.0
    return (math.sqrt(delta_norm2(adapter_dir)) - 1.0) ** 2 + 1.0


def reply(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def main():
    for line in sys.stdin:
        req = json.loads(line)
        op = req.get("op")
        try:
            if op == "hello":
                reply({"ok": True, "protocol": 1, "name": "toy_backend.py"})
            elif op == "score":
                reply({"ok": True,
                       "loss": [score_one(req["examples"], d) for d in req["adapters"]]})
            elif op == "bye":
                reply({"ok": True})
                return
            else:  # generate, and anything newer than protocol 1
                reply({"ok": False, "error": "unsupported"})
        except Exception as e:  # an error message lorahub shows to the user
            reply({"ok": False, "error": "%s: %s" % (type(e).__name__, e)})


if __name__ == "__main__":
    main()
