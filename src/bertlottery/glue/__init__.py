"""Stage 1, the data: GLUE task specs, reading TSV/hub splits, tokenizing them once, metrics."""
