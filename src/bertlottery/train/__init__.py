"""Stage 2, fine-tuning: the training loop with resumable checkpoints, and evaluation of full, pruned and retrained models."""
