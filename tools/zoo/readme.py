"""tools/zoo/readme.py - writes examples/zoo/README.md from results.json."""

import json
import os

import zoo_common as C


def _pct(x):
    return C.pct(x)


def _example(zoo, T, t):
    return C.example_cell(zoo, t)


def _du(path):
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            total += os.path.getsize(os.path.join(root, f))
    return total


def _merge(w, R):
    """The merge property of issue 15, from results["merge"]."""
    mg = R.get("merge")
    if not mg:
        return
    w("## Merging keeps the skills")
    w("")
    w("The property model merging relies on, measured by the build (Python, greedy exact match on")
    w("each module's own 100 test inputs): cat of the right modules of each blend, mixture and format")
    w("task at weight 1 (the plain sum of their deltas) against each module alone, under other")
    w("wordings (what the module adds: a seeded neutral sentence as instruction) and under the")
    w("canonical instruction. kept = cat / alone. Goal: kept >= 70% for every module.")
    w("")
    w("| task | module | alone, other wordings | cat | kept | alone, canonical | cat | kept |")
    w("|---|---|---|---|---|---|---|---|")
    worst = None
    for task, r in mg.items():
        for p, v in r.items():
            k = v["kept"]
            w("| %s | %s | %s | %s | %s | %s | %s | %s |" %
              (task, p, _pct(v["alone"]["other_wording"]), _pct(v["cat"]["other_wording"]),
               _pct(k["other_wording"]), _pct(v["alone"]["canonical"]), _pct(v["cat"]["canonical"]),
               _pct(k["canonical"])))
            ko = k["other_wording"] if k["other_wording"] is not None else 0
            if worst is None or ko < worst[0]:
                worst = (ko, task, p)
    w("")
    fails = sorted({"%s in %s" % (p, task) for task, r in mg.items() for p, v in r.items()
                    if (v["kept"]["other_wording"] or 0) < 0.7})
    if fails:
        w("**Not met for %d of %d (task, module) pairs**: %s (lowest: %s in %s, %s kept)."
          % (len(fails), sum(len(r) for r in mg.values()), ", ".join(fails), worst[2], worst[1], _pct(worst[0])))
    else:
        w("**Met for every pair** (lowest: %s in %s, %s kept)." % (worst[2], worst[1], _pct(worst[0])))
    w("")
    w("What was tried (issue 15; each a full base or module build, measured by this stage):")
    w("")
    w("- The first zoo (docs/results-zoo1.md): a base that knew only the pretraining tasks, modules")
    w("  that each created their skill (delta median 0.83): no merge of two or three modules kept any")
    w("  skill (every composition of the three reworded tasks' modules scored 0%).")
    w("- A first build of this regime with a base of 4000 + 4000 steps (docs/issue15-zoo-trial.json):")
    w("  the letter and word skills at 29-78% under their canonical instruction; kept >= 70% only by")
    w("  add1 and sub1.")
    w("- This build: the base trained 16000 + 4000 steps knows every skill at 85-100%; the modules")
    w("  (400 steps at most, 6 keep prompts per batch) reach 53-99% under other wordings with deltas")
    w("  0.11-0.29. Kept >= 70%: both modules of mix_reverse_add1 (letters and numbers) and sub1 in")
    w("  mix_sort_sub1_category.")
    w("- The same base with longer, better-kept module training (800 steps at most, 10 keep prompts")
    w("  per batch; the 12 modules the mixture and format tasks need): under other wordings 77-94%")
    w("  instead of 53-84% for the letter and word modules, deltas 0.27-0.38 instead of 0.18-0.26, and")
    w("  every sum kept less or the same (sub1 in mix_sort_sub1_category 79% -> 54%, category 44% ->")
    w("  33%, plural in plural_capitalized 21% -> 3%, add10 25% -> 14%). Sharper modules are larger")
    w("  rewirings of how the base reads an instruction it was not trained on, and those collide.")
    w("- The same base with modules on q and v only (the LoraHub paper's targets; `--module-targets")
    w("  q_proj,v_proj`, 400 steps): they do not learn the skill under other wordings (after the first")
    w("  five: caesar1 0%, antonym 20%, reverse 23%, plural 47%, add1 89%, against 67%, 53%, 76%, 82%,")
    w("  95% on all seven projections) and lose some of the base's own (caesar1 86% under its")
    w("  canonical instruction), with larger deltas on the matrices they touch (0.32-0.47); stopped")
    w("  there, since a sum cannot keep what the modules alone do not have.")
    w("")
    w("So the property holds where the modules' inputs differ in kind and their deltas are small")
    w("(numbers, letters), and fails where two skills read the same kind of input (antonym and plural")
    w("both read words) or a format skill must act on another skill's output. docs/results.md measures")
    w("what lorahub's searches make of it.")
    w("")


