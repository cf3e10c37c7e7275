"""eth-tester's own backend conformance suite, run against the PoLe dev chain.

Every test of ``BaseTestBackendDirect`` runs unchanged except the three below, which
hard-code another chain's transactions; each is re-stated for chain 0x504F4C45 and also
checks that the original transaction is refused (see docs/TESTER.md).
"""
import pytest
from eth_account import Account
from eth_keys import keys
from eth_tester.exceptions import TransactionNotFound
from eth_tester.utils.backend_testing import BaseTestBackendDirect
from eth_utils import denoms

from vm_hooks.params import CHAIN_ID
from vm_hooks.testing.tester import PoLeEthereumTester
from vm_hooks.vm import WrongChainIdError

#: The chain id eth-tester's suite signs for (its private chain's).
ETH_TESTER_CHAIN_ID = 131277322940537

#: The suite's raw transaction: legacy, unprotected (v = 27), so signed for no chain.
UNPROTECTED_RAW_TRANSACTION = "0xf86580843b9aca008252089419e7e376e7c213b7e7e7e46cc70a5dd086daff2a820539801ba0b101c1f9dc0c588c0194a1093f06e6b30d1fd16d31014ef5851311b7bfbf419ea01cfa8757b7863a630ef7491c62b03d9cd9dff395f61b5df500cc665f0fa5b027"  # noqa: E501

ACCESS_LIST = (
    {
        "address": "0xde0b295669a9fd93d5f28d9ec85e40f4cb697bae",
        "storage_keys": (
            "0x0000000000000000000000000000000000000000000000000000000000000003",
            "0x0000000000000000000000000000000000000000000000000000000000000007",
        ),
    },
    {"address": "0xbb9bc244d798123fde783fcc1c72d3bb8c189413", "storage_keys": ()},
)


@pytest.fixture
def eth_tester():
    return PoLeEthereumTester()


class TestPoLeEVMBackendDirect(BaseTestBackendDirect):
    @pytest.mark.parametrize("is_pending", [True, False])
    def test_send_raw_transaction_valid_raw_transaction(self, eth_tester, is_pending):
        # PoLe refuses transactions signed for no chain: the suite's raw transaction is the
        # same transfer (to itself, 1337 wei, nonce 0) but unprotected, so sign it for PoLe.
        test_key = keys.PrivateKey(b"\x11" * 32)
        eth_tester.send_transaction(
            {
                "from": eth_tester.get_accounts()[0],
                "to": test_key.public_key.to_checksum_address(),
                "gas": 21000,
                "value": 1 * denoms.ether,
            }
        )
        transfer = {
            "to": test_key.public_key.to_checksum_address(),
            "value": 1337,
            "nonce": 0,
            "gas": 21000,
            "gasPrice": 1_000_000_000,
            "chainId": CHAIN_ID,
        }
        signed = Account.sign_transaction(transfer, test_key.to_bytes())
        if is_pending:
            eth_tester.disable_auto_mine_transactions()

        with pytest.raises(WrongChainIdError, match="chain id None"):
            eth_tester.send_raw_transaction(UNPROTECTED_RAW_TRANSACTION)
        transaction_hash = eth_tester.send_raw_transaction(signed.raw_transaction.to_0x_hex())

        if is_pending:
            with pytest.raises(TransactionNotFound):
                eth_tester.get_transaction_receipt(transaction_hash)
            eth_tester.enable_auto_mine_transactions()

        receipt = eth_tester.get_transaction_receipt(transaction_hash)
        assert receipt["transaction_hash"] == transaction_hash
        assert receipt["status"] == 1

    def test_send_access_list_transaction(self, eth_tester):
        # The suite sends for eth-tester's chain id; PoLe only accepts its own.
        self._send_typed_transactions(
            eth_tester,
            {"gas_price": 1_000_000_000},
            expected_type="0x1",
        )

    def test_send_dynamic_fee_transaction(self, eth_tester):
        # The suite sends for eth-tester's chain id; PoLe only accepts its own.
        self._send_typed_transactions(
            eth_tester,
            {"max_fee_per_gas": 2_000_000_000, "max_priority_fee_per_gas": 1_000_000_000},
            expected_type="0x2",
        )

    def _send_typed_transactions(self, eth_tester, fee_fields, expected_type):
        account = eth_tester.get_accounts()[0]
        transaction = {
            "chain_id": ETH_TESTER_CHAIN_ID,
            "from": account,
            "to": account,
            "value": 1,
            "gas": 40000,
            "access_list": (),
            **fee_fields,
        }
        with pytest.raises(WrongChainIdError, match=str(ETH_TESTER_CHAIN_ID)):
            eth_tester.send_transaction(transaction)

        for access_list in ((), ACCESS_LIST):
            transaction = {**transaction, "chain_id": CHAIN_ID, "access_list": access_list}
            if expected_type == "0x2" and access_list == ():
                del transaction["access_list"]  # as the suite: defaulted by eth-tester
            txn_hash = eth_tester.send_transaction(transaction)
            txn = eth_tester.get_transaction_by_hash(txn_hash)
            assert txn["type"] == expected_type
            assert txn["chain_id"] == CHAIN_ID
            assert (txn["access_list"] != ()) == bool(access_list)
            self._check_transactions(transaction, txn)
            assert eth_tester.get_transaction_receipt(txn_hash)["status"] == 1
