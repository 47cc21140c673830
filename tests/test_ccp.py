"""ccp: track features and the auxilin rule on hand-made tracks, classification scores
with known answers, the three track readers on files written here, the stratified
split, and masking in the trace network."""

import h5py
import numpy as np
import pytest
import scipy.io

from biomodels import config as config_lib
from biomodels.errors import ConfigError, InputError
from biomodels.ops import classification_metrics as scores
from biomodels.ops.track_features import FEATURE_NAMES, auxilin_positive, displacement_statistics, track_features
from biomodels.pipelines import track_csv, track_files, track_writers
from biomodels.pipelines.manifest import Manifest
from biomodels.prepare import prepare_dataset, stratified_assignment
from conftest import assert_one_line_error, run_cli

TINY_CCP = ["synthetic_cells=2", "synthetic_tracks_per_cell=80", "batch_size=8", "filters=4", "gru_units=4",
            "dense_units=4", "conv_layers=1"]


@pytest.fixture
def ccp_task():
    from biomodels import tasks

    return tasks.get("ccp")


@pytest.fixture
def tiny_ccp_config(ccp_task):
    return config_lib.resolve(ccp_task, "quick", TINY_CCP)


def hand_made_track(**changes):
    values = dict(cell="c", track_id="1", clathrin=np.array([0.0, 2, 5, 3, 3, 1]), auxilin=np.zeros(6),
                  background=np.arange(10.0, 16.0), auxilin_pval=np.ones(6),
                  positions=np.stack([np.arange(6.0), np.zeros(6)], axis=1), frame_interval_s=2.0, label=None)
    values.update(changes)
    return track_files.Track(**values)


# -- features and the auxilin rule ---------------------------------------------------------
def test_features_of_a_hand_made_track():
    track = hand_made_track()
    features = dict(zip(FEATURE_NAMES, track_features(track.clathrin, track.background, track.positions,
                                                      frame_interval_s=2.0)))
    # steps 2, 3, -2, 0, -2; second differences 1, -5, 2, -2
    expected = {"lifetime": 12.0, "max_intensity": 5.0, "background": 12.0, "totaldisp": 5.0, "max_msd": 9.0,
                "avg_rise": 5 / 3, "avg_dec": -2.0, "risevsdec": 1.5, "avg_mom_rise": 1.5, "avg_mom_dec": -3.5,
                "risevsdec_mom": 1.0}
    assert features == pytest.approx(expected, rel=1e-6)


def test_features_use_buffers_lifetime_and_the_trackers_motion_analysis():
    values = track_features([1.0, 4.0], lifetime_s=7.5, start_buffer=[0.0], end_buffer=[2.0, 2.0],
                            total_displacement=3.0, msd=[0.5, 1.25])
    features = dict(zip(FEATURE_NAMES, values))
    # extended trace 0, 1, 4, 2, 2: steps 1, 3, -2, 0; no background given
    assert features["lifetime"] == 7.5 and features["background"] == 0.0
    assert (features["totaldisp"], features["max_msd"]) == (3.0, 1.25)
    assert features["avg_rise"] == pytest.approx(4 / 3) and features["avg_dec"] == -2.0 and features["risevsdec"] == 3.0
    # a flat trace has no falling steps: the ratio is 0, not a division by zero
    assert dict(zip(FEATURE_NAMES, track_features([3.0, 3.0, 3.0])))["risevsdec"] == 0.0


def test_displacement_skips_missing_positions():
    positions = np.array([[0, 0], [1, 0], [1, 1], [np.nan, np.nan], [3, 1.0]])
    total, max_msd = displacement_statistics(positions)
    assert total == pytest.approx(np.sqrt(10)) and max_msd == pytest.approx(3.0)  # lag 2: (2 + 4) / 2
    assert displacement_statistics(np.array([[0.0, 0.0]])) == (0.0, 0.0)


@pytest.mark.parametrize("pvalues, expected", [
    ([1, 1, 1, 1, 0.01, 0.01, 0.01, 1], True),        # run starts at frame 4 of 8: second half
    ([1, 1, 1, 0.01, 0.01, 0.01, 1, 1], False),       # starts at frame 3: first half
    ([1, 1, 1, 1, 0.05, 0.05, 0.05, 1], True),        # the cutoff itself counts
    ([1, 1, 1, 1, 0.01, 0.01, 1, 0.01], False),       # two in a row only
    ([1, 1, 1, 1, 0.01, np.nan, 0.01, 0.01], False),  # NaN breaks a run
    ([0.01, 0.01], False),                            # shorter than the run
])
def test_auxilin_rule(pvalues, expected):
    assert auxilin_positive(pvalues) is expected


def test_auxilin_rule_thresholds_are_configurable():
    pvalues = [1, 1, 1, 1, 0.02, 0.02, 1, 1]
    assert not auxilin_positive(pvalues)
    assert auxilin_positive(pvalues, consecutive=2)
    assert auxilin_positive(pvalues, short_track_frames=20)  # the study's code: one frame fewer below 20 frames
    assert not auxilin_positive(pvalues, cutoff=0.01, consecutive=2)


