"""One home for every clinical rule: each rule's literal appears in one module of src/ only.

The rules (calcium threshold, risk categories and their bounds, connectivity, artery
names, label colours) live in ``cacscore/scoring/conventions.py`` and
``cacscore/labels.py``; everything else imports them. Atomic file writing (a temporary
file renamed into place) lives in ``cacscore/io/atomic.py``. These checks read the source
with :mod:`tokenize`, so comments and docstrings may still quote "130 HU" or "LAD".
"""

from __future__ import annotations

import io
import re
import tokenize
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cacscore import labels
from cacscore.scoring import conventions

SRC = Path(__file__).resolve().parents[1] / "src" / "cacscore"
CONVENTIONS = "scoring/conventions.py"
LABELS = "labels.py"
ATOMIC = "io/atomic.py"
ARTERY_NAMES = {"LM", "LAD", "LCX", "RCA"}
#: Spots not yet moved to the one home: file -> why it is still there.
#: Remove an entry once its file imports the rule.
PENDING: dict[str, dict[str, str]] = {}


def _code_tokens(path: Path) -> list[tokenize.TokenInfo]:
    """Tokens of a Python file without comments and docstrings (string statements)."""
    tokens = list(tokenize.generate_tokens(io.StringIO(path.read_text(encoding="utf-8")).readline))
    kept = []
    previous = tokenize.NEWLINE
    for token in tokens:
        if token.type in (tokenize.COMMENT, tokenize.NL, tokenize.INDENT, tokenize.DEDENT):
            continue
        # A string that starts a logical line is a docstring or a bare string statement.
        if token.type == tokenize.STRING and previous in (tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT):
            previous = tokenize.NEWLINE
            continue
        kept.append(token)
        previous = token.type
    return kept


def _python_files() -> Iterator[tuple[str, list[tokenize.TokenInfo]]]:
    for path in sorted(SRC.rglob("*.py")):
        yield path.relative_to(SRC).as_posix(), _code_tokens(path)


def _value(token: tokenize.TokenInfo) -> object:
    if token.type == tokenize.NUMBER:
        try:
            return float(token.string.replace("_", ""))
        except ValueError:  # 0xFF, 1j
            return token.string
    if token.type == tokenize.STRING and not token.string.startswith(("f", "F", "b", "B")):
        return token.string.strip("\"'rR")
    return None


def _threshold(tokens: list[tokenize.TokenInfo]) -> bool:
    """The number 130 (the calcium threshold), except ``code=130`` (the exit status of Ctrl-C)."""
    for i, token in enumerate(tokens):
        if token.type == tokenize.NUMBER and _value(token) == 130.0:
            if i >= 2 and tokens[i - 1].string == "=" and tokens[i - 2].string == "code":
                continue
            if i >= 1 and tokens[i - 1].string == "-":  # -130 HU is fat, not the calcium threshold
                continue
            return True
    return False


def _sequence(tokens: list[tokenize.TokenInfo], wanted: list[object], *, kinds: tuple[int, ...]) -> bool:
    """Whether ``wanted`` appears as consecutive tokens of ``kinds`` (other kinds in between skipped)."""
    values = [_value(t) for t in tokens if t.type in kinds]
    return any(values[i : i + len(wanted)] == wanted for i in range(len(values) - len(wanted) + 1))


def _categories(tokens: list[tokenize.TokenInfo]) -> bool:
    """The strings A-E in a row (a list of the categories, or a table keyed by them)."""
    return _sequence(tokens, ["A", "B", "C", "D", "E"], kinds=(tokenize.STRING,))


def _category_bounds(tokens: list[tokenize.TokenInfo]) -> bool:
    return _sequence(tokens, [10.0, 100.0, 400.0], kinds=(tokenize.NUMBER,)) or _sequence(
        tokens, [0.0, 10.0, 10.0, 100.0], kinds=(tokenize.NUMBER,)
    )


def _artery_list(tokens: list[tokenize.TokenInfo]) -> bool:
    """Three or more artery names as strings in one run: a list of the arteries or a name table."""
    run = 0
    for token in tokens:
        if token.type == tokenize.STRING and _value(token) in ARTERY_NAMES:
            run += 1
            if run >= 3:
                return True
        elif token.string not in (",", ":") and not (
            token.type == tokenize.NAME and token.string in ARTERY_NAMES
        ):
            run = 0  # a name -> code table ({LM: "LM", ...}) keeps the run going
    return False


def _connectivity(tokens: list[tokenize.TokenInfo]) -> bool:
    """A structuring element built inside a labelling call, or a constant named for a connectivity."""
    text = " ".join(t.string for t in tokens)
    built = r"label \( [^)]*structure = (np \. ones|ndimage \. generate_binary_structure)"
    named = r"(^| )_?[A-Z_]*(26|CONNECTED|IN_PLANE_8)[A-Z_]* (: [^=]* )?= "
    return re.search(built, text) is not None or re.search(named, text) is not None


def _rename(tokens: list[tokenize.TokenInfo]) -> bool:
    """``os.replace``/``os.rename``, or ``x.replace(y)``/``x.rename(y)`` with one positional argument.

    One argument and no keyword tells ``Path.replace(target)`` from ``str.replace(old, new)``,
    ``datetime.replace(tzinfo=...)`` and ``dataclasses.replace(obj, **changes)``.
    """
    for i, token in enumerate(tokens[2:-1], start=2):
        if token.string not in ("replace", "rename") or tokens[i - 1].string != ".":
            continue
        if tokens[i - 2].string == "os":
            return True
        if tokens[i + 1].string != "(" or tokens[i - 2].string == "dataclasses":
            continue
        depth, commas, keyword, empty = 0, 0, False, tokens[i + 2].string == ")"
        for inner in tokens[i + 1 :]:
            if inner.type == tokenize.OP and inner.string in {"(", "[", "{"}:
                depth += 1
            elif inner.type == tokenize.OP and inner.string in {")", "]", "}"}:
                depth -= 1
            if depth == 0:
                break
            if depth == 1 and inner.string == ",":
                commas += 1
            if depth == 1 and inner.string in ("=", "**"):
                keyword = True
        if not empty and commas == 0 and not keyword:
            return True
    return False


