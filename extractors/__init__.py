"""Media to vectors: decoding, pretrained encoders, and the bundled sample platform's media."""

import warehouse.threads  # noqa: F401  (idle OpenMP threads sleep: before torch loads)
