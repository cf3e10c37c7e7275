"""The miner process (miner/mining.py): in-process against a fake node, and end to end against
real `pole node --dev` processes."""
