"""tools/zoo_common.py - what both zoo builders (tools/zoo, tools/zoo_t5) share:
jsonl files, the build log, stable per-task seeds and the README helpers."""

import json
import random
import time


def log(msg):
    print("[%s] %s" % (time.strftime("%H:%M:%S"), msg), flush=True)


def write_jsonl(path, rows):
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def task_seed(seed, name, k=0):
    """A stable per-task seed (Python's hash() is salted per process)."""
    h = 0
    for c in name:
        h = (h * 131 + ord(c)) % 1000003
    return seed * 1000 + h * 10 + k


def pct(x):
    return "—" if x is None else "%.0f%%" % (100 * x)


def example_cell(zoo, t):
    """A task's first example (its test file's, or a seeded one for a
    pretraining task) as a README cell: `input line` → `output`."""
    if t.family == "pretrain":
        e = t.example(random.Random(0))
    else:
        with open(zoo.p("tasks", t.name, "test.jsonl"), encoding="utf-8") as f:
            e = json.loads(f.readline())
    return "`%s` → `%s`" % (e["input"].split("\n")[1], e["output"])
