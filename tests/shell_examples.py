"""The shell examples of README.md and docs/*.md, run as written, and the answers the
pages show next to them, compared with what the server really answers.

A ```sh (or ```console) block holds commands; each line with ``curl`` addressing
``localhost:8080`` is an example (the block's other lines run before it, in the same
shell, so ``t=$(date +%s)`` can feed a signature). The fenced block right after it, if
it is ```http, ```text or ```json, is what the commands print, in order:

* an answer starting with ``HTTP/1.1 NNN`` (``curl -i``, ``-I`` or ``-D -``) is cut
  where the next one starts; its status and its header lines must be the real ones,
  all of them but ``Date``, in order (curl prints them so); then its body, if any;
* otherwise it is the body of a command without ``-i``.

A body is compared as JSON when both sides are JSON, else as text. ``…`` in a shown
body stands for the rest: the text before it must be how the real one begins. Values
that change from run to run match any value of their shape: a date ``YYYY-MM-DD``, a
16-hex ``run_id`` and a 32-hex job id. A ``# → NNN`` comment on a command is its
status; a command with neither an answer nor a comment must answer 2xx.

A ```text block that begins with ``$ hookline lint`` is a terminal session: each
``$ command`` runs and must print the lines under it (stdout, then stderr; ``...`` for any
lines; 12-hex pipeline versions of any value), ``$ echo $?`` the exit code before it.
"""
from __future__ import annotations

import json
import re
import shlex
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

FENCE = re.compile(r"^```(\S*)[ \t]*\n(.*?)^```[ \t]*$", re.M | re.S)
ANSWER_LANGS = ("http", "text", "json")
STATUS_LINE = re.compile(r"^HTTP/1\.1 (\d{3})\b")
COMMENT_STATUS = re.compile(r"#\s*→\s*(\d{3})\s*$")
SERVER = "localhost:8080"
VOLATILE = [re.compile(p) for p in (r"\d{4}-\d{2}-\d{2}", r"[0-9a-f]{16}", r"[0-9a-f]{32}")]
WRITE_HEAD = r" -w '\n%{http_code}'"


@dataclass
class Example:
    page: str
    line: int                 # of the command, 1-based
    setup: str                # the block's lines before this command
    command: str
    status: int | None = None           # from "# → NNN"
    answer: str | None = None           # the part of the answer block for this command
    answer_line: int = 0

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"


@dataclass
class Result:
    status: int
    head: list = field(default_factory=list)   # [(name, value)] when the command printed headers
    body: str = ""


def examples(page: Path, root: Path) -> list[Example]:
    """Every ``curl … localhost:8080`` example of ``page``, with its shown answer."""
    text, name, out = page.read_text(), page.relative_to(root).as_posix(), []
    blocks = [(m.start(), m.end(), m.group(1), m.group(2)) for m in FENCE.finditer(text)]
    for i, (start, end, lang, body) in enumerate(blocks):
        if lang not in ("sh", "console"):
            continue
        found = _commands(body, name, text.count("\n", 0, start) + 2)
        if not found:
            continue
        after = blocks[i + 1] if i + 1 < len(blocks) else None
        if after and after[2] in ANSWER_LANGS and not text[end:after[0]].strip():
            _attach(found, after[3], text.count("\n", 0, after[0]) + 2)
        out += found
    return out


def _commands(body: str, page: str, first_line: int) -> list[Example]:
    out, setup = [], []
    lines = body.replace("\\\n", " ").splitlines()
    for n, line in enumerate(lines):
        line = line.strip().removeprefix("$ ")
        if "curl " in line and SERVER in line:
            m = COMMENT_STATUS.search(line)
            command = re.sub(r"\s+#[^'\"]*$", "", line)   # a trailing comment would swallow curl's -w
            out.append(Example(page, first_line + n, "\n".join(setup), command,
                               int(m.group(1)) if m else None))
        elif line and not line.startswith("#"):
            setup.append(line)
    return out


def _attach(found: list[Example], answer: str, line: int) -> None:
    """Cut the answer block into one part per command, in order."""
    parts, current, starts = [], [], []
    for n, text in enumerate(answer.splitlines()):
        if STATUS_LINE.match(text) and any(s.strip() for s in current):
            parts.append("\n".join(current))
            current = []
        if not current:
            starts.append(line + n)
        current.append(text)
    parts.append("\n".join(current))
    parts = [p.strip("\n") for p in parts]
    if len(parts) != len(found) and len(found) > 1:
        # bodies of commands without -i are separated by a blank line before the next HTTP/1.1
        raise ValueError(f"{found[0].page}:{line}: {len(parts)} answers for {len(found)} commands")
    for ex, part, at in zip(found, parts, starts):
        ex.answer, ex.answer_line = part, at


