"""tools/zoo/tasks.py - the synthetic tasks of the bundled zoo.

Every task is an instruction plus a generator of (task input, answer) pairs.
An example's "input" is the full prompt

    <instruction>\n<task input>\n=>

and its "output" the answer (no leading space). Three disjoint families:

  PRETRAIN  generic tasks only the base model is trained on (copying,
            first/last items, counting words...): they teach the prompt format
            and how letters, words and digits are written.
  UPSTREAM  one LoRA module each (and part of nothing else): the skills.
  UNSEEN    held out from the base and from every module: reworded
            instructions, blends of two skills, "in-between" parameters, a
            length shift and a control task no module knows.

Letter strings are lowercase letters separated by spaces ("q a m"), so that
with the zoo's tokenizer every letter after the first is one token (" a").
Numbers are written as digits; the tokenizer never merges digits, so a number
is one token per digit.
"""

import random
import re

LETTERS = "abcdefghijklmnopqrstuvwxyz"
VOWELS = set("aeiou")

ANIMALS = ["cat", "dog", "fox", "cow", "pig", "duck", "frog", "lion", "bear", "wolf",
           "goat", "horse", "hen", "owl", "bee", "ant", "rat", "crab"]
FRUITS = ["apple", "pear", "plum", "lemon", "peach", "grape", "cherry", "berry", "mango",
          "melon", "lime", "fig", "kiwi", "banana", "date", "orange"]
TOOLS = ["hammer", "saw", "drill", "brush", "wrench", "shovel", "rake", "ladder", "bucket",
         "nail", "rope", "hook", "file", "clamp", "chisel", "box", "glass", "torch"]
VEHICLES = ["car", "bus", "truck", "boat", "train", "bike", "ship", "plane", "van", "taxi",
            "tram", "sled", "cart", "jet"]
NOUNS = ANIMALS + FRUITS + TOOLS + VEHICLES
CATEGORY = {}
for _c, _ws in (("animal", ANIMALS), ("fruit", FRUITS), ("tool", TOOLS), ("vehicle", VEHICLES)):
    for _w in _ws:
        CATEGORY[_w] = _c

ANTONYM_PAIRS = [("hot", "cold"), ("big", "small"), ("fast", "slow"), ("up", "down"),
                 ("old", "new"), ("wet", "dry"), ("hard", "soft"), ("light", "dark"),
                 ("long", "short"), ("high", "low"), ("rich", "poor"), ("full", "empty"),
                 ("early", "late"), ("happy", "sad"), ("thick", "thin"), ("loud", "quiet"),
                 ("clean", "dirty"), ("strong", "weak"), ("near", "far"), ("open", "closed"),
                 ("good", "bad"), ("left", "right"), ("win", "lose"), ("in", "out")]
ANTONYM = {}
for _a, _b in ANTONYM_PAIRS:
    ANTONYM[_a] = _b
    ANTONYM[_b] = _a
ADJECTIVES = sorted(ANTONYM)

CONSONANTS = [c for c in LETTERS if c not in VOWELS]


def plural(w):
    if w.endswith(("s", "x", "ch", "sh")):
        return w + "es"
    if w.endswith("y") and w[-2] not in VOWELS:
        return w[:-1] + "ies"
    return w + "s"


def shift(c, k):
    return LETTERS[(LETTERS.index(c) + k) % 26]


# ---------------------------------------------------------------------------
# input generators: each returns a list of items


def letters(rng, lo=3, hi=7):
    return [rng.choice(LETTERS) for _ in range(rng.randint(lo, hi))]


def nouns(rng, lo=1, hi=3):
    return [rng.choice(NOUNS) for _ in range(rng.randint(lo, hi))]


def adjectives(rng, lo=1, hi=3):
    return [rng.choice(ADJECTIVES) for _ in range(rng.randint(lo, hi))]


def pseudo_word(rng):
    """A pronounceable made-up word, 2-3 syllables: 'bako', 'tirum'."""
    s = "".join(rng.choice(CONSONANTS) + rng.choice("aeiou") for _ in range(rng.randint(2, 3)))
    if rng.random() < 0.3:
        s += rng.choice(CONSONANTS)
    return s


def words_any(rng, lo=3, hi=5):
    pool = NOUNS + ADJECTIVES
    return [rng.choice(pool) for _ in range(rng.randint(lo, hi))]


J = " ".join

