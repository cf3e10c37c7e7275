"""Users of a node that reach it only through web3: the data node and model delivery."""
