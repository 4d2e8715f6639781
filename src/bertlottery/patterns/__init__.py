"""Self-attention patterns (paper §5.2): attention maps, the rule classifier and CNN, pattern counts, tables and Figure 4."""
