"""The IPFE core (miner.ipfe): group backends, the scheme, the discrete-log table, the batch API."""

from __future__ import annotations

import random

import numpy as np
import pytest
from eth_utils import keccak

from miner import ipfe
from miner.ipfe import (
    Ciphertext,
    CiphertextBatch,
    DlogTable,
    FunctionalKeys,
    IPFEBoundError,
    IPFEDecryptError,
    IPFEFormatError,
    MasterPublicKey,
    MasterSecretKey,
    check_bound,
    check_task,
    decrypt,
    decrypt_projections,
    decrypt_sml_inputs,
    decrypt_with_keys,
    derive_keys,
    encrypt,
    encrypt_dataset,
    encrypt_with_secret,
    get_group,
    keygen,
    setup,
    sml_keys,
    sml_rows,
    table_builds,
)
from miner.ipfe.group import IDENTITY_ENCODING, SECP256K1_P, SECP256K1_Q
from miner.sml import sml_for

BACKENDS = ["coincurve", "py-ecc"]
ANCHOR = keccak(b"tests.ipfe anchor")
MINER_A = bytes.fromhex("f39fd6e51aad88f6f4ce6ab8827279cfffb92266")
MINER_B = bytes.fromhex("70997970c51812dc3a010c7d01d50e529c0e5fb3")


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("ipfe-cache")


@pytest.fixture(scope="module")
def table_small(cache_dir):
    """|v| <= 1000 with 30 baby steps: 16 giant steps per sign, so BSGS proper is exercised."""
    return DlogTable.load_or_build(get_group(), 1000, cache_dir, baby_steps=30)


@pytest.fixture(scope="module")
def table_digits(cache_dir):
    return ipfe.table_for(get_group(), 64, cache_dir)


def ternary(rng: np.random.Generator, rows: int, cols: int) -> np.ndarray:
    return rng.choice(np.array([-1, 0, 0, 0, 0, 1], dtype=np.int8), size=(rows, cols))


# --- the group backends ------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_group_laws_and_encoding(backend):
    G = get_group(backend)
    g, o = G.generator(), G.identity()
    assert G.is_identity(o) and G.encode(o) == IDENTITY_ENCODING
    assert G.is_identity(G.add(g, G.neg(g)))
    assert G.is_identity(G.mul(g, SECP256K1_Q)) and G.is_identity(G.sum([]))
    assert G.eq(G.sum([g, g, g]), G.mul(g, 3)) and G.eq(G.mul(g, -2), G.neg(G.add(g, g)))
    assert G.eq(G.add(o, g), g) and G.eq(G.mul_gen(5), G.mul(g, 5))
    for k in (1, 2, 12345, SECP256K1_Q - 1, 2**200 + 7):
        p = G.mul_gen(k)
        assert G.eq(G.decode(G.encode(p)), p)
    assert G.is_identity(G.decode(IDENTITY_ENCODING))


def test_backends_encode_the_same_points():
    cc, pe = get_group("coincurve"), get_group("py-ecc")
    rnd = random.Random(1)
    for _ in range(5):
        k = rnd.randrange(1, SECP256K1_Q)
        assert cc.encode(cc.mul_gen(k)) == pe.encode(pe.mul_gen(k))
        a, b = cc.mul_gen(k), pe.mul_gen(k)
        assert cc.encode(cc.add(a, cc.generator())) == pe.encode(pe.add(b, pe.generator()))
        assert cc.encode(cc.neg(a)) == pe.encode(pe.neg(b))


