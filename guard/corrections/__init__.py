"""Instant corrections: reviewed texts override the classifier for close paraphrases of them."""
