import numpy as np
import pytest

from miner.datasets import (
    BUILTIN_DATASETS,
    HEADER_SIZE,
    ZERO_SALT,
    Dataset,
    DatasetFormatError,
    dataset_digest,
    decode_dataset,
    encode_dataset,
    load_builtin,
    load_user_dataset,
    split_dataset,
)


def small_dataset(salt=ZERO_SALT, image_shape=None):
    features = np.arange(20, dtype=np.int64).reshape(5, 4) * 13 % 256
    return Dataset(features, [0, 1, 2, 1, 0], num_classes=3, salt=salt, image_shape=image_shape)


def test_round_trip_and_digest():
    ds = small_dataset(salt=bytes(range(32)), image_shape=(1, 2, 2))
    blob = encode_dataset(ds)
    assert blob[:5] == b"PLDS\x01"
    assert len(blob) == HEADER_SIZE + 5 * 4 + 5
    back = decode_dataset(blob)
    assert encode_dataset(back) == blob
    assert back.image_shape == (1, 2, 2) and back.salt == bytes(range(32))
    assert back.features.dtype == np.int16 and back.labels.dtype == np.uint8
    assert dataset_digest(back) == dataset_digest(ds)
    assert dataset_digest(small_dataset()) != dataset_digest(ds)


def test_known_encoding():
    ds = Dataset([[0, 255]], [1], num_classes=2)
    assert encode_dataset(ds).hex() == (
        "504c4453" "01" "00000001" "00000002" "0002" "000000000000" + "00" * 32 + "00ff" "01"
    )


def test_rejects_every_truncation_and_trailing_bytes():
    blob = encode_dataset(small_dataset())
    for cut in range(len(blob)):
        with pytest.raises(DatasetFormatError):
            decode_dataset(blob[:cut])
    with pytest.raises(DatasetFormatError, match="trailing"):
        decode_dataset(blob + b"\x00")


def test_rejects_garbage_and_bad_fields():
    blob = bytearray(encode_dataset(small_dataset()))
    rng = np.random.default_rng(0)
    for _ in range(50):
        with pytest.raises(DatasetFormatError):
            decode_dataset(rng.bytes(int(rng.integers(0, 200))))
    bad_magic = b"XLDS" + bytes(blob[4:])
    with pytest.raises(DatasetFormatError, match="magic"):
        decode_dataset(bad_magic)
    bad_version = bytes(blob[:4]) + b"\x02" + bytes(blob[5:])
    with pytest.raises(DatasetFormatError, match="version"):
        decode_dataset(bad_version)
    bad_label = bytes(blob[:-1]) + b"\x03"  # num_classes is 3
    with pytest.raises(DatasetFormatError, match="labels"):
        decode_dataset(bad_label)
    half_image = bytearray(blob)
    half_image[15:17] = (1).to_bytes(2, "big")  # c=1, h=w=0
    with pytest.raises(DatasetFormatError, match="image shape"):
        decode_dataset(bytes(half_image))
    zero_n = bytearray(blob)
    zero_n[5:9] = bytes(4)
    with pytest.raises(DatasetFormatError, match="samples"):
        decode_dataset(bytes(zero_n))


def test_constructor_validates():
    with pytest.raises(DatasetFormatError, match="0..255"):
        Dataset([[256]], [0], num_classes=2)
    with pytest.raises(DatasetFormatError, match="0..255"):
        Dataset([[-1]], [0], num_classes=2)
    with pytest.raises(DatasetFormatError, match="labels"):
        Dataset([[1]], [2], num_classes=2)
    with pytest.raises(DatasetFormatError, match="integer"):
        Dataset([[0.5]], [0], num_classes=2)
    with pytest.raises(DatasetFormatError, match="image shape"):
        Dataset([[1, 2, 3]], [0], num_classes=2, image_shape=(1, 2, 2))
    with pytest.raises(DatasetFormatError, match="salt"):
        Dataset([[1]], [0], num_classes=2, salt=b"short")
    with pytest.raises(DatasetFormatError, match="num_classes"):
        Dataset([[1]], [0], num_classes=1)
    ds = small_dataset()
    with pytest.raises(ValueError):
        ds.features[0, 0] = 1  # read-only