def run(ex: Example, address: str, cwd: Path) -> Result:
    """The command in bash, its output split into status, headers and body."""
    shows_head = bool(re.search(r"\s-(?:[a-zA-Z]*[iI][a-zA-Z]*|D -)\s", ex.command + " "))
    script = f"set -eo pipefail\n{ex.setup}\n{ex.command}{WRITE_HEAD}".replace(SERVER, address)
    done = subprocess.run(["bash", "-c", script], cwd=cwd, capture_output=True, timeout=30)
    if done.returncode != 0:
        raise AssertionError(f"{ex.id}: exit {done.returncode}: {done.stderr.decode(errors='replace')}")
    output, _, status = done.stdout.decode(errors="replace").rpartition("\n")
    if not shows_head:
        return Result(int(status), [], output)
    head, _, body = output.replace("\r\n", "\n").partition("\n\n")
    lines = head.splitlines()[1:]
    return Result(int(status), [tuple(p.strip() for p in h.split(":", 1)) for h in lines], body)


def differences(ex: Example, got: Result) -> list[str]:
    """What the page shows that the real answer does not match."""
    if ex.answer is None:
        want = ex.status
        ok = got.status == want if want else 200 <= got.status < 300
        return [] if ok else [f"status {got.status}, not {want or '2xx'}: {got.body[:300]}"]
    problems = []
    if ex.status and got.status != ex.status:
        problems.append(f"status {got.status}, not {ex.status} (the # → comment)")
    m = STATUS_LINE.match(ex.answer)
    if not m:
        return problems + _body(ex.answer, got.body)
    head, _, body = ex.answer.partition("\n\n")
    if got.status != int(m.group(1)):
        problems.append(f"status {got.status}, not {m.group(1)}")
    shown = [tuple(p.strip() for p in line.split(":", 1)) for line in head.splitlines()[1:]]
    real = [(n, v) for n, v in got.head if n.lower() != "date"]
    if [(n.lower(), v) for n, v in shown] != [(n.lower(), v) for n, v in real]:
        problems.append("headers differ (all but Date are shown, in order):\n  shown " + "; ".join(
            f"{n}: {v}" for n, v in shown) + "\n  real  " + "; ".join(f"{n}: {v}" for n, v in real))
    return problems + (_body(body, got.body) if body.strip() else [])


def _body(shown: str, real: str) -> list[str]:
    shown, real = shown.strip(), real.replace("\r\n", "\n").strip()   # CSV's CRLF looks like LF on a terminal
    if "…" in shown:
        begin = shown.split("…", 1)[0].rstrip()
        return [] if real.startswith(begin) else [f"body does not begin with {begin[:200]!r}: {real[:300]!r}"]
    try:
        want, have = json.loads(shown), json.loads(real)
    except ValueError:
        return [] if shown == real else [f"body {real[:400]!r}, not {shown[:400]!r}"]
    return [] if same(want, have) else [f"body {real[:400]}, not {shown[:400]}"]


def same(want, have) -> bool:
    """Equal, except that a shown value of a volatile shape matches any value of that shape."""
    if isinstance(want, dict) and isinstance(have, dict):
        return want.keys() == have.keys() and all(same(want[k], have[k]) for k in want)
    if isinstance(want, list) and isinstance(have, list):
        return len(want) == len(have) and all(same(w, h) for w, h in zip(want, have))
    if isinstance(want, str) and isinstance(have, str):
        return want == have or any(p.fullmatch(want) and p.fullmatch(have) for p in VOLATILE)
    return type(want) is type(have) and want == have


# --- console transcripts: ```text blocks of `$ hookline lint …` ------------------------------------

HEX12 = re.compile(r"\b[0-9a-f]{12}\b")


@dataclass
class Transcript:
    page: str
    line: int
    steps: list          # [(command, [expected output lines])]; "..." stands for any lines

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"


def transcripts(page: Path, root: Path, prefix: str = "$ hookline lint") -> list[Transcript]:
    """The ```text blocks of ``page`` that begin with ``prefix``: a terminal session, each
    ``$ command`` followed by what it prints (``$ echo $?`` by the exit code)."""
    text, out = page.read_text(), []
    for m in FENCE.finditer(text):
        if m.group(1) != "text" or not m.group(2).startswith(prefix):
            continue
        steps = []
        for line in m.group(2).splitlines():
            if line.startswith("$ "):
                steps.append((line[2:], []))
            else:
                steps[-1][1].append(line)
        out.append(Transcript(page.relative_to(root).as_posix(), text.count("\n", 0, m.start()) + 1, steps))
    return out


def replay(transcript: Transcript, hookline: str, cwd: Path, env: dict) -> list[str]:
    """Run each command (``hookline`` → the given one); what differs from the shown output."""
    problems, code = [], None
    for command, shown in transcript.steps:
        if command == "echo $?":
            got = [str(code)]
        else:
            args = shlex.split(command)
            done = subprocess.run([hookline, *args[1:]], cwd=cwd, env=env, capture_output=True, text=True,
                                  timeout=120)
            code, got = done.returncode, done.stdout.splitlines() + done.stderr.splitlines()
        if not _lines_match([HEX12.sub("<hex>", s) for s in shown], [HEX12.sub("<hex>", g) for g in got]):
            problems.append(f"`{command}` printed:\n  " + "\n  ".join(got[:40]))
    return problems


def _lines_match(shown: list[str], got: list[str]) -> bool:
    """Line by line; a shown ``...`` matches any number of lines."""
    if not shown:
        return not got
    if shown[0] == "...":
        return any(_lines_match(shown[1:], got[i:]) for i in range(len(got) + 1))
    return bool(got) and shown[0] == got[0] and _lines_match(shown[1:], got[1:])
