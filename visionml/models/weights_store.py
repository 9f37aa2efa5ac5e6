"""Pretrained weights carried to a machine without network: download, install, list.

``download`` (on a connected machine) fetches the files the registry names for some models into a
folder and writes ``weights.json`` beside them: per file, the URL it came from, its size and its
SHA-256. ``install`` (on the offline machine) checks every file against ``weights.json`` and copies
it to the place training reads it from (``weights.weights_location``: torch's hub cache, where
timm weights are kept too). ``status`` says, per registered model, whether that file is there.

Where a file is fetched from: the URL torchvision or timm publishes, or ``BASE/<file name>`` when a
base URL is given (``--base-url`` or ``VISIONML_WEIGHTS_BASE_URL``): a mirror holding the files under
their cache names, which is exactly what a ``download`` folder is, so one served over HTTP (or read
as ``file://``) is a mirror for other machines. Training's own download (``weights.ensure_cached``)
honours the same variable.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ..errors import UsageError, VisionMLError
from ..fileio import atomic_path, write_json

BASE_URL_VARIABLE = "VISIONML_WEIGHTS_BASE_URL"
MANIFEST = "weights.json"
FORMAT_VERSION = 1
TIMEOUT_SECONDS = 60
_CHUNK = 1 << 20
_SHA256 = re.compile(r"[0-9a-f]{64}")
_HASH_IN_NAME = re.compile(r"-([a-f0-9]{6,})\.")  # torch.hub's HASH_REGEX, at least 6 digits


@dataclass(frozen=True)
class WeightsFile:
    """One pretrained file and the registered models that start from it."""

    ref: str  # the registry's reference, "torchvision:ResNet18_Weights.IMAGENET1K_V1" or "timm:model.tag"
    url: str  # where torchvision / timm publish it
    path: Path  # where training reads it (torch's hub cache)
    models: tuple[str, ...]

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def source(self) -> str:
        return self.ref.partition(":")[0]


def base_url(explicit: str | None = None) -> str | None:
    """The mirror to fetch from: ``explicit`` (``--base-url``), else ``VISIONML_WEIGHTS_BASE_URL``."""
    value = explicit if explicit is not None else os.environ.get(BASE_URL_VARIABLE, "")
    return value.strip().rstrip("/") or None


def source_url(url: str, file_name: str, base: str | None = None) -> str:
    """The URL a weights file is fetched from: ``BASE/<file name>`` with a base URL, else ``url``."""
    base = base_url(base)
    return f"{base}/{file_name}" if base else url


def files_for(model_names) -> list[WeightsFile]:
    """The weights files ``model_names`` start from, each once (R-CNNs on a ResNet-18 share resnet18's)."""
    from .registry import get_spec
    from .weights import weights_location

    by_ref: dict[str, list[str]] = {}
    for name in model_names:
        spec = get_spec(name)
        if not spec.weights:
            raise UsageError(f"model {spec.name} has no pretrained weights to download; it trains from scratch")
        by_ref.setdefault(spec.weights, [])
        if spec.name not in by_ref[spec.weights]:
            by_ref[spec.weights].append(spec.name)
    files = []
    for ref, models in by_ref.items():
        url, path = weights_location(ref)
        files.append(WeightsFile(ref, url, path, tuple(models)))
    return files


# -- download ---------------------------------------------------------------------------------------


def download(model_names, out_dir, *, base: str | None = None, log=print, progress: bool | None = None) -> dict:
    """Fetch the weights of ``model_names`` into ``out_dir`` and record them in ``out_dir/weights.json``.

    A file already in the folder whose size and SHA-256 match its ``weights.json`` entry is kept;
    every other is fetched again. ``weights.json`` is rewritten after each file, so an interrupted
    download keeps what it finished. Returns the manifest written."""
    from .weights import OFFLINE_VARIABLES, offline

    out_dir = Path(out_dir)
    files = files_for(model_names)
    if offline():
        on = [v for v in OFFLINE_VARIABLES if os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on")]
        raise VisionMLError(f"offline mode is on ({' / '.join(on)} is set) and this command downloads: "
                            "run it with that variable unset or 0 on a "
                            "machine with network, then `visionml weights install DIR` here")
    manifest = _read_existing(out_dir)
    entries = {entry["file"]: entry for entry in manifest["files"]}
    for item in files:
        target = out_dir / item.name
        known = entries.get(item.name)
        if known and _matches(target, known):
            log(f"{target}: already downloaded (SHA-256 checked)")
            entry = known
        else:
            url = source_url(item.url, item.name, base)
            log(f"fetching {url}")
            size, sha256 = fetch(url, target, progress=progress)
            log(f"{target}: {size / 1e6:.1f} MB, SHA-256 {sha256}")
            _check_published_prefix(item, url, target, sha256, log)
            entry = {"file": item.name, "weights": item.ref, "source": item.source, "url": url,
                     "published_url": item.url, "size": size, "sha256": sha256, "models": []}
        entry["models"] = sorted(set(entry.get("models", [])) | set(item.models))
        entries[item.name] = entry
        manifest["files"] = sorted(entries.values(), key=lambda e: e["file"])
        write_json(out_dir / MANIFEST, manifest)
    return manifest


def _check_published_prefix(item: WeightsFile, url: str, target: Path, sha256: str, log) -> None:
    """torchvision names each file after the start of its SHA-256 (``resnet18-f37072fd.pth``), as
    torch.hub's ``check_hash`` reads it: bytes from the publisher that do not match are refused; from
    a mirror, the line says the mirror serves other bytes under that name."""
    match = _HASH_IN_NAME.search(item.name) if item.source == "torchvision" else None
    if match is None or sha256.startswith(match.group(1)):
        return
    what = f"{target}: its SHA-256 does not start with {match.group(1)}, the hash torchvision publishes in its name"
    if url == item.url:
        target.unlink()
        raise VisionMLError(f"{what}: the download is not the published file; run the command again")
    log(f"warning: {what}: {url} serves other bytes than torchvision published")


def fetch(url: str, target, *, progress: bool | None = None, timeout: float = TIMEOUT_SECONDS) -> tuple[int, str]:
    """Download ``url`` to ``target`` (a temporary name, renamed once complete); (bytes, SHA-256).

    A failure (no connection, an HTTP error, a transfer cut short) raises VisionMLError naming the URL
    and leaves ``target`` as it was."""
    from tqdm import tqdm

    request = urllib.request.Request(url, headers={"User-Agent": "visionml"})
    digest = hashlib.sha256()
    size = 0
    show_bar = sys.stderr.isatty() if progress is None else progress
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response, atomic_path(target) as tmp, \
                open(tmp, "wb") as out:
            expected = response.headers.get("Content-Length")
            expected = int(expected) if expected and expected.isdigit() else None
            with tqdm(total=expected, unit="B", unit_scale=True, desc=Path(target).name, file=sys.stderr,
                      disable=not show_bar, leave=False) as bar:
                while chunk := _read(response, url):
                    out.write(chunk)
                    digest.update(chunk)
                    size += len(chunk)
                    bar.update(len(chunk))
            if expected is not None and size != expected:
                raise VisionMLError(f"cannot download {url}: the transfer stopped after {size} of {expected} "
                                    f"bytes; run the command again")
    except urllib.error.HTTPError as exc:
        raise VisionMLError(f"cannot download {url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        reason = getattr(exc, "reason", exc)
        raise VisionMLError(f"cannot download {url}: {reason}. This command needs network access (or a "
                            f"mirror: --base-url / {BASE_URL_VARIABLE})") from None
    return size, digest.hexdigest()


def _read(response, url: str) -> bytes:
    # A connection lost mid-transfer is the network's failure, not the file's: said so here, before
    # atomic_path would report it as a failure to write the target.
    try:
        return response.read(_CHUNK)
    except (OSError, http.client.HTTPException) as exc:
        raise VisionMLError(f"cannot download {url}: the connection failed during the transfer ({exc}); "
                            "run the command again") from None


def _read_existing(out_dir: Path) -> dict:
    """The folder's weights.json to add to, or a new one."""
    path = out_dir / MANIFEST
    fresh = {"format_version": FORMAT_VERSION, "versions": _versions(), "files": []}
    if not path.exists():
        return fresh
    manifest, problems = read_manifest(out_dir)
    if problems:
        raise VisionMLError("\n".join(problems) + f"\n{path} is not one `visionml weights download` wrote "
                            "or it was changed: choose another -o folder, or delete it")
    return {**manifest, "versions": _versions()}


def _matches(path: Path, entry: dict) -> bool:
    return path.is_file() and path.stat().st_size == entry["size"] and file_sha256(path) == entry["sha256"]


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for package in ("visionml", "torch", "torchvision", "timm"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            pass
    return found


def file_sha256(path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


# -- weights.json -----------------------------------------------------------------------------------


def read_manifest(folder) -> tuple[dict, list[str]]:
    """``folder/weights.json`` and its problems, each as ``FILE: field: reason``."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        hint = "" if Path(folder).is_dir() else " (the folder does not exist)"
        return {}, [f"{path}: not found{hint}; pass the folder `visionml weights download -o DIR` wrote"]
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return {}, [f"{path}: cannot be read as JSON ({exc})"]
    if not isinstance(manifest, dict):
        return {}, [f"{path}: must be a JSON object"]
    if manifest.get("format_version") != FORMAT_VERSION:
        return {}, [(f"{path}: format_version: expected {FORMAT_VERSION}, got {manifest.get('format_version')!r}; "
                     "download with the visionml version installed here")]
    files = manifest.get("files")
    if not isinstance(files, list):
        return {}, [f"{path}: files: must be a list"]
    problems = [p for i, entry in enumerate(files) for p in _entry_problems(path, i, entry)]
    return manifest, problems


def _entry_problems(path: Path, i: int, entry) -> list[str]:
    where = f"{path}: files[{i}]"
    if not isinstance(entry, dict):
        return [f"{where}: must be an object"]
    problems = []
    name = entry.get("file")
    # A bare file name: an entry may never place or read a file outside its folder.
    if not isinstance(name, str) or not name or name != Path(name).name or name in (".", ".."):
        problems.append(f"{where}.file: must be a plain file name, got {name!r}")
    if not isinstance(entry.get("weights"), str) or ":" not in entry.get("weights", ""):
        problems.append(f"{where}.weights: must be a registry reference such as "
                        f"'torchvision:ResNet18_Weights.IMAGENET1K_V1', got {entry.get('weights')!r}")
    size = entry.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        problems.append(f"{where}.size: must be a whole number of bytes, got {size!r}")
    if not isinstance(entry.get("sha256"), str) or not _SHA256.fullmatch(entry["sha256"]):
        problems.append(f"{where}.sha256: must be 64 lowercase hex digits, got {entry.get('sha256')!r}")
    return problems


# -- install ----------------------------------------------------------------------------------------


def install(folder, *, log=print) -> list[Path]:
    """Check every file ``folder/weights.json`` lists, then copy each where training reads it.

    Nothing is installed unless every file is intact and belongs where this machine's torchvision /
    timm look for it; the error lists each file that is not. Returns the installed paths."""
    from .weights import weights_location

    folder = Path(folder)
    if folder.name == MANIFEST and folder.is_file():  # the manifest given instead of its folder
        folder = folder.parent
    manifest, problems = read_manifest(folder)
    if problems:
        raise VisionMLError("\n".join(problems))
    if not manifest["files"]:
        raise VisionMLError(f"{folder / MANIFEST}: files: lists no weights; run `visionml weights download "
                            f"MODEL... -o {folder}` first")
    plan = []
    for i, entry in enumerate(manifest["files"]):
        source = folder / entry["file"]
        problem = _check_file(source, entry)
        if problem is None:
            try:
                _, destination = weights_location(entry["weights"])
            except (VisionMLError, ValueError, KeyError, ImportError) as exc:
                problem = f"{folder / MANIFEST}: files[{i}].weights: {entry['weights']!r} is not known here ({exc})"
            else:
                if destination.name != entry["file"]:
                    problem = (f"{source}: this machine's {entry.get('source', 'library')} reads "
                               f"{entry['weights']} from {destination.name}, not {entry['file']} (downloaded with "
                               f"{_versions_text(manifest)}); download again with the versions installed here")
        if problem:
            problems.append(problem)
        else:
            plan.append((source, destination, entry))
    if problems:
        raise VisionMLError("nothing was installed:\n" + "\n".join(problems))
    installed = []
    for source, destination, entry in plan:
        if destination.is_file() and destination.stat().st_size == entry["size"] \
                and file_sha256(destination) == entry["sha256"]:
            log(f"{destination}: already installed")
        else:
            _copy_checked(source, destination, entry["sha256"])
            log(f"{destination}: installed ({entry['weights']}, for {', '.join(entry.get('models', [])) or '-'})")
        installed.append(destination)
    return installed


def _check_file(path: Path, entry: dict) -> str | None:
    """Why ``path`` is not the file ``entry`` records, or None."""
    if not path.is_file():
        return f"{path}: missing; copy the whole download folder again"
    size = path.stat().st_size
    if size != entry["size"]:
        return (f"{path}: {size} bytes, but {MANIFEST} records {entry['size']} (a partial copy?); copy it again "
                f"or download it again")
    actual = file_sha256(path)
    if actual != entry["sha256"]:
        return (f"{path}: SHA-256 mismatch: the file's is {actual}, {MANIFEST} records {entry['sha256']} (damaged "
                f"or changed); copy it again or download it again")
    return None


def _copy_checked(source: Path, destination: Path, sha256: str) -> None:
    """Copy ``source`` to ``destination`` through a temporary name, renamed only if the copy's hash is right."""
    digest = hashlib.sha256()
    with atomic_path(destination) as tmp, open(source, "rb") as src, open(tmp, "wb") as out:
        while chunk := src.read(_CHUNK):
            out.write(chunk)
            digest.update(chunk)
        if digest.hexdigest() != sha256:
            raise VisionMLError(f"{source}: changed while it was copied to {destination}; run the install again")


def _versions_text(manifest: dict) -> str:
    versions = manifest.get("versions") or {}
    return ", ".join(f"{k} {v}" for k, v in versions.items() if k != "visionml") or "other versions"


# -- list -------------------------------------------------------------------------------------------


def status(task=None) -> list[dict]:
    """Per registered model (of ``task``): its weights file, where training reads it, and whether it is there."""
    from ..tasks import get_task
    from .registry import all_specs
    from .weights import weights_location

    task = get_task(task) if task is not None else None
    rows = []
    for spec in all_specs():
        if task is not None and task.name not in spec.tasks:
            continue
        row = {"name": spec.name, "tasks": list(spec.tasks), "weights": spec.weights, "file": None,
               "path": None, "present": False, "size": None}
        if spec.weights:
            _, path = weights_location(spec.weights)
            row.update(file=path.name, path=str(path), present=path.is_file())
            if row["present"]:
                row["size"] = path.stat().st_size
        rows.append(row)
    return rows