# A fixed substitution cipher for the control task, derived from a constant
# seed so that the task is the same in every build.
_perm = list(LETTERS)
random.Random(20261123).shuffle(_perm)
CIPHER = dict(zip(LETTERS, _perm))


class Task:
    def __init__(self, name, family, instruction, gen, note="", kind=None, skills=()):
        """gen(rng) -> (task input text, answer text). skills: for unseen
        tasks, the upstream modules whose skills the task needs."""
        self.name, self.family, self.instruction, self.gen = name, family, instruction, gen
        self.note, self.kind, self.skills = note, kind, tuple(skills)

    def example(self, rng):
        x, y = self.gen(rng)
        return {"input": "%s\n%s\n=>" % (self.instruction, x), "output": y}


def _L(f, lo=3, hi=7):
    def g(rng):
        xs = letters(rng, lo, hi)
        return J(xs), f(xs)
    return g


def _no_vowels(rng):
    while True:
        xs = letters(rng)
        ys = [c for c in xs if c not in VOWELS]
        if ys and len(ys) < len(xs):
            return J(xs), J(ys)


def _swap_pairs(xs):
    ys = list(xs)
    for i in range(0, len(ys) - 1, 2):
        ys[i], ys[i + 1] = ys[i + 1], ys[i]
    return J(ys)


def _num(f, lo=0, hi=999):
    def g(rng):
        n = rng.randint(lo, hi)
        return str(n), f(n)
    return g


def _upper_in(rng):
    xs = letters(rng)
    return J(c.upper() for c in xs), J(xs)


def _words(f, src, lo=1, hi=3):
    def g(rng):
        ws = src(rng, lo, hi)
        return J(ws), f(ws)
    return g


def _spell(rng):
    w = pseudo_word(rng)
    return w, J(w)


def _count_words(rng):
    ws = words_any(rng, 1, 6)
    return J(ws), str(len(ws))


def _digits_apart(rng):
    n = str(rng.randint(10, 99999))
    return n, J(n)


def _mixture(*names):
    """An example of one of the upstream tasks names, drawn uniformly: the
    skill it needs shows in its input (letters, a number, adjectives, nouns)."""
    def g(rng):
        t = BY_NAME[rng.choice(names)]
        return t.gen(rng)
    return g


def _then(content, form):
    """content's input, answered by content's answer put through form (a
    function of the answer's text): format + content tasks."""
    def g(rng):
        x, y = BY_NAME[content].gen(rng)
        return x, form(y)
    return g


def _capitalize_words(y):
    return J(w.capitalize() for w in y.split())


