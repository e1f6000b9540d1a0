"""Run folders: the folder a command writes its results into, written so nothing is lost.

Every command that writes a run folder (``mfllm simulate``, ``bench``, ``train ...``,
``planner-eval``) goes through :class:`RunFolder`:

- an existing non-empty folder is refused unless the command is told ``--resume`` (to
  continue the run there, which must be the same command with the same settings, the
  folder's own path aside: a folder may be resumed by any path, or as a moved copy) or
  ``--overwrite`` (its contents are removed first, so old and new files never mix);
- every check that can fail runs before the folder is created, and a folder this
  invocation created is removed again if the invocation fails before any result is in it.

Records files (``*.jsonl``) are appended one record at a time, flushed as each is written;
every other file, and every rewrite of a records file, is written to ``NAME.partial`` and
renamed over ``NAME`` (:func:`write_atomic`), so a killed run leaves the old file or the
new one, never half of one. A kill during an append can leave a truncated last line: it is
dropped on resume (:func:`read_records`), with a note.

Writes go through :func:`write_atomic` and :func:`append_record` (looked up on this module,
so the tests can interrupt a run at any write).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

CONFIG = "config.json"
PARTIAL = ".partial"
NOT_SETTINGS = frozenset({"func", "resume", "overwrite"})  # how a command runs, not what


def describe_run(config: Mapping[str, Any]) -> str:
    """``"an mfllm simulate run"`` from a ``config.json``'s ``command``."""
    command = config.get("command")
    if not isinstance(command, str):
        return "a run of an unknown command (its config.json names none)"
    return f"an mfllm {command} run"


class RunFolder:
    """The run folder ``out`` of the command ``command`` (as typed: ``"train sft"``).

    Built before anything else is done: it checks ``out`` (a folder, or nothing yet; one
    that can be written) and what is in it, and raises ``ValueError`` saying what to do
    when the folder may not be used. :meth:`writing` then creates it."""

    def __init__(
        self,
        out: str | Path,
        command: str,
        *,
        resume: bool = False,
        overwrite: bool = False,
        resumable: bool = True,
    ) -> None:
        self.path = Path(out)
        self.command = command
        self.resume = resume
        self.overwrite = overwrite
        if resume and overwrite:
            raise ValueError(
                "--resume continues the run in --out, --overwrite replaces it: pick one"
            )
        if self.path.exists() and not self.path.is_dir():
            raise ValueError(f"--out {self.path} is a file, not a folder")
        existing = next((p for p in (self.path, *self.path.parents) if p.exists()), Path("."))
        if not existing.is_dir():
            raise ValueError(f"--out {self.path}: {existing} is a file, not a folder")
        if not os.access(existing, os.W_OK | os.X_OK):
            raise ValueError(f"--out {self.path}: {existing} is not writable")
        self.previous: dict[str, Any] | None = None
        self.existed = self.path.is_dir()
        contents = [p for p in self.path.iterdir() if p.suffix != PARTIAL] if self.existed else []
        if not contents:
            return
        config_path = self.path / CONFIG
        if not config_path.is_file():
            raise ValueError(
                f"--out {self.path} holds files but no {CONFIG}: it is not a run folder; "
                "choose another --out"
            )
        try:
            self.previous = json.loads(config_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ValueError(f"{config_path} is not readable JSON ({error})") from None
        if not isinstance(self.previous, dict):
            raise ValueError(f"{config_path} is not a JSON object")
        self.previous = _current_layout(self.previous)
        what = describe_run(self.previous)
        if overwrite:
            return
        if not resume:
            choices = "pass --resume to continue it, " if resumable else ""
            raise ValueError(
                f"--out {self.path} already holds {what}; {choices}pass --overwrite to replace "
                "it, or choose another --out"
            )
        if self.previous.get("command") != command:
            raise ValueError(
                f"cannot --resume {self.path}: it holds {what}, not an mfllm {command} run; "
                "choose another --out"
            )

    @contextmanager
    def writing(
        self,
        config: Mapping[str, Any],
        *,
        may_change: Iterable[str] = (),
        results: Sequence[str] = (),
    ) -> Iterator[Path]:
        """Create the folder (clearing it first with ``overwrite``) and write
        ``config.json`` (``config`` with this ``command``); on resume, first check that
        ``config`` matches the folder's, except ``out`` and the keys ``may_change``.

        If the block raises before any of ``results`` (paths inside the folder) holds
        something, a folder this invocation created (or cleared) is removed again."""
        config = {k: v for k, v in config.items() if k not in NOT_SETTINGS}
        config["command"] = self.command
        if self.resume and self.previous is not None:
            self._check_same(config, frozenset(may_change) | {"out"})
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise ValueError(f"cannot create --out {self.path}: {error.strerror}") from None
        with _locked(self.path):
            if self.previous is None and any(
                p.suffix != PARTIAL for p in self.path.iterdir()
            ):  # another process began a run here since this one looked
                raise ValueError(
                    f"--out {self.path} was filled by another process meanwhile; "
                    "choose another --out"
                )
            if self.overwrite and self.previous is not None:
                _empty(self.path)
            for leftover in self.path.rglob(f"*{PARTIAL}"):  # a write a kill cut short
                leftover.unlink()
            fresh = self.previous is None or self.overwrite
            try:
                write_json(self.path / CONFIG, config)
                yield self.path
            except BaseException:
                if fresh and not any(_holds_something(self.path / name) for name in results):
                    self._discard()
                raise

    def _check_same(self, config: Mapping[str, Any], may_change: frozenset[str]) -> None:
        before = self.previous or {}
        config = json.loads(json.dumps(config, default=str))  # as it would be stored
        keys = (set(before) | set(config)) - may_change
        changed = sorted(k for k in keys if before.get(k) != config.get(k))
        if changed:
            details = "; ".join(f"{k}: {before.get(k)!r} -> {config.get(k)!r}" for k in changed)
            free = ", ".join(sorted(may_change - {"out"}))
            raise ValueError(
                f"cannot --resume {self.path} with other settings than its {CONFIG}: {details}; "
                f"these may not change" + (f" (these may: {free})" if free else "")
            )

    def _discard(self) -> None:
        if self.existed:
            _empty(self.path)
        else:
            shutil.rmtree(self.path, ignore_errors=True)


@contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``folder`` (released when the process ends, however it
    ends); ``ValueError`` if another process holds it: two runs writing one folder at
    once would mix their records."""
    handle = os.open(folder, os.O_RDONLY)
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ValueError(
                f"--out {folder} is being written by another mfllm process right now; wait "
                "for it to end (then --resume) or choose another --out"
            ) from None
        yield
    finally:
        os.close(handle)


def _empty(folder: Path) -> None:
    """Remove everything inside ``folder`` (a symlink is removed, not followed)."""
    for child in folder.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def _current_layout(config: dict[str, Any]) -> dict[str, Any]:
    """A ``config.json`` written before commands stored their full name, as it is written
    now: ``train`` with its ``method`` (``reinforce``/``grpo``: ``train planner``), and a
    bench's ``{"settings": ..., "command": ARGV}``; a training run's with dev scenarios
    held the ``dev_fraction`` they made moot (now ``None``)."""
    if config.get("command") == "train" and "method" in config:
        method = config["method"] if config["method"] in ("sft", "ib-tune") else "planner"
        config = {**config, "command": f"train {method}"}
    if config.get("command") in ("train sft", "train ib-tune") and config.get("dev_scenarios"):
        return {**config, "dev_fraction": None}
    if isinstance(config.get("settings"), dict) and isinstance(config.get("command"), list):
        return {**config["settings"], "command": "bench", "argv": config["command"][1:]}
    return config


def _holds_something(path: Path) -> bool:
    if path.is_dir():
        return any(_holds_something(child) for child in path.iterdir())
    return path.is_file() and path.stat().st_size > 0


def write_atomic(path: str | Path, data: str | bytes) -> None:
    """Write ``data`` to ``path`` through ``PATH.partial`` and a rename: a kill leaves the
    old file or the new one; a failed write or rename (a full disk, ``path`` a folder)
    leaves no ``PATH.partial`` behind. Parent folders are created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + PARTIAL)
    try:
        with open(partial, "wb") as handle:
            handle.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def write_json(path: str | Path, data: Any) -> None:
    """``data`` as indented JSON, atomically (:func:`write_atomic`)."""
    write_atomic(path, json.dumps(data, indent=2, default=str) + "\n")


