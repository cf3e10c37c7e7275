"""Inner-product functional encryption (Abdalla, Bourse, De Caro, Pointcheval, PKC 2015) over
secp256k1, for encrypted training data behind the SML. See docs/IPFE.md.

    group.py    the Group protocol and its two backends (coincurve, py-ecc)
    scheme.py   setup, encrypt, keygen, decrypt; keys, ciphertexts and their wire formats
    dlog.py     bounded discrete logs: baby-step giant-step, the table kept on disk
    batch.py    the protocol's batch API: a dataset, a miner's SML keys and projections
"""

from .batch import (
    check_bound,
    check_task,
    decrypt_points,
    decrypt_projections,
    decrypt_sml_inputs,
    encrypt_dataset,
    sml_keys,
    sml_rows,
    table_for,
    ternary_bound,
)
from .dlog import MAX_DLOG_BOUND, DlogTable, default_cache_dir, table_builds
from .errors import IPFEBoundError, IPFEDecryptError, IPFEError, IPFEFormatError
from .group import BACKENDS, DEFAULT_BACKEND, Group, get_group
from .scheme import (
    Ciphertext,
    CiphertextBatch,
    FunctionalKeys,
    MasterPublicKey,
    MasterSecretKey,
    decrypt,
    decrypt_element,
    decrypt_with_keys,
    derive_keys,
    encrypt,
    encrypt_with_secret,
    keygen,
    setup,
)

__all__ = [
    "BACKENDS", "DEFAULT_BACKEND", "MAX_DLOG_BOUND", "Ciphertext", "CiphertextBatch", "DlogTable",
    "FunctionalKeys", "Group", "IPFEBoundError", "IPFEDecryptError", "IPFEError", "IPFEFormatError",
    "MasterPublicKey", "MasterSecretKey", "check_bound", "check_task", "decrypt", "decrypt_element",
    "decrypt_points", "decrypt_projections", "decrypt_sml_inputs", "decrypt_with_keys",
    "default_cache_dir", "derive_keys", "encrypt", "encrypt_dataset", "encrypt_with_secret",
    "get_group", "keygen", "setup", "sml_keys", "sml_rows", "table_builds", "table_for",
    "ternary_bound",
]
