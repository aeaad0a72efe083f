"""Property tests: whatever text or file the config parser and the .mat readers are given, they return a value
or raise `CPMError` (one line for the command line), never any other exception."""

import string

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy.io import savemat

from cpm.config import Config, load_config, parse_override, toml_value
from cpm.data.datasets.matfiles import read_ground_truth, read_prediction_all, read_predictions
from cpm.errors import CPMError

FUZZ = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

KEYS = [f"{section}.{key}" for section, values in Config().to_dict().items() for key in values]
scalars = st.one_of(st.booleans(), st.integers(-10**20, 10**20), st.floats(allow_nan=True, allow_infinity=True),
                    st.text(max_size=12))
values = st.one_of(scalars, st.lists(scalars, max_size=4), st.lists(st.lists(scalars, max_size=2), max_size=2))
keys = st.one_of(st.sampled_from(KEYS), st.text(string.ascii_letters + "._", min_size=1, max_size=20))


def config_or_cpm_error(call) -> None:
    try:
        config = call()
    except CPMError as error:
        assert "\n" not in str(error).strip(), str(error)  # one line on the command line
    else:
        assert isinstance(config, Config)


@FUZZ
@given(key=keys, value=values)
def test_set_overrides_of_any_key_and_value_give_a_config_or_a_cpm_error(key, value):
    config_or_cpm_error(lambda: load_config(None, [f"{key}={toml_value(value)}"]))


@FUZZ
@given(text=st.text(max_size=60))
def test_any_set_text_gives_a_config_or_a_cpm_error(text):
    config_or_cpm_error(lambda: load_config(None, [text]))
    try:
        parsed = parse_override(text)
    except CPMError:
        return
    assert len(parsed) == 1 and len(next(iter(parsed.values()))) == 1


toml_lines = st.one_of(
    st.builds(lambda key, value: f"{key.partition('.')[2] or key} = {toml_value(value)}", keys, values),
    st.builds(lambda section: f"[{section}]", st.sampled_from(["data", "model", "train", "eval", "nope", "train.x"])),
    st.text(max_size=30),
)


@FUZZ
@given(lines=st.lists(toml_lines, max_size=6))
def test_any_toml_file_gives_a_config_or_a_cpm_error(tmp_path, lines):
    path = tmp_path / "fuzz.toml"
    path.write_text("\n".join(lines), encoding="utf-8", errors="surrogatepass")
    config_or_cpm_error(lambda: load_config(path))


@FUZZ
@given(data=st.binary(max_size=400))
def test_any_bytes_as_a_mat_file_give_a_cpm_error(tmp_path, data):
    path = tmp_path / "fuzz.mat"
    path.write_bytes(data)
    for reader in (read_ground_truth, read_predictions, read_prediction_all):
        with pytest.raises(CPMError):
            reader(path)


arrays = hnp.arrays(dtype=st.sampled_from([np.float64, np.int32, np.uint8, np.bool_]),
                    shape=hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=15),
                    elements={"allow_nan": True, "allow_infinity": True})
shaped = st.one_of(arrays, st.sampled_from([(3, 14), (14, 3), (2, 10), (14, 2), (16, 2)]).flatmap(
    lambda head: hnp.arrays(np.float64, st.integers(0, 4).map(lambda n: (*head, n)),
                            elements=st.floats(-1e3, 1e3) | st.sampled_from([np.nan, np.inf, 0.0, 1.0]))))
variables = st.dictionaries(st.sampled_from(["joints", "prediction_all", "keypointsAll", "annolist", "other"]),
                            st.one_of(shaped, st.text(max_size=5)), max_size=3)


@FUZZ
@given(contents=variables)
@example(contents={"annolist": np.zeros(0), "keypointsAll": np.zeros(0)})  # an empty MPII file, found by hand
def test_mat_files_of_any_variables_and_shapes_read_or_give_a_cpm_error(tmp_path, contents):
    path = tmp_path / "fuzz.mat"
    savemat(path, contents)
    for reader in (read_ground_truth, read_predictions, read_prediction_all):
        try:
            result = reader(path)
        except CPMError as error:
            assert "\n" not in str(error).strip(), str(error)
            continue
        keypoints = result.keypoints if hasattr(result, "keypoints") else result
        assert keypoints.ndim == 3  # (N, K, 2 or 3)
