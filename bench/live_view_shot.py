"""A screenshot of `gaitforge deploy`'s live view, from a real terminal: docs/live_view.png.

    .venv/bin/python bench/live_view_shot.py                 # about 20 s; needs tmux
    .venv/bin/python bench/live_view_shot.py --from FILE     # render a saved capture

An untrained servo_dog bundle (bench/deploy_bench.py's `make_bundle`, output scale 0: the gait
prior walks) is deployed on the PyBullet body in real time with `--teleop keyboard` inside a
tmux session of 100 x 22 cells; after the soft start the script types up, up, a (vx 0.1 m/s,
yaw 0.1 rad/s), space (damping), r (re-arm) and, once the policy drives again, captures the
pane with its colours (`tmux capture-pane -e`), then q. The capture is drawn cell by cell
(rich parses the escape codes; Pillow draws with matplotlib's DejaVu Sans Mono).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "live_view.png"
COLS, ROWS = 100, 22


def capture(bundle: Path, logs: Path) -> str:
    session = "gaitforge-live-view"
    cmd = (f"cd {ROOT} && {sys.executable} -m gaitforge.cli deploy {bundle} --teleop keyboard "
           f"--realtime --live --duration 60 --log-dir {logs}; sleep 30")
    subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", str(COLS), "-y",
                    str(ROWS), cmd], check=True)

    def keys(*k: str, wait_s: float) -> None:
        subprocess.run(["tmux", "send-keys", "-t", session, *k], check=True)
        time.sleep(wait_s)

    try:
        time.sleep(12)  # start-up and the 2 s soft start
        keys("Up", "Up", "a", wait_s=1.5)
        keys(" ", wait_s=1.0)
        keys("r", wait_s=3.5)
        text = subprocess.run(["tmux", "capture-pane", "-e", "-p", "-t", session],
                              capture_output=True, text=True, check=True).stdout
        keys("q", wait_s=2.0)
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
    return text


def draw(ansi: str, out: Path) -> Path:
    import matplotlib
    from PIL import Image, ImageDraw, ImageFont
    from rich.color import Color
    from rich.style import Style
    from rich.text import Text

    fonts = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    regular = ImageFont.truetype(str(fonts / "DejaVuSansMono.ttf"), 13)
    bold = ImageFont.truetype(str(fonts / "DejaVuSansMono-Bold.ttf"), 13)
    lines = [line for line in ansi.rstrip("\n").split("\n")]
    while lines and not Text.from_ansi(lines[-1]).plain.strip():
        lines.pop()
    top = next((i for i, line in enumerate(lines) if "\u256d" in line), 0)
    lines = lines[top:]  # the view only (not TensorFlow Lite's start-up line above it)
    cw, ch = 8, 17
    bg0, fg0 = (24, 26, 33), (215, 218, 224)
    img = Image.new("RGB", (COLS * cw + 16, len(lines) * ch + 16), bg0)
    pen = ImageDraw.Draw(img)
    for row, line in enumerate(lines):
        text = Text.from_ansi(line)
        styles = [Style()] * len(text.plain)
        for span in text.spans:
            extra = span.style if isinstance(span.style, Style) else Style.parse(span.style)
            for i in range(span.start, min(span.end, len(styles))):
                styles[i] = styles[i] + extra
        for col, char in enumerate(text.plain[:COLS]):
            style = styles[col]
            fg = _rgb(style.color, Color, fg0)
            bg = _rgb(style.bgcolor, Color, bg0)
            if style.dim:
                fg = tuple((a + b) // 2 for a, b in zip(fg, bg0, strict=True))
            x, y = 8 + col * cw, 8 + row * ch
            if bg != bg0:
                pen.rectangle([x, y, x + cw - 1, y + ch - 1], fill=bg)
            pen.text((x, y), char, font=bold if style.bold else regular, fill=fg)
    img.save(out, optimize=True)
    return out


def _rgb(color, Color, default) -> tuple:  # noqa: N803 - rich's class, passed in
    if color is None or color.is_default:
        return default
    c = color.get_truecolor()
    return (c.red, c.green, c.blue)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--from", dest="source", help="a saved `tmux capture-pane -e` text")
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args()
    if args.source:
        text = Path(args.source).read_text()
    else:
        import shutil

        if not shutil.which("tmux"):
            sys.exit("needs tmux (apt-get install tmux), or --from a saved capture")
        sys.path.insert(0, str(ROOT / "bench"))
        import deploy_bench

        with tempfile.TemporaryDirectory() as tmp:
            _, bundle = deploy_bench.make_bundle(Path(tmp), output_scale=0.0)
            text = capture(bundle, Path(tmp) / "logs")
        Path(tempfile.gettempdir(), "live_view.ans").write_text(text)  # for --from
    print(draw(text, Path(args.out)))


if __name__ == "__main__":
    main()
