"""Checkpoint signatures: a checkpoint is unpickled only if this user's installation wrote it.

A checkpoint is a pickle (Avalanche's dill checkpoints), and unpickling runs whatever code the
file names. A run directory can come from anywhere (a colleague's tarball, a shared scratch
folder), so the file alone proves nothing. Beside each checkpoint lies an HMAC-SHA256 of its
bytes under a per-user secret that is kept outside every run directory; only a checkpoint whose
HMAC matches is loaded without ``--trust-checkpoint``.

The secret lives in ``$COLLAPSEBENCH_HOME/checkpoint.key`` (default
``~/.config/collapsebench/checkpoint.key``), created on first use with mode 0600.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from collapsebench.errors import CollapsebenchError

HOME_ENV = "COLLAPSEBENCH_HOME"
KEY_FILE = "checkpoint.key"
SUFFIX = ".hmac"


def key_path() -> Path:
    home = os.environ.get(HOME_ENV)
    base = Path(home) if home else Path.home() / ".config" / "collapsebench"
    return base / KEY_FILE


def _secret() -> bytes:
    path = key_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            # O_EXCL: two runs starting at once must not each write a different key.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_hex(32) + "\n")
        key = path.read_text().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise CollapsebenchError(
            f"The checkpoint signing key {str(path)!r} could not be read or created ({type(exc).__name__}: {exc}). "
            f"Set {HOME_ENV} to a writable directory of your own.") from None
    if len(key) < 32:
        raise CollapsebenchError(f"The checkpoint signing key {str(path)!r} is damaged; delete it "
                                 "(checkpoints signed with it will then need --trust-checkpoint).")
    return key.encode()


def digest(path: Path) -> str:
    mac = hmac.new(_secret(), digestmod=hashlib.sha256)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            mac.update(block)
    return mac.hexdigest()


def signature_path(path: Path) -> Path:
    return Path(path).with_name(Path(path).name + SUFFIX)


def _write_signatures(path: Path, values: list[str]) -> None:
    target = signature_path(path)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text("".join(v + "\n" for v in values))
    os.replace(tmp, target)


def _known(path: Path) -> list[str]:
    try:
        return [line.strip() for line in signature_path(path).read_text().splitlines() if line.strip()][:2]
    except (OSError, UnicodeDecodeError):
        return []


def install(tmp: Path, path: Path) -> None:
    """Move the freshly written ``tmp`` onto ``path`` and sign it.

    The new signature is added before the file moves and the old one dropped after: a run killed
    in between leaves a checkpoint that still verifies, whichever of the two it is.
    """
    new = digest(tmp)
    _write_signatures(path, [new, *_known(path)[:1]])
    os.replace(tmp, path)
    _write_signatures(path, [new])


def check(path: Path, trust: bool = False) -> None:
    """Raise unless ``path`` carries this installation's signature (or ``trust`` is given)."""
    if trust:
        return
    known = _known(path)
    actual = digest(path)
    if any(hmac.compare_digest(actual, value) for value in known):
        return
    why = "carries no signature" if not known else "does not match its signature"
    raise CollapsebenchError(
        f"The checkpoint {str(path)!r} {why} from this installation, so it was not loaded: a checkpoint is a "
        "Python pickle, and loading one can run any code it holds. It was written by another user or machine, "
        f"by a collapsebench before checkpoints were signed, or it was altered. If you trust where it came from, "
        f"resume with: collapsebench run --resume {Path(path).parent} --trust-checkpoint; "
        "otherwise delete it to start the run over.")


def remove(path: Path) -> None:
    signature_path(path).unlink(missing_ok=True)
