"""Write-once publish (contracts §13): stage on the same filesystem, then one atomic rename.

An existing target with identical bytes is an idempotent no-op. Different bytes under the same
input version is a determinism defect (``<prefix>-080``). A changed input version replaces a
*working* output atomically (spec README §2); evidence (``immutable=True``) is never replaced.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal

from segment2b.errors import SegmentError
from segment2b.storage.digests import folder_digest, sha256_bytes, sha256_file, tree_bytes
from segment2b.storage.home import StorageHome

Outcome = Literal["published", "idempotent", "replaced"]


@dataclass(frozen=True)
class PublishResult:
    """Where the output landed, how many bytes, its digest and which publish branch ran.

    ``digest`` is None only for a fresh publish told not to hash (``hash_fresh=False``: a
    log versioned by its input version, whose bytes nothing needs to compare)."""

    path: Path
    bytes: int
    digest: str | None
    outcome: Outcome


def _version_file(home: StorageHome, target: Path) -> Path:
    return home.versions / (target.relative_to(home.root).as_posix().rstrip("/") + ".version")


def _record_version(home: StorageHome, target: Path, input_version: str | None) -> None:
    if input_version is None:
        return
    vf = _version_file(home, target)
    vf.parent.mkdir(parents=True, exist_ok=True)
    tmp = vf.with_name(f"{vf.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_text(input_version, encoding="ascii")
    os.replace(tmp, vf)


def _previous_version(home: StorageHome, target: Path) -> str | None:
    vf = _version_file(home, target)
    return vf.read_text(encoding="ascii") if vf.is_file() else None


def _conflict(
    home: StorageHome,
    target: Path,
    *,
    prefix: str,
    dataset_id: str,
    input_version: str | None,
    immutable: bool,
    digest_prev: str,
    digest_now: str,
) -> bool:
    """Decide what to do with an existing, different target: True = replace, else raise 080."""
    prev = _previous_version(home, target)
    if not immutable and input_version is not None and prev is not None and prev != input_version:
        return True
    raise SegmentError(
        f"{prefix}-080",
        "IMMUTABLE_OVERWRITE: target exists with different bytes"
        + (" under the same input version" if prev == input_version and prev else ""),
        dataset=dataset_id,
        key=str(target),
        context={"target_path": str(target), "digest_prev": digest_prev, "digest_now": digest_now},
    )


def _against_target(
    home: StorageHome,
    target: Path,
    digest: str,
    *,
    prefix: str,
    dataset_id: str,
    input_version: str | None,
    immutable: bool,
    digest_of: Callable[[Path], str] = sha256_file,
) -> Outcome:
    """What an existing target means for a payload of ``digest`` (``digest_of`` the target:
    SHA-256 of a file, H2 of a folder): ``idempotent`` (same bytes), ``replaced`` (different,
    allowed by :func:`_conflict`, which otherwise raises 080) or ``published`` (no target)."""
    if not target.exists():
        return "published"
    prev = digest_of(target)
    if prev == digest:
        return "idempotent"
    _conflict(
        home,
        target,
        prefix=prefix,
        dataset_id=dataset_id,
        input_version=input_version,
        immutable=immutable,
        digest_prev=prev,
        digest_now=digest,
    )
    return "replaced"


def _publish_failed(
    prefix: str, dataset_id: str, target: Path, stage: Path, exc: OSError
) -> SegmentError:
    return SegmentError(
        f"{prefix}-082",
        f"ATOMIC_PUBLISH_FAILED: {exc}",
        dataset=dataset_id,
        key=str(target),
        context={"staging_path": str(stage), "final_path": str(target)},
    )


def publish_file(
    home: StorageHome,
    target: Path,
    data: bytes,
    *,
    prefix: str,
    dataset_id: str,
    input_version: str | None = None,
    immutable: bool = False,
) -> PublishResult:
    """Publish one file via a sibling ``_tmp.<uuid>/`` folder and ``os.replace``."""
    digest = sha256_bytes(data)
    outcome = _against_target(
        home,
        target,
        digest,
        prefix=prefix,
        dataset_id=dataset_id,
        input_version=input_version,
        immutable=immutable,
    )
    if outcome != "idempotent":
        target.parent.mkdir(parents=True, exist_ok=True)
        stage = target.parent / f"_tmp.{uuid.uuid4().hex}"
        try:
            stage.mkdir()
            staged = stage / target.name
            staged.write_bytes(data)
            os.replace(staged, target)
        except OSError as exc:
            raise _publish_failed(prefix, dataset_id, target, stage, exc) from exc
        finally:
            shutil.rmtree(stage, ignore_errors=True)
    _record_version(home, target, input_version)
    return PublishResult(target, len(data), digest, outcome)


class HashingWriter:
    """Write-through sink for :func:`publish_stream`: forwards bytes to the staged file and
    feeds them to SHA-256 as they pass, so the digest never needs the whole payload in memory.
    """

    def __init__(self, fh: BinaryIO) -> None:
        self._fh = fh
        self._hash = hashlib.sha256()
        self.bytes = 0

    def write(self, data: bytes) -> int:
        self._hash.update(data)
        self._fh.write(data)
        self.bytes += len(data)
        return len(data)

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


def publish_stream(
    home: StorageHome,
    target: Path,
    write: Callable[[HashingWriter], None],
    *,
    prefix: str,
    dataset_id: str,
    input_version: str | Callable[[str], str] | None = None,
    immutable: bool = False,
) -> PublishResult:
    """:func:`publish_file` for payloads too large to hold: ``write`` streams the bytes in chunks.

    Same protocol and outcomes as :func:`publish_file` (sibling ``_tmp.<uuid>/`` stage, one
    ``os.replace``, idempotent when the existing target has the same SHA-256, ``-080`` per
    :func:`_conflict`); the difference is the order: the bytes are staged first (digest computed
    as they are written), then compared with the target. ``input_version`` may be a function of
    that digest (a content-addressed version, e.g. the roster's).
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    stage = target.parent / f"_tmp.{uuid.uuid4().hex}"
    try:
        staged = stage / target.name
        try:
            stage.mkdir()
            with staged.open("wb") as fh:
                sink = HashingWriter(fh)
                write(sink)
        except OSError as exc:
            raise _publish_failed(prefix, dataset_id, target, stage, exc) from exc
        digest, size = sink.hexdigest(), sink.bytes
        version = input_version(digest) if callable(input_version) else input_version
        outcome = _against_target(
            home,
            target,
            digest,
            prefix=prefix,
            dataset_id=dataset_id,
            input_version=version,
            immutable=immutable,
        )
        if outcome != "idempotent":
            try:
                os.replace(staged, target)
            except OSError as exc:
                raise _publish_failed(prefix, dataset_id, target, stage, exc) from exc
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    _record_version(home, target, version)
    return PublishResult(target, size, digest, outcome)


def publish_folder(
    home: StorageHome,
    target: Path,
    write: Callable[[Path], None],
    *,
    prefix: str,
    state: str,
    dataset_id: str,
    input_version: str | None = None,
    immutable: bool = False,
    digest: str | None = None,
    hash_fresh: bool = True,
) -> PublishResult:
    """Stage a whole partition folder under ``<home>/tmp/<state>_<uuid>/`` and rename it in.

    ``digest``: the H2 digest of what ``write`` stages, when the caller computed it from the
    bytes it wrote (large logs: saves reading them back); None digests the staged folder,
    unless ``hash_fresh`` is off and there is no target to compare with (the result's
    digest is then None).
    """
    home.tmp.mkdir(parents=True, exist_ok=True)
    stage = home.tmp / f"{state}_{uuid.uuid4().hex}"
    stage.mkdir()
    try:
        write(stage)
        if digest is None and (hash_fresh or target.exists()):
            digest = folder_digest(stage)
        size = tree_bytes(stage)
        outcome: Outcome = "published"
        if digest is not None:
            outcome = _against_target(
                home,
                target,
                digest,
                prefix=prefix,
                dataset_id=dataset_id,
                input_version=input_version,
                immutable=immutable,
                digest_of=folder_digest,
            )
        if outcome == "idempotent":
            _record_version(home, target, input_version)
            return PublishResult(target, size, digest, outcome)
        if outcome == "replaced":
            retired = home.tmp / f"retired_{state}_{uuid.uuid4().hex}"
            os.rename(target, retired)
            shutil.rmtree(retired, ignore_errors=True)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(stage, target)
        except OSError as exc:
            raise _publish_failed(prefix, dataset_id, target, stage, exc) from exc
        _record_version(home, target, input_version)
        return PublishResult(target, size, digest, outcome)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
