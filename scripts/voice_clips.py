"""Regenerate the hall's voice clips (broker/web/voice/*.wav) with espeak-ng's Vietnamese voice.

    python scripts/voice_clips.py [--out DIR] [--rate 11025] [--speed 150]

Run once by a developer; the clips are committed, so neither a build nor a test needs espeak-ng
(Debian: `apt-get install espeak-ng`). The texts and the clip names are broker.voice.CLIP_TEXTS.
Each clip is trimmed of its leading and trailing silence (the page plays them back to back) and
written mono, 16-bit, at a low sample rate: speech stays clear and the set stays small.
"""
from __future__ import annotations

import argparse
import array
import shutil
import subprocess
import sys
import tempfile
import wave
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from broker.voice import CLIP_EXT, CLIP_TEXTS, DEFAULT_DIR  # noqa: E402

SILENCE = 300  # |sample| below this (of 32767) counts as silence when trimming
PAD_S = 0.04  # kept around the speech so words do not clip


def speak(text: str, speed: int, work: Path) -> tuple[array.array, int]:
    out = work / "clip.wav"
    subprocess.run(["espeak-ng", "-v", "vi", "-s", str(speed), "-w", str(out), text], check=True)
    with wave.open(str(out), "rb") as w:
        assert w.getnchannels() == 1 and w.getsampwidth() == 2, "espeak-ng writes mono 16-bit"
        samples = array.array("h", w.readframes(w.getnframes()))
        return samples, w.getframerate()


def trim(samples: array.array, rate: int) -> array.array:
    loud = [i for i, s in enumerate(samples) if abs(s) >= SILENCE]
    if not loud:
        return samples
    pad = int(PAD_S * rate)
    return samples[max(0, loud[0] - pad):loud[-1] + pad]


def resample(samples: array.array, src: int, dst: int) -> array.array:
    """Average over each output sample's span: a crude low-pass, enough for a voice."""
    if dst >= src:
        return samples
    step = src / dst
    out = array.array("h")
    n = int(len(samples) / step)
    for i in range(n):
        a, b = int(i * step), max(int((i + 1) * step), int(i * step) + 1)
        span = samples[a:b]
        out.append(int(sum(span) / len(span)))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_DIR)
    ap.add_argument("--rate", type=int, default=11025)
    ap.add_argument("--speed", type=int, default=150, help="espeak-ng words per minute")
    args = ap.parse_args(argv)
    if shutil.which("espeak-ng") is None:
        print("espeak-ng not found: apt-get install espeak-ng", file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    total = 0
    with tempfile.TemporaryDirectory() as tmp:
        for name, text in CLIP_TEXTS.items():
            samples, rate = speak(text, args.speed, Path(tmp))
            samples = resample(trim(samples, rate), rate, args.rate)
            path = args.out / f"{name}{CLIP_EXT}"
            with wave.open(str(path), "wb") as w:
                w.setnchannels(1)
                w.setsampwidth(2)
                w.setframerate(min(args.rate, rate))
                w.writeframes(samples.tobytes())
            total += path.stat().st_size
    print(f"{len(CLIP_TEXTS)} clips, {total / 1024:.0f} KiB in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
