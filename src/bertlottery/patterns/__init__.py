"""Self-attention patterns (paper section 8.4): attention maps, the rule classifier and CNN, pattern counts, tables and Figure 4."""
