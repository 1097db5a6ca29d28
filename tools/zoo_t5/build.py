#!/usr/bin/python3
"""tools/zoo_t5/build.py - builds lorahub's bundled T5 zoo (examples/zoo-t5),
the paper's setting in miniature: a Flan-T5-architecture base, its Unigram
tokenizer, and LoRA modules in the format of the LoraHub hub (PEFT
SEQ_2_SEQ_LM, q and v of every attention, adapter_model.bin).

    nice -n 19 /usr/bin/python3 tools/zoo_t5/build.py --out examples/zoo-t5

writes
    base/            config.json, model.safetensors (F16), tokenizer.json, spiece.model
    modules/<task>/  adapter_config.json, adapter_model.bin (torch zip, F32)
    tasks/<task>/    test.jsonl (100); fewshot.jsonl (5); unseen tasks also
                     fewshot-1.jsonl .. fewshot-5.jsonl (five seeds)
    results.json     everything measured during the build
    README.md
and tests/fixtures/zoo-t5/spm-ids.tsv (sentencepiece's ids of the zoo's texts).

Fixed seeds, torch on one thread: rerunning reproduces the files.
"""

import argparse
import json
import os
import shutil
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(TOP, "tools"))
import tasks as T  # noqa: E402
import t5train as M  # noqa: E402
import spm_export as S  # noqa: E402
from llama_torch import save_safetensors, load_safetensors  # noqa: E402
import zoo_common as C  # noqa: E402

SEED = 5150
N_TEST = 100
N_VAL = 64
N_SHOT = 5
N_FEWSHOT_SEEDS = 5
SPM_VOCAB = 320
BASE_NAME = "lorahub-zoo-t5-base"

# T5 v1.1 / Flan-T5 shapes, scaled down. vocab_size is the tokenizer's size
# rounded up to a multiple of 64, as Flan-T5's 32128 rows cover 32100 ids
# (the loss runs over every row; with 320 pieces the two are equal).
BASE_CONFIG = {
    "architectures": ["T5ForConditionalGeneration"], "model_type": "t5",
    "d_model": 64, "d_kv": 16, "num_heads": 4, "d_ff": 192, "num_layers": 3, "num_decoder_layers": 3,
    "feed_forward_proj": "gated-gelu", "dense_act_fn": "gelu_new", "is_gated_act": True,
    "relative_attention_num_buckets": 32, "relative_attention_max_distance": 128,
    "layer_norm_epsilon": 1e-6, "tie_word_embeddings": False, "is_encoder_decoder": True,
    "decoder_start_token_id": 0, "pad_token_id": 0, "eos_token_id": 1,
}
PRETRAIN = dict(steps=3000, batch=64, lr=3e-3, seed=SEED + 1)
# The paper's hub: r 16, alpha 32 on q and v. Here r 8, alpha 16 (scale 2, as
# the hub's) on the same targets.
LORA = dict(r=8, alpha=16, targets=["q", "v"])
MODULE_TRAIN = dict(steps=1500, batch=32, lr=5e-3, target=0.95, reword_share=0.5, warmup=20)


log, write_jsonl, read_jsonl = C.log, C.write_jsonl, C.read_jsonl


def task_seed(name, k=0):
    return C.task_seed(SEED, name, k)


def lora_targets(cfg):
    return [n for n, _, _ in M.linear_names(cfg) if n.rsplit(".", 1)[1] in LORA["targets"]]


def save_peft(d, ad, cfg):
    """ad: {module: (A [r, in], B [out, r])} -> PEFT directory with adapter_model.bin."""
    os.makedirs(d, exist_ok=True)
    sd = {}
    for name, (A, B) in ad.items():
        sd["base_model.model.%s.lora_A.weight" % name] = A.detach().float().contiguous().clone()
        sd["base_model.model.%s.lora_B.weight" % name] = B.detach().float().contiguous().clone()
    torch.save(sd, os.path.join(d, "adapter_model.bin"))
    pc = {"peft_type": "LORA", "task_type": "SEQ_2_SEQ_LM", "base_model_name_or_path": BASE_NAME,
          "r": LORA["r"], "lora_alpha": LORA["alpha"], "target_modules": LORA["targets"],
          "lora_dropout": 0.0, "bias": "none", "fan_in_fan_out": False, "inference_mode": True}
    with open(os.path.join(d, "adapter_config.json"), "w") as f:
        json.dump(pc, f, indent=2)
        f.write("\n")