def _non_curve_x() -> int:
    x = 5
    while pow((x**3 + 7) % SECP256K1_P, (SECP256K1_P - 1) // 2, SECP256K1_P) == 1:
        x += 1
    return x


@pytest.mark.parametrize("backend", BACKENDS)
def test_group_decode_rejects_non_points(backend):
    G = get_group(backend)
    good = G.encode(G.mul_gen(99))
    bad = [
        good[:-1], good + b"\x00", b"", bytes([4]) + good[1:], bytes([0]) + good[1:],
        bytes([2]) + SECP256K1_P.to_bytes(32, "big"), bytes([3]) + (2**256 - 1).to_bytes(32, "big"),
        bytes([2]) + _non_curve_x().to_bytes(32, "big"), b"\x00" * 32 + b"\x01",
    ]
    for data in bad:
        with pytest.raises(IPFEFormatError):
            G.decode(data)
    with pytest.raises(IPFEFormatError):
        G.decode("02" * 33)  # not bytes


# --- the scheme --------------------------------------------------------------------------------


@pytest.mark.parametrize("backend,n,trials", [("coincurve", 16, 12), ("py-ecc", 4, 3)])
def test_decrypts_inner_products_of_random_vectors(backend, n, trials, table_small):
    rng = np.random.default_rng(7)
    mpk, msk = setup(n, backend)
    for _ in range(trials):
        x = rng.integers(-20, 21, size=n)  # the scheme is signed; datasets are 0..255
        y = rng.integers(-3, 4, size=n)  # |<x, y>| <= 16 * 60 < 1000
        ct = encrypt(mpk, x)
        sk = keygen(msk, y)
        assert decrypt(ct, y, sk.sk[0], table_small) == int(x @ y)
        assert decrypt_with_keys(ct, sk, table_small, mpk_digest=mpk.digest).tolist() == [int(x @ y)]


@pytest.mark.parametrize("backend", BACKENDS)
def test_bound_edges_and_negative_products(backend, table_small):
    """<x, y> = +-B decrypt; +-(B + 1) do not; zero (the identity) decrypts to 0."""
    mpk, msk = setup(2, backend)
    B = table_small.bound
    y = [1, -1]
    m = table_small.baby_steps
    for value in (B, -B, 0, 1, -1, m, -m, m + 1, -(m + 1), 2 * m + 1, -(2 * m + 1), B - 1):
        x = [value, 0] if value >= 0 else [0, -value]
        assert decrypt(encrypt(mpk, x), y, keygen(msk, y).sk[0], table_small) == value
    for value in (B + 1, -(B + 1)):
        x = [value, 0] if value >= 0 else [0, -value]
        with pytest.raises(IPFEDecryptError):
            decrypt(encrypt(mpk, x), y, keygen(msk, y).sk[0], table_small)


def test_every_value_within_the_bound_is_found(table_small):
    G = get_group()
    B = table_small.bound
    values = np.arange(-B, B + 1)
    got = table_small.solve(G, [G.mul_gen(int(v)) for v in values])
    assert np.array_equal(got, values)


def test_two_backends_agree(table_small):
    cc, pe = get_group("coincurve"), get_group("py-ecc")
    mpk_c, msk_c = setup(6, cc)
    mpk_p = MasterPublicKey.from_bytes(mpk_c.to_bytes(), pe)
    msk_p = MasterSecretKey.from_bytes(msk_c.to_bytes(), pe)
    assert mpk_p.to_bytes() == mpk_c.to_bytes() == msk_p.public_key.to_bytes()
    x, y, r = [3, 0, 255, 17, 1, 90], [1, -1, 0, 1, -1, 1], 0xC0FFEE
    ct_c, ct_p = encrypt(mpk_c, x, r=r), encrypt(mpk_p, x, r=r)
    assert ct_c.to_bytes() == ct_p.to_bytes() == encrypt_with_secret(msk_p, x, r=r).to_bytes()
    key_c, key_p = keygen(msk_c, y), keygen(msk_p, y)
    assert key_c.to_bytes() == key_p.to_bytes()
    expected = int(np.dot(x, y))
    assert decrypt(ct_c, y, key_c.sk[0], table_small) == decrypt(ct_p, y, key_p.sk[0], table_small) == expected
    # a py-ecc ciphertext decrypts under coincurve and back
    assert decrypt(Ciphertext.from_bytes(ct_p.to_bytes(), cc), y, key_c.sk[0], table_small) == expected


def test_discrete_log_table_is_backend_independent(tmp_path):
    a = DlogTable.load_or_build(get_group("coincurve"), 300, tmp_path / "a", baby_steps=300)
    b = DlogTable.load_or_build(get_group("py-ecc"), 300, tmp_path / "b", baby_steps=300)
    assert np.array_equal(a.table, b.table)


def test_secret_key_encryption_equals_public_key_encryption():
    mpk, msk = setup(8)
    x = np.arange(8) * 31
    assert encrypt(mpk, x, r=12345).to_bytes() == encrypt_with_secret(msk, x, r=12345).to_bytes()
    X = np.stack([x, x[::-1]])
    a = encrypt_dataset(mpk, X, randomness=[5, 6]).to_bytes()
    assert a == encrypt_dataset(msk, X, randomness=[5, 6]).to_bytes()


def test_each_sample_gets_fresh_randomness():
    mpk, msk = setup(4)
    batch = encrypt_dataset(msk, np.full((3, 4), 9))
    G = batch.group
    c0s = {G.encode(ct.c0) for ct in batch.items}
    assert len(c0s) == 3  # the same sample thrice: three different ciphertexts
    assert len({ct.body() for ct in batch.items}) == 3


# --- the SML batch API -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits_like():
    rng = np.random.default_rng(3)
    X = rng.integers(0, 256, size=(6, 64))
    X[0] = 255  # the largest features
    X[1] = 0  # all products zero: the identity everywhere
    mpk, msk = setup(64)
    return X, mpk, msk, encrypt_dataset(msk, X)


def test_miner_decrypts_its_sml_projections(digits_like, table_digits):
    X, mpk, msk, batch = digits_like
    keys = FunctionalKeys.from_bytes(sml_keys(msk, ANCHOR, MINER_A).to_bytes())
    sml = sml_for(ANCHOR, MINER_A, 64)
    assert np.array_equal(keys.rows, sml.matrix)
    batch = CiphertextBatch.from_bytes(batch.to_bytes())  # as received
    projections = decrypt_projections(batch, keys, table_digits)
    assert np.array_equal(projections, X @ sml.matrix.astype(np.int64).T)
    assert (projections < 0).any()  # negative inner products occur
    assert np.array_equal(decrypt_sml_inputs(batch, keys, table_digits), sml.apply_int(X))


def test_decryption_via_a_basis_equals_decrypting_every_row(digits_like, table_digits):
    X, mpk, msk, batch = digits_like
    keys = sml_keys(msk, ANCHOR, MINER_A)
    full = decrypt_projections(batch, keys, table_digits, via_basis=False, samples=[0, 3, 5])
    assert np.array_equal(decrypt_projections(batch, keys, table_digits, samples=[0, 3, 5]), full)
    # a tampered key among the basis rows (the first independent ones) is still detected
    bad = FunctionalKeys(keys.group, keys.mpk_digest, keys.rows, (keys.sk[0] ^ 1,) + keys.sk[1:])
    with pytest.raises(IPFEDecryptError):
        decrypt_projections(batch, bad, table_digits, samples=[0])


def test_keys_for_another_miner_give_that_miners_projections(digits_like, table_digits):
    X, mpk, msk, batch = digits_like
    keys_b = sml_keys(msk, ANCHOR, MINER_B)
    got = decrypt_sml_inputs(batch, keys_b, table_digits)
    sml_a, sml_b = sml_for(ANCHOR, MINER_A, 64), sml_for(ANCHOR, MINER_B, 64)
    assert np.array_equal(got, sml_b.apply_int(X))
    assert not np.array_equal(got, sml_a.apply_int(X))
    # and keys on another anchor are another SML again
    other = decrypt_sml_inputs(batch, sml_keys(msk, keccak(b"other anchor"), MINER_A), table_digits)
    assert not np.array_equal(other, sml_a.apply_int(X))


def test_without_the_right_key_nothing_decrypts(digits_like, table_digits):
    X, mpk, msk, batch = digits_like
    keys = derive_keys(msk, sml_rows(ANCHOR, MINER_A, 64)[:4])
    # a key of another master key is refused by its digest
    _, other_msk = setup(64)
    foreign = derive_keys(other_msk, keys.rows)
    with pytest.raises(IPFEDecryptError, match="another master public key"):
        decrypt_projections(batch, foreign, table_digits)
    # ... and with the digest forged, its results are not in the table
    forged = FunctionalKeys(foreign.group, batch.mpk_digest, foreign.rows, foreign.sk)
    with pytest.raises(IPFEDecryptError):
        decrypt_projections(batch, forged, table_digits)
    # a tampered scalar, a tampered row (the scalar of another row), a random scalar
    bad_sk = FunctionalKeys(keys.group, keys.mpk_digest, keys.rows, (keys.sk[0] + 1,) + keys.sk[1:])
    rows = np.array(keys.rows)
    rows[0, np.flatnonzero(rows[0] == 0)[0]] = 1
    bad_row = FunctionalKeys(keys.group, keys.mpk_digest, rows, keys.sk)
    guessed = FunctionalKeys(keys.group, keys.mpk_digest, keys.rows, (random.randrange(SECP256K1_Q),) * 4)
    for bad in (bad_sk, bad_row, guessed):
        with pytest.raises(IPFEDecryptError):
            decrypt_projections(batch, bad, table_digits, samples=[0, 2])
    # the genuine keys still work
    assert np.array_equal(decrypt_projections(batch, keys, table_digits),
                          X @ keys.rows.astype(np.int64).T)


def test_one_miner_can_recover_the_features_from_its_own_keys(digits_like, table_digits):
    """The documented limit: 2d ternary rows span R^d, so one miner's projections give x."""
    X, mpk, msk, batch = digits_like
    keys = sml_keys(msk, ANCHOR, MINER_A)
    projections = decrypt_projections(batch, keys, table_digits)
    S = keys.rows.astype(np.float64)
    assert np.linalg.matrix_rank(S) == 64
    recovered = np.rint(np.linalg.lstsq(S, projections.T.astype(np.float64), rcond=None)[0].T)
    assert np.array_equal(recovered.astype(np.int64), X)


def test_worker_processes_give_the_same_results(digits_like, table_digits):
    X, mpk, msk, _ = digits_like
    batch = encrypt_dataset(msk, X, workers=2)
    keys = derive_keys(msk, sml_rows(ANCHOR, MINER_A, 64)[:8])
    assert np.array_equal(decrypt_projections(batch, keys, table_digits, workers=2),
                          X @ keys.rows.astype(np.int64).T)


def test_py_ecc_batch_matches_coincurve(digits_like, table_digits):
    X, mpk, msk, batch = digits_like
    keys = derive_keys(msk, sml_rows(ANCHOR, MINER_A, 64)[:3])
    pe = get_group("py-ecc")
    batch_p = CiphertextBatch.from_bytes(batch.to_bytes(), pe)
    keys_p = FunctionalKeys.from_bytes(keys.to_bytes(), pe)
    assert np.array_equal(decrypt_projections(batch_p, keys_p, table_digits, samples=[0, 1, 4]),
                          decrypt_projections(batch, keys, table_digits, samples=[0, 1, 4]))


# --- malformed input ---------------------------------------------------------------------------


def _malformed(data: bytes, point_offsets: list[int], scalar_offsets: list[int]) -> list[bytes]:
    """Truncations, extensions, header damage, invalid points and out-of-range scalars."""
    out = [b"", data[:9], data[:-1], data + b"\x00", b"XXXX" + data[4:],
           data[:4] + b"\x02" + data[5:], data[:5] + b"\x09" + data[6:],
           data[:6] + b"\x00\x00\x00\x00" + data[10:], data[:6] + b"\xff\xff\xff\xff" + data[10:]]
    for off in point_offsets:
        out.append(data[:off] + b"\x05" + data[off + 1:])  # bad prefix
        out.append(data[:off] + b"\x02" + SECP256K1_P.to_bytes(32, "big") + data[off + 33:])
        out.append(data[:off] + b"\x02" + _non_curve_x().to_bytes(32, "big") + data[off + 33:])
    for off in scalar_offsets:
        out.append(data[:off] + SECP256K1_Q.to_bytes(32, "big") + data[off + 32:])
        out.append(data[:off] + b"\xff" * 32 + data[off + 32:])
    return out


@pytest.mark.parametrize("backend", BACKENDS)
def test_malformed_encodings_are_refused_and_change_nothing(backend, table_small):
    G = get_group(backend)
    mpk, msk = setup(3, G)
    ct = encrypt(mpk, [1, 2, 3])
    batch = encrypt_dataset(msk, np.array([[1, 2, 3], [4, 5, 6]]))
    keys = derive_keys(msk, np.array([[1, -1, 0], [0, 1, 1]]))
    before = [mpk.to_bytes(), msk.to_bytes(), ct.to_bytes(), batch.to_bytes(), keys.to_bytes()]
    cases = {
        MasterPublicKey: _malformed(mpk.to_bytes(), [10, 43], []),
        MasterSecretKey: _malformed(msk.to_bytes(), [], [10, 42]),
        Ciphertext: _malformed(ct.to_bytes(), [10, 43, 76], []),
        CiphertextBatch: _malformed(batch.to_bytes(), [46, 79, 46 + 132], []),
        FunctionalKeys: _malformed(keys.to_bytes(), [], [14 + 32 + 6, 14 + 32 + 6 + 32]),
    }
    # identities where they are not allowed, a coefficient -128, a zero secret scalar
    cases[MasterPublicKey].append(mpk.to_bytes()[:10] + IDENTITY_ENCODING + mpk.to_bytes()[43:])
    cases[Ciphertext].append(ct.to_bytes()[:10] + IDENTITY_ENCODING + ct.to_bytes()[43:])
    cases[CiphertextBatch].append(batch.to_bytes()[:46] + IDENTITY_ENCODING + batch.to_bytes()[79:])
    raw = keys.to_bytes()
    cases[FunctionalKeys].append(raw[:46] + b"\x80" + raw[47:])
    cases[MasterSecretKey].append(msk.to_bytes()[:10] + bytes(32) + msk.to_bytes()[42:])
    for cls, samples in cases.items():
        for data in samples:
            with pytest.raises(IPFEFormatError):
                cls.from_bytes(data, G)
        with pytest.raises(IPFEFormatError):
            cls.from_bytes("not bytes", G)
    # random damage: decoding raises IPFEFormatError or gives a batch that then fails to decrypt
    rnd = random.Random(5)
    raw = batch.to_bytes()
    for _ in range(40):
        damaged = bytearray(raw)
        damaged[rnd.randrange(len(raw))] ^= 1 << rnd.randrange(8)
        try:
            CiphertextBatch.from_bytes(bytes(damaged), G)
        except IPFEFormatError:
            pass
    assert [mpk.to_bytes(), msk.to_bytes(), ct.to_bytes(), batch.to_bytes(), keys.to_bytes()] == before
    assert decrypt_projections(batch, keys, table_small).tolist() == [[-1, 5], [-1, 11]]


def test_a_tampered_ciphertext_point_fails_to_decrypt(table_small):
    mpk, msk = setup(3)
    batch = encrypt_dataset(msk, np.array([[1, 2, 3]]))
    keys = derive_keys(msk, np.array([[1, 1, 1]]))
    G = batch.group
    ct = batch.items[0]
    moved = Ciphertext(G, ct.c0, (G.add(ct.c[0], G.mul_gen(10**9)),) + ct.c[1:])
    with pytest.raises(IPFEDecryptError):
        decrypt_projections(CiphertextBatch(G, batch.mpk_digest, (moved,)), keys, table_small)


# --- the table on disk -------------------------------------------------------------------------


def test_table_is_built_once_and_reused_from_disk(tmp_path):
    G = get_group()
    start = table_builds()
    first = DlogTable.load_or_build(G, 500, tmp_path)
    assert table_builds() == start + 1 and first.path.is_file()
    assert first.path.name == "bsgs-secp256k1-m500.npy"
    mtime = first.path.stat().st_mtime_ns
    second = DlogTable.load_or_build(G, 500, tmp_path)
    third = DlogTable.load_or_build(get_group("py-ecc"), 500, tmp_path)  # the same file
    assert table_builds() == start + 1
    assert first.path.stat().st_mtime_ns == mtime
    assert np.array_equal(first.table, second.table) and np.array_equal(first.table, third.table)
    # a damaged file is rebuilt, not trusted: two j's swapped (row 0 is always spot-checked)
    damaged = np.array(first.table)
    damaged[[0, 1], 4] = damaged[[1, 0], 4]
    np.save(first.path, damaged)
    rebuilt = DlogTable.load_or_build(G, 500, tmp_path)
    assert table_builds() == start + 2
    assert np.array_equal(rebuilt.table, first.table) and np.array_equal(np.load(first.path), first.table)
    first.path.write_bytes(b"garbage")
    DlogTable.load_or_build(G, 500, tmp_path)
    assert table_builds() == start + 3
    assert np.array_equal(np.load(first.path), first.table)
    # another directory, another bound with the same baby steps: the same file name scheme
    assert DlogTable.load_or_build(G, 400, tmp_path, baby_steps=500).bound == 400
    assert table_builds() == start + 3


def test_progress_bars_do_not_change_results(tmp_path, capsys):
    G = get_group()
    table = DlogTable.load_or_build(G, 300, tmp_path, progress=True)
    mpk, msk = setup(2)
    batch = encrypt_dataset(msk, np.array([[3, 4]] * 3), progress=True)
    keys = derive_keys(msk, np.array([[1, -1]]))
    assert decrypt_projections(batch, keys, table, progress=True).ravel().tolist() == [-1, -1, -1]
    assert capsys.readouterr().out == ""  # bars go to stderr


# --- the bound ---------------------------------------------------------------------------------


def test_check_bound_for_digits_and_refusals():
    ones = np.ones((1, 64), dtype=np.int8)
    assert check_bound(64, 255, ones) == 64 * 255 == check_task(64) == ipfe.ternary_bound(64)
    assert check_bound(64, 255, -ones) == 16320
    sml = sml_for(ANCHOR, MINER_A, 64).matrix
    need = check_bound(64, 255, sml)
    assert 0 < need < 16320  # a real SML row is far from all one sign
    with pytest.raises(IPFEBoundError):
        check_bound(64, 255, sml, table_bound=need - 1)
    assert check_bound(64, 255, sml, table_bound=need) == need
    with pytest.raises(IPFEBoundError):
        check_bound(4096, 255, np.full((1, 4096), 2, dtype=np.int8))  # 2 * 4096 * 255 > 2**20
    with pytest.raises(IPFEBoundError):
        check_bound(64, 255, np.ones((2, 63), dtype=np.int8))  # wrong width
    check_task(4096)  # every dataset the format allows fits
    with pytest.raises(IPFEBoundError):
        check_task(4200)
    with pytest.raises(IPFEBoundError):
        check_task(64, table_bound=16319)


def test_decryption_refuses_rows_beyond_the_table(table_small):
    mpk, msk = setup(16)
    batch = encrypt_dataset(msk, np.zeros((1, 16), dtype=np.int64))
    keys = derive_keys(msk, np.ones((1, 16), dtype=np.int8))  # 16 * 255 = 4080 > 1000
    with pytest.raises(IPFEBoundError):
        decrypt_projections(batch, keys, table_small)


def _greedy_rank_basis(rows: np.ndarray) -> list[int] | None:
    """The reference `_basis_rows` replaced: a row joins when it raises the rank."""
    chosen: list[int] = []
    for i in range(rows.shape[0]):
        if np.linalg.matrix_rank(rows[chosen + [i]].astype(np.float64)) == len(chosen) + 1:
            chosen.append(i)
            if len(chosen) == rows.shape[1]:
                return chosen
    return None


@pytest.mark.parametrize("seed", range(40))
def test_the_decryption_basis_is_the_first_independent_rows(seed):
    """`_basis_rows` (Gram-Schmidt) picks what the rank test per row picked, on ternary rows
    with repeats, zero rows and rank deficits, and on the SMLs' own matrices."""
    from miner.ipfe.batch import _basis_rows
    from miner.sml import model_sml

    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 12))
    rows = rng.choice([-1, 0, 0, 1], size=(int(rng.integers(n, 3 * n + 2)), n)).astype(np.int8)
    if seed % 3 == 0:
        rows[rng.integers(0, rows.shape[0], size=n)] = 0  # zero rows
    if seed % 4 == 1:
        rows[:, -1] = rows[:, 0]  # rank n - 1: no basis
    if seed % 5 == 2:
        rows = np.repeat(rows, 2, axis=0)  # every row twice
    assert _basis_rows(rows) == _greedy_rank_basis(rows)
    shape = (2 * 16,) if seed % 2 else (int(rng.integers(2, 9)), 4, 4)
    sml = model_sml(keccak(seed.to_bytes(2, "big")), b"\x01" * 20, shape, 16).matrix
    assert _basis_rows(sml) == _greedy_rank_basis(sml)
