"""tools/zoo_t5/tasks.py - the synthetic tasks of the T5 zoo (examples/zoo-t5).

A few generators in the spirit of tools/zoo/tasks.py (the LLaMA zoo), copied
rather than imported so that the two zoos can change independently. An
example's "input" is the encoder's text

    <instruction>\n<task input>

(T5's normalizer turns the newline into a space) and its "output" the
decoder's target. Three disjoint families:

  pretrain  generic tasks the base model learns (copying, first and last
            items, counting): the prompt format and how letters, words and
            digits are written.
  upstream  one LoRA module each, and part of nothing else: the skills.
  unseen    held out from the base and from every module: reworded
            instructions and a blend of two skills.

Letter strings are lowercase letters separated by spaces ("q a m"): with the
zoo's Unigram tokenizer every letter is one piece ("▁q").
"""

import random
import re

LETTERS = "abcdefghijklmnopqrstuvwxyz"
VOWELS = set("aeiou")

ANIMALS = ["cat", "dog", "fox", "cow", "pig", "duck", "frog", "lion", "bear", "wolf",
           "goat", "horse", "hen", "owl", "bee", "ant", "crab"]
FRUITS = ["apple", "pear", "plum", "lemon", "peach", "grape", "cherry", "berry", "mango",
          "melon", "lime", "fig", "kiwi", "banana", "date"]
TOOLS = ["hammer", "saw", "drill", "brush", "wrench", "shovel", "rake", "ladder", "bucket",
         "nail", "rope", "hook", "box", "glass", "torch"]
VEHICLES = ["car", "bus", "truck", "boat", "train", "bike", "ship", "plane", "van", "taxi"]
NOUNS = ANIMALS + FRUITS + TOOLS + VEHICLES

ANTONYM_PAIRS = [("hot", "cold"), ("big", "small"), ("fast", "slow"), ("up", "down"),
                 ("old", "new"), ("wet", "dry"), ("hard", "soft"), ("light", "dark"),
                 ("long", "short"), ("high", "low"), ("rich", "poor"), ("full", "empty"),
                 ("early", "late"), ("happy", "sad"), ("thick", "thin"), ("loud", "quiet"),
                 ("clean", "dirty"), ("strong", "weak"), ("near", "far"), ("open", "closed")]
ANTONYM = {}
for _a, _b in ANTONYM_PAIRS:
    ANTONYM[_a] = _b
    ANTONYM[_b] = _a
ADJECTIVES = sorted(ANTONYM)
J = " ".join


def plural(w):
    if w.endswith(("s", "x", "ch", "sh")):
        return w + "es"
    if w.endswith("y") and w[-2] not in VOWELS:
        return w[:-1] + "ies"
    return w + "s"


PLURALS = [plural(w) for w in NOUNS]


def shift(c, k):
    return LETTERS[(LETTERS.index(c) + k) % 26]


def letters(rng, lo=3, hi=7):
    return [rng.choice(LETTERS) for _ in range(rng.randint(lo, hi))]


def nouns(rng, lo=1, hi=3):
    return [rng.choice(NOUNS) for _ in range(rng.randint(lo, hi))]


def adjectives(rng, lo=1, hi=3):
    return [rng.choice(ADJECTIVES) for _ in range(rng.randint(lo, hi))]


def words_any(rng, lo=3, hi=5):
    pool = NOUNS + ADJECTIVES
    return [rng.choice(pool) for _ in range(rng.randint(lo, hi))]


class Task:
    def __init__(self, name, family, instruction, gen, note="", kind=None):
        """gen(rng) -> (task input text, answer text)."""
        self.name, self.family, self.instruction, self.gen = name, family, instruction, gen
        self.note, self.kind = note, kind

    def example(self, rng):
        x, y = self.gen(rng)
        return {"input": "%s\n%s" % (self.instruction, x), "output": y}


def _L(f, lo=3, hi=7):
    def g(rng):
        xs = letters(rng, lo, hi)
        return J(xs), f(xs)
    return g


def _W(f, src, lo=1, hi=3):
    def g(rng):
        ws = src(rng, lo, hi)
        return J(ws), f(ws)
    return g


def _count_words(rng):
    ws = words_any(rng, 1, 6)
    return J(ws), str(len(ws))


