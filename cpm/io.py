"""Files written whole or not at all, JSON-lines logs, and the fault points of the fault-injection tests.

`atomic_write` writes to a temporary file in the target's folder, flushes it to disk and renames it over the
target: a crash at any moment leaves either the old file or the new one, never a torn one, and a failed write
leaves nothing behind. A write that fails for want of space (ENOSPC, a quota, an I/O error) is a `CPMError` naming
the file. A process killed mid-write leaves its temporary file (``.<name>.<pid>-<random>.tmp``), which
`remove_orphaned_temporaries` removes once that process is gone.

Fault injection (tests only): ``CPM_FAULT="ACTION:POINT[@N]"`` makes the N-th (default first) call of
`fault_point` whose point matches the glob POINT do ACTION in this process: ``kill`` (SIGKILL itself, as a power
cut or the OOM killer would) or ``enospc`` (raise the OSError of a full disk). Unset, `fault_point` is one
environment look-up. The points:

====================  ===================================================================================
``write:<file name>``  `atomic_write`: the new content is in the temporary file, not yet flushed or renamed
``step``               `cpm.training.loop`: a training step done (weights updated), before its steps.jsonl row
``steps-row``          a steps.jsonl row appended, before any mid-epoch checkpoint of that step
``prerender``          ``data.prerender``: the epoch's block about to be rendered
``evaluated``          the epoch evaluated, before its records and checkpoint are written
``saved``              the epoch's last.pt (and best.pt) written, before its metrics.jsonl row
``metrics-row``        the epoch's metrics.jsonl row appended
``cell``               `cpm.experiments.runs.run_cells`: a cell about to start (between cells)
``cell-trained``       a cell trained, before its summary is written
``report``             `cpm.experiments.grids.run_target`: the cells done, the report about to be written
====================  ===================================================================================
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import signal
import tempfile
from collections import Counter
from collections.abc import Iterator
from fnmatch import fnmatch
from pathlib import Path
from typing import IO, Any

from cpm.errors import CPMError

_FAULT_HITS: Counter[str] = Counter()
# `atomic_write`'s temporary files: .<target name>.<pid of the writer>-<mkstemp's random part>.tmp
_TEMPORARY = re.compile(r"\.(?P<name>.+)\.(?P<pid>\d+)-\w+\.tmp")


def fault_point(point: str) -> None:
    """Where ``CPM_FAULT`` (see the module docstring) may kill this process or fail a write; nothing when unset."""
    spec = os.environ.get("CPM_FAULT")
    if not spec:
        return
    action, _, target = spec.partition(":")
    pattern, at, nth = target.rpartition("@") if "@" in target else (target, "", "1")
    if action not in ("kill", "enospc") or not pattern or not nth.isdigit():
        raise ValueError(f"CPM_FAULT={spec!r}: expected kill:POINT[@N] or enospc:POINT[@N]")
    if not fnmatch(point, pattern):
        return
    _FAULT_HITS[spec] += 1
    if _FAULT_HITS[spec] != int(nth):
        return
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


class _Recorded:
    """A file whose failed writes are remembered: torch.save reports a failed write as a RuntimeError ("unexpected
    pos"), and `atomic_write` still says what happened (no space left) and to which file."""

    def __init__(self, file: IO) -> None:
        self.file, self.error = file, None

    def write(self, data):
        try:
            return self.file.write(data)
        except OSError as error:
            self.error = error
            raise

    def __getattr__(self, name: str):
        return getattr(self.file, name)


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "wb") -> Iterator[IO]:
    """``with atomic_write(path) as file: file.write(...)``; ``path`` appears (or is replaced) only when the block
    ends without an exception. The file gets the ordinary permissions of a new file (umask), not mkstemp's 0600.
    A write that fails (no space left, a quota, an I/O error) leaves the previous file as it was and is a
    `CPMError` naming ``path``."""
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_write: mode must be 'wb' or 'w', got {mode!r}")
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}-", suffix=".tmp", dir=path.parent)
    except OSError as error:
        raise CPMError(f"{path}: cannot write it ({error.strerror or error})") from None
    recorded = None
    try:
        with os.fdopen(handle, mode, **({"encoding": "utf-8"} if mode == "w" else {})) as file:
            recorded = _Recorded(file)
            yield recorded
            fault_point(f"write:{path.name}")
            file.flush()
            os.fsync(file.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)
        os.replace(temporary, path)
        sync_file(path.parent)
    except BaseException as error:
        Path(temporary).unlink(missing_ok=True)
        failed = recorded.error if recorded is not None and recorded.error is not None else error
        if isinstance(failed, OSError):
            raise CPMError(f"{path}: not written ({failed.strerror or failed}); "
                           f"{'the previous file is unchanged' if path.exists() else 'nothing was written'}") from None
        raise


