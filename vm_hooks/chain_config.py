"""The configured PoLe chain class: the VM, its consensus and the chain, composed once.

Everything that builds a chain (the node, the tester backend, benchmarks) takes its class
from here, so a dev chain and a production chain differ only in these parameters.
"""
from __future__ import annotations

from typing import Optional, Type

from vm_hooks.chain import PoLeChain
from vm_hooks.consensus import PoLeConsensus, SealVerifier
from vm_hooks.idle_pow import IdleParams
from vm_hooks.vm import PoLePragueVM


def chain_class(
    *,
    dev: bool,
    verifier: Optional[SealVerifier] = None,
    idle: IdleParams = IdleParams(),
) -> Type[PoLeChain]:
    consensus = PoLeConsensus.configured(dev=dev, idle=idle, verifier=verifier)
    vm = PoLePragueVM.configure(consensus_class=consensus)
    return PoLeChain.configure(
        __name__="PoLeDevChain" if dev else "PoLeChain", vm_configuration=((0, vm),)
    )