# -- scores --------------------------------------------------------------------------------
def test_scores_known_answers():
    labels, probabilities = [0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]
    assert scores.roc_auc(labels, probabilities) == pytest.approx(0.75)
    assert scores.pr_auc(labels, probabilities) == pytest.approx((1 / 1 + 2 / 3) / 2)
    assert scores.roc_auc([0, 1, 1], [0.5, 0.5, 0.9]) == pytest.approx(0.75)  # a tie counts half
    report = scores.scores_at_threshold(labels, probabilities, 0.38)
    assert report == pytest.approx({"accuracy": 0.5, "balanced_accuracy": 0.5, "precision": 0.5, "recall": 0.5,
                                    "specificity": 0.5, "flagged_fraction": 0.5})
    baseline = scores.majority_baseline([0] * 9 + [1], training_positive_fraction=0.2)
    assert baseline["accuracy"] == pytest.approx(0.9) and baseline["balanced_accuracy"] == 0.5
    assert baseline["roc_auc"] == 0.5 and baseline["pr_auc"] == pytest.approx(0.1) and baseline["recall"] == 0.0
    # the majority is the training split's: on a test split where positives happen to be
    # the majority, the baseline still answers negative (it could not know otherwise)
    shifted = scores.majority_baseline([1] * 6 + [0] * 4, training_positive_fraction=0.1)
    assert shifted["accuracy"] == pytest.approx(0.4) and shifted["recall"] == 0.0


def test_threshold_for_recall():
    positives = np.linspace(0.1, 1.0, 10)
    assert scores.threshold_for_recall(positives, 0.8) == pytest.approx(0.3)  # 8 of 10 at or above
    assert scores.threshold_for_recall(positives, 1.0) == pytest.approx(0.1)
    # with 10 positives, 90% confidence in 80% recall allows no miss
    assert scores.threshold_for_recall(positives, 0.8, confidence=0.9) == pytest.approx(0.1)
    many = np.linspace(0, 1, 1001)
    assert 0.0 < scores.threshold_for_recall(many, 0.9, confidence=0.9) < scores.threshold_for_recall(many, 0.9)
    with pytest.raises(ValueError):
        scores.threshold_for_recall([], 0.9)


def test_stratified_assignment_keeps_the_class_mix():
    strata = [1] * 50 + [0] * 450
    assignment = stratified_assignment(strata, (0.6, 0.2, 0.2), seed=3)
    assert assignment == stratified_assignment(strata, (0.6, 0.2, 0.2), seed=3)
    for split, size in (("train", 300), ("val", 100), ("test", 100)):
        chosen = [s for s, a in zip(strata, assignment) if a == split]
        assert len(chosen) == size and sum(chosen) == size // 10


# -- readers ---------------------------------------------------------------------------------
def random_tracks(count=4, seed=0):
    rng = np.random.default_rng(seed)
    tracks = []
    for index in range(count):
        frames = 3 + 4 * index
        tracks.append(track_files.Track(
            cell="Cell1", track_id=str(index + 1), clathrin=rng.random(frames) * 100, auxilin=rng.random(frames),
            background=rng.random(frames) + 5, auxilin_pval=rng.random(frames), positions=rng.random((frames, 2)),
            frame_interval_s=1.0, label=index % 2, start_buffer=rng.random(3), end_buffer=rng.random(3)))
    return tracks


@pytest.mark.parametrize("writer, reader, name", [
    (track_writers.write_track_csv, track_csv.read_track_csv, "Cell1/tracks.csv"),
    (track_writers.write_lifetime_data, track_files.read_lifetime_data, "Cell1/TagRFP/Analysis/lifetimeData.mat"),
    (track_writers.write_processed_tracks, track_files.read_processed_tracks, "Cell1/TagRFP/Tracking/ProcessedTracks.mat"),
])
def test_readers_round_trip(tmp_path, writer, reader, name):
    tracks = random_tracks()
    path = str(tmp_path / name)
    writer(path, tracks)
    read, skipped = reader(path, "Cell1")
    assert skipped == {} and [t.track_id for t in read] == ["1", "2", "3", "4"]
    for original, copy in zip(tracks, read):
        assert copy.cell == "Cell1" and copy.frames == original.frames
        for field in ("clathrin", "auxilin", "background", "auxilin_pval", "positions"):
            np.testing.assert_allclose(getattr(copy, field), getattr(original, field), rtol=1e-5, err_msg=field)
    if name.endswith("ProcessedTracks.mat"):
        np.testing.assert_allclose(read[0].start_buffer, tracks[0].start_buffer)
    if name.endswith(".csv"):
        assert [t.label for t in read] == [0, 1, 0, 1]