@pytest.mark.parametrize("name", BUILTIN_DATASETS)
def test_builtin_datasets(name):
    ds = load_builtin(name)
    assert ds.features.min() >= 0 and ds.features.max() == 255
    assert ds.salt == ZERO_SALT
    assert decode_dataset(encode_dataset(ds)).n == ds.n
    if name == "digits":
        assert (ds.n, ds.d, ds.num_classes, ds.image_shape) == (1797, 64, 10, (1, 8, 8))


def test_unknown_builtin():
    with pytest.raises(DatasetFormatError, match="unknown"):
        load_builtin("mnist")


def test_split_is_seeded_and_salts_the_test_part():
    ds = load_builtin("iris")
    train_a, test_a = split_dataset(ds, 0.2, seed=7)
    train_b, test_b = split_dataset(ds, 0.2, seed=7)
    assert (train_a.n, test_a.n) == (120, 30)
    assert train_a.salt == ZERO_SALT and test_a.salt != ZERO_SALT and test_a.salt != test_b.salt
    assert np.array_equal(test_a.features, test_b.features)
    assert dataset_digest(train_a) == dataset_digest(train_b)
    _, test_c = split_dataset(ds, 0.2, seed=7, test_salt=test_a.salt)
    assert dataset_digest(test_c) == dataset_digest(test_a)
    _, test_d = split_dataset(ds, 0.2, seed=8, test_salt=test_a.salt)
    assert dataset_digest(test_d) != dataset_digest(test_a)
    with pytest.raises(ValueError):
        split_dataset(ds, 1.0, seed=0)


def test_user_npz(tmp_path):
    path = tmp_path / "images.npz"
    x = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    np.savez(path, X=x, y=np.array([0, 1]))
    ds = load_user_dataset(path)
    assert ds.image_shape == (1, 3, 4) and ds.d == 12 and ds.num_classes == 2
    assert np.array_equal(ds.features[1], x[1].reshape(-1))

    floats = tmp_path / "floats.npz"
    np.savez(floats, X=np.array([[0.5, -2.0], [1.5, 2.0], [1.0, 0.0]]), y=np.array([0, 1, 2]))
    ds = load_user_dataset(floats)
    assert ds.features.tolist() == [[0, 0], [255, 255], [128, 128]]

    missing = tmp_path / "missing.npz"
    np.savez(missing, X=x)
    with pytest.raises(DatasetFormatError, match="missing"):
        load_user_dataset(missing)
    bad_labels = tmp_path / "bad.npz"
    np.savez(bad_labels, X=x, y=np.array([0.5, 1.0]))
    with pytest.raises(DatasetFormatError, match="integers"):
        load_user_dataset(bad_labels)
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip")
    with pytest.raises(DatasetFormatError, match="npz"):
        load_user_dataset(garbage)


def test_user_csv(tmp_path):
    with_header = tmp_path / "a.csv"
    with_header.write_text("f1,f2,label\n1,2,0\n3,4,1\n\n5,6,1\n")
    ds = load_user_dataset(with_header)
    assert ds.features.tolist() == [[1, 2], [3, 4], [5, 6]] and ds.labels.tolist() == [0, 1, 1]
    no_header = tmp_path / "b.csv"
    no_header.write_text("1,2,0\n3,4,1\n")
    assert load_user_dataset(no_header).n == 2
    ragged = tmp_path / "c.csv"
    ragged.write_text("1,2,0\n3,1\n")
    with pytest.raises(DatasetFormatError, match="columns"):
        load_user_dataset(ragged)
    text = tmp_path / "d.csv"
    text.write_text("1,2,0\n3,x,1\n")
    with pytest.raises(DatasetFormatError, match="non-numeric"):
        load_user_dataset(text)
    other = tmp_path / "e.txt"
    other.write_text("1,2,0\n")
    with pytest.raises(DatasetFormatError, match="unsupported"):
        load_user_dataset(other)
    with pytest.raises(DatasetFormatError, match="no such file"):
        load_user_dataset(tmp_path / "absent.csv")
