"""Reading PARAMS.npz and DATA.npz: every bad file is a DcpnetError naming the file and the array."""
from __future__ import annotations

import numpy as np
import pytest

from dcpnet.errors import DcpnetError
from dcpnet.graph import load_text
from dcpnet.train.data import load_data, load_params, read_npz, save_npz

NET = load_text("input x[3]\ninput t in [0, 1]\nparam W[2, 3] >= 0, b[2]\ny = sum(W @ x + b) * t\n")


def _message(excinfo) -> str:
    return excinfo.value.format()


def test_good_files(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x=rng.normal(size=(5, 3)), t=rng.uniform(size=5), extra=np.ones(2))
    np.savez(tmp_path / "p.npz", W=np.ones((2, 3)), b=np.arange(2))          # ints are numbers too
    data, n = load_data(NET, tmp_path / "d.npz")
    params = load_params(NET, tmp_path / "p.npz", np.float32)
    assert n == 5 and set(data) == {"x", "t"} and data["x"].shape == (5, 3) and data["x"].dtype == np.float64
    assert params["b"].dtype == np.float32 and params["b"].tolist() == [0.0, 1.0]


@pytest.mark.parametrize(("arrays", "words"), [
    ({"x": np.ones((5, 3))}, ["input `t` is missing", "`x`"]),
    ({"x": np.ones((5, 4)), "t": np.ones(5)}, ["input `x`", "(5, 4)", "(n, 3)"]),
    ({"x": np.ones(3), "t": np.ones(5)}, ["input `x`", "(3,)"]),
    ({"x": np.ones((5, 3)), "t": np.ones((5, 1))}, ["input `t`", "(n)"]),
    ({"x": np.ones((5, 3)), "t": np.ones(4) / 2}, ["input `t`", "4 examples", "`x` has 5"]),
    ({"x": np.ones((0, 3)), "t": np.ones(0)}, ["input `x`", "no examples"]),
    ({"x": np.full((5, 3), np.inf), "t": np.ones(5)}, ["input `x`", "non-finite"]),
    ({"x": np.ones((5, 3)), "t": np.array([0.5, np.nan, 0, 0, 0])}, ["input `t`", "non-finite", "(1,)"]),
    ({"x": np.ones((5, 3), dtype=complex), "t": np.ones(5)}, ["input `x`", "complex128"]),
    ({"x": np.array([["a"] * 3] * 5), "t": np.ones(5)}, ["input `x`", "dtype"]),
    ({"x": np.ones((5, 3)), "t": np.full(5, 2.0)}, ["input `t`", "constraint", "[0, 1]"]),
])
def test_bad_data(tmp_path, arrays, words):
    path = tmp_path / "d.npz"
    np.savez(path, **arrays)
    with pytest.raises(DcpnetError) as excinfo:
        load_data(NET, path)
    msg = _message(excinfo)
    assert msg.startswith(f"{path}:1:1: error: ")
    for w in words:
        assert w in msg, (w, msg)


def test_bad_params(tmp_path):
    path = tmp_path / "p.npz"
    np.savez(path, W=-np.ones((2, 3)), b=np.ones(2))
    with pytest.raises(DcpnetError, match="param `W` violates its constraint"):
        load_params(NET, path)
    assert load_params(NET, path, check_bounds=False)["W"].min() == -1
    np.savez(path, W=np.ones((3, 2)), b=np.ones(2))
    with pytest.raises(DcpnetError, match=r"param `W` has shape \(3, 2\); expected \(2, 3\)"):
        load_params(NET, path)
    np.savez(path, W=np.ones((2, 3)))
    with pytest.raises(DcpnetError, match="param `b` is missing"):
        load_params(NET, path)
    np.savez(path, W=np.ones((2, 3)), b=np.array([1e300, 0]))
    with pytest.raises(DcpnetError, match="too large for float32"):
        load_params(NET, path, np.float32)


@pytest.mark.parametrize("content", [b"", b"garbage", b"PK\x03\x04broken zip", None, "npy", "pickle"])
def test_unreadable_files(tmp_path, content):
    path = tmp_path / "f.npz"
    if content is None:
        path = tmp_path / "does_not_exist.npz"
    elif content == "npy":
        np.save(tmp_path / "f.npy", np.ones(3))
        (tmp_path / "f.npy").rename(path)
    elif content == "pickle":
        np.savez(path, x=np.array([{"a": 1}], dtype=object))
    else:
        path.write_bytes(content)
    with pytest.raises(DcpnetError) as excinfo:
        read_npz(path)
    assert _message(excinfo).startswith(f"{path}:1:1: error: ")


def test_truncated_archive(tmp_path):
    path = tmp_path / "d.npz"
    np.savez_compressed(path, x=np.random.default_rng(1).normal(size=(200, 3)), t=np.ones(200) / 2)
    path.write_bytes(path.read_bytes()[:-300])
    with pytest.raises(DcpnetError):
        load_data(NET, path)


def test_save_is_atomic(tmp_path):
    path = tmp_path / "out.npz"
    save_npz(path, {"a": np.arange(3.0)})
    assert read_npz(path)["a"].tolist() == [0.0, 1.0, 2.0]
    with pytest.raises(TypeError):
        save_npz(path, {"a": _Unsaveable()})
    assert read_npz(path)["a"].tolist() == [0.0, 1.0, 2.0]        # the old file is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.npz"]
    with pytest.raises(DcpnetError, match="cannot write"):
        save_npz(tmp_path / "no" / "such" / "dir.npz", {"a": np.ones(1)})


class _Unsaveable:
    def __array__(self, *args, **kwargs):
        raise TypeError("cannot become an array")


def test_written_files_follow_the_umask(tmp_path):
    """Files dcpnet writes get the permissions a plain `open` would give them, not mkstemp's 0o600."""
    import os
    import stat

    old = os.umask(0o022)
    try:
        save_npz(tmp_path / "p.npz", {"w": np.zeros(2)})
        os.umask(0o077)
        save_npz(tmp_path / "q.npz", {"w": np.zeros(2)})
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "p.npz").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "q.npz").stat().st_mode) == 0o600
