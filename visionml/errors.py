"""Exceptions that the CLI turns into exit codes (DESIGN.md: 1 bad input, 2 usage)."""


class VisionMLError(Exception):
    """The user's input (data, model folder, request) is bad. The message says where and what to do.

    The CLI prints the message and exits with code 1.
    """

    exit_code = 1


class UsageError(VisionMLError):
    """The command line itself is wrong (unknown option value, conflicting flags). Exit code 2."""

    exit_code = 2


class DataError(VisionMLError):
    """One or more data problems, each already formatted as ``FILE:LINE: field: reason``."""

    def __init__(self, problems, summary=None):
        self.problems = list(problems)
        head = summary or f"{len(self.problems)} problem(s) in the data"
        shown = "\n".join(str(p) for p in self.problems[:50])
        more = f"\n... and {len(self.problems) - 50} more" if len(self.problems) > 50 else ""
        super().__init__(f"{head}:\n{shown}{more}")


def did_you_mean(word, candidates, n: int = 3, cutoff: float = 0.6) -> str:
    """`` Did you mean a, b?`` naming the candidates closest to ``word``, or an empty string: the
    one close-match helper behind every "unknown name" message."""
    import difflib

    close = difflib.get_close_matches(str(word), [str(c) for c in candidates], n=n, cutoff=cutoff)
    return f" Did you mean {', '.join(close)}?" if close else ""
