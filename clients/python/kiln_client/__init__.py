"""kiln_client: run code on kiln workers from Python.

    from kiln_client import Client
    with Client("redis://127.0.0.1:6379") as kiln:
        print(kiln.run("python", "print(6 * 7)").stdout_text)

Client and AsyncClient; Result (a job's end and everything it sent back);
the errors KilnError, KilnConnectionError, TimeoutError, JobError.
"""
from ._errors import JobError, KilnConnectionError, KilnError, TimeoutError
from ._jobs import STATUSES, Collector, Result, build_job, new_id
from .aio import AsyncClient
from .client import Client

__version__ = "0.1.0"
__all__ = ["Client", "AsyncClient", "Result", "Collector", "build_job", "new_id", "STATUSES",
           "KilnError", "KilnConnectionError", "TimeoutError", "JobError"]
