"""What every benchmark sets up: a temp dir, a real redis-server in it, and
the kiln worker it runs now (one at a time); all of it stopped and removed
when the `with` block ends, however it ends."""
import shutil
import tempfile

from kilntest import Redis, Worker


class Lab:
    def __init__(self, prefix):
        self.prefix = prefix
        self.tmp = self.redis = self.current = None

    def __enter__(self):
        self.tmp = tempfile.mkdtemp(prefix=self.prefix)
        self.redis = Redis(self.tmp)
        return self

    def worker(self, consumer, *args, env=None):
        """A worker on this lab's redis (the one before it stopped)."""
        if self.current is not None:
            self.current.stop()
        self.current = Worker(self.tmp, self.redis.url, consumer, *args, env=env)
        return self.current

    def __exit__(self, *exc):
        try:
            if self.current is not None:
                self.current.stop()
            if self.redis is not None:
                self.redis.stop()
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)
        return False
