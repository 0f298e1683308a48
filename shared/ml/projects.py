"""Model projects: a team's own model code beside its contract, versioned by digest, loaded with its own code.

A project is a folder ``<models dir>/<model>/`` holding ``contract.yaml``, the module the contract's
``training.pipeline`` names (``pipeline:build`` by default: ``build(contract, params)`` in ``pipeline.py``,
returning an estimator with the scikit-learn API — a ``Pipeline``, a ``ColumnTransformer``, the team's own
transformers, any estimator with ``fit`` and ``predict``/``predict_proba``), any modules it imports
*relatively* (``from .features import Tenure``), and ``tests/``.

**The code** is every ``.py`` file of the project outside ``tests/`` (and caches): :func:`read_project`
packs it in a deterministic zip, and the sha256 of that zip is the version's *code digest*. The same code
gives the same digest on any machine, whatever the files' times.

**Isolation.** The code is never imported from the project folder. :func:`import_code` unpacks the archive
into a package of its own, named from the digest (``flywheel_model_<digest[:16]>``), and imports the module
from there. A pickled model therefore names the exact code it was fitted with, and two versions of one
project — before and after a change — load side by side in one process, each with its own classes; this is
what MLflow's ``code_paths`` do, without relying on a module name staying free. An archive is unpacked only
after its bytes match the sha256 the registry recorded (:func:`code_from_archive`).

Pure functions over bytes and folders: no AWS. Imports neither pandas nor scikit-learn.
"""

from __future__ import annotations

import difflib
import hmac
import importlib
import io
import os
import re
import sys
import tempfile
import threading
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from types import ModuleType
from typing import Any, Final, Literal

from shared.data.contract import DataContract, Task
from shared.errors import ContractError, IntegrityError
from shared.hashing import sha256_hex

__all__ = [
    "DEFAULT_PIPELINE",
    "MAX_CODE_BYTES",
    "ONNX_CONVERTERS_HOOK",
    "CodeChanges",
    "FileChange",
    "ModelCode",
    "build_estimator",
    "changed_files",
    "code_from_archive",
    "import_code",
    "onnx_converters",
    "read_project",
]

DEFAULT_PIPELINE: Final = "pipeline:build"
# Defined in the module training.pipeline names, it registers the project's own skl2onnx converters.
ONNX_CONVERTERS_HOOK: Final = "register_onnx_converters"
PACKAGE_PREFIX: Final = "flywheel_model_"
# A project's code, zipped: code, not data (a model that needs a vocabulary learns it in fit).
MAX_CODE_BYTES: Final = 5 * 1024 * 1024
_SKIPPED_DIRS: Final = frozenset({"tests", "__pycache__"})
# Every entry of the archive gets this time: the digest depends on the code, never on when it was copied.
_EPOCH: Final = (1980, 1, 1, 0, 0, 0)
_REFERENCE = re.compile(
    r"^(?P<module>[a-z_][a-z0-9_]*(?:\.[a-z_][a-z0-9_]*)*):(?P<function>[a-z_][a-z0-9_]*)$"
)
_UNPACK_LOCK = threading.Lock()


@dataclass(frozen=True)
class ModelCode:
    """A project's code as the registry keeps it: the archive, its sha256 (the code digest), its files."""

    model: str
    archive: bytes
    digest: str
    files: tuple[str, ...]

    @property
    def package(self) -> str:
        """The package this code is imported as: its own, whatever other versions are loaded."""
        return f"{PACKAGE_PREFIX}{self.digest[:16]}"


def parse_reference(reference: str) -> tuple[str, str]:
    """``module:function`` (``pipeline:build``) as its two parts; :class:`ContractError` if malformed."""
    found = _REFERENCE.match(reference)
    if found is None:
        raise ContractError(
            f"training.pipeline: {reference!r} is not 'module:function' (e.g. {DEFAULT_PIPELINE!r})",
            problems=[f"training.pipeline: expected module:function, got {reference!r}"],
        )
    return found["module"], found["function"]