def test_lifetime_data_is_a_matlab_v73_file(tmp_path):
    path = str(tmp_path / "lifetimeData.mat")
    track_writers.write_lifetime_data(path, random_tracks(), frames=30)
    with open(path, "rb") as handle:
        assert handle.read(19) == b"MATLAB 7.3 MAT-file"
    with pytest.raises(NotImplementedError):  # scipy sends v7.3 files to HDF5 readers
        scipy.io.loadmat(path)
    with h5py.File(path, "r") as handle:
        assert handle["lftData/A"].shape == (2, 30, 4)  # MATLAB's tracks × frames × channels, reversed


def test_short_and_empty_tracks_are_counted(tmp_path):
    tracks = random_tracks()
    tracks[1].auxilin = np.full(tracks[1].frames, np.nan)
    tracks[2].clathrin, tracks[2].auxilin = tracks[2].clathrin[:1], tracks[2].auxilin[:1]
    tracks[2].background, tracks[2].auxilin_pval, tracks[2].positions = None, None, None
    path = str(tmp_path / "tracks.csv")
    for track in tracks:
        track.background = track.auxilin_pval = track.positions = None
    track_writers.write_track_csv(path, tracks)
    read, skipped = track_csv.read_track_csv(path)
    assert [t.track_id for t in read] == ["1", "4"]
    assert skipped == {"clathrin or auxilin all NaN": 1, "shorter than 2 frames": 1}


def test_a_csv_of_many_cells_is_parsed_once(tmp_path, monkeypatch, ccp_task, tiny_ccp_config):
    """Sources are cells; reading each one must not parse the whole file again."""
    import csv as csv_module

    from biomodels.tasks.ccp import data

    tracks = random_tracks(count=80)
    for index, track in enumerate(tracks):
        track.cell = f"cell{index % 40:02d}"
    path = tmp_path / "tracks.csv"
    track_writers.write_track_csv(str(path), tracks)
    calls = []
    original = csv_module.reader
    monkeypatch.setattr(csv_module, "reader", lambda *a, **k: calls.append(1) or original(*a, **k))
    sources = ccp_task.bind(tiny_ccp_config).find_sources(str(path))
    assert len(sources) == 40
    read = [track for source in sources for track in data.read_tracks(source)[0]]
    assert len(calls) == 2  # the cells' names, then every track
    assert sorted((t.cell, t.track_id) for t in read) == sorted((t.cell, t.track_id) for t in track_csv.read_track_csv(str(path))[0])
    assert {t.cell for t in read} == {f"cell{i:02d}" for i in range(40)}
    # the parsed file is cached: what a caller changes in its tracks stays its own
    read[0].auxilin = None
    again = data.read_tracks(sources[0])[0]
    assert again[0].track_id == read[0].track_id and again[0].auxilin is not None


def test_tracker_gaps_are_interpolated(tmp_path):
    track = random_tracks(1)[0]
    track.clathrin = np.array([1.0, np.nan, 3.0])
    path = str(tmp_path / "lifetimeData.mat")
    track_writers.write_lifetime_data(path, [track])
    [read], _ = track_files.read_lifetime_data(path, "c")
    np.testing.assert_allclose(read.clathrin, [1.0, 2.0, 3.0])


def test_reader_errors_name_the_file(tmp_path):
    no_tracks = str(tmp_path / "ProcessedTracks.mat")
    scipy.io.savemat(no_tracks, {"something": np.zeros(3)})
    with pytest.raises(InputError, match="ProcessedTracks.mat: has no 'tracks' struct array"):
        track_files.read_processed_tracks(no_tracks, "c")
    no_amplitude = str(tmp_path / "lifetimeData.mat")
    with h5py.File(no_amplitude, "w") as handle:
        handle.create_dataset("lftData/c", data=np.zeros((2, 5, 3)))
    with pytest.raises(InputError, match="has no dataset 'A'"):
        track_files.read_lifetime_data(no_amplitude, "c")
    with pytest.raises(InputError, match="is not a MATLAB v7.3"):
        track_files.read_lifetime_data(no_tracks, "c")
    columns = tmp_path / "columns.csv"
    columns.write_text("cell,lifetime,max_intensity\nc,3,4\n")
    with pytest.raises(InputError, match=r"columns.csv: has neither trace columns .*missing background"):
        track_csv.read_track_csv(str(columns))
    bad_number = tmp_path / "bad.csv"
    bad_number.write_text("clathrin_0,clathrin_1,auxilin_0,auxilin_1\n1,2,3,x\n")
    with pytest.raises(InputError, match=r"bad.csv: line 2: 'x' is not a number"):
        track_csv.read_track_csv(str(bad_number))
    bad_label = tmp_path / "label.csv"
    bad_label.write_text("label,clathrin_0,clathrin_1,auxilin_0,auxilin_1\nmaybe,1,2,3,4\n")
    with pytest.raises(InputError, match="label 'maybe'"):
        track_csv.read_track_csv(str(bad_label))
    for value in ("7", "-3", "0.6"):  # not read as 1 or 0
        bad_label.write_text(f"label,clathrin_0,clathrin_1,auxilin_0,auxilin_1\n{value},1,2,3,4\n")
        with pytest.raises(InputError, match=rf"label.csv: line 2: label {value} is not 0 or 1"):
            track_csv.read_track_csv(str(bad_label))
    for value in ("0", "nan", "-2"):  # no NaN features downstream
        bad_label.write_text(f"frame_interval_s,clathrin_0,clathrin_1,auxilin_0,auxilin_1\n{value},1,2,3,4\n")
        with pytest.raises(InputError, match=r"label.csv: line 2: frame interval .* is not a positive number"):
            track_csv.read_track_csv(str(bad_label))


