"""Run bioimage.io's own model test on a package, in the process it is started in (the
hash seed is the caller's choice): `bioimageio.core.test_model`, then
`bioimageio.core.predict` on the package's test input compared with its test output.

usage: python bioimageio_core_check.py PACKAGE.zip   (prints one JSON line)
"""

import json
import sys
import zipfile

import numpy as np


def main(package):
    from bioimageio.core import load_description, predict, test_model

    summary = test_model(package)
    failures = [f"{detail.name}: {error.msg}" for detail in summary.details for error in detail.errors]
    description = load_description(package)
    [input_tensor], [output_tensor] = description.inputs, description.outputs
    with zipfile.ZipFile(package) as archive:
        test_input = np.load(archive.open(f"test_input_{input_tensor.id}.npy"))
        test_output = np.load(archive.open(f"test_output_{output_tensor.id}.npy"))
    sample = predict(model=description, inputs={input_tensor.id: test_input})
    predicted = np.asarray(sample.members[output_tensor.id].data)
    print(json.dumps({"status": summary.status, "failures": failures, "output_shape": list(predicted.shape),
                      "expected_shape": list(test_output.shape),
                      "max_difference": float(np.abs(predicted.astype(np.float64) - test_output).max())}))


if __name__ == "__main__":
    main(sys.argv[1])
