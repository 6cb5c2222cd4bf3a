"""The hall's Vietnamese voice: which clips announce a call, and the clips the service ships."""
from __future__ import annotations

import wave

import pytest

from broker.voice import CLIP_EXT, CLIP_TEXTS, DEFAULT_DIR, announcement, counter_words, number_words, ticket_words


def test_the_issue_s_example_reads_the_ticket_digit_by_digit_and_the_counter_as_a_number():
    # "Mời công dân có số A không một hai đến quầy số ba"
    assert announcement("A012", "3", "Quầy 3") == ["moi", "chu_a", "khong", "mot", "hai", "den_quay", "ba"]
    assert " ".join(CLIP_TEXTS[c] for c in announcement("A012", "3", "Quầy 3")) == \
        "mời công dân có số a không một hai đến quầy số ba"


@pytest.mark.parametrize("ticket, words", [
    ("A001", ["chu_a", "khong", "khong", "mot"]),
    ("BC999", ["chu_b", "chu_c", "chin", "chin", "chin"]),
    ("a100", ["chu_a", "mot", "khong", "khong"]),  # read as printed, whatever the case it arrives in
    ("L0042", ["chu_l", "khong", "khong", "bon", "hai"]),  # the counter's local fallback number
    ("?#", []),  # nothing to read: nothing made up
])
def test_tickets_are_read_letter_and_digit_by_digit(ticket, words):
    assert ticket_words(ticket) == words


@pytest.mark.parametrize("n, spoken", [
    (0, "không"), (3, "ba"), (10, "mười"), (11, "mười một"), (15, "mười lăm"), (14, "mười bốn"),
    (20, "hai mươi"), (21, "hai mươi mốt"), (24, "hai mươi tư"), (25, "hai mươi lăm"), (99, "chín mươi chín"),
    (105, "một không năm"),  # no counter has so many: digit by digit rather than invent wording
])
def test_counter_numbers_are_read_as_vietnamese_numbers(n, spoken):
    assert " ".join(CLIP_TEXTS[w] for w in number_words(n)) == spoken


def test_the_counter_number_comes_from_its_name_then_its_id():
    assert counter_words("q7", "Quầy 12") == ["muoi", "hai"]
    assert counter_words("7", None) == ["bay"]
    assert counter_words("thu-ngan", "Thu ngân") == []
    # No number anywhere: the call names no counter rather than a wrong one.
    assert announcement("A001", "thu-ngan", "Thu ngân") == ["moi", "chu_a", "khong", "khong", "mot"]


def test_every_clip_is_shipped_small_mono_and_readable():
    total = 0
    for name in CLIP_TEXTS:
        path = DEFAULT_DIR / f"{name}{CLIP_EXT}"
        with wave.open(str(path), "rb") as w:
            assert w.getnchannels() == 1 and w.getframerate() <= 16000, name
            assert w.getnframes() / w.getframerate() > 0.1, f"{name} is (nearly) silent"
        total += path.stat().st_size
    assert total < 1024 * 1024  # package data, in every wheel and on every Pi


def test_a_centre_s_recordings_replace_the_shipped_clips_one_by_one(tmp_path):
    from broker.web.pages.hall import clip_path

    (tmp_path / "moi.mp3").write_bytes(b"ID3 a recorded voice")
    (tmp_path / "secret.txt").write_text("not a clip")
    assert clip_path(tmp_path, "moi") == tmp_path / "moi.mp3"
    assert clip_path(tmp_path, "ba") == DEFAULT_DIR / "ba.wav"  # not recorded: the shipped one
    assert clip_path(None, "moi") == DEFAULT_DIR / "moi.wav"
    assert clip_path(tmp_path, "secret") is None and clip_path(tmp_path, "../web/voice/moi") is None


def test_the_voice_folder_must_exist(tmp_path):
    from broker.config import ConfigError, config_from_dict

    base = {"mqtt": {"embedded": False}, "store": {"url": "sqlite:///x.db"}}
    assert config_from_dict({**base, "hall": {"voice_dir": str(tmp_path)}}).hall.voice_dir == tmp_path
    with pytest.raises(ConfigError, match="hall.voice_dir: folder not found"):
        config_from_dict({**base, "hall": {"voice_dir": str(tmp_path / "missing")}})


@pytest.mark.skipif(__import__("shutil").which("espeak-ng") is None, reason="espeak-ng not installed (not needed: "
                    "the clips are committed)")
def test_the_script_regenerates_every_clip(tmp_path):
    import subprocess
    import sys

    from tests.support import ROOT

    r = subprocess.run([sys.executable, "scripts/voice_clips.py", "--out", str(tmp_path)], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert sorted(p.stem for p in tmp_path.glob("*.wav")) == sorted(CLIP_TEXTS)
