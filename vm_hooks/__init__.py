"""Everything that plugs PoLe into py-evm: seal, consensus, VM mixin, settlement, tester."""
