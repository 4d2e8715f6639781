"""Stage 3, finding good subnetworks on a fine-tuned model: s-pruning (heads/MLPs by importance) and m-pruning (global magnitude)."""
