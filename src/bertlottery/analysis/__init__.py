"""Stage 5, the analyses: one tidy metrics table, mask statistics (stability, overlaps, importance), paired tests, claims, tables, figures."""
