"""Media to vectors: decoding, pretrained encoders, and the bundled sample platform's media."""