def sync_file(path: str | Path) -> None:
    """Flush ``path`` to disk, if it exists: a log appended to (what a checkpoint then commits survives a power
    cut), or a folder after a rename in it (the rename survives too; a file system that cannot sync folders is
    left at that, the rename itself being atomic)."""
    try:
        handle = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return
    try:
        os.fsync(handle)
    except OSError:
        if not os.path.isdir(path):
            raise
    finally:
        os.close(handle)


def remove_orphaned_temporaries(folder: str | Path) -> list[Path]:
    """Remove the temporary files of `atomic_write` in ``folder`` whose writing process is gone (killed mid-write);
    those of running processes (another shard writing its summary beside this one) stay. Returns the removed."""
    removed = []
    for path in Path(folder).glob(".*.tmp"):
        match = _TEMPORARY.fullmatch(path.name)
        if match and not _running(int(match["pid"])):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def write_text_atomic(path: str | Path, text: str) -> Path:
    with atomic_write(path, "w") as file:
        file.write(text)
    return Path(path)


def append_jsonl(path: str | Path, record: dict[str, Any]) -> None:
    """One JSON object as one line at the end of ``path``."""
    with open(path, "a", encoding="utf-8") as file:
        file.write(json.dumps(record) + "\n")


def write_jsonl(path: str | Path, records: list[dict[str, Any]]) -> None:
    """``records`` as the whole of ``path``, one JSON object a line (`atomic_write`)."""
    write_text_atomic(path, "".join(json.dumps(record) + "\n" for record in records))


def last_of_each(rows: list[dict[str, Any]], key: str, *, upto: int | None = None,
                 path: str | Path = "records") -> list[dict[str, Any]]:
    """The rows of a log keyed by ``key`` (epoch, step), each key once, in its order: the last row written of each
    (a run resumed before its logs were cut back to its checkpoint wrote some twice, and the later row is the one of
    the sitting the run went on from), those above ``upto`` left out. A row without the key is a `CPMError`."""
    kept: dict[int, dict[str, Any]] = {}
    for row in rows:
        if not isinstance(row.get(key), int):
            raise CPMError(f"{path}: a row without its {key} ({str(row)[:80]})")
        if upto is None or row[key] <= upto:
            kept[row[key]] = row
    return [kept[k] for k in sorted(kept)]


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Every non-blank line of ``path`` as a JSON object (a `CPMError` names the file and line of a bad one)."""
    return _read_jsonl(path, tail_may_be_cut=False)[0]


def read_log(path: str | Path) -> tuple[list[dict[str, Any]], str | None]:
    """The records of a JSON-lines log a killed process may have cut short: ``(records, cut)``, where a last line
    that lacks its newline and is not JSON (a write cut short) is left out and described in ``cut`` (None when the
    file is whole). A bad line anywhere else is a `CPMError` naming the file and line."""
    return _read_jsonl(path, tail_may_be_cut=True)


def _read_jsonl(path: str | Path, *, tail_may_be_cut: bool) -> tuple[list[dict[str, Any]], str | None]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise CPMError(f"{path}: cannot read it ({getattr(error, 'strerror', None) or error})") from None
    lines = text.splitlines()
    records, cut = [], None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            problem = None if isinstance(record, dict) else "not a JSON object"
        except json.JSONDecodeError as error:
            record, problem = None, f"not JSON ({error.msg})"
        if problem is None:
            records.append(record)
        elif tail_may_be_cut and number == len(lines) and not text.endswith("\n"):
            cut = f"{path}:{number}: dropped a last line cut short ({len(line)} characters, no newline)"
        else:
            raise CPMError(f"{path}:{number}: {problem}")
    return records, cut