def test_damaged_lifetime_data_labels_and_frame_interval(tmp_path):
    import h5py

    tracks = random_tracks()[:3]
    path = tmp_path / "lifetimeData.mat"
    for labels, framerate, problem in (([1, 7, 0], 1.0, r"track 2: label 7 is not 0 or 1"),
                                       ([1, 0, 1], 0.0, r"framerate: frame interval 0 s"),
                                       ([1, 0, 1], np.nan, r"framerate: frame interval nan s")):
        track_writers.write_lifetime_data(str(path), tracks)
        with h5py.File(path, "r+") as handle:
            handle["lftData"]["label"] = np.asarray(labels, np.float64)[:, None]
            del handle["lftData"]["framerate"]
            handle["lftData"]["framerate"] = np.array([[framerate]])
        with pytest.raises(InputError, match=problem):
            track_files.read_lifetime_data(str(path), "c")
    # a NaN label is no label: the auxilin rule decides
    track_writers.write_lifetime_data(str(path), tracks)
    with h5py.File(path, "r+") as handle:
        handle["lftData"]["label"] = np.array([[1.0], [np.nan], [0.0]])
    read, _ = track_files.read_lifetime_data(str(path), "c")
    assert [track.label for track in read] == [1, None, 0]


def test_processed_tracks_with_text_fields(tmp_path):
    """A MATLAB v5 ProcessedTracks.mat whose tracks hold text where the reader takes
    numbers (tracks.A as a char array, or a nested startBuffer.A) is one line naming the
    file, the track and the field, from Python and from prepare (exit 2); a text field
    the reader does not use is left alone."""
    path = tmp_path / "Cell1" / "TagRFP" / "Tracking" / "ProcessedTracks.mat"
    path.parent.mkdir(parents=True)
    track_writers.write_processed_tracks(str(path), random_tracks()[:2])
    contents = scipy.io.loadmat(str(path))
    records = contents["tracks"]
    with_note = np.empty(records.shape, dtype=records.dtype.descr + [("note", object)])
    for name in records.dtype.names:
        with_note[name] = records[name]
    for index in range(records.shape[1]):
        with_note["note"][0, index] = "imaged on Tuesday"
    scipy.io.savemat(str(path), {"tracks": with_note}, format="5")
    assert len(track_files.read_processed_tracks(str(path), "c")[0]) == 2
    with_note["A"][0, 1] = "12 30 41"
    scipy.io.savemat(str(path), {"tracks": with_note}, format="5")
    with pytest.raises(InputError, match=r"ProcessedTracks.mat: track 2: field 'A' holds text, not numbers"):
        track_files.read_processed_tracks(str(path), "c")
    result = run_cli("biomodels.prepare", "--task=ccp", f"--input={tmp_path}", f"--output_dir={tmp_path / 'data'}")
    assert_one_line_error(result, "ProcessedTracks.mat", "track 2", "'A'", "text")
    assert not (tmp_path / "data").exists()


def test_lifetime_data_with_text_fields(tmp_path):
    """MATLAB writes char fields (uint16 with MATLAB_class 'char') and strings into real
    files: one the reader does not use is left alone, a used one holding text is refused."""
    import h5py

    tracks = random_tracks()[:3]
    path = tmp_path / "lifetimeData.mat"
    track_writers.write_lifetime_data(str(path), tracks)
    with h5py.File(path, "r+") as handle:
        note = handle["lftData"].create_dataset("source", data=np.frombuffer("cell1".encode("utf-16-le"), np.uint16)[:, None])
        note.attrs["MATLAB_class"] = np.bytes_("char")
        handle["lftData"]["comment"] = "a string dataset"
    read, _ = track_files.read_lifetime_data(str(path), "c")
    assert len(read) == 3
    with h5py.File(path, "r+") as handle:
        if "label" in handle["lftData"]:
            del handle["lftData"]["label"]
        handle["lftData"]["label"] = "CCP"
    with pytest.raises(InputError, match=r"lifetimeData.mat: dataset 'label' holds object values, not numbers"):
        track_files.read_lifetime_data(str(path), "c")
    with h5py.File(path, "r+") as handle:
        amplitude = np.asarray(handle["lftData"]["A"])
        del handle["lftData"]["A"]
        text = handle["lftData"].create_dataset("A", data=np.zeros(amplitude.shape, np.uint16))
        text.attrs["MATLAB_class"] = np.bytes_("char")
    with pytest.raises(InputError, match=r"dataset 'A' holds MATLAB char, not numbers"):
        track_files.read_lifetime_data(str(path), "c")


