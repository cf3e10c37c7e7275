#pragma version 0.4.3
"""
@title PoLe task registry
@license MIT
@notice Escrow and bookkeeping for Proof-of-Learning training tasks. Data nodes post a
        task with its reward attached; the chain itself (the settlement system call that
        runs when a block is finalised) pays the reward to the miner whose model won, or
        refunds the poster once the task is overdue.
@dev The runtime bytecode is placed at a fixed address in the genesis state with empty
     storage, so this contract has no constructor, no immutables and no storage that would
     need initialising: every variable starts at its zero value and zero is meaningful.
     Settlement and expiry are called from SYSTEM_ADDRESS by the node, outside any
     transaction. A failing payment must never make that call revert (a block's validity
     must not depend on a recipient's fallback code), so payments that fail are credited to
     `owed` and claimed later with `withdraw`.
"""

# The sender of the settlement system call (same address as EIP-4788/7002 system calls).
SYSTEM_ADDRESS: constant(address) = 0xffffFFFfFFffffffffffffffFfFFFfffFFFfFFfE

# Bounds the loops over open tasks (best_task, settle, expire_overdue), so the gas of every
# call that consensus depends on is bounded too.
MAX_OPEN_TASKS: constant(uint256) = 64

# Accuracies are basis points: 10000 = 100%.
MAX_BPS: constant(uint256) = 10000

# Upper bounds that keep the value comparison reward_a * time_limit_b free of overflow
# (2**128 * 2**17 < 2**256). Without them a task with a huge time limit would make best_task
# revert, and with it block production.
MAX_REWARD: constant(uint256) = 2**128 - 1
# The chain's cap on a task's time limit (vm_hooks.params.MAX_TASK_TIME_LIMIT, checked equal
# by a test): a task holds its anchor for at most this long, so a poster with a tiny reward and
# a huge time limit cannot keep the best-task slot (and miners' attention) for a year.
MAX_TIME_LIMIT: constant(uint256) = 86400

# Miner bonds (vm_hooks.params.MINER_BOND / UNBOND_DELAY): a data node admits announcements
# only from bonded miners, so filling a release's admitted slots costs one bond per key,
# locked for UNBOND_DELAY after the miner asks for it back.
MINER_BOND: constant(uint256) = 10**18
UNBOND_DELAY: constant(uint256) = 86400

# Gas forwarded with a reward or refund (the callee also gets the 2300 stipend of a value
# call). Enough for a smart-contract wallet's receive (a proxy's delegatecall and an event),
# small enough that 64 refunds in one system call stay far below its 30M gas budget even if
# every recipient burns all it is given.
PAYMENT_GAS: constant(uint256) = 30000

# Task.status values.
STATUS_NONE: constant(uint8) = 0
STATUS_OPEN: constant(uint8) = 1
STATUS_SETTLED: constant(uint8) = 2
STATUS_EXPIRED: constant(uint8) = 3


struct Task:
    poster: address
    reward: uint256
    model_spec: bytes32
    dataset_digest: bytes32
    test_set_commitment: bytes32
    min_train_bps: uint256
    time_limit: uint256
    solutions_wanted: uint256
    posted_at: uint256
    deadline: uint256
    status: uint8


struct TaskResult:
    winner: address
    model_commitment: bytes32
    train_bps: uint256
    test_bps: uint256
    release_digest: bytes32
    block_number: uint256


event TaskPosted:
    task_id: indexed(uint256)
    poster: indexed(address)
    reward: uint256
    deadline: uint256

event TaskSettled:
    task_id: indexed(uint256)
    winner: indexed(address)
    reward: uint256
    model_commitment: bytes32
    test_bps: uint256

event TaskExpired:
    task_id: indexed(uint256)
    poster: indexed(address)
    refund: uint256

event PaymentOwed:
    account: indexed(address)
    amount: uint256

event Withdrawal:
    account: indexed(address)
    amount: uint256

event BestTaskChanged:
    task_id: indexed(uint256)
    block_number: uint256