RULES: dict[str, tuple[Callable[[list[tokenize.TokenInfo]], bool], set[str]]] = {
    "calcium threshold 130 HU": (_threshold, {CONVENTIONS}),
    "risk categories A-E": (_categories, {CONVENTIONS}),
    "risk category bounds": (_category_bounds, {CONVENTIONS}),
    "artery names": (_artery_list, {LABELS}),
    "connectivity": (_connectivity, {CONVENTIONS}),
    "renaming a written file into place": (_rename, {ATOMIC}),
}


@pytest.mark.parametrize("rule", sorted(RULES))
def test_each_rule_literal_lives_in_one_module(rule: str) -> None:
    found, home = RULES[rule]
    pending = PENDING.get(rule, {})
    where = {name for name, tokens in _python_files() if found(tokens)}
    assert where - pending.keys() == home, f"{rule}: defined in {sorted(where)}, home is {sorted(home)}"


def test_the_checks_find_what_they_look_for() -> None:
    """Each detector fires on its rule's literal (so the tests above cannot pass vacuously)."""
    sample = 'X = 130.0\nC = ("A", "B", "C", "D", "E")\nU = {"B": 10.0, "C": 100.0, "D": 400.0}\n'
    sample += 'N = ["LM", "LAD", "LCX", "RCA"]\nS = ndimage.label(m, structure=np.ones((3, 3, 3)))\n'
    sample += "sys.exit(code=130)\ntmp.replace(path)\n"
    tokens = list(tokenize.generate_tokens(io.StringIO(sample).readline))
    quiet = '"""Agatston 130 HU, A-E, LM LAD LCX RCA."""\nexit(code=130)  # 130, 10, 100, 400\n'
    quiet += "from cacscore.labels import LAD, LCX, LM, RCA\nf(x, 'LM', 'LM', y, 'LAD')\n"
    quiet += "ndimage.binary_dilation(m, structure=np.ones((3, 3, 3)))\n"
    quiet += "t = name.replace('_', ' ')\nd = when.replace(tzinfo=utc)\nc = dataclasses.replace(c)\n"
    quiet += "f = replace(c, x=1)\ng = frame.rename(columns=names)\nh = text.replace(f(a, b), c)\n"
    quiet_tokens = [
        t for t in tokenize.generate_tokens(io.StringIO(quiet).readline) if t.type != tokenize.COMMENT
    ]
    for rule, (found, _) in RULES.items():
        assert found(tokens), rule
        assert not found(quiet_tokens[1:]), rule  # [1:]: the docstring


def test_artery_colours_come_from_one_table_in_every_product() -> None:
    """Key images, review viewer (served by the web app) and PDF all use labels.ARTERY_COLOURS."""
    from cacscore.render import key_images
    from cacscore.web import pdf, service

    table = {labels.ARTERY_NAMES[code]: colour for code, colour in labels.ARTERY_COLOURS.items()}
    assert service.ARTERY_COLOURS == table  # what the viewer receives as study.arteries
    assert pdf.ARTERY_COLOURS == table
    assert {labels.ARTERY_NAMES[c]: v for c, v in key_images.ARTERY_COLOURS.items()} == table
    # No other module, script or stylesheet spells an artery colour.
    spelled = set()
    for path in SRC.rglob("*"):
        if path.suffix in {".py", ".js", ".html"} and path.relative_to(SRC).as_posix() != LABELS:
            text = path.read_text(encoding="utf-8").lower()
            spelled |= {
                c for c in labels.ARTERY_COLOURS.values() if c.lower() in text and path.suffix != ".py"
            }
            if path.suffix == ".py":
                code = " ".join(t.string for t in _code_tokens(path)).lower()
                spelled |= {c for c in labels.ARTERY_COLOURS.values() if c.lower() in code}
    assert not spelled


def test_one_tie_rule_for_the_majority_artery() -> None:
    """Scoring, annotations and review give a lesion with equal LAD and LCX voxels the lower code (LAD)."""
    import numpy as np

    from cacscore.io import CTVolume
    from cacscore.scoring import score_volume
    from cacscore.web.service import Candidates, lesion_label

    hu = np.full((1, 4, 6), 300, dtype=np.int16)
    mask = np.zeros((1, 4, 6), dtype=np.uint8)
    mask[0, :, :3] = labels.LCX
    mask[0, :, 3:] = labels.LAD
    result = score_volume(CTVolume(hu=hu, spacing=(3.0, 1.0, 1.0)), mask)
    assert [lesion.artery for lesion in result.lesions] == ["LAD"]
    ids = np.ones(mask.shape, dtype=np.int32)
    candidates = Candidates(labels=ids, n=1, boxes=[(slice(0, 1), slice(0, 4), slice(0, 6))])
    assert lesion_label(mask, candidates, 1) == labels.LAD
    assert int(labels.majority_artery([0, 5, 0, 4, 4, 0])) == labels.UNSPECIFIED  # more voxels win
    assert int(labels.majority_artery([0, 4, 0, 4, 0, 0])) == labels.LAD  # a tie: named before unspecified


def test_category_bounds_and_letters_agree() -> None:
    assert conventions.RISK_CATEGORIES == ("A", "B", "C", "D", "E")
    assert [conventions.risk_category(conventions.risk_category_bounds(c)[1]) for c in "ABCD"] == list("ABCD")