def test_feature_only_csv_trains_only_the_features_model(tmp_path, ccp_task, tiny_ccp_config):
    rng = np.random.default_rng(0)
    path = tmp_path / "features.csv"
    rows = [",".join(["label", *FEATURE_NAMES])]
    rows += [",".join([str(i % 4 == 0), *map(str, rng.random(len(FEATURE_NAMES)))]) for i in range(40)]
    path.write_text("\n".join(rows) + "\n")
    data_dir = tmp_path / "prepared"
    manifest = prepare_dataset(ccp_task, tiny_ccp_config, str(data_dir), input_path=str(path), show_progress=False)
    assert manifest.statistics["tracks_without_traces"] == manifest.count("train")
    with pytest.raises(ConfigError, match="features but no traces"):
        ccp_task.bind(tiny_ccp_config, manifest=manifest).build_model()
    features_config = config_lib.resolve(ccp_task, "quick", [*TINY_CCP, "model=features"])
    assert ccp_task.bind(features_config, manifest=manifest).build_model().count_params() == (11 * 10 + 10) + (10 * 10 + 10) + (10 + 1)


def test_unlabelled_tracks_cannot_be_prepared(tmp_path, ccp_task, tiny_ccp_config):
    tracks = random_tracks()
    for track in tracks:
        track.auxilin_pval, track.label = None, None
    track_writers.write_track_csv(str(tmp_path / "raw" / "tracks.csv"), tracks)
    with pytest.raises(InputError, match="has no label and no auxilin p-values"):
        prepare_dataset(ccp_task, tiny_ccp_config, str(tmp_path / "out"), input_path=str(tmp_path / "raw"), show_progress=False)
    assert not (tmp_path / "out").exists()


# -- prepared data and models ------------------------------------------------------------------
def test_synthetic_data_through_every_reader_split_by_label_or_by_cell(tmp_path, ccp_task, tiny_ccp_config):
    manifest = prepare_dataset(ccp_task, tiny_ccp_config, str(tmp_path / "by_track"), synthetic=True, num_examples=3,
                               show_progress=False)
    assert manifest.provenance["split_by"] == "example, stratified"
    assert manifest.provenance["split_fractions"] == [0.6, 0.2, 0.2]
    kinds = sorted(source.files[0].rsplit("/", 1)[-1] for source in manifest.sources)
    assert kinds == ["ProcessedTracks.mat", "lifetimeData.mat", "tracks.csv"]
    positives = sum(source.details["positives"] for source in manifest.sources)
    total = sum(source.details["tracks"] for source in manifest.sources)
    assert 0.08 < positives / total < 0.2
    assert manifest.skipped.get("shorter than 2 frames", 0) > 0  # the 1-frame detections, counted
    assert sum(source.skipped.get("shorter than 2 frames", 0) for source in manifest.sources) == \
        manifest.skipped["shorter than 2 frames"]
    counts = {split: manifest.count(split) for split in manifest.splits}
    assert counts["train"] == pytest.approx(0.6 * total, abs=2) and counts["test"] == pytest.approx(0.2 * total, abs=2)
    # split example by example: each source counts where its examples went
    assert sum(source.details["examples"]["test"] for source in manifest.sources) == counts["test"]
    assert manifest.statistics["positive_fraction"] == pytest.approx(positives / total, abs=0.02)

    by_cell = config_lib.resolve(ccp_task, "quick", [*TINY_CCP, "group_split=true"])
    manifest = prepare_dataset(ccp_task, by_cell, str(tmp_path / "by_cell"), synthetic=True, num_examples=3,
                               show_progress=False)
    assert manifest.provenance["split_by"] == "group"
    assert sorted(source.split for source in manifest.sources) == ["test", "train", "val"]


@pytest.mark.slow
def test_a_batch_smaller_than_the_summary_images_trains(tmp_path, ccp_task):
    """Validation batches of padded traces of different lengths: the image callback
    re-batches 3 examples from batches of 2 (it crashed with "Cannot batch tensors")."""
    from biomodels.training import RunOptions, train

    config = config_lib.resolve(ccp_task, "quick", [*TINY_CCP, "batch_size=2", "epochs=1", "steps_per_epoch=2"])
    prepare_dataset(ccp_task, config, str(tmp_path / "data"), synthetic=True, num_examples=2, show_progress=False)
    metrics = train(ccp_task, config, str(tmp_path / "data"), str(tmp_path / "run"), RunOptions(export=False, verbose=0))
    assert 0.0 <= metrics["roc_auc"] <= 1.0