def read_project(root: Path, model: str) -> ModelCode:
    """The code of the project at ``root``, packed (:class:`ContractError` if there is none, or too much)."""
    if not root.is_dir():
        raise ContractError(
            f"{model}: the contract names model code (training.pipeline), but there is no project folder "
            f"{root}; create it with `flywheel init {model}` or set FLYWHEEL_MODELS_DIR",
            problems=[f"missing project folder {root}"],
        )
    files = sorted(
        path.relative_to(root).as_posix()
        for path in root.rglob("*.py")
        if path.is_file() and not _SKIPPED_DIRS & set(path.relative_to(root).parts[:-1])
    )
    if not files:
        raise ContractError(f"{model}: the project folder {root} holds no Python code", problems=[str(root)])
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in files:
            entry = zipfile.ZipInfo(name, date_time=_EPOCH)
            entry.external_attr = 0o644 << 16
            entry.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(entry, (root / name).read_bytes())
    packed = buffer.getvalue()
    if len(packed) > MAX_CODE_BYTES:
        raise ContractError(
            f"{model}: the project's code packs to {len(packed):,} bytes, over {MAX_CODE_BYTES:,}; keep data "
            "out of the project's .py files",
            problems=[f"{len(packed)} bytes"],
        )
    return ModelCode(model=model, archive=packed, digest=sha256_hex(packed), files=tuple(files))


def code_from_archive(model: str, archive: bytes, expected_sha256: str) -> ModelCode:
    """A stored archive, after its bytes match the recorded sha256 (:class:`IntegrityError` if not):
    importing code runs it, so bytes nobody vouched for are never unpacked."""
    actual = sha256_hex(archive)
    if not hmac.compare_digest(actual, expected_sha256.strip().lower()):
        raise IntegrityError(
            f"model code sha256 {actual} does not match the recorded {expected_sha256}; not loading it",
            problems=[f"expected sha256 {expected_sha256}", f"actual sha256 {actual}"],
        )
    with zipfile.ZipFile(io.BytesIO(archive)) as opened:
        files = tuple(sorted(opened.namelist()))
    return ModelCode(model=model, archive=archive, digest=actual, files=files)


def import_code(code: ModelCode, module: str = "pipeline") -> ModuleType:
    """The project's ``module``, imported from ``code``'s own package (unpacked once per process and
    digest, under the system's temporary folder: Lambda's ``/tmp``)."""
    root = Path(os.environ.get("FLYWHEEL_CODE_CACHE") or Path(tempfile.gettempdir()) / "flywheel-model-code")
    with _UNPACK_LOCK:
        target = root / code.package
        if not target.is_dir():
            _unpack(code, root, target)
        if str(root) not in sys.path:
            sys.path.append(str(root))
        importlib.invalidate_caches()
    name = f"{code.package}.{module}"
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name == name:
            raise ContractError(
                f"{code.model}: the project has no module {module!r} ({module.replace('.', '/')}.py); "
                f"its files: {list(code.files)}",
                problems=[f"missing module {module}"],
            ) from exc
        hint = (
            f"; import the project's own modules relatively (from .{exc.name} import ...)"
            if exc.name and f"{exc.name.replace('.', '/')}.py" in code.files
            else ""
        )
        raise ContractError(
            f"{code.model}: the project's code could not be imported ({exc}){hint}", problems=[str(exc)]
        ) from exc


def _unpack(code: ModelCode, root: Path, target: Path) -> None:
    staging = Path(tempfile.mkdtemp(prefix=f".{code.package}-", dir=_made(root)))
    with zipfile.ZipFile(io.BytesIO(code.archive)) as opened:
        for name in opened.namelist():
            path = PurePosixPath(name)
            if path.is_absolute() or ".." in path.parts:
                raise IntegrityError(f"model code entry {name!r} leaves its folder", problems=[name])
            destination = staging.joinpath(*path.parts)
            destination.parent.mkdir(parents=True, exist_ok=True)
            destination.write_bytes(opened.read(name))
    # Every folder is a package, so the project's relative imports resolve inside its own code.
    for folder in [staging, *(p for p in staging.rglob("*") if p.is_dir())]:
        (folder / "__init__.py").touch(exist_ok=True)
    try:
        staging.rename(target)
    except OSError:
        if not target.is_dir():  # another process unpacked the same digest first: same bytes, keep theirs
            raise


