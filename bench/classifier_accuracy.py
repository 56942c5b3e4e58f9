"""Accuracy of the image-pull failure classifier on the corpus of real messages.

Prints figures; asserts nothing and always exits 0 (tests/test_classify.py holds the floors).
For each category of the corpus: how many entries, how many the classifier got right, and the
percentage; then how often the ``ambiguous`` flag was right, and every entry it got wrong. The
corpus has two splits: ``tuning`` (the messages the rules were written from) and ``holdout``
(collected and labelled afterwards); each is reported on its own, then both together.

    .venv/bin/python bench/classifier_accuracy.py
    .venv/bin/python bench/classifier_accuracy.py --split holdout
    .venv/bin/python bench/classifier_accuracy.py --corpus other.yaml
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import pathlib
import sys
from typing import Any

import yaml

from regcred.classify import Category, Classification, classify

CORPUS = pathlib.Path(__file__).resolve().parent.parent / "tests" / "data" / "pull_failures.yaml"


@dataclasses.dataclass(frozen=True)
class Outcome:
    index: int
    entry: dict[str, Any]
    verdict: Classification

    @property
    def expected(self) -> Category:
        return Category(self.entry["expected"])

    @property
    def category_right(self) -> bool:
        return self.verdict.category is self.expected

    @property
    def ambiguous_right(self) -> bool:
        return self.verdict.ambiguous is bool(self.entry["ambiguous"])


def load(path: pathlib.Path) -> list[dict[str, Any]]:
    entries = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(entries, list):
        raise ValueError("expected a list of entries")
    return entries


def evaluate(entries: list[dict[str, Any]]) -> list[Outcome]:
    return [
        Outcome(index, entry, classify(entry["message"], entry.get("reason"))) for index, entry in enumerate(entries)
    ]


def report(outcomes: list[Outcome], title: str) -> None:
    total = len(outcomes)
    right = sum(outcome.category_right for outcome in outcomes)
    print(f"== {title}: {total} messages")
    print(f"category accuracy: {right}/{total} ({_percent(right, total)})")
    missed = [outcome for outcome in outcomes if not outcome.category_right]
    unknown = sum(outcome.verdict.category is Category.UNKNOWN for outcome in missed)
    print(f"category misses: {len(missed)} ({unknown} came out unknown, {len(missed) - unknown} as a wrong category)")
    print()
    print(f"{'category':<24}{'count':>7}{'correct':>9}{'%':>8}")
    by_category: dict[Category, list[Outcome]] = collections.defaultdict(list)
    for outcome in outcomes:
        by_category[outcome.expected].append(outcome)
    for category in Category:
        group = by_category.get(category, [])
        correct = sum(outcome.category_right for outcome in group)
        print(f"{category.value:<24}{len(group):>7}{correct:>9}{_percent(correct, len(group)):>8}")
    print()
    flagged = [outcome for outcome in outcomes if outcome.entry["ambiguous"]]
    ambiguous_right = sum(outcome.ambiguous_right for outcome in outcomes)
    flagged_right = sum(outcome.ambiguous_right for outcome in flagged)
    print(f"ambiguous flag: {ambiguous_right}/{total} right ({_percent(ambiguous_right, total)}); ", end="")
    print(f"{flagged_right}/{len(flagged)} of the ambiguous entries flagged")
    print()
    wrong = [outcome for outcome in outcomes if not (outcome.category_right and outcome.ambiguous_right)]
    print(f"misclassified: {len(wrong)}")
    for outcome in wrong:
        entry = outcome.entry
        print(f"- #{outcome.index} {entry['source']}")
        verdict = outcome.verdict
        print(f"  expected {entry['expected']} (ambiguous={entry['ambiguous']}), ", end="")
        print(f"got {verdict.category.value} (ambiguous={verdict.ambiguous}) on {verdict.evidence!r}")
        print(f"  message: {_shorten(entry['message'])}")
    print()


def _percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "-"


def _shorten(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=pathlib.Path, default=CORPUS)
    parser.add_argument("--split", choices=("tuning", "holdout", "blind", "all"), help="report only this split")
    args = parser.parse_args()
    try:
        outcomes = evaluate(load(args.corpus))
    except (OSError, yaml.YAMLError, KeyError, ValueError) as error:
        print(f"cannot read the corpus {args.corpus}: {error}")
        return 0
    try:
        for split in sorted({_split(outcome) for outcome in outcomes}, reverse=True):
            if args.split in (None, split):
                report([outcome for outcome in outcomes if _split(outcome) == split], split)
        if args.split in (None, "all"):
            report(outcomes, "all")
    except BrokenPipeError:  # piped into head: the reader has seen enough
        sys.stdout = None
    return 0


def _split(outcome: Outcome) -> str:
    return str(outcome.entry.get("split", "tuning"))


if __name__ == "__main__":
    raise SystemExit(main())