@pytest.mark.slow
def test_the_default_model_does_not_read_the_auxilin_that_labels_the_tracks(tmp_path, ccp_task):
    """Labels come from the auxilin rule; on new cells, flattening every auxilin trace to
    its median (labels unchanged) must change the default model's ROC-AUC by under 5 %."""
    from biomodels.ops.classification_metrics import roc_auc
    from biomodels.pipelines.synthetic import ccp as synthetic
    from biomodels.predictors.local import KerasPredictor
    from biomodels.tasks.ccp import data, inference
    from biomodels.training import RunOptions, train

    config = config_lib.resolve(ccp_task, "quick", [*TINY_CCP, "epochs=3", "steps_per_epoch=8", "filters=8",
                                                    "gru_units=8", "dense_units=8"])
    assert config.trace_channels == ("clathrin",)
    prepare_dataset(ccp_task, config, str(tmp_path / "data"), synthetic=True, num_examples=2, show_progress=False)
    train(ccp_task, config, str(tmp_path / "data"), str(tmp_path / "run"), RunOptions(export=False, verbose=0))
    from biomodels.runs import load_trained_model

    predictor = KerasPredictor(ccp_task, load_trained_model(str(tmp_path / "run")), config)
    synthetic.write_dataset(str(tmp_path / "new"), 2, seed=7, tracks_per_cell=150)
    tracks = [track for source in data.find_sources(str(tmp_path / "new")) for track in data.read_tracks(source)[0]]
    labels = np.array([data.label(track, config) for track in tracks])
    assert 0 < labels.sum() < len(labels)
    before = roc_auc(labels, inference.score_tracks(predictor, "traces", tracks, config))
    for track in tracks:
        track.auxilin = np.full_like(track.auxilin, np.median(track.auxilin))
    after = roc_auc(labels, inference.score_tracks(predictor, "traces", tracks, config))
    assert before > 0.6  # it learnt something from clathrin
    assert abs(after - before) / before < 0.05


def test_auxilin_as_input_needs_labels_of_the_users_own(tmp_path, ccp_task):
    """The traces model reads auxilin only when no training label came from the rule."""
    both = config_lib.resolve(ccp_task, "quick", [*TINY_CCP, "trace_channels=clathrin,auxilin"])
    tracks = random_tracks(count=12)
    for index, track in enumerate(tracks):
        track.label = None if index == 0 else index % 2
        track.auxilin_pval = np.ones(track.frames)
    track_writers.write_track_csv(str(tmp_path / "raw" / "tracks.csv"), tracks)
    manifest = prepare_dataset(ccp_task, both, str(tmp_path / "rule"), input_path=str(tmp_path / "raw"),
                               show_progress=False)
    with pytest.raises(ConfigError, match=r"trace_channels=clathrin,auxilin: 1 training labels come from the auxilin rule"):
        ccp_task.bind(both, manifest=manifest).build_model()
    def trace_width(model):
        return {tensor.name: tensor for tensor in model.inputs}["traces"].shape[-1]

    assert trace_width(ccp_task.bind(config_lib.resolve(ccp_task, "quick", TINY_CCP), manifest=manifest).build_model()) == 1
    tracks[0].label = 1
    track_writers.write_track_csv(str(tmp_path / "raw" / "tracks.csv"), tracks)
    manifest = prepare_dataset(ccp_task, both, str(tmp_path / "given"), input_path=str(tmp_path / "raw"),
                               show_progress=False)
    assert trace_width(ccp_task.bind(both, manifest=manifest).build_model()) == 2
    with pytest.raises(ConfigError, match="choose clathrin or clathrin,auxilin"):
        ccp_task.bind(config_lib.resolve(ccp_task, "quick", [*TINY_CCP, "trace_channels=dynamin"]), manifest=manifest).build_model()


def test_padding_does_not_change_a_prediction():
    from biomodels.models import TraceNet

    model = TraceNet([50.0, 1.0], [400.0, 4.0], filters=8, conv_layers=2, gru_units=8, dense_units=8)
    rng = np.random.default_rng(0)
    lengths = np.array([2, 17, 40], np.int32)
    traces = rng.normal(size=(3, 40, 2)).astype(np.float32) * 20
    batch = model({"traces": traces, "lengths": lengths}, training=False).numpy().ravel()
    alone = [model({"traces": traces[i:i + 1, :n], "lengths": lengths[i:i + 1]}, training=False).numpy().item()
             for i, n in enumerate(lengths)]
    junk = np.concatenate([traces, rng.normal(size=(3, 25, 2)).astype(np.float32) * 1e3], axis=1)
    padded = model({"traces": junk, "lengths": lengths}, training=False).numpy().ravel()
    np.testing.assert_allclose(batch, alone, atol=1e-5)
    np.testing.assert_allclose(padded, alone, atol=1e-5)
    assert np.ptp(alone) > 1e-4  # different tracks, different answers


