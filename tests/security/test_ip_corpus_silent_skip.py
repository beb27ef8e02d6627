"""Threat: protected works left out of the IP index without a word (issue 11, item 27).

``hhh ip index --corpus DIR`` read only files with a suffix from a fixed list, so licence texts named
``GPL-2.0`` or ``LGPL-2.1`` were never indexed, and copies of them passed the IP guard. Every text file
is read now; a file is skipped only for its content, and each skip is reported.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from gateway.cli.main import main
from guards.ip.index import FingerprintIndex
from guards.ip.matching import find_copies

LICENCES = Path("/usr/share/common-licenses")
# Debian's file → the name such texts often carry in a corpus (a "suffix" outside any text list).
NAMED = {"GPL-2": "GPL-2.0", "LGPL-2.1": "LGPL-2.1", "GFDL-1.3": "GFDL-1.3"}


@pytest.fixture
def licence_corpus(tmp_path: Path) -> Path:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for source, name in NAMED.items():
        shutil.copyfile(LICENCES / source, corpus / name)
    (corpus / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    (corpus / "legacy.dat").write_bytes("Lizenz für alle".encode("latin-1") + b"\xff\xfe")
    return corpus


def test_licence_files_with_version_suffixes_are_indexed_and_copies_found(
    licence_corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "index"
    assert main(["ip", "index", "--corpus", str(licence_corpus), "--out", str(out)]) == 0
    assert "indexed 3 documents" in capsys.readouterr().out
    index = FingerprintIndex.load(out)
    assert {document.id for document in index.documents} == set(NAMED.values())
    for source, name in NAMED.items():
        # A verbatim passage of each licence, from its middle, is recognised as a copy of that file.
        text = (LICENCES / source).read_text()
        passage = text[len(text) // 2 : len(text) // 2 + 1500]
        copies = find_copies(passage, index, min_chars=200)
        assert copies, f"a copy of {name} was not recognised"
        assert index.documents[copies[0].document].id == name


def test_every_skipped_file_is_reported_with_its_reason_and_counted(
    licence_corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["ip", "index", "--corpus", str(licence_corpus), "--out", str(tmp_path / "index")]) == 0
    captured = capsys.readouterr()
    skips = [line for line in captured.err.splitlines() if line.startswith("hhh: skipped ")]
    assert len(skips) == 2
    assert any("logo.png" in line and "NUL" in line for line in skips)
    assert any("legacy.dat" in line and "not UTF-8" in line for line in skips)
    assert "2 file(s) skipped" in captured.out
