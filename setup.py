"""biomodels-keras: five bioimage deep-learning studies in Keras 3 / TensorFlow."""

from setuptools import find_packages, setup

DISTRIBUTED = ["dask[distributed]>=2026.8,<2026.9", "dask-jobqueue>=0.9,<0.10", "zarr>=3.1,<3.2", "ome-zarr==0.17.0"]

setup(
    name="biomodels-keras",
    version="0.1.0",
    description="Five published bioimage deep-learning studies, from raw microscope files to TensorFlow Serving.",
    long_description=open("README.md", encoding="utf-8").read() if __import__("os").path.exists("README.md") else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["biomodels", "biomodels.*"]),
    install_requires=[
        "tensorflow>=2.21,<2.22",
        # the MultiWorkerMirroredStrategy fix in biomodels/runtime.py patches this release's trainer
        "keras>=3.15,<3.16",
        "numpy>=1.26",
        "scipy>=1.11",
        "numba>=0.61",
        "h5py>=3.10",
        "tifffile>=2024.1.1",
        "mrcfile>=1.5",
        "scikit-image>=0.22",
        "scikit-learn>=1.5",
        "pillow>=10",
        "tensorboard>=2.21,<2.22",
        "absl-py>=2.1",
    ],
    entry_points={"console_scripts": ["biomodels=biomodels.console:main"]},
    extras_require={
        "gpu": ["tensorflow[and-cuda]>=2.21,<2.22"],
        "serving": ["tensorflow-serving-api>=2.21,<2.22"],
        # Dask's cluster engine: --scheduler on the commands (biomodels.cluster); OME-Zarr images (zarr; ome-zarr
        # 0.17, as 0.18 pulls ome-zarr-models, which pins pydantic below the 2.13 that bioimageio.spec needs)
        "distributed": DISTRIBUTED,
        # bioimageio.core 0.11 (the model zoo's own test) pulls bioimageio.spec 0.5.12, which fails with pydantic 2.14
        "test": ["pytest>=8", "pytest-xdist>=3.5", "tensorflow-serving-api>=2.21,<2.22", "bioimageio.core==0.11.0",
                 "pydantic==2.13.5", *DISTRIBUTED],
    },
)
