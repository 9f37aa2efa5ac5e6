"""Where an ``image_url`` points: local paths, ``file://``, ``azureml://`` datastores and ``http(s)://``.

Resolution is pure string work (no filesystem access) so that it can run on every line of a
huge JSONL file; only :func:`fetch` touches the network.

The root rule: a relative path may not leave its root (the JSONL's folder for a relative
``image_url``, the MLTable's folder for its ``paths:``, the datastore folder for ``azureml://``),
so ``../../etc/passwd`` is refused. The check is lexical (``..`` parts), not a ``realpath``: a
symlink inside the root is followed, as whoever owns that folder placed it there.

An absolute path or a ``file://`` URL is read as given: naming a file by its absolute path is the
data author's own choice, as with any program that takes a path. So a JSONL file from someone
else can point visionml at any file the user can read, e.g. ``/etc/passwd``. Such a file is only
ever opened as an image (validate reads its header and reports a non-image as "not an image
file"; training decodes it); check data from others before training on it.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit

from ..errors import UsageError, VisionMLError
from ..fileio import atomic_path

DATASTORES_ENV = "VISIONML_DATASTORES"
CACHE_ENV = "VISIONML_CACHE_DIR"
DEFAULT_TIMEOUT = 30.0
"""Seconds for a whole download (connect, every read, and the total)."""
DEFAULT_MAX_BYTES = 64 * 1024 * 1024
"""Largest image accepted over http(s); bigger answers are cut off and refused."""

# Both the long form of Azure's docs and the short workspace-relative form:
#   azureml://subscriptions/S/resourcegroups/R/workspaces/W/datastores/NAME/paths/P
#   azureml://datastores/NAME/paths/P
_AZUREML = re.compile(r"azureml://(?:[^?#]*?/)?datastores/([^/]+)/paths/(.+)", re.IGNORECASE)


def parse_datastores(specs=None, env: dict | None = None) -> dict[str, str]:
    """Datastore name -> local folder, from ``VISIONML_DATASTORES="a=DIR,b=DIR"`` overridden by
    ``--datastore NAME=DIR`` options (``specs``). Folders are made absolute now, so a later
    ``chdir`` cannot change what a line points to."""
    env = os.environ if env is None else env
    merged: dict[str, str] = {}
    from_env = [s for s in env.get(DATASTORES_ENV, "").split(",") if s.strip()]
    for origin, items in ((f"${DATASTORES_ENV}", from_env), ("--datastore", list(specs or []))):
        for spec in items:
            name, sep, folder = spec.partition("=")
            name, folder = name.strip(), folder.strip()
            if not sep or not name or not folder:
                raise UsageError(f"{origin}: {spec!r} is not NAME=DIR (e.g. workspaceblobstore=/data/blob)")
            merged[name] = os.path.abspath(os.path.expanduser(folder))
    return merged


def resolve_image_url(url: str, jsonl_dir: str, datastores: dict[str, str] | None = None, *,
                      root_name: str = "the JSONL file's folder") -> str:
    """The local path (or the http(s) URL, unchanged) that ``url`` names.

    ``jsonl_dir`` is the folder of the JSONL file the line came from (``root_name`` says so in
    messages); it should be absolute. Raises ``ValueError`` with a reason for an unsupported form
    or a relative path that escapes its root. Absolute paths are returned as given (see above).
    """
    if "\x00" in url:
        raise ValueError("contains a NUL character")
    head = url[:10].lower()
    if head.startswith(("http://", "https://")):
        if not urlsplit(url).hostname:
            raise ValueError(f"{url!r} has no host name")
        return url
    if head.startswith("azureml:/"):
        return _resolve_azureml(url, jsonl_dir, datastores or {}, root_name)
    if head.startswith("file:"):
        return _resolve_file_url(url)
    if "://" in url:
        scheme = url.split("://", 1)[0]
        raise ValueError(f"unsupported URL scheme {scheme!r}; use a path, file://, azureml:// or http(s)://")
    if url.startswith("/"):
        return os.path.normpath(url)  # the author's choice: not confined to a root
    if not url:
        raise ValueError("is empty")
    return join_under(jsonl_dir, url, root_name)


def join_under(root: str, relative: str, what: str) -> str:
    """``root/relative``, refusing any result outside ``root`` (lexically: ``..`` and absolute parts)."""
    if "./" not in relative and "//" not in relative and ".." not in relative and relative[:1] != "/":
        # Fast path for the common case: already normal, and nothing in it can climb out of root.
        return f"{root}/{relative}" if not root.endswith("/") else root + relative
    joined = os.path.normpath(os.path.join(root, relative))
    base = os.path.normpath(root)
    if joined != base and not joined.startswith(base.rstrip("/") + "/"):
        raise ValueError(f"{relative!r} escapes {what} ({base}); '..' and absolute parts may not "
                         "leave it: use an absolute path or an azureml:// URI with --datastore")
    return joined


def _resolve_azureml(url: str, jsonl_dir: str, datastores: dict[str, str], root_name: str) -> str:
    match = _AZUREML.fullmatch(url)
    if not match:
        raise ValueError(f"{url!r} is not an azureml datastore URI; expected "
                         "azureml://subscriptions/.../datastores/<name>/paths/<path>")
    name, rel = match.group(1), unquote(match.group(2))
    if "\x00" in rel:
        raise ValueError("contains a NUL character")
    folder = datastores.get(name) or datastores.get(name.lower())
    if folder is None:
        return join_under(jsonl_dir, rel, f"{root_name} (datastore {name!r} is not mapped; "
                                          f"map it with --datastore {name}=DIR)")
    return join_under(folder, rel, f"datastore {name!r}")


def _resolve_file_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        raise ValueError(f"file URL {url!r} names host {parts.netloc!r}; only local files are read")
    path = unquote(parts.path)
    if "\x00" in path:
        raise ValueError("contains a NUL character")
    if not path.startswith("/"):
        raise ValueError(f"file URL {url!r} must hold an absolute path (file:///dir/image.jpg)")
    return os.path.normpath(path)


def is_url(location: str) -> bool:
    return location[:8].lower().startswith(("http://", "https://"))


def default_cache_dir() -> Path:
    """``$VISIONML_CACHE_DIR/images``, else ``$XDG_CACHE_HOME/visionml/images``, else ``~/.cache/visionml/images``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]) / "images"
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "visionml" / "images"