TASKS = [
    # ---- pretraining only ------------------------------------------------
    # copy_text's word pool is filled in below, once every instruction is known
    Task("copy_text", "pretrain", "Copy the text.", lambda rng: _copy_text(rng)),
    Task("copy_letters", "pretrain", "Copy the letters.", _L(lambda xs: J(xs), 1, 10)),
    Task("copy_words", "pretrain", "Copy the words.", _words(lambda ws: J(ws), words_any, 1, 6)),
    Task("copy_number", "pretrain", "Copy the number.", _num(str, 0, 99999)),
    Task("first_letter", "pretrain", "Give the first letter.", _L(lambda xs: xs[0], 2, 10)),
    Task("last_letter", "pretrain", "Give the last letter.", _L(lambda xs: xs[-1], 2, 10)),
    Task("first_word", "pretrain", "Give the first word.", _words(lambda ws: ws[0], words_any, 2, 6)),
    Task("last_word", "pretrain", "Give the last word.", _words(lambda ws: ws[-1], words_any, 2, 6)),
    Task("count_words", "pretrain", "How many words are there?", _count_words),
    Task("digits_apart", "pretrain", "Write the digits apart.", _digits_apart),
    Task("say_twice", "pretrain", "Say it twice.", _L(lambda xs: J(xs + xs), 1, 4)),
    Task("copy_pseudo", "pretrain", "Copy the word.", lambda rng: (lambda w: (w, w))(pseudo_word(rng))),

    # ---- upstream: one LoRA module each ----------------------------------
    Task("reverse", "upstream", "Reverse the letters.", _L(lambda xs: J(xs[::-1]))),
    Task("uppercase", "upstream", "Write the letters in capitals.", _L(lambda xs: J(c.upper() for c in xs))),
    Task("lowercase", "upstream", "Write the letters in lower case.", _upper_in),
    Task("caesar1", "upstream", "Shift each letter by one.", _L(lambda xs: J(shift(c, 1) for c in xs))),
    Task("caesar3", "upstream", "Shift each letter by three.", _L(lambda xs: J(shift(c, 3) for c in xs))),
    Task("atbash", "upstream", "Mirror the alphabet.", _L(lambda xs: J(LETTERS[25 - LETTERS.index(c)] for c in xs))),
    Task("sort", "upstream", "Sort the letters.", _L(lambda xs: J(sorted(xs)))),
    Task("double", "upstream", "Double each letter.", _L(lambda xs: J(c + " " + c for c in xs), 2, 5)),
    Task("rotate", "upstream", "Move the first letter to the end.", _L(lambda xs: J(xs[1:] + xs[:1]))),
    Task("no_vowels", "upstream", "Remove the vowels.", _no_vowels),
    Task("swap_pairs", "upstream", "Swap each pair of letters.", _L(_swap_pairs, 2, 7)),
    Task("add1", "upstream", "Add one.", _num(lambda n: str(n + 1))),
    Task("add3", "upstream", "Add three.", _num(lambda n: str(n + 3))),
    Task("sub1", "upstream", "Subtract one.", _num(lambda n: str(n - 1), 1, 999)),
    Task("parity", "upstream", "Is the number even or odd?", _num(lambda n: "even" if n % 2 == 0 else "odd")),
    Task("times10", "upstream", "Multiply by ten.", _num(lambda n: str(n * 10))),
    Task("plural", "upstream", "Write the plural.", _words(lambda ws: J(plural(w) for w in ws), nouns)),
    Task("antonym", "upstream", "Give the opposites.", _words(lambda ws: J(ANTONYM[w] for w in ws), adjectives)),
    Task("category", "upstream", "Name the kind of each thing.", _words(lambda ws: J(CATEGORY[w] for w in ws), nouns)),
    Task("word_reverse", "upstream", "Reverse the order of the words.", _words(lambda ws: J(ws[::-1]), words_any, 2, 5)),
    Task("capitalize", "upstream", "Capitalize each word.", _words(lambda ws: J(w.capitalize() for w in ws), words_any, 1, 4)),
    Task("spell", "upstream", "Spell the word.", _spell),
    Task("drop_last", "upstream", "Remove the last letter.", _L(lambda xs: J(xs[:-1]), 2, 7)),
    Task("add10", "upstream", "Add ten.", _num(lambda n: str(n + 10))),

    # ---- unseen: held out from the base and from every module -------------
    Task("reverse_reworded", "unseen", "Write the letters backwards.", _L(lambda xs: J(xs[::-1])),
         note="reworded instruction of reverse", kind="reworded"),
    Task("caesar1_reworded", "unseen", "Replace every letter by the one after it.",
         _L(lambda xs: J(shift(c, 1) for c in xs)), note="reworded instruction of caesar1", kind="reworded"),
    Task("antonym_reworded", "unseen", "Say the contrary of each word.",
         _words(lambda ws: J(ANTONYM[w] for w in ws), adjectives), note="reworded instruction of antonym",
         kind="reworded"),
    Task("reverse_caesar1", "unseen", "Reverse the letters and shift each by one.",
         _L(lambda xs: J(shift(c, 1) for c in xs[::-1])),
         note="blend: reverse (order) + caesar1 (letter identity)", kind="blend"),
    Task("word_reverse_plural", "unseen", "Reverse the words and write their plurals.",
         _words(lambda ws: J(plural(w) for w in ws[::-1]), nouns, 2, 4),
         note="blend: word_reverse (order) + plural (word form)", kind="blend"),
    Task("spell_backwards", "unseen", "Spell the word backwards.",
         lambda rng: (lambda w: (w, J(w[::-1])))(pseudo_word(rng)),
         note="blend: spell (split into letters) + reverse (order)", kind="blend"),
    Task("caesar2", "unseen", "Shift each letter by two.", _L(lambda xs: J(shift(c, 2) for c in xs)),
         note="between caesar1 and caesar3 (expected negative)", kind="between"),
    Task("add2", "unseen", "Add two.", _num(lambda n: str(n + 2)),
         note="between add1 and add3 (expected negative)", kind="between"),
    Task("reverse_long", "unseen", "Reverse the letters.", _L(lambda xs: J(xs[::-1]), 9, 12),
         note="length shift: reverse on 9-12 letters (upstream saw 3-7; expected negative)", kind="length"),
    Task("control_cipher", "unseen", "Encode the letters.", _L(lambda xs: J(CIPHER[c] for c in xs)),
         note="control: a fixed random substitution no module knows (must stay near 0)", kind="control"),
    # mixtures: each example needs ONE of the skills, which its input tells
    # (letters, a number, adjectives, nouns); the instruction is new
    Task("mix_reverse_add1", "unseen", "Apply the right rule.", _mixture("reverse", "add1"),
         note="mixture of 2: letters are reversed, a number gets one added", kind="mixture",
         skills=("reverse", "add1")),
    Task("mix_antonym_plural", "unseen", "Change each word as it should be.", _mixture("antonym", "plural"),
         note="mixture of 2: adjectives get their opposites, nouns their plurals", kind="mixture",
         skills=("antonym", "plural")),
    Task("mix_caesar1_add10_antonym", "unseen", "Transform the input.", _mixture("caesar1", "add10", "antonym"),
         note="mixture of 3: letters shift by one, a number gets ten added, adjectives get their opposites",
         kind="mixture", skills=("caesar1", "add10", "antonym")),
    Task("mix_sort_sub1_category", "unseen", "Handle the input.", _mixture("sort", "sub1", "category"),
         note="mixture of 3: letters are sorted, a number gets one taken away, nouns get their kind",
         kind="mixture", skills=("sort", "sub1", "category")),
    # format + content: a content skill answered in an output format
    Task("antonym_capitalized", "unseen", "Say the contrary of each word with a capital.",
         _then("antonym", _capitalize_words),
         note="format + content: antonym (content) + capitalize (format); exact match case-folds, "
              "so lorahub's accuracy sees the content and the README's strict column the format",
         kind="format", skills=("antonym", "capitalize")),
    Task("plural_capitalized", "unseen", "Write more than one of each thing with a capital.",
         _then("plural", _capitalize_words),
         note="format + content: plural (content) + capitalize (format); case shows in strict only",
         kind="format", skills=("plural", "capitalize")),
    Task("caesar1_capitals", "unseen", "Replace every letter by the next one in capitals.",
         _then("caesar1", lambda y: y.upper()),
         note="format + content: caesar1 (content) + uppercase (format); case shows in strict only",
         kind="format", skills=("caesar1", "uppercase")),
    Task("reverse_doubled", "unseen", "Write the letters backwards, each one twice.",
         _then("reverse", lambda y: J(c + " " + c for c in y.split())),
         note="format + content: reverse (content) + double (format, measured by exact match)",
         kind="format", skills=("reverse", "double")),
]

