"""Hub datasets -> verl parquet for the GPU recipes: `verl-maxpo prepare gsm8k|math|code` (one module per task)."""