event MinerBonded:
    miner: indexed(address)
    amount: uint256

event UnbondRequested:
    miner: indexed(address)
    available_at: uint256


tasks: HashMap[uint256, Task]
results: HashMap[uint256, TaskResult]

# Ids of the open tasks, in no particular order (removal is swap-and-pop).
open_ids: DynArray[uint256, MAX_OPEN_TASKS]

# Number of tasks ever posted; also the id of the latest one (ids start at 1).
task_count: public(uint256)

# Payments that could not be delivered, claimable by their recipient with withdraw().
owed: public(HashMap[address, uint256])

# The task anchor (docs/PROTOCOL.md, "Task anchor"): the best open task after the latest
# finalised block, and the number of the block after which it became the best. Written only by
# the settlement system call (note_best_task), once per block.
anchored_task: public(uint256)
anchor_block: public(uint256)

# Miner bonds: the amount held, and when an unbond request may be withdrawn (0: none pending).
bonds: public(HashMap[address, uint256])
unbond_at: public(HashMap[address, uint256])


@external
@payable
@nonreentrant
def post_task(
    model_spec: bytes32,
    dataset_digest: bytes32,
    test_set_commitment: bytes32,
    min_train_bps: uint256,
    time_limit: uint256,
    solutions_wanted: uint256,
) -> uint256:
    """
    @notice Post a training task; msg.value is its reward, held in escrow until the task is
            settled (paid to the winning miner) or expires (refunded to the poster).
    @dev Miners rank open tasks by reward / time_limit, so time_limit is both the poster's
         estimate of the training time and the price denominator.
    @param model_spec Digest of the model architecture a solution must have.
    @param dataset_digest Content hash of the training data set.
    @param test_set_commitment Commitment to the secret test set, revealed in the release.
    @param min_train_bps Training accuracy a solution must reach, in basis points.
    @param time_limit Seconds from now until the task is overdue.
    @param solutions_wanted Announcements the poster waits for before releasing the test set.
    @return The new task id.
    """
    assert msg.value > 0, "no reward"
    assert msg.value <= MAX_REWARD, "reward too large"
    assert time_limit > 0, "zero time limit"
    assert time_limit <= MAX_TIME_LIMIT, "time limit too long"
    assert min_train_bps <= MAX_BPS, "min_train_bps above 10000"
    assert solutions_wanted > 0, "no solutions wanted"
    assert len(self.open_ids) < MAX_OPEN_TASKS, "registry full"

    task_id: uint256 = self.task_count + 1
    deadline: uint256 = block.timestamp + time_limit
    self.task_count = task_id
    self.tasks[task_id] = Task(
        poster=msg.sender,
        reward=msg.value,
        model_spec=model_spec,
        dataset_digest=dataset_digest,
        test_set_commitment=test_set_commitment,
        min_train_bps=min_train_bps,
        time_limit=time_limit,
        solutions_wanted=solutions_wanted,
        posted_at=block.timestamp,
        deadline=deadline,
        status=STATUS_OPEN,
    )
    self.open_ids.append(task_id)
    log TaskPosted(task_id=task_id, poster=msg.sender, reward=msg.value, deadline=deadline)
    return task_id


@view
@external
def best_task() -> uint256:
    """
    @notice The open task every miner should work on (see _best_task); 0 when none is open.
    """
    return self._best_task()


@view
@internal
def _best_task() -> uint256:
    """
    @notice The open task every miner should work on: the highest reward per second of
            time limit, ties to the lowest id. 0 when no task is open.
    @dev Values are compared by cross-multiplication (reward_a * limit_b vs reward_b *
         limit_a), so there is no rounding; the bounds in post_task rule out overflow.
         Scans all open ids and breaks ties by id, so the answer does not depend on the
         order of open_ids (which swap-and-pop removal shuffles). Overdue tasks are
         still candidates until expire_overdue closes them.
    """
    best_id: uint256 = 0
    best_reward: uint256 = 0
    best_limit: uint256 = 1
    for task_id: uint256 in self.open_ids:
        reward: uint256 = self.tasks[task_id].reward
        limit: uint256 = self.tasks[task_id].time_limit
        lhs: uint256 = reward * best_limit
        rhs: uint256 = best_reward * limit
        if best_id == 0 or lhs > rhs or (lhs == rhs and task_id < best_id):
            best_id = task_id
            best_reward = reward
            best_limit = limit
    return best_id


