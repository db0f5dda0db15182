"""The client's errors: a job that ends badly is a Result, not one of
these, unless the caller asks (Result.check())."""
import builtins
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._jobs import Result


class KilnError(Exception):
    """Base of the client's own errors."""


class KilnConnectionError(KilnError, ConnectionError):
    """The queue could not be reached, or the connection broke."""


class TimeoutError(KilnError, builtins.TimeoutError):
    """No result within the time given; names the job."""

    def __init__(self, job_id: str, seconds: float) -> None:
        super().__init__("no result for job %s within %.3g s (is a worker running?)" % (job_id, seconds))
        self.job_id: str = job_id


class JobError(KilnError):
    """Result.check() on a job that did not end ok."""

    def __init__(self, result: "Result") -> None:
        why = ": " + result.reason if result.reason else ""
        code = " (code %s)" % result.code if result.code is not None else ""
        super().__init__("job %s ended %s%s%s" % (result.id, result.status, code, why))
        self.result: "Result" = result