BY_NAME = {t.name: t for t in TASKS}
# the skills the older unseen tasks need (the right modules; none for the
# between, length and control tasks, where no module is exactly right)
for _n, _sk in (("reverse_reworded", ("reverse",)), ("caesar1_reworded", ("caesar1",)),
                ("antonym_reworded", ("antonym",)), ("reverse_caesar1", ("reverse", "caesar1")),
                ("word_reverse_plural", ("word_reverse", "plural")), ("spell_backwards", ("spell", "reverse"))):
    BY_NAME[_n].skills = _sk

# Neutral text for the base model: every word of every instruction (unseen
# tasks included), lower case and capitalized, mixed with nouns, adjectives
# and single letters of both cases. A real base model has read the words of
# any instruction; without this the pieces of an unseen instruction keep their
# random initial embeddings and derail the model whatever the adapter. Only
# the words are shared: no task's instruction is ever generated as a whole.
VOCAB_WORDS = sorted({w for t in TASKS for w in re.findall(r"[A-Za-z]+", t.instruction)}
                     | {w.lower() for t in TASKS for w in re.findall(r"[A-Za-z]+", t.instruction)})
_INSTRUCTIONS = {t.instruction.rstrip(".?") for t in TASKS}


def neutral_sentence(rng):
    """A random sentence of the neutral vocabulary that is no task's instruction."""
    return _copy_text(rng)[0]


def _copy_text(rng):
    while True:
        ws = []
        for _ in range(rng.randint(2, 8)):
            k = rng.random()
            if k < 0.5:
                w = rng.choice(VOCAB_WORDS)
            elif k < 0.8:
                w = rng.choice(NOUNS + ADJECTIVES)
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
    """The comparison used for exact match: strip, case-fold, drop a trailing period."""
    s = s.strip().casefold()
    if s.endswith("."):
        s = s[:-1].rstrip()
    return s
