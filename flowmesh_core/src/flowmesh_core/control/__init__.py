"""The control plane: where every tenant's work meets, is de-duplicated, batched and placed."""