def cache_path(url: str, cache_dir=None) -> Path:
    """Where ``url`` is (or will be) cached: keyed by the URL's hash, keeping a short extension."""
    suffix = os.path.splitext(urlsplit(url).path)[1].lower()
    if not re.fullmatch(r"\.[a-z0-9]{1,5}", suffix):
        suffix = ""
    key = hashlib.sha256(url.encode("utf-8")).hexdigest()
    return Path(cache_dir or default_cache_dir()) / f"{key}{suffix}"


def fetch(url: str, cache_dir=None, *, timeout: float = DEFAULT_TIMEOUT,
          max_bytes: int = DEFAULT_MAX_BYTES) -> Path:
    """Download ``url`` once into the cache and return the cached file.

    The file is written under a temporary name and renamed when complete, so an interrupted or
    refused download never leaves a partial image that a later run would trust; the file is
    created with the user's umask, like any other file visionml writes. Raises ``ValueError``
    (HTTP error, timeout, over ``max_bytes``, or the cache cannot be written: the message names
    the file and what to do), which the callers report per image.
    """
    target = cache_path(url, cache_dir)
    if target.is_file():
        return target
    try:
        with atomic_path(target) as tmp, open(tmp, "wb") as out:
            _download(url, out, timeout, max_bytes)
    except VisionMLError as exc:  # the cache folder cannot be written (disk full, permissions)
        raise ValueError(f"{exc} (the download cache; set ${CACHE_ENV} to move it)") from None
    return target


def _download(url: str, out, timeout: float, max_bytes: int) -> None:
    import httpx  # only users with http(s) image URLs pay for the import

    deadline = time.monotonic() + timeout
    try:
        with httpx.stream("GET", url, timeout=timeout, follow_redirects=True) as resp:
            if resp.status_code != 200:
                raise ValueError(f"download failed: HTTP {resp.status_code} from {url}")
            declared = resp.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > max_bytes:
                raise ValueError(f"download refused: {url} is {declared} bytes, over the cap of {max_bytes}")
            received = 0
            for chunk in resp.iter_bytes():
                received += len(chunk)
                if received > max_bytes:
                    raise ValueError(f"download refused: {url} is over the cap of {max_bytes} bytes")
                if time.monotonic() > deadline:
                    raise ValueError(f"download timed out after {timeout:g} s: {url}")
                out.write(chunk)
    except httpx.TimeoutException as exc:
        raise ValueError(f"download timed out after {timeout:g} s: {url}") from exc
    except httpx.HTTPError as exc:
        raise ValueError(f"download failed: {url}: {exc}") from exc