@view
@external
def get_task(task_id: uint256) -> Task:
    """
    @notice The task with this id; all fields zero (status 0) if there is none.
    """
    return self.tasks[task_id]


@view
@external
def get_result(task_id: uint256) -> TaskResult:
    """
    @notice The recorded outcome of a settled task; all fields zero otherwise.
    """
    return self.results[task_id]


@view
@external
def open_task_ids() -> DynArray[uint256, MAX_OPEN_TASKS]:
    """
    @notice Ids of all open tasks, in no particular order.
    """
    return self.open_ids


@external
@nonreentrant
def settle(
    task_id: uint256,
    winner: address,
    model_commitment: bytes32,
    train_bps: uint256,
    test_bps: uint256,
    release_digest: bytes32,
):
    """
    @notice Close a task with its winning solution and pay the escrowed reward to the winner.
    @dev Only the settlement system call may settle: the block that carries the winning
         seal has already been validated by consensus (best task, model, accuracies,
         release), so this records the outcome without re-checking it. Storage is updated
         before the payment (checks-effects-interactions), and a failed payment is owed.
    @param task_id The task the block answered.
    @param winner The block's coinbase, who receives the reward.
    @param model_commitment The block's model commitment (mix_hash).
    @param train_bps Training accuracy of the model, basis points.
    @param test_bps Test accuracy of the model (the block's score), basis points.
    @param release_digest Digest of the poster's release message the block answers.
    """
    assert msg.sender == SYSTEM_ADDRESS, "only system"
    assert self.tasks[task_id].status == STATUS_OPEN, "task not open"
    assert train_bps <= MAX_BPS, "train_bps above 10000"
    assert test_bps <= MAX_BPS, "test_bps above 10000"

    reward: uint256 = self.tasks[task_id].reward
    self.tasks[task_id].status = STATUS_SETTLED
    self._remove_open(self._open_index(task_id))
    self.results[task_id] = TaskResult(
        winner=winner,
        model_commitment=model_commitment,
        train_bps=train_bps,
        test_bps=test_bps,
        release_digest=release_digest,
        block_number=block.number,
    )
    log TaskSettled(
        task_id=task_id,
        winner=winner,
        reward=reward,
        model_commitment=model_commitment,
        test_bps=test_bps,
    )
    self._pay(winner, reward)


@external
@nonreentrant
def expire_overdue(now: uint256):
    """
    @notice Expire every open task whose deadline has passed and refund its poster.
    @dev Called by the settlement system call of every block with the block's timestamp.
         `now` is a parameter rather than block.timestamp so the node states the time it
         settles at. A task is overdue when deadline < now: at the deadline itself the
         task can still be won.
    @param now The timestamp to compare deadlines with.
    """
    assert msg.sender == SYSTEM_ADDRESS, "only system"
    i: uint256 = 0
    for _: uint256 in range(MAX_OPEN_TASKS):
        if i >= len(self.open_ids):
            break
        task_id: uint256 = self.open_ids[i]
        if self.tasks[task_id].deadline < now:
            poster: address = self.tasks[task_id].poster
            refund: uint256 = self.tasks[task_id].reward
            self.tasks[task_id].status = STATUS_EXPIRED
            # swap-and-pop moves the last id into slot i: look at slot i again
            self._remove_open(i)
            log TaskExpired(task_id=task_id, poster=poster, refund=refund)
            self._pay(poster, refund)
        else:
            i += 1