def test_trace_models_round_trip_through_keras_files(tmp_path):
    import keras

    from biomodels.models import TraceFeatureNet, TraceNet

    rng = np.random.default_rng(1)
    cases = [
        (TraceNet([5.0, 1.0], [4.0, 2.0], filters=4, gru_units=4, dense_units=4),
         {"traces": rng.normal(size=(2, 9, 2)).astype(np.float32), "lengths": np.array([9, 4], np.int32)}),
        (TraceFeatureNet(rng.normal(size=11), rng.random(11) + 0.5), {"features": rng.normal(size=(3, 11)).astype(np.float32)}),
    ]
    for model, inputs in cases:
        path = str(tmp_path / f"{model.name}.keras")
        model.save(path)
        loaded = keras.saving.load_model(path, safe_mode=True)
        np.testing.assert_allclose(loaded(inputs, training=False), model(inputs, training=False), atol=1e-6)
        assert loaded.get_config() == model.get_config()


def test_balanced_loss_weighs_both_classes_equally(ccp_task, tiny_ccp_config):
    from biomodels.models import BalancedBinaryCrossentropy

    positive_weight, negative_weight = ccp_task.bind(tiny_ccp_config, manifest=Manifest("ccp", statistics={"positive_fraction": 0.1})).class_weights()
    assert (positive_weight, negative_weight) == pytest.approx((5.0, 0.5 / 0.9))
    loss = BalancedBinaryCrossentropy(positive_weight, negative_weight)
    labels = np.array([[1.0]] + [[0.0]] * 9)
    probabilities = np.full((10, 1), 0.5, np.float32)
    # one positive and nine negatives at p=0.5 contribute ln 2 · (5 + 9 · 0.5/0.9) / 10
    assert float(loss(labels, probabilities)) == pytest.approx(np.log(2) * (5 + 5) / 10, rel=1e-5)


# -- training batches gathered from the split held in memory -------------------------------
def decoded_tracks(lengths, seed=0):
    """A tf.data set of decoded examples as prepared: traces [frames, 2] with NaN frames,
    features, labels."""
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    traces = [rng.uniform(1.0, 2.0, (length, 2)).astype(np.float32) for length in lengths]
    for trace in traces[::3]:
        trace[0, 1] = np.nan
    labels = rng.integers(0, 2, len(lengths))
    return tf.data.Dataset.from_generator(
        lambda: ({"traces": trace, "features": np.full(len(FEATURE_NAMES), float(index), np.float32), "label": label}
                 for index, (trace, label) in enumerate(zip(traces, labels))),
        output_signature={"traces": tf.TensorSpec([None, 2], tf.float32),
                          "features": tf.TensorSpec([len(FEATURE_NAMES)], tf.float32),
                          "label": tf.TensorSpec([], tf.int64)})


@pytest.fixture(scope="module")
def track_lengths():
    return np.random.default_rng(1).integers(1, 200, 150)


