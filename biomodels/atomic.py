"""Files that appear whole or not at all: write to a hidden temporary name beside the
target, rename onto it when done, remove the temporary file if anything fails. Also the
lock that marks a folder as in use by a live process (staging folders, run directories)."""

import contextlib
import fcntl
import os

LOCK_FILE = ".lock"


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside `path` (same suffix, so libraries that check it are
    content); it is renamed onto `path` when the block ends without an error."""
    from biomodels.errors import InputError

    if os.path.isdir(path):
        raise InputError(path, "is a folder where a file is to be written; move it or choose another output folder")
    directory, name = os.path.split(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    stem, suffix = os.path.splitext(name)
    tmp = os.path.join(directory, f".{stem}.tmp-{os.getpid()}{suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_text_atomic(path, text):
    with atomic_path(path) as tmp:
        with open(tmp, "w") as handle:
            handle.write(text)


class FolderLock:
    """An exclusive lock on `folder` (its file .lock, holding the owner's process id),
    held until `release` or until the process ends: the kernel drops it when a killed
    process's files close, so a lock never outlives its owner."""

    def __init__(self, handle):
        self._handle = handle

    @classmethod
    def acquire(cls, folder):
        """(the lock, None), or (None, the holder's process id as text) when held."""
        handle = open(os.path.join(folder, LOCK_FILE), "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            owner = handle.read().strip() or "unknown"
            handle.close()
            return None, owner
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        return cls(handle), None

    def release(self):
        if not self._handle.closed:
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
