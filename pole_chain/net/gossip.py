"""Gossip topics: every incoming message is checked by the node before gossipsub relays it.

py-libp2p 0.8.1's Pubsub runs each topic's validator inside `push_msg`, before the message
is marked seen, delivered or forwarded, so a message the node does not ACCEPT goes no
further than this host. The validator is async and hands the payload to the node's sink on
a worker thread (the sink takes the node's lock and may import a block; the trio loop keeps
serving other peers meanwhile).

Two library settings are changed from their defaults, both for the same reason: the node's
verdict, not the library, must decide a message's fate.
- The validation cache is off (`validation_cache_ttl=0`): it would remember an IGNORE (say,
  a block whose parent had not arrived) as "invalid" for five minutes and drop the same
  block from every other peer unseen.
- Spam protection is off: it drops the 11th message per second per topic per peer (our own
  publishes included) without telling anyone; a node relaying a mempool does more.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import trio
from libp2p.peer.id import ID
from libp2p.pubsub.gossipsub import GossipSub
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.pubsub import Pubsub

from pole_chain.net.envelope import Envelope, EnvelopeError, Kind, topic_name
from pole_chain.net.interfaces import NodeSink, Verdict
from pole_chain.net.peer_score import Offence

logger = logging.getLogger(__name__)

#: How often the router's equivocation map is emptied (see `_forget_equivocation_records`).
EQUIVOCATION_MEMORY_SECONDS = 120.0

Penalise = Callable[[str, Offence], None]


class Gossip:
    """The PoLe topics (one per `Kind`) on one Pubsub: subscribe, validate through the
    sink, publish."""

    def __init__(
        self,
        pubsub: Pubsub,
        router: GossipSub,
        genesis_hash: bytes,
        sink: NodeSink,
        penalise: Penalise,
    ) -> None:
        self._pubsub = pubsub
        self._router = router
        self._sink = sink
        self._penalise = penalise
        self.topics = {kind: topic_name(kind, genesis_hash) for kind in Kind}
        self._handlers: dict[Kind, Callable[[bytes], Verdict]] = {
            Kind.TRANSACTION: sink.on_transaction,
            Kind.BLOCK: sink.on_block,
            Kind.ANNOUNCEMENT: sink.on_announcement,
            Kind.RELEASE: sink.on_release,
            Kind.KEY_REQUEST: sink.on_key_request,
            Kind.KEY_BUNDLE: sink.on_key_bundle,
            Kind.MODEL: sink.on_model,
        }

    async def start(self, nursery: trio.Nursery) -> None:
        """Register the validators, then join every topic's mesh."""
        for kind, topic in self.topics.items():
            self._pubsub.set_topic_validator(topic, self._validator(kind), True)
            subscription = await self._pubsub.subscribe(topic)
            # Delivery to the node already happened in the validator; the local
            # subscription only has to exist (gossipsub meshes subscribed topics) and be
            # drained so its queue never fills.
            nursery.start_soon(_drain, subscription)
        nursery.start_soon(self._forget_equivocation_records)

    async def publish(self, kind: Kind, payload: bytes) -> None:
        """Gossip a payload the node has already validated and taken in itself."""
        await self._pubsub.publish(self.topics[kind], Envelope(kind, payload).encode())

    def _validator(self, kind: Kind) -> Callable[[ID, rpc_pb2.Message], Awaitable[bool]]:
        handler = self._handlers[kind]

        async def validate(forwarder: ID, message: rpc_pb2.Message) -> bool:
            if forwarder == self._pubsub.my_id:
                return True  # our own publish: the node checked it before handing it over
            try:
                envelope = Envelope.decode(message.data, kind)
            except EnvelopeError as error:
                logger.info("malformed %s gossip from %s: %s", kind.value, forwarder, error)
                self._penalise(str(forwarder), Offence.MALFORMED_GOSSIP)
                return False
            verdict = await self._ask_node(handler, envelope.payload, kind)
            if verdict is Verdict.REJECT:
                self._penalise(str(forwarder), Offence.INVALID_GOSSIP)
            return verdict is Verdict.ACCEPT

        return validate

    async def _ask_node(
        self, handler: Callable[[bytes], Verdict], payload: bytes, kind: Kind
    ) -> Verdict:
        try:
            return await trio.to_thread.run_sync(handler, payload)
        except Exception:
            # A failing sink is the node's bug, not the sender's fault: drop, blame no one.
            logger.exception("the node's %s handler raised", kind.value)
            return Verdict.IGNORE

    async def _forget_equivocation_records(self) -> None:
        """Work around an unbounded map in py-libp2p 0.8.1's GossipSub.

        `GossipSub._check_equivocation` keeps every message it ever relayed, keyed by
        (origin, seqno), and never prunes it: a long-running node would hold every block it
        relayed. An equivocation only matters while the message can still circulate (the
        seen cache's 120 s), so the map is emptied on that period.
        """
        while True:
            await trio.sleep(EQUIVOCATION_MEMORY_SECONDS)
            self._router.equivocation_detection.clear()


async def _drain(subscription: object) -> None:
    async for _message in subscription:  # type: ignore[attr-defined]
        pass