TASKS = [
    # ---- pretraining only ------------------------------------------------
    Task("copy_text", "pretrain", "Copy the text.", lambda rng: _copy_text(rng)),
    Task("copy_letters", "pretrain", "Copy the letters.", _L(J, 1, 10)),
    Task("copy_words", "pretrain", "Copy the words.", _W(J, words_any, 1, 6)),
    Task("first_letter", "pretrain", "Give the first letter.", _L(lambda xs: xs[0], 2, 9)),
    Task("last_letter", "pretrain", "Give the last letter.", _L(lambda xs: xs[-1], 2, 9)),
    Task("first_word", "pretrain", "Give the first word.", _W(lambda ws: ws[0], words_any, 2, 6)),
    Task("last_word", "pretrain", "Give the last word.", _W(lambda ws: ws[-1], words_any, 2, 6)),
    Task("count_words", "pretrain", "How many words are there?", _count_words),
    Task("say_twice", "pretrain", "Say it twice.", _L(lambda xs: J(xs + xs), 1, 4)),

    # ---- upstream: one LoRA module each ----------------------------------
    Task("reverse", "upstream", "Reverse the letters.", _L(lambda xs: J(xs[::-1]))),
    Task("uppercase", "upstream", "Write the letters in capitals.", _L(lambda xs: J(c.upper() for c in xs))),
    Task("caesar1", "upstream", "Shift each letter by one.", _L(lambda xs: J(shift(c, 1) for c in xs))),
    Task("double", "upstream", "Double each letter.", _L(lambda xs: J(c + " " + c for c in xs), 2, 5)),
    Task("drop_last", "upstream", "Remove the last letter.", _L(lambda xs: J(xs[:-1]), 2, 7)),
    Task("plural", "upstream", "Write the plural.", _W(lambda ws: J(plural(w) for w in ws), nouns)),
    Task("antonym", "upstream", "Give the opposites.", _W(lambda ws: J(ANTONYM[w] for w in ws), adjectives)),
    Task("word_reverse", "upstream", "Reverse the order of the words.", _W(lambda ws: J(ws[::-1]), words_any, 2, 5)),

    # ---- unseen: held out from the base and from every module -------------
    Task("reverse_reworded", "unseen", "Write the letters backwards.", _L(lambda xs: J(xs[::-1])),
         note="reworded instruction of reverse", kind="reworded"),
    Task("caesar1_reworded", "unseen", "Replace every letter by the one after it.",
         _L(lambda xs: J(shift(c, 1) for c in xs)), note="reworded instruction of caesar1", kind="reworded"),
    Task("antonym_reworded", "unseen", "Say the contrary of each word.",
         _W(lambda ws: J(ANTONYM[w] for w in ws), adjectives), note="reworded instruction of antonym",
         kind="reworded"),
    Task("word_reverse_plural", "unseen", "Reverse the words and write their plurals.",
         _W(lambda ws: J(plural(w) for w in ws[::-1]), nouns, 2, 4),
         note="blend: word_reverse (order) + plural (word form)", kind="blend"),
]

BY_NAME = {t.name: t for t in TASKS}

# Neutral text for the base model: every word of every instruction (unseen
# tasks included), nouns with their plurals, adjectives, single letters of
# both cases. A real base model has read these words; a LoRA on q and v cannot
# teach the model to write a piece it never wrote. No instruction is ever
# generated whole, and no task's mapping is in this text.
VOCAB_WORDS = sorted({w for t in TASKS for w in re.findall(r"[A-Za-z]+", t.instruction)}
                     | {w.lower() for t in TASKS for w in re.findall(r"[A-Za-z]+", t.instruction)})
_INSTRUCTIONS = {t.instruction.rstrip(".?") for t in TASKS}


def _copy_text(rng):
    while True:
        ws = []
        for _ in range(rng.randint(2, 8)):
            k = rng.random()
            if k < 0.4:
                w = rng.choice(VOCAB_WORDS)
            elif k < 0.75:
                w = rng.choice(NOUNS + ADJECTIVES + PLURALS)
            else:
                w = rng.choice(LETTERS)
            if rng.random() < 0.25:
                w = w.upper() if len(w) == 1 else w.capitalize()
            ws.append(w)
        if rng.random() < 0.5:
            ws[0] = ws[0].capitalize()
        s = J(ws)
        if s in _INSTRUCTIONS:
            continue
        k = rng.random()
        s += "." if k < 0.4 else "?" if k < 0.5 else ""
        return s, s


def neutral_sentence(rng):
    """A random sentence of the neutral vocabulary that is no task's instruction."""
    return _copy_text(rng)[0]


def family(name):
    return [t for t in TASKS if t.family == name]


def sample(task, n, seed, exclude=(), distinct=True, max_tries=200):
    """n examples of task from a seeded RNG, avoiding inputs in exclude and
    (if distinct) repeating no input."""
    rng = random.Random(seed)
    seen = set(exclude)
    out = []
    tries = 0
    while len(out) < n:
        ex = task.example(rng)
        if ex["input"] in seen and tries < max_tries * n:
            tries += 1
            continue
        if distinct:
            seen.add(ex["input"])
        out.append(ex)
    return out


def normalize(s):
    """lorahub eval's exact-match comparison: strip, case-fold, no trailing period."""
    s = s.strip().casefold()
    if s.endswith("."):
        s = s[:-1].rstrip()
    return s
