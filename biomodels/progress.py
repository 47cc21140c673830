"""Progress bars for long loops in prepare and predict (Keras's bar, no new dependency)."""


class _Bar:
    def __init__(self, total, label):
        import keras

        print(label, flush=True)
        self._bar = keras.utils.Progbar(total, unit_name="item")

    def update(self, done):
        self._bar.update(done)


def progress_bar(total, label):
    return _Bar(total, label)