def _made(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    return root


def build_estimator(code: ModelCode, reference: str, contract: DataContract, params: dict[str, Any]) -> Any:
    """Call the project's ``module:function`` with the contract and ``training.params``; what it returns
    must fit and predict (and give probabilities, for classification)."""
    module_name, function_name = parse_reference(reference)
    module = import_code(code, module_name)
    build = getattr(module, function_name, None)
    if not callable(build):
        raise ContractError(
            f"{code.model}: {module_name}.py defines no function {function_name}(contract, params)",
            problems=[f"missing {reference}"],
        )
    try:
        estimator = build(contract, dict(params))
    except (TypeError, ValueError, KeyError) as exc:
        raise ContractError(
            f"{code.model}: {reference}(contract, params) failed with training.params {params}: "
            f"{type(exc).__name__}: {exc}",
            problems=[str(exc)],
        ) from exc
    needed = ["fit", "predict"] + (["predict_proba"] if contract.task is Task.CLASSIFICATION else [])
    missing = [m for m in needed if not callable(getattr(estimator, m, None))]
    if missing:
        raise ContractError(
            f"{code.model}: {reference} returned a {type(estimator).__name__}, which has no {missing}; "
            "return a scikit-learn estimator or Pipeline",
            problems=[f"no {m}" for m in missing],
        )
    return estimator


def onnx_converters(code: ModelCode, reference: str) -> Callable[[Callable[..., Any]], None] | None:
    """The project's ``register_onnx_converters(register)``, when the module ``reference`` names defines one.

    Flywheel calls it with skl2onnx's ``update_registered_converter`` before converting the fitted model, so a
    transformer of the team's own can be served as ONNX; the converted model still has to match
    scikit-learn on the whole holdout. The classes it registers belong to this code's own package, so
    versions with different code register different classes."""
    module = import_code(code, parse_reference(reference)[0])
    hook = getattr(module, ONNX_CONVERTERS_HOOK, None)
    if hook is None:
        return None
    if not callable(hook):
        raise ContractError(
            f"{code.model}: {ONNX_CONVERTERS_HOOK} in the project is not a function",
            problems=[f"{ONNX_CONVERTERS_HOOK} is a {type(hook).__name__}"],
        )
    registered: Callable[[Callable[..., Any]], None] = hook
    return registered


# --- comparing two versions' code ----------------------------------------------------------------------

Change = Literal["added", "removed", "modified"]


@dataclass(frozen=True)
class FileChange:
    """One file that differs between two archives: ``added``, ``removed`` or ``modified``, with how many
    lines it gained and lost."""

    path: str
    change: Change
    lines_added: int
    lines_removed: int


@dataclass(frozen=True)
class CodeChanges:
    """What changed from one version's code to another's, file by file (the archives' entries), and the
    unified diff of every changed file, cut after ``max_lines`` lines (``lines_cut`` says how many more)."""

    files: tuple[FileChange, ...]
    diff: tuple[str, ...]
    lines_cut: int

    def paths(self, change: Change) -> list[str]:
        """The paths of the files with this kind of change."""
        return [f.path for f in self.files if f.change == change]


def changed_files(old: ModelCode, new: ModelCode, *, max_lines: int = 200) -> CodeChanges:
    """The files ``new`` adds, removes or modifies relative to ``old``, compared by content, with their
    unified diff (``a/PATH`` is ``old``'s file, ``b/PATH`` ``new``'s). Same digest, no changes."""
    before, after = _entries(old), _entries(new)
    files: list[FileChange] = []
    diff: list[str] = []
    for path in sorted(before.keys() | after.keys()):
        if before.get(path) == after.get(path):
            continue
        change: Change = "added" if path not in before else "removed" if path not in after else "modified"
        lines = list(
            difflib.unified_diff(
                _lines(before.get(path)),
                _lines(after.get(path)),
                fromfile=f"a/{path}" if path in before else "/dev/null",
                tofile=f"b/{path}" if path in after else "/dev/null",
                lineterm="",
            )
        )
        body = [line for line in lines[2:] if not line.startswith("@@")]
        files.append(
            FileChange(
                path=path,
                change=change,
                lines_added=sum(1 for line in body if line.startswith("+")),
                lines_removed=sum(1 for line in body if line.startswith("-")),
            )
        )
        diff += lines
    return CodeChanges(
        files=tuple(files), diff=tuple(diff[:max_lines]), lines_cut=max(0, len(diff) - max_lines)
    )


def _entries(code: ModelCode) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(code.archive)) as opened:
        return {name: opened.read(name) for name in opened.namelist()}


def _lines(content: bytes | None) -> list[str]:
    return [] if content is None else content.decode("utf-8", errors="replace").splitlines()
