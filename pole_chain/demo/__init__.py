"""`pole demo`: a node, a data node and miners as separate processes, one PoLe task through."""
