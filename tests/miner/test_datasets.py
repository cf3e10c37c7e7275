import numpy as np
import pytest

from miner.datasets import (
    BUILTIN_DATASETS,
    DIGITS_QUANTIZATION,
    HEADER_SIZE,
    ZERO_SALT,
    Dataset,
    DatasetFormatError,
    FeatureQuantization,
    dataset_digest,
    decode_dataset,
    encode_dataset,
    load_builtin,
    load_builtin_source,
    load_user_dataset,
    min_max_quantization,
    split_dataset,
    split_indices,
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
    for version in (0, 3, 255):  # 1 and 2 are the two known layouts
        bad_version = bytes(blob[:4]) + bytes([version]) + bytes(blob[5:])
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
    assert ds.quantization.low.tolist() == [0.5, -2.0] and ds.quantization.span.tolist() == [1.0, 4.0]
    assert np.array_equal(ds.quantization.apply(np.array([[0.5, -2.0], [1.5, 2.0], [1.0, 0.0]])),
                          ds.features)
    assert load_user_dataset(path).quantization is None  # integers 0..255 are kept as they are

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


# --- the quantisation that travels with the dataset --------------------------------------


def quantized_dataset():
    quantization = FeatureQuantization([0.0, -1.5, 2.0], [10.0, 3.0, 0.0], "half_even")
    raw = np.array([[0.0, -1.5, 2.0], [10.0, 1.5, 2.0], [5.0, 0.0, 7.0]])
    return Dataset(quantization.apply(raw), [0, 1, 1], num_classes=2, quantization=quantization), raw


def test_quantized_round_trip_and_known_encoding():
    ds, raw = quantized_dataset()
    assert ds.features.tolist() == [[0, 0, 0], [255, 255, 0], [128, 128, 0]]
    blob = encode_dataset(ds)
    assert blob[4] == 2 and len(blob) == HEADER_SIZE + 1 + 16 * 3 + 3 * 3 + 3
    section = blob[HEADER_SIZE : HEADER_SIZE + 1 + 48]
    assert section == b"\x01" + np.array([0.0, -1.5, 2.0, 10.0, 3.0, 0.0], "<f8").tobytes()
    back = decode_dataset(blob)
    assert encode_dataset(back) == blob and dataset_digest(back) == dataset_digest(ds)
    assert back.quantization.rounding == "half_even"
    assert np.array_equal(back.quantization.apply(raw), ds.features)
    # the quantisation is part of what the digest commits to
    plain = Dataset(ds.features, ds.labels, num_classes=2)
    assert encode_dataset(plain)[4] == 1 and dataset_digest(plain) != dataset_digest(ds)
    floor = Dataset(ds.features, ds.labels, 2, quantization=FeatureQuantization(
        ds.quantization.low, ds.quantization.span, "floor"))
    assert dataset_digest(floor) != dataset_digest(ds)


def test_quantized_decoding_is_bound_checked():
    ds, _ = quantized_dataset()
    blob = encode_dataset(ds)
    for cut in range(len(blob)):
        with pytest.raises(DatasetFormatError):
            decode_dataset(blob[:cut])
    with pytest.raises(DatasetFormatError, match="trailing"):
        decode_dataset(blob + b"\x00")
    for code in (0, 3, 255):
        bad = bytearray(blob)
        bad[HEADER_SIZE] = code
        with pytest.raises(DatasetFormatError, match="rounding"):
            decode_dataset(bytes(bad))
    span_offset = HEADER_SIZE + 1 + 8 * 3
    for value, message in ((np.nan, "finite"), (np.inf, "finite"), (-1.0, ">= 0")):
        bad = bytearray(blob)
        bad[span_offset : span_offset + 8] = np.array([value], "<f8").tobytes()
        with pytest.raises(DatasetFormatError, match=message):
            decode_dataset(bytes(bad))
    bad = bytearray(blob)
    bad[HEADER_SIZE + 1 : HEADER_SIZE + 9] = np.array([-np.inf], "<f8").tobytes()  # a low
    with pytest.raises(DatasetFormatError, match="finite"):
        decode_dataset(bytes(bad))


def test_quantization_validates_and_applies():
    with pytest.raises(DatasetFormatError, match="rounding"):
        FeatureQuantization([0.0], [1.0], "nearest")
    with pytest.raises(DatasetFormatError, match="span"):
        FeatureQuantization([0.0, 1.0], [1.0], "floor")
    with pytest.raises(DatasetFormatError, match="quantisation"):
        Dataset([[1, 2]], [0], num_classes=2, quantization=FeatureQuantization([0.0], [1.0]))
    q = FeatureQuantization([0.0, 0.0], [2.0, 0.0], "half_even")
    # to nearest (1.0 -> exactly 127.5 -> 128); out-of-range values saturate; a constant feature is 0
    x = np.array([[0.3, 5.0], [1.0, -1.0], [-7.0, 1e300], [9.0, np.finfo(np.float64).max]])
    assert q.apply(x).tolist() == [[38, 0], [128, 0], [0, 0], [255, 0]]
    assert FeatureQuantization([0.0], [2.0], "floor").apply(np.array([[1.0], [0.3]])).tolist() == [[127], [38]]
    with pytest.raises(DatasetFormatError, match="NaN"):
        q.apply(np.array([[np.nan, 0.0]]))
    with pytest.raises(DatasetFormatError, match="shape"):
        q.apply(np.zeros((2, 3)))
    assert FeatureQuantization.from_obj(q.to_obj()).to_obj() == q.to_obj()
    with pytest.raises(DatasetFormatError):
        FeatureQuantization.from_obj({"rounding": "floor", "low": ["0"], "span": [1.0]})


@pytest.mark.parametrize("name", BUILTIN_DATASETS)
def test_builtin_datasets_carry_the_quantisation_of_their_sklearn_source(name):
    ds = load_builtin(name)
    raw, labels = load_builtin_source(name)
    assert ds.quantization is not None
    assert np.array_equal(ds.quantization.apply(raw), ds.features)
    assert np.array_equal(labels, ds.labels)
    back = decode_dataset(encode_dataset(ds))
    assert np.array_equal(back.quantization.low, ds.quantization.low)
    assert np.array_equal(back.quantization.span, ds.quantization.span)
    train, test = split_dataset(ds, 0.2, seed=5)
    assert train.quantization is ds.quantization and test.quantization is ds.quantization
    test_rows, _ = split_indices(ds.n, 0.2, seed=5)
    assert np.array_equal(ds.quantization.apply(raw[test_rows]), test.features)
    if name == "digits":  # unchanged from the exact integer rescale v * 255 // 16
        assert ds.quantization is DIGITS_QUANTIZATION
        assert np.array_equal(ds.features, raw.astype(np.int64) * 255 // 16)
    elif name == "digits28":  # digits' 0..16 scale, upsampled
        assert np.array_equal(ds.quantization.span, np.full(784, 16.0))
    else:
        expected = min_max_quantization(raw)
        assert np.array_equal(ds.quantization.low, expected.low)


def test_digits28_is_digits_upsampled_bilinearly_to_28x28(tmp_path):
    import torch

    from miner.datasets import load_user_dataset, upsample_digits

    ds = load_builtin("digits28")
    assert (ds.n, ds.d, ds.num_classes, ds.image_shape) == (1797, 784, 10, (1, 28, 28))
    raw, labels = load_builtin_source("digits")
    assert np.array_equal(ds.labels, labels)
    up = upsample_digits(raw.reshape(-1, 8, 8)[:50])
    reference = torch.nn.functional.interpolate(
        torch.from_numpy(raw.reshape(-1, 1, 8, 8)[:50]), size=(28, 28), mode="bilinear", align_corners=False
    ).numpy()[:, 0]
    assert np.abs(up - reference).max() < 1e-12  # torch's bilinear, computed in integers
    assert up.min() >= 0 and up.max() <= 16
    # a user's (n, 28, 28) .npz of bytes is kept as is, with its image shape
    path = tmp_path / "images.npz"
    np.savez(path, X=ds.features[:100].reshape(100, 28, 28).astype(np.uint8), y=ds.labels[:100])
    user = load_user_dataset(path)
    assert user.image_shape == (1, 28, 28) and user.quantization is None
    assert np.array_equal(user.features, ds.features[:100])
