"""Where a sweep's study lives: a journal file in the run folder by default (embedded, nothing
to start, safe for several local processes), or a database URL that workers on other machines
share (``postgresql://...``, ``sqlite:///...``)."""

from __future__ import annotations

import time
from pathlib import Path

import optuna

from ..errors import VisionMLError

DB_SCHEMES = ("postgresql", "postgres", "mysql", "sqlite")
RECONNECT_SECONDS = 120.0
"""How long a worker keeps retrying a database that stopped answering (a restart, a failover)
before it gives up with one error line; finished trials are in the database either way."""


def storage_url_for(run_dir: Path) -> str:
    return str((run_dir / "sweep.journal").resolve())


def open_storage(url: str):
    """A database URL -> Optuna's RDB storage; a file path -> a journal file storage."""
    scheme = url.split(":", 1)[0].split("+", 1)[0].lower() if "://" in url else ""
    if scheme in DB_SCHEMES:
        if scheme == "postgres":
            url = "postgresql" + url[len("postgres"):]
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs={"pool_pre_ping": True},
                                              heartbeat_interval=None)
        except Exception as exc:  # sqlalchemy/driver errors: say what to check
            raise VisionMLError(f"cannot open the sweep storage {_redact(url)}: {exc}. Check that the "
                                "database server is running, reachable and the user may create tables; "
                                "for PostgreSQL install the driver with pip install 'visionml[postgres]' (psycopg).") from None
    if scheme:
        raise VisionMLError(f"unsupported storage URL scheme {scheme!r}: use postgresql://, mysql://, "
                            "sqlite:/// or a file path (an Optuna journal file)")
    from optuna.storages.journal import JournalFileBackend

    Path(url).parent.mkdir(parents=True, exist_ok=True)
    try:  # the journal is read (replayed) here: a file that is not one fails now, as one line
        return optuna.storages.JournalStorage(JournalFileBackend(url))
    except (UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:  # JSONDecodeError is a ValueError
        raise VisionMLError(f"{url}: not an Optuna journal file ({type(exc).__name__}: {exc}); give the sweep's "
                            f"own storage (RUN/sweep.journal) or a database URL, or a new file name to start "
                            f"a new sweep") from None


def _unreachable(exc: BaseException | None) -> bool:
    """Whether ``exc``, or an error it was raised from, says the database could not be reached
    (rather than refused the request): Optuna turns sqlalchemy's errors in a commit into
    ``StorageInternalError``, ``open_storage`` its errors into one ``VisionMLError`` line."""
    import sqlalchemy.exc

    while exc is not None:
        if isinstance(exc, (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError)) or (
                isinstance(exc, sqlalchemy.exc.DBAPIError) and exc.connection_invalidated):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def with_reconnect(call, url: str, log=None, patience: float | None = None):
    """``call()``, retried while the database at ``url`` does not answer (a restart: the pool
    reconnects on the next try), for up to ``patience`` seconds (``RECONNECT_SECONDS``); then one
    ``VisionMLError`` naming the storage. ``log`` hears when the storage is lost and found again."""
    patience = RECONNECT_SECONDS if patience is None else patience
    lost_at = None
    while True:
        try:
            result = call()
        except Exception as exc:
            if not _unreachable(exc):
                raise
            reason = _reason(exc)
            now = time.monotonic()
            if lost_at is None:
                lost_at = now
                if log:
                    log(f"lost the sweep storage {_redact(url)} ({reason}); retrying for up to {patience:g} s")
            if now - lost_at >= patience:
                raise VisionMLError(f"the sweep storage {_redact(url)} has not answered for {now - lost_at:.0f} s "
                                    f"({reason}). Check that the database server is running and reachable, then "
                                    "continue the sweep (visionml run JOB --resume, or sweep-worker again): the "
                                    "finished trials are kept in the database") from None
            time.sleep(1.0)
            continue
        if lost_at is not None and log:
            log(f"the sweep storage {_redact(url)} answers again after {time.monotonic() - lost_at:.0f} s")
        return result


def _reason(exc: BaseException) -> str:
    """The driver's first line (``connection refused``...), not the wrappers' advice around it."""
    found = exc
    while found is not None and not getattr(found, "orig", None):
        found = found.__cause__ or found.__context__
    shown = found.orig if found is not None else exc
    text = str(shown).strip()
    return text.splitlines()[0] if text and text != "()" else f"{type(shown).__name__}: the connection was cut"


def _redact(url: str) -> str:
    """Hide a password in a URL before it is printed."""
    if "@" in url and "://" in url:
        head, tail = url.split("://", 1)
        cred, host = tail.rsplit("@", 1)
        if ":" in cred:
            return f"{head}://{cred.split(':', 1)[0]}:***@{host}"
    return url
