"""Files that appear whole or not at all: write to a hidden temporary name beside the
target, rename onto it when done, remove the temporary file if anything fails."""

import contextlib
import os


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
