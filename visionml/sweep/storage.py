"""Where a sweep's study lives: a journal file in the run folder by default (embedded, nothing
to start, safe for several local processes), or a database URL that workers on other machines
share (``postgresql://...``, ``sqlite:///...``)."""

from __future__ import annotations

from pathlib import Path

import optuna

from ..errors import VisionMLError

DB_SCHEMES = ("postgresql", "postgres", "mysql", "sqlite")


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


def _redact(url: str) -> str:
    """Hide a password in a URL before it is printed."""
    if "@" in url and "://" in url:
        head, tail = url.split("://", 1)
        cred, host = tail.rsplit("@", 1)
        if ":" in cred:
            return f"{head}://{cred.split(':', 1)[0]}:***@{host}"
    return url
