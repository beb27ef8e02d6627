"""Generate synthetic PII sentences with gold spans for the PII guard's tests.

The sentences come from presidio-evaluator's ``PresidioSentenceFaker``: its shipped templates
filled with fake values from Faker and from the package's bundled synthetic identity records
(FakeNameGenerator.com_3000.csv). Nothing is downloaded and no real person appears. The output is
JSON Lines, one sample per line::

    {"text": str, "spans": [{"entity_type": str, "start": int, "end": int, "value": str}]}

with spans sorted by ``start`` and ``text[start:end] == value`` checked for every span.

presidio-evaluator==0.3.2 needs numpy>=2.4 while this project pins numpy<2.3, so it lives in its
own virtual environment, not the project's. Run from the repository root::

    python -m venv .cache/pii-eval-venv
    .cache/pii-eval-venv/bin/pip install presidio-evaluator==0.3.2
    .cache/pii-eval-venv/bin/python tests/data/pii/generate.py [--count 400] [--out PATH]

The output is deterministic (seed 42) for a given presidio-evaluator and Faker version. That takes
four workarounds, all in this script, none in the package:

* Seeding: the constructor draws the base records' full names (``load_fake_person_df``: middle
  initial or not) from the global ``random`` before it applies ``random_seed``, so the global
  generators are seeded once before it is called as well; without that, runs differ.
* Dates: Faker draws dates between 1970 and the current time; ``PinnedDateTimeProvider`` fixes
  "now" at ``REFERENCE_NOW``.
* Network: ``HospitalProvider`` queries WikiData when it is constructed (falling back to a fixed
  list offline). No shipped template uses it, so it is left out and the script stays offline.
* Lower-casing: a ``lower_case_ratio`` share of samples is meant to be lower-cased, but
  ``SentenceFaker._lower_pattern`` lower-cases the span values and writes the lower-cased text to
  ``sample.fake`` instead of ``sample.full_text``. Where ``sample.fake`` is set it is the text.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from datetime import date, datetime, timedelta, tzinfo
from pathlib import Path
from typing import TypedDict

from faker.providers.date_time import Provider as DateTimeProvider
from faker.typing import DateParseType
from presidio_evaluator import InputSample
from presidio_evaluator.data_generator import (
    PresidioSentenceFaker,
    presidio_additional_entity_providers,
)
from presidio_evaluator.data_generator.faker_extensions import HospitalProvider

SEED = 42
LOCALE = "en_US"
LOWER_CASE_RATIO = 0.05
DEFAULT_COUNT = 400
DEFAULT_OUT = Path(__file__).resolve().parent / "presidio_evaluator_sentences.jsonl"
# Faker draws dates up to "now"; pinning it keeps the output independent of when the script runs.
REFERENCE_NOW = datetime(2026, 1, 1)

# presidio-evaluator 0.3.2 has no evaluator-to-analyzer mapping any more (the entity_mapping argument
# of PresidioAnalyzerWrapper is deprecated in favour of CanonicalMapper's own hierarchy). The sentence
# faker already emits analyzer names for most types (PresidioSentenceFaker.ENTITY_TYPE_MAPPING); the
# remaining ones are renamed as the earlier PresidioAnalyzerWrapper.presidio_entities_map did
# (microsoft/presidio-research, presidio_evaluator/models/presidio_analyzer_wrapper.py):
#   GPE (city, country, state) -> LOCATION   analyzer's spaCy mapping also sends GPE to LOCATION
#   STREET_ADDRESS             -> LOCATION   no analyzer address entity; spaCy finds parts as LOCATION
#   DOMAIN_NAME (faker url)    -> URL        analyzer's UrlRecognizer entity
# Kept as the evaluator names them, as the default English analyzer has no recognizer for them:
# TITLE (job titles and prefixes such as "Mr."), ZIP_CODE, AGE.
# All other types the faker emits are already analyzer names: PERSON, ORGANIZATION, NRP, DATE_TIME,
# EMAIL_ADDRESS, PHONE_NUMBER, CREDIT_CARD, IBAN_CODE, IP_ADDRESS, US_SSN, US_DRIVER_LICENSE.
EVALUATOR_TO_ANALYZER: dict[str, str] = {
    "GPE": "LOCATION",
    "STREET_ADDRESS": "LOCATION",
    "DOMAIN_NAME": "URL",
}


class PinnedDateTimeProvider(DateTimeProvider):
    """Faker's date/time provider with "now" fixed at REFERENCE_NOW.

    The templates use date_time, year and day_of_week (all through date_time) and date_of_birth.
    """

    def date_time(self, tzinfo: tzinfo | None = None, end_datetime: DateParseType | None = None) -> datetime:
        return super().date_time(tzinfo=tzinfo, end_datetime=end_datetime or REFERENCE_NOW)

    def date_of_birth(
        self, tzinfo: tzinfo | None = None, minimum_age: int = 0, maximum_age: int = 115
    ) -> date:
        today = REFERENCE_NOW.date()
        start = today.replace(year=today.year - maximum_age - 1) + timedelta(days=1)
        end = today.replace(year=today.year - minimum_age)
        return self.date_between_dates(date_start=start, date_end=end)


class SpanRecord(TypedDict):
    entity_type: str
    start: int
    end: int
    value: str


class SampleRecord(TypedDict):
    text: str
    spans: list[SpanRecord]


def to_record(sample: InputSample, index: int) -> SampleRecord:
    """Convert one InputSample, fixing its lower-cased text and checking every span against it."""
    text: str = sample.full_text
    lowered: str | None = getattr(sample, "fake", None)  # see the module docstring
    if lowered is not None:
        if len(lowered) != len(text):
            raise ValueError(f"sample {index}: lower-casing changed the text's length: {text!r}")
        text = lowered
    spans: list[SpanRecord] = []
    for span in sorted(sample.spans, key=lambda s: (s.start_position, s.end_position)):
        start, end, value = span.start_position, span.end_position, str(span.entity_value)
        if not 0 <= start < end <= len(text) or text[start:end] != value:
            raise ValueError(
                f"sample {index}: span {span.entity_type} [{start}:{end}] is {text[start:end]!r}, "
                f"expected {value!r} in {text!r}"
            )
        entity_type = EVALUATOR_TO_ANALYZER.get(span.entity_type, span.entity_type)
        spans.append({"entity_type": entity_type, "start": start, "end": end, "value": value})
    return {"text": text, "spans": spans}


def generate(count: int) -> list[SampleRecord]:
    providers = [p for p in presidio_additional_entity_providers if p is not HospitalProvider]
    providers.append(PinnedDateTimeProvider)
    # The constructor builds its base records (load_fake_person_df) with the global `random`
    # before it applies random_seed, so seed first or the full names differ from run to run.
    PresidioSentenceFaker.seed(SEED)
    faker = PresidioSentenceFaker(
        LOCALE,
        lower_case_ratio=LOWER_CASE_RATIO,
        entity_providers=providers,
        random_seed=SEED,
    )
    samples = faker.generate_new_fake_sentences(num_samples=count)
    return [to_record(sample, i) for i, sample in enumerate(samples)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=DEFAULT_COUNT, help="number of sentences")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output .jsonl path")
    args = parser.parse_args(argv)
    if args.count < 1:
        parser.error("--count must be positive")

    records = generate(args.count)
    with args.out.open("w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")

    counts = Counter(span["entity_type"] for record in records for span in record["spans"])
    print(f"wrote {len(records)} samples to {args.out}", file=sys.stderr)
    for entity_type, n in counts.most_common():
        print(f"  {entity_type}: {n}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
