"""What people see while biomodels works: lines that also go into the log, plain text
tables of metrics, and progress bars for long loops (Keras's bar, no new dependency).
Library code and the command lines both print through here."""

import logging
import os
import sys

_open_bars = set()  # bars drawn but not finished: the cursor is still on their line


def say(message):
    """Print a line for the user and keep it in the log."""
    print(message, flush=True)
    logging.getLogger("biomodels").info("%s", message)


def format_table(rows, header):
    """A plain text table: `rows` are sequences of cells, numbers get 4 decimals."""
    cells = [[_cell(value) for value in row] for row in [header, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def _cell(value):
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


class _Bar:
    def __init__(self, total, label):
        import keras

        print(label, flush=True)
        self._bar = keras.utils.Progbar(total, unit_name="item")

    def update(self, done):
        self._bar.update(done)
        if done < self._bar.target:
            _open_bars.add(self)
        else:
            _open_bars.discard(self)


def end_open_line():
    """End the line of a progress bar left unfinished (a loop stopped by an error), so
    that what is printed next starts a line of its own."""
    if _open_bars:
        _open_bars.clear()
        sys.stdout.write("\n")
        sys.stdout.flush()


#: set in a cluster worker's environment: its progress bars stay silent (the driver shows one)
WORKER_ENVIRONMENT = "BIOMODELS_WORKER"


class _Silent:
    def update(self, done):
        pass


def progress_bar(total, label):
    """A bar that `update(done)` moves towards `total`, under a line saying `label`."""
    return _Silent() if os.environ.get(WORKER_ENVIRONMENT) else _Bar(total, label)