def jsonl_text(records: Iterable[Mapping[str, Any]]) -> str:
    """Records as JSON lines (non-ASCII text kept as is)."""
    return "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records)


def append_record(handle: IO[str], record: Mapping[str, Any]) -> None:
    """Append one record to an open records file and flush it (one write, one line)."""
    handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    handle.flush()


def read_records(
    path: str | Path,
    keys: Sequence[str] = (),
    what: str = "a record",
    unique: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """The records of the JSONL file ``path`` (none if it does not exist), each a JSON
    object with ``keys`` (``what`` names them in errors); no two records may have the same
    values of the ``unique`` keys (a line repeated or from another run would count twice).

    A truncated last line (a kill during an append) is dropped with a note on stderr and
    the file rewritten without it (:func:`write_atomic`), so appends start on a clean
    line. Any other unreadable line raises ``ValueError`` naming it: that is no
    interruption, the file is damaged or was not written by the command reading it."""
    path = Path(path)
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")
    records = []
    first_line: dict[str, int] = {}  # the line of each record's unique key values
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            if number == len(lines):  # no newline after it: the write was cut short
                print(
                    f"note: dropped the truncated last line {number} of {path} (a write cut "
                    "short by an interruption); that record is made again",
                    file=sys.stderr,
                )
                break
            raise ValueError(f"{path}:{number}: not a JSON record ({error})") from None
        if not isinstance(record, dict) or any(key not in record for key in keys):
            raise ValueError(f"{path}:{number} is not {what} (needs {tuple(keys)})")
        if unique:
            identity = json.dumps([record.get(key) for key in unique])
            if identity in first_line:
                raise ValueError(
                    f"{path}:{number} repeats the record of line {first_line[identity]} "
                    f"({', '.join(f'{k} {record.get(k)!r}' for k in unique)}): the file is "
                    "damaged or holds lines of another run"
                )
            first_line[identity] = number
        records.append(record)
    if text and not text.endswith("\n"):
        write_atomic(path, jsonl_text(records))
    return records


SLUG_LENGTH = 60


def file_name(text: str) -> str:
    """A file name (no extension) for ``text``, such as a scenario id: its safe
    characters, at most :data:`SLUG_LENGTH` of them, and a hash of the whole text, so
    names stay short and two texts never share one (``synthetic/0`` ->
    ``synthetic_0-5d1f0a3c``)."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_.")[:SLUG_LENGTH] or "episode"
    return f"{slug}-{hashlib.sha256(text.encode('utf-8')).hexdigest()[:8]}"