def write(zoo, T):
    R = zoo.results
    b = R.get("base", {})
    cfg = b.get("config", {})
    tk = R.get("tokenizer", {})
    tm = dict(R.get("timings", {}))
    if tm.get("stage_modules") is None and R.get("modules"):  # modules trained in several runs: add them up
        tm["stage_modules"] = round(sum(m["seconds"] for m in R["modules"].values()), 1)
    if "total" not in tm:  # stages run one by one: add them up
        tm["total"] = round(sum(v for k, v in tm.items() if k.startswith("stage_")), 1)
    mods = R.get("modules", {})
    L = []
    w = L.append
    w("# The bundled zoo")
    w("")
    w("A small, self-contained LoRA hub for lorahub: a tiny LLaMA-style base model in Hugging Face")
    w("layout, %d upstream LoRA modules in PEFT format, %d MoS modules sharing one routing, and %d"
      % (len(mods), len(R.get("mos", {})), len(T.family("unseen"))))
    w("unseen tasks with few-shot and test files. Everything here is generated by")
    w("")
    w("    make zoo ZOO_OUT=examples/zoo   # /usr/bin/python3 tools/zoo/build.py --out examples/zoo --jobs 2")
    w("")
    w("from fixed seeds, one CPU thread per trainer (torch 1.13); rerunning it reproduces these files. The")
    w("numbers below were measured by the build in Python (tools/llama_torch.py); lorahub's own")
    w("commands make the official tables.")
    w("")
    w("## Layout")
    w("")
    w("    base/                       config.json, model.safetensors (F16), tokenizer.json")
    w("    modules/<task>/             adapter_config.json, adapter_model.safetensors (PEFT LoRA)")
    w("    mos/<task>.safetensors      MoS modules (lorahub MoS format, one routing for all)")
    w("    tasks/<task>/test.jsonl     100 test examples {\"input\", \"output\"}")
    w("    tasks/<task>/fewshot.jsonl  5 examples (unseen tasks: = fewshot-1.jsonl)")
    w("    tasks/<task>/test-other-wording.jsonl  upstream tasks: test.jsonl under other wordings")
    w("    tasks/<task>/fewshot-K.jsonl  unseen tasks: 5 examples from seed K = 1..5")
    w("    results.json                every number measured by the build")
    w("    unseen.tsv                  the unseen tasks: task, kind, right modules, instruction")
    w("")
    w("Few-shot, validation and test inputs are disjoint within a task; training never saw a test or")
    w("validation input of its task (validation sets, 64 examples, are regenerated from their seed by")
    w("the build and not stored).")
    w("")
    w("## Conventions")
    w("")
    w("- Prompt (\"input\"): `<instruction>\\n<task input>\\n=>`; answer (\"output\") without a leading")
    w("  space. Letter strings are lowercase letters separated by spaces.")
    w("- Sequence: `ids = [bos] + encode(input) + encode(output) + [eos]`, input and output tokenized")
    w("  separately. Loss: mean cross-entropy over the output tokens and the eos. Greedy generation")
    w("  starts after `[bos] + encode(input)` and stops at eos.")
    w("- Accuracy: greedy exact match after strip, case-fold and removal of a trailing period (the")
    w("  LoraHub reference's metric). \"strict\" below is exact match after strip only.")
    w("- Tokenizer: byte-level BPE (GPT-2 byte-to-unicode map, GPT-2 pre-split regex, ByteLevel")
    w("  pre-tokenizer with add_prefix_space false), %s merges trained on pretraining and upstream task"
      % tk.get("merges"))
    w("  text, the neutral copy_text included")
    w("  (never merging two digits, so numbers are one token per digit). Ids 0-255 are the bytes")
    w("  in byte order, then the merges, then `<s>` = %s (bos) and `</s>` = %s (eos); vocab %s."
      % (tk.get("bos_id"), tk.get("eos_id"), tk.get("vocab_size")))
    w("")
    w("## Base model")
    w("")
    w("LlamaForCausalLM, %s parameters: hidden %s, %s layers, %s heads of %s, %s kv heads (GQA),"
      % ("{:,}".format(b.get("parameters", 0)), cfg.get("hidden_size"), cfg.get("num_hidden_layers"),
         cfg.get("num_attention_heads"), cfg.get("head_dim"), cfg.get("num_key_value_heads")))
    w("intermediate %s (SwiGLU), RMSNorm eps %s, RoPE theta %s, untied embeddings, no biases."
      % (cfg.get("intermediate_size"), cfg.get("rms_norm_eps"), cfg.get("rope_theta")))
    pt = b.get("pretrain", {})
    w("Pretrained from a seeded init (seed %s) with AdamW (lr %s, warmup 100, cosine to 10%%, batch %s,"
      % (pt.get("seed"), pt.get("lr"), pt.get("batch")))
    p2 = b.get("pretrain2", {})
    w("%s steps, then a warm restart of %s steps with batch %s and lr %s; %s s in all) on the pretraining"
      % (pt.get("steps"), p2.get("steps"), p2.get("batch"), p2.get("lr"), tm.get("base")))
    w("tasks, which teach the prompt format and how letters,")
    w("words and digits are written, AND on every upstream skill under its canonical instruction")
    w("(multi-task; each upstream task drawn twice as often as a pretraining task, 80% of the examples;")
    w("test and validation inputs excluded). The base knows the skills, as Flan-T5 had seen the FLAN")
    w("tasks its LoraHub modules were trained on; a module specializes it (next section). The")
    w("previous zoo's base knew only the pretraining tasks and every module created its skill, with a")
    w("delta as large as the weights it touched (||ΔW|| / ||W|| over a module's matrices: median")
    w("0.83, up to 1.62), and no merge of two or three modules kept any skill (issue 15).")
    w("copy_text is neutral text: random sentences over every word of every task's instruction (unseen")
    w("tasks included), nouns, adjectives and single letters, in lower case and capitalized. A real base")
    w("model has read the words of any instruction; without this the pieces of an unseen instruction")
    w("keep their random initial embeddings and derail the model whatever the adapter (the first build")
    w("of this zoo had every unseen task at 0%, even with the right module). No instruction is ever")
    w("generated whole, and no unseen task's input-output mapping is in any training text.")
    w("")
    b1 = R.get("base_phase1", {})
    w("| pretraining task | instruction | example | base accuracy | after phase 1 |")
    w("|---|---|---|---|---|")
    for t in T.family("pretrain"):
        w("| %s | %s | %s | %s | %s |" % (t.name, t.instruction, _example(zoo, T, t),
                                          _pct(b.get("pretrain_acc", {}).get(t.name)),
                                          _pct(b1.get("pretrain_acc", {}).get(t.name))))
    w("")
    up1 = b1.get("upstream_acc", {})
    if up1:
        w("The upstream skills under their canonical instruction (test sets), base after phase 1 → final")
        w("base: %s." % ", ".join("%s %s → %s" % (n, _pct(v["test_acc"]),
                                                  _pct(b.get("upstream_acc", {}).get(n, {}).get("test_acc")))
                                 for n, v in sorted(up1.items())))
        w("")
    w("## Upstream LoRA modules")
    w("")
    mt = getattr(zoo, "module_train", {})
    w("One PEFT module per task, LoRA on all seven linear layers (q, k, v, o, gate, up, down) of every")
    w("layer. Rank 8, alpha 16 unless listed (a few variants so that lorahub meets mixed ranks, another")
    w("alpha and rsLoRA); PEFT init (A uniform ±1/sqrt(d_in), B zero), a seed per task.")
    w("")
    w("A module specializes the base: it carries \"do skill X\" when the instruction is NOT the canonical")
    w("one. In %.0f%% of its training examples the instruction line is a random neutral sentence (as"
      % (100 * mt.get("other_wording", 0)))
    w("copy_text), like FLAN's many templates per task; validation (32 examples) and the \"other")
    w("wordings\" test put a seeded neutral sentence before the task's validation and test inputs.")
    w("To keep the delta small the schedule is short and gentle: AdamW, lr %s, batch %s, warmup and"
      % (mt.get("lr"), mt.get("batch")))
    w("cosine decay over at most %s steps, validation checked every %s steps, stopped at 92%% or more."
      % (mt.get("steps"), mt.get("check_every")))
    w("delta = ||scale · B A||_F / ||W||_F over the module's 28 matrices: the overall ratio")
    w("(sqrt(Σ||ΔW||² / Σ||W||²)) and the largest single-matrix ratio. base = the base alone.")
    w("")
    w("| module | instruction | example | r | alpha | rslora | steps | seconds | base acc | test acc | strict | base, other wordings | other wordings | delta | delta max |")
    w("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for t in T.family("upstream"):
        m = mods.get(t.name)
        if not m:
            why = getattr(zoo, "skip", {}).get(t.name)
            if why:
                w("| %s | %s | %s | no module: %s | | | | | | | | | |" % (t.name, t.instruction, _example(zoo, T, t), why))
            continue
        dn = m.get("delta_norm", {})
        w("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" %
          (t.name, t.instruction, _example(zoo, T, t), m["r"], m["lora_alpha"], "yes" if m["use_rslora"] else "",
           m["steps"], m["seconds"], _pct(m.get("base_test_acc")), _pct(m["test_acc"]), _pct(m["test_acc_strict"]),
           _pct(m.get("base_other_wording_acc")), _pct(m.get("other_wording_acc")),
           dn.get("overall", ""), dn.get("max", "")))
    w("")
    low = [n for n, m in mods.items() if m.get("other_wording_acc", m["test_acc"]) < 0.9]
    if low:
        w("**Below 90%% under other wordings: %s** (training stops at 92%% on 32 validation examples;"
          % ", ".join(n + (" (step limit)" if mods[n]["steps"] >= mods[n].get("max_steps", 0) else "")
                      for n in sorted(low)))
        w("the test set can land lower).")
        w("")
    dns = sorted(m["delta_norm"]["overall"] for m in mods.values() if m.get("delta_norm"))
    if dns:
        w("Delta norms (overall ratio): median %.3f, range %.3f to %.3f (the previous zoo: median 0.83,"
          % (dns[len(dns) // 2], dns[0], dns[-1]))
        w("0.27 to 1.62).")
        w("")
    missing = [t.name for t in T.family("upstream") if t.name not in mods and t.name not in getattr(zoo, "skip", {})]
    if missing:
        w("Not trained in this build: %s." % ", ".join(missing))
        w("")
    ms = R.get("mos_settings", {})
    if R.get("mos"):
        w("## MoS modules")
        w("")
        w("Mixture of Shards (arXiv 2410.00938) with static routing, all sharing ONE routing (seed %s),"
          % ms.get("routing_seed"))
        w("so lorahub can compose them exactly in pool space. Per projection type: N = %s shards per pool"
          % ms.get("N"))
        w("(budget rank R = %s × %s layers × l = %s), public shards [0, %s), private rank p = %s; materialized"
          % (ms.get("R"), cfg.get("num_hidden_layers"), ms.get("l"), ms.get("P0"), ms.get("p")))
        w("rank r = %s, lora_alpha %s (scale %s). Same trainer settings as the LoRA modules."
          % (ms.get("r"), ms.get("alpha"), ms.get("alpha", 0) / max(1, ms.get("r", 1))))
        w("File format: see lib/mos.h (`mos.<t>.pool_A` [N, d_in/l], `mos.<t>.pool_B` [N, d_out/l],")
        w("`mos.L<i>.<t>.idx_A/idx_B` [r, l] I32, config JSON in `__metadata__[\"mos_config\"]`; no")
        w("rank_scale tensors, i.e. all 1).")
        w("")
        w("| MoS module | trainable parameters | steps | seconds | test acc |")
        w("|---|---|---|---|---|")
        for name, m in R["mos"].items():
            w("| %s | %s | %s | %s | %s |" % (name, m["trainable_parameters"], m["steps"], m["seconds"],
                                            _pct(m["test_acc"])))
        w("")
    w("## Unseen tasks")
    w("")
    w("Held out from the base model and from every module: no training text pairs their instruction")
    w("with their mapping (only the instruction's words occur, in copy_text and in the modules' neutral")
    w("sentences). Each has test.jsonl (100) and five few-shot files of 5 examples (fewshot-1..5,")
    w("seeds differ; fewshot.jsonl = fewshot-1).")
    w("")
    w("Sanity numbers (Python, greedy exact match on the 100 test examples): zero-shot = base alone;")
    w("best-by-loss = the single module with the lowest few-shot loss, mean over the 5 few-shot files;")
    w("best tried = the best test accuracy among the modules tried (the 5 loss picks and the")
    w("module with the lowest loss over all 25 few-shot examples), not a full oracle;")
    w("right modules = each module the task needs, alone; cat = those modules added with weight 1")
    w("(exact sum of their deltas, no search), with its strict accuracy (case kept) in brackets.")
    w("")
    w("| task | kind | instruction | example | zero-shot | best-by-loss (picks) | best tried | right modules | cat (strict) |")
    w("|---|---|---|---|---|---|---|---|---|")
    for t in T.family("unseen"):
        u = R.get("unseen", {}).get(t.name, {})
        picks = u.get("fewshot_best_module", [])
        pk = ", ".join(sorted(set(picks)))
        cat = ("%s (%s)" % (_pct(u["cat_pair_acc"]), _pct(u.get("cat_pair_strict")))) if "cat_pair" in u else ""
        right = ", ".join("%s %s" % (p, _pct(a[0] if isinstance(a, list) else a))
                          for p, a in u.get("right_module_acc", {}).items())
        w("| %s | %s | %s | %s | %s | %s (%s) | %s (%s) | %s | %s |" %
          (t.name, t.kind, t.instruction, _example(zoo, T, t), _pct(u.get("zero_shot")),
           _pct(u.get("fewshot_best_module_mean")), pk, _pct(u.get("oracle_module_acc")),
           u.get("oracle_module", ""), right, cat))
    w("")
    un = R.get("unseen", {})
    won = [t.name for t in T.family("unseen")
           if un.get(t.name, {}).get("fewshot_best_module_mean", 0) > un.get(t.name, {}).get("zero_shot", 0) + 0.05]
    w("Tasks where the best module by few-shot loss beats zero-shot by more than 5 points: %s. The"
      % (", ".join(won) if won else "none"))
    w("others are where retrieving one module is not enough; whether composing several helps there is")
    w("what docs/results.md measures with lorahub itself.")
    w("")
    w("What each unseen task is for:")
    w("")
    for t in T.family("unseen"):
        w("- %s: %s." % (t.name, t.note))
    w("")
    w("What changed from the previous zoo (issue 15): the ten older tasks (reworded, blend, between,")
    w("length, control) keep their names, instructions and generators, so old and new tables compare;")
    w("their test and few-shot files are the same (same seeds); the base and the modules are new. New")
    w("are the mixture tasks (each example needs one of 2 or 3 skills, told by its input, under an")
    w("instruction no module saw) and the format+content tasks (a content skill answered in an output")
    w("format). Zero-shot is no longer 0 everywhere: the base knows every skill under its canonical")
    w("instruction, and reverse_long and add2/caesar2 keep canonical-looking instructions.")
    w("")
    _merge(w, R)
    w("## Size and time")
    w("")
    w("Total size %.1f MB. Build time: %s s in all (data %s s, base %s s, modules %s s on 2 workers,"
      % (_du(zoo.out) / 1e6, tm.get("total"), tm.get("stage_data"),
         round(tm.get("stage_base", 0) + tm.get("stage_base2", 0), 1), tm.get("stage_modules")))
    w("MoS %s s, unseen-task evaluation %s s, merge check %s s)." % (tm.get("stage_mos"), tm.get("stage_eval"),
                                                                     tm.get("stage_merge")))
    w("")
    with open(zoo.p("README.md"), "w", encoding="utf-8") as f:
        f.write("\n".join(L))