def load_peft(d):
    with open(os.path.join(d, "adapter_config.json")) as f:
        pc = json.load(f)
    sd = torch.load(os.path.join(d, "adapter_model.bin"))
    s = pc["lora_alpha"] / pc["r"]
    out = {}
    for k, A in sd.items():
        if k.endswith(".lora_A.weight"):
            name = k[len("base_model.model."):-len(".lora_A.weight")]
            out[name] = (A, sd[k.replace("lora_A", "lora_B")], s)
    return out


class Zoo:
    def __init__(self, out, fixtures):
        self.out, self.fixtures = out, fixtures
        self.results_path = os.path.join(out, "results.json")
        self.results = {}
        if os.path.exists(self.results_path):
            with open(self.results_path) as f:
                self.results = json.load(f)

    def p(self, *parts):
        return os.path.join(self.out, *parts)

    def save_results(self):
        tmp = self.results_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.results, f, indent=1, sort_keys=True)
            f.write("\n")
        os.replace(tmp, self.results_path)

    def tok(self):
        with open(self.p("base", "spiece.model"), "rb") as f:
            return S.Tok(f.read())

    def val_set(self, name):
        test = read_jsonl(self.p("tasks", name, "test.jsonl"))
        return T.sample(T.BY_NAME[name], N_VAL, task_seed(name, 2), exclude={e["input"] for e in test})

    def exclude(self, name):
        test = read_jsonl(self.p("tasks", name, "test.jsonl"))
        return {e["input"] for e in test} | {e["input"] for e in self.val_set(name)}

    # -- data and tokenizer ----------------------------------------------------

    def stage_data(self):
        t0 = time.time()
        for t in T.TASKS:
            if t.family == "pretrain":
                continue
            d = self.p("tasks", t.name)
            os.makedirs(d, exist_ok=True)
            test = T.sample(t, N_TEST, task_seed(t.name, 1))
            write_jsonl(os.path.join(d, "test.jsonl"), test)
            ex = {e["input"] for e in test}
            if t.family == "upstream":
                ex |= {e["input"] for e in self.val_set(t.name)}
                write_jsonl(os.path.join(d, "fewshot.jsonl"), T.sample(t, N_SHOT, task_seed(t.name, 3), exclude=ex))
            else:
                for k in range(1, N_FEWSHOT_SEEDS + 1):
                    shots = T.sample(t, N_SHOT, task_seed(t.name, 10 + k), exclude=ex)
                    write_jsonl(os.path.join(d, "fewshot-%d.jsonl" % k), shots)
                    if k == 1:
                        write_jsonl(os.path.join(d, "fewshot.jsonl"), shots)
        # the tokenizer learns from pretraining and upstream text (copy_text
        # carries the words of the unseen instructions, not their tasks)
        texts = []
        for t in T.TASKS:
            if t.family != "unseen":
                for e in T.sample(t, 200, task_seed(t.name, 4), distinct=False):
                    texts += e["input"].split("\n") + [e["output"]]
        blob = S.train(texts, SPM_VOCAB)
        os.makedirs(self.p("base"), exist_ok=True)
        S.save(blob, self.p("base", "spiece.model"), self.p("base", "tokenizer.json"))
        tok = S.Tok(blob)
        self.write_spm_fixture(tok)
        self.results["tokenizer"] = {"pieces": tok.vocab_size, "trainer": "sentencepiece %s unigram, nmt_nfkc"
                                     % S.spm.__version__, "sentences": len(texts)}
        self.save_results()
        log("data + tokenizer: %d pieces (%.1f s)" % (tok.vocab_size, time.time() - t0))

    def write_spm_fixture(self, tok):
        """sentencepiece's ids of every distinct text in the zoo's task files
        (inputs with their newline, outputs): the reference lorahub tokenize
        must reproduce (tests/cli/test-zoo-t5.sh). One line per text:
        the text with backslash and newline escaped (\\\\, \\n), a tab, the ids."""
        texts = set()
        for name in sorted(os.listdir(self.p("tasks"))):
            for fn in sorted(os.listdir(self.p("tasks", name))):
                for e in read_jsonl(self.p("tasks", name, fn)):
                    texts.add(e["input"])
                    texts.add(e["output"])
        os.makedirs(self.fixtures, exist_ok=True)
        with open(os.path.join(self.fixtures, "spm-ids.tsv"), "w", encoding="utf-8") as f:
            for s in sorted(texts):
                assert "\t" not in s
                esc = s.replace("\\", "\\\\").replace("\n", "\\n")
                f.write("%s\t%s\n" % (esc, " ".join(map(str, tok.sp.encode(s)))))

    # -- base ------------------------------------------------------------------

    def config(self, tok):
        cfg = dict(BASE_CONFIG)
        cfg["vocab_size"] = (tok.vocab_size + 63) // 64 * 64
        cfg["_name_or_path"] = BASE_NAME
        return cfg

    def load_base(self):
        with open(self.p("base", "config.json")) as f:
            cfg = json.load(f)
        arrays, _ = load_safetensors(self.p("base", "model.safetensors"))
        return M.T5(cfg, {k: torch.from_numpy(v.astype("float32")) for k, v in arrays.items()})

    def stage_base(self):
        tok = self.tok()
        cfg = self.config(tok)
        model = M.T5(cfg, seed=PRETRAIN["seed"])
        n_par = sum(p.numel() for p in model.parameters())
        log("base: %d parameters, pretraining %d steps" % (n_par, PRETRAIN["steps"]))
        steps, secs = M.train(model, tok, model.parameters(), T.family("pretrain"), PRETRAIN["steps"],
                              PRETRAIN["batch"], PRETRAIN["lr"], PRETRAIN["seed"], set(), log,
                              weight_decay=0.01, check_every=250)
        with open(self.p("base", "config.json"), "w") as f:
            json.dump(cfg, f, indent=2)
            f.write("\n")
        save_safetensors(self.p("base", "model.safetensors"),
                         {k: v.to(torch.float16) for k, v in model.state_dict().items()})
        model = self.load_base()  # measure what is on disk (F16-rounded)
        accs = {t.name: M.accuracy(model, tok, T.sample(t, 50, task_seed(t.name, 5)), T.normalize)
                for t in T.family("pretrain")}
        self.results["base"] = {"parameters": n_par, "config": cfg, "pretrain": PRETRAIN,
                                "pretrain_acc": accs, "seconds": round(secs, 1)}
        self.save_results()
        log("base done in %.0f s; pretraining-task accuracy %s" % (secs, accs))

    # -- modules ---------------------------------------------------------------

    def stage_modules(self, only):
        tok = self.tok()
        model = self.load_base()
        cfg = model.cfg
        dims = {n: (di, do) for n, di, do in M.linear_names(cfg)}
        for t in T.family("upstream"):
            if only and t.name not in only:
                continue
            seed = task_seed(t.name, 6)
            g = torch.Generator().manual_seed(seed)
            ad = {}
            for name in lora_targets(cfg):
                di, do = dims[name]
                A = (torch.rand(LORA["r"], di, generator=g) * 2 - 1) / di ** 0.5  # PEFT's kaiming bound
                ad[name] = (A, torch.zeros(do, LORA["r"]))
            params = [x for ab in ad.values() for x in ab]
            scale = LORA["alpha"] / LORA["r"]

            def install():
                model.lora = {k: (A, B, scale) for k, (A, B) in ad.items()}
            tr = MODULE_TRAIN
            log("module %s" % t.name)
            steps, secs = M.train(model, tok, params, [t], tr["steps"], tr["batch"], tr["lr"], seed,
                                  self.exclude(t.name), log, warmup=tr["warmup"], set_fn=install,
                                  val=self.val_set(t.name)[:32], normalize=T.normalize, target=tr["target"],
                                  reword=T.neutral_sentence, reword_share=tr["reword_share"])
            d = self.p("modules", t.name)
            if os.path.isdir(d):
                shutil.rmtree(d)
            save_peft(d, ad, cfg)
            test = read_jsonl(self.p("tasks", t.name, "test.jsonl"))
            model.lora = load_peft(d)  # measure what is on disk
            acc, strict = M.accuracy(model, tok, test, T.normalize, strict=True)
            loss = float(M.loss_of(model, tok, test))
            model.lora = {}
            base_acc = M.accuracy(model, tok, test, T.normalize)
            base_loss = float(M.loss_of(model, tok, test))
            self.results.setdefault("modules", {})[t.name] = {
                "seed": seed, "steps": steps, "seconds": round(secs, 1), "test_acc": acc,
                "test_acc_strict": strict, "test_loss": loss, "base_test_acc": base_acc,
                "base_test_loss": base_loss}
            self.save_results()
            log("module %s: %d steps, %.0f s, test acc %.2f (base %.2f), loss %.4f (base %.4f)"
                % (t.name, steps, secs, acc, base_acc, loss, base_loss))
        self.results["lora"] = dict(LORA, pairs=len(lora_targets(cfg)), train=MODULE_TRAIN)
        self.save_results()

    # -- checks and sanity numbers ---------------------------------------------

    def stage_check(self):
        """The batched float32 trainer against tools/t5_torch.py (unbatched,
        float64, written from the spec) on the saved base and one saved module:
        logits of padded batches agree to 1e-4 relative."""
        import t5_torch
        tok = self.tok()
        model = self.load_base()
        ref = t5_torch.T5(model.cfg, {k: v.double() for k, v in model.p.items()})
        name = sorted(os.listdir(self.p("modules")))[0]
        exs = read_jsonl(self.p("tasks", name, "test.jsonl"))[:6]
        worst = 0.0
        for lora in ({}, load_peft(self.p("modules", name))):
            model.lora = lora
            ref.lora = {k: (A.double(), B.double(), s) for k, (A, B, s) in lora.items()}
            src, smask, dec, labels = M.batch(tok, exs)
            with torch.no_grad():
                got = model.decode(model.encode(src, smask), smask, dec)
            for i, e in enumerate(exs):
                s = tok.encode(e["input"]) + [M.EOS]
                t = tok.encode(e["output"]) + [M.EOS]
                want = ref.logits(s, t)
                diff = (got[i, :len(t)].double() - want).abs().max() / want.abs().max()
                worst = max(worst, float(diff))
        model.lora = {}
        if worst > 1e-4:
            raise RuntimeError("trainer and tools/t5_torch.py disagree: %g relative" % worst)
        self.results["check_against_t5_torch"] = {"max_rel_diff": worst, "module": name, "examples": len(exs)}
        self.save_results()
        log("trainer vs tools/t5_torch.py: max relative logit difference %.2e" % worst)

    def stage_eval(self):
        tok = self.tok()
        model = self.load_base()
        mods = {n: load_peft(self.p("modules", n)) for n in sorted(os.listdir(self.p("modules")))}
        for t in T.family("unseen"):
            test = read_jsonl(self.p("tasks", t.name, "test.jsonl"))
            model.lora = {}
            r = {"kind": t.kind, "zero_shot": M.accuracy(model, tok, test, T.normalize)}
            accs = {}
            for n, ad in mods.items():
                model.lora = ad
                accs[n] = M.accuracy(model, tok, test, T.normalize)
            picks = []
            for k in range(1, N_FEWSHOT_SEEDS + 1):
                shots = read_jsonl(self.p("tasks", t.name, "fewshot-%d.jsonl" % k))
                losses = {}
                for n, ad in mods.items():
                    model.lora = ad
                    with torch.no_grad():
                        losses[n] = float(M.loss_of(model, tok, shots))
                picks.append(min(losses, key=losses.get))
            model.lora = {}
            best = max(accs, key=accs.get)
            r.update({"module_acc": accs, "fewshot_best_module": picks,
                      "fewshot_best_module_mean": sum(accs[p] for p in picks) / len(picks),
                      "oracle_module": best, "oracle_module_acc": accs[best]})
            self.results.setdefault("unseen", {})[t.name] = r
            self.save_results()
            log("unseen %s: zero-shot %.2f, loss picks %s (mean %.2f), best module %s %.2f"
                % (t.name, r["zero_shot"], picks, r["fewshot_best_module_mean"], best, accs[best]))

    def stage_readme(self):
        import readme
        readme.write(self, T)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--fixtures", default=os.path.join(TOP, "tests", "fixtures", "zoo-t5"))
    ap.add_argument("--stage", default="all", choices=["all", "data", "base", "modules", "check", "eval", "readme"])
    ap.add_argument("--only", default="", help="comma-separated upstream tasks (modules stage)")
    ap.add_argument("--pretrain-steps", type=int, default=None)
    ap.add_argument("--module-steps", type=int, default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.pretrain_steps:
        PRETRAIN["steps"] = args.pretrain_steps
    if args.module_steps:
        MODULE_TRAIN["steps"] = args.module_steps
    if args.stage == "all" and os.path.isdir(args.out):
        for sub in ("base", "modules", "tasks", "results.json", "README.md"):
            path = os.path.join(args.out, sub)
            if os.path.isdir(path):
                shutil.rmtree(path)
            elif os.path.exists(path):
                os.remove(path)
    os.makedirs(args.out, exist_ok=True)
    zoo = Zoo(args.out, args.fixtures)
    t0 = time.time()
    stages = ["data", "base", "modules", "check", "eval", "readme"] if args.stage == "all" else [args.stage]
    for s in stages:
        ts = time.time()
        if s == "modules":
            zoo.stage_modules(set(filter(None, args.only.split(","))))
        else:
            getattr(zoo, "stage_" + s)()
        zoo.results.setdefault("timings", {})["stage_" + s] = round(time.time() - ts, 1)
        zoo.save_results()
    if args.stage == "all":
        zoo.results["timings"]["total"] = round(time.time() - t0, 1)
        zoo.save_results()
        zoo.stage_readme()
    log("done in %.0f s" % (time.time() - t0))


if __name__ == "__main__":
    main()