def test_memory_batches_are_the_buckets_tfdata_makes_of_the_same_order(ccp_task, track_lengths):
    """The traces model's batches gathered in memory equal bucket_by_sequence_length's
    (the streamed pipeline's `batch`) fed the same shuffled order: same rows, same
    order, each zero-padded to its longest track, NaN frames zero; no track twice in a
    pass."""
    import tensorflow as tf

    from biomodels.tasks.ccp import data

    config = config_lib.resolve(ccp_task, "quick", ["intensity_augmentation=0", "trace_channels=clathrin,auxilin"])
    arrays = data.training_arrays(decoded_tracks(track_lengths), config)
    inputs, targets = arrays
    np.testing.assert_array_equal(inputs["traces"].row_lengths(), track_lengths)
    np.testing.assert_array_equal(inputs["lengths"], track_lengths)
    assert inputs["traces"].flat_values.shape == (track_lengths.sum(), 2)
    assert not np.isnan(inputs["traces"].flat_values).any() and (inputs["traces"][0][0, 1] == 0)
    seed = tf.constant([3, 4], tf.int64)
    gathered = list(data.epoch_batches(arrays, seed, 8, config))
    order = tf.random.experimental.stateless_shuffle(tf.range(150), seed)
    streamed = list(data.batch(tf.data.Dataset.from_tensor_slices(order).map(
        lambda row: ({"traces": inputs["traces"][row], "lengths": inputs["lengths"][row]}, targets[row])),
        8, training=True))
    buckets = np.searchsorted(data.BUCKET_BOUNDARIES, track_lengths, side="right")
    assert len(gathered) == len(streamed) == sum(np.bincount(buckets) // 8) > 5
    for (ours, our_targets), (theirs, their_targets) in zip(gathered, streamed):
        np.testing.assert_array_equal(ours["traces"], theirs["traces"])
        np.testing.assert_array_equal(ours["lengths"], theirs["lengths"])
        np.testing.assert_array_equal(our_targets, their_targets)
    first_frames = tf.gather(inputs["traces"].flat_values[:, 0], inputs["traces"].row_starts()).numpy()
    rows = [int(np.flatnonzero(first_frames == trace[0, 0])[0]) for batch, _ in gathered
            for trace in batch["traces"].numpy()]
    assert len(set(rows)) == len(rows)


def test_memory_batches_gain_each_tracks_channels_and_follow_the_seed(ccp_task, track_lengths):
    """Augmented batches are the plain ones times a gain in 1 ± 0.2 for each track and
    channel, the same over its frames, padding left zero; the order follows the seed."""
    import tensorflow as tf

    from biomodels.tasks.ccp import data

    config = config_lib.resolve(ccp_task, "quick", ["intensity_augmentation=0.2", "trace_channels=clathrin,auxilin"])
    arrays = data.training_arrays(decoded_tracks(track_lengths), config)
    plain = config_lib.resolve(ccp_task, "quick", ["intensity_augmentation=0", "trace_channels=clathrin,auxilin"])
    seed = tf.constant([5, 6], tf.int64)
    for (augmented, _), (original, _) in zip(data.epoch_batches(arrays, seed, 8, config),
                                             data.epoch_batches(arrays, seed, 8, plain)):
        valid = original["traces"].numpy() > 0
        gains = np.where(valid, augmented["traces"].numpy() / np.where(valid, original["traces"].numpy(), 1), np.nan)
        assert np.all(augmented["traces"].numpy()[~valid] == 0)
        assert np.nanmin(gains) >= 0.8 - 1e-6 and np.nanmax(gains) <= 1.2 + 1e-6
        np.testing.assert_allclose(np.nanmax(gains, axis=1), np.nanmin(gains, axis=1), rtol=1e-5)
        assert np.unique(np.round(np.nanmax(gains, axis=1), 5)).size > 8

    def lengths(seed):
        return np.concatenate([batch["lengths"].numpy() for batch, _ in data.epoch_batches(arrays, seed, 8, config)])

    np.testing.assert_array_equal(lengths(seed), lengths(seed))
    assert not np.array_equal(lengths(seed), lengths(tf.constant([5, 7], tf.int64)))


def test_memory_batches_of_the_features_model_are_whole_plain_batches(ccp_task, track_lengths):
    import tensorflow as tf

    from biomodels.tasks.ccp import data

    config = config_lib.resolve(ccp_task, "quick", ["model=features"])
    arrays = data.training_arrays(decoded_tracks(track_lengths), config)
    batches = list(data.epoch_batches(arrays, tf.constant([1, 2], tf.int64), 16, config))
    assert len(batches) == 150 // 16 and all(set(inputs) == {"features"} for inputs, _ in batches)
    rows = np.concatenate([inputs["features"].numpy()[:, 0] for inputs, _ in batches]).astype(int)
    assert len(set(rows)) == len(rows) == 144 and set(rows) <= set(range(150))
    labels = np.concatenate([targets.numpy()[:, 0] for _, targets in batches])
    np.testing.assert_array_equal(labels, arrays[1].numpy()[rows, 0])


def test_training_batches_from_memory_resume_as_they_run(tmp_path, ccp_task, tiny_ccp_config):
    """A ccp run resumed at epoch 1 sees the batches an uninterrupted run sees from epoch
    1; a split over the cache budget is streamed, in batches of the same structure, and so
    is one whose buckets of lengths hold no whole batch (its passes would hold none)."""
    from biomodels.pipelines import dataset as dataset_lib
    from biomodels.pipelines import manifest as manifest_lib
    from biomodels.tasks.ccp import data

    manifest = prepare_dataset(ccp_task, tiny_ccp_config, str(tmp_path / "data"), synthetic=True, show_progress=False)
    task = ccp_task.bind(tiny_ccp_config, manifest=manifest_lib.read(str(tmp_path / "data"), ccp_task))
    whole = list(dataset_lib.training_dataset(task, 7, steps_per_epoch=3).take(9))
    resumed = list(dataset_lib.training_dataset(task, 7, steps_per_epoch=3, first_epoch=1).take(6))
    for (ours, our_targets), (theirs, their_targets) in zip(whole[3:], resumed):
        np.testing.assert_array_equal(ours["traces"], theirs["traces"])
        np.testing.assert_array_equal(our_targets, their_targets)
    assert not np.array_equal(whole[0][0]["lengths"], whole[3][0]["lengths"])
    [(streamed, targets)] = dataset_lib.training_dataset(task, 7, steps_per_epoch=3, cache_bytes=0).take(1)
    assert streamed.keys() == whole[0][0].keys() and targets.shape == (8, 1)
    assert streamed["traces"].shape[-1] == whole[0][0]["traces"].shape[-1]
    inputs, _ = task.training_arrays(dataset_lib.examples(task.manifest, "train").filter(task.keep_for_training))
    in_buckets = np.bincount(np.searchsorted(data.BUCKET_BOUNDARIES, inputs["lengths"].numpy(), side="right"))
    batch = in_buckets.max() + 1
    assert batch <= in_buckets.sum()  # the split holds a batch; no bucket does
    [(_, targets)] = dataset_lib.training_dataset(task, 7, steps_per_epoch=1, batch_size=int(batch)).take(1)
    assert targets.shape == (batch, 1)