@external
def note_best_task(block_number: uint256):
    """
    @notice Record the block after which the current best open task became the best.
    @dev Called by the settlement system call at the end of every block, after settle and
         expire_overdue, with the block's number. The anchor only moves when the best task
         changes, so a task keeps its anchor for as long as it stays the best; the anchor
         block's hash seeds the SML and binds announcements, releases and commitments.
    @param block_number The number of the block being finalised.
    """
    assert msg.sender == SYSTEM_ADDRESS, "only system"
    best: uint256 = self._best_task()
    if best != self.anchored_task:
        self.anchored_task = best
        self.anchor_block = block_number
        log BestTaskChanged(task_id=best, block_number=block_number)


@view
@external
def best_anchor() -> (uint256, uint256):
    """
    @notice The best open task as of the latest finalised block and its anchor block number
            (0, 0 before any task was open; (0, n) when nothing is open since block n).
    """
    return self.anchored_task, self.anchor_block


@external
@payable
@nonreentrant
def bond():
    """
    @notice Bond msg.value as a miner; a miner counts as bonded while it holds at least
            MINER_BOND and has no unbond request pending. Bonding again cancels a request.
    """
    assert msg.value > 0, "no bond"
    self.bonds[msg.sender] += msg.value
    self.unbond_at[msg.sender] = 0
    log MinerBonded(miner=msg.sender, amount=self.bonds[msg.sender])


@external
def request_unbond():
    """
    @notice Stop counting as bonded now; the bond can be withdrawn UNBOND_DELAY later.
    """
    assert self.bonds[msg.sender] > 0, "not bonded"
    assert self.unbond_at[msg.sender] == 0, "unbond already requested"
    available_at: uint256 = block.timestamp + UNBOND_DELAY
    self.unbond_at[msg.sender] = available_at
    log UnbondRequested(miner=msg.sender, available_at=available_at)


@external
@nonreentrant
def withdraw_bond():
    """
    @notice Take back a bond whose unbond delay has passed.
    """
    available_at: uint256 = self.unbond_at[msg.sender]
    assert available_at != 0, "no unbond requested"
    assert block.timestamp >= available_at, "unbond delay not over"
    amount: uint256 = self.bonds[msg.sender]
    self.bonds[msg.sender] = 0
    self.unbond_at[msg.sender] = 0
    raw_call(msg.sender, b"", value=amount)
    log Withdrawal(account=msg.sender, amount=amount)


@view
@external
def is_bonded(miner: address) -> bool:
    """
    @notice Whether a data node should admit this miner's announcements.
    """
    return self.bonds[miner] >= MINER_BOND and self.unbond_at[miner] == 0


@external
@nonreentrant
def withdraw():
    """
    @notice Claim payments that could not be delivered to msg.sender (for example to a
            contract whose receive needs more gas than a payment forwards).
    @dev Forwards all remaining gas, since the caller chose to pay for it; reverts if the
         transfer fails, which restores the credit.
    """
    amount: uint256 = self.owed[msg.sender]
    assert amount > 0, "nothing owed"
    self.owed[msg.sender] = 0
    raw_call(msg.sender, b"", value=amount)
    log Withdrawal(account=msg.sender, amount=amount)


@internal
def _pay(recipient: address, amount: uint256):
    """
    @dev Send `amount` without ever reverting: on failure credit `owed[recipient]`.
    """
    sent: bool = raw_call(
        recipient, b"", value=amount, gas=PAYMENT_GAS, revert_on_failure=False
    )
    if not sent:
        self.owed[recipient] += amount
        log PaymentOwed(account=recipient, amount=amount)


@view
@internal
def _open_index(task_id: uint256) -> uint256:
    """
    @dev Position of an open task in open_ids. Callers check status == OPEN first, and
         every open task is in open_ids, so the loop always finds it.
    """
    for i: uint256 in range(MAX_OPEN_TASKS):
        if self.open_ids[i] == task_id:
            return i
    raise "open task missing"


@internal
def _remove_open(index: uint256):
    """
    @dev Swap-and-pop: O(1), does not keep order (best_task does not rely on it).
    """
    last: uint256 = self.open_ids.pop()
    if index < len(self.open_ids):
        self.open_ids[index] = last
